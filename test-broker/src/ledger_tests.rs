//! Each send's answer under the real broker's rules and the test switches.

use super::*;
use crate::rate_limit::RateLimit;

const PEER_KEY: &str = "ab";

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
        message_id: id.to_string(),
        queued: true,
        error: None,
    }
}

fn rejected(error: &str) -> Answer {
    Answer::Ack {
        message_id: String::new(),
        queued: false,
        error: Some(error.to_string()),
    }
}

fn peer(connection: u64) -> Arc<Peer> {
    Arc::new(Peer {
        mesh_id: "mesh".into(),
        pubkey: "11".into(),
        session_id: format!("s{connection}"),
        connection,
        ..Peer::default()
    })
}

/// A send at time 0 with the ack kept.
fn record(ledger: &mut Ledger, cmid: &str, target: &str, options: &BrokerOptions) -> Answer {
    ledger.record_send(&peer(1), &send(cmid, target), options, 1, false, 0)
}

#[test]
fn a_repeated_client_message_id_is_a_new_message_every_time() {
    let mut ledger = Ledger::default();
    let options = BrokerOptions::default();
    assert_eq!(record(&mut ledger, "a", "*", &options), accepted("msg_1"));
    assert_eq!(record(&mut ledger, "b", "*", &options), accepted("msg_2"));
    assert_eq!(record(&mut ledger, "a", "*", &options), accepted("msg_3"));
    let stats = ledger.snapshot();
    assert_eq!(stats.receipts.get("a"), Some(&2));
    assert_eq!(stats.message_ids["a"], "msg_3");
    assert_eq!(stats.all_message_ids["a"], ["msg_1", "msg_3"]);
    assert_eq!((stats.sends, stats.accepted, stats.rejected), (3, 3, 0));
}

#[test]
fn transient_rejections_end_after_n_sends_of_each_id() {
    let mut ledger = Ledger::default();
    let options = BrokerOptions {
        reject_transient: vec![("@flaky".into(), 2, "rate_limited".into())],
        ..BrokerOptions::default()
    };
    let flaky = rejected("rate_limited");
    assert_eq!(record(&mut ledger, "a", "@flaky", &options), flaky);
    assert_eq!(record(&mut ledger, "b", "@flaky", &options), flaky);
    assert_eq!(record(&mut ledger, "a", "@flaky", &options), flaky);
    assert_eq!(
        record(&mut ledger, "a", "@flaky", &options),
        accepted("msg_1")
    );
    assert_eq!(ledger.snapshot().rejected, 3);
}

#[test]
fn permanent_and_silent_targets_are_answered_as_configured() {
    let mut ledger = Ledger::default();
    let options = BrokerOptions {
        reject_permanent: vec![("@blocked".into(), "blocked by recipient grants".into())],
        silent_targets: vec!["@void".into()],
        ..BrokerOptions::default()
    };
    assert_eq!(
        record(&mut ledger, "a", "@blocked", &options),
        rejected("blocked by recipient grants")
    );
    let silent = ledger.record_send(&peer(1), &send("b", "@void"), &options, 9, false, 0);
    assert_eq!(silent, Answer::Silence);
    let stats = ledger.snapshot();
    assert_eq!(stats.sends, 2);
    assert_eq!(
        stats.max_unacked, 1,
        "a silent send never counts as awaiting an ack"
    );
    assert_eq!(stats.last_send["b"].target_spec, "@void");
}

#[test]
fn the_rate_limit_comes_first_and_every_other_send_spends_a_token() {
    let mut ledger = Ledger::default();
    let limit = RateLimit {
        per_minute: 60,
        burst: 3,
    };
    let options = BrokerOptions {
        rate_limit: Some(limit),
        reject_permanent: vec![("@blocked".into(), "blocked".into())],
        ..BrokerOptions::default()
    };
    assert_eq!(
        record(&mut ledger, "a", "@blocked", &options),
        rejected("blocked")
    );
    assert_eq!(
        record(&mut ledger, "b", PEER_KEY, &options),
        rejected(NO_CONNECTED_PEER)
    );
    assert_eq!(
        ledger.record_untargeted_send(&peer(2), &options, 0),
        Answer::Silence
    );
    let limited = rejected("rate_limit: max 60 msg/min (burst 3) — slow down");
    assert_eq!(record(&mut ledger, "c", "*", &options), limited);
    assert_eq!(
        ledger.record_untargeted_send(&peer(2), &options, 0),
        limited
    );
    let later = ledger.record_send(&peer(1), &send("c", "*"), &options, 1, false, 1_000);
    assert_eq!(later, accepted("msg_1"), "a second refilled one token");
    let stats = ledger.snapshot();
    assert_eq!(
        (stats.rate_limited, stats.rejected, stats.sends_untargeted),
        (2, 4, 1)
    );
}

#[test]
fn direct_sends_need_a_peer_on_another_connection_or_an_online_peer() {
    let mut ledger = Ledger::default();
    let options = BrokerOptions::default();
    let online = BrokerOptions {
        online_peers: vec![PEER_KEY.into()],
        ..BrokerOptions::default()
    };
    assert_eq!(
        record(&mut ledger, "a", PEER_KEY, &options),
        rejected(NO_CONNECTED_PEER)
    );
    assert_eq!(
        record(&mut ledger, "b", PEER_KEY, &online),
        accepted("msg_1")
    );
    assert_eq!(
        record(&mut ledger, "c", "@nobody", &options),
        accepted("msg_2")
    );
    assert_eq!(
        record(&mut ledger, "d", "#topic", &options),
        accepted("msg_3")
    );
    assert_eq!(
        record(&mut ledger, "e", "", &options),
        rejected(NO_CONNECTED_PEER)
    );
    let holder = Arc::new(Peer {
        pubkey: PEER_KEY.into(),
        ..Peer::clone(&peer(2))
    });
    ledger.join(&holder, 0);
    assert_eq!(
        record(&mut ledger, "f", PEER_KEY, &options),
        accepted("msg_4")
    );
    let own = ledger.record_send(&holder, &send("g", PEER_KEY), &options, 1, false, 0);
    assert_eq!(
        own,
        rejected(NO_CONNECTED_PEER),
        "its own key, no other session"
    );
}

#[test]
fn a_dropped_ack_is_still_an_accepted_message() {
    let mut ledger = Ledger::default();
    let options = BrokerOptions::default();
    let answer = ledger.record_send(&peer(1), &send("a", "*"), &options, 1, true, 0);
    assert_eq!(answer, Answer::Silence);
    let stats = ledger.snapshot();
    assert_eq!(
        (stats.accepted, stats.acks_dropped, stats.max_unacked),
        (1, 1, 0)
    );
    assert_eq!(stats.message_ids["a"], "msg_1");
}

#[test]
fn forget_messages_keeps_the_counts_and_no_record_of_each_message() {
    let mut ledger = Ledger::default();
    let options = BrokerOptions {
        forget_messages: true,
        ..BrokerOptions::default()
    };
    for cmid in ["a", "b", "a"] {
        assert!(matches!(
            record(&mut ledger, cmid, "*", &options),
            Answer::Ack { error: None, .. }
        ));
    }
    let stats = ledger.snapshot();
    assert_eq!((stats.sends, stats.accepted), (3, 3));
    assert!(stats.receipts.is_empty(), "{:?}", stats.receipts);
    assert!(stats.last_send.is_empty());
}
