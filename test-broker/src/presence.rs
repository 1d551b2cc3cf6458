//! Who is connected, as the real broker's presences: what direct sends are
//! checked against, with the 90 s offline lease, reattach and session-id
//! dedup.
//!
//! Owns: the presences, `OFFLINE_LEASE_MS`, `CONNECTIONS_PER_MESH_MAX`,
//! deciding which older connections a hello replaces, and whether a pubkey
//! is a connected peer for a sender. Does not own: closing the replaced
//! sockets (`client`) or the clock (callers pass milliseconds).
//!
//! Mirrors `apps/broker/src/index.ts`: a closed connection stays a presence
//! for the lease; a daemon hello with the same `sessionId` and member key
//! reattaches an offline presence, a session hello with the same session key
//! reattaches any (closing the old socket); otherwise every presence with
//! the same `sessionId` in the mesh is dropped and its socket closed with
//! 1000 `session_replaced`. A session presence answers to its session key
//! and to its parent member key.

use super::stats::Peer;
use std::collections::BTreeMap;

/// How long a closed connection stays a target for direct sends, as on the
/// real broker (`GRACE_MS`): a peer that blinks is not reported offline,
/// and a sender's own old connection counts as "another session" for as
/// long.
pub const OFFLINE_LEASE_MS: u64 = 90_000;

/// Presences a mesh may hold (online and leased), as on the real broker
/// (`MAX_CONNECTIONS_PER_MESH`): a hello beyond is refused with `capacity`.
/// Prevents a reconnect loop with fresh session ids from growing the
/// presence table without bound.
pub const CONNECTIONS_PER_MESH_MAX: usize = 100;

struct Presence {
    mesh_id: String,
    /// The member key (a session's parent key).
    member_pubkey: String,
    /// Session links only.
    session_pubkey: Option<String>,
    session_id: String,
    /// The connection now holding the presence.
    connection: u64,
    /// When its connection closed; `None` while it is open.
    left_at_ms: Option<u64>,
}

impl Presence {
    fn leased(&self, now_ms: u64) -> bool {
        self.left_at_ms
            .is_none_or(|left| now_ms.saturating_sub(left) < OFFLINE_LEASE_MS)
    }

    fn answers_to(&self, pubkey: &str) -> bool {
        self.member_pubkey == pubkey || self.session_pubkey.as_deref() == Some(pubkey)
    }
}

/// What a hello did to the presences.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Joined {
    pub presence: u64,
    /// Open connections that lost their presence to this hello: to be closed
    /// with 1000 `session_replaced`.
    pub replaced: Vec<u64>,
}

/// Every presence by id; ids count from 1 and are never reused.
#[derive(Default)]
pub(crate) struct Presences {
    by_id: BTreeMap<u64, Presence>,
    last_id: u64,
}

impl Presences {
    /// Presences (online or leased) in `mesh_id`, for the capacity check.
    pub(crate) fn count(&mut self, mesh_id: &str, now_ms: u64) -> usize {
        self.expire(now_ms);
        self.by_id.values().filter(|p| p.mesh_id == mesh_id).count()
    }

    /// Records an accepted hello on `peer.connection`.
    pub(crate) fn join(&mut self, peer: &Peer, now_ms: u64) -> Joined {
        self.expire(now_ms);
        let member_pubkey = peer.parent_pubkey.as_deref().unwrap_or(&peer.pubkey);
        let session_pubkey = peer.parent_pubkey.as_ref().map(|_| peer.pubkey.as_str());
        let reattach = self.by_id.iter().find_map(|(id, p)| {
            let same = match session_pubkey {
                Some(session) => p.session_pubkey.as_deref() == Some(session),
                None => {
                    p.left_at_ms.is_some()
                        && p.session_pubkey.is_none()
                        && p.session_id == peer.session_id
                        && p.member_pubkey == member_pubkey
                }
            };
            (p.mesh_id == peer.mesh_id && same).then_some(*id)
        });
        let mut replaced = Vec::new();
        if let Some(id) = reattach
            && let Some(presence) = self.by_id.get_mut(&id)
        {
            if presence.left_at_ms.is_none() && presence.connection != peer.connection {
                replaced.push(presence.connection);
            }
            presence.connection = peer.connection;
            presence.left_at_ms = None;
            presence.session_id.clone_from(&peer.session_id);
            return Joined {
                presence: id,
                replaced,
            };
        }
        self.by_id.retain(|_, p| {
            let duplicate = p.mesh_id == peer.mesh_id && p.session_id == peer.session_id;
            if duplicate && p.left_at_ms.is_none() && p.connection != peer.connection {
                replaced.push(p.connection);
            }
            !duplicate
        });
        self.last_id += 1;
        self.by_id.insert(
            self.last_id,
            Presence {
                mesh_id: peer.mesh_id.clone(),
                member_pubkey: member_pubkey.to_string(),
                session_pubkey: session_pubkey.map(str::to_string),
                session_id: peer.session_id.clone(),
                connection: peer.connection,
                left_at_ms: None,
            },
        );
        Joined {
            presence: self.last_id,
            replaced,
        }
    }

    /// `connection` closed: its presence, if it still holds it, starts its
    /// offline lease.
    pub(crate) fn leave(&mut self, presence: u64, connection: u64, now_ms: u64) {
        if let Some(p) = self.by_id.get_mut(&presence)
            && p.connection == connection
            && p.left_at_ms.is_none()
        {
            p.left_at_ms = Some(now_ms);
        }
    }

    /// Whether a direct send from `sender` (a connection of `mesh_id`) to
    /// `target` has a recipient: a presence of the mesh, on another
    /// connection, online or within its lease, holding that key.
    pub(crate) fn has_peer(
        &mut self,
        mesh_id: &str,
        target: &str,
        sender: u64,
        now_ms: u64,
    ) -> bool {
        self.expire(now_ms);
        self.by_id
            .values()
            .any(|p| p.mesh_id == mesh_id && p.connection != sender && p.answers_to(target))
    }

    fn expire(&mut self, now_ms: u64) {
        self.by_id.retain(|_, p| p.leased(now_ms));
    }
}

#[cfg(test)]
#[path = "presence_tests.rs"]
mod tests;
