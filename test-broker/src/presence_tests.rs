//! Presences against a hand-driven clock: leases, reattach, dedup, targets.

use super::*;

const MEMBER: &str = "aa";
const OTHER: &str = "bb";
const SESSION: &str = "cc";

fn daemon(connection: u64, pubkey: &str, session_id: &str) -> Peer {
    Peer {
        mesh_id: "mesh".into(),
        member_id: "mem".into(),
        pubkey: pubkey.into(),
        parent_pubkey: None,
        session_id: session_id.into(),
        connection,
    }
}

fn session(connection: u64, session_pubkey: &str, session_id: &str) -> Peer {
    Peer {
        pubkey: session_pubkey.into(),
        parent_pubkey: Some(MEMBER.into()),
        ..daemon(connection, MEMBER, session_id)
    }
}

#[test]
fn a_peer_is_a_target_while_connected_and_for_the_lease_after() {
    let mut presences = Presences::default();
    let joined = presences.join(&daemon(1, OTHER, "s-other"), 0);
    assert!(presences.has_peer("mesh", OTHER, 2, 0));
    assert!(!presences.has_peer("other-mesh", OTHER, 2, 0));
    assert!(!presences.has_peer("mesh", "dd", 2, 0));
    presences.leave(joined.presence, 1, 10_000);
    assert!(presences.has_peer("mesh", OTHER, 2, 10_000 + OFFLINE_LEASE_MS - 1));
    assert!(!presences.has_peer("mesh", OTHER, 2, 10_000 + OFFLINE_LEASE_MS));
    assert_eq!(presences.count("mesh", 10_000 + OFFLINE_LEASE_MS), 0);
}

#[test]
fn your_own_key_needs_another_session() {
    let mut presences = Presences::default();
    presences.join(&daemon(1, MEMBER, "s-daemon"), 0);
    assert!(
        !presences.has_peer("mesh", MEMBER, 1, 0),
        "only the sender holds the key"
    );
    presences.join(&session(2, SESSION, "s-session"), 0);
    assert!(
        presences.has_peer("mesh", MEMBER, 1, 0),
        "a session answers to its member key"
    );
    assert!(presences.has_peer("mesh", SESSION, 1, 0));
    assert!(!presences.has_peer("mesh", SESSION, 2, 0));
}

#[test]
fn a_daemon_reconnecting_with_its_session_id_reattaches_its_lease() {
    let mut presences = Presences::default();
    let first = presences.join(&daemon(1, MEMBER, "stable"), 0);
    presences.leave(first.presence, 1, 100);
    let again = presences.join(&daemon(2, MEMBER, "stable"), 200);
    assert_eq!(
        again,
        Joined {
            presence: first.presence,
            replaced: vec![]
        }
    );
    assert!(
        !presences.has_peer("mesh", MEMBER, 2, 300),
        "the old connection became this one: no other session"
    );
    assert_eq!(presences.count("mesh", 300), 1);
}

#[test]
fn a_daemon_reconnecting_with_a_new_session_id_leaves_a_lease_that_counts_as_another() {
    let mut presences = Presences::default();
    let first = presences.join(&daemon(1, MEMBER, "first"), 0);
    presences.leave(first.presence, 1, 100);
    presences.join(&daemon(2, MEMBER, "second"), 200);
    assert!(presences.has_peer("mesh", MEMBER, 2, 300));
    assert_eq!(presences.count("mesh", 300), 2);
}

#[test]
fn the_same_session_id_replaces_an_open_connection() {
    let mut presences = Presences::default();
    presences.join(&daemon(1, MEMBER, "shared"), 0);
    let second = presences.join(&session(2, SESSION, "shared"), 0);
    assert_eq!(second.replaced, vec![1]);
    assert!(
        !presences.has_peer("mesh", MEMBER, 2, 0),
        "the daemon presence is gone"
    );
    // A leave from the replaced connection changes nothing.
    presences.leave(second.presence - 1, 1, 5);
    assert!(presences.has_peer("mesh", SESSION, 3, 5));
}

#[test]
fn a_session_key_reattaches_even_while_its_old_socket_is_open() {
    let mut presences = Presences::default();
    let first = presences.join(&session(1, SESSION, "s1"), 0);
    let again = presences.join(&session(2, SESSION, "s2"), 10);
    assert_eq!(
        again,
        Joined {
            presence: first.presence,
            replaced: vec![1]
        }
    );
    presences.leave(first.presence, 1, 20);
    assert!(
        presences.has_peer("mesh", SESSION, 3, OFFLINE_LEASE_MS * 2),
        "the old socket's close did not end the reattached presence"
    );
}
