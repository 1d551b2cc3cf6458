//! The simulator: seeded runs of the real policy component against a
//! simulated outbox and broker, every invariant checked after every tick.
//!
//! A failing seed prints `SLUICE_SEED=<n>` and the commands that rerun it;
//! `SLUICE_SEED=<n> cargo test --release -p sluice-cli --test e2e sim::` runs just that
//! seed in `many_seeds_keep_every_invariant`.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use crate::common::*;
use sluice::engine::PolicyEngine;
use sluice::trace::Trace;
use sluice_lab::sim::runner::loop_trace_path;
use sluice_lab::sim::{Profile, Sim, SimConfig, SimOutcome, SimPolicy, Stop, TraceSink};
use std::path::Path;
use std::time::Instant;

const FAULTY: &str = sluice::bundled::FAULTY_POLICY_FILE;
/// Seeds `many_seeds_keep_every_invariant` runs.
const SEEDS: u64 = 200;
const ROWS: u32 = 1_000;
/// Ticks within which a planted bug must be caught.
const CATCH_TICKS_MAX: u64 = 500;

fn config(seed: u64, rows: u32, profile: &str) -> SimConfig {
    SimConfig {
        seed,
        rows,
        ticks_max: 100_000,
        profile: Profile::named(profile).unwrap(),
        ..SimConfig::default()
    }
}

fn default_policy() -> PolicyEngine {
    PolicyEngine::load_default(Vec::new()).unwrap()
}

fn faulty_policy(fault: &str) -> PolicyEngine {
    let bytes = std::fs::read(FAULTY).unwrap();
    PolicyEngine::load("faulty", &bytes, vec![("fault".into(), fault.into())]).unwrap()
}

/// Runs one simulation to its end; returns the outcome and the trace when kept in memory.
fn simulate(
    config: SimConfig,
    policy: &SimPolicy<'_>,
    sink: &TraceSink,
) -> (SimOutcome, Option<Vec<u8>>) {
    let mut sim = Sim::new(config, policy, sink).unwrap();
    let outcome = sim.run();
    let trace = sim.finish_trace().unwrap();
    (outcome, trace)
}

fn rerun_hint(seed: u64, profile: &str, test: &str) -> String {
    format!(
        "SLUICE_SEED={seed}: rerun with `SLUICE_SEED={seed} cargo test --release -p sluice-cli --test e2e sim::{test}` \
         or `sluice sim --seed {seed} --rows {ROWS} --faults {profile}`"
    )
}

#[test]
fn the_same_seed_gives_byte_identical_traces() {
    let engine = default_policy();
    let policy = SimPolicy::Component(&engine);
    let (first, a) = simulate(config(42, 300, "mixed"), &policy, &TraceSink::Memory);
    let (second, b) = simulate(config(42, 300, "mixed"), &policy, &TraceSink::Memory);
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(first, second);
    assert!(
        a.len() > 10_000,
        "a trace of {} bytes is too short to mean anything",
        a.len()
    );
    assert!(
        a == b,
        "seed 42 gave two different traces ({} and {} bytes)",
        a.len(),
        b.len()
    );
    let (_, other) = simulate(config(43, 300, "mixed"), &policy, &TraceSink::Memory);
    assert_ne!(other.unwrap(), a, "another seed should make another run");
}

/// Two drainers on one outbox file, each with two loops, as two `sluice
/// run`s beside each other: each has its own write connection (and gives
/// way to the other's commits), every loop its own policy instance. No row
/// is lost, none goes out again after the broker accepted it, every claim
/// is settled in its tick, and the same seed gives byte-identical traces
/// for every loop.
#[test]
fn two_drainers_of_two_loops_on_one_file_keep_every_invariant() {
    let engine = default_policy();
    let policy = SimPolicy::Component(&engine);
    for seed in 1..=3 {
        let two = |seed| SimConfig {
            drainers: 2,
            loops: 2,
            ..config(seed, 200, "mixed")
        };
        let mut sim = Sim::new(two(seed), &policy, &TraceSink::Memory).unwrap();
        let outcome = sim.run();
        let traces = sim.finish_traces().unwrap();
        if let Stop::Violation(violation) = &outcome.stop {
            panic!(
                "{violation}\nSLUICE_SEED={seed}: `sluice sim --seed {seed} --rows 200 --drainers 2`"
            );
        }
        assert_eq!(outcome.stop, Stop::Drained, "seed {seed}: {outcome:?}");
        assert_eq!(outcome.done + outcome.dead + outcome.aborted, 200);
        assert_eq!(traces.len(), 4);
        for (n, trace) in traces.iter().enumerate() {
            let trace = trace.as_ref().expect("kept in memory");
            assert!(
                String::from_utf8_lossy(trace).contains("store.claim-due"),
                "seed {seed}: loop {n} never ticked"
            );
        }
        let mut again = Sim::new(two(seed), &policy, &TraceSink::Memory).unwrap();
        assert_eq!(again.run(), outcome, "seed {seed}");
        assert!(
            again.finish_traces().unwrap() == traces,
            "seed {seed}: the same seed gave other traces"
        );
    }
}

