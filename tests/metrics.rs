//! End to end: `sluice run --metrics` serves `/metrics`, and a Prometheus
//! text parser reads from it what the drain did.
// Test code fails loudly: an unwrap here is an assertion.
#![allow(clippy::unwrap_used)]

use crate::common::*;
use prometheus_parse::{Sample, Scrape, Value};
use sluice::store::NewRow;
use sluice_test_broker::BrokerOptions;
use std::time::Duration;

const GOOD_ROWS: usize = 20;

fn parse(body: &str) -> Scrape {
    Scrape::parse(body.lines().map(|line| Ok(line.to_string()))).unwrap()
}

/// The value of the sample named `metric` whose labels include `labels`.
fn value(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let matches =
        |s: &&Sample| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v));
    scrape
        .samples
        .iter()
        .find(matches)
        .map(|sample| match &sample.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            other => panic!("{metric} is not a single value: {other:?}"),
        })
}

#[test]
fn metrics_show_the_drain_by_verdict_reason_link_and_policy() {
    let options = BrokerOptions {
        reject_permanent: vec![("@blocked".into(), "blocked by recipient grants".into())],
        ..BrokerOptions::default()
    };
    let broker = TestBroker::start(options);
    let setup = Setup::new(&broker.url(), "");
    let mut rows = many("row", GOOD_ROWS);
    rows.push(routed("bad", "@blocked"));
    rows.push(NewRow {
        mesh: Some("elsewhere".into()),
        ..routed("lost", "@peer")
    });
    setup.enqueue(&rows);

    let address = free_address();
    let child = setup.spawn(&["--metrics", &address]);
    let done = GOOD_ROWS as f64;
    let mut scrape = None;
    wait_for(
        "every row settled in /metrics",
        Duration::from_secs(30),
        || {
            let Ok((status, body)) = get(&address, "/metrics") else {
                return false;
            };
            assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
            let parsed = parse(&body);
            let settled = value(&parsed, "sluice_outbox_rows", &[("status", "done")]) == Some(done)
                && value(&parsed, "sluice_outbox_rows", &[("status", "dead")]) == Some(2.0);
            scrape = Some(parsed);
            settled
        },
    );
    let (not_found, _) = get(&address, "/").unwrap();
    signal(&child, "TERM");
    let out = wait_output(child, Duration::from_secs(30));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(not_found, "HTTP/1.1 404 Not Found");

    let scrape = scrape.unwrap();
    let total = |verdict| value(&scrape, "sluice_outcomes_total", &[("verdict", verdict)]);
    assert_eq!(total("done"), Some(done));
    assert_eq!(total("dead"), Some(2.0));
    let dead = |reason| value(&scrape, "sluice_dead_rows_total", &[("reason", reason)]);
    assert_eq!(dead("permanent"), Some(1.0));
    assert_eq!(dead("no_broker"), Some(1.0));
    assert_eq!(dead("max_attempts"), Some(0.0));
    assert_eq!(
        value(&scrape, "sluice_rows_settled_total", &[]),
        Some(done + 2.0)
    );
    assert_eq!(
        value(&scrape, "sluice_oldest_pending_age_seconds", &[]),
        Some(0.0)
    );
    let link = |state| {
        value(
            &scrape,
            "sluice_link_state",
            &[("kind", "daemon"), ("mesh", MESH), ("state", state)],
        )
    };
    assert_eq!((link("open"), link("connecting")), (Some(1.0), Some(0.0)));
    assert_eq!(
        value(
            &scrape,
            "sluice_policy_info",
            &[("name", sluice_policy::POLICY_NAME)]
        ),
        Some(1.0),
        "{:?}",
        scrape
            .samples
            .iter()
            .filter(|s| s.metric == "sluice_policy_info")
            .collect::<Vec<_>>()
    );
    let ticks = value(&scrape, "sluice_tick_duration_seconds_count", &[]).unwrap();
    assert!(ticks > 0.0, "no tick observed");
    let acks = value(&scrape, "sluice_send_ack_latency_seconds_count", &[]).unwrap();
    assert_eq!(acks, done + 1.0, "one ack per send, the rejected one too");
}

#[test]
fn a_taken_metrics_address_fails_the_start_and_says_so() {
    let broker = TestBroker::start(BrokerOptions::default());
    let setup = Setup::new(&broker.url(), "");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let out = setup.spawn_with(&["--metrics", &address]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(&format!("cannot serve metrics on {address}")),
        "{}",
        stderr(&out)
    );
}
