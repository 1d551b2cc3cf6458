//! Part 5: the default's rules in Python (`examples/python-default`, built by
//! componentize-py) against the same rules in Rust (the embedded default),
//! in one run: the whole drain in alternating runs on copies of one outbox,
//! and the cost of loading each, compiled and from the compile cache.

use crate::whole::{self, Shape};
use crate::{mb, median, rows};
use sluice::engine::{PolicyCache, PolicyEngine};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// The Python policy to measure: `$SLUICE_BENCH_PYTHON_POLICY`, or built now
/// with `$COMPONENTIZE_PY`; None (and why) when neither is there.
pub fn component(dir: &Path) -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("SLUICE_BENCH_PYTHON_POLICY") {
        return Ok(PathBuf::from(path));
    }
    let Some(cpy) = std::env::var_os("COMPONENTIZE_PY") else {
        return Err("set COMPONENTIZE_PY to a componentize-py 0.25 (or SLUICE_BENCH_PYTHON_POLICY to a built examples/python-default)".into());
    };
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = dir.join("python-default.wasm");
    let built = Command::new(cpy)
        .current_dir(repo.join("examples/python-default"))
        .arg("-d")
        .arg(repo.join("wit"))
        .args(["-w", "drain-policy", "componentize", "app", "-o"])
        .arg(&out)
        .output()
        .map_err(|e| format!("cannot run componentize-py: {e}"))?;
    if !built.status.success() {
        return Err(format!(
            "componentize-py failed: {}",
            String::from_utf8_lossy(&built.stderr)
        ));
    }
    Ok(out)
}

pub fn compare(dir: &Path, broker_url: &str, rows: usize, runs: usize, python: &Path) {
    let template = dir.join("python.db");
    rows::make(&template, rows);
    let py_bytes = std::fs::read(python).expect("read the Python policy");
    // The drains load it as `sluice run` does, from the compile cache the
    // environment names: fill it first, so no drain counts the compile.
    PolicyEngine::load("bench", &py_bytes, Vec::new()).expect("load the Python policy");
    let mut rust = Vec::new();
    let mut py = Vec::new();
    for i in 0..runs {
        // Alternate which goes first, so a drift of the machine favours neither.
        for is_python in [i % 2 == 1, i % 2 == 0] {
            let policy = is_python.then_some(python);
            let outbox = rows::copy(&template, dir, "run.db");
            let run = whole::drain_with(&outbox, broker_url, Shape::default_config(), policy);
            assert_eq!(run.done as usize, rows, "every row should be done");
            if is_python {
                py.push(run)
            } else {
                rust.push(run)
            }
        }
    }
    let rate = |r: &[whole::Run]| median(&r.iter().map(|r| r.rows_per_second).collect::<Vec<_>>());
    let cpu = |r: &[whole::Run]| {
        median(
            &r.iter()
                .map(|r| 1e6 * r.cpu_seconds / rows as f64)
                .collect::<Vec<_>>(),
        )
    };
    let rss = |r: &[whole::Run]| {
        median(
            &r.iter()
                .map(|r| r.peak_rss_bytes as f64)
                .collect::<Vec<_>>(),
        ) as u64
    };
    println!(
        "\n5. a policy in Python: examples/python-default against the embedded default (the same rules in Rust), default config, {rows} rows, median of {runs} runs each, alternating"
    );
    println!(
        "Rust   {:>8.0} rows/s, {:>6.1} us CPU/row, peak RSS {:>6.1} MB",
        rate(&rust),
        cpu(&rust),
        mb(rss(&rust))
    );
    println!(
        "Python {:>8.0} rows/s, {:>6.1} us CPU/row, peak RSS {:>6.1} MB",
        rate(&py),
        cpu(&py),
        mb(rss(&py))
    );
    println!(
        "Python/Rust: rate {:.3}, CPU per row {:.2}, peak RSS {:.2}",
        rate(&py) / rate(&rust),
        cpu(&py) / cpu(&rust),
        rss(&py) as f64 / rss(&rust) as f64
    );

    let rust_bytes = sluice::engine::DEFAULT_POLICY_WASM;
    let cache = PolicyCache::Dir(dir.join("cache"));
    let (rust_cold, rust_cached) = load_times(rust_bytes, &cache, runs);
    let (py_cold, py_cached) = load_times(&py_bytes, &cache, runs);
    println!(
        "load (compile, or from the compile cache; instantiate, info(), configure()), median of {runs}:"
    );
    println!(
        "Rust   {:>7.1} KB: cold {:>8.1} ms, cached {:>6.1} ms",
        rust_bytes.len() as f64 / 1e3,
        rust_cold,
        rust_cached
    );
    println!(
        "Python {:>7.1} KB: cold {:>8.1} ms, cached {:>6.1} ms",
        py_bytes.len() as f64 / 1e3,
        py_cold,
        py_cached
    );
    println!(
        "Python/Rust: cold {:.1}, cached {:.1}; Python cached/cold {:.3}",
        py_cold / rust_cold,
        py_cached / rust_cached,
        py_cached / py_cold
    );
}

/// Milliseconds to load `bytes` without the cache, then from it (filled by
/// the first cached load, which is not counted).
fn load_times(bytes: &[u8], cache: &PolicyCache, runs: usize) -> (f64, f64) {
    let time = |cache: &PolicyCache| {
        let started = Instant::now();
        PolicyEngine::load_with_cache("bench", bytes, Vec::new(), cache).expect("load the policy");
        started.elapsed().as_secs_f64() * 1e3
    };
    let cold: Vec<f64> = (0..runs).map(|_| time(&PolicyCache::Off)).collect();
    time(cache);
    let cached: Vec<f64> = (0..runs).map(|_| time(cache)).collect();
    (median(&cold), median(&cached))
}
