//! Frames a busy real broker sends that are not acks, for `chatter` mode.
//!
//! Owns: the rotation of distracting frames. Does not own: when they are
//! sent (`client` puts one before each ack).

use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

/// Kinds of distracting frame, sent in turn.
const CHATTER_KINDS: u64 = 7;

/// The distracting frame for turn `turn`, next to the ack of send `id`.
///
/// Some are built to trip a careless client: an `inbound` frame that carries
/// the id of a waiting send (only `ack` frames settle sends), an ack for an
/// id nobody sent, a second `hello_ack`.
pub(crate) fn chatter_frame(turn: u64, id: &str) -> Message {
    match turn % CHATTER_KINDS {
        0 => Message::text("}{ this is not json"),
        1 => Message::binary(vec![0xde, 0xad, 0xbe, 0xef]),
        2 => Message::text(json!({"type": "push", "id": 7, "from": "mem_other", "ciphertext": "aGk="}).to_string()),
        3 => Message::text(json!({"type": "inbound", "id": id, "messageId": "msg_not_an_ack", "queued": false}).to_string()),
        4 => Message::Ping(b"chatter".to_vec().into()),
        5 => Message::text(json!({"type": "ack", "id": "chatter-never-sent", "messageId": "msg_0", "queued": true}).to_string()),
        _ => Message::text(json!({"type": "hello_ack", "presenceId": "again", "displayName": "chatter"}).to_string()),
    }
}
