//! The simulated outbox's initial contents, drawn from the seed.
//!
//! Owns: which meshes have a daemon link, which sessions are registered, and
//! the rows — the kinds a real outbox holds: routed rows, session rows (for a
//! registered session or one nobody registered), legacy rows written before
//! the routing columns existed, malformed rows with some routing columns
//! missing, rows the host could not read (a `defect`), rows older than a day,
//! session rows older than ten minutes, rows a previous drainer left
//! half-done (attempts used, backing off, or still `inflight` under its
//! lease), and rows an operator aborted (requeued). Not here: what happens
//! to them (the store, `broker`).

use super::outbox::{DEFECTS, Status, StoredRow};
use super::rng::SimRng;
use sluice_policy::{Row, TimestampMs};

/// Where the virtual clock starts: 2026-01-01T00:00:00Z.
pub const EPOCH_START_MS: TimestampMs = 1_767_225_600_000;

/// The slugs daemon links may exist for; a run uses the first one to three.
const MESH_SLUGS: [&str; 3] = ["alpha", "beta", "gamma"];
/// A mesh rows name but no daemon link exists for.
const UNKNOWN_MESH: &str = "omega";
/// Sessions registered with the simulated host: one to this many.
const SESSIONS_MAX: u64 = 4;
/// Session keys rows carry but no session ever registers.
const UNKNOWN_SESSIONS: u64 = 2;

const MINUTE_MS: i64 = 60_000;
const DAY_MS: i64 = 24 * 60 * MINUTE_MS;

/// The links and rows a run starts with.
#[derive(Clone, Debug)]
pub struct Population {
    pub meshes: Vec<String>,
    pub sessions: Vec<String>,
    pub rows: Vec<StoredRow>,
}

/// How a row's routing columns are filled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    Routed,
    Session,
    /// All six late columns NULL: written before they existed.
    Legacy,
    /// Routing columns NULL but a mesh set (a half-migrated producer).
    LegacyWithMesh,
    /// Some routing columns but not all: must never be broadcast.
    Partial,
    /// A column the host could not read.
    Defect,
}

const SHAPES: [(Shape, u32); 6] = [
    (Shape::Routed, 70),
    (Shape::Session, 15),
    (Shape::Legacy, 5),
    (Shape::LegacyWithMesh, 3),
    (Shape::Partial, 5),
    (Shape::Defect, 2),
];

/// Draws a population of `rows` rows. `max_attempts` bounds the attempts a
/// previous drainer may have used, so every row starts with a try left.
pub fn populate(rng: &mut SimRng, rows: u32, max_attempts: u32) -> Population {
    let mesh_count = 1 + rng.below(MESH_SLUGS.len() as u64) as usize;
    let meshes: Vec<String> = MESH_SLUGS[..mesh_count]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let sessions: Vec<String> = (0..1 + rng.below(SESSIONS_MAX))
        .map(|_| hex(&rng.bytes(32)))
        .collect();
    let unknown: Vec<String> = (0..UNKNOWN_SESSIONS).map(|_| hex(&rng.bytes(32))).collect();
    let mut session_keys = sessions.clone();
    session_keys.extend(unknown);
    let rows = (1..=i64::from(rows))
        .map(|rowid| draw_row(rng, rowid, &meshes, &session_keys, max_attempts))
        .collect();
    Population {
        meshes,
        sessions,
        rows,
    }
}

fn draw_row(
    rng: &mut SimRng,
    rowid: i64,
    meshes: &[String],
    sessions: &[String],
    max_attempts: u32,
) -> StoredRow {
    let shape = SHAPES[rng.weighted(&SHAPES.map(|(_, w)| w))].0;
    let enqueued_at = EPOCH_START_MS - age_ms(rng);
    let mut row = Row {
        rowid,
        id: format!("row-{rowid:06}"),
        client_message_id: format!("cmid-{rowid:06}-{:08x}", rng.next_u64() as u32),
        request_fingerprint: rng.bytes(32),
        payload: format!("payload {rowid} {}", hex(&rng.bytes(8))).into_bytes(),
        enqueued_at,
        ..Row::default()
    };
    if shape != Shape::Legacy {
        row.mesh = draw_mesh(rng, meshes);
        row.priority = rng
            .pick(&[None, Some("now"), Some("next"), Some("low"), Some("urgent")])
            .copied()
            .flatten()
            .map(str::to_string);
    }
    if matches!(
        shape,
        Shape::Routed | Shape::Session | Shape::Partial | Shape::Defect
    ) {
        row.target_spec = Some(
            rng.pick(&["@peer", "*", "#ops", "@agent-7"])
                .copied()
                .unwrap_or("*")
                .to_string(),
        );
        row.nonce = Some(hex(&rng.bytes(12)));
        row.ciphertext = Some(hex(&rng.bytes(24)));
    }
    match shape {
        // An empty key counts as none: such a row goes over the daemon link.
        Shape::Session if rng.below(20) == 0 => row.sender_session_pubkey = Some(String::new()),
        Shape::Session => row.sender_session_pubkey = rng.pick(sessions).cloned(),
        Shape::Partial => match rng.below(3) {
            0 => row.target_spec = None,
            1 => row.nonce = Some(String::new()),
            _ => (row.nonce, row.ciphertext) = (None, None),
        },
        Shape::Defect => {
            // The column written with a value of the wrong type
            // (`outbox::SimOutbox::create`); the store's claim says what.
            row.defect = rng.pick(&DEFECTS).map(|column| column.to_string());
        }
        Shape::Routed | Shape::Legacy | Shape::LegacyWithMesh => {}
    }
    left_by_previous_drainer(rng, row, max_attempts)
}

