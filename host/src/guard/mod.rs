//! The guard: the host's check of everything a policy does with the rows.
//!
//! A policy is code written elsewhere. The engine bounds its time and
//! memory; the guard bounds what it means. [`Guard`] is a [`World`] that sits
//! between the policy and the real world (under the recorder, so a trace
//! holds what the policy saw) and looks at every import call of every tick,
//! for the component and the natively linked policy alike:
//!
//! - a dispatch that breaks a rule is not written; the policy is told
//!   `failed("policy_violation: <rule>")` for it;
//! - an outcome that breaks a rule is not applied; its row stays inflight
//!   until its lease returns it;
//! - a store call with a time ahead of the host's is not made; it fails
//!   with the same text.
//!
//! Every breach is kept until the tick ends ([`Guard::end_tick`]); the
//! runner then fails the tick with them, and the drain counts it like a
//! trap toward rollback. The rules themselves are pure (`rules`); the
//! simulator's invariants for dispatches and outcomes are these same rules,
//! reported under the same names. The contract's docs list them
//! (`docs/guard.md`).

mod breach;
pub mod rules;

pub use breach::{Breach, RowRef, Rule};

use rules::Ledger;
use sluice_policy::{Answer, Call, Dispatch, Outcome, Reply, SendResult, TimestampMs, World};

/// Breaches kept per tick; more are counted, not kept, so a policy that
/// breaks a rule for every row of a large claim cannot grow memory.
const BREACHES_KEPT_MAX: usize = 64;

/// Wraps a world and holds every call of the policy to the rules.
pub struct Guard<W> {
    pub inner: W,
    /// False only to measure what the guard costs (`sluice run --unguarded`
    /// for the benchmark): every call passes through unchecked.
    enabled: bool,
    ledger: Ledger,
    breaches: Vec<Breach>,
    /// Breaches this tick beyond [`BREACHES_KEPT_MAX`].
    breaches_dropped: u64,
}

impl<W: World> Guard<W> {
    pub fn new(inner: W) -> Guard<W> {
        Guard {
            inner,
            enabled: true,
            ledger: Ledger::default(),
            breaches: Vec::new(),
            breaches_dropped: 0,
        }
    }

    /// A guard that checks nothing: for measuring the guard's cost only.
    pub fn disabled(inner: W) -> Guard<W> {
        Guard {
            enabled: false,
            ..Guard::new(inner)
        }
    }

    /// A tick starts at `now`: the rules forget the last one.
    pub fn begin_tick(&mut self, now: TimestampMs) {
        self.ledger.begin(now);
        self.breaches.clear();
        self.breaches_dropped = 0;
    }

    /// The breaches of the tick that ended, in the order they happened, and
    /// how many more there were beyond those kept.
    pub fn end_tick(&mut self) -> (Vec<Breach>, u64) {
        (
            std::mem::take(&mut self.breaches),
            std::mem::take(&mut self.breaches_dropped),
        )
    }

    fn breach(&mut self, breach: Breach) -> String {
        let answer = breach.answer();
        if self.breaches.len() < BREACHES_KEPT_MAX {
            self.breaches.push(breach);
        } else {
            self.breaches_dropped += 1;
        }
        answer
    }

    fn store_time(&mut self, call: &str, now: TimestampMs) -> Result<(), String> {
        match self.ledger.check_store_time(call, now) {
            Ok(()) => Ok(()),
            Err(breach) => Err(self.breach(breach)),
        }
    }
}

impl<W: World> Guard<W> {
    /// Applies the outcomes that keep the rules; the others are breaches.
    fn settle_allowed(&mut self, outcomes: Vec<Outcome>) -> Result<u32, String> {
        let mut allowed = Vec::with_capacity(outcomes.len());
        for outcome in outcomes {
            match self.ledger.check_outcome(&outcome) {
                Ok(()) => {
                    self.ledger.settling(outcome.rowid);
                    allowed.push(outcome);
                }
                Err(breach) => {
                    self.breach(breach);
                }
            }
        }
        if allowed.is_empty() {
            return Ok(0);
        }
        self.inner.settle(allowed)
    }

    /// Sends the dispatches that keep the rules; the others are answered
    /// with their breach.
    fn send_allowed(&mut self, dispatches: Vec<Dispatch>, ack_timeout_ms: u32) -> Vec<SendResult> {
        let total = dispatches.len();
        // Per dispatch, in order: the answer for a refused one, or None.
        let mut refused: Vec<Option<String>> = Vec::with_capacity(total);
        let mut allowed = Vec::with_capacity(total);
        let mut slugs: Option<Vec<String>> = None;
        for dispatch in dispatches {
            let inner = &mut self.inner;
            let mut meshes = || {
                slugs
                    .get_or_insert_with(|| inner.mesh_links().into_iter().map(|l| l.slug).collect())
                    .clone()
            };
            match self
                .ledger
                .check_dispatch(&dispatch, ack_timeout_ms, &mut meshes)
            {
                Ok(()) => {
                    refused.push(None);
                    allowed.push(dispatch);
                }
                Err(breach) => {
                    self.ledger.refused(dispatch.rowid);
                    refused.push(Some(self.breach(breach)));
                }
            }
        }
        let rowids: Vec<i64> = allowed.iter().map(|d| d.rowid).collect();
        let mut answers = if allowed.is_empty() {
            Vec::new()
        } else {
            self.inner.send_batch(allowed, ack_timeout_ms)
        }
        .into_iter();
        let mut rowids = rowids.into_iter();
        refused
            .into_iter()
            .map(|refusal| match refusal {
                Some(answer) => SendResult::Failed(answer),
                None => {
                    // A world that answered fewer results than dispatches:
                    // the policy sees a failure, never a made-up success.
                    let answer = answers
                        .next()
                        .unwrap_or_else(|| SendResult::Failed("host_returned_no_result".into()));
                    if let Some(rowid) = rowids.next() {
                        self.ledger.answered(rowid, &answer);
                    }
                    answer
                }
            })
            .collect()
    }
}

impl<W: World> Answer for Guard<W> {
    fn answer(&mut self, call: Call) -> Reply {
        if !self.enabled {
            return call.on(&mut self.inner);
        }
        if let Some(now) = call.stated_time()
            && let Err(answer) = self.store_time(call.name(), now)
        {
            return Reply::failing(&call, &answer);
        }
        match call {
            Call::Settle { outcomes } => Reply::Count(self.settle_allowed(outcomes)),
            Call::SendBatch {
                dispatches,
                ack_timeout_ms,
            } => Reply::Sent(self.send_allowed(dispatches, ack_timeout_ms)),
            call => {
                let claim = match &call {
                    Call::ClaimDue { now, lease_ms, .. } => Some((*now, *lease_ms)),
                    _ => None,
                };
                let reply = call.on(&mut self.inner);
                match (&reply, claim) {
                    (Reply::Rows(Ok(rows)), Some((now, lease_ms))) => {
                        self.ledger.claimed(rows, now, lease_ms);
                    }
                    (Reply::Time(now), _) => self.ledger.saw_time(*now),
                    (Reply::Bytes(bytes), _) => self.ledger.saw_random(bytes),
                    _ => {}
                }
                reply
            }
        }
    }
}
