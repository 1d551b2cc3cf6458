//! A policy in Python: `examples/python-default`, the default's rules
//! rewritten in Python and built by componentize-py, passes `sluice policy
//! test`, decides exactly as the default on every golden trace, and its own
//! recorded run replays exactly. Its rules' unit tests pass in CPython.

use crate::common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// `sluice` on a Python component, with the longer bound such commands get
/// (this file's calls shadow the common, 60 s one).
fn sluice(args: &[&str]) -> Output {
    sluice_within(args, PYTHON_COMMAND_TIME_MAX)
}

fn example() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/python-default")
}

fn wit() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../wit")
}

fn built(dir: &Path) -> PathBuf {
    let out = dir.join("python-default.wasm");
    componentize(&example(), &wit(), &out);
    out
}

#[test]
fn the_python_default_passes_policy_test_and_decides_as_the_default_on_every_golden_trace() {
    let dir = tempfile::tempdir().unwrap();
    let policy = built(dir.path());
    let tested = sluice(&["policy", "test", path_str(&policy), "--seeds", "2"]);
    let out = stdout(&tested);
    assert!(tested.status.success(), "{out}{}", stderr(&tested));
    assert!(out.contains("python-default 0.1.0"), "{out}");
    assert!(out.contains("test     ok"), "{out}");
    // Exact replay of the default's recordings, each under its own settings.
    let golden = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/golden");
    let checked = sluice(&[
        "policy",
        "check",
        path_str(&policy),
        "--verify",
        path_str(&golden),
    ]);
    let out = stdout(&checked);
    assert!(checked.status.success(), "{out}{}", stderr(&checked));
    assert!(!out.contains("diverged"), "{out}");

    // Its settings are its own table's: the plain [policy] keys are the
    // default's, and a key its table gets wrong is named with the table.
    let config = |table: &str| {
        let path = dir.path().join("sluice.toml");
        std::fs::write(
            &path,
            format!(
                "outbox = \"o.db\"\n[policy]\nnot_a_setting = 1\n[policy.python-default]\n{table}\n"
            ),
        )
        .unwrap();
        path
    };
    let path = config("max_attempts = 3");
    let checked = sluice(&[
        "policy",
        "check",
        path_str(&policy),
        "--config",
        path_str(&path),
    ]);
    let out = stdout(&checked);
    assert!(checked.status.success(), "{out}{}", stderr(&checked));
    assert!(
        out.contains("1 settings ([policy.python-default])"),
        "{out}"
    );
    let path = config("max_attempts = \"many\"");
    let refused = sluice(&[
        "policy",
        "check",
        path_str(&policy),
        "--config",
        path_str(&path),
    ]);
    let out = stdout(&refused);
    assert!(!refused.status.success(), "{out}");
    assert!(
        out.contains("`max_attempts`") && out.contains("settings from [policy.python-default]"),
        "{out}"
    );
}

#[test]
fn the_python_defaults_recorded_run_replays_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let policy = built(dir.path());
    let trace = dir.path().join("python.trace");
    let simulated = sluice(&[
        "sim",
        "--seed",
        "11",
        "--rows",
        "200",
        "--faults",
        "mixed",
        "--policy",
        path_str(&policy),
        "--trace",
        path_str(&trace),
    ]);
    assert!(
        simulated.status.success(),
        "{}{}",
        stdout(&simulated),
        stderr(&simulated)
    );
    let recorded = std::fs::read_to_string(&trace).unwrap();
    assert!(
        recorded.contains("\"name\":\"python-default\""),
        "the trace names another policy"
    );
    assert!(recorded.contains("\"call\":\"links.send-batch\""));
    let replayed = sluice(&["replay", path_str(&trace), "--policy", path_str(&policy)]);
    assert!(
        replayed.status.success() && stdout(&replayed).contains("replay ok"),
        "{}{}",
        stdout(&replayed),
        stderr(&replayed)
    );
}

#[test]
fn the_python_rules_unit_tests_pass_in_cpython() {
    let dir = tempfile::tempdir().unwrap();
    let bindings = dir.path().join("bindings");
    let made = Command::new(componentize_py())
        .arg("-d")
        .arg(wit())
        .args(["-w", "drain-policy", "bindings"])
        .arg(&bindings)
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let ran = Command::new("python3")
        .current_dir(example())
        .env("PYTHONPATH", &bindings)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .args(["-m", "unittest", "-v", "test_rules"])
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&ran.stderr);
    assert!(ran.status.success(), "{log}");
    assert!(log.contains("Ran 9 tests") && log.contains("OK"), "{log}");
}
