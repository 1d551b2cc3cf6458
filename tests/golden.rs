//! Golden traces: one scripted scenario per rule of the default policy,
//! recorded once and replayed by every `cargo test`.
//!
//! A scenario runs the real policy component against a real SQLite outbox,
//! scripted links and broker answers, a virtual clock and counted "random"
//! bytes, so its trace is the same on every machine. After an intentional
//! change of the policy's behaviour, `SLUICE_BLESS=1 cargo test --release
//! --test e2e golden::` records them again; review the diff of `tests/golden/`
//! before committing it. A replay failure you did not intend is a bug.

// Test code fails loudly: an unwrap here is an assertion.
#![allow(clippy::unwrap_used)]

use sluice::engine::PolicyEngine;
use sluice::store::{NewRow, Outbox};
use sluice::trace::{Header, PolicyId, Recorder, TickResult, Trace, TraceWriter};
use sluice_lab::replay::replay;
use sluice_policy::{
    Call, ClaimFilter, Dispatch, MeshLink, Outcome, RATE_BUDGET_EMPTY, Reply, Route, Row,
    SendResult, SessionState, TimestampMs,
};
use std::collections::BTreeMap;
use std::path::PathBuf;

const T0: i64 = 1_767_225_600_000;
const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;

/// How the scripted broker answers sends to a target.
#[derive(Clone)]
enum Answer {
    Accept,
    Reject(&'static str),
    /// Reject the first n sends of each message, then accept.
    RejectFirst(u32, &'static str),
    /// A transport failure.
    Fail(&'static str),
}

/// A member's send budget on the scripted broker: a token bucket on the
/// virtual clock, as the host mirrors the real broker's.
#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    burst: f64,
    per_minute: u32,
    at: i64,
}

impl Bucket {
    fn new(burst: u32, per_minute: u32) -> Bucket {
        Bucket {
            tokens: f64::from(burst),
            burst: f64::from(burst),
            per_minute,
            at: T0,
        }
    }
    fn refill(&mut self, now: i64) {
        let gained = (now - self.at) as f64 * f64::from(self.per_minute) / 60_000.0;
        self.tokens = (self.tokens + gained.max(0.0)).min(self.burst);
        self.at = now.max(self.at);
    }
    fn next_token_at(&self) -> i64 {
        if self.tokens >= 1.0 {
            return self.at;
        }
        let wait = (1.0 - self.tokens) * 60_000.0 / f64::from(self.per_minute);
        self.at + wait.ceil() as i64
    }
}

struct Scripted {
    outbox: Outbox,
    clock: i64,
    meshes: Vec<String>,
    /// Meshes whose daemon link is down.
    down: Vec<String>,
    /// One budget shared by every mesh; None: unlimited.
    bucket: Option<Bucket>,
    sessions: BTreeMap<String, SessionState>,
    answers: BTreeMap<String, Answer>,
    sends: BTreeMap<String, u32>,
    counter: u8,
}

/// The scripted world, one method per import it scripts.
impl Scripted {
    fn claim_due(
        &mut self,
        now: TimestampMs,
        limit: u32,
        lease_ms: i64,
        skip: &ClaimFilter,
    ) -> Result<Vec<Row>, String> {
        self.outbox
            .claim_due_except(now, limit, lease_ms, skip)
            .map_err(|e| e.to_string())
    }
    fn settle(&mut self, outcomes: &[Outcome]) -> Result<u32, String> {
        self.outbox.settle(outcomes).map_err(|e| e.to_string())
    }
    fn reclaim(&mut self, now: TimestampMs) -> Result<u32, String> {
        self.outbox.reclaim(now).map_err(|e| e.to_string())
    }
    fn expire(&mut self, now: TimestampMs, cutoff: TimestampMs) -> Result<u32, String> {
        self.outbox.expire(now, cutoff).map_err(|e| e.to_string())
    }
    fn next_due_at(&mut self, skip: &ClaimFilter) -> Result<Option<TimestampMs>, String> {
        self.outbox
            .next_due_at_except(skip)
            .map_err(|e| e.to_string())
    }
    fn mesh_links(&mut self) -> Vec<MeshLink> {
        let now = self.clock;
        let budget = self.bucket.as_mut().map(|b| {
            b.refill(now);
            (b.tokens as u32, b.next_token_at(), b.per_minute)
        });
        self.meshes
            .iter()
            .map(|slug| {
                let (tokens, next_token_at, per_minute) = budget.unwrap_or((u32::MAX, now, 0));
                MeshLink {
                    slug: slug.clone(),
                    open: !self.down.contains(slug),
                    tokens,
                    next_token_at,
                    per_minute,
                }
            })
            .collect()
    }
    fn throttle(&mut self) {
        if let Some(bucket) = self.bucket.as_mut() {
            bucket.refill(self.clock);
            bucket.tokens = 0.0;
        }
    }
    fn session_states(&mut self, pubkeys: &[String]) -> Vec<SessionState> {
        pubkeys
            .iter()
            .map(|k| {
                self.sessions
                    .get(k)
                    .copied()
                    .unwrap_or(SessionState::Absent)
            })
            .collect()
    }
    fn send_batch(&mut self, dispatches: &[Dispatch]) -> Vec<SendResult> {
        let now = self.clock;
        let results = dispatches
            .iter()
            .map(|d| match self.bucket.as_mut() {
                Some(bucket) => {
                    bucket.refill(now);
                    if bucket.tokens < 1.0 {
                        return SendResult::Failed(RATE_BUDGET_EMPTY.into());
                    }
                    bucket.tokens -= 1.0;
                    self.answer_send(d)
                }
                None => self.answer_send(d),
            })
            .collect();
        self.clock += 3;
        results
    }
    fn random_bytes(&mut self, len: u32) -> Vec<u8> {
        self.counter = self.counter.wrapping_add(1);
        vec![self.counter; len as usize]
    }
}

impl sluice_policy::Answer for Scripted {
    fn answer(&mut self, call: Call) -> Reply {
        match call {
            Call::ClaimDue {
                now,
                limit,
                lease_ms,
                skip,
            } => Reply::Rows(self.claim_due(now, limit, lease_ms, &skip)),
            Call::Settle { outcomes } => Reply::Count(self.settle(&outcomes)),
            Call::Reclaim { now } => Reply::Count(self.reclaim(now)),
            Call::Expire { now, cutoff } => Reply::Count(self.expire(now, cutoff)),
            Call::NextDueAt { skip } => Reply::DueAt(self.next_due_at(&skip)),
            Call::MeshLinks {} => Reply::Links(self.mesh_links()),
            Call::Throttle { .. } => {
                self.throttle();
                Reply::Nothing
            }
            Call::SessionStates { pubkeys } => Reply::Sessions(self.session_states(&pubkeys)),
            Call::SendBatch { dispatches, .. } => Reply::Sent(self.send_batch(&dispatches)),
            Call::Now {} => Reply::Time(self.clock),
            Call::RandomBytes { len } => Reply::Bytes(self.random_bytes(len)),
            // Logs change nothing a trace replays.
            other => Reply::nothing(&other, "not scripted"),
        }
    }
}

impl Scripted {
    fn answer_send(&mut self, d: &Dispatch) -> SendResult {
        if let Route::Session(key) = &d.route
            && self.sessions.get(key) != Some(&SessionState::Open)
        {
            return SendResult::Failed("link_not_open: no session link".into());
        }
        let count = self.sends.entry(d.client_message_id.clone()).or_default();
        *count += 1;
        let accepted = SendResult::Accepted(format!("msg_{}_{count}", d.client_message_id));
        match self
            .answers
            .get(&d.target_spec)
            .cloned()
            .unwrap_or(Answer::Accept)
        {
            Answer::Accept => accepted,
            Answer::Reject(text) => SendResult::Rejected(text.into()),
            Answer::RejectFirst(n, text) if *count <= n => SendResult::Rejected(text.into()),
            Answer::RejectFirst(..) => accepted,
            Answer::Fail(text) => SendResult::Failed(text.into()),
        }
    }
}

/// One scripted scenario.
struct Scenario {
    name: &'static str,
    settings: Vec<(&'static str, &'static str)>,
    meshes: Vec<&'static str>,
    sessions: Vec<(&'static str, SessionState)>,
    answers: Vec<(&'static str, Answer)>,
    /// Meshes whose daemon link is down.
    down: Vec<&'static str>,
    /// The member's budget: (burst, per minute); None: unlimited.
    budget: Option<(u32, u32)>,
    rows: Vec<NewRow>,
    /// SQL run after enqueueing (to stage leases and the like).
    staging: &'static str,
    ticks: usize,
}

fn row(id: &str, target: &str) -> NewRow {
    NewRow {
        id: id.into(),
        client_message_id: format!("cm-{id}"),
        request_fingerprint: vec![0xc0, 0xff, 0xee],
        payload: format!("body of {id}").into_bytes(),
        enqueued_at: T0 - 1_000,
        next_attempt_at: T0 - 1_000,
        mesh: Some("alpha".into()),
        target_spec: Some(target.into()),
        nonce: Some("bm9uY2U=".into()),
        ciphertext: Some("Y2lwaGVy".into()),
        priority: Some("now".into()),
        sender_session_pubkey: None,
    }
}

fn legacy(id: &str) -> NewRow {
    NewRow {
        mesh: None,
        target_spec: None,
        nonce: None,
        ciphertext: None,
        priority: None,
        ..row(id, "")
    }
}

fn aged(mut r: NewRow, age_ms: i64) -> NewRow {
    r.enqueued_at = T0 - age_ms;
    r.next_attempt_at = T0 - age_ms;
    r
}

fn session(mut r: NewRow, key: &str) -> NewRow {
    r.sender_session_pubkey = Some(key.into());
    r
}

const OPEN: &str = "0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a";
const CONNECTING: &str = "0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b";
const ABSENT: &str = "0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c";

fn base(name: &'static str, rows: Vec<NewRow>) -> Scenario {
    Scenario {
        name,
        settings: vec![],
        meshes: vec!["alpha"],
        sessions: vec![],
        answers: vec![],
        down: vec![],
        budget: None,
        rows,
        staging: "",
        ticks: 3,
    }
}

fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario {
            meshes: vec!["alpha", "beta"],
            ..base(
                "mesh_routing",
                vec![
                    row("a1", "@bob"),
                    NewRow {
                        mesh: Some("beta".into()),
                        ..row("b1", "@bob")
                    },
                ],
            )
        },
        base(
            "null_mesh_single_link",
            vec![NewRow {
                mesh: None,
                ..row("n1", "@bob")
            }],
        ),
        Scenario {
            meshes: vec!["alpha", "beta"],
            ..base(
                "null_mesh_several_links",
                vec![NewRow {
                    mesh: None,
                    ..row("n2", "@bob")
                }],
            )
        },
        base(
            "unknown_mesh",
            vec![NewRow {
                mesh: Some("gamma".into()),
                ..row("u1", "@bob")
            }],
        ),
        base("legacy_broadcast", vec![legacy("l1"), legacy("l2")]),
        base(
            "malformed_partial_row",
            vec![
                NewRow {
                    ciphertext: None,
                    ..row("m1", "@bob")
                },
                NewRow {
                    nonce: Some(String::new()),
                    ..row("m2", "@bob")
                },
            ],
        ),
        base(
            "priority_mapping",
            ["now", "next", "low", "urgent"]
                .iter()
                .map(|p| NewRow {
                    priority: Some((*p).into()),
                    ..row(&format!("p-{p}"), "@bob")
                })
                .collect(),
        ),
        Scenario {
            answers: vec![("@blocked", Answer::Reject("blocked by recipient grants"))],
            ..base("permanent_rejection", vec![row("r1", "@blocked")])
        },
        Scenario {
            answers: vec![(
                "@flaky",
                Answer::RejectFirst(1, "no connected peer for target"),
            )],
            ..base("transient_then_done", vec![row("t1", "@flaky")])
        },
        Scenario {
            answers: vec![
                ("@slow", Answer::Fail("ack_timeout")),
                ("@gone", Answer::Fail("link_closed")),
            ],
            ..base(
                "transport_failures_retry",
                vec![row("f1", "@slow"), row("f2", "@gone")],
            )
        },
        Scenario {
            answers: vec![("@busy", Answer::Reject("internal error"))],
            ticks: 27,
            ..base("backoff_to_the_cap_then_dead", vec![row("c1", "@busy")])
        },
        Scenario {
            sessions: vec![
                (OPEN, SessionState::Open),
                (CONNECTING, SessionState::Connecting),
            ],
            ..base(
                "session_rows",
                vec![
                    session(row("s-open", "@bob"), OPEN),
                    session(row("s-connecting", "@bob"), CONNECTING),
                    session(row("s-absent-young", "@bob"), ABSENT),
                    session(aged(row("s-absent-old", "@bob"), 11 * MINUTE), ABSENT),
                ],
            )
        },
        Scenario {
            settings: vec![("max_attempts", "3")],
            sessions: vec![(CONNECTING, SessionState::Connecting)],
            ticks: 4,
            ..base(
                "session_not_open_hits_the_cap",
                vec![session(row("s-cap", "@bob"), CONNECTING)],
            )
        },
        Scenario {
            staging: "UPDATE outbox SET next_attempt_at = 1767225700000, attempts = 3, last_error = 'rate_limited' WHERE id = 'e2'",
            ..base(
                "expiry",
                vec![
                    aged(row("e1", "@bob"), 25 * HOUR),
                    aged(row("e2", "@bob"), 25 * HOUR),
                    row("e3", "@bob"),
                ],
            )
        },
        Scenario {
            staging: "UPDATE outbox SET status = 'inflight', attempts = 1, next_attempt_at = 1767225599000 WHERE id = 'lease1'",
            ..base("reclaim_run_out_lease", vec![row("lease1", "@bob")])
        },
        Scenario {
            settings: vec![("batch_rows", "2")],
            ..base(
                "full_batch_ticks_again",
                (0..5).map(|i| row(&format!("batch{i}"), "@bob")).collect(),
            )
        },
        Scenario {
            settings: vec![("batch_rows", "2"), ("batch_rows_max", "8")],
            ticks: 5,
            ..base(
                "claim_grows_while_full_and_shrinks_to_the_backlog",
                (0..20)
                    .map(|i| row(&format!("grow{i:02}"), "@bob"))
                    .collect(),
            )
        },
        Scenario {
            settings: vec![("batch_rows", "2"), ("batch_rows_max", "8")],
            answers: vec![("@gone", Answer::Fail("link_closed"))],
            ticks: 5,
            ..base(
                "claim_halves_after_a_transport_failure",
                (0..14)
                    .map(|i| row(&format!("ok{i:02}"), "@bob"))
                    .chain((0..12).map(|i| row(&format!("gone{i:02}"), "@gone")))
                    .collect(),
            )
        },
        Scenario {
            budget: Some((2, 600)),
            ticks: 6,
            ..base(
                "rate_paced_by_priority",
                ["low", "next", "now", "low", "now", "next"]
                    .iter()
                    .enumerate()
                    .map(|(i, p)| NewRow {
                        priority: Some((*p).into()),
                        ..row(&format!("paced{i}"), "@bob")
                    })
                    .collect(),
            )
        },
        Scenario {
            budget: Some((10, 60)),
            answers: vec![(
                "@crowded",
                Answer::RejectFirst(1, "rate_limit: max 60 msg/min (burst 10) — slow down"),
            )],
            ..base(
                "rate_limit_rejection_holds_the_member",
                vec![
                    row("rl1", "@crowded"),
                    row("rl2", "@bob"),
                    row("rl3", "@bob"),
                ],
            )
        },
        Scenario {
            meshes: vec!["alpha", "beta"],
            down: vec!["beta"],
            ticks: 2,
            ..base(
                "link_down_left_unclaimed",
                vec![
                    row("up1", "@bob"),
                    NewRow {
                        mesh: Some("beta".into()),
                        ..row("down1", "@bob")
                    },
                ],
            )
        },
    ]
}

fn golden_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/golden")
        .join(format!("{name}.trace"))
}

fn settings_of(s: &Scenario) -> Vec<(String, String)> {
    s.settings
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Runs a scenario with the embedded policy, recording to `path`.
fn record(s: &Scenario, path: &std::path::Path) {
    let dir = tempfile::tempdir().unwrap();
    let mut outbox = Outbox::open(&dir.path().join("outbox.db")).unwrap();
    outbox.enqueue(&s.rows).unwrap();
    if !s.staging.is_empty() {
        rusqlite::Connection::open(dir.path().join("outbox.db"))
            .unwrap()
            .execute_batch(s.staging)
            .unwrap();
    }
    let engine = PolicyEngine::load_default(settings_of(s)).unwrap();
    let header = Header::new(PolicyId::from(engine.meta()), settings_of(s));
    let world = Scripted {
        outbox,
        clock: T0,
        meshes: s.meshes.iter().map(|m| m.to_string()).collect(),
        down: s.down.iter().map(|m| m.to_string()).collect(),
        bucket: s
            .budget
            .map(|(burst, per_minute)| Bucket::new(burst, per_minute)),
        sessions: s
            .sessions
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect(),
        answers: s
            .answers
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
        sends: BTreeMap::new(),
        counter: 0,
    };
    let mut runner = engine
        .runner(Recorder::new(
            world,
            Some(TraceWriter::create(path, &header).unwrap()),
        ))
        .unwrap();
    for _ in 0..s.ticks {
        let now = runner.world_mut().inner.clock;
        runner.world_mut().begin_tick(now);
        let result = runner.tick(now);
        runner.world_mut().end_tick(TickResult::of(&result));
        let report = result.unwrap();
        // Virtual time: straight to the next due row, or a second on.
        let world = &mut runner.world_mut().inner;
        world.clock = match report.next_due_at {
            _ if report.more_due => world.clock + 1,
            Some(due) if due > world.clock => due,
            _ => world.clock + 1_000,
        };
    }
    runner.world_mut().finish().unwrap();
}

/// With `SLUICE_BLESS=1`, records every golden trace again, once, before
/// any test of this file reads them.
fn bless_once() {
    static BLESSED: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    BLESSED.get_or_init(|| {
        if std::env::var_os("SLUICE_BLESS").is_some_and(|v| v == "1") {
            for scenario in scenarios() {
                record(&scenario, &golden_path(scenario.name));
            }
        }
    });
}

#[test]
fn golden_traces_replay_against_the_default_policy() {
    bless_once();
    let engine = PolicyEngine::load_default(vec![]).unwrap();
    let mut problems = Vec::new();
    for scenario in scenarios() {
        let path = golden_path(scenario.name);
        let Ok(trace) = Trace::load(&path) else {
            problems.push(format!("{}: no golden trace at {}; record it with SLUICE_BLESS=1 cargo test --release --test e2e golden::", scenario.name, path.display()));
            continue;
        };
        let engine = if scenario.settings.is_empty() {
            &engine
        } else {
            &PolicyEngine::load_default(trace.header.settings.clone()).unwrap()
        };
        match replay(&trace, engine).unwrap() {
            Ok(summary) => assert!(
                summary.ticks == scenario.ticks && !summary.truncated,
                "{}: {summary:?}",
                scenario.name
            ),
            Err(divergence) => problems.push(format!("{}: {divergence}", scenario.name)),
        }
    }
    assert!(
        problems.is_empty(),
        "golden traces diverged (after an intended policy change, run SLUICE_BLESS=1 and review the diff):\n{}",
        problems.join("\n")
    );
}

#[test]
fn a_fresh_recording_of_every_scenario_matches_its_golden_trace() {
    bless_once();
    for scenario in scenarios() {
        let dir = tempfile::tempdir().unwrap();
        let fresh = dir.path().join("fresh.trace");
        record(&scenario, &fresh);
        let golden = std::fs::read_to_string(golden_path(scenario.name)).unwrap_or_default();
        assert!(
            without_policy_hash(&std::fs::read_to_string(&fresh).unwrap())
                == without_policy_hash(&golden),
            "{}: the scenario no longer records its golden trace; if the change is intended, run SLUICE_BLESS=1 and review the diff",
            scenario.name
        );
    }
}

/// A trace with the policy's sha256 blanked: the hash changes with the
/// compiler, the behaviour these tests pin down does not.
fn without_policy_hash(trace: &str) -> String {
    let (header, rest) = trace.split_once('\n').unwrap_or((trace, ""));
    let mut header: serde_json::Value = serde_json::from_str(header).unwrap_or_default();
    header["policy"]["sha256"] = serde_json::Value::Null;
    format!("{header}\n{rest}")
}

/// Every planted bug of the faulty policy is caught by replaying the golden traces.
#[test]
fn planted_bugs_diverge_from_the_golden_traces() {
    bless_once();
    let bytes = std::fs::read(sluice::bundled::FAULTY_POLICY_FILE).unwrap();
    for fault in ["session_over_daemon", "never_dead", "forget_settle"] {
        let mut caught = Vec::new();
        for scenario in scenarios() {
            let trace = Trace::load(&golden_path(scenario.name)).unwrap();
            let mut settings = trace.header.settings.clone();
            settings.push(("fault".into(), fault.into()));
            let engine = PolicyEngine::load("faulty", &bytes, settings).unwrap();
            if let Err(divergence) = replay(&trace, &engine).unwrap() {
                caught.push(format!("{}: {divergence}", scenario.name));
            }
        }
        assert!(
            !caught.is_empty(),
            "no golden trace catches the planted bug {fault}"
        );
    }
    // And the faulty build with no fault replays every golden trace cleanly:
    // the divergences above come from the bugs, not from the build.
    for scenario in scenarios() {
        let trace = Trace::load(&golden_path(scenario.name)).unwrap();
        let engine = PolicyEngine::load("faulty", &bytes, trace.header.settings.clone()).unwrap();
        assert!(
            replay(&trace, &engine).unwrap().is_ok(),
            "{}",
            scenario.name
        );
    }
}
