//! How long loading a policy takes, cold and from the compile cache, and
//! from the start of a load to the end of the first tick:
//! `cargo run --release --example policy_load`.
//!
//! Prints the median of `SLUICE_BENCH_RUNS` (default 21) loads for the
//! embedded default policy and for a policy file (the faulty test policy,
//! read from disk on every load). Cold loads compile; cached loads read a
//! temporary cache directory. The targets: a swap under 50 ms cold,
//! under 10 ms cached.

use sluice::engine::{CacheStatus, DEFAULT_POLICY_WASM, PolicyCache, PolicyEngine};
use sluice::policy::{Answer, Call, Reply};
use std::path::Path;
use std::time::{Duration, Instant};

const FILE_POLICY: &str = env!("SLUICE_FAULTY_POLICY_WASM");

fn main() {
    let runs = std::env::var("SLUICE_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(21usize)
        .max(1);
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = PolicyCache::Dir(dir.path().to_path_buf());

    let started = Instant::now();
    let first = PolicyEngine::load_uncached("embedded default", DEFAULT_POLICY_WASM, vec![])
        .expect("default policy");
    println!(
        "first load in this process (makes the engine, compiles): {}",
        ms(started.elapsed())
    );
    drop(first);

    println!("median of {runs} runs, in ms:");
    println!(
        "{:<34} {:>8} {:>8} {:>14}",
        "", "cold", "cached", "cached+tick"
    );
    let default = |choice: &PolicyCache| {
        PolicyEngine::load_with_cache("embedded default", DEFAULT_POLICY_WASM, vec![], choice)
    };
    let file = |choice: &PolicyCache| {
        let bytes = std::fs::read(FILE_POLICY).expect("policy file");
        PolicyEngine::load_with_cache(FILE_POLICY, &bytes, vec![], choice)
    };
    report(
        "embedded default",
        runs,
        &cache,
        &default as &dyn Fn(&PolicyCache) -> _,
    );
    report(
        &format!(
            "file {}",
            Path::new(FILE_POLICY)
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("")
        ),
        runs,
        &cache,
        &file as &dyn Fn(&PolicyCache) -> _,
    );
}

type Load<'a> = &'a dyn Fn(&PolicyCache) -> Result<PolicyEngine, sluice::engine::LoadError>;

fn report(label: &str, runs: usize, cache: &PolicyCache, load: Load<'_>) {
    let cold = median(runs, || {
        let engine = load(&PolicyCache::Off).expect("load");
        assert!(matches!(engine.cache_status(), CacheStatus::Off(_)));
    });
    load(cache).expect("warm the cache");
    let cached = median(runs, || {
        let engine = load(cache).expect("load");
        assert!(matches!(engine.cache_status(), CacheStatus::Hit(_)));
    });
    let to_tick = median(runs, || {
        let engine = load(cache).expect("load");
        let mut runner = engine.runner(Idle).expect("runner");
        runner.tick(0).expect("tick");
    });
    println!(
        "{label:<34} {:>8} {:>8} {:>14}",
        ms(cold),
        ms(cached),
        ms(to_tick)
    );
}

fn median(runs: usize, mut once: impl FnMut()) -> Duration {
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let started = Instant::now();
            once();
            started.elapsed()
        })
        .collect();
    times.sort();
    times[times.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

/// An empty outbox with no links: a tick that finds nothing to do.
struct Idle;

impl Answer for Idle {
    fn answer(&mut self, call: Call) -> Reply {
        Reply::nothing(&call, "no links")
    }
}
