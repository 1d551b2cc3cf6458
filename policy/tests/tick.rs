//! The tick's wiring, against a scripted in-memory world: what it calls, in
//! what order, and what it settles.

use sluice_policy::{
    Answer, Call, ClaimSize, Dispatch, MeshLink, Outcome, RATE_BUDGET_EMPTY, Reply, Route, Row,
    SendResult, SessionState, Settings, Verdict, tick,
};

const NOW: i64 = 1_767_225_600_000;

#[derive(Default)]
struct Script {
    due: Vec<Row>,
    meshes: Vec<MeshLink>,
    results: Vec<SendResult>,
    calls: Vec<String>,
    sent: Vec<Dispatch>,
    settled: Vec<Outcome>,
    logs: Vec<String>,
    expired: u32,
}

impl Answer for Script {
    fn answer(&mut self, call: Call) -> Reply {
        match call {
            Call::ClaimDue {
                now,
                limit,
                lease_ms,
                skip,
            } => {
                self.calls.push(format!(
                    "claim_due({now},{limit},{lease_ms},skip={:?}{})",
                    skip.skip_meshes,
                    if skip.skip_unnamed { "+unnamed" } else { "" }
                ));
                let n = (limit as usize).min(self.due.len());
                Reply::Rows(Ok(self.due.drain(..n).collect()))
            }
            Call::Settle { outcomes } => {
                self.calls.push(format!("settle({})", outcomes.len()));
                let n = outcomes.len() as u32;
                self.settled.extend(outcomes);
                Reply::Count(Ok(n))
            }
            Call::Reclaim { .. } => {
                self.calls.push("reclaim".into());
                Reply::Count(Ok(0))
            }
            Call::Expire { cutoff, .. } => {
                self.calls.push(format!("expire(cutoff={cutoff})"));
                Reply::Count(Ok(self.expired))
            }
            Call::NextDueAt { .. } => {
                self.calls.push("next_due_at".into());
                Reply::DueAt(Ok(Some(NOW + 1_000)))
            }
            Call::MeshLinks {} => {
                self.calls.push("mesh_links".into());
                Reply::Links(self.meshes.clone())
            }
            Call::Throttle { mesh } => {
                self.calls.push(format!("throttle({mesh})"));
                Reply::Nothing
            }
            Call::SessionStates { pubkeys } => {
                self.calls
                    .push(format!("session_states({})", pubkeys.join(",")));
                Reply::Sessions(vec![SessionState::Absent; pubkeys.len()])
            }
            Call::SendBatch {
                dispatches,
                ack_timeout_ms,
            } => {
                self.calls
                    .push(format!("send_batch({},{ack_timeout_ms})", dispatches.len()));
                let n = dispatches.len().min(self.results.len());
                self.sent.extend(dispatches);
                Reply::Sent(self.results.drain(..n).collect())
            }
            Call::Now {} => Reply::Time(NOW + 5),
            Call::RandomBytes { len } => Reply::Bytes(vec![1; len as usize]),
            Call::Log { event, .. } => {
                self.logs.push(event);
                Reply::Nothing
            }
            other => Reply::nothing(&other, "not scripted"),
        }
    }
}

/// An open mesh with `tokens` sends left at 600 a minute (one per 100 ms).
fn mesh(slug: &str, tokens: u32) -> MeshLink {
    MeshLink {
        slug: slug.into(),
        open: true,
        tokens,
        next_token_at: if tokens > 0 { NOW } else { NOW + 40 },
        per_minute: 600,
    }
}

fn row(rowid: i64, mesh: &str) -> Row {
    Row {
        rowid,
        id: format!("r{rowid}"),
        client_message_id: format!("c{rowid}"),
        enqueued_at: NOW - 10,
        attempts: 1,
        mesh: Some(mesh.into()),
        target_spec: Some("@x".into()),
        nonce: Some("n".into()),
        ciphertext: Some("c".into()),
        ..Row::default()
    }
}

