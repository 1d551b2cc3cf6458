use super::*;

const MS: Duration = Duration::from_millis(1);

/// The real broker's defaults: burst 10, 60 a minute (one a second).
fn broker_default(start: Instant) -> TokenBucket {
    TokenBucket::new(60, 10, start)
}

#[test]
fn a_new_bucket_is_full_and_each_take_spends_one_token() {
    let t0 = Instant::now();
    let mut bucket = broker_default(t0);
    assert_eq!(bucket.tokens(t0), 10);
    assert_eq!(bucket.next_token_in(t0), Duration::ZERO);
    for left in (0..10).rev() {
        assert!(bucket.take(t0));
        assert_eq!(bucket.tokens(t0), left);
    }
}

#[test]
fn an_empty_bucket_refuses_without_going_into_debt() {
    let t0 = Instant::now();
    let mut bucket = broker_default(t0);
    for _ in 0..10 {
        assert!(bucket.take(t0));
    }
    for _ in 0..5 {
        assert!(!bucket.take(t0), "took from an empty bucket");
    }
    // The refused takes cost nothing: one second still brings one token.
    assert_eq!(bucket.next_token_in(t0), Duration::from_secs(1));
    assert_eq!(bucket.tokens(t0 + Duration::from_secs(1)), 1);
}

#[test]
fn the_bucket_refills_continuously_and_never_above_its_burst() {
    let t0 = Instant::now();
    let mut bucket = broker_default(t0);
    bucket.empty(t0);
    assert_eq!(bucket.tokens(t0 + 999 * MS), 0);
    assert_eq!(bucket.next_token_in(t0 + 999 * MS), MS);
    assert_eq!(bucket.tokens(t0 + 1000 * MS), 1);
    assert_eq!(bucket.tokens(t0 + Duration::from_millis(7_500)), 7);
    assert_eq!(
        bucket.next_token_in(t0 + Duration::from_millis(7_500)),
        Duration::ZERO
    );
    assert_eq!(bucket.tokens(t0 + Duration::from_secs(3600)), 10);
}

#[test]
fn the_wait_for_a_token_is_rounded_up_never_down() {
    let t0 = Instant::now();
    // 7 a minute: one token every 8571.428… ms.
    let mut bucket = TokenBucket::new(7, 3, t0);
    bucket.empty(t0);
    assert_eq!(bucket.next_token_in(t0), Duration::from_millis(8_572));
    let almost = t0 + Duration::from_nanos(8_571_428_000);
    assert_eq!(bucket.tokens(almost), 0);
    assert_eq!(
        bucket.next_token_in(almost),
        MS,
        "a few hundred ns rounds up to 1 ms"
    );
    // Waiting exactly what it said is always enough.
    let waited = t0 + Duration::from_millis(8_572);
    assert_eq!(bucket.tokens(waited), 1);
    // Half a millisecond short of a token still says 1 ms, not 0.
    let mut bucket = broker_default(t0);
    bucket.empty(t0);
    assert_eq!(
        bucket.next_token_in(t0 + Duration::from_micros(999_500)),
        MS
    );
}

#[test]
fn throttling_empties_the_bucket_now_and_refill_starts_from_there() {
    let t0 = Instant::now();
    let mut bucket = broker_default(t0);
    bucket.take(t0);
    let later = t0 + Duration::from_millis(300);
    bucket.empty(later);
    assert_eq!(bucket.tokens(later), 0);
    assert_eq!(bucket.next_token_in(later), Duration::from_secs(1));
    assert_eq!(bucket.tokens(later + Duration::from_secs(2)), 2);
}

#[test]
fn a_reading_older_than_the_last_one_adds_nothing() {
    let t0 = Instant::now();
    let mut bucket = broker_default(t0);
    let t1 = t0 + Duration::from_secs(5);
    bucket.empty(t1);
    assert_eq!(bucket.tokens(t0), 0, "time ran backwards and refilled");
    assert_eq!(bucket.tokens(t1 + Duration::from_secs(1)), 1);
}

#[test]
fn a_bucket_that_never_refills_says_wait_the_longest_refill() {
    let t0 = Instant::now();
    let mut bucket = TokenBucket::new(0, 2, t0);
    assert!(bucket.take(t0) && bucket.take(t0) && !bucket.take(t0));
    assert_eq!(bucket.tokens(t0 + Duration::from_secs(86_400)), 0);
    assert_eq!(bucket.next_token_in(t0), REFILL_WAIT_MAX);
    let mut no_burst = TokenBucket::new(60, 0, t0);
    assert_eq!(no_burst.tokens(t0 + Duration::from_secs(9)), 0);
    assert_eq!(no_burst.next_token_in(t0), REFILL_WAIT_MAX);
}

#[test]
fn huge_limits_and_long_gaps_do_not_overflow() {
    let t0 = Instant::now();
    let mut bucket = TokenBucket::new(u32::MAX, u32::MAX, t0);
    assert_eq!(bucket.tokens(t0), u32::MAX);
    bucket.empty(t0);
    let far = t0 + Duration::from_secs(100 * 365 * 86_400);
    assert_eq!(bucket.tokens(far), u32::MAX);
    assert_eq!(bucket.next_token_in(far), Duration::ZERO);
}

#[test]
fn an_unlimited_bucket_the_broker_refused_pauses_then_sends_again() {
    let t0 = Instant::now();
    let mut bucket = TokenBucket::new(0, 0, t0);
    assert_eq!(bucket.paused_for(t0), Duration::ZERO);
    bucket.empty(t0);
    assert_eq!(bucket.paused_for(t0), UNLIMITED_REFUSED_PAUSE);
    let half = t0 + UNLIMITED_REFUSED_PAUSE / 2;
    assert_eq!(bucket.paused_for(half), UNLIMITED_REFUSED_PAUSE / 2);
    assert_eq!(
        bucket.paused_for(t0 + UNLIMITED_REFUSED_PAUSE),
        Duration::ZERO
    );
}

#[test]
fn a_paused_unlimited_budget_refuses_sends_and_reads_empty() {
    let budget = Budget::new(0, 0);
    assert!(budget.take_one());
    assert_eq!(budget.read().0, u32::MAX);
    budget.empty();
    assert!(!budget.take_one());
    let (tokens, wait, per_minute, _) = budget.read();
    assert_eq!((tokens, per_minute), (0, 0));
    assert!(
        wait > Duration::ZERO && wait <= UNLIMITED_REFUSED_PAUSE,
        "{wait:?}"
    );
}
