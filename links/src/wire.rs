//! The JSON text frames of the claudemesh wire protocol, both directions.
//!
//! Owns: field names and shapes (one struct per frame, shared by the link and
//! the test broker), and parsing with borrowed strings. Does not own: what a
//! frame means to a link (`connection`, `link`) or to the broker (`broker`).
//!
//! Typed `Serialize` structs and borrowed parsing were measured faster than
//! `serde_json::Value` (906k vs 612k acks/s, STACK-NOTES).

use serde::de::{Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use std::borrow::Cow;
use std::fmt;
use std::ops::Deref;
use tokio_tungstenite::tungstenite::Message;

/// A JSON string field that borrows from the frame when it has no escapes.
///
/// serde's own `Cow<str>` only borrows as a direct field, never inside an
/// `Option`; this type borrows in both places.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Text<'a>(pub Cow<'a, str>);

impl Deref for Text<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl<'a> From<&'a str> for Text<'a> {
    fn from(value: &'a str) -> Text<'a> {
        Text(Cow::Borrowed(value))
    }
}

impl Serialize for Text<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Text<'a>, D::Error> {
        struct TextVisitor;
        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, value: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(value)))
            }
            fn visit_str<E>(self, value: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(value.to_owned())))
            }
            fn visit_string<E>(self, value: String) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(value)))
            }
        }
        deserializer.deserialize_str(TextVisitor)
    }
}

/// `{type:"hello", …}`: a daemon link introduces itself as a member.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Hello<'a> {
    #[serde(rename = "type", borrow)]
    pub kind: Text<'a>,
    #[serde(borrow)]
    pub mesh_id: Text<'a>,
    #[serde(borrow)]
    pub member_id: Text<'a>,
    #[serde(borrow)]
    pub pubkey: Text<'a>,
    #[serde(default, borrow)]
    pub session_id: Text<'a>,
    #[serde(default)]
    pub pid: u32,
    /// The client's working directory. The real broker stores it with the
    /// presence and answers nothing at all to a hello without it.
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<Text<'a>>,
    #[serde(default, borrow)]
    pub hostname: Text<'a>,
    #[serde(default, borrow)]
    pub peer_type: Text<'a>,
    #[serde(default, borrow)]
    pub channel: Text<'a>,
    /// Milliseconds since the Unix epoch; the broker bounds its skew.
    pub timestamp: i64,
    /// Hex Ed25519 over `meshId|memberId|pubkey|timestamp`.
    #[serde(borrow)]
    pub signature: Text<'a>,
}

/// A member's permission for a session key, carried in a session hello.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attestation<'a> {
    #[serde(borrow)]
    pub session_pubkey: Text<'a>,
    #[serde(borrow)]
    pub parent_member_pubkey: Text<'a>,
    pub expires_at: i64,
    #[serde(borrow)]
    pub signature: Text<'a>,
}

/// `{type:"session_hello", …}`: a session link, signed by the session key.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionHello<'a> {
    #[serde(rename = "type", borrow)]
    pub kind: Text<'a>,
    #[serde(borrow)]
    pub mesh_id: Text<'a>,
    #[serde(default, borrow)]
    pub parent_member_id: Text<'a>,
    #[serde(borrow)]
    pub parent_member_pubkey: Text<'a>,
    #[serde(borrow)]
    pub session_pubkey: Text<'a>,
    #[serde(borrow)]
    pub parent_attestation: Attestation<'a>,
    #[serde(default, borrow)]
    pub session_id: Text<'a>,
    #[serde(default)]
    pub pid: u32,
    /// The client's working directory. The real broker stores it with the
    /// presence and answers nothing at all to a hello without it.
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<Text<'a>>,
    #[serde(default, borrow)]
    pub hostname: Text<'a>,
    #[serde(default, borrow)]
    pub peer_type: Text<'a>,
    #[serde(default, borrow)]
    pub channel: Text<'a>,
    pub timestamp: i64,
    #[serde(borrow)]
    pub signature: Text<'a>,
}

