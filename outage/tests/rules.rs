//! Table tests of the rules the outage-aware policy changes, and of the
//! ones it must keep as the default policy has them.

use sluice_outage_policy::rules::{OutageRules, is_outage_failure, mesh_recheck_at};
use sluice_policy::rules::{Decision, View, decide, judge, retry};
use sluice_policy::{Row, Rules, SendResult, SessionState, Settings, Verdict};

const NOW: i64 = 1_767_225_600_000;
const RECHECK_MS: i64 = 2_000;
const RULES: OutageRules = OutageRules {
    recheck_ms: RECHECK_MS,
};

fn row(attempts: u32, session: Option<&str>) -> Row {
    Row {
        rowid: 7,
        id: "row-7".into(),
        client_message_id: "cm-7".into(),
        enqueued_at: NOW - 1_000,
        attempts,
        mesh: Some("alpha".into()),
        target_spec: Some("@bob".into()),
        nonce: Some("bm9uY2U=".into()),
        ciphertext: Some("Y2lwaGVy".into()),
        sender_session_pubkey: session.map(str::to_string),
        ..Row::default()
    }
}

/// Runs `f` with a view of one linked mesh and the session `k` in `state`.
fn with_view<T>(state: SessionState, f: impl FnOnce(&View<'_>) -> T) -> T {
    let settings = Settings::default();
    let meshes = vec!["alpha".to_string()];
    let sessions = vec![("k".to_string(), state)];
    f(&View {
        now: NOW,
        settings: &settings,
        meshes: &meshes,
        sessions: &sessions,
    })
}

fn hold(next_attempt_at: i64, error: &str) -> Verdict {
    Verdict::Hold {
        next_attempt_at,
        last_error: Some(error.into()),
    }
}

#[test]
fn which_failures_mean_the_link_never_carried_the_send() {
    let table = [
        ("link_not_open", true),
        ("link_not_open: no session link", true),
        ("link_not_open: unknown mesh beta", true),
        ("link_closed", true),
        ("write_failed: broken pipe", true),
        ("ack_timeout", false),
        ("rate_budget_empty", false),
        ("closed by peer", false),
        ("", false),
    ];
    for (error, want) in table {
        assert_eq!(is_outage_failure(error), want, "{error:?}");
    }
}

#[test]
fn the_recheck_time_is_the_next_multiple_of_the_period() {
    let table = [
        (0, 2_000),
        (1, 2_000),
        (1_999, 2_000),
        (2_000, 4_000),
        (NOW + 1, NOW + 2_000),
        (-1, 0),
    ];
    for (now, want) in table {
        assert_eq!(mesh_recheck_at(now, RECHECK_MS), want, "now {now}");
    }
    assert_eq!(mesh_recheck_at(5, 0), 6, "a zero period reads as 1 ms");
    // Rows held in two ticks of one period come back at the same instant.
    assert_eq!(
        mesh_recheck_at(NOW + 100, RECHECK_MS),
        mesh_recheck_at(NOW + 1_900, RECHECK_MS)
    );
}

#[test]
fn transport_failures_of_a_down_link_hold_without_an_attempt() {
    let settings = Settings::default();
    let after = NOW + 30;
    // (result, row attempts, expected verdict)
    let cases = [
        ("link_not_open", 1, hold(NOW + 2_000, "link_not_open")),
        ("link_closed", 24, hold(NOW + 2_000, "link_closed")),
        (
            "write_failed: reset",
            25,
            hold(NOW + 2_000, "write_failed: reset"),
        ),
    ];
    for (error, attempts, want) in cases {
        let result = SendResult::Failed(error.into());
        let (verdict, log) = with_view(SessionState::Open, |view| {
            RULES.judge(&row(attempts, None), &result, view, after)
        });
        assert_eq!(verdict, want, "{error} at attempt {attempts}");
        assert_eq!(log, None, "the tick logs transport failures once per link");
    }
    // An ack timeout went out: it is the default's retry, and its cap.
    for attempts in [1, 25] {
        let result = SendResult::Failed("ack_timeout".into());
        let got = with_view(SessionState::Open, |view| {
            RULES.judge(&row(attempts, None), &result, view, after)
        });
        assert_eq!(got, judge(&row(attempts, None), &result, after, &settings));
    }
    let (capped, _) = with_view(SessionState::Open, |view| {
        RULES.judge(
            &row(25, None),
            &SendResult::Failed("ack_timeout".into()),
            view,
            after,
        )
    });
    assert_eq!(
        capped,
        Verdict::Dead {
            reason: "max_attempts: ack_timeout".into()
        }
    );
}

#[test]
fn every_other_result_is_judged_as_by_the_default() {
    let settings = Settings::default();
    let results = [
        SendResult::Accepted("msg-1".into()),
        SendResult::Rejected("forbidden".into()),
        SendResult::Rejected("no connected peer for target".into()),
        SendResult::Rejected("internal error".into()),
        SendResult::Failed("ack_timeout".into()),
    ];
    for attempts in [1, 3, 25] {
        for result in &results {
            let r = row(attempts, None);
            let got = with_view(SessionState::Open, |view| {
                RULES.judge(&r, result, view, NOW + 9)
            });
            assert_eq!(got, judge(&r, result, NOW + 9, &settings), "{result:?}");
        }
    }
}

#[test]
fn session_rows_hold_while_their_link_connects_and_die_as_before_otherwise() {
    let settings = Settings::default();
    let after = NOW + 10;
    // Connecting: held to the recheck time, quietly, however many attempts.
    for attempts in [1, 25, 60] {
        let r = row(attempts, Some("k"));
        let (decision, verdict) = with_view(SessionState::Connecting, |view| {
            let decision = RULES.decide(&r, view, &mut Vec::new);
            let Decision::Retry { error, .. } = &decision else {
                panic!("expected a row kept back, got {decision:?}");
            };
            (decision.clone(), RULES.unsent(&r, error, view, after))
        });
        assert_eq!(
            decision,
            Decision::Retry {
                error: "session_ws_not_open".into(),
                log: None
            }
        );
        assert_eq!(verdict, (hold(NOW + 2_000, "session_ws_not_open"), None));
    }
    // Absent (nobody registered it): the default's retry, cap and log.
    let r = row(1, Some("k"));
    let (decision, verdict) = with_view(SessionState::Absent, |view| {
        (
            RULES.decide(&r, view, &mut Vec::new),
            RULES.unsent(&r, "session_ws_not_open", view, after),
        )
    });
    let default = with_view(SessionState::Absent, |view| decide(&r, view, &mut Vec::new));
    assert_eq!(decision, default);
    assert!(matches!(decision, Decision::Retry { log: Some(_), .. }));
    assert_eq!(
        verdict,
        retry(&r, "session_ws_not_open", after, &settings, None)
    );
    // Absent and older than ten minutes: dead `session_gone`, as before.
    let mut old = row(1, Some("k"));
    old.enqueued_at = NOW - 11 * 60_000;
    let gone = with_view(SessionState::Absent, |view| {
        RULES.decide(&old, view, &mut Vec::new)
    });
    assert!(
        matches!(&gone, Decision::Dead { reason, .. } if reason == "session_gone"),
        "{gone:?}"
    );
}

#[test]
fn expiry_routing_and_payload_rules_are_the_defaults() {
    let mut expired = row(1, Some("k"));
    expired.enqueued_at = NOW - 25 * 60 * 60_000;
    let mut unrouted = row(1, None);
    unrouted.mesh = Some("elsewhere".into());
    let mut partial = row(1, None);
    partial.nonce = None;
    let mut legacy = row(1, None);
    (legacy.target_spec, legacy.nonce, legacy.ciphertext) = (None, None, None);
    for (case, r) in [
        ("expired, even while its link connects", expired),
        ("no link for its mesh", unrouted),
        ("partial routing columns", partial),
        ("legacy", legacy),
        ("routed", row(1, None)),
        ("session row", row(1, Some("k"))),
    ] {
        for state in [SessionState::Connecting, SessionState::Open] {
            if case == "session row" && state == SessionState::Connecting {
                continue; // the rule this policy changes: tested above
            }
            let ours = with_view(state, |view| RULES.decide(&r, view, &mut || vec![7; 24]));
            let theirs = with_view(state, |view| decide(&r, view, &mut || vec![7; 24]));
            if case.starts_with("expired") {
                assert!(
                    matches!(&ours, Decision::Dead { reason, .. } if reason == "expired"),
                    "{case}: {ours:?}"
                );
            }
            assert_eq!(ours, theirs, "{case} ({state:?})");
        }
    }
}
