//! What the test broker has seen, and the answer each send gets.
//!
//! Owns: counters, receipts per client message id, dedupe (a repeat gets its
//! first message id back), rejection switches, and the stats snapshot. Does
//! not own: sockets or timing of acks (`client`).
//!
//! One `Ledger` behind a `std::sync::Mutex` serves every connection: each
//! send holds the lock for a few map operations and never across an await,
//! so an async mutex would only add cost.

use super::options::BrokerOptions;
use crate::wire;
use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// Who a connection said it was, once its hello was accepted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Peer {
    pub mesh_id: String,
    pub member_id: String,
    /// The key the link authenticated with: the member key on a daemon link,
    /// the session key on a session link.
    pub pubkey: String,
    /// The member key that attested the session key (session links only).
    pub parent_pubkey: Option<String>,
    /// Which accepted connection (counts from 1), to tell reconnects apart.
    pub connection: u64,
}

/// The last `send` frame received under one client message id.
#[derive(Clone, Debug)]
pub struct SentFrame {
    /// The link it came over.
    pub peer: Arc<Peer>,
    pub id: String,
    pub target_spec: String,
    pub priority: String,
    pub nonce: String,
    pub ciphertext: String,
    pub request_fingerprint: String,
}

/// A snapshot of the broker's counters.
#[derive(Clone, Debug, Default)]
pub struct BrokerStats {
    pub hellos_accepted: u64,
    pub hellos_rejected: u64,
    pub sends: u64,
    pub accepted: u64,
    pub rejected: u64,
    /// Client message id → times received.
    pub receipts: BTreeMap<String, u32>,
    pub last_send: BTreeMap<String, SentFrame>,
    /// Client message id → the message id of its first acceptance (what
    /// every later repeat is answered with).
    pub message_ids: BTreeMap<String, String>,
    /// Most sends one connection had received and not yet acked: above 1
    /// proves the client pipelines.
    pub max_unacked: u32,
    /// Pongs received: proves clients answer the broker's pings.
    pub pongs: u64,
}

/// The broker's answer to one send.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Answer {
    /// No ack at all (a silent target).
    Silence,
    Ack {
        message_id: Option<String>,
        queued: bool,
        error: Option<String>,
    },
}

struct Receipt {
    count: u32,
    first_message_id: Option<String>,
    last: SentFrame,
}

#[derive(Default)]
pub(crate) struct Ledger {
    hellos_accepted: u64,
    hellos_rejected: u64,
    sends: u64,
    accepted: u64,
    rejected: u64,
    max_unacked: u32,
    pongs: u64,
    /// A HashMap, not the snapshot's BTreeMap: one hash lookup per send;
    /// order only matters in the snapshot.
    receipts: HashMap<String, Receipt>,
    messages: u64,
    connections: u64,
}

impl Ledger {
    pub(crate) fn hello(&mut self, accepted: bool) {
        if accepted {
            self.hellos_accepted += 1;
        } else {
            self.hellos_rejected += 1;
        }
    }

    pub(crate) fn pong(&mut self) {
        self.pongs += 1;
    }

    pub(crate) fn next_connection(&mut self) -> u64 {
        self.connections += 1;
        self.connections
    }

    /// Records a send and decides its answer. `unacked_if_answered` is the
    /// connection's count of unanswered sends should this one get an ack.
    pub(crate) fn record_send(
        &mut self,
        peer: &Arc<Peer>,
        frame: &wire::Send<'_>,
        options: &BrokerOptions,
        unacked_if_answered: u32,
    ) -> Answer {
        self.sends += 1;
        let cmid: &str = if frame.client_message_id.is_empty() {
            &frame.id
        } else {
            &frame.client_message_id
        };
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
                first_message_id: None,
                last,
            }),
        };
        let target: &str = &frame.target_spec;
        if options.silent_targets.iter().any(|t| t == target) {
            return Answer::Silence;
        }
        let answer =
            if let Some((_, error)) = options.reject_permanent.iter().find(|(t, _)| t == target) {
                rejection(error)
            } else if let Some((_, _, error)) = options
                .reject_transient
                .iter()
                .find(|(t, n, _)| t == target && receipt.count <= *n)
            {
                rejection(error)
            } else if let Some(first) = &receipt.first_message_id {
                // The real broker would deliver a repeat again; this one dedupes
                // so tests can see at-least-once re-sends land on one message.
                Answer::Ack {
                    message_id: Some(first.clone()),
                    queued: true,
                    error: None,
                }
            } else {
                self.messages += 1;
                let message_id = format!("msg_{}", self.messages);
                receipt.first_message_id = Some(message_id.clone());
                Answer::Ack {
                    message_id: Some(message_id),
                    queued: true,
                    error: None,
                }
            };
        match &answer {
            Answer::Ack { error: Some(_), .. } => self.rejected += 1,
            _ => self.accepted += 1,
        }
        self.max_unacked = self.max_unacked.max(unacked_if_answered);
        answer
    }

    pub(crate) fn snapshot(&self) -> BrokerStats {
        BrokerStats {
            hellos_accepted: self.hellos_accepted,
            hellos_rejected: self.hellos_rejected,
            sends: self.sends,
            accepted: self.accepted,
            rejected: self.rejected,
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
                .filter_map(|(id, r)| Some((id.clone(), r.first_message_id.clone()?)))
                .collect(),
            max_unacked: self.max_unacked,
            pongs: self.pongs,
        }
    }
}

fn rejection(error: &str) -> Answer {
    Answer::Ack {
        message_id: None,
        queued: false,
        error: Some(error.to_string()),
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
