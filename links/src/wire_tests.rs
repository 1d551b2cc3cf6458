//! Field names on the wire are the broker's, not ours: these tests pin them
//! with hand-written JSON so a rename in a struct cannot slip through.

use super::*;
use serde_json::{Value, json};

fn as_json<T: Serialize>(frame: &T) -> Value {
    serde_json::to_value(frame).expect("frames serialize")
}

#[test]
fn hello_uses_the_brokers_camel_case_field_names() {
    let hello = Hello {
        kind: "hello".into(),
        mesh_id: "m".into(),
        member_id: "u".into(),
        pubkey: "p".into(),
        session_id: "s".into(),
        pid: 7,
        cwd: Some("/w".into()),
        hostname: "h".into(),
        peer_type: "ai".into(),
        channel: "sluice".into(),
        timestamp: 12,
        signature: "sig".into(),
    };
    let expected = json!({"type":"hello","meshId":"m","memberId":"u","pubkey":"p","sessionId":"s","pid":7,
        "cwd":"/w","hostname":"h","peerType":"ai","channel":"sluice","timestamp":12,"signature":"sig"});
    assert_eq!(as_json(&hello), expected);
}

#[test]
fn send_keeps_snake_case_ids_and_camel_case_target() {
    let send = Send {
        kind: "send".into(),
        id: "c1".into(),
        client_message_id: "c1".into(),
        request_fingerprint: "ab".into(),
        target_spec: "*".into(),
        priority: "next".into(),
        nonce: "n".into(),
        ciphertext: "x".into(),
    };
    let expected = json!({"type":"send","id":"c1","client_message_id":"c1","request_fingerprint":"ab",
        "targetSpec":"*","priority":"next","nonce":"n","ciphertext":"x"});
    assert_eq!(as_json(&send), expected);
}

#[test]
fn an_ack_parses_with_escaped_and_plain_strings() {
    let parsed = parse_inbound(r#"{"type":"ack","id":"a\"b","messageId":"msg_1","queued":true}"#);
    assert_eq!(
        parsed,
        Inbound::Ack {
            id: Text::from("a\"b"),
            message_id: Some(Text::from("msg_1")),
            error: None
        }
    );
    let rejected = parse_inbound(
        r#"{"type":"ack","id":"x","messageId":null,"queued":false,"error":"forbidden"}"#,
    );
    assert_eq!(
        rejected,
        Inbound::Ack {
            id: Text::from("x"),
            message_id: None,
            error: Some(Text::from("forbidden"))
        }
    );
}

#[test]
fn an_ack_borrows_its_id_when_there_is_nothing_to_unescape() {
    let text = r#"{"type":"ack","id":"plain","messageId":"msg_2","queued":true}"#;
    let Inbound::Ack { id, .. } = parse_inbound(text) else {
        panic!("not an ack")
    };
    assert!(matches!(id.0, Cow::Borrowed(_)));
}

#[test]
fn hello_ack_with_extra_fields_is_still_a_hello_ack() {
    let text = r#"{"type":"hello_ack","presenceId":"p1","displayName":"d","profile":{"a":1},"message":{"nested":true}}"#;
    assert_eq!(parse_inbound(text), Inbound::HelloAck);
}

#[test]
fn unrelated_or_broken_frames_are_other_or_garbage_never_errors() {
    assert_eq!(
        parse_inbound(r#"{"type":"push","id":5,"body":"x"}"#),
        Inbound::Other(Text::from("push"))
    );
    assert_eq!(
        parse_inbound(r#"{"type":"inbound","id":"c1"}"#),
        Inbound::Other(Text::from("inbound"))
    );
    assert_eq!(parse_inbound("not json {"), Inbound::Garbage);
    assert_eq!(parse_inbound(r#"{"no":"type"}"#), Inbound::Garbage);
    assert_eq!(parse_inbound(r#"{"type":"ack","id":7}"#), Inbound::Garbage);
}

#[test]
fn an_error_frame_carries_code_and_message() {
    let parsed = parse_inbound(r#"{"type":"error","code":"bad_signature","message":"nope"}"#);
    assert_eq!(
        parsed,
        Inbound::Error {
            code: Text::from("bad_signature"),
            message: Text::from("nope")
        }
    );
}
