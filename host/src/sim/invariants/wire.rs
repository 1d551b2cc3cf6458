//! What went out on the wire: every dispatch must be for a row this tick
//! claimed, over that row's own link, with its own client message id; never
//! a malformed row; never a row the broker already has.

use super::{Checker, TickView, name, unknown};
use crate::sim::store::StoredRow;
use crate::sim::violation::ViolationKind;
use sluice_policy::Route;
use std::collections::BTreeMap;

impl Checker {
    pub(super) fn check_sends(
        &self,
        tick: &TickView<'_>,
        claims: &BTreeMap<i64, u32>,
    ) -> Result<(), ViolationKind> {
        let mut sent: BTreeMap<i64, u32> = BTreeMap::new();
        for (dispatch, _) in &tick.journal.sends {
            let Some(stored) = tick.store.get(dispatch.rowid) else {
                return Err(ViolationKind::DispatchedUnclaimedRow {
                    row: unknown(dispatch.rowid),
                    status: "not in the outbox",
                });
            };
            let row = name(stored);
            if !claims.contains_key(&dispatch.rowid) {
                return Err(ViolationKind::DispatchedUnclaimedRow {
                    row,
                    status: stored.status.as_str(),
                });
            }
            check_route(stored, &dispatch.route, tick.meshes)?;
            if let Some(why) = malformed(stored) {
                return Err(ViolationKind::MalformedRowSent { row, why });
            }
            if dispatch.client_message_id != stored.row.client_message_id {
                let (row_cmid, sent_cmid) = (
                    stored.row.client_message_id.clone(),
                    dispatch.client_message_id.clone(),
                );
                return Err(ViolationKind::ClientMessageIdChanged {
                    row,
                    row_cmid,
                    sent_cmid,
                });
            }
            let times = sent.entry(dispatch.rowid).or_default();
            *times += 1;
            if *times > 1 {
                return Err(ViolationKind::ResentWithoutFailure {
                    row,
                    why: "twice in one tick".into(),
                });
            }
            if let Some(message_id) = &self
                .history
                .get(&dispatch.rowid)
                .and_then(|h| h.delivered.clone())
            {
                let why = format!(
                    "the broker had already accepted it as {message_id} and that claim was settled"
                );
                return Err(ViolationKind::ResentWithoutFailure { row, why });
            }
        }
        Ok(())
    }
}

/// A session row goes over its own session's link; any other row over the
/// daemon link of its mesh (or the only one, when its mesh is NULL).
fn check_route(stored: &StoredRow, route: &Route, meshes: &[String]) -> Result<(), ViolationKind> {
    let row = &stored.row;
    let expected = match (present(&row.sender_session_pubkey), present(&row.mesh)) {
        (Some(session), _) => match route {
            Route::Session(key) if key == session => return Ok(()),
            Route::Daemon(mesh) => {
                let (session, mesh) = (session.to_string(), mesh.clone());
                return Err(ViolationKind::SessionRowOverDaemon {
                    row: name(stored),
                    session,
                    mesh,
                });
            }
            Route::Session(_) => format!("the session link of {session}"),
        },
        (None, Some(mesh)) => match route {
            Route::Daemon(m) if m == mesh => return Ok(()),
            _ => format!("the daemon link of mesh {mesh:?}"),
        },
        (None, None) => match (route, meshes) {
            (Route::Daemon(m), [only]) if m == only => return Ok(()),
            (_, [only]) => format!("the only daemon link, {only:?}"),
            _ => format!(
                "no link: its mesh is NULL and there are {} daemon links",
                meshes.len()
            ),
        },
    };
    Err(ViolationKind::WrongLink {
        row: name(stored),
        route: format!("{route:?}"),
        expected,
    })
}

/// Why a row must never be sent, if it must not.
fn malformed(stored: &StoredRow) -> Option<String> {
    let row = &stored.row;
    if let Some(defect) = &row.defect {
        return Some(format!("the host could not read it ({defect})"));
    }
    let routing = [&row.target_spec, &row.nonce, &row.ciphertext].map(|v| present(v).is_some());
    let present_count = routing.iter().filter(|p| **p).count();
    (present_count != 0 && present_count != 3)
        .then(|| "some but not all of target_spec, nonce, ciphertext are set".to_string())
}

fn present(value: &Option<String>) -> Option<&str> {
    value.as_deref().filter(|v| !v.is_empty())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use crate::sim::store::Status;
    use sluice_policy::Row;

    fn stored(row: Row) -> StoredRow {
        StoredRow {
            row,
            status: Status::Inflight,
            next_attempt_at: 0,
            last_error: None,
            delivered_at: None,
            broker_message_id: None,
        }
    }

    fn routed(mesh: Option<&str>, session: Option<&str>) -> StoredRow {
        stored(Row {
            rowid: 1,
            id: "row-1".into(),
            mesh: mesh.map(str::to_string),
            sender_session_pubkey: session.map(str::to_string),
            target_spec: Some("@x".into()),
            nonce: Some("n".into()),
            ciphertext: Some("c".into()),
            ..Row::default()
        })
    }

    fn daemon(mesh: &str) -> Route {
        Route::Daemon(mesh.into())
    }

    #[test]
    fn a_session_row_belongs_on_its_own_session_link() {
        let meshes = ["alpha".to_string()];
        let row = routed(Some("alpha"), Some("k1"));
        assert_eq!(
            check_route(&row, &Route::Session("k1".into()), &meshes),
            Ok(())
        );
        let over_daemon = check_route(&row, &daemon("alpha"), &meshes).unwrap_err();
        assert_eq!(over_daemon.name(), "session_row_never_over_daemon");
        let other_session = check_route(&row, &Route::Session("k2".into()), &meshes).unwrap_err();
        assert_eq!(other_session.name(), "route_matches_row");
        // An empty key counts as none, as the policy reads it.
        assert_eq!(
            check_route(&routed(Some("alpha"), Some("")), &daemon("alpha"), &meshes),
            Ok(())
        );
    }

    #[test]
    fn a_row_goes_to_its_mesh_or_the_only_one() {
        let two = ["alpha".to_string(), "beta".to_string()];
        assert!(check_route(&routed(Some("alpha"), None), &daemon("beta"), &two).is_err());
        assert!(
            check_route(&routed(None, None), &daemon("alpha"), &two).is_err(),
            "a NULL mesh with two links has no route"
        );
        assert_eq!(
            check_route(&routed(None, None), &daemon("alpha"), &two[..1]),
            Ok(())
        );
    }

    #[test]
    fn partial_and_unreadable_rows_are_malformed_legacy_rows_are_not() {
        let mut partial = routed(Some("alpha"), None);
        partial.row.nonce = Some(String::new());
        assert!(malformed(&partial).is_some());
        let mut legacy = routed(None, None);
        (
            legacy.row.target_spec,
            legacy.row.nonce,
            legacy.row.ciphertext,
        ) = (None, None, None);
        assert_eq!(malformed(&legacy), None);
        let mut unreadable = routed(Some("alpha"), None);
        unreadable.row.defect = Some("payload: NULL".into());
        assert!(malformed(&unreadable).is_some());
        assert_eq!(malformed(&routed(Some("alpha"), None)), None);
    }
}
