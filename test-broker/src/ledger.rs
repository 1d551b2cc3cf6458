//! What the test broker has seen, and the answer each send gets.
//!
//! Owns: counters, receipts per client message id (no dedupe: a repeat is a
//! new message, as on the real broker), the order of a send's checks (rate
//! limit first, then the direct-target check, then the test switches), the
//! presences and rate buckets that those checks read, and the stats
//! snapshot. Does not own: sockets or timing of acks (`client`), the bucket
//! arithmetic (`rate_limit`) or the presence rules (`presence`).
//!
//! One `Ledger` behind a `std::sync::Mutex` serves every connection: each
//! send holds the lock for a few map operations and never across an await,
//! so an async mutex would only add cost.

use super::options::BrokerOptions;
use super::presence::{Joined, Presences};
use super::rate_limit::Buckets;
use super::stats::{BrokerStats, Peer, SentFrame};
use sluice_links::wire;
use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

/// The real broker's ack error for a direct send nobody can take, verbatim.
pub const NO_CONNECTED_PEER: &str = "no connected peer for target (not online, or targetSpec is your own key without another session)";

/// Accepted hellos whose peer the stats keep (the most recent): bounds the
/// stats of a long run of reconnects.
const PEERS_KEPT_MAX: usize = 10_000;

/// The broker's answer to one send.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Answer {
    /// No ack at all (a silent target, a dropped ack, no `targetSpec`).
    Silence,
    Ack {
        message_id: String,
        queued: bool,
        error: Option<String>,
    },
}

struct Receipt {
    count: u32,
    message_ids: Vec<String>,
    last: SentFrame,
}

#[derive(Default)]
pub(crate) struct Ledger {
    hellos_accepted: u64,
    hellos_rejected: u64,
    hellos_ignored: u64,
    /// Hellos that passed the real checks: what `refuse_hello_first` counts.
    hellos_passed: u64,
    sends: u64,
    accepted: u64,
    rejected: u64,
    rate_limited: u64,
    acks_dropped: u64,
    sends_untargeted: u64,
    max_unacked: u32,
    pongs: u64,
    /// A HashMap, not the snapshot's BTreeMap: one hash lookup per send;
    /// order only matters in the snapshot.
    receipts: HashMap<String, Receipt>,
    messages: u64,
    connections: u64,
    connections_open: u64,
    presences: Presences,
    buckets: Buckets,
    /// Open connections a later hello replaced, until they close.
    replaced: BTreeSet<u64>,
    peers: BTreeMap<u64, Arc<Peer>>,
}

impl Ledger {
    pub(crate) fn hello(&mut self, accepted: bool) {
        if accepted {
            self.hellos_accepted += 1;
        } else {
            self.hellos_rejected += 1;
        }
    }

    pub(crate) fn hello_ignored(&mut self) {
        self.hellos_ignored += 1;
    }

    /// Counts a hello that passed the real checks; returns how many have.
    pub(crate) fn hello_passed(&mut self) -> u64 {
        self.hellos_passed += 1;
        self.hellos_passed
    }

    pub(crate) fn pong(&mut self) {
        self.pongs += 1;
    }

    pub(crate) fn next_connection(&mut self) -> u64 {
        self.connections += 1;
        self.connections_open += 1;
        self.connections
    }

    /// Whether `mesh_id` may take one more presence.
    pub(crate) fn has_room(&mut self, mesh_id: &str, now_ms: u64) -> bool {
        self.presences.count(mesh_id, now_ms) < super::presence::CONNECTIONS_PER_MESH_MAX
    }

    /// An accepted hello: joins the presences. Connections it replaced are
    /// marked for `take_replaced`.
    pub(crate) fn join(&mut self, peer: &Arc<Peer>, now_ms: u64) -> Joined {
        let joined = self.presences.join(peer, now_ms);
        self.replaced.extend(joined.replaced.iter().copied());
        self.peers.insert(peer.connection, Arc::clone(peer));
        while self.peers.len() > PEERS_KEPT_MAX {
            self.peers.pop_first();
        }
        joined
    }

