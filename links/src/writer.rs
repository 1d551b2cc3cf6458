//! The write half of an open link: queues frames and writes them in bursts
//! while the read half keeps reading.
//!
//! Owns: feeding frames and flushing once per burst (one flush per frame was
//! measured 5x slower, STACK-NOTES). Does not own: what the frames say
//! (`wire`), or which sends wait for acks (`inflight`).
//!
//! Why a separate half: if one task wrote a large batch without reading, and
//! the broker stopped reading while its acks filled our receive buffer, both
//! sides would block on writes forever. The burst runs as its own future,
//! polled by the connection's `select!` next to the reader, so reading never
//! waits for writing.

use crate::config::{WRITE_BURST_MAX, WRITE_QUEUE_FRAMES_MAX};
use futures_util::SinkExt as _;
use futures_util::stream::SplitSink;
use std::future::Future;
use std::pin::Pin;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// A client WebSocket over TCP, with or without TLS.
pub(crate) type WsStream = WebSocketStream<MaybeTlsStream<TcpStream>>;
type WsSink = SplitSink<WsStream, Message>;
type Burst = Pin<Box<dyn Future<Output = (WsSink, Result<(), WsError>)> + Send>>;

/// The write half, either idle (holding the sink) or running one burst (the
/// burst owns the sink and hands it back when done).
pub(crate) struct Writer {
    idle: Option<WsSink>,
    burst: Option<Burst>,
    queued: Vec<Message>,
}

impl Writer {
    pub(crate) fn new(sink: WsSink) -> Writer {
        Writer {
            idle: Some(sink),
            burst: None,
            queued: Vec::new(),
        }
    }

    /// Whether the queue has room for another batch's frames.
    pub(crate) fn has_room(&self) -> bool {
        self.queued.len() < WRITE_QUEUE_FRAMES_MAX
    }

    pub(crate) fn is_writing(&self) -> bool {
        self.burst.is_some()
    }

    pub(crate) fn push(&mut self, frame: Message) {
        self.queued.push(frame);
    }

    /// Starts writing everything queued, unless a burst is already running
    /// (its end starts the next one).
    pub(crate) fn start(&mut self) {
        if self.queued.is_empty() {
            return;
        }
        if let Some(sink) = self.idle.take() {
            let frames = std::mem::take(&mut self.queued);
            self.burst = Some(Box::pin(write_burst(sink, frames)));
        }
    }

    /// Waits for the running burst to end; never ends when none runs.
    /// Cancel-safe: dropped before the end, the burst stays in `self`.
    pub(crate) async fn finish(&mut self) -> Result<(), WsError> {
        let Some(burst) = self.burst.as_mut() else {
            return std::future::pending().await;
        };
        let (sink, result) = burst.await;
        self.burst = None;
        self.idle = Some(sink);
        result
    }

    /// Sends a close frame if the write half is free, within `limit`; a
    /// broker that does not read it loses nothing (the socket drops next).
    pub(crate) async fn close(&mut self, limit: std::time::Duration) {
        if let Some(sink) = self.idle.as_mut() {
            let _ = tokio::time::timeout(limit, sink.close()).await;
        }
    }
}

async fn write_burst(mut sink: WsSink, frames: Vec<Message>) -> (WsSink, Result<(), WsError>) {
    let result = feed_all(&mut sink, frames).await;
    (sink, result)
}

async fn feed_all(sink: &mut WsSink, frames: Vec<Message>) -> Result<(), WsError> {
    for (count, frame) in frames.into_iter().enumerate() {
        sink.feed(frame).await?;
        if (count + 1) % WRITE_BURST_MAX == 0 {
            sink.flush().await?;
        }
    }
    sink.flush().await
}
