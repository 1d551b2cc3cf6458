//! The outage-aware tick against a scripted in-memory world: what it holds,
//! what it still retries, and what it settles.

use sluice_outage_policy::{OutageSettings, tick};
use sluice_policy::{
    Answer, Call, ClaimFilter, ClaimSize, Dispatch, MeshLink, Outcome, Reply, Row, SendResult,
    SessionState, Verdict,
};

const NOW: i64 = 1_767_225_600_000;
/// What the scripted world's clock reads after the sends.
const AFTER: i64 = NOW + 5;

#[derive(Default)]
struct Script {
    due: Vec<Row>,
    meshes: Vec<MeshLink>,
    sessions: Vec<(String, SessionState)>,
    results: Vec<SendResult>,
    skip: Vec<ClaimFilter>,
    sent: Vec<Dispatch>,
    settled: Vec<Outcome>,
    logs: Vec<String>,
}

impl Answer for Script {
    fn answer(&mut self, call: Call) -> Reply {
        match call {
            Call::ClaimDue { limit, skip, .. } => {
                self.skip.push(skip);
                let n = (limit as usize).min(self.due.len());
                Reply::Rows(Ok(self.due.drain(..n).collect()))
            }
            Call::Settle { outcomes } => {
                let n = outcomes.len() as u32;
                self.settled.extend(outcomes);
                Reply::Count(Ok(n))
            }
            Call::MeshLinks {} => Reply::Links(self.meshes.clone()),
            Call::SessionStates { pubkeys } => Reply::Sessions(
                pubkeys
                    .iter()
                    .map(|k| {
                        self.sessions
                            .iter()
                            .find(|(key, _)| key == k)
                            .map_or(SessionState::Absent, |(_, s)| *s)
                    })
                    .collect(),
            ),
            Call::SendBatch { dispatches, .. } => {
                let n = dispatches.len().min(self.results.len());
                self.sent.extend(dispatches);
                Reply::Sent(self.results.drain(..n).collect())
            }
            Call::Now {} => Reply::Time(AFTER),
            Call::RandomBytes { len } => Reply::Bytes(vec![1; len as usize]),
            Call::Log { event, .. } => {
                self.logs.push(event);
                Reply::Nothing
            }
            // No reclaims, no expiries, nothing due later, no throttling.
            other => Reply::nothing(&other, "not scripted"),
        }
    }
}

fn mesh(slug: &str, open: bool) -> MeshLink {
    MeshLink {
        slug: slug.into(),
        open,
        tokens: u32::MAX,
        next_token_at: NOW,
        per_minute: 0,
    }
}

fn row(rowid: i64, mesh: &str, attempts: u32, session: Option<&str>) -> Row {
    Row {
        rowid,
        id: format!("r{rowid}"),
        client_message_id: format!("c{rowid}"),
        enqueued_at: NOW - 10,
        attempts,
        mesh: Some(mesh.into()),
        target_spec: Some("@x".into()),
        nonce: Some("n".into()),
        ciphertext: Some("c".into()),
        sender_session_pubkey: session.map(str::to_string),
        ..Row::default()
    }
}

fn settings() -> OutageSettings {
    OutageSettings::default()
}

fn verdict(world: &Script, rowid: i64) -> &Verdict {
    &world
        .settled
        .iter()
        .find(|o| o.rowid == rowid)
        .unwrap_or_else(|| panic!("row {rowid} not settled"))
        .verdict
}

fn held_until(next_attempt_at: i64, error: &str) -> Verdict {
    Verdict::Hold {
        next_attempt_at,
        last_error: Some(error.into()),
    }
}

