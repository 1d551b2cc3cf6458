//! Hot swapping a running drainer's policy: the watched file, `sluice
//! policy load`, validation that keeps a bad candidate out, rollback of a
//! policy that traps or breaks the host's rules (`guard`), and the audit
//! trail in the outbox.

// Test code fails loudly: an unwrap here is an assertion.
#![allow(clippy::unwrap_used)]

// The guard's refusals, which end in a rollback.
#[path = "guard.rs"]
mod guard;

use crate::common::*;
use sluice_test_broker::BrokerOptions;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The default policy and a second, different component that decides alike
/// (the faulty build with no fault), as files.
fn two_policies(dir: &Path) -> (PathBuf, PathBuf) {
    let default = dir.join("default.wasm");
    let other = dir.join("other.wasm");
    std::fs::write(&default, sluice::engine::DEFAULT_POLICY_WASM).unwrap();
    std::fs::copy(sluice::bundled::FAULTY_POLICY_FILE, &other).unwrap();
    (default, other)
}

fn status(setup: &Setup) -> String {
    stdout(&sluice(&["status", "--config", path_str(&setup.config)]))
}

fn load(setup: &Setup, file: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "policy",
        "load",
        path_str(file),
        "--config",
        path_str(&setup.config),
    ];
    args.extend_from_slice(extra);
    sluice(&args)
}

/// 100,000 rows drain while the watched policy file flips between two
/// policies every 100 ms, written now in place in two halves, now by an
/// atomic rename. No row is lost or sent twice, every row ends done, and
/// rows were decided by both policies.
#[test]
fn a_policy_swapped_every_100_ms_under_load_loses_nothing() {
    let broker = TestBroker::start(BrokerOptions::default());
    let setup = Setup::new(&broker.url(), "[policy]\nbatch_rows = 256\n");
    let (default, other) = two_policies(setup.dir.path());
    let watched = setup.dir.path().join("live.wasm");
    std::fs::copy(&default, &watched).unwrap();
    setup.enqueue(&many("swap", 100_000));
    let child = setup.spawn(&["--policy", path_str(&watched), "--exit-when-drained"]);
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut flips = 0;
    let mut running = true;
    while running && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        let source = if flips % 2 == 0 { &other } else { &default };
        let bytes = std::fs::read(source).unwrap();
        if flips % 4 < 2 {
            // In place, in two halves: the first half alone is no component.
            let (head, tail) = bytes.split_at(bytes.len() / 2);
            std::fs::write(&watched, head).unwrap();
            std::thread::sleep(Duration::from_millis(5));
            let mut whole = head.to_vec();
            whole.extend_from_slice(tail);
            std::fs::write(&watched, whole).unwrap();
        } else {
            let next = setup.dir.path().join("next.wasm");
            std::fs::write(&next, &bytes).unwrap();
            std::fs::rename(&next, &watched).unwrap();
        }
        flips += 1;
        running = setup.sql::<i64>("SELECT COUNT(*) FROM outbox WHERE status != 'done'") > 0;
    }
    let out = wait_output(child, Duration::from_secs(60));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(flips >= 5, "the drain ended before the policy flipped much");
    assert_eq!(
        setup.sql::<i64>("SELECT COUNT(*) FROM outbox WHERE status = 'done'"),
        100_000
    );
    let stats = broker.stats();
    assert_eq!(stats.receipts.len(), 100_000);
    assert!(
        stats.receipts.values().all(|n| *n == 1),
        "a row was sent twice"
    );
    let swaps = stderr(&out).matches("policy_swapped").count();
    assert!(swaps >= 2, "{swaps} swaps:\n{}", stderr(&out));
    let deciders: i64 =
        setup.sql("SELECT COUNT(DISTINCT decided_by) FROM outbox WHERE status = 'done'");
    assert_eq!(deciders, 2, "both policies decided rows");
    let history: i64 =
        setup.sql("SELECT COUNT(*) FROM sluice_policy_history WHERE reason = 'file change'");
    assert!(history >= 2);
}

