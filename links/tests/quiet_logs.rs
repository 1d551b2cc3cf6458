//! What a link logs while its broker is down: the first failure at WARN,
//! identical repeats at DEBUG, and a WARN with the count every
//! `FAILURE_WARN_EVERY` attempts; state changes always. One test in its own
//! binary: it installs the process's global log subscriber.

mod common;

use common::*;
use sluice_links::{FAILURE_WARN_EVERY, LinkOptions, Links};
use sluice_test_broker::BrokerOptions;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

type Lines = Arc<Mutex<Vec<(Level, String)>>>;

/// Keeps every `sluice` event's level and message.
struct Recorder {
    lines: Lines,
}

struct Message(String);

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

impl Subscriber for Recorder {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.target() == "sluice"
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut message = Message(String::new());
        event.record(&mut message);
        let level = *event.metadata().level();
        self.lines.lock().expect("lines").push((level, message.0));
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

fn count(lines: &Lines, level: Level, part: &str) -> usize {
    lines
        .lock()
        .expect("lines")
        .iter()
        .filter(|(l, message)| *l == level && message.contains(part))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_that_stays_down_warns_once_then_every_so_many_attempts() {
    let lines: Lines = Arc::default();
    tracing::subscriber::set_global_default(Recorder {
        lines: Arc::clone(&lines),
    })
    .expect("the only subscriber of this test binary");
    let unused = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = unused.local_addr().expect("address");
    drop(unused);
    // Millisecond backoff: a few seconds of outage in a fraction of one.
    let options = LinkOptions {
        reconnect_min: Duration::from_millis(1),
        reconnect_max: Duration::from_millis(2),
        ..link_options()
    };
    let url = format!("ws://{address}");
    let links = Links::start(vec![mesh("main", &url)], Vec::new(), options);
    let enough = FAILURE_WARN_EVERY * 2 + 5;
    assert!(
        eventually(|| links.reports()[0].failures >= enough).await,
        "{:?}",
        links.reports()
    );
    let broker = sluice_test_broker::Broker::start(address, BrokerOptions::default())
        .await
        .expect("the port is free again");
    assert!(links.wait_open(PATIENCE).await, "{:?}", links.reports());
    broker.drop_connections();
    assert!(eventually(|| broker.stats().hellos_accepted == 2).await);
    assert!(links.wait_open(PATIENCE).await);
    links.shutdown().await;
    let failed =
        count(&lines, Level::WARN, "connecting to") + count(&lines, Level::DEBUG, "connecting to");
    assert!(failed >= enough as usize, "{failed} failures logged");
    let first = count(&lines, Level::WARN, "connecting to");
    let still = count(&lines, Level::WARN, "still not open after");
    assert_eq!(
        first - still,
        1,
        "only the first failure of the outage is news"
    );
    assert_eq!(
        still,
        failed / FAILURE_WARN_EVERY as usize,
        "one reminder every {FAILURE_WARN_EVERY} attempts"
    );
    assert_eq!(count(&lines, Level::INFO, "broker link open"), 2);
    assert_eq!(count(&lines, Level::WARN, "broker link lost"), 1);
}
