//! One open link (daemon or session), after its hello was acknowledged:
//! takes batches, writes their sends pipelined, matches acks, enforces
//! deadlines, and ends when the socket does.
//!
//! Owns: the loop over an open socket. Does not own: connecting, the hello
//! or reconnecting (`link`), spending the budget (`route`, before a send
//! reaches a link), the bookkeeping of waiting sends (`inflight`) or the
//! write bursts (`writer`).

use crate::config::{
    AckObserver, CLOSE_TIMEOUT, LINK_PING_INTERVAL, LINK_SILENCE_MAX, READ_BURST_MAX,
};
use crate::inflight::{BatchReply, InFlight};
use crate::wire::{self, Inbound};
use crate::writer::{Writer, WsStream};
use futures_util::stream::SplitStream;
use futures_util::{FutureExt as _, StreamExt as _};
use sluice_contract::{Dispatch, SendResult};
use std::pin::pin;
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, MissedTickBehavior, sleep_until};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

/// One link's share of a `send_batch` call: the unit a link takes at once.
pub(crate) struct Batch {
    pub dispatches: Vec<Dispatch>,
    pub deadline: Instant,
    pub reply: BatchReply,
}

/// Why an open link stopped.
pub(crate) enum Ended {
    /// Shutdown was asked for, or every handle to the links is gone.
    Shutdown,
    /// The socket failed or closed; the link reconnects.
    Lost(String),
}

/// Runs an open link until it ends. Every send still waiting then fails at
/// once (`link_closed`, or `write_failed: …` when a write broke the link).
/// `label` names the link in log lines; `ack_latency` hears each ack's
/// latency.
pub(crate) async fn run_open(
    ws: WsStream,
    label: &str,
    commands: &mut mpsc::Receiver<Batch>,
    shutdown: &mut watch::Receiver<bool>,
    ack_latency: Option<AckObserver>,
) -> Ended {
    let (sink, mut source) = ws.split();
    let mut writer = Writer::new(sink);
    let mut inflight = InFlight::observing(ack_latency);
    let mut timer = pin!(sleep_until(Instant::now()));
    let mut armed: Option<Instant> = None;
    let mut pings =
        tokio::time::interval_at(Instant::now() + LINK_PING_INTERVAL, LINK_PING_INTERVAL);
    pings.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last_heard = Instant::now();
    let mut failure = "link_closed".to_string();
    let ended = loop {
        let next = inflight.next_deadline();
        if next != armed {
            if let Some(deadline) = next {
                timer.as_mut().reset(deadline);
            }
            armed = next;
        }
        // Order: stop first; then things that free memory (deadlines, write
        // completions) before taking more work; reading last so a flood of
        // frames cannot starve the rest (a read burst is bounded anyway).
        tokio::select! {
            biased;
            _ = shutdown.changed() => break Ended::Shutdown,
            () = &mut timer, if armed.is_some() => {
                inflight.expire(Instant::now());
                armed = None;
            }
            written = writer.finish(), if writer.is_writing() => match written {
                Ok(()) => writer.start(),
                Err(e) => {
                    failure = format!("write_failed: {e}");
                    break Ended::Lost(failure.clone());
                }
            },
            batch = commands.recv(), if writer.has_room() => match batch {
                Some(batch) => {
                    take_batch(batch, &mut inflight, &mut writer);
                    writer.start();
                }
                None => break Ended::Shutdown,
            },
            _ = pings.tick() => {
                if last_heard.elapsed() > LINK_SILENCE_MAX {
                    break Ended::Lost(format!("broker silent for over {LINK_SILENCE_MAX:?}"));
                }
                writer.push(Message::Ping(Default::default()));
                writer.start();
            }
            frame = source.next() => {
                last_heard = Instant::now();
                if let Err(reason) = read_burst(frame, &mut source, &mut inflight, label) {
                    break Ended::Lost(reason);
                }
            }
        }
    };
    if inflight.waiting() > 0 {
        tracing::debug!(target: "sluice", link = label, waiting = inflight.waiting(), "failing sends that waited on the link: {failure}");
    }
    // Before the close frame: a caller learns at once, not after the close
    // had its chance to go out.
    inflight.fail_all(&failure);
    if matches!(ended, Ended::Shutdown) {
        writer.close(CLOSE_TIMEOUT).await;
    }
    ended
}

