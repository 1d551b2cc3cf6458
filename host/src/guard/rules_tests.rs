//! The rules one by one, on a ledger filled by hand.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use super::*;

const NOW: i64 = 1_000_000;
const LEASE_MS: i64 = 30_000;
const ACK_MS: u32 = 15_000;

fn row(rowid: i64) -> Row {
    Row {
        rowid,
        id: format!("row-{rowid}"),
        client_message_id: format!("cm-{rowid}"),
        request_fingerprint: vec![0xab, 0x01],
        payload: b"hello".to_vec(),
        attempts: 1,
        mesh: Some("alpha".into()),
        target_spec: Some("@peer".into()),
        nonce: Some("bm9uY2U=".into()),
        ciphertext: Some("Y2lwaGVy".into()),
        ..Row::default()
    }
}

fn legacy(rowid: i64) -> Row {
    Row {
        target_spec: None,
        nonce: Some(String::new()),
        ciphertext: None,
        ..row(rowid)
    }
}

/// What the default policy would send for `row` (a routed one).
fn dispatch(row: &Row) -> Dispatch {
    Dispatch {
        rowid: row.rowid,
        route: Route::Daemon("alpha".into()),
        client_message_id: row.client_message_id.clone(),
        request_fingerprint_hex: "ab01".into(),
        target_spec: row.target_spec.clone().unwrap_or_default(),
        priority: "next".into(),
        nonce: row.nonce.clone().unwrap_or_default(),
        ciphertext: row.ciphertext.clone().unwrap_or_default(),
    }
}

fn ledger(rows: &[Row]) -> Ledger {
    let mut ledger = Ledger::default();
    ledger.begin(NOW);
    ledger.claimed(rows, NOW, LEASE_MS);
    ledger
}

fn one_mesh() -> Vec<String> {
    vec!["alpha".into()]
}

fn check(ledger: &mut Ledger, d: &Dispatch) -> Result<(), Rule> {
    ledger
        .check_dispatch(d, ACK_MS, &mut one_mesh)
        .map_err(|b| b.rule)
}

fn done(rowid: i64, id: &str) -> Outcome {
    Outcome {
        rowid,
        attempts: 1,
        verdict: Verdict::Done {
            broker_message_id: id.into(),
            delivered_at: NOW,
        },
    }
}

#[test]
fn a_session_row_belongs_on_its_own_session_link() {
    let mut session = row(1);
    session.sender_session_pubkey = Some("k1".into());
    let own = check_route(
        &RowView::of(&session),
        &Route::Session("k1".into()),
        &mut one_mesh,
    );
    assert_eq!(own, Ok(()));
    let over_daemon = check_route(
        &RowView::of(&session),
        &Route::Daemon("alpha".into()),
        &mut one_mesh,
    );
    assert_eq!(over_daemon.unwrap_err().0, Rule::SessionRowNeverOverDaemon);
    let other = check_route(
        &RowView::of(&session),
        &Route::Session("k2".into()),
        &mut one_mesh,
    );
    assert_eq!(other.unwrap_err().0, Rule::RouteMatchesRow);
    // An empty key counts as none, as the policy reads it.
    session.sender_session_pubkey = Some(String::new());
    let daemon = check_route(
        &RowView::of(&session),
        &Route::Daemon("alpha".into()),
        &mut one_mesh,
    );
    assert_eq!(daemon, Ok(()));
}

#[test]
fn a_row_goes_to_its_mesh_or_the_only_one() {
    let mut two = || vec!["alpha".to_string(), "beta".to_string()];
    let beta = Route::Daemon("beta".into());
    assert!(check_route(&RowView::of(&row(1)), &beta, &mut two).is_err());
    let mut unnamed = row(1);
    unnamed.mesh = Some(String::new());
    let alpha = Route::Daemon("alpha".into());
    assert!(
        check_route(&RowView::of(&unnamed), &alpha, &mut two).is_err(),
        "a NULL mesh with two links has no route"
    );
    assert_eq!(
        check_route(&RowView::of(&unnamed), &alpha, &mut one_mesh),
        Ok(())
    );
}