/// Each loop's trace is its own and replays exactly: a loop's ticks are one
/// policy instance's decisions, every answer recorded, whatever the other
/// loop did between them.
#[test]
fn every_loops_trace_replays_identically() {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("run.trace");
    let out = sluice(&[
        "sim",
        "--seed",
        "9",
        "--rows",
        "200",
        "--trace",
        path_str(&trace),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    for file in [trace.clone(), dir.path().join("run.loop1.trace")] {
        let replayed = sluice(&["replay", path_str(&file)]);
        assert!(
            replayed.status.success() && stdout(&replayed).contains("replay ok"),
            "{}: {}{}",
            file.display(),
            stdout(&replayed),
            stderr(&replayed)
        );
    }
}

#[test]
fn the_native_policy_makes_the_same_decisions_as_the_component() {
    let engine = default_policy();
    let (_, component) = simulate(
        config(7, 300, "harsh"),
        &SimPolicy::Component(&engine),
        &TraceSink::Memory,
    );
    let (_, native) = simulate(
        config(7, 300, "harsh"),
        &SimPolicy::Native(&[]),
        &TraceSink::Memory,
    );
    let body = |trace: &[u8]| {
        String::from_utf8(trace.to_vec())
            .unwrap()
            .split_once('\n')
            .unwrap()
            .1
            .to_string()
    };
    // Only the header differs: the native policy has no component hash.
    assert!(
        body(&component.unwrap()) == body(&native.unwrap()),
        "seed 7: the native and component runs diverge"
    );
}

#[test]
fn step_runs_one_tick_at_a_time_on_a_virtual_clock() {
    let config = config(5, 100, "mixed");
    let mut sim = Sim::new(config, &SimPolicy::Native(&[]), &TraceSink::Off).unwrap();
    let mut last_ms = i64::MIN;
    for expected in 1..=20 {
        let step = sim.step().unwrap();
        assert_eq!((step.tick, sim.ticks()), (expected, expected));
        assert!(
            step.now_ms >= last_ms,
            "the virtual clock never runs backwards"
        );
        last_ms = step.now_ms;
    }
    assert!(sim.shared().dispatches() > 0);
}

#[test]
fn many_seeds_keep_every_invariant() {
    run_seeds("mixed", "many_seeds", SEEDS);
}

#[test]
fn many_harsh_seeds_keep_every_invariant() {
    run_seeds("harsh", "many_harsh_seeds", SEEDS / 2);
}

/// The seeds to run: `SLUICE_SEED` alone when set, else `count` of them
/// (`SLUICE_SIM_SEEDS` raises the count for a longer hunt).
fn seeds(count: u64) -> Vec<u64> {
    if let Ok(seed) = std::env::var("SLUICE_SEED") {
        return vec![seed.trim().parse().expect("SLUICE_SEED is a whole number")];
    }
    let count = std::env::var("SLUICE_SIM_SEEDS").map_or(count, |n| {
        n.trim()
            .parse()
            .expect("SLUICE_SIM_SEEDS is a whole number")
    });
    (1..=count).collect()
}

/// Runs every seed with the default component (compiled once, a fresh
/// instance per seed); the first violation fails the test with its seed,
/// the commands that rerun it, and its trace.
fn run_seeds(profile: &str, test: &str, count: u64) {
    let engine = default_policy();
    let policy = SimPolicy::Component(&engine);
    let started = Instant::now();
    let seeds = seeds(count);
    let (mut ticks, mut sends) = (0u64, 0u64);
    for &seed in &seeds {
        let (outcome, _) = simulate(config(seed, ROWS, profile), &policy, &TraceSink::Off);
        let hint = rerun_hint(seed, profile, test);
        if let Stop::Violation(violation) = &outcome.stop {
            // Rerun the seed recording, so the failure comes with its trace.
            let path = std::env::temp_dir().join(format!("sim-{seed}.trace"));
            simulate(
                config(seed, ROWS, profile),
                &policy,
                &TraceSink::File(path.clone()),
            );
            panic!("{violation}\n{hint}\ntrace: {}", path.display());
        }
        assert_eq!(outcome.stop, Stop::Drained, "{hint}");
        assert_eq!(
            outcome.done + outcome.dead + outcome.aborted,
            ROWS as usize,
            "{hint}"
        );
        ticks += outcome.ticks;
        sends += outcome.sends;
    }
    let elapsed = started.elapsed().as_secs_f64();
    eprintln!(
        "{profile}: {} seeds x {ROWS} rows: {ticks} ticks, {sends} sends in {elapsed:.1} s ({:.0} ticks/s)",
        seeds.len(),
        ticks as f64 / elapsed
    );
}

#[test]
fn a_clean_profile_drains_every_row_to_done_or_dead() {
    let engine = default_policy();
    for seed in 1..=5 {
        let (outcome, _) = simulate(
            config(seed, ROWS, "none"),
            &SimPolicy::Component(&engine),
            &TraceSink::Off,
        );
        assert_eq!(
            outcome.stop,
            Stop::Drained,
            "{}",
            rerun_hint(seed, "none", "a_clean_profile")
        );
        assert_eq!(
            (
                outcome.pending,
                outcome.inflight,
                outcome.failed_ticks,
                outcome.faults
            ),
            (0, 0, 0, 0)
        );
        assert_eq!(outcome.done + outcome.dead + outcome.aborted, ROWS as usize);
        assert!(
            outcome.done > ROWS as usize / 2,
            "seed {seed}: only {} of {ROWS} delivered",
            outcome.done
        );
    }
}

#[test]
fn harsh_and_broker_down_profiles_lose_no_row() {
    let engine = default_policy();
    // With no broker, rows end when they expire: a TTL of an hour keeps the
    // run to an hour of half-second ticks on the real outbox file.
    let hour_ttl = vec![("row_ttl_ms".to_string(), "3600000".to_string())];
    let expiring = PolicyEngine::load_default(hour_ttl).unwrap();
    for (profile, seed) in [
        ("harsh", 1),
        ("harsh", 2),
        ("broker-down", 1),
        ("broker-down", 2),
    ] {
        // With the broker down for good, rows are not claimed while their
        // link is down: they wait out the row TTL (half-second ticks).
        let policy = if profile == "broker-down" {
            &expiring
        } else {
            &engine
        };
        let (outcome, _) = simulate(
            SimConfig {
                ticks_max: 100_000,
                ..config(seed, 500, profile)
            },
            &SimPolicy::Component(policy),
            &TraceSink::Off,
        );
        assert_eq!(
            outcome.stop,
            Stop::Drained,
            "{}",
            rerun_hint(seed, profile, "harsh_and_broker_down")
        );
        assert_eq!(outcome.done + outcome.dead + outcome.aborted, 500);
        if profile == "broker-down" {
            assert_eq!(
                outcome.done, 0,
                "nothing can be delivered while the broker is down"
            );
        }
    }
}

/// Runs the faulty policy with `fault` on a few seeds: each run must stop
/// with `invariant` within `CATCH_TICKS_MAX` ticks and leave a trace.
fn assert_caught(fault: &str, invariant: &str) {
    assert_caught_as(fault, &[invariant]);
}

/// As `assert_caught`, for a fault that breaks one of several invariants
/// first, depending on what the seed's first tick holds.
fn assert_caught_as(fault: &str, invariants: &[&str]) {
    let engine = faulty_policy(fault);
    let dir = tempfile::tempdir().unwrap();
    for seed in 1..=3 {
        let path = dir.path().join(format!("sim-{seed}.trace"));
        let config = SimConfig {
            ticks_max: CATCH_TICKS_MAX,
            ..config(seed, ROWS, "mixed")
        };
        let (outcome, _) = simulate(
            config,
            &SimPolicy::Component(&engine),
            &TraceSink::File(path.clone()),
        );
        let Stop::Violation(violation) = &outcome.stop else {
            panic!(
                "fault {fault}, seed {seed}: not caught within {CATCH_TICKS_MAX} ticks ({:?})",
                outcome.stop
            );
        };
        assert!(
            invariants.contains(&violation.kind.name()),
            "fault {fault}, seed {seed}: expected one of {invariants:?}: {violation}"
        );
        // Each loop writes its own trace; the failing loop's ends with the
        // failing tick.
        let loops = u64::from(SimConfig::default().loops);
        let n = u64::from(violation.at.drainer) * loops + u64::from(violation.at.index);
        let trace = Trace::load(&loop_trace_path(&path, n)).unwrap();
        assert_eq!(trace.header.policy.name, "sluice-faulty");
        assert_eq!(
            trace.header.settings,
            [("fault".to_string(), fault.to_string())]
        );
        let last = trace.ticks.last().expect("the failing loop ticked");
        assert_eq!(
            last.now, violation.now_ms,
            "the failing loop's trace ends with the failing tick"
        );
        assert!(trace.ticks.len() as u64 <= violation.tick);
    }
}

#[test]
fn a_session_row_sent_over_the_daemon_link_is_caught() {
    assert_caught("session_over_daemon", "session_row_never_over_daemon");
}

#[test]
fn a_policy_that_never_dead_letters_is_caught() {
    assert_caught("never_dead", "attempts_bounded");
}

#[test]
fn a_policy_that_forgets_to_settle_is_caught() {
    assert_caught("forget_settle", "claim_settled_in_its_tick");
}

// The guard's rules are the simulator's invariants for sends and settles:
// each of the faulty policy's lies is caught under the rule's own name.

#[test]
fn a_done_verdict_for_a_row_never_sent_is_caught() {
    assert_caught("done_without_send", "done_only_after_accept");
}

#[test]
fn a_direct_message_broadcast_to_everyone_is_caught() {
    assert_caught("broadcast_direct", "content_matches_row");
}

#[test]
fn a_row_sent_with_another_rows_ciphertext_is_caught() {
    assert_caught("tamper_ciphertext", "content_matches_row");
}

#[test]
fn a_dispatch_for_a_row_never_claimed_is_caught() {
    // A foreign dispatch, or a foreign outcome when the tick sent nothing.
    assert_caught_as(
        "foreign_rowid",
        &["only_claimed_rows_dispatched", "settle_only_own_claims"],
    );
}

#[test]
fn a_row_sent_twice_in_one_tick_is_caught() {
    assert_caught("double_send", "one_dispatch_per_row");
}

#[test]
fn a_failing_run_prints_its_seed_writes_a_trace_and_replay_reproduces_it() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let child = std::process::Command::new(sluice_bin())
            .args(args)
            .current_dir(dir.path())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        wait_output(child, std::time::Duration::from_secs(120))
    };
    let out = run(&[
        "sim",
        "--seed",
        "3",
        "--rows",
        "200",
        "--policy",
        FAULTY,
        "--setting",
        "fault=forget_settle",
    ]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("SLUICE_SEED=3") && err.contains("claim_settled_in_its_tick"),
        "{err}"
    );
    assert!(err.contains("sluice sim --seed 3 --rows 200"), "{err}");
    let trace = dir.path().join("sim-3.trace");
    assert_header(&trace);
    let replayed = run(&["replay", "sim-3.trace", "--policy", FAULTY]);
    assert!(
        replayed.status.success(),
        "{}{}",
        stdout(&replayed),
        stderr(&replayed)
    );
    assert!(
        stdout(&replayed).contains("replay ok"),
        "{}",
        stdout(&replayed)
    );
}

