//! Properties of the pure policy over generated rows, meshes, session states
//! and broker answers: the backoff is capped and monotone, a session row
//! never gets a daemon route, and a tick settles every claimed row exactly
//! once with the attempts its claim counted.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use proptest::prelude::*;
use sluice_policy::rules::{Decision, View, decide, judge};
use sluice_policy::{
    Answer, Call, ClaimSize, MeshLink, Outcome, Reply, Route, Row, SendResult, SessionState,
    Settings, TickReport, Verdict, tick,
};

const NOW: i64 = 1_767_225_600_000;
const DAY_MS: i64 = 86_400_000;
const MESHES: [&str; 3] = ["alpha", "beta", "gamma"];
const SESSIONS: [&str; 3] = ["k1", "k2", "k3"];

fn settings(pairs: &[(&str, String)]) -> Settings {
    let pairs: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    Settings::from_pairs(&pairs).unwrap()
}

/// NULL, empty, or one of `choices` (plus one nobody knows).
fn column(choices: &'static [&'static str]) -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        2 => Just(None),
        1 => Just(Some(String::new())),
        1 => Just(Some("unknown".to_string())),
        6 => proptest::sample::select(choices).prop_map(|s| Some(s.to_string())),
    ]
}

fn routing() -> impl Strategy<Value = Option<String>> {
    prop_oneof![1 => Just(None), 1 => Just(Some(String::new())), 6 => "[a-z@#*]{1,8}".prop_map(Some)]
}

prop_compose! {
    fn any_row(rowid: i64)(
        mesh in column(&MESHES),
        session in column(&SESSIONS),
        target_spec in routing(),
        nonce in routing(),
        ciphertext in routing(),
        priority in column(&["now", "next", "low"]),
        age_ms in 0..2 * DAY_MS,
        attempts in 1u32..40,
        defect in proptest::option::weighted(0.05, Just("payload: NULL".to_string())),
    ) -> Row {
        Row {
            rowid,
            id: format!("row-{rowid}"),
            client_message_id: format!("cm-{rowid}"),
            request_fingerprint: vec![rowid as u8, 0xab],
            payload: b"payload".to_vec(),
            enqueued_at: NOW - age_ms,
            attempts,
            mesh,
            target_spec,
            nonce,
            ciphertext,
            priority,
            sender_session_pubkey: session,
            defect,
        }
    }
}

fn session_state() -> impl Strategy<Value = SessionState> {
    prop_oneof![
        Just(SessionState::Absent),
        Just(SessionState::Connecting),
        Just(SessionState::Open)
    ]
}

fn meshes() -> impl Strategy<Value = Vec<String>> {
    proptest::sample::subsequence(MESHES.to_vec(), 0..=3)
        .prop_map(|m| m.into_iter().map(str::to_string).collect())
}

fn send_result() -> impl Strategy<Value = SendResult> {
    prop_oneof![
        3 => "[a-z0-9]{1,6}".prop_map(SendResult::Accepted),
        1 => proptest::sample::select(vec!["forbidden", "rate_limited", "payload too large", "no connected peer for target", "weird"])
            .prop_map(|e| SendResult::Rejected(e.to_string())),
        1 => proptest::sample::select(vec!["ack_timeout", "link_closed", "link_not_open"]).prop_map(|e| SendResult::Failed(e.to_string())),
    ]
}

