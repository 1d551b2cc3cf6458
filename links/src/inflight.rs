//! The sends a link has written and not yet seen answered.
//!
//! Owns: matching acks to sends by id (never by position: the broker may
//! answer out of order), one deadline per batch, and answering each batch
//! once, when its last send is settled. Does not own: sockets or frames
//! (`connection`), nor deciding what an answer means (the policy does).
//!
//! Pure bookkeeping, no I/O, so it is tested without a socket.

use crate::config::AckObserver;
use sluice_contract::SendResult;
use std::collections::{BTreeMap, HashMap};
use tokio::sync::oneshot;
use tokio::time::Instant;

/// The answer to one batch: one result per dispatch, in dispatch order.
pub(crate) type BatchReply = oneshot::Sender<Vec<SendResult>>;

struct Batch {
    results: Vec<Option<SendResult>>,
    unsettled: usize,
    deadline: Instant,
    reply: BatchReply,
}

/// Every unanswered send of one connection.
#[derive(Default)]
pub(crate) struct InFlight {
    /// Send id → (batch, index in batch, when it was queued: only kept while
    /// someone observes ack latency).
    by_id: HashMap<String, (u64, usize, Option<Instant>)>,
    /// Ordered so the next deadline and iteration are deterministic.
    batches: BTreeMap<u64, Batch>,
    next_batch: u64,
    ack_latency: Option<AckObserver>,
}

impl InFlight {
    /// Tells `observer` each acked send's time since `register`.
    pub(crate) fn observing(observer: Option<AckObserver>) -> InFlight {
        InFlight {
            ack_latency: observer,
            ..InFlight::default()
        }
    }

    /// Starts a batch of `len` sends; returns its handle.
    pub(crate) fn open_batch(&mut self, len: usize, deadline: Instant, reply: BatchReply) -> u64 {
        let batch = self.next_batch;
        self.next_batch += 1;
        self.batches.insert(
            batch,
            Batch {
                results: vec![None; len],
                unsettled: len,
                deadline,
                reply,
            },
        );
        batch
    }

    /// Marks send `index` of `batch` as waiting for an ack under `id`.
    /// Returns false, and settles it as `duplicate_in_flight`, when a send
    /// with that id is already waiting: two acks with one id could not be
    /// told apart.
    pub(crate) fn register(&mut self, batch: u64, index: usize, id: String) -> bool {
        if self.by_id.contains_key(&id) {
            self.settle(
                batch,
                index,
                SendResult::Failed("duplicate_in_flight".to_string()),
            );
            return false;
        }
        let queued = self.ack_latency.as_ref().map(|_| Instant::now());
        self.by_id.insert(id, (batch, index, queued));
        true
    }

    /// Settles the send waiting under `id`; false when none is (a late ack
    /// after a timeout, or an ack for another client).
    pub(crate) fn ack(&mut self, id: &str, result: SendResult) -> bool {
        match self.by_id.remove(id) {
            Some((batch, index, queued)) => {
                if let (Some(observer), Some(queued)) = (&self.ack_latency, queued) {
                    (observer.0)(queued.elapsed());
                }
                self.settle(batch, index, result);
                true
            }
            None => false,
        }
    }

    /// Answers a batch whose sends are all settled (a batch of duplicates
    /// only, or an empty one) without waiting for an ack that will not come.
    pub(crate) fn close_batch_if_settled(&mut self, batch: u64) {
        if self.batches.get(&batch).is_some_and(|b| b.unsettled == 0) {
            self.finish(batch);
        }
    }

    /// The earliest deadline of any waiting batch.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.batches.values().map(|b| b.deadline).min()
    }

    /// Fails every unsettled send of batches past their deadline with
    /// `ack_timeout`; a late ack for them is then ignored.
    pub(crate) fn expire(&mut self, now: Instant) {
        let expired: Vec<u64> = self
            .batches
            .iter()
            .filter(|(_, b)| b.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        if expired.is_empty() {
            return;
        }
        self.by_id
            .retain(|_, (batch, _, _)| !expired.contains(batch));
        for batch in expired {
            self.fail_batch(batch, "ack_timeout");
        }
    }

    /// Fails every waiting send at once: the connection is gone, and no ack
    /// can arrive on a socket that no longer exists.
    pub(crate) fn fail_all(&mut self, reason: &str) {
        self.by_id.clear();
        let batches: Vec<u64> = self.batches.keys().copied().collect();
        for batch in batches {
            self.fail_batch(batch, reason);
        }
    }

    pub(crate) fn waiting(&self) -> usize {
        self.by_id.len()
    }

    fn fail_batch(&mut self, batch: u64, reason: &str) {
        if let Some(entry) = self.batches.get_mut(&batch) {
            for slot in entry.results.iter_mut().filter(|slot| slot.is_none()) {
                *slot = Some(SendResult::Failed(reason.to_string()));
            }
            entry.unsettled = 0;
        }
        self.finish(batch);
    }

    /// Settles send `index` of `batch` without an ack: it never went out
    /// (could not be encoded, or its deadline passed before it was written).
    pub(crate) fn settle(&mut self, batch: u64, index: usize, result: SendResult) {
        let Some(entry) = self.batches.get_mut(&batch) else {
            return;
        };
        let Some(slot) = entry.results.get_mut(index) else {
            return;
        };
        if slot.is_none() {
            *slot = Some(result);
            entry.unsettled -= 1;
        }
        if entry.unsettled == 0 {
            self.finish(batch);
        }
    }

    fn finish(&mut self, batch: u64) {
        if let Some(entry) = self.batches.remove(&batch) {
            let results = entry
                .results
                .into_iter()
                .map(|r| r.unwrap_or_else(|| SendResult::Failed("link_closed".to_string())))
                .collect();
            // The caller may have given up (dropped its future): nothing to tell.
            let _ = entry.reply.send(results);
        }
    }
}

#[cfg(test)]
#[path = "inflight_tests.rs"]
mod tests;
