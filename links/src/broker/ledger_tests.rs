//! Each send's answer under the rejection and dedupe switches.

use super::*;

fn send<'a>(cmid: &'a str, target: &'a str) -> wire::Send<'a> {
    wire::Send {
        kind: "send".into(),
        id: cmid.into(),
        client_message_id: cmid.into(),
        request_fingerprint: "ff".into(),
        target_spec: target.into(),
        priority: "next".into(),
        nonce: "n".into(),
        ciphertext: "c".into(),
    }
}

fn accepted(id: &str) -> Answer {
    Answer::Ack {
        message_id: Some(id.to_string()),
        queued: true,
        error: None,
    }
}

fn rejected(error: &str) -> Answer {
    Answer::Ack {
        message_id: None,
        queued: false,
        error: Some(error.to_string()),
    }
}

#[test]
fn a_repeated_client_message_id_gets_its_first_message_id_and_counts_twice() {
    let mut ledger = Ledger::default();
    let peer = Arc::new(Peer::default());
    let options = BrokerOptions::default();
    assert_eq!(
        ledger.record_send(&peer, &send("a", "*"), &options, 1),
        accepted("msg_1")
    );
    assert_eq!(
        ledger.record_send(&peer, &send("b", "*"), &options, 1),
        accepted("msg_2")
    );
    assert_eq!(
        ledger.record_send(&peer, &send("a", "*"), &options, 1),
        accepted("msg_1")
    );
    let stats = ledger.snapshot();
    assert_eq!(stats.receipts.get("a"), Some(&2));
    assert_eq!(stats.receipts.get("b"), Some(&1));
    assert_eq!((stats.sends, stats.accepted, stats.rejected), (3, 3, 0));
}

#[test]
fn transient_rejections_end_after_n_sends_of_each_id() {
    let mut ledger = Ledger::default();
    let peer = Arc::new(Peer::default());
    let options = BrokerOptions {
        reject_transient: vec![("@flaky".into(), 2, "rate_limited".into())],
        ..BrokerOptions::default()
    };
    assert_eq!(
        ledger.record_send(&peer, &send("a", "@flaky"), &options, 1),
        rejected("rate_limited")
    );
    assert_eq!(
        ledger.record_send(&peer, &send("b", "@flaky"), &options, 1),
        rejected("rate_limited")
    );
    assert_eq!(
        ledger.record_send(&peer, &send("a", "@flaky"), &options, 1),
        rejected("rate_limited")
    );
    assert_eq!(
        ledger.record_send(&peer, &send("a", "@flaky"), &options, 1),
        accepted("msg_1")
    );
    assert_eq!(ledger.snapshot().rejected, 3);
}

#[test]
fn permanent_and_silent_targets_are_answered_as_configured() {
    let mut ledger = Ledger::default();
    let peer = Arc::new(Peer::default());
    let options = BrokerOptions {
        reject_permanent: vec![("@blocked".into(), "blocked by recipient grants".into())],
        silent_targets: vec!["@void".into()],
        ..BrokerOptions::default()
    };
    assert_eq!(
        ledger.record_send(&peer, &send("a", "@blocked"), &options, 1),
        rejected("blocked by recipient grants")
    );
    assert_eq!(
        ledger.record_send(&peer, &send("b", "@void"), &options, 9),
        Answer::Silence
    );
    let stats = ledger.snapshot();
    assert_eq!(stats.sends, 2);
    assert_eq!(
        stats.max_unacked, 1,
        "a silent send never counts as awaiting an ack"
    );
    assert_eq!(
        stats.last_send.get("b").map(|s| s.target_spec.as_str()),
        Some("@void")
    );
}