#[test]
fn one_tick_claims_sends_once_and_settles_once() {
    let mut world = Script {
        due: vec![
            row(1, "a"),
            row(2, "zzz"),
            row(3, "a"),
            Row {
                sender_session_pubkey: Some("k".into()),
                ..row(4, "a")
            },
        ],
        meshes: vec![mesh("a", 10)],
        results: vec![
            SendResult::Accepted("m1".into()),
            SendResult::Rejected("rate_limited".into()),
        ],
        ..Script::default()
    };
    let report = tick(
        &mut world,
        &Settings::default(),
        &mut ClaimSize::default(),
        NOW,
    )
    .unwrap();
    assert_eq!(
        world.calls,
        [
            "reclaim",
            "mesh_links",
            &format!("claim_due({NOW},32,30000,skip=[])"),
            "session_states(k)",
            "send_batch(2,15000)",
            "throttle(a)",
            "settle(4)",
            &format!("expire(cutoff={})", NOW + 5 - 86_400_000),
            "next_due_at"
        ]
    );
    assert_eq!(
        world.sent.iter().map(|d| d.rowid).collect::<Vec<_>>(),
        [1, 3]
    );
    assert!(
        world
            .sent
            .iter()
            .all(|d| d.route == Route::Daemon("a".into()))
    );
    let verdicts: Vec<(i64, &Verdict)> = world
        .settled
        .iter()
        .map(|o| (o.rowid, &o.verdict))
        .collect();
    assert_eq!(
        verdicts[0],
        (
            1,
            &Verdict::Done {
                broker_message_id: "m1".into(),
                delivered_at: NOW + 5
            }
        )
    );
    assert_eq!(
        verdicts[1],
        (
            2,
            &Verdict::Dead {
                reason: "no_broker_for_mesh:zzz".into()
            }
        )
    );
    assert_eq!(
        verdicts[2],
        (
            3,
            &Verdict::Hold {
                next_attempt_at: NOW + 5 + 100,
                last_error: Some("rate_limited".into())
            }
        )
    );
    assert_eq!(
        verdicts[3],
        (
            4,
            &Verdict::Retry {
                next_attempt_at: NOW + 5 + 1_000,
                last_error: "session_ws_not_open".into()
            }
        )
    );
    assert_eq!(
        (
            report.claimed,
            report.done,
            report.dead,
            report.retried,
            report.held,
            report.more_due
        ),
        (4, 1, 1, 1, 1, false)
    );
    assert_eq!(report.next_due_at, Some(NOW + 1_000));
    assert_eq!(
        world.logs,
        [
            "drain_no_broker_for_mesh",
            "drain_session_ws_not_ready",
            "drain_rate_limited"
        ]
    );
}

#[test]
fn full_claim_reports_more_due_and_skips_the_expiry_sweep() {
    let settings = Settings::from_pairs(&[("batch_rows".into(), "2".into())]).unwrap();
    let mut world = Script {
        due: vec![row(1, "a"), row(2, "a"), row(3, "a")],
        meshes: vec![mesh("a", 10)],
        results: vec![
            SendResult::Accepted("m1".into()),
            SendResult::Accepted("m2".into()),
        ],
        ..Script::default()
    };
    let report = tick(&mut world, &settings, &mut ClaimSize::default(), NOW).unwrap();
    assert!(report.more_due);
    assert!(!world.calls.iter().any(|c| c.starts_with("expire")));
}

#[test]
fn empty_claim_sends_nothing_and_logs_expired_rows() {
    let mut world = Script {
        expired: 3,
        ..Script::default()
    };
    let report = tick(
        &mut world,
        &Settings::default(),
        &mut ClaimSize::default(),
        NOW,
    )
    .unwrap();
    assert_eq!(report.expired, 3);
    assert!(
        !world
            .calls
            .iter()
            .any(|c| c.starts_with("send_batch") || c.starts_with("settle"))
    );
    assert_eq!(world.logs, ["drain_expired_rows"]);
}

