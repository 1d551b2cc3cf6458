//! The status report.

use crate::common::{LEASE_MS, outbox_with, raw, rows};
use sluice_contract::{Outcome, Verdict};
use sluice_store::{STATUSES, StatusReport};

#[test]
fn an_empty_outbox_reports_every_status_at_zero() {
    let (_dir, mut outbox) = outbox_with(&[]);
    let report = outbox.status(5).unwrap();
    let zeros: Vec<(String, u64)> = STATUSES.iter().map(|s| (s.to_string(), 0)).collect();
    assert_eq!(
        report,
        StatusReport {
            counts: zeros,
            oldest_pending_enqueued_at: None,
            top_errors: vec![]
        }
    );
}

#[test]
fn the_report_counts_each_status_and_ranks_the_commonest_errors() {
    let (_dir, mut outbox) = outbox_with(&rows(8));
    let claimed = outbox.claim_due(5000, 6, LEASE_MS).unwrap(); // r0000..r0005
    let verdicts = [
        Verdict::Dead {
            reason: "forbidden".into(),
        },
        Verdict::Dead {
            reason: "forbidden".into(),
        },
        Verdict::Retry {
            next_attempt_at: 9000,
            last_error: "ack_timeout".into(),
        },
        Verdict::Done {
            broker_message_id: "m".into(),
            delivered_at: 1,
        },
    ];
    let outcomes: Vec<Outcome> = claimed
        .iter()
        .zip(verdicts)
        .map(|(r, verdict)| Outcome {
            rowid: r.rowid,
            attempts: r.attempts,
            verdict,
        })
        .collect();
    outbox.settle(&outcomes).unwrap();
    // A done row's old error is history, not a current problem.
    raw(outbox.path())
        .execute(
            "UPDATE outbox SET last_error = 'old' WHERE status = 'done'",
            [],
        )
        .unwrap();

    let report = outbox.status(1).unwrap();
    let counts: Vec<(&str, u64)> = report
        .counts
        .iter()
        .map(|(s, n)| (s.as_str(), *n))
        .collect();
    assert_eq!(
        counts,
        [
            ("pending", 3),
            ("inflight", 2),
            ("done", 1),
            ("dead", 2),
            ("aborted", 0)
        ]
    );
    assert_eq!(report.oldest_pending_enqueued_at, Some(1002));
    assert_eq!(report.top_errors, [("forbidden".to_string(), 2)]);
    assert_eq!(
        outbox.status(5).unwrap().top_errors.len(),
        2,
        "only forbidden and ack_timeout are current"
    );
}