/// Most rows are fresh; some wait out a backoff or a dead drainer's lease.
fn left_by_previous_drainer(rng: &mut SimRng, mut row: Row, max_attempts: u32) -> StoredRow {
    let tried = u32::try_from(rng.below(u64::from(max_attempts.min(4)))).unwrap_or(0);
    let (status, next_attempt_at) = match rng.below(100) {
        // Taken back by an operator: nothing may touch it again.
        8 => (Status::Aborted, row.enqueued_at),
        // Claimed by a drainer that died: inflight until its lease runs out.
        0..=1 => (
            Status::Inflight,
            EPOCH_START_MS + rng.between(-MINUTE_MS, MINUTE_MS),
        ),
        // Tried before and backing off.
        2..=6 => (
            Status::Pending,
            EPOCH_START_MS + rng.between(-MINUTE_MS, MINUTE_MS / 2),
        ),
        // Backing off far out (a drainer with a longer backoff cap), and
        // about to turn a day old: only the expiry sweep can reach it in time.
        7 => {
            row.enqueued_at = EPOCH_START_MS - rng.between(DAY_MS - 5 * MINUTE_MS, DAY_MS - 1);
            (
                Status::Pending,
                EPOCH_START_MS + rng.between(10 * MINUTE_MS, 60 * MINUTE_MS),
            )
        }
        _ => (Status::Pending, row.enqueued_at),
    };
    row.attempts = match status {
        Status::Inflight => tried + 1,
        _ if next_attempt_at != row.enqueued_at => tried,
        _ => 0,
    };
    StoredRow {
        row,
        status,
        next_attempt_at,
        last_error: None,
        delivered_at: None,
        broker_message_id: None,
    }
}

/// Ages: mostly the last minute; some past the ten minutes after which an
/// unregistered session is gone; some a few minutes short of the day after
/// which rows expire (so retries cross it, and the expiry sweep must find
/// them); some past it.
fn age_ms(rng: &mut SimRng) -> i64 {
    match rng.below(100) {
        0..=81 => rng.between(0, MINUTE_MS),
        82..=91 => rng.between(10 * MINUTE_MS, DAY_MS - MINUTE_MS),
        92..=94 => rng.between(DAY_MS - 15 * MINUTE_MS, DAY_MS),
        _ => rng.between(DAY_MS + 1, 30 * DAY_MS),
    }
}

/// A daemon mesh mostly; sometimes NULL, empty, or one with no daemon link.
fn draw_mesh(rng: &mut SimRng, meshes: &[String]) -> Option<String> {
    match rng.below(100) {
        0..=87 => rng.pick(meshes).cloned(),
        88..=92 => None,
        93..=95 => Some(String::new()),
        _ => Some(UNKNOWN_MESH.to_string()),
    }
}

fn hex(bytes: &[u8]) -> String {
    sluice_policy::rules::hex(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_population_holds_every_kind_of_row() {
        let mut rng = SimRng::new(11);
        let population = populate(&mut rng, 2_000, 25);
        let rows = &population.rows;
        assert_eq!(rows.len(), 2_000);
        assert!((1..=3).contains(&population.meshes.len()));
        let has = |f: &dyn Fn(&StoredRow) -> bool| rows.iter().any(f);
        assert!(has(&|r| r
            .row
            .sender_session_pubkey
            .as_deref()
            .is_some_and(|k| !k.is_empty())));
        assert!(has(&|r| r.row.mesh.is_none()
            && r.row.target_spec.is_none()
            && r.row.sender_session_pubkey.is_none()));
        assert!(has(&|r| r.row.defect.is_some()));
        assert!(has(
            &|r| r.row.target_spec.is_none() && r.row.ciphertext.is_some()
        ));
        assert!(has(&|r| r.row.mesh.as_deref() == Some(UNKNOWN_MESH)));
        assert!(has(&|r| r.row.enqueued_at < EPOCH_START_MS - DAY_MS));
        assert!(has(&|r| r.status == Status::Inflight));
        assert!(has(&|r| r.status == Status::Aborted));
        assert!(
            rows.iter()
                .all(|r| r.row.attempts < 25 || r.status == Status::Inflight)
        );
    }

    #[test]
    fn the_same_seed_draws_the_same_rows() {
        let a = populate(&mut SimRng::new(5), 100, 25);
        let b = populate(&mut SimRng::new(5), 100, 25);
        assert_eq!(a.rows, b.rows);
        assert_eq!((a.meshes, a.sessions), (b.meshes, b.sessions));
    }
}