#[test]
fn missing_results_retry_rather_than_lose_rows() {
    let mut world = Script {
        due: vec![row(1, "a"), row(2, "a")],
        meshes: vec![mesh("a", 10)],
        ..Script::default()
    };
    tick(
        &mut world,
        &Settings::default(),
        &mut ClaimSize::default(),
        NOW,
    )
    .unwrap();
    assert!(world.settled.iter().all(|o| matches!(&o.verdict, Verdict::Retry { last_error, .. } if last_error == "host_returned_no_result")));
}

#[test]
fn a_spent_budget_sends_priority_now_first_and_holds_the_rest_one_token_apart() {
    let prio = |rowid: i64, p: &str| Row {
        priority: Some(p.into()),
        ..row(rowid, "a")
    };
    let mut world = Script {
        due: vec![
            prio(1, "low"),
            prio(2, "next"),
            prio(3, "now"),
            prio(4, "now"),
        ],
        meshes: vec![mesh("a", 2)],
        results: vec![
            SendResult::Accepted("m3".into()),
            SendResult::Accepted("m4".into()),
        ],
        ..Script::default()
    };
    let report = tick(
        &mut world,
        &Settings::default(),
        &mut ClaimSize::default(),
        NOW,
    )
    .unwrap();
    assert_eq!(
        world.sent.iter().map(|d| d.rowid).collect::<Vec<_>>(),
        [3, 4]
    );
    let holds: Vec<(i64, i64)> = world
        .settled
        .iter()
        .filter_map(|o| match o.verdict {
            Verdict::Hold {
                next_attempt_at, ..
            } => Some((o.rowid, next_attempt_at - NOW)),
            _ => None,
        })
        .collect();
    // `next` before `low`, each a token (100 ms) after the other.
    assert_eq!(holds, [(1, 200), (2, 100)]);
    assert_eq!((report.done, report.held, report.retried), (2, 2, 0));
}

#[test]
fn a_down_or_spent_mesh_is_left_unclaimed_and_wakes_the_loop_at_its_next_token() {
    let down = MeshLink {
        open: false,
        ..mesh("down", 5)
    };
    let mut world = Script {
        meshes: vec![mesh("a", 3), down, mesh("spent", 0)],
        ..Script::default()
    };
    let report = tick(
        &mut world,
        &Settings::default(),
        &mut ClaimSize::default(),
        NOW,
    )
    .unwrap();
    assert!(
        world.calls.contains(&format!(
            r#"claim_due({NOW},32,30000,skip=["down", "spent"])"#
        )),
        "{:?}",
        world.calls
    );
    // The spent mesh's next token (NOW + 40) comes before the next due row.
    assert_eq!(report.next_due_at, Some(NOW + 40));
    let mut single = Script {
        meshes: vec![MeshLink {
            open: false,
            ..mesh("only", 5)
        }],
        ..Script::default()
    };
    tick(
        &mut single,
        &Settings::default(),
        &mut ClaimSize::default(),
        NOW,
    )
    .unwrap();
    assert!(single.calls[2].ends_with(r#"skip=["only"]+unnamed)"#));
}

#[test]
fn a_send_over_budget_is_held_without_an_attempt_and_link_failures_log_once() {
    let mut world = Script {
        due: (1..=4).map(|i| row(i, "a")).collect(),
        meshes: vec![mesh("a", 10)],
        results: vec![
            SendResult::Failed(RATE_BUDGET_EMPTY.into()),
            SendResult::Failed("link_not_open".into()),
            SendResult::Failed("link_not_open".into()),
            SendResult::Failed("link_not_open".into()),
        ],
        ..Script::default()
    };
    let report = tick(
        &mut world,
        &Settings::default(),
        &mut ClaimSize::default(),
        NOW,
    )
    .unwrap();
    assert!(matches!(
        world.settled[0].verdict,
        Verdict::Hold {
            last_error: None,
            ..
        }
    ));
    assert_eq!((report.held, report.retried), (1, 3));
    assert_eq!(world.logs, ["drain_send_threw"], "one line for three rows");
}
