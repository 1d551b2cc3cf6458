//! A policy that traps, loops or eats memory cannot stop the host: the tick
//! is abandoned, its rows come back through their lease, the loop goes on
//! with a fresh instance. Uses the guest built with its `faults` feature.

// Test code fails loudly: an unwrap here is an assertion.
#![allow(clippy::unwrap_used)]

use crate::common::*;
use sluice_test_broker::BrokerOptions;
use std::time::Duration;

const FAULTY: &str = sluice::bundled::FAULTY_POLICY_FILE;

fn faulty_setup(broker: &TestBroker, fault: &str) -> Setup {
    let policy = format!("[policy]\nfault = \"{fault}\"\nack_timeout_ms = 1000\nlease_ms = 1500\n");
    Setup::new(&broker.url(), &policy)
}

/// Runs the faulty policy until `ready`, then stops it; returns its stderr.
fn run_until(setup: &Setup, what: &str, ready: impl FnMut() -> bool) -> String {
    let mut child = setup.spawn(&["--policy", FAULTY]);
    wait_for(what, Duration::from_secs(30), ready);
    assert!(child.try_wait().unwrap().is_none(), "the host died");
    signal(&child, "TERM");
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    stderr(&out)
}

fn failed_ticks(setup: &Setup) -> impl FnMut() -> bool + '_ {
    // Two reclaim cycles: attempts counted twice, so two ticks claimed and died.
    move || setup.sql::<i64>("SELECT MAX(attempts) FROM outbox") >= 2
}

#[test]
fn policy_that_traps_after_claiming_loses_no_rows() {
    let broker = TestBroker::start(BrokerOptions::default());
    let setup = faulty_setup(&broker, "trap_after_claim");
    setup.enqueue(&many("trapped", 50));
    let log = run_until(
        &setup,
        "rows to come back through their lease",
        failed_ticks(&setup),
    );
    assert!(
        log.contains("drain_tick_failed") && log.contains("policy trapped"),
        "{log}"
    );
    assert!(
        log.contains("policy_panic"),
        "the guest's panic message was not logged: {log}"
    );
    assert_eq!(broker.stats().sends, 0);

    // The default policy picks the rows up once their lease runs out.
    let text = std::fs::read_to_string(&setup.config)
        .unwrap()
        .replace("fault = \"trap_after_claim\"\n", "");
    std::fs::write(&setup.config, text).unwrap();
    let out = setup.drain();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        setup.sql::<i64>("SELECT COUNT(*) FROM outbox WHERE status = 'done'"),
        50
    );
}

#[test]
fn policy_that_loops_is_interrupted_and_the_host_keeps_ticking() {
    let broker = TestBroker::start(BrokerOptions::default());
    let setup = faulty_setup(&broker, "loop");
    setup.enqueue(&many("looped", 5));
    let mut failures = 0;
    let log = run_until(&setup, "two interrupted ticks", || {
        failures += 1;
        failures > 250
    });
    let interrupted = log.matches("time budget").count();
    assert!(
        interrupted >= 2,
        "expected repeated interrupted ticks, got {interrupted}: {log}"
    );
}

#[test]
fn policy_that_eats_memory_is_stopped_at_its_cap_and_the_host_keeps_ticking() {
    let broker = TestBroker::start(BrokerOptions::default());
    let setup = faulty_setup(&broker, "oom");
    setup.enqueue(&many("hungry", 5));
    let mut polls = 0;
    let log = run_until(&setup, "a few ticks", || {
        polls += 1;
        polls > 100
    });
    assert!(log.matches("drain_tick_failed").count() >= 2, "{log}");
}