proptest! {
    #[test]
    fn backoff_never_exceeds_its_cap_and_never_shrinks_as_attempts_grow(
        base in 1i64..=60_000,
        extra in 0i64..=DAY_MS,
        exponent in 0u32..=40,
        a in 0u32..100,
        b in 0u32..100,
    ) {
        let cap = (base + extra).min(DAY_MS);
        let s = settings(&[("backoff_base_ms", base.to_string()), ("backoff_cap_ms", cap.to_string()), ("backoff_exponent_max", exponent.to_string())]);
        let (low, high) = (a.min(b), a.max(b));
        prop_assert!(s.backoff_ms(low) <= s.backoff_ms(high));
        prop_assert!(s.backoff_ms(high) <= cap);
        prop_assert!(s.backoff_ms(low) >= base);
    }

    #[test]
    fn a_session_row_never_gets_a_daemon_route(
        row in any_row(1),
        meshes in meshes(),
        states in proptest::collection::vec(session_state(), 3),
    ) {
        let settings = Settings::default();
        let sessions: Vec<(String, SessionState)> = SESSIONS.iter().map(|k| k.to_string()).zip(states).collect();
        let view = View { now: NOW, settings: &settings, meshes: &meshes, sessions: &sessions };
        if let Decision::Send(dispatch) = decide(&row, &view, &mut || vec![0; 24]) {
            match row.sender_session_pubkey.as_deref().filter(|k| !k.is_empty()) {
                Some(key) => prop_assert_eq!(dispatch.route, Route::Session(key.to_string())),
                None => prop_assert!(matches!(dispatch.route, Route::Daemon(ref m) if meshes.contains(m))),
            }
            prop_assert_eq!(dispatch.client_message_id, row.client_message_id);
        }
    }

    #[test]
    fn a_verdict_never_retries_a_row_that_used_every_attempt(
        row in any_row(1),
        result in send_result(),
        max_attempts in 1u32..30,
    ) {
        let s = settings(&[("max_attempts", max_attempts.to_string())]);
        let (verdict, _) = judge(&row, &result, NOW, &s);
        if let Verdict::Retry { next_attempt_at, .. } = verdict {
            prop_assert!(row.attempts < max_attempts);
            prop_assert!(next_attempt_at > NOW && next_attempt_at <= NOW + s.backoff_cap_ms);
        }
    }

    #[test]
    fn a_tick_settles_every_claimed_row_once_with_its_claimed_attempts(
        rows in proptest::collection::vec(any_row(0), 0..80),
        meshes in meshes(),
        states in proptest::collection::vec(session_state(), 3),
        results in proptest::collection::vec(send_result(), 1..20),
        batch_rows in 1u32..64,
        tokens in 0u32..40,
    ) {
        let rows: Vec<Row> = rows.into_iter().enumerate().map(|(i, r)| Row { rowid: i as i64 + 1, ..r }).collect();
        let s = settings(&[("batch_rows", batch_rows.to_string())]);
        let mut world = Memory { due: rows, meshes, states, results, tokens, ..Memory::default() };
        let report = tick(&mut world, &s, &mut ClaimSize::default(), NOW).unwrap();
        prop_assert!(world.settles.len() <= 1, "one settle per tick, got {}", world.settles.len());
        let outcomes: Vec<Outcome> = world.settles.concat();
        let claimed: Vec<(i64, u32)> = world.claimed.iter().map(|r| (r.rowid, r.attempts)).collect();
        let settled: Vec<(i64, u32)> = outcomes.iter().map(|o| (o.rowid, o.attempts)).collect();
        prop_assert_eq!(&settled, &claimed, "each claimed row, once, with the attempts its claim counted");
        prop_assert_eq!(report_counts(&report), verdict_counts(&outcomes, claimed.len()));
        prop_assert!(world.sent as u32 <= tokens * world.meshes.len() as u32, "never more sends than the budgets allow");
        for outcome in &outcomes {
            match outcome.verdict {
                Verdict::Retry { next_attempt_at, .. } => {
                    prop_assert!(next_attempt_at >= NOW, "a retry is never scheduled in the past");
                    prop_assert!(outcome.attempts < s.max_attempts);
                }
                Verdict::Hold { next_attempt_at, .. } => {
                    prop_assert!(next_attempt_at >= NOW, "a hold is never scheduled in the past");
                }
                _ => {}
            }
        }
    }
}

fn report_counts(r: &TickReport) -> (u32, u32, u32, u32, u32) {
    (r.claimed, r.done, r.dead, r.retried, r.held)
}

fn verdict_counts(outcomes: &[Outcome], claimed: usize) -> (u32, u32, u32, u32, u32) {
    let count = |f: fn(&Verdict) -> bool| outcomes.iter().filter(|o| f(&o.verdict)).count() as u32;
    let done = count(|v| matches!(v, Verdict::Done { .. }));
    let dead = count(|v| matches!(v, Verdict::Dead { .. }));
    let retried = count(|v| matches!(v, Verdict::Retry { .. }));
    let held = count(|v| matches!(v, Verdict::Hold { .. }));
    (claimed as u32, done, dead, retried, held)
}

/// A small in-memory world: claims rows in order, answers sends from a
/// list (cycled), records settles.
#[derive(Default)]
struct Memory {
    due: Vec<Row>,
    meshes: Vec<String>,
    tokens: u32,
    states: Vec<SessionState>,
    results: Vec<SendResult>,
    sent: usize,
    claimed: Vec<Row>,
    settles: Vec<Vec<Outcome>>,
}

impl Answer for Memory {
    fn answer(&mut self, call: Call) -> Reply {
        match call {
            Call::ClaimDue { limit, .. } => {
                let n = (limit as usize).min(self.due.len());
                let rows: Vec<Row> = self.due.drain(..n).collect();
                self.claimed.extend(rows.iter().cloned());
                Reply::Rows(Ok(rows))
            }
            Call::Settle { outcomes } => {
                let n = outcomes.len() as u32;
                self.settles.push(outcomes);
                Reply::Count(Ok(n))
            }
            Call::MeshLinks {} => Reply::Links(
                self.meshes
                    .iter()
                    .map(|slug| MeshLink {
                        slug: slug.clone(),
                        open: true,
                        tokens: self.tokens,
                        next_token_at: NOW + 7,
                        per_minute: 600,
                    })
                    .collect(),
            ),
            Call::SessionStates { pubkeys } => {
                let state = |k: &String| {
                    SESSIONS
                        .iter()
                        .position(|s| s == k)
                        .map_or(SessionState::Absent, |i| self.states[i])
                };
                Reply::Sessions(pubkeys.iter().map(state).collect())
            }
            Call::SendBatch { dispatches, .. } => Reply::Sent(
                dispatches
                    .iter()
                    .map(|_| {
                        self.sent += 1;
                        self.results[self.sent % self.results.len()].clone()
                    })
                    .collect(),
            ),
            Call::Now {} => Reply::Time(NOW + 3),
            Call::RandomBytes { len } => Reply::Bytes(vec![9; len as usize]),
            // No reclaims, no expiries, nothing due later; throttles and logs
            // change nothing here.
            other => Reply::nothing(&other, "not in memory"),
        }
    }
}
