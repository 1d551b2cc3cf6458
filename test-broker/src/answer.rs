//! What the test broker answers to each text frame, as the real one does:
//! hellos (checked, refused, ignored without `cwd`), sends, and frames out
//! of place.
//!
//! Owns: dispatch by frame type, the injected hello refusals, the frame
//! count of `close_after_frames`, and the answers' shapes. Does not own:
//! socket I/O and timing (`client`), hello rules (`handshake`), or the
//! outcome of a send (`ledger`).

use super::client::{Client, Step, close};
use super::handshake::{Refusal, RefusalCode, check_hello, check_session_hello};
use super::ledger::Answer;
use super::stats::Peer;
use serde_json::{Map, Value, json};
use sluice_links::now_ms;
use sluice_links::wire::{self, Text};
use std::sync::Arc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

/// A hello, checked: refused, accepted, or passed but without a `cwd`.
type Checked = Result<(Peer, bool), Refusal>;

impl Client {
    pub(super) async fn handle_text(&mut self, text: &str) -> Step {
        if self.peer.is_some()
            && let Some(limit) = self.shared.options.close_after_frames
        {
            self.frames += 1;
            if self.frames >= limit {
                return Step::Close(close(CloseCode::Restart, "close_after_frames"));
            }
        }
        // Sends are the hot path: one borrowed parse.
        if let Ok(send) = serde_json::from_str::<wire::Send<'_>>(text)
            && &*send.kind == "send"
        {
            return self.handle_send(&send.id, Some(&send)).await;
        }
        // Malformed JSON (and `null`, on which the real broker's handler
        // throws) gets no answer at all; other JSON without a string `type`
        // is a frame of no known type.
        let object = match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(object)) => object,
            Ok(Value::Null) | Err(_) => return Step::Continue,
            Ok(_) => Map::new(),
        };
        let kind = object.get("type").and_then(Value::as_str).unwrap_or("");
        let shared = Arc::clone(&self.shared);
        let options = &shared.options;
        match (kind, self.peer.is_some()) {
            ("session_hello", _) if options.sessions_unsupported => {
                self.error(
                    "unknown_message_type",
                    "unknown message type: session_hello",
                )
                .await
            }
            ("hello", false) => {
                let checked = serde_json::from_str::<wire::Hello<'_>>(text).map(|hello| {
                    let has_cwd = has_cwd(hello.cwd.as_ref());
                    check_hello(&hello, options, now_ms()).map(|peer| (peer, has_cwd))
                });
                self.hello(checked, false).await
            }
            ("session_hello", false) => {
                let checked = serde_json::from_str::<wire::SessionHello<'_>>(text).map(|hello| {
                    let has_cwd = has_cwd(hello.cwd.as_ref());
                    check_session_hello(&hello, options, now_ms()).map(|peer| (peer, has_cwd))
                });
                self.hello(checked, true).await
            }
            ("hello" | "session_hello", true) => {
                self.error("already_hello", "this connection already said hello")
                    .await
            }
            (_, false) => self.error("no_hello", "must send hello first").await,
            ("send", true) => {
                let id = object.get("id").and_then(Value::as_str).unwrap_or("");
                match loose_send(&object) {
                    Some(send) => self.handle_send(id, Some(&send)).await,
                    None => self.handle_send(id, None).await,
                }
            }
            // The real broker ignores types it does not know.
            (_, true) => Step::Continue,
        }
    }

    async fn hello(&mut self, checked: Result<Checked, serde_json::Error>, session: bool) -> Step {
        let checked = checked.unwrap_or_else(|_| Err(RefusalCode::Malformed.refusal(session)));
        let now_ms = self.shared.clock_ms();
        let checked = checked.and_then(|(peer, has_cwd)| {
            let mut ledger = self.shared.ledger();
            if !ledger.has_room(&peer.mesh_id, now_ms) {
                return Err(RefusalCode::Capacity.refusal(session));
            }
            let passed = ledger.hello_passed();
            let options = &self.shared.options;
            if let Some((first, code)) = options.refuse_hello_first
                && passed <= u64::from(first)
            {
                return Err(code.refusal(session));
            }
            if let Some((share, code)) = options.refuse_hellos
                && self.faults.chance(share)
            {
                return Err(code.refusal(session));
            }
            Ok((peer, has_cwd))
        });
        match checked {
            Ok((_, false)) => {
                // The real broker's presence insert fails without a cwd: it
                // logs, answers nothing, and leaves the socket open.
                tracing::info!(target: "sluice", "broker: hello without cwd ignored, as the real broker does");
                self.shared.ledger().hello_ignored();
                Step::Continue
            }
            Ok((peer, true)) => self.accept(peer, now_ms).await,
            Err(refusal) => {
                self.shared.ledger().hello(false);
                let _ = self.error(refusal.code, &refusal.message).await;
                Step::Close(close(CloseCode::Policy, refusal.code))
            }
        }
    }

    async fn accept(&mut self, peer: Peer, now_ms: u64) -> Step {
        let peer = Arc::new(Peer {
            connection: self.connection,
            ..peer
        });
        let joined = {
            let mut ledger = self.shared.ledger();
            ledger.hello(true);
            ledger.join(&peer, now_ms)
        };
        if !joined.replaced.is_empty() {
            self.shared.replacements.send_modify(|n| *n += 1);
        }
        // The real hello_ack carries more than its type; clients must
        // ignore what they do not need.
        let ack = json!({
            "type": "hello_ack",
            "presenceId": format!("pres_{}", joined.presence),
            "memberDisplayName": peer.member_id,
            "memberProfile": {"roleTag": null, "groups": [], "messageMode": "push"},
        });
        self.presence = Some(joined.presence);
        self.peer = Some(peer);
        self.feed(wire_text(&ack)).await
    }

    /// A send frame with its `id` (`""` if none); `send` is `None` when it
    /// has no string `targetSpec`.
    async fn handle_send(&mut self, id: &str, send: Option<&wire::Send<'_>>) -> Step {
        let Some(peer) = self.peer.clone() else {
            return self.error("no_hello", "must send hello first").await;
        };
        self.received += 1;
        let options = &self.shared.options;
        let now_ms = self.shared.clock_ms();
        let answer = match send {
            Some(send) => {
                let drop_ack = self.faults.chance(options.drop_acks);
                self.shared.ledger().record_send(
                    &peer,
                    send,
                    options,
                    self.unacked + 1,
                    drop_ack,
                    now_ms,
                )
            }
            None => self
                .shared
                .ledger()
                .record_untargeted_send(&peer, options, now_ms),
        };
        self.shared.sends.send_modify(|count| *count += 1);
        if options
            .close_after_sends
            .is_some_and(|limit| self.received >= limit)
        {
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
            id: id.into(),
            message_id: Some(Text::from(message_id.as_str())),
            queued,
            error: error.as_deref().map(Text::from),
        };
        let Ok(message) = wire::to_message(&ack) else {
            return Step::Continue;
        };
        self.unacked += 1;
        let target = send.map_or("", |send| &send.target_spec);
        let delay = self.shared.options.ack_delay_for(target);
        if delay.is_zero() {
            return self.emit_ack(message, id).await;
        }
        self.arrivals += 1;
        self.delayed.insert(
            (Instant::now() + delay, self.arrivals),
            (id.to_string(), message),
        );
        Step::Continue
    }
}

/// A missing or empty `cwd` counts as missing.
fn has_cwd(cwd: Option<&Text<'_>>) -> bool {
    cwd.is_some_and(|cwd| !cwd.is_empty())
}

/// A send whose fields are not all of the usual shapes: taken as the real
/// broker would (a missing `id` acks as `""`, other fields default to
/// empty) as long as `targetSpec` is a string; `None` when it is not.
fn loose_send(object: &Map<String, Value>) -> Option<wire::Send<'_>> {
    let text = |name: &str| Text::from(object.get(name).and_then(Value::as_str).unwrap_or(""));
    let target_spec = object.get("targetSpec")?.as_str()?;
    Some(wire::Send {
        kind: "send".into(),
        id: text("id"),
        client_message_id: text("client_message_id"),
        request_fingerprint: text("request_fingerprint"),
        target_spec: target_spec.into(),
        priority: text("priority"),
        nonce: text("nonce"),
        ciphertext: text("ciphertext"),
    })
}

fn wire_text(value: &Value) -> tokio_tungstenite::tungstenite::Message {
    tokio_tungstenite::tungstenite::Message::text(value.to_string())
}
