//! The test broker's injected faults, over raw sockets: each one seeded, so
//! the same seed and the same frames give the same faults.

use crate::broker_support::*;
use sluice_test_broker::{BrokerOptions, RefusalCode};

/// Sends `count` broadcasts and returns the ids whose ack came back, in
/// order, reading until the last send's ack or `QUIET` of silence.
async fn acked_ids(socket: &mut Socket, prefix: &str, count: usize) -> Vec<String> {
    for i in 0..count {
        send_json(socket, &send(&format!("{prefix}-{i}"), "*")).await;
    }
    let mut acked = Vec::new();
    loop {
        let next = tokio::time::timeout(QUIET, next_json(socket)).await;
        let Ok(ack) = next else { return acked };
        assert_eq!(ack["type"], "ack", "{ack}");
        acked.push(ack["id"].as_str().expect("id").to_string());
        if acked.last() == Some(&format!("{prefix}-{}", count - 1)) {
            return acked;
        }
    }
}

async fn dropped_with_seed(seed: u64) -> (Vec<String>, u64, u64) {
    let broker = start_broker(BrokerOptions {
        seed,
        drop_acks: 0.3,
        ..BrokerOptions::default()
    })
    .await;
    let mut socket = open(&broker.url(), &hello("s-drop")).await;
    let acked = acked_ids(&mut socket, "d", 40).await;
    let dropped: Vec<String> = (0..40)
        .map(|i| format!("d-{i}"))
        .filter(|id| !acked.contains(id))
        .collect();
    let stats = broker.stats();
    (dropped, stats.acks_dropped, stats.accepted)
}

#[tokio::test]
async fn dropped_acks_are_queued_messages_and_the_seed_repeats_them() {
    let (dropped, acks_dropped, accepted) = dropped_with_seed(11).await;
    assert!(!dropped.is_empty() && dropped.len() < 40, "{dropped:?}");
    assert_eq!(acks_dropped, dropped.len() as u64);
    assert_eq!(accepted, 40, "a dropped ack's message was still queued");
    let (again, _, _) = dropped_with_seed(11).await;
    assert_eq!(dropped, again, "the same seed dropped other acks");
    let (other, _, _) = dropped_with_seed(12).await;
    assert_ne!(dropped, other, "another seed dropped the same acks");
}

#[tokio::test]
async fn close_after_frames_closes_each_connection_on_its_nth_frame() {
    let broker = start_broker(BrokerOptions {
        close_after_frames: Some(3),
        ..BrokerOptions::default()
    })
    .await;
    for round in 0..2 {
        let mut socket = open(&broker.url(), &hello("s-close")).await;
        for i in 0..2 {
            let ack = ack_of(&mut socket, &format!("r{round}-{i}"), "*").await;
            assert_eq!(ack_error(&ack), None);
        }
        send_json(&mut socket, &send(&format!("r{round}-lost"), "*")).await;
        let close = next_close(&mut socket).await;
        assert_eq!(u16::from(close.code), 1012, "round {round}");
    }
    let stats = broker.stats();
    assert_eq!(
        (stats.sends, stats.hellos_accepted),
        (4, 2),
        "the third frame was lost unread"
    );
}

#[tokio::test]
async fn the_first_n_hellos_are_refused_with_the_chosen_code() {
    let broker = start_broker(BrokerOptions {
        refuse_hello_first: Some((2, RefusalCode::TimestampSkew)),
        ..BrokerOptions::default()
    })
    .await;
    let message = "hello rejected: timestamp_skew";
    for _ in 0..2 {
        assert_refused(&broker.url(), &hello("s-first"), "timestamp_skew", message).await;
    }
    open(&broker.url(), &hello("s-first")).await;
    let stats = broker.stats();
    assert_eq!((stats.hellos_rejected, stats.hellos_accepted), (2, 1));
}

/// Which of `count` hellos a broker refusing half of them refuses.
async fn refused_with_seed(seed: u64, count: usize) -> Vec<bool> {
    let broker = start_broker(BrokerOptions {
        seed,
        refuse_hellos: Some((0.5, RefusalCode::Unauthorized)),
        ..BrokerOptions::default()
    })
    .await;
    let mut refused = Vec::new();
    for _ in 0..count {
        let mut socket = connect(&broker.url()).await;
        send_json(&mut socket, &session_hello("s-coin")).await;
        let answer = next_json(&mut socket).await;
        if answer["type"] == "error" {
            assert_eq!(
                answer["message"], "parent pubkey not found in mesh",
                "{answer}"
            );
            assert_eq!(u16::from(next_close(&mut socket).await.code), 1008);
        } else {
            assert_eq!(answer["type"], "hello_ack", "{answer}");
        }
        refused.push(answer["type"] == "error");
    }
    refused
}

#[tokio::test]
async fn a_seeded_share_of_hellos_is_refused_the_same_way_every_run() {
    let refused = refused_with_seed(5, 16).await;
    assert!(
        refused.contains(&true) && refused.contains(&false),
        "{refused:?}"
    );
    assert_eq!(refused, refused_with_seed(5, 16).await);
}
