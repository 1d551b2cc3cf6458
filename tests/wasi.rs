//! The closed WASI a policy gets: what a standard library does with it
//! works (printing, reading the clock), goes to the log, and replays; what
//! would make a tick depend on the outside (sleeping) is refused.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use crate::common::*;

const FAULTY: &str = sluice::bundled::FAULTY_POLICY_FILE;

/// The numbers a policy printed after "std's clock reads ".
fn clock_readings(log: &str) -> Vec<i64> {
    log.split("std's clock reads ")
        .skip(1)
        .filter_map(|rest| rest.split(' ').next()?.parse().ok())
        .collect()
}

#[test]
fn a_policy_that_prints_and_reads_the_clock_is_logged_and_replays_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("print.trace");
    // The simulator logs errors only unless told; a policy's printing is
    // info, so ask for it as an author would.
    let child = std::process::Command::new(sluice_bin())
        .env("RUST_LOG", "sluice::policy=info")
        .args([
            "sim",
            "--seed",
            "3",
            "--rows",
            "100",
            "--loops",
            "1",
            "--policy",
            FAULTY,
            "--setting",
            "fault=print",
            "--trace",
            path_str(&trace),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = wait_output(child, std::time::Duration::from_secs(60));
    let log = stderr(&out);
    assert!(out.status.success(), "{}{log}", stdout(&out));
    assert!(
        log.contains("policy_stdout"),
        "stdout did not reach the log: {log}"
    );
    assert!(
        log.contains("policy_stderr") && log.contains("a line on stderr"),
        "{log}"
    );

    // std's clock is the world's: each reading is an answer the trace holds
    // for a `now` call, so it comes from the simulator's virtual clock.
    let readings = clock_readings(&log);
    assert!(!readings.is_empty(), "no clock reading was printed: {log}");
    let recorded = std::fs::read_to_string(&trace).unwrap();
    for ms in &readings {
        assert!(
            recorded.contains(&format!(
                "\"call\":\"env.now\",\"args\":{{}},\"result\":{ms}}}"
            )),
            "std's clock read {ms}, which no recorded `now` answered"
        );
    }

    let replayed = sluice(&["replay", path_str(&trace), "--policy", FAULTY]);
    assert!(
        replayed.status.success() && stdout(&replayed).contains("replay ok"),
        "{}{}",
        stdout(&replayed),
        stderr(&replayed)
    );
}

#[test]
fn policy_check_passes_a_printing_policy_and_refuses_one_that_sleeps() {
    let printing = sluice(&["policy", "check", FAULTY, "--setting", "fault=print"]);
    assert!(
        printing.status.success(),
        "{}{}",
        stdout(&printing),
        stderr(&printing)
    );

    let sleeping = sluice(&["policy", "check", FAULTY, "--setting", "fault=sleep"]);
    let text = format!("{}{}", stdout(&sleeping), stderr(&sleeping));
    assert!(!sleeping.status.success(), "{text}");
    assert!(
        text.contains("policy_sleep") && text.contains("may not sleep"),
        "the refusal does not say why: {text}"
    );
}