    /// A connection ended: its presence (if any) starts its lease.
    pub(crate) fn leave(&mut self, presence: Option<u64>, connection: u64, now_ms: u64) {
        self.replaced.remove(&connection);
        self.connections_open = self.connections_open.saturating_sub(1);
        if let Some(presence) = presence {
            self.presences.leave(presence, connection, now_ms);
        }
    }

    /// Whether a later hello replaced `connection` (it must close).
    pub(crate) fn take_replaced(&mut self, connection: u64) -> bool {
        self.replaced.remove(&connection)
    }

    /// A send frame without a string `targetSpec`: it still spends a token
    /// (the real broker checks the limit first and then throws).
    pub(crate) fn record_untargeted_send(
        &mut self,
        peer: &Peer,
        options: &BrokerOptions,
        now_ms: u64,
    ) -> Answer {
        self.sends += 1;
        if let Some(limited) = self.spend_token(peer, options, now_ms) {
            return limited;
        }
        self.sends_untargeted += 1;
        Answer::Silence
    }

    /// Records a send and decides its answer. `unacked_if_answered` is the
    /// connection's count of unanswered sends should this one get an ack;
    /// `drop_ack`: if accepted, swallow the ack.
    pub(crate) fn record_send(
        &mut self,
        peer: &Arc<Peer>,
        frame: &wire::Send<'_>,
        options: &BrokerOptions,
        unacked_if_answered: u32,
        drop_ack: bool,
        now_ms: u64,
    ) -> Answer {
        let answer =
            self.record_send_kept(peer, frame, options, unacked_if_answered, drop_ack, now_ms);
        if options.forget_messages {
            self.receipts.remove(message_key(frame));
        }
        answer
    }

    fn record_send_kept(
        &mut self,
        peer: &Arc<Peer>,
        frame: &wire::Send<'_>,
        options: &BrokerOptions,
        unacked_if_answered: u32,
        drop_ack: bool,
        now_ms: u64,
    ) -> Answer {
        self.sends += 1;
        let limited = self.spend_token(peer, options, now_ms);
        let cmid = message_key(frame);
        let last = sent_frame(peer, frame);
        let receipt = match self.receipts.entry(cmid.to_string()) {
            Entry::Occupied(entry) => {
                let receipt = entry.into_mut();
                receipt.count += 1;
                receipt.last = last;
                receipt
            }
            Entry::Vacant(entry) => entry.insert(Receipt {
                count: 1,
                message_ids: Vec::new(),
                last,
            }),
        };
        if let Some(limited) = limited {
            self.max_unacked = self.max_unacked.max(unacked_if_answered);
            return limited;
        }
        let rule = rule_answer(
            &mut self.presences,
            peer,
            &frame.target_spec,
            receipt.count,
            options,
            now_ms,
        );
        match rule {
            Some(Answer::Silence) => return Answer::Silence,
            Some(rejected) => {
                self.rejected += 1;
                self.max_unacked = self.max_unacked.max(unacked_if_answered);
                return rejected;
            }
            None => {}
        }
        self.messages += 1;
        let message_id = format!("msg_{}", self.messages);
        receipt.message_ids.push(message_id.clone());
        self.accepted += 1;
        if drop_ack {
            self.acks_dropped += 1;
            return Answer::Silence;
        }
        self.max_unacked = self.max_unacked.max(unacked_if_answered);
        Answer::Ack {
            message_id,
            queued: true,
            error: None,
        }
    }