fn assert_header(path: &Path) {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("no trace at {}: {e}", path.display()));
    let header: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(header["format"], "sluice-trace");
    assert_eq!(header["version"], 1);
    Trace::load(path).unwrap();
}

#[test]
fn a_clean_run_exits_zero_with_a_summary_line() {
    let out = std::process::Command::new(sluice_bin())
        .args(["sim", "--rows", "200", "--faults", "none"])
        .env("SLUICE_SEED", "11")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let line = stdout(&out);
    assert!(
        line.starts_with("sim seed=11 profile=none stop=drained "),
        "{line}"
    );
    assert!(
        line.contains(" pending=0 inflight=0 ") && line.contains(" faults=0 "),
        "{line}"
    );
}

/// A run cut off by its tick limit while rows are still open did not show
/// that they finish: it exits 3 (not 0) and says how many are open.
#[test]
fn a_run_stopped_by_the_tick_limit_with_rows_open_exits_3() {
    let out = sluice(&[
        "sim",
        "--seed",
        "5",
        "--rows",
        "200",
        "--ticks",
        "20",
        "--faults",
        "broker-down",
    ]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(stdout(&out).contains("stop=tick_limit"), "{}", stdout(&out));
    assert!(stderr(&out).contains("rows still open"), "{}", stderr(&out));
}

#[test]
fn an_unknown_profile_is_an_error_listing_the_profiles() {
    let out = sluice(&["sim", "--seed", "1", "--faults", "chaos"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    for name in ["\"chaos\"", "none", "mixed", "harsh", "broker-down"] {
        assert!(err.contains(name), "{name} missing from: {err}");
    }
}
