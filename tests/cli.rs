//! The command line's contracts: errors that name the thing and the fix, and
//! that lose nothing.

use crate::common::*;
use sluice_test_broker::BrokerOptions;

#[test]
fn unknown_config_key_is_an_error_naming_it() {
    let setup = Setup::new("ws://127.0.0.1:9", "[policy]\nbatch_rows = 8\n");
    setup.add_to_drain("poll_every = 3");
    let out = sluice(&[
        "run",
        "--config",
        path_str(&setup.config),
        "--exit-when-drained",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("poll_every"), "{}", stderr(&out));
}

#[test]
fn bad_policy_setting_is_an_error_naming_it() {
    let setup = Setup::new("ws://127.0.0.1:9", "[policy]\nbatch_rows = 0\n");
    let out = sluice(&[
        "run",
        "--config",
        path_str(&setup.config),
        "--exit-when-drained",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("`batch_rows` = 0 is out of range"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn mismatched_keys_are_an_error() {
    let setup = Setup::new("ws://127.0.0.1:9", "");
    let text = std::fs::read_to_string(&setup.config).unwrap();
    let text = text.replacen("public_key = \"e", "public_key = \"f", 1);
    std::fs::write(&setup.config, text).unwrap();
    let out = sluice(&["status", "--config", path_str(&setup.config)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("mesh[0].public_key does not match"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn outbox_that_is_not_sqlite_is_refused_and_left_untouched() {
    let setup = Setup::new("ws://127.0.0.1:9", "");
    let junk = b"this is a text file, not an outbox\n".repeat(100);
    std::fs::write(&setup.outbox, &junk).unwrap();
    let out = sluice(&[
        "run",
        "--config",
        path_str(&setup.config),
        "--exit-when-drained",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("not a SQLite database"),
        "{}",
        stderr(&out)
    );
    assert_eq!(std::fs::read(&setup.outbox).unwrap(), junk);
}

#[test]
fn foreign_database_is_refused_and_left_untouched() {
    let setup = Setup::new("ws://127.0.0.1:9", "");
    let conn = rusqlite::Connection::open(&setup.outbox).unwrap();
    conn.execute_batch("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total INTEGER); INSERT INTO invoices VALUES (1, 99);").unwrap();
    drop(conn);
    let before = std::fs::read(&setup.outbox).unwrap();
    let out = sluice(&["status", "--config", path_str(&setup.config)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("outbox"), "{}", stderr(&out));
    assert_eq!(std::fs::read(&setup.outbox).unwrap(), before);
}

#[test]
fn policy_file_that_is_not_a_component_is_refused_with_the_fix() {
    let setup = Setup::new("ws://127.0.0.1:9", "");
    let text_file = setup.dir.path().join("policy.wasm");
    std::fs::write(&text_file, "not wasm").unwrap();
    let out = sluice(&[
        "run",
        "--config",
        path_str(&setup.config),
        "--policy",
        path_str(&text_file),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("is not a WebAssembly component"),
        "{}",
        stderr(&out)
    );

    let core_module = setup.dir.path().join("core.wasm");
    std::fs::write(&core_module, b"\0asm\x01\0\0\0").unwrap();
    let out = sluice(&[
        "run",
        "--config",
        path_str(&setup.config),
        "--policy",
        path_str(&core_module),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("core WebAssembly module, not a component"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn enqueue_then_status_reports_counts_age_and_errors() {
    let broker = TestBroker::start(BrokerOptions::default());
    let setup = Setup::new(&broker.url(), "");
    let config = path_str(&setup.config);
    let out = sluice(&[
        "enqueue",
        "--config",
        config,
        "--payload",
        "hello",
        "--mesh",
        "nowhere",
        "--target-spec",
        "@a",
        "--nonce",
        "bg==",
        "--ciphertext",
        "Yw==",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut child = std::process::Command::new(sluice_bin())
        .args(["enqueue", "--config", config, "--json"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"{\"payload\":\"a\"}\n{\"payload_base64\":\"Yg==\",\"mesh\":\"alpha\"}\n")
        .unwrap();
    let out = wait_output(child, std::time::Duration::from_secs(30));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).lines().count(), 2);

    let status = stdout(&sluice(&["status", "--config", config]));
    assert!(status.contains("pending   3"), "{status}");
    assert!(status.contains("oldest pending row:"), "{status}");
    assert!(setup.drain().status.success());
    let status = stdout(&sluice(&["status", "--config", config]));
    assert!(
        status.contains("done      2") && status.contains("dead      1"),
        "{status}"
    );
    assert!(status.contains("no_broker_for_mesh:nowhere"), "{status}");
}

#[test]
fn bad_json_row_is_an_error_naming_the_line() {
    let setup = Setup::new("ws://127.0.0.1:9", "");
    let mut child = std::process::Command::new(sluice_bin())
        .args(["enqueue", "--config", path_str(&setup.config), "--json"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"{\"payload\":\"ok\"}\n{\"paylod\":\"typo\"}\n")
        .unwrap();
    let out = wait_output(child, std::time::Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("stdin line 2"), "{}", stderr(&out));
    let written = setup.outbox.exists()
        && setup.sql::<i64>("SELECT COUNT(*) FROM sqlite_master WHERE name = 'outbox'") == 1
        && setup.sql::<i64>("SELECT COUNT(*) FROM outbox") > 0;
    assert!(!written, "a partial batch was written");
}

#[test]
fn status_of_a_missing_outbox_says_so_and_creates_nothing() {
    let setup = Setup::new("ws://127.0.0.1:9", "");
    let out = sluice(&["status", "--config", path_str(&setup.config)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("no outbox at"), "{}", stderr(&out));
    assert!(!setup.outbox.exists());
}

/// The README shows the demo's summary, hash included; the component is
/// built reproducibly (host/build.rs), so the hash shown is the one every
/// checkout of this source builds, wherever it was cloned. CI runs this in
/// a fresh clone in another folder.
#[test]
fn readme_shows_the_hash_of_the_embedded_policy() {
    use sha2::{Digest as _, Sha256};
    let built = hex::encode(Sha256::digest(sluice::engine::DEFAULT_POLICY_WASM));
    let readme_path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    let readme = std::fs::read_to_string(&readme_path).expect("README.md");
    let shown: Vec<&str> = readme
        .lines()
        .filter_map(|line| line.trim_start().strip_prefix("sha256 "))
        .map(str::trim)
        .collect();
    assert!(
        !shown.is_empty(),
        "the README's demo summary has no `sha256` line"
    );
    for hash in shown {
        assert_eq!(
            hash, built,
            "the README shows sha256 {hash}, the embedded policy is {built}: \
             run `cargo run --release -- demo` and copy its summary into the README"
        );
    }
}

/// `sluice policy bundled DIR` writes what the binary carries: the three
/// components (the default byte for byte the embedded one) and every golden
/// trace of `tests/golden`, unchanged, so walkthroughs need no checkout.
#[test]
fn policy_bundled_writes_the_components_and_every_golden_trace() {
    let dir = tempfile::tempdir().unwrap();
    let out = sluice(&["policy", "bundled", path_str(dir.path())]);
    assert!(out.status.success(), "{}", stderr(&out));
    for name in [
        "sluice-default.wasm",
        "sluice-outage-aware.wasm",
        "sluice-faulty.wasm",
    ] {
        assert!(stdout(&out).contains(name), "{}", stdout(&out));
    }
    assert_eq!(
        std::fs::read(dir.path().join("sluice-default.wasm")).unwrap(),
        sluice::engine::DEFAULT_POLICY_WASM
    );
    assert_eq!(
        std::fs::read(dir.path().join("sluice-faulty.wasm")).unwrap(),
        std::fs::read(sluice::bundled::FAULTY_POLICY_FILE).unwrap()
    );
    let golden = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/golden");
    let mut count = 0;
    for entry in std::fs::read_dir(&golden).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "trace") {
            let written = dir.path().join("golden").join(path.file_name().unwrap());
            assert_eq!(
                std::fs::read(&written).unwrap(),
                std::fs::read(&path).unwrap(),
                "{}",
                written.display()
            );
            count += 1;
        }
    }
    assert!(count >= 20, "{count} golden traces");
    assert_eq!(
        std::fs::read_dir(dir.path().join("golden"))
            .unwrap()
            .count(),
        count
    );
}

/// `status --wait-drained` waits for the drainer; with rows that nobody
/// drains it gives up after the time given and exits 1, naming how many.
#[test]
fn status_wait_drained_exits_1_when_rows_are_still_open() {
    let setup = Setup::new("ws://127.0.0.1:9", "");
    setup.enqueue(&many("waiting", 3));
    let started = std::time::Instant::now();
    let out = sluice(&[
        "status",
        "--config",
        path_str(&setup.config),
        "--wait-drained",
        "0.5",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(started.elapsed() >= std::time::Duration::from_millis(500));
    assert!(stderr(&out).contains("still 3 row(s)"), "{}", stderr(&out));
    assert!(stdout(&out).contains("pending   3"), "{}", stdout(&out));
}

#[test]
fn unknown_scheduling_is_an_error_naming_the_choices() {
    let setup = Setup::new("ws://127.0.0.1:9", "");
    setup.add_to_drain("scheduling = \"fast\"");
    let out = sluice(&["run", "--config", path_str(&setup.config)]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("drain.scheduling") && err.contains("\"batch\"") && err.contains("\"normal\""),
        "{err}"
    );
}

/// The scheduling policy of every thread of a running process, from
/// `/proc/<pid>/task/*/stat` (field 41: 0 normal, 3 batch).
fn thread_policies(pid: u32) -> Vec<u32> {
    let mut policies = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let Ok(stat) = std::fs::read_to_string(task.unwrap().path().join("stat")) else {
            continue; // a thread that just ended
        };
        // Fields after the command's closing parenthesis start at field 3.
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        policies.push(rest.split(' ').nth(41 - 3).unwrap().parse().unwrap());
    }
    policies
}

#[test]
fn every_thread_of_a_running_drain_takes_the_configured_scheduling() {
    for (setting, expected) in [("scheduling = \"batch\"", 3), ("", 0)] {
        let setup = Setup::new("ws://127.0.0.1:9", "");
        setup.add_to_drain(setting);
        let mut child = std::process::Command::new(sluice_bin())
            .args(["run", "--config", path_str(&setup.config)])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // The runtime's, the checkpoint thread and the loops start within
        // moments; the links keep retrying the closed port meanwhile.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let mut policies = thread_policies(child.id());
        while policies.len() < 4 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(50));
            policies = thread_policies(child.id());
        }
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(policies.len() >= 4, "threads: {policies:?}");
        assert!(
            policies.iter().all(|p| *p == expected),
            "[drain] {setting:?}: every thread {expected}, got {policies:?}"
        );
    }
}