/// `sluice policy load` swaps a running drainer's policy; a file that is not
/// a component is refused with the reason and the running policy goes on; a
/// policy that traps on every tick is rolled back to the last good one after
/// three ticks, and `sluice status` tells the story.
#[test]
fn load_refuses_a_bad_candidate_and_a_trapping_policy_is_rolled_back() {
    let broker = TestBroker::start(BrokerOptions::default());
    let setup = Setup::new(&broker.url(), "");
    let (_, other) = two_policies(setup.dir.path());
    let child = setup.spawn(&[]);
    setup.enqueue(&many("first", 10));
    wait_for("the first rows", Duration::from_secs(20), || {
        setup.sql::<i64>("SELECT COUNT(*) FROM outbox WHERE status = 'done'") == 10
    });

    let junk = setup.dir.path().join("junk.wasm");
    std::fs::write(&junk, b"\0asm\x0d\0\x01\0 truncated").unwrap();
    let refused = load(&setup, &junk, &[]);
    assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
    assert!(
        stdout(&refused).contains("refused") && stdout(&refused).contains("running policy goes on"),
        "{}",
        stdout(&refused)
    );
    // One line of reason: no dump of the magic bytes expected and found.
    assert!(
        !stdout(&refused).contains("expected=") && stdout(&refused).lines().count() <= 2,
        "{}",
        stdout(&refused)
    );

    let trapping = load(&setup, &other, &["--setting", "fault=trap"]);
    assert!(
        trapping.status.success(),
        "{}{}",
        stdout(&trapping),
        stderr(&trapping)
    );
    assert!(
        stdout(&trapping).contains("sluice-faulty"),
        "{}",
        stdout(&trapping)
    );
    setup.enqueue(&many("second", 10));
    wait_for("the rollback", Duration::from_secs(30), || {
        status(&setup).contains("rollback")
    });
    wait_for(
        "the rows after the rollback",
        Duration::from_secs(30),
        || setup.sql::<i64>("SELECT COUNT(*) FROM outbox WHERE status = 'done'") == 20,
    );
    let shown = status(&setup);
    assert!(shown.contains("policy: sluice-default"), "{shown}");
    assert!(shown.contains("trapped 3 ticks in a row"), "{shown}");
    // The trap's reason on one line; the wasm backtrace is for the debug log.
    assert!(
        !shown.contains("wasm backtrace")
            && !shown.lines().any(|l| l.trim_start().starts_with("0: ")),
        "{shown}"
    );
    assert!(shown.contains("rows decided in the last hour"), "{shown}");
    signal(&child, "TERM");
    let out = wait_output(child, Duration::from_secs(20));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("policy_rolled_back"),
        "{}",
        stderr(&out)
    );
}

/// A policy that traps from its first tick has no good policy to go back
/// to: the drainer stops ticking with a clear error, touches no row, and
/// drains again once a working policy is loaded.
#[test]
fn without_a_last_good_policy_the_drainer_halts_until_one_is_loaded() {
    let broker = TestBroker::start(BrokerOptions::default());
    let setup = Setup::new(&broker.url(), "[policy]\nfault = \"trap\"\n");
    let (default, other) = two_policies(setup.dir.path());
    setup.enqueue(&many("halt", 5));
    let child = setup.spawn(&["--policy", path_str(&other)]);
    wait_for("the halt", Duration::from_secs(30), || {
        status(&setup).contains("HALTED")
    });
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        setup.sql::<i64>("SELECT COUNT(*) FROM outbox WHERE status = 'pending' AND attempts = 0"),
        5,
        "a halted drainer touches no row"
    );
    // The default refuses the config's `fault` setting: the faulty build
    // with the fault switched off is the working policy here.
    let loaded = load(&setup, &other, &["--setting", "fault=none"]);
    assert!(loaded.status.success(), "{}", stdout(&loaded));
    wait_for("the rows after the load", Duration::from_secs(30), || {
        setup.sql::<i64>("SELECT COUNT(*) FROM outbox WHERE status = 'done'") == 5
    });
    let _ = default;
    signal(&child, "TERM");
    let out = wait_output(child, Duration::from_secs(20));
    assert!(stderr(&out).contains("policy_halted"), "{}", stderr(&out));
}

