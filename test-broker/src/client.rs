//! One client connection to the test broker: its socket loop.
//!
//! Owns: the per-connection loop — read every ready frame, answer it, flush
//! once when nothing more is ready — plus delayed (still pipelined) acks,
//! pings and closes, the close when a later hello replaces this
//! connection, and leaving the presences when it ends. Does not own: what
//! each frame gets in answer (`answer`), the hello rules (`handshake`), what
//! a send's answer is (`ledger`), or accepting sockets and TLS (`mod`).

use super::chatter::chatter_frame;
use super::faults::Faults;
use super::stats::Peer;
use super::{BROKER_PING_INTERVAL, READ_BURST_MAX, Shared, Socket};
use futures_util::{FutureExt as _, SinkExt as _, StreamExt as _};
use sluice_links::CLOSE_TIMEOUT;
use sluice_links::wire;
use std::collections::BTreeMap;
use std::pin::pin;
use std::sync::Arc;
use tokio::time::{Instant, MissedTickBehavior, interval_at, sleep_until, timeout};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

type Frame = Option<Result<Message, WsError>>;

/// What the loop does next.
pub(super) enum Step {
    Continue,
    /// Send this close frame, then end.
    Close(CloseFrame),
    /// End now, without a close frame (socket gone, or dropped on purpose).
    End,
}

pub(crate) struct Client {
    pub(super) ws: Socket,
    pub(super) shared: Arc<Shared>,
    pub(super) connection: u64,
    pub(super) peer: Option<Arc<Peer>>,
    /// The presence this connection holds once its hello was accepted.
    pub(super) presence: Option<u64>,
    /// Text frames received after the hello (`close_after_frames`).
    pub(super) frames: u32,
    /// This connection's seeded choices.
    pub(super) faults: Faults,
    /// Sends received that will get an ack not yet written.
    pub(super) unacked: u32,
    pub(super) received: u32,
    /// Acks waiting for their time, by (due, arrival order).
    pub(super) delayed: BTreeMap<(Instant, u64), (String, Message)>,
    pub(super) arrivals: u64,
    pub(super) chatter_turn: u64,
    /// Frames fed since the last flush.
    pub(super) dirty: bool,
}

impl Client {
    pub(crate) fn new(ws: Socket, shared: Arc<Shared>, connection: u64) -> Client {
        let faults = Faults::new(shared.options.seed, connection);
        Client {
            ws,
            shared,
            connection,
            peer: None,
            presence: None,
            frames: 0,
            faults,
            unacked: 0,
            received: 0,
            delayed: BTreeMap::new(),
            arrivals: 0,
            chatter_turn: 0,
            dirty: false,
        }
    }

    /// Serves the connection until it ends, then starts its presence's
    /// offline lease.
    pub(crate) async fn run(mut self) {
        self.serve().await;
        let now_ms = self.shared.clock_ms();
        self.shared
            .ledger()
            .leave(self.presence, self.connection, now_ms);
    }

    async fn serve(&mut self) {
        let mut drops = self.shared.drops.subscribe();
        let mut replacements = self.shared.replacements.subscribe();
        let mut shutdown = self.shared.shutdown.subscribe();
        if *shutdown.borrow() {
            return;
        }
        let mut pings = interval_at(Instant::now() + BROKER_PING_INTERVAL, BROKER_PING_INTERVAL);
        pings.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut timer = pin!(sleep_until(Instant::now()));
        let mut armed: Option<Instant> = None;
        loop {
            let next = self.delayed.first_key_value().map(|((due, _), _)| *due);
            if next != armed {
                if let Some(due) = next {
                    timer.as_mut().reset(due);
                }
                armed = next;
            }
            let step = tokio::select! {
                biased;
                _ = shutdown.changed() => Step::Close(close(CloseCode::Away, "broker shutting down")),
                _ = drops.changed() => Step::End,
                _ = replacements.changed() => self.replaced(),
                () = &mut timer, if armed.is_some() => {
                    armed = None;
                    self.release_due().await
                }
                _ = pings.tick() => self.feed(Message::Ping(Default::default())).await,
                frame = self.ws.next() => self.read_burst(frame).await,
            };
            let step = match step {
                Step::Continue => self.flush().await,
                other => other,
            };
            match step {
                Step::Continue => {}
                Step::End => return,
                Step::Close(frame) => {
                    let _ = timeout(CLOSE_TIMEOUT, self.ws.close(Some(frame))).await;
                    return;
                }
            }
        }
    }

    /// Handles `first` and every frame already readable (bounded), so one
    /// flush covers the acks of a whole burst.
    async fn read_burst(&mut self, first: Frame) -> Step {
        let mut frame = first;
        for handled in 1..=READ_BURST_MAX {
            let step = match frame {
                Some(Ok(Message::Text(text))) => self.handle_text(&text).await,
                Some(Ok(Message::Pong(_))) => {
                    self.shared.ledger().pong();
                    Step::Continue
                }
                Some(Ok(_)) => Step::Continue,
                Some(Err(_)) | None => Step::End,
            };
            // Stop before reading a frame this burst could not handle.
            if !matches!(step, Step::Continue) || handled == READ_BURST_MAX {
                return step;
            }
            match self.ws.next().now_or_never() {
                Some(next) => frame = next,
                None => break,
            }
        }
        Step::Continue
    }

    /// A later hello took this connection's presence: close it as the real
    /// broker does (1000 `session_replaced`).
    fn replaced(&mut self) -> Step {
        if self.shared.ledger().take_replaced(self.connection) {
            Step::Close(close(CloseCode::Normal, "session_replaced"))
        } else {
            Step::Continue
        }
    }

    /// Writes every delayed ack whose time has come.
    async fn release_due(&mut self) -> Step {
        let now = Instant::now();
        while let Some(entry) = self.delayed.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let (id, ack) = entry.remove();
            if let Step::End = self.emit_ack(ack, &id).await {
                return Step::End;
            }
        }
        Step::Continue
    }

    pub(super) async fn emit_ack(&mut self, ack: Message, id: &str) -> Step {
        if self.shared.options.chatter {
            self.chatter_turn += 1;
            if let Step::End = self.feed(chatter_frame(self.chatter_turn, id)).await {
                return Step::End;
            }
        }
        self.unacked = self.unacked.saturating_sub(1);
        self.feed(ack).await
    }

    pub(super) async fn error(&mut self, code: &str, message: &str) -> Step {
        let frame = wire::ErrorFrame {
            kind: "error".into(),
            code: code.into(),
            message: message.into(),
        };
        match wire::to_message(&frame) {
            Ok(message) => self.feed(message).await,
            Err(_) => Step::Continue,
        }
    }

    pub(super) async fn feed(&mut self, message: Message) -> Step {
        self.dirty = true;
        match self.ws.feed(message).await {
            Ok(()) => Step::Continue,
            Err(_) => Step::End,
        }
    }

    async fn flush(&mut self) -> Step {
        if !std::mem::take(&mut self.dirty) {
            return Step::Continue;
        }
        match self.ws.flush().await {
            Ok(()) => Step::Continue,
            Err(_) => Step::End,
        }
    }
}

pub(super) fn close(code: CloseCode, reason: &str) -> CloseFrame {
    CloseFrame {
        code,
        reason: reason.to_string().into(),
    }
}
