//! Running sluice as a service: JSON log lines and the systemd unit.

use crate::common::*;
use serde_json::Value;
use sluice_test_broker::BrokerOptions;

/// A drain whose one row is for a mesh the config lacks: dead
/// `no_broker_for_mesh`, logged by the policy as `drain_no_broker_for_mesh`.
fn drain_lost_row(extra: &[&str]) -> String {
    let broker = TestBroker::start(BrokerOptions::default());
    let setup = Setup::new(&broker.url(), "");
    let mut lost = routed("lost", "@peer");
    lost.mesh = Some("elsewhere".into());
    setup.enqueue(&[lost]);
    let out = setup.spawn_with(&[extra, &["--exit-when-drained"]].concat());
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(setup.row("lost").0, "dead");
    stderr(&out)
}

#[test]
fn json_logs_are_one_object_per_line_with_the_event_as_a_key() {
    let log = drain_lost_row(&["--log-format", "json"]);
    let lines: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let line = lines
        .iter()
        .find(|l| l["event"] == "drain_no_broker_for_mesh")
        .unwrap_or_else(|| panic!("no drain_no_broker_for_mesh event in:\n{log}"));
    assert_eq!(line["level"], "WARN", "{line}");
    assert_eq!(line["target"], "sluice::policy", "{line}");
    let message = line["message"].as_str().unwrap();
    assert!(
        message.starts_with("drain_no_broker_for_mesh ") && message.contains("mesh=elsewhere"),
        "{line}"
    );
}

#[test]
fn text_logs_lead_with_the_event_and_do_not_repeat_it() {
    let log = drain_lost_row(&[]);
    let line = log
        .lines()
        .find(|l| l.contains("drain_no_broker_for_mesh"))
        .unwrap_or_else(|| panic!("no drain_no_broker_for_mesh line in:\n{log}"));
    assert!(line.contains("drain_no_broker_for_mesh id=lost"), "{line}");
    assert!(!line.contains("event="), "{line}");
    assert!(serde_json::from_str::<Value>(line).is_err(), "{line}");
}

#[test]
fn service_print_writes_a_unit_for_the_config() {
    let setup = Setup::new("ws://127.0.0.1:9", "");
    // A relative path: the unit must name the absolute one.
    let out = std::process::Command::new(sluice_bin())
        .current_dir(setup.dir.path())
        .args(["service", "print", "--config", "sluice.toml"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let unit = stdout(&out);
    let config = std::fs::canonicalize(&setup.config).unwrap();
    let exec = unit
        .lines()
        .find(|l| l.starts_with("ExecStart="))
        .unwrap_or_else(|| panic!("no ExecStart in:\n{unit}"));
    assert!(
        exec.ends_with(&format!(" run --config {}", config.display())),
        "{exec}"
    );
    let binary = std::fs::canonicalize(sluice_bin()).unwrap();
    assert!(
        exec.starts_with(&format!("ExecStart={} ", binary.display())),
        "{exec}"
    );
    for line in [
        "Restart=on-failure",
        "KillSignal=SIGTERM",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "TimeoutStopSec=30",
        "WantedBy=default.target",
    ] {
        assert!(unit.lines().any(|l| l == line), "no {line} in:\n{unit}");
    }
}

#[test]
fn service_print_refuses_a_broken_config_naming_it() {
    let setup = Setup::new("ws://127.0.0.1:9", "");
    setup.add_to_drain("poll_every = 3");
    let out = sluice(&["service", "print", "--config", path_str(&setup.config)]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(stdout(&out), "");
    assert!(stderr(&out).contains("poll_every"), "{}", stderr(&out));
}

#[test]
fn the_repository_unit_matches_what_service_print_writes() {
    let dist = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../dist/sluice.service"
    ))
    .unwrap();
    for line in [
        "ExecStart=%h/.cargo/bin/sluice run --config %h/.config/sluice/sluice.toml",
        "Restart=on-failure",
        "KillSignal=SIGTERM",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "TimeoutStopSec=30",
    ] {
        assert!(
            dist.lines().any(|l| l == line),
            "no {line} in dist/sluice.service"
        );
    }
}
