//! One tick of the default policy: the only place the rules meet the imports.
//!
//! Order: reclaim run-out leases, claim a batch, decide every row, send all
//! dispatches in one call, judge the results, settle everything in one call,
//! sweep expired rows when the backlog is drained, and report when a row is
//! next due.

use crate::rules::{Decision, LEGACY_NONCE_BYTES, LogLine, View, decide, judge, retry};
use crate::settings::Settings;
use crate::types::{Level, Outcome, Row, SessionState, TickReport, TimestampMs, Verdict, World};
use std::collections::BTreeSet;

/// Runs one tick against `world`.
pub fn tick<W: World>(
    world: &mut W,
    settings: &Settings,
    now: TimestampMs,
) -> Result<TickReport, String> {
    let mut report = TickReport {
        reclaimed: world.reclaim(now)?,
        ..TickReport::default()
    };
    let rows = world.claim_due(now, settings.batch_rows, settings.lease_ms)?;
    report.claimed = count(rows.len());
    report.more_due = report.claimed >= settings.batch_rows;

    if !rows.is_empty() {
        let outcomes = drain_rows(world, settings, now, &rows);
        for outcome in &outcomes {
            match outcome.verdict {
                Verdict::Done { .. } => report.done += 1,
                Verdict::Dead { .. } => report.dead += 1,
                Verdict::Retry { .. } => report.retried += 1,
            }
        }
        world.settle(outcomes)?;
    }

    // While claims come back full, expiry happens lazily as rows are claimed;
    // the sweep (which reads every pending row) waits for a drained backlog.
    if !report.more_due {
        let now = world.now();
        report.expired = world.expire(now, now.saturating_sub(settings.row_ttl_ms))?;
        if report.expired > 0 {
            let fields = vec![("count".to_string(), report.expired.to_string())];
            world.log(Level::Warn, "drain_expired_rows", fields);
        }
    }
    report.next_due_at = world.next_due_at()?;
    Ok(report)
}

/// Decides, sends and judges the claimed rows; one outcome per row, in order.
fn drain_rows<W: World>(
    world: &mut W,
    settings: &Settings,
    now: TimestampMs,
    rows: &[Row],
) -> Vec<Outcome> {
    let meshes = world.meshes();
    let sessions = session_states(world, rows);
    let view = View {
        now,
        settings,
        meshes: &meshes,
        sessions: &sessions,
    };

    let mut decisions = Vec::with_capacity(rows.len());
    let mut dispatches = Vec::new();
    for row in rows {
        let decision = decide(row, &view, &mut || world.random_bytes(LEGACY_NONCE_BYTES));
        if let Decision::Send(dispatch) = &decision {
            dispatches.push(dispatch.clone());
        }
        decisions.push(decision);
    }

    let mut results = if dispatches.is_empty() {
        Vec::new()
    } else {
        world.send_batch(dispatches, settings.ack_timeout_ms)
    }
    .into_iter();
    let after = world.now();

    let mut outcomes = Vec::with_capacity(rows.len());
    for (row, decision) in rows.iter().zip(decisions) {
        let (verdict, log) = match decision {
            Decision::Send(_) => match results.next() {
                Some(result) => judge(row, &result, after, settings),
                // A host that answered fewer results than dispatches broke the
                // contract; the row is retried rather than lost.
                None => retry(row, "host_returned_no_result", after, settings, None),
            },
            Decision::Dead { reason, log } => (Verdict::Dead { reason }, log),
            Decision::Retry { error, log } => {
                let (verdict, cap_log) = retry(row, &error, after, settings, None);
                (verdict, cap_log.or(log))
            }
        };
        if let Some(LogLine {
            level,
            event,
            fields,
        }) = log
        {
            world.log(level, event, fields);
        }
        outcomes.push(Outcome {
            rowid: row.rowid,
            attempts: row.attempts,
            verdict,
        });
    }
    outcomes
}

/// One lookup for the distinct session keys of the batch, in a fixed order.
fn session_states<W: World>(world: &mut W, rows: &[Row]) -> Vec<(String, SessionState)> {
    let keys: BTreeSet<&str> = rows
        .iter()
        .filter_map(|r| r.sender_session_pubkey.as_deref())
        .filter(|k| !k.is_empty())
        .collect();
    if keys.is_empty() {
        return Vec::new();
    }
    let keys: Vec<String> = keys.into_iter().map(str::to_string).collect();
    let states = world.session_states(keys.clone());
    keys.into_iter()
        .zip(
            states
                .into_iter()
                .chain(std::iter::repeat(SessionState::Absent)),
        )
        .collect()
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}
