//! Table-driven tests of every rule of the default policy, natively.

use sluice_policy::rules::{Decision, View, decide, hex, judge};
use sluice_policy::{Level, Route, Row, SendResult, SessionState, Settings, Verdict};

const NOW: i64 = 1_767_225_600_000;
const MINUTE: i64 = 60_000;

fn row() -> Row {
    Row {
        rowid: 7,
        id: "row-7".into(),
        client_message_id: "cm-7".into(),
        request_fingerprint: vec![0x00, 0xab, 0x0f, 0xff],
        payload: b"hello".to_vec(),
        enqueued_at: NOW - 1_000,
        attempts: 1,
        mesh: Some("alpha".into()),
        target_spec: Some("@bob".into()),
        nonce: Some("bm9uY2U=".into()),
        ciphertext: Some("Y2lwaGVy".into()),
        priority: Some("now".into()),
        sender_session_pubkey: None,
        defect: None,
    }
}

fn decide_with(row: &Row, meshes: &[&str], sessions: &[(&str, SessionState)]) -> Decision {
    let settings = Settings::default();
    let meshes: Vec<String> = meshes.iter().map(|m| m.to_string()).collect();
    let sessions: Vec<(String, SessionState)> =
        sessions.iter().map(|(k, s)| (k.to_string(), *s)).collect();
    let view = View {
        now: NOW,
        settings: &settings,
        meshes: &meshes,
        sessions: &sessions,
    };
    decide(row, &view, &mut || vec![7u8; 24])
}

fn sent(decision: &Decision) -> &sluice_policy::Dispatch {
    match decision {
        Decision::Send(d) => d,
        other => panic!("expected a send, got {other:?}"),
    }
}

fn dead_reason(decision: &Decision) -> &str {
    match decision {
        Decision::Dead { reason, .. } => reason,
        other => panic!("expected dead, got {other:?}"),
    }
}

#[test]
fn mesh_routing_table() {
    let mut null_mesh = row();
    null_mesh.mesh = None;
    let mut empty_mesh = row();
    empty_mesh.mesh = Some(String::new());
    // (case, row, linked meshes, Ok(route mesh) or Err(dead reason))
    type Case<'a> = (&'a str, Row, Vec<&'a str>, Result<&'a str, &'a str>);
    let cases: Vec<Case> = vec![
        (
            "mesh set and linked",
            row(),
            vec!["alpha", "beta"],
            Ok("alpha"),
        ),
        (
            "mesh set, no link",
            row(),
            vec!["beta"],
            Err("no_broker_for_mesh:alpha"),
        ),
        (
            "mesh NULL, one link",
            null_mesh.clone(),
            vec!["beta"],
            Ok("beta"),
        ),
        (
            "mesh NULL, two links",
            null_mesh.clone(),
            vec!["alpha", "beta"],
            Err("no_broker_for_mesh:null"),
        ),
        (
            "mesh NULL, no link",
            null_mesh,
            vec![],
            Err("no_broker_for_mesh:null"),
        ),
        ("mesh empty, one link", empty_mesh, vec!["beta"], Ok("beta")),
    ];
    for (name, r, meshes, want) in cases {
        let decision = decide_with(&r, &meshes, &[]);
        match want {
            Ok(mesh) => assert_eq!(sent(&decision).route, Route::Daemon(mesh.into()), "{name}"),
            Err(reason) => {
                assert_eq!(dead_reason(&decision), reason, "{name}");
                let Decision::Dead { log: Some(log), .. } = &decision else {
                    panic!("{name}: no log")
                };
                assert_eq!(log.event, "drain_no_broker_for_mesh", "{name}");
            }
        }
    }
}

#[test]
fn session_rows_table() {
    let key = "ab".repeat(32);
    let young = Row {
        sender_session_pubkey: Some(key.clone()),
        ..row()
    };
    let old = Row {
        enqueued_at: NOW - 11 * MINUTE,
        ..young.clone()
    };
    let cases = [
        ("open", young.clone(), SessionState::Open, "send"),
        (
            "connecting, young",
            young.clone(),
            SessionState::Connecting,
            "retry",
        ),
        (
            "connecting, old",
            old.clone(),
            SessionState::Connecting,
            "retry",
        ),
        (
            "absent, young",
            young.clone(),
            SessionState::Absent,
            "retry",
        ),
        (
            "absent, older than 10 min",
            old.clone(),
            SessionState::Absent,
            "session_gone",
        ),
    ];
    for (name, r, state, want) in cases {
        let decision = decide_with(&r, &["alpha"], &[(&key, state)]);
        match (want, &decision) {
            ("send", Decision::Send(d)) => {
                assert_eq!(d.route, Route::Session(key.clone()), "{name}")
            }
            ("retry", Decision::Retry { error, .. }) => {
                assert_eq!(error, "session_ws_not_open", "{name}")
            }
            ("session_gone", Decision::Dead { reason, .. }) => {
                assert_eq!(reason, "session_gone", "{name}")
            }
            _ => panic!("{name}: expected {want}, got {decision:?}"),
        }
    }
}