/// `sluice policy check` validates offline with the same messages; with
/// --verify it replays the golden traces and names the first divergence.
#[test]
fn check_validates_offline_and_verify_replays_the_golden_traces() {
    let dir = tempfile::tempdir().unwrap();
    let (default, other) = two_policies(dir.path());
    let golden = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/golden");
    let ok = sluice(&[
        "policy",
        "check",
        path_str(&default),
        "--verify",
        path_str(&golden),
    ]);
    assert!(ok.status.success(), "{}{}", stdout(&ok), stderr(&ok));
    assert!(
        stdout(&ok).contains("sluice-default") && stdout(&ok).contains("traces replay identically"),
        "{}",
        stdout(&ok)
    );

    let bad = sluice(&[
        "policy",
        "check",
        path_str(&other),
        "--setting",
        "fault=never_dead",
        "--verify",
        path_str(&golden),
    ]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        stdout(&bad).contains("diverged at") && stdout(&bad).contains("traces diverge"),
        "{}",
        stdout(&bad)
    );

    let junk = dir.path().join("junk.wasm");
    std::fs::write(&junk, b"not wasm at all").unwrap();
    let out = sluice(&["policy", "check", path_str(&junk)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("not a WebAssembly component"),
        "{}",
        stdout(&out)
    );
}

/// The walkthrough's config sets the default's settings (`lease_ms = 5000`
/// and more); `--verify` replays each golden trace with the settings it was
/// recorded with, so the policy already running passes, through `policy
/// check --config` and through a live swap of a drainer run with `--verify`.
#[test]
fn verify_replays_each_trace_with_its_own_settings_not_the_operators() {
    let broker = TestBroker::start(BrokerOptions::default());
    let setup = Setup::new(
        &broker.url(),
        "[policy]\nack_timeout_ms = 500\nlease_ms = 5000\nbatch_rows = 256\n",
    );
    let (default, other) = two_policies(setup.dir.path());
    let golden = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/golden");
    let checked = sluice(&[
        "policy",
        "check",
        path_str(&default),
        "--config",
        path_str(&setup.config),
        "--verify",
        path_str(&golden),
    ]);
    assert!(
        checked.status.success(),
        "{}{}",
        stdout(&checked),
        stderr(&checked)
    );
    assert!(
        stdout(&checked).contains("traces replay identically"),
        "{}",
        stdout(&checked)
    );

    let child = setup.spawn(&["--verify", path_str(&golden)]);
    setup.enqueue(&many("before", 10));
    wait_for("the first rows", Duration::from_secs(20), || {
        setup.sql::<i64>("SELECT COUNT(*) FROM outbox WHERE status = 'done'") == 10
    });
    let loaded = load(&setup, &other, &[]);
    assert!(
        loaded.status.success(),
        "{}{}",
        stdout(&loaded),
        stderr(&loaded)
    );
    assert!(
        stdout(&loaded).contains("sluice-faulty"),
        "{}",
        stdout(&loaded)
    );
    setup.enqueue(&many("after", 10));
    wait_for("the rows after the swap", Duration::from_secs(20), || {
        setup.sql::<i64>("SELECT COUNT(*) FROM outbox WHERE status = 'done'") == 20
    });
    assert!(
        status(&setup).contains("policy: sluice-faulty"),
        "{}",
        status(&setup)
    );
    signal(&child, "TERM");
    assert!(wait_output(child, Duration::from_secs(20)).status.success());
}

/// The client refuses a control socket that others could use.
#[test]
fn a_control_socket_open_to_others_is_refused() {
    use std::os::unix::fs::PermissionsExt as _;
    let broker = TestBroker::start(BrokerOptions::default());
    let setup = Setup::new(&broker.url(), "");
    let (default, _) = two_policies(setup.dir.path());
    let child = setup.spawn(&[]);
    let wake = setup.dir.path().join("outbox.db.wake");
    let socket = wait_socket(&wake);
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = load(&setup, &default, &[]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("mode 0600"), "{}", stderr(&out));
    signal(&child, "TERM");
    assert!(wait_output(child, Duration::from_secs(20)).status.success());
}

fn wait_socket(wake: &Path) -> PathBuf {
    let mut found = None;
    wait_for("the control socket", Duration::from_secs(20), || {
        found = std::fs::read_dir(wake).ok().and_then(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .find(|p| p.extension().is_some_and(|e| e == "control"))
        });
        found.is_some()
    });
    found.unwrap()
}