#[test]
fn a_link_that_drops_mid_batch_holds_its_rows_to_one_shared_time() {
    let mut world = Script {
        due: vec![
            row(1, "a", 25, None),
            row(2, "a", 1, None),
            row(3, "a", 3, None),
            row(4, "a", 25, None),
            row(5, "a", 2, None),
        ],
        meshes: vec![mesh("a", true)],
        results: vec![
            SendResult::Failed("link_closed".into()),
            SendResult::Failed("link_not_open".into()),
            SendResult::Failed("write_failed: broken pipe".into()),
            SendResult::Failed("ack_timeout".into()),
            SendResult::Accepted("m5".into()),
        ],
        ..Script::default()
    };
    let report = tick(&mut world, &settings(), &mut ClaimSize::default(), NOW).unwrap();
    let recheck = NOW + 2_000;
    assert_eq!(verdict(&world, 1), &held_until(recheck, "link_closed"));
    assert_eq!(verdict(&world, 2), &held_until(recheck, "link_not_open"));
    assert_eq!(
        verdict(&world, 3),
        &held_until(recheck, "write_failed: broken pipe")
    );
    // A timed-out ack went out: it spends its last attempt, as by default.
    assert_eq!(
        verdict(&world, 4),
        &Verdict::Dead {
            reason: "max_attempts: ack_timeout".into()
        }
    );
    assert!(matches!(verdict(&world, 5), Verdict::Done { .. }));
    assert_eq!(
        (
            report.claimed,
            report.done,
            report.dead,
            report.retried,
            report.held
        ),
        (5, 1, 1, 0, 3)
    );
    // Transport failures are still logged once per link and error, not per row.
    let threw = world
        .logs
        .iter()
        .filter(|e| *e == "drain_send_threw")
        .count();
    assert_eq!(threw, 4, "{:?}", world.logs);
}

#[test]
fn session_rows_of_a_connecting_link_are_held_quietly_and_not_sent() {
    let mut world = Script {
        due: vec![
            row(1, "a", 1, Some("connecting")),
            row(2, "a", 24, Some("connecting")),
            row(3, "a", 1, Some("nobody")),
            row(4, "a", 1, Some("open")),
        ],
        meshes: vec![mesh("a", true)],
        sessions: vec![
            ("connecting".into(), SessionState::Connecting),
            ("open".into(), SessionState::Open),
        ],
        results: vec![SendResult::Accepted("m4".into())],
        ..Script::default()
    };
    let report = tick(&mut world, &settings(), &mut ClaimSize::default(), NOW).unwrap();
    let recheck = NOW + 2_000;
    assert_eq!(
        verdict(&world, 1),
        &held_until(recheck, "session_ws_not_open")
    );
    assert_eq!(
        verdict(&world, 2),
        &held_until(recheck, "session_ws_not_open")
    );
    // Nobody registered this session: the default's retry, with its log.
    assert!(
        matches!(verdict(&world, 3), Verdict::Retry { last_error, .. } if last_error == "session_ws_not_open"),
        "{:?}",
        verdict(&world, 3)
    );
    assert!(matches!(verdict(&world, 4), Verdict::Done { .. }));
    assert_eq!(world.sent.len(), 1, "only the open session's row goes out");
    assert_eq!((report.held, report.retried, report.done), (2, 1, 1));
    assert_eq!(world.logs, vec!["drain_session_ws_not_ready".to_string()]);
}

#[test]
fn the_claim_still_skips_a_down_mesh_and_the_recheck_period_is_a_setting() {
    let pairs = vec![("outage_recheck_ms".to_string(), "500".to_string())];
    let settings = OutageSettings::from_pairs(&pairs).unwrap();
    let mut world = Script {
        due: vec![row(1, "up", 1, None)],
        meshes: vec![mesh("down", false), mesh("up", true)],
        results: vec![SendResult::Failed("link_closed".into())],
        ..Script::default()
    };
    tick(&mut world, &settings, &mut ClaimSize::default(), NOW).unwrap();
    assert_eq!(world.skip[0].skip_meshes, vec!["down".to_string()]);
    assert_eq!(verdict(&world, 1), &held_until(NOW + 500, "link_closed"));
}