#[test]
fn session_row_never_gets_a_daemon_route_even_when_only_the_daemon_link_is_up() {
    let key = "cd".repeat(32);
    for state in [
        SessionState::Absent,
        SessionState::Connecting,
        SessionState::Open,
    ] {
        let r = Row {
            sender_session_pubkey: Some(key.clone()),
            ..row()
        };
        if let Decision::Send(d) = decide_with(&r, &["alpha"], &[(&key, state)]) {
            assert_eq!(d.route, Route::Session(key.clone()));
        }
    }
}

#[test]
fn session_not_ready_logs_on_attempt_one_and_every_sixtieth() {
    let key = "ef".repeat(32);
    let logged: Vec<u32> = (1..=180)
        .filter(|&attempts| {
            let r = Row {
                attempts,
                sender_session_pubkey: Some(key.clone()),
                ..row()
            };
            match decide_with(&r, &["alpha"], &[(&key, SessionState::Connecting)]) {
                Decision::Retry { log, .. } => {
                    log.is_some_and(|l| l.event == "drain_session_ws_not_ready")
                }
                other => panic!("expected a retry, got {other:?}"),
            }
        })
        .collect();
    assert_eq!(logged, vec![1, 60, 120, 180]);
}

#[test]
fn session_row_counts_attempts_and_dies_at_the_cap() {
    let settings = Settings::default();
    let r = Row {
        attempts: 25,
        sender_session_pubkey: Some("aa".into()),
        ..row()
    };
    let (verdict, log) =
        sluice_policy::rules::retry(&r, "session_ws_not_open", NOW, &settings, None);
    assert_eq!(
        verdict,
        Verdict::Dead {
            reason: "max_attempts: session_ws_not_open".into()
        }
    );
    assert_eq!(log.map(|l| l.event), Some("drain_max_attempts"));
}

#[test]
fn legacy_row_is_broadcast_with_a_fresh_nonce_and_base64_payload() {
    let r = Row {
        target_spec: None,
        nonce: None,
        ciphertext: None,
        priority: Some("now".into()),
        ..row()
    };
    let d = sent(&decide_with(&r, &["alpha"], &[])).clone();
    assert_eq!(d.target_spec, "*");
    assert_eq!(d.ciphertext, "aGVsbG8=");
    assert_eq!(d.nonce, "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcH");
    assert_eq!(d.priority, "next");
    let empty = Row {
        target_spec: Some(String::new()),
        nonce: Some(String::new()),
        ciphertext: None,
        ..row()
    };
    assert_eq!(sent(&decide_with(&empty, &["alpha"], &[])).target_spec, "*");
}

#[test]
fn partly_routed_row_is_malformed_and_never_broadcast() {
    let cases = [
        (
            Row {
                nonce: None,
                ..row()
            },
            "malformed_row: missing nonce",
        ),
        (
            Row {
                target_spec: None,
                ciphertext: Some(String::new()),
                ..row()
            },
            "malformed_row: missing target_spec, ciphertext",
        ),
        (
            Row {
                target_spec: None,
                nonce: None,
                ..row()
            },
            "malformed_row: missing target_spec, nonce",
        ),
    ];
    for (r, want) in cases {
        let decision = decide_with(&r, &["alpha"], &[]);
        assert_eq!(dead_reason(&decision), want);
    }
}

#[test]
fn defective_row_is_dead_malformed() {
    let r = Row {
        defect: Some("column nonce holds bytes that are not UTF-8".into()),
        ..row()
    };
    assert_eq!(
        dead_reason(&decide_with(&r, &["alpha"], &[])),
        "malformed_row: column nonce holds bytes that are not UTF-8"
    );
}

