//! The outage-aware policy (`guest-outage/`, built by host/build.rs) in the
//! simulator: the default's invariants over the default's seeds and
//! profiles, and a ten-minute broker outage measured against the default.
//!
//! A failing seed prints `SLUICE_SEED=<n>`; `SLUICE_SEED=<n> cargo test
//! --release -p sluice-cli --test e2e sim_outage::` runs just that seed.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use sluice::engine::PolicyEngine;
use sluice_lab::sim::outbox::Status;
use sluice_lab::sim::{Profile, Sim, SimConfig, SimOutcome, SimPolicy, Stop, TraceSink};
use std::collections::BTreeMap;
use std::time::Instant;

const OUTAGE: &str = sluice::bundled::OUTAGE_POLICY_FILE;
/// As `tests/sim.rs`: seeds of the mixed profile, half as many harsh ones.
const SEEDS: u64 = 200;
const ROWS: u32 = 1_000;
const MINUTE_MS: i64 = 60_000;
/// Seeds the outage comparison sums over.
const COMPARE_SEEDS: u64 = 10;

fn config(seed: u64, rows: u32, profile: &str, ticks_max: u64) -> SimConfig {
    SimConfig {
        seed,
        rows,
        ticks_max,
        profile: Profile::named(profile).unwrap(),
        ..SimConfig::default()
    }
}

fn outage_policy() -> PolicyEngine {
    outage_policy_with(Vec::new())
}

fn outage_policy_with(settings: Vec<(String, String)>) -> PolicyEngine {
    let bytes = std::fs::read(OUTAGE).unwrap();
    PolicyEngine::load(OUTAGE, &bytes, settings).unwrap()
}

/// A row TTL of an hour: a run with no broker ends when every row has
/// expired, and an hour of half-second ticks is what the real outbox of
/// each seed can be simulated in, in a test.
fn hour_ttl() -> Vec<(String, String)> {
    vec![("row_ttl_ms".to_string(), "3600000".to_string())]
}

/// The seeds to run: `SLUICE_SEED` alone when set, else `1..=count`.
fn seeds(count: u64) -> Vec<u64> {
    match std::env::var("SLUICE_SEED") {
        Ok(seed) => vec![seed.trim().parse().expect("SLUICE_SEED is a whole number")],
        Err(_) => (1..=count).collect(),
    }
}

/// Runs every seed; the first violation or undrained run fails with its seed.
fn run_seeds(profile: &str, seeds: &[u64], rows: u32, ticks_max: u64) -> Vec<SimOutcome> {
    run_seeds_with(&outage_policy(), profile, seeds, rows, ticks_max)
}

fn run_seeds_with(
    engine: &PolicyEngine,
    profile: &str,
    seeds: &[u64],
    rows: u32,
    ticks_max: u64,
) -> Vec<SimOutcome> {
    let policy = SimPolicy::Component(engine);
    let started = Instant::now();
    let mut outcomes = Vec::new();
    for &seed in seeds {
        let mut sim = Sim::new(
            config(seed, rows, profile, ticks_max),
            &policy,
            &TraceSink::Off,
        )
        .unwrap();
        let outcome = sim.run();
        let hint = format!(
            "SLUICE_SEED={seed}: rerun with `SLUICE_SEED={seed} cargo test --release -p sluice-cli --test e2e sim_outage::` \
             or `sluice sim --seed {seed} --rows {rows} --faults {profile} --policy {OUTAGE}`"
        );
        if let Stop::Violation(violation) = &outcome.stop {
            panic!("{violation}\n{hint}");
        }
        assert_eq!(outcome.stop, Stop::Drained, "{hint}");
        assert_eq!(
            outcome.done + outcome.dead + outcome.aborted,
            rows as usize,
            "{hint}"
        );
        outcomes.push(outcome);
    }
    let ticks: u64 = outcomes.iter().map(|o| o.ticks).sum();
    eprintln!(
        "outage-aware, {profile}: {} seeds x {rows} rows, {ticks} ticks in {:.1} s",
        seeds.len(),
        started.elapsed().as_secs_f64()
    );
    outcomes
}

#[test]
fn it_names_itself_and_takes_its_own_setting() {
    let engine = outage_policy();
    assert_eq!(engine.meta().name, "sluice-outage-aware");
    assert_eq!(engine.meta().version, env!("CARGO_PKG_VERSION"));
    let bytes = std::fs::read(OUTAGE).unwrap();
    let set = |key: &str, value: &str| {
        PolicyEngine::load(OUTAGE, &bytes, vec![(key.into(), value.into())]).map(|_| ())
    };
    assert!(set("outage_recheck_ms", "500").is_ok());
    let err = set("outage_recheck_ms", "0").unwrap_err().to_string();
    assert!(err.contains("outage_recheck_ms"), "{err}");
}

#[test]
fn many_seeds_keep_every_invariant() {
    run_seeds("mixed", &seeds(SEEDS), ROWS, 100_000);
}

#[test]
fn many_harsh_seeds_keep_every_invariant() {
    run_seeds("harsh", &seeds(SEEDS / 2), ROWS, 100_000);
}

