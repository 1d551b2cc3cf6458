//! The mirror of the broker's per-member send budget, over real sockets on
//! 127.0.0.1: every send frame written takes a token from its mesh's
//! bucket, whichever link of the member wrote it; `throttle` empties it.

use crate::common::*;
use sluice_contract::SendResult;
use sluice_links::{LinkState, Links, MeshBudget};
use sluice_test_broker::{BrokerOptions, RateLimit};
use std::time::Duration;

const ACK_TIMEOUT: Duration = Duration::from_secs(10);

fn budget(links: &Links) -> MeshBudget {
    links.mesh_budgets().remove(0)
}

/// A budget that refills one token a minute, so a test never sees a refill.
fn slow_mesh(url: &str) -> sluice_links::MeshConfig {
    sluice_links::MeshConfig {
        rate_limit_per_minute: 1,
        rate_limit_burst: 10,
        ..mesh("main", url)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_send_takes_a_token_from_its_meshs_budget_and_throttle_empties_it() {
    let broker = start_broker(BrokerOptions::default()).await;
    let links = Links::start(
        vec![slow_mesh(&broker.url())],
        vec![session("main", 9)],
        link_options(),
    );
    assert!(links.wait_open(PATIENCE).await);
    let full = budget(&links);
    assert_eq!(
        (
            full.slug.as_str(),
            full.state,
            full.tokens,
            full.next_token_in
        ),
        ("main", LinkState::Open, 10, Duration::ZERO)
    );
    assert_eq!((full.per_minute, full.burst), (1, 10));
    for (sent, left) in [(1, 9), (2, 7)] {
        let results = links
            .send_batch(dispatches(&format!("d{left}"), sent, "*"), ACK_TIMEOUT)
            .await;
        assert!(results.iter().all(|r| matches!(r, SendResult::Accepted(_))));
        assert_eq!(budget(&links).tokens, left);
    }
    // A session link spends the same member's budget.
    let session_pubkey = session_key(9).public_hex();
    assert!(
        eventually(
            || links.session_states(std::slice::from_ref(&session_pubkey))
                == vec![sluice_contract::SessionState::Open]
        )
        .await
    );
    let results = links
        .send_batch(
            vec![session_dispatch(&session_pubkey, "s-1", "*")],
            ACK_TIMEOUT,
        )
        .await;
    assert!(matches!(results[0], SendResult::Accepted(_)), "{results:?}");
    assert_eq!(budget(&links).tokens, 6);
    links.throttle("main");
    let empty = budget(&links);
    assert_eq!(empty.tokens, 0);
    assert!(
        empty.next_token_in > Duration::from_secs(59)
            && empty.next_token_in <= Duration::from_secs(60),
        "one a minute, just emptied: {:?}",
        empty.next_token_in
    );
    links.throttle("no-such-mesh");
    links.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_that_never_reach_a_socket_take_no_token() {
    let unused = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("ws://{}", unused.local_addr().expect("address"));
    drop(unused);
    let links = Links::start(vec![slow_mesh(&url)], Vec::new(), link_options());
    let results = links.send_batch(dispatches("x", 3, "*"), ACK_TIMEOUT).await;
    assert_eq!(results, vec![failed("link_not_open"); 3]);
    let budget = budget(&links);
    assert_eq!((budget.state, budget.tokens), (LinkState::Connecting, 10));
    links.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_the_budget_no_longer_allows_is_not_written() {
    let broker = start_broker(BrokerOptions::default()).await;
    let links = Links::start(vec![slow_mesh(&broker.url())], Vec::new(), link_options());
    assert!(links.wait_open(PATIENCE).await);
    links.throttle("main");
    let results = links.send_batch(dispatches("e", 2, "*"), ACK_TIMEOUT).await;
    assert_eq!(broker.stats().sends, 0, "the broker would only refuse them");
    assert_eq!(
        results,
        vec![failed(sluice_contract::RATE_BUDGET_EMPTY); 2],
        "the policy learns they were held back, not refused"
    );
    assert_eq!(budget(&links).tokens, 0);
    links.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mirror_runs_dry_when_the_brokers_bucket_does() {
    let broker = start_broker(BrokerOptions {
        rate_limit: Some(RateLimit {
            per_minute: 1,
            burst: 10,
        }),
        ..BrokerOptions::default()
    })
    .await;
    let links = Links::start(
        vec![slow_mesh(&broker.url())],
        vec![session("main", 9)],
        link_options(),
    );
    assert!(links.wait_open(PATIENCE).await);
    let session_pubkey = session_key(9).public_hex();
    assert!(
        eventually(
            || links.session_states(std::slice::from_ref(&session_pubkey))
                == vec![sluice_contract::SessionState::Open]
        )
        .await
    );
    let mut batch = dispatches("r", 8, "*");
    batch.extend((0..4).map(|i| session_dispatch(&session_pubkey, &format!("s-{i}"), "*")));
    let results = links.send_batch(batch, ACK_TIMEOUT).await;
    let accepted = results
        .iter()
        .filter(|r| matches!(r, SendResult::Accepted(_)))
        .count();
    let held = results
        .iter()
        .filter(|r| **r == failed(sluice_contract::RATE_BUDGET_EMPTY))
        .count();
    let stats = broker.stats();
    assert_eq!(
        (accepted, held, stats.sends, stats.rate_limited),
        (10, 2, 10, 0),
        "daemon and session links share one budget of 10: {results:?}"
    );
    assert_eq!(budget(&links).tokens, 0);
    links.shutdown().await;
}