/// Registers a batch's sends and queues their frames; returns how many send
/// frames were queued. Sends whose deadline passed while the batch waited in
/// the queue are not written: a send that would be reported as timed out
/// must not reach the broker as well.
fn take_batch(batch: Batch, inflight: &mut InFlight, writer: &mut Writer) -> usize {
    let Batch {
        dispatches,
        deadline,
        reply,
    } = batch;
    let batch_id = inflight.open_batch(dispatches.len(), deadline, reply);
    let expired = deadline <= Instant::now();
    let mut queued = 0;
    for (index, dispatch) in dispatches.into_iter().enumerate() {
        if expired {
            inflight.settle(
                batch_id,
                index,
                SendResult::Failed("ack_timeout".to_string()),
            );
            continue;
        }
        match wire::to_message(&send_frame(&dispatch)) {
            Ok(frame) => {
                if inflight.register(batch_id, index, dispatch.client_message_id) {
                    writer.push(frame);
                    queued += 1;
                }
            }
            Err(e) => inflight.settle(
                batch_id,
                index,
                SendResult::Failed(format!("write_failed: encoding the send frame: {e}")),
            ),
        }
    }
    inflight.close_batch_if_settled(batch_id);
    queued
}

fn send_frame(dispatch: &Dispatch) -> wire::Send<'_> {
    wire::Send {
        kind: "send".into(),
        id: dispatch.client_message_id.as_str().into(),
        client_message_id: dispatch.client_message_id.as_str().into(),
        request_fingerprint: dispatch.request_fingerprint_hex.as_str().into(),
        target_spec: dispatch.target_spec.as_str().into(),
        priority: dispatch.priority.as_str().into(),
        nonce: dispatch.nonce.as_str().into(),
        ciphertext: dispatch.ciphertext.as_str().into(),
    }
}

type Frame = Option<Result<Message, WsError>>;

/// Handles `first` and then every frame already readable, up to
/// `READ_BURST_MAX`, without going back through `select!` for each.
/// `Err` says why the socket is gone.
fn read_burst(
    first: Frame,
    source: &mut SplitStream<WsStream>,
    inflight: &mut InFlight,
    label: &str,
) -> Result<(), String> {
    let mut frame = first;
    let mut handled = 0;
    loop {
        match frame {
            Some(Ok(message)) => handle_message(message, inflight, label),
            Some(Err(e)) => return Err(format!("read failed: {e}")),
            None => return Err("closed by the broker".to_string()),
        }
        handled += 1;
        if handled >= READ_BURST_MAX {
            return Ok(());
        }
        // Polling with a no-op waker is fine: when nothing is ready, the
        // `select!` polls the stream again with the task's waker.
        match source.next().now_or_never() {
            Some(next) => frame = next,
            None => return Ok(()),
        }
    }
}

fn handle_message(message: Message, inflight: &mut InFlight, label: &str) {
    match message {
        Message::Text(text) => handle_text(&text, inflight, label),
        // Pongs to the broker's pings are queued by tungstenite while reading
        // and flushed by the next read, which follows at once.
        Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
        Message::Binary(bytes) => {
            tracing::debug!(target: "sluice", link = label, len = bytes.len(), "ignored a binary frame")
        }
        Message::Close(close) => {
            tracing::debug!(target: "sluice", link = label, ?close, "broker closed the link")
        }
    }
}

fn handle_text(text: &str, inflight: &mut InFlight, label: &str) {
    match wire::parse_inbound(text) {
        Inbound::Ack {
            id,
            message_id,
            error,
        } => {
            let result = match error {
                Some(error) if !error.is_empty() => SendResult::Rejected(error.0.into_owned()),
                _ => SendResult::Accepted(message_id.map(|m| m.0.into_owned()).unwrap_or_default()),
            };
            if !inflight.ack(&id, result) {
                tracing::debug!(target: "sluice", link = label, id = &*id, "ack for no waiting send (late after a timeout, or not ours)");
            }
        }
        Inbound::Error { code, message } => {
            tracing::warn!(target: "sluice", link = label, code = &*code, message = &*message, "broker sent an error on an open link");
        }
        Inbound::HelloAck | Inbound::Other(_) => {
            tracing::trace!(target: "sluice", link = label, "ignored a frame that is not an ack")
        }
        Inbound::Garbage => {
            tracing::debug!(target: "sluice", link = label, len = text.len(), "ignored a frame that is not a protocol frame")
        }
    }
}