#[test]
fn a_broker_that_never_comes_back_loses_no_row() {
    // Session rows of a connecting link are held, not retried to their cap:
    // with no broker at all they wait out the TTL (an hour here), rechecked
    // every 2 s.
    let outcomes = run_seeds_with(
        &outage_policy_with(hour_ttl()),
        "broker-down",
        &seeds(2),
        500,
        100_000,
    );
    for outcome in outcomes {
        assert_eq!(
            outcome.done, 0,
            "seed {}: nothing can be delivered",
            outcome.seed
        );
    }
}

/// One policy's run through the ten-minute outage.
#[derive(Debug, Default)]
struct Figures {
    dead: usize,
    /// Dead rows by reason (`max_attempts: …` cut to its first word).
    reasons: BTreeMap<String, usize>,
    /// Virtual milliseconds from the broker's return to the last row settled.
    drain_after_ms: i64,
}

/// Runs `seed` through the `outage-10m` profile with its outage made
/// `outage_ms` long.
fn through_the_outage(policy: &SimPolicy<'_>, seed: u64, outage_ms: i64) -> Figures {
    let mut config = config(seed, ROWS, "outage-10m", 100_000);
    config.profile.outage_ms = outage_ms;
    // A comparison of policies, as docs/policies.md's figures were made: one
    // loop (two loops double the idle ticks of a long outage, and the test's
    // time, for the same verdicts).
    config.loops = 1;
    let mut sim = Sim::new(config, policy, &TraceSink::Off).unwrap();
    let outcome = sim.run();
    assert_eq!(outcome.stop, Stop::Drained, "seed {seed}: {outcome:?}");
    let mut reasons = BTreeMap::new();
    for stored in sim.outbox().rows().values() {
        if stored.status == Status::Dead {
            let reason = stored.last_error.clone().unwrap_or_default();
            let reason = match reason.split_once(": ") {
                Some((kind, _)) if kind != "max_attempts" => kind.to_string(),
                _ => reason,
            };
            *reasons.entry(reason).or_default() += 1;
        }
    }
    Figures {
        dead: outcome.dead,
        reasons,
        drain_after_ms: outcome.virtual_ms - outage_ms,
    }
}

/// Both policies through an outage of `minutes` on `COMPARE_SEEDS` seeds,
/// each seed's figures and the totals printed; returns the totals, default
/// first. Asserts per seed that the outage-aware policy kills no more rows.
fn compare(minutes: i64) -> [Figures; 2] {
    let default = PolicyEngine::load_default(Vec::new()).unwrap();
    let outage = outage_policy();
    let outage_ms = minutes * MINUTE_MS;
    let mut totals: [Figures; 2] = Default::default();
    eprintln!("a {minutes}-minute outage, {ROWS} rows queued:");
    for seed in 1..=COMPARE_SEEDS {
        let default = through_the_outage(&SimPolicy::Component(&default), seed, outage_ms);
        let outage = through_the_outage(&SimPolicy::Component(&outage), seed, outage_ms);
        eprintln!(
            "  seed {seed:>2}: dead {:>3} default / {:>3} outage-aware; drained {:>5.1} s / {:>5.1} s after the broker returned",
            default.dead,
            outage.dead,
            default.drain_after_ms as f64 / 1000.0,
            outage.drain_after_ms as f64 / 1000.0
        );
        assert!(
            outage.dead <= default.dead,
            "seed {seed}: {outage:?} against {default:?}"
        );
        for (total, figures) in totals.iter_mut().zip([default, outage]) {
            total.dead += figures.dead;
            total.drain_after_ms += figures.drain_after_ms;
            for (reason, n) in figures.reasons {
                *total.reasons.entry(reason).or_default() += n;
            }
        }
    }
    for (name, figures) in [("default", &totals[0]), ("outage-aware", &totals[1])] {
        eprintln!(
            "  {name:>12}: {} of {} rows dead, backlog drained {:.1} s (mean) after the broker returned; dead by reason {:?}",
            figures.dead,
            COMPARE_SEEDS * u64::from(ROWS),
            figures.drain_after_ms as f64 / 1000.0 / COMPARE_SEEDS as f64,
            figures.reasons
        );
    }
    totals
}

/// The session rows that ran out of attempts waiting for their link.
fn session_cap(figures: &Figures) -> usize {
    figures
        .reasons
        .get("max_attempts: session_ws_not_open")
        .copied()
        .unwrap_or(0)
}

#[test]
fn a_ten_minute_outage_kills_fewer_rows_and_drains_sooner_than_the_default() {
    let [default, outage] = compare(10);
    assert!(outage.dead < default.dead, "{outage:?} against {default:?}");
    assert!(
        outage.drain_after_ms < default.drain_after_ms,
        "{outage:?} against {default:?}"
    );
    // Every other reason is the row's own (malformed, expired, no mesh,
    // session gone) and the same under both.
    let others = |f: &Figures| f.dead - session_cap(f);
    assert_eq!(others(&outage), others(&default));
}

#[test]
fn a_thirty_minute_outage_spends_no_session_rows_attempts() {
    let [default, outage] = compare(30);
    // The default's 25 attempts last about ten minutes of backoff: every
    // session row of a registered session dies waiting. The outage-aware
    // policy keeps them; its few `max_attempts` are rows of sessions nobody
    // registered that a previous drainer had nearly used up (the default's
    // rule, kept).
    assert!(
        session_cap(&outage) * 10 < session_cap(&default),
        "{outage:?} against {default:?}"
    );
    assert!(outage.drain_after_ms < default.drain_after_ms);
}