/// `{type:"send", …}`: one outbox row. `id` and `client_message_id` are both
/// the row's idempotency key; the two snake-case names are the broker's own.
#[derive(Debug, Serialize, Deserialize)]
pub struct Send<'a> {
    #[serde(rename = "type", borrow)]
    pub kind: Text<'a>,
    #[serde(borrow)]
    pub id: Text<'a>,
    #[serde(default, borrow)]
    pub client_message_id: Text<'a>,
    #[serde(default, borrow)]
    pub request_fingerprint: Text<'a>,
    #[serde(rename = "targetSpec", borrow)]
    pub target_spec: Text<'a>,
    #[serde(default, borrow)]
    pub priority: Text<'a>,
    #[serde(default, borrow)]
    pub nonce: Text<'a>,
    #[serde(default, borrow)]
    pub ciphertext: Text<'a>,
}

/// `{type:"ack", id, messageId, queued, error?}`; a non-empty `error` is a rejection.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ack<'a> {
    #[serde(rename = "type", borrow)]
    pub kind: Text<'a>,
    #[serde(borrow)]
    pub id: Text<'a>,
    #[serde(default, borrow)]
    pub message_id: Option<Text<'a>>,
    #[serde(default)]
    pub queued: bool,
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    pub error: Option<Text<'a>>,
}

/// `{type:"error", code, message}`: a refused hello or an unusable frame.
#[derive(Debug, Serialize, Deserialize)]
pub struct ErrorFrame<'a> {
    #[serde(rename = "type", borrow)]
    pub kind: Text<'a>,
    #[serde(default, borrow)]
    pub code: Text<'a>,
    #[serde(default, borrow)]
    pub message: Text<'a>,
}

/// Only the `type` of a frame: the fallback when a frame has the right type
/// but fields of unexpected shapes (which must not break a link).
#[derive(Debug, Deserialize)]
pub struct Envelope<'a> {
    #[serde(rename = "type", borrow)]
    pub kind: Text<'a>,
}

/// What a link makes of one text frame from the broker.
#[derive(Debug, PartialEq, Eq)]
pub enum Inbound<'a> {
    Ack {
        id: Text<'a>,
        message_id: Option<Text<'a>>,
        error: Option<Text<'a>>,
    },
    HelloAck,
    Error {
        code: Text<'a>,
        message: Text<'a>,
    },
    /// Valid JSON of another type (`push`, `inbound`, …): not the drain's business.
    Other(Text<'a>),
    /// Not JSON, no `type`, or an ack whose fields have the wrong shape.
    Garbage,
}

/// Reads one text frame from the broker; never fails, since no frame may
/// break a link.
pub fn parse_inbound(text: &str) -> Inbound<'_> {
    // Acks are the hot path: one parse, borrowed strings.
    if let Ok(ack) = serde_json::from_str::<Ack<'_>>(text)
        && &*ack.kind == "ack"
    {
        return Inbound::Ack {
            id: ack.id,
            message_id: ack.message_id,
            error: ack.error,
        };
    }
    let Ok(envelope) = serde_json::from_str::<Envelope<'_>>(text) else {
        return Inbound::Garbage;
    };
    match &*envelope.kind {
        "hello_ack" => Inbound::HelloAck,
        "error" => match serde_json::from_str::<ErrorFrame<'_>>(text) {
            Ok(error) => Inbound::Error {
                code: error.code,
                message: error.message,
            },
            Err(_) => Inbound::Error {
                code: Text::from("unknown"),
                message: Text::from(text),
            },
        },
        "ack" => Inbound::Garbage,
        _ => Inbound::Other(envelope.kind),
    }
}

/// One frame as a WebSocket text message.
pub fn to_message<T: Serialize>(frame: &T) -> Result<Message, serde_json::Error> {
    Ok(Message::text(serde_json::to_string(frame)?))
}

#[cfg(test)]
#[path = "wire_tests.rs"]
mod tests;
