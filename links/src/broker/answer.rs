//! What the test broker answers to each text frame, as the real one does:
//! hellos, sends, and the errors for frames out of place.
//!
//! Owns: dispatch by frame type and the answers' shapes. Does not own:
//! socket I/O and timing (`client`), hello rules (`handshake`), or the
//! outcome of a send (`ledger`).

use super::client::{Client, Step, close};
use super::handshake::{Refusal, check_hello, check_session_hello};
use super::ledger::{Answer, Peer};
use crate::identity::now_ms;
use crate::wire::{self, Text};
use serde_json::json;
use std::sync::Arc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

impl Client {
    pub(super) async fn handle_text(&mut self, text: &str) -> Step {
        // Sends are the hot path: one borrowed parse.
        if let Ok(send) = serde_json::from_str::<wire::Send<'_>>(text)
            && &*send.kind == "send"
        {
            return self.handle_send(&send).await;
        }
        // Malformed JSON gets no answer at all, as on the real broker.
        let Ok(envelope) = serde_json::from_str::<wire::Envelope<'_>>(text) else {
            return Step::Continue;
        };
        let shared = Arc::clone(&self.shared);
        let options = &shared.options;
        match (&*envelope.kind, self.peer.is_some()) {
            ("session_hello", _) if options.sessions_unsupported => {
                self.error("unknown_message_type", "session_hello is not supported")
                    .await
            }
            ("hello", false) => {
                self.hello(
                    serde_json::from_str::<wire::Hello<'_>>(text)
                        .map(|h| check_hello(&h, options, now_ms())),
                )
                .await
            }
            ("session_hello", false) => {
                self.hello(
                    serde_json::from_str::<wire::SessionHello<'_>>(text)
                        .map(|h| check_session_hello(&h, options, now_ms())),
                )
                .await
            }
            ("hello" | "session_hello", true) => {
                self.error("already_hello", "this connection already said hello")
                    .await
            }
            (_, false) => self.error("no_hello", "say hello first").await,
            ("send", true) => {
                self.error("invalid_message", "send needs id and targetSpec strings")
                    .await
            }
            (_, true) => {
                self.error(
                    "unknown_message_type",
                    &format!("unknown message type {}", &*envelope.kind),
                )
                .await
            }
        }
    }

    async fn hello(&mut self, checked: Result<Result<Peer, Refusal>, serde_json::Error>) -> Step {
        let checked = checked.unwrap_or_else(|e| {
            Err(Refusal {
                code: "invalid_hello",
                message: format!("hello is malformed: {e}"),
            })
        });
        let accepted = checked.is_ok();
        self.shared.ledger().hello(accepted);
        match checked {
            Ok(peer) => {
                let peer = Arc::new(Peer {
                    connection: self.connection,
                    ..peer
                });
                // The real hello_ack carries more than its type; clients must
                // ignore what they do not need.
                let ack = json!({
                    "type": "hello_ack",
                    "presenceId": format!("pres_{}", self.connection),
                    "displayName": peer.member_id,
                    "profile": {"peerType": "ai", "avatar": null},
                    "policy": {"rateLimit": {"burst": 10, "perMinute": 60}},
                });
                self.peer = Some(peer);
                self.feed(Message::text(ack.to_string())).await
            }
            Err(refusal) => {
                let _ = self.error(refusal.code, &refusal.message).await;
                Step::Close(close(CloseCode::Policy, refusal.code))
            }
        }
    }

    async fn handle_send(&mut self, send: &wire::Send<'_>) -> Step {
        let Some(peer) = self.peer.clone() else {
            return self.error("no_hello", "say hello first").await;
        };
        self.received += 1;
        let answer =
            self.shared
                .ledger()
                .record_send(&peer, send, &self.shared.options, self.unacked + 1);
        let closing = self
            .shared
            .options
            .close_after_sends
            .is_some_and(|limit| self.received >= limit);
        if closing {
            return Step::Close(close(CloseCode::Restart, "close_after_sends"));
        }
        let Answer::Ack {
            message_id,
            queued,
            error,
        } = answer
        else {
            return Step::Continue;
        };
        let ack = wire::Ack {
            kind: "ack".into(),
            id: send.id.clone(),
            message_id: message_id.as_deref().map(Text::from),
            queued,
            error: error.as_deref().map(Text::from),
        };
        let Ok(message) = wire::to_message(&ack) else {
            return Step::Continue;
        };
        self.unacked += 1;
        let delay = self.shared.options.ack_delay_for(&send.target_spec);
        if delay.is_zero() {
            return self.emit_ack(message, &send.id).await;
        }
        self.arrivals += 1;
        self.delayed.insert(
            (Instant::now() + delay, self.arrivals),
            (send.id.to_string(), message),
        );
        Step::Continue
    }
}