#[test]
fn partial_and_unreadable_rows_are_malformed_legacy_rows_are_not() {
    let mut partial = row(1);
    partial.nonce = Some(String::new());
    assert!(malformed(&RowView::of(&partial)).is_some());
    assert_eq!(malformed(&RowView::of(&legacy(1))), None);
    let mut unreadable = row(1);
    unreadable.defect = Some("payload: NULL".into());
    assert!(malformed(&RowView::of(&unreadable)).is_some());
    assert_eq!(malformed(&RowView::of(&row(1))), None);
    let mut ledger = ledger(&[partial.clone()]);
    assert_eq!(
        check(&mut ledger, &dispatch(&partial)),
        Err(Rule::MalformedRowNeverSent)
    );
}

#[test]
fn only_rows_claimed_and_not_yet_settled_go_out_once() {
    let (a, b) = (row(1), row(2));
    let mut ledger = ledger(std::slice::from_ref(&a));
    assert_eq!(
        check(&mut ledger, &dispatch(&b)),
        Err(Rule::OnlyClaimedRowsDispatched)
    );
    assert_eq!(check(&mut ledger, &dispatch(&a)), Ok(()));
    assert_eq!(
        check(&mut ledger, &dispatch(&a)),
        Err(Rule::OneDispatchPerRow),
        "a second dispatch in the same batch"
    );
    let mut settled = self::ledger(std::slice::from_ref(&a));
    settled.settling(a.rowid);
    assert_eq!(
        check(&mut settled, &dispatch(&a)),
        Err(Rule::OnlyClaimedRowsDispatched)
    );
    // The next tick forgets: the row may be claimed and sent again.
    ledger.begin(NOW + 1);
    ledger.claimed(std::slice::from_ref(&a), NOW + 1, LEASE_MS);
    assert_eq!(check(&mut ledger, &dispatch(&a)), Ok(()));
}

