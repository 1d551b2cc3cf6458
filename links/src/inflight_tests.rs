//! `InFlight` without sockets: matching by id, deadlines, losses.

use super::*;
use std::time::Duration;

fn batch_of(
    inflight: &mut InFlight,
    ids: &[&str],
    deadline: Instant,
) -> oneshot::Receiver<Vec<SendResult>> {
    let (reply, answer) = oneshot::channel();
    let batch = inflight.open_batch(ids.len(), deadline, reply);
    for (index, id) in ids.iter().enumerate() {
        inflight.register(batch, index, (*id).to_string());
    }
    inflight.close_batch_if_settled(batch);
    answer
}

fn accepted(id: &str) -> SendResult {
    SendResult::Accepted(id.to_string())
}

#[test]
fn acks_in_reverse_order_land_on_their_own_sends() {
    let mut inflight = InFlight::default();
    let mut answer = batch_of(
        &mut inflight,
        &["a", "b", "c"],
        Instant::now() + Duration::from_secs(5),
    );
    assert!(inflight.ack("c", accepted("m3")));
    assert!(inflight.ack("b", accepted("m2")));
    assert!(
        answer.try_recv().is_err(),
        "a batch answers only when complete"
    );
    assert!(inflight.ack("a", accepted("m1")));
    assert_eq!(
        answer.try_recv().expect("answered"),
        vec![accepted("m1"), accepted("m2"), accepted("m3")]
    );
    assert_eq!(inflight.waiting(), 0);
}

#[test]
fn an_unknown_or_repeated_ack_is_refused() {
    let mut inflight = InFlight::default();
    let _answer = batch_of(
        &mut inflight,
        &["a"],
        Instant::now() + Duration::from_secs(5),
    );
    assert!(!inflight.ack("zzz", accepted("m")));
    assert!(inflight.ack("a", accepted("m")));
    assert!(!inflight.ack("a", accepted("m")));
}

#[test]
fn a_second_send_with_a_waiting_id_fails_as_duplicate() {
    let mut inflight = InFlight::default();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut first = batch_of(&mut inflight, &["a"], deadline);
    let mut second = batch_of(&mut inflight, &["a", "b"], deadline);
    assert!(inflight.ack("b", accepted("mb")));
    let second = second.try_recv().expect("duplicate settles without an ack");
    assert_eq!(
        second,
        vec![
            SendResult::Failed("duplicate_in_flight".into()),
            accepted("mb")
        ]
    );
    assert!(first.try_recv().is_err(), "the first send still waits");
    assert!(inflight.ack("a", accepted("ma")));
    assert_eq!(first.try_recv().expect("answered"), vec![accepted("ma")]);
}

#[test]
fn expiry_fails_only_unanswered_sends_of_late_batches() {
    let mut inflight = InFlight::default();
    let now = Instant::now();
    let mut early = batch_of(&mut inflight, &["a", "b"], now + Duration::from_millis(10));
    let mut late = batch_of(&mut inflight, &["c"], now + Duration::from_secs(60));
    assert_eq!(
        inflight.next_deadline(),
        Some(now + Duration::from_millis(10))
    );
    inflight.ack("a", accepted("ma"));
    inflight.expire(now + Duration::from_millis(10));
    let early = early.try_recv().expect("expired batch answered");
    assert_eq!(
        early,
        vec![accepted("ma"), SendResult::Failed("ack_timeout".into())]
    );
    assert!(!inflight.ack("b", accepted("mb")), "a late ack is ignored");
    assert!(late.try_recv().is_err());
    assert_eq!(
        inflight.next_deadline(),
        Some(now + Duration::from_secs(60))
    );
}

#[test]
fn losing_the_link_fails_every_waiting_send_at_once() {
    let mut inflight = InFlight::default();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut one = batch_of(&mut inflight, &["a", "b"], deadline);
    let mut two = batch_of(&mut inflight, &["c"], deadline);
    inflight.ack("b", accepted("mb"));
    inflight.fail_all("link_closed");
    let closed = SendResult::Failed("link_closed".into());
    assert_eq!(
        one.try_recv().expect("answered"),
        vec![closed.clone(), accepted("mb")]
    );
    assert_eq!(two.try_recv().expect("answered"), vec![closed]);
    assert_eq!(inflight.waiting(), 0);
    assert_eq!(inflight.next_deadline(), None);
}

#[test]
fn an_empty_batch_is_answered_at_once() {
    let mut inflight = InFlight::default();
    let mut answer = batch_of(&mut inflight, &[], Instant::now());
    assert_eq!(
        answer.try_recv().expect("answered"),
        Vec::<SendResult>::new()
    );
}

#[test]
fn the_ack_observer_hears_each_acked_send_and_no_timeout() {
    let heard = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = std::sync::Arc::clone(&heard);
    let observer = AckObserver(std::sync::Arc::new(move |elapsed| {
        sink.lock().expect("not poisoned").push(elapsed);
    }));
    let mut inflight = InFlight::observing(Some(observer));
    let start = Instant::now();
    let _answer = batch_of(&mut inflight, &["a", "b"], start + Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(5));
    assert!(inflight.ack("a", accepted("m1")));
    assert!(inflight.ack("b", SendResult::Rejected("Forbidden".to_string())));
    let _late = batch_of(&mut inflight, &["c"], start);
    inflight.expire(Instant::now());
    let heard = heard.lock().expect("not poisoned");
    assert_eq!(heard.len(), 2, "two acks, the timed-out send is not one");
    assert!(heard.iter().all(|e| *e >= Duration::from_millis(5)));
    assert!(heard.iter().all(|e| *e <= start.elapsed()));
}