#[test]
fn priority_mapping() {
    for (given, want) in [
        (Some("now"), "now"),
        (Some("low"), "low"),
        (Some("next"), "next"),
        (Some("urgent"), "next"),
        (Some(""), "next"),
        (None, "next"),
    ] {
        let r = Row {
            priority: given.map(str::to_string),
            ..row()
        };
        assert_eq!(
            sent(&decide_with(&r, &["alpha"], &[])).priority,
            want,
            "{given:?}"
        );
    }
}

#[test]
fn routed_row_goes_out_as_is_with_hex_fingerprint_and_idempotency_key() {
    let d = sent(&decide_with(&row(), &["alpha"], &[])).clone();
    assert_eq!(
        (
            d.target_spec.as_str(),
            d.nonce.as_str(),
            d.ciphertext.as_str()
        ),
        ("@bob", "bm9uY2U=", "Y2lwaGVy")
    );
    assert_eq!(d.request_fingerprint_hex, "00ab0fff");
    assert_eq!(d.client_message_id, "cm-7");
    assert_eq!(d.rowid, 7);
    assert_eq!(hex(&[]), "");
}

#[test]
fn row_older_than_a_day_is_expired_not_sent() {
    let r = Row {
        enqueued_at: NOW - 25 * 60 * MINUTE,
        ..row()
    };
    assert_eq!(dead_reason(&decide_with(&r, &["alpha"], &[])), "expired");
    let r = Row {
        enqueued_at: NOW - 23 * 60 * MINUTE,
        ..row()
    };
    sent(&decide_with(&r, &["alpha"], &[]));
}

#[test]
fn outcomes_table() {
    let s = Settings::default();
    let cases: Vec<(SendResult, u32, Verdict, Option<&str>)> = vec![
        (
            SendResult::Accepted("msg_1".into()),
            1,
            Verdict::Done {
                broker_message_id: "msg_1".into(),
                delivered_at: NOW,
            },
            None,
        ),
        (
            SendResult::Rejected("forbidden".into()),
            1,
            Verdict::Dead {
                reason: "forbidden".into(),
            },
            Some("drain_permanent_failure"),
        ),
        (
            SendResult::Rejected("rate_limited".into()),
            1,
            Verdict::Retry {
                next_attempt_at: NOW + 1_000,
                last_error: "rate_limited".into(),
            },
            None,
        ),
        (
            SendResult::Rejected("rate_limited".into()),
            3,
            Verdict::Retry {
                next_attempt_at: NOW + 4_000,
                last_error: "rate_limited".into(),
            },
            None,
        ),
        (
            SendResult::Rejected("rate_limited".into()),
            25,
            Verdict::Dead {
                reason: "max_attempts: rate_limited".into(),
            },
            Some("drain_max_attempts"),
        ),
        (
            SendResult::Failed("ack_timeout".into()),
            2,
            Verdict::Retry {
                next_attempt_at: NOW + 2_000,
                last_error: "ack_timeout".into(),
            },
            None,
        ),
        (
            SendResult::Failed("invalid frame".into()),
            1,
            Verdict::Retry {
                next_attempt_at: NOW + 1_000,
                last_error: "invalid frame".into(),
            },
            None,
        ),
        (
            SendResult::Failed("link_closed".into()),
            25,
            Verdict::Dead {
                reason: "max_attempts: link_closed".into(),
            },
            Some("drain_max_attempts"),
        ),
    ];
    for (result, attempts, want, event) in cases {
        let r = Row { attempts, ..row() };
        let (verdict, log) = judge(&r, &result, NOW, &s);
        assert_eq!(verdict, want, "{result:?} at attempt {attempts}");
        assert_eq!(log.as_ref().map(|l| l.event), event, "{result:?}");
        if let Some(log) = log {
            assert!(log.level >= Level::Info);
            assert_eq!(log.fields[0], ("id".to_string(), "row-7".to_string()));
        }
    }
}

#[test]
fn retry_backoff_for_attempts_one_to_thirteen() {
    let s = Settings::default();
    let want = [
        1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000, 30_000, 30_000, 30_000, 30_000, 30_000,
        30_000,
    ];
    for (i, wait) in want.iter().enumerate() {
        let r = Row {
            attempts: i as u32 + 1,
            ..row()
        };
        let (verdict, _) = judge(&r, &SendResult::Rejected("timeout".into()), NOW, &s);
        assert_eq!(
            verdict,
            Verdict::Retry {
                next_attempt_at: NOW + wait,
                last_error: "timeout".into()
            },
            "attempt {}",
            i + 1
        );
    }
}