    /// The rate limit's answer if it refuses, after taking a token if not.
    fn spend_token(&mut self, peer: &Peer, options: &BrokerOptions, now_ms: u64) -> Option<Answer> {
        let limit = options.rate_limit?;
        if self
            .buckets
            .take(&peer.mesh_id, peer.member_pubkey(), limit, now_ms)
        {
            return None;
        }
        self.rate_limited += 1;
        self.rejected += 1;
        Some(rejection(&limit.rejection()))
    }

    pub(crate) fn snapshot(&self) -> BrokerStats {
        BrokerStats {
            hellos_accepted: self.hellos_accepted,
            hellos_rejected: self.hellos_rejected,
            hellos_ignored: self.hellos_ignored,
            sends: self.sends,
            accepted: self.accepted,
            rejected: self.rejected,
            rate_limited: self.rate_limited,
            acks_dropped: self.acks_dropped,
            sends_untargeted: self.sends_untargeted,
            receipts: self
                .receipts
                .iter()
                .map(|(id, r)| (id.clone(), r.count))
                .collect(),
            last_send: self
                .receipts
                .iter()
                .map(|(id, r)| (id.clone(), r.last.clone()))
                .collect(),
            message_ids: self
                .receipts
                .iter()
                .filter_map(|(id, r)| Some((id.clone(), r.message_ids.last()?.clone())))
                .collect(),
            all_message_ids: self
                .receipts
                .iter()
                .filter(|(_, r)| !r.message_ids.is_empty())
                .map(|(id, r)| (id.clone(), r.message_ids.clone()))
                .collect(),
            max_unacked: self.max_unacked,
            pongs: self.pongs,
            connections_open: self.connections_open,
            peers: self.peers.clone(),
        }
    }
}

/// What the rules after the rate limit make of a send, in the real
/// broker's order (direct target first), then the test switches; `None`:
/// accepted. `receipts` is how often this client message id has arrived.
fn rule_answer(
    presences: &mut Presences,
    peer: &Peer,
    target: &str,
    receipts: u32,
    options: &BrokerOptions,
    now_ms: u64,
) -> Option<Answer> {
    if is_direct(target)
        && !options.online_peers.iter().any(|online| online == target)
        && !presences.has_peer(&peer.mesh_id, target, peer.connection, now_ms)
    {
        return Some(rejection(NO_CONNECTED_PEER));
    }
    if options.silent_targets.iter().any(|t| t == target) {
        return Some(Answer::Silence);
    }
    if let Some((_, error)) = options.reject_permanent.iter().find(|(t, _)| t == target) {
        return Some(rejection(error));
    }
    options
        .reject_transient
        .iter()
        .find(|(t, n, _)| t == target && receipts <= *n)
        .map(|(_, _, error)| rejection(error))
}

/// A direct send: not a broadcast (`*`, `@all`), a group (`@name`) or a
/// topic (`#id`). The real broker treats anything else as a pubkey.
pub(crate) fn is_direct(target: &str) -> bool {
    target != "*" && !target.starts_with('@') && !target.starts_with('#')
}

/// A rejection as the real broker writes it: `messageId` empty, not queued.
fn rejection(error: &str) -> Answer {
    Answer::Ack {
        message_id: String::new(),
        queued: false,
        error: Some(error.to_string()),
    }
}

/// What the broker counts a message by: its client message id, else its id.
fn message_key<'a>(frame: &'a wire::Send<'_>) -> &'a str {
    if frame.client_message_id.is_empty() {
        &frame.id
    } else {
        &frame.client_message_id
    }
}

fn sent_frame(peer: &Arc<Peer>, frame: &wire::Send<'_>) -> SentFrame {
    SentFrame {
        peer: Arc::clone(peer),
        id: frame.id.to_string(),
        target_spec: frame.target_spec.to_string(),
        priority: frame.priority.to_string(),
        nonce: frame.nonce.to_string(),
        ciphertext: frame.ciphertext.to_string(),
        request_fingerprint: frame.request_fingerprint.to_string(),
    }
}

#[cfg(test)]
#[path = "ledger_tests.rs"]
mod tests;