#[test]
fn a_routed_row_goes_out_with_its_own_content() {
    let a = row(1);
    type Case = (&'static str, fn(&mut Dispatch), Rule);
    let cases: [Case; 5] = [
        (
            "client message id",
            |d| d.client_message_id = "cm-other".into(),
            Rule::SameClientMessageId,
        ),
        (
            "fingerprint",
            |d| d.request_fingerprint_hex = "AB01".into(),
            Rule::ContentMatchesRow,
        ),
        (
            "target",
            |d| d.target_spec = "*".into(),
            Rule::ContentMatchesRow,
        ),
        (
            "ciphertext",
            |d| d.ciphertext = "b3RoZXI=".into(),
            Rule::ContentMatchesRow,
        ),
        (
            "priority",
            |d| d.priority = "urgent".into(),
            Rule::ContentMatchesRow,
        ),
    ];
    for (what, change, rule) in cases {
        let mut d = dispatch(&a);
        change(&mut d);
        assert_eq!(
            check(&mut ledger(std::slice::from_ref(&a)), &d),
            Err(rule),
            "{what}"
        );
    }
    let mut now = dispatch(&a);
    now.priority = "now".into();
    assert_eq!(
        check(&mut ledger(&[a]), &now),
        Ok(()),
        "any of the three priorities"
    );
}

#[test]
fn a_legacy_row_goes_out_only_as_a_broadcast_with_a_fresh_nonce() {
    let old = legacy(1);
    let random = [7u8; 24];
    let fallback = Dispatch {
        target_spec: "*".into(),
        nonce: BASE64.encode(random),
        ciphertext: BASE64.encode(&old.payload),
        ..dispatch(&old)
    };
    let with_random = |rows: &[Row]| {
        let mut ledger = ledger(rows);
        ledger.saw_random(&random);
        ledger
    };
    assert_eq!(
        check(&mut with_random(std::slice::from_ref(&old)), &fallback),
        Ok(())
    );
    let to_peer = Dispatch {
        target_spec: "@peer".into(),
        ..fallback.clone()
    };
    assert_eq!(
        check(&mut with_random(std::slice::from_ref(&old)), &to_peer),
        Err(Rule::LegacyRowOnlyBroadcast)
    );
    let other_payload = Dispatch {
        ciphertext: BASE64.encode(b"other"),
        ..fallback.clone()
    };
    assert_eq!(
        check(&mut with_random(std::slice::from_ref(&old)), &other_payload),
        Err(Rule::LegacyRowOnlyBroadcast)
    );
    // A nonce the random source never gave, or given but used already.
    assert_eq!(
        check(&mut ledger(std::slice::from_ref(&old)), &fallback),
        Err(Rule::LegacyRowOnlyBroadcast)
    );
    let mut ledger = with_random(&[old, legacy(2)]);
    assert_eq!(check(&mut ledger, &fallback), Ok(()));
    let reused = Dispatch {
        rowid: 2,
        client_message_id: "cm-2".into(),
        ..fallback
    };
    assert_eq!(
        check(&mut ledger, &reused),
        Err(Rule::LegacyRowOnlyBroadcast)
    );
}

#[test]
fn a_lease_must_outlast_the_wait_for_the_ack() {
    let a = row(1);
    let mut ledger = Ledger::default();
    ledger.begin(NOW);
    ledger.claimed(std::slice::from_ref(&a), NOW, i64::from(ACK_MS));
    assert_eq!(
        check(&mut ledger, &dispatch(&a)),
        Err(Rule::LeaseOutlastsAck)
    );
    // Time told to the policy counts: the lease has less left.
    let mut later = self::ledger(std::slice::from_ref(&a));
    later.saw_time(NOW + LEASE_MS - i64::from(ACK_MS));
    assert_eq!(
        check(&mut later, &dispatch(&a)),
        Err(Rule::LeaseOutlastsAck)
    );
}

#[test]
fn done_needs_this_ticks_acceptance_with_its_message_id() {
    let (a, b) = (row(1), row(2));
    let mut ledger = ledger(&[a.clone(), b.clone()]);
    let rule = |l: &Ledger, o: &Outcome| l.check_outcome(o).map_err(|b| b.rule);
    assert_eq!(
        rule(&ledger, &done(1, "m1")),
        Err(Rule::DoneOnlyAfterAccept),
        "never sent"
    );
    check(&mut ledger, &dispatch(&a)).unwrap();
    ledger.answered(1, &SendResult::Accepted("m1".into()));
    check(&mut ledger, &dispatch(&b)).unwrap();
    ledger.answered(2, &SendResult::Failed("ack_timeout".into()));
    assert_eq!(rule(&ledger, &done(1, "m1")), Ok(()));
    assert_eq!(
        rule(&ledger, &done(1, "m-made-up")),
        Err(Rule::DoneOnlyAfterAccept)
    );
    assert_eq!(
        rule(&ledger, &done(2, "m2")),
        Err(Rule::DoneOnlyAfterAccept)
    );
    // A refused second dispatch does not undo the first one's acceptance.
    ledger.refused(1);
    assert_eq!(rule(&ledger, &done(1, "m1")), Ok(()));
}

#[test]
fn outcomes_only_for_own_claims_once_with_their_attempts() {
    let a = row(1);
    let mut ledger = ledger(&[a]);
    let retry = |rowid, attempts| Outcome {
        rowid,
        attempts,
        verdict: Verdict::Retry {
            next_attempt_at: NOW + 1000,
            last_error: "x".into(),
        },
    };
    let rule = |l: &Ledger, o: &Outcome| l.check_outcome(o).map_err(|b| b.rule);
    assert_eq!(rule(&ledger, &retry(9, 1)), Err(Rule::SettleOnlyOwnClaims));
    assert_eq!(
        rule(&ledger, &retry(1, 2)),
        Err(Rule::OutcomeCarriesClaimedAttempts)
    );
    assert_eq!(rule(&ledger, &retry(1, 1)), Ok(()));
    ledger.settling(1);
    assert_eq!(rule(&ledger, &retry(1, 1)), Err(Rule::SettleOnlyOwnClaims));
}

#[test]
fn store_calls_may_not_run_ahead_of_the_host_clock() {
    let mut ledger = ledger(&[]);
    assert!(ledger.check_store_time("store.reclaim", NOW).is_ok());
    let ahead = ledger
        .check_store_time("store.reclaim", NOW + 1)
        .unwrap_err();
    assert_eq!(ahead.rule, Rule::StoreTimeNotAhead);
    ledger.saw_time(NOW + 5);
    assert!(ledger.check_store_time("store.expire", NOW + 5).is_ok());
}

#[test]
fn every_rule_has_a_distinct_name() {
    let names: std::collections::BTreeSet<&str> = Rule::ALL.iter().map(|r| r.name()).collect();
    assert_eq!(names.len(), Rule::ALL.len());
}
