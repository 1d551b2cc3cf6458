//! The rules, as pure functions over what one tick did so far.
//!
//! Owns: [`Ledger`] (the rows this instance claimed in the tick, what it
//! settled and sent, the clock and random bytes it was given) and the
//! checks of a dispatch, an outcome and a store call against it. Not here:
//! carrying calls out or refusing them (`Guard`), the names and sentences
//! (`breach`).
//!
//! An empty string counts as NULL, as the default policy reads the row.

use super::breach::{Breach, RowRef, Rule};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use fnv::{FnvHashMap, FnvHashSet};
use sluice_policy::{Dispatch, Outcome, Route, Row, SendResult, TimestampMs, Verdict};

/// Bytes of the fresh nonce a legacy row is broadcast with.
pub const LEGACY_NONCE_BYTES: usize = 24;

/// The most 24-byte windows of random bytes indexed per tick: a policy
/// that asks for more than this cannot use the rest as nonces.
const NONCE_WINDOWS_MAX: usize = 1 << 20;

/// What became of a row's dispatch in this tick.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sent {
    /// No dispatch yet.
    No,
    /// Refused by the guard; never written.
    Refused,
    /// Passed the rules; being written.
    Awaiting,
    /// The broker accepted it under this message id (in the text arena).
    Accepted(Span),
    /// The broker rejected it, or the transport failed.
    Rejected,
    Failed,
}

/// Where one field of a claimed row is kept: a byte range of an arena.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Span {
    start: u32,
    len: u32,
}

impl Span {
    fn range(self) -> std::ops::Range<usize> {
        let start = self.start as usize;
        start..start + self.len as usize
    }
}

/// The text fields of a row the rules read, in the order of `TEXT_FIELDS`.
const ID: usize = 0;
const CMID: usize = 1;
const MESH: usize = 2;
const TARGET: usize = 3;
const NONCE: usize = 4;
const CIPHERTEXT: usize = 5;
const SESSION: usize = 6;
const DEFECT: usize = 7;
const TEXT_FIELDS: usize = 8;

/// A row as claimed, in the ledger's arenas, and what the tick did with it.
#[derive(Clone, Debug)]
struct Claim {
    attempts: u32,
    lease_end: TimestampMs,
    /// None for a NULL column.
    text: [Option<Span>; TEXT_FIELDS],
    fingerprint: Span,
    /// Kept only for a legacy row, whose dispatch must carry it in base64.
    payload: Option<Span>,
    settled: bool,
    sent: Sent,
}

/// The fields of one row the rules read, borrowed: from a [`Row`], or from
/// the ledger's copy of a claimed one.
#[derive(Clone, Copy, Debug)]
pub struct RowView<'a> {
    pub id: &'a str,
    pub client_message_id: &'a str,
    pub request_fingerprint: &'a [u8],
    /// Only a legacy row's is kept by the ledger; empty otherwise.
    pub payload: &'a [u8],
    pub mesh: Option<&'a str>,
    pub target_spec: Option<&'a str>,
    pub nonce: Option<&'a str>,
    pub ciphertext: Option<&'a str>,
    pub sender_session_pubkey: Option<&'a str>,
    pub defect: Option<&'a str>,
}

impl<'a> RowView<'a> {
    pub fn of(row: &'a Row) -> RowView<'a> {
        RowView {
            id: &row.id,
            client_message_id: &row.client_message_id,
            request_fingerprint: &row.request_fingerprint,
            payload: &row.payload,
            mesh: row.mesh.as_deref(),
            target_spec: row.target_spec.as_deref(),
            nonce: row.nonce.as_deref(),
            ciphertext: row.ciphertext.as_deref(),
            sender_session_pubkey: row.sender_session_pubkey.as_deref(),
            defect: row.defect.as_deref(),
        }
    }

    /// All three routing columns empty: a row from before they existed.
    fn is_legacy(&self) -> bool {
        [self.target_spec, self.nonce, self.ciphertext]
            .iter()
            .all(|v| present(*v).is_none())
    }
}

/// One tick of one policy instance, as far as the rules need it. The claimed
/// rows' fields are copied into two arenas that keep their capacity from
/// tick to tick, so holding a claim costs no allocation per row.
#[derive(Debug, Default)]
pub struct Ledger {
    /// rowid → index into `claims`.
    index: FnvHashMap<i64, usize>,
    claims: Vec<Claim>,
    text: String,
    bytes: Vec<u8>,
    /// The latest time the policy was given: the tick's `now`, or a later
    /// `env.now` answer.
    clock: TimestampMs,
    /// Every 24-byte window of this tick's random bytes not yet used as a nonce.
    nonces: FnvHashSet<[u8; LEGACY_NONCE_BYTES]>,
}

impl Ledger {
    /// Forgets the last tick; the new one starts at `now`.
    pub fn begin(&mut self, now: TimestampMs) {
        self.index.clear();
        self.claims.clear();
        self.text.clear();
        self.bytes.clear();
        self.nonces.clear();
        self.clock = now;
    }

    /// The policy was told the time is `now`.
    pub fn saw_time(&mut self, now: TimestampMs) {
        self.clock = self.clock.max(now);
    }

    /// The policy was given `bytes` from the random source.
    pub fn saw_random(&mut self, bytes: &[u8]) {
        for window in bytes.windows(LEGACY_NONCE_BYTES) {
            if self.nonces.len() >= NONCE_WINDOWS_MAX {
                return;
            }
            if let Ok(window) = <[u8; LEGACY_NONCE_BYTES]>::try_from(window) {
                self.nonces.insert(window);
            }
        }
    }

    fn keep_text(&mut self, value: &str) -> Span {
        let start = span_offset(self.text.len());
        self.text.push_str(value);
        Span {
            start,
            len: span_offset(value.len()),
        }
    }

    fn keep_bytes(&mut self, value: &[u8]) -> Span {
        let start = span_offset(self.bytes.len());
        self.bytes.extend_from_slice(value);
        Span {
            start,
            len: span_offset(value.len()),
        }
    }

    /// A claim at `now` with `lease_ms` returned `rows`.
    pub fn claimed(&mut self, rows: &[Row], now: TimestampMs, lease_ms: i64) {
        let lease_end = now.saturating_add(lease_ms);
        for row in rows {
            let fields = [
                Some(row.id.as_str()),
                Some(row.client_message_id.as_str()),
                row.mesh.as_deref(),
                row.target_spec.as_deref(),
                row.nonce.as_deref(),
                row.ciphertext.as_deref(),
                row.sender_session_pubkey.as_deref(),
                row.defect.as_deref(),
            ];
            let text = fields.map(|field| field.map(|value| self.keep_text(value)));
            let fingerprint = self.keep_bytes(&row.request_fingerprint);
            let payload = RowView::of(row)
                .is_legacy()
                .then(|| self.keep_bytes(&row.payload));
            self.index.insert(row.rowid, self.claims.len());
            self.claims.push(Claim {
                attempts: row.attempts,
                lease_end,
                text,
                fingerprint,
                payload,
                settled: false,
                sent: Sent::No,
            });
        }
    }

    fn claim(&self, rowid: i64) -> Option<&Claim> {
        self.index.get(&rowid).map(|&i| &self.claims[i])
    }

    fn claim_mut(&mut self, rowid: i64) -> Option<&mut Claim> {
        self.index.get(&rowid).map(|&i| &mut self.claims[i])
    }

    /// The claimed row's fields as the rules read them.
    fn view(&self, claim: &Claim) -> RowView<'_> {
        let text = |field: usize| claim.text[field].map(|span| &self.text[span.range()]);
        RowView {
            id: text(ID).unwrap_or_default(),
            client_message_id: text(CMID).unwrap_or_default(),
            request_fingerprint: &self.bytes[claim.fingerprint.range()],
            payload: claim
                .payload
                .map_or(&[][..], |span| &self.bytes[span.range()]),
            mesh: text(MESH),
            target_spec: text(TARGET),
            nonce: text(NONCE),
            ciphertext: text(CIPHERTEXT),
            sender_session_pubkey: text(SESSION),
            defect: text(DEFECT),
        }
    }

    /// A dispatch the guard refused still counts as this row's one dispatch
    /// (unless the row already had one).
    pub fn refused(&mut self, rowid: i64) {
        if let Some(claim) = self.claim_mut(rowid)
            && claim.sent == Sent::No
        {
            claim.sent = Sent::Refused;
        }
    }

    /// A dispatch was written and the broker answered `result`.
    pub fn answered(&mut self, rowid: i64, result: &SendResult) {
        let sent = match result {
            SendResult::Accepted(id) => Sent::Accepted(self.keep_text(id)),
            SendResult::Rejected(_) => Sent::Rejected,
            SendResult::Failed(_) => Sent::Failed,
        };
        if let Some(claim) = self.claim_mut(rowid) {
            claim.sent = sent;
        }
    }

    /// An outcome passed the rules and goes to the store.
    pub fn settling(&mut self, rowid: i64) {
        if let Some(claim) = self.claim_mut(rowid) {
            claim.settled = true;
        }
    }

    fn row_ref(&self, rowid: i64) -> RowRef {
        RowRef {
            rowid,
            id: self
                .claim(rowid)
                .map(|claim| self.view(claim).id.to_string()),
        }
    }

    /// Whether `dispatch` may be written with `ack_timeout_ms`. `meshes` are
    /// the daemon links' slugs, asked for only when a row's mesh is NULL.
    /// A dispatch that passes is written: the nonce it used is spent.
    pub fn check_dispatch(
        &mut self,
        dispatch: &Dispatch,
        ack_timeout_ms: u32,
        meshes: &mut dyn FnMut() -> Vec<String>,
    ) -> Result<(), Breach> {
        let rowid = dispatch.rowid;
        let refuse = |ledger: &Ledger, rule, why: String| {
            Err(Breach::new(rule, Some(ledger.row_ref(rowid)), why))
        };
        let Some(claim) = self.claim(rowid) else {
            let why = "was dispatched but this policy instance did not claim it in this tick";
            return refuse(self, Rule::OnlyClaimedRowsDispatched, why.into());
        };
        if claim.settled {
            let why = "was dispatched after this tick had already settled it";
            return refuse(self, Rule::OnlyClaimedRowsDispatched, why.into());
        }
        if claim.sent != Sent::No {
            let why = "was dispatched a second time in one tick";
            return refuse(self, Rule::OneDispatchPerRow, why.into());
        }
        let row = self.view(claim);
        if let Some(why) = malformed(&row) {
            return refuse(self, Rule::MalformedRowNeverSent, why);
        }
        if let Err((rule, why)) = check_route(&row, &dispatch.route, meshes) {
            return refuse(self, rule, why);
        }
        let left_ms = claim.lease_end.saturating_sub(self.clock);
        if i64::from(ack_timeout_ms) >= left_ms {
            let why = format!(
                "was sent with an ack timeout of {ack_timeout_ms} ms but only {left_ms} ms of its lease were left: another drainer could send it again while this one waits"
            );
            return refuse(self, Rule::LeaseOutlastsAck, why);
        }
        let nonce = match check_content(&row, dispatch, &self.nonces) {
            Ok(nonce) => nonce,
            Err((rule, why)) => return refuse(self, rule, why),
        };
        if let Some(nonce) = nonce {
            self.nonces.remove(&nonce);
        }
        if let Some(claim) = self.claim_mut(rowid) {
            claim.sent = Sent::Awaiting;
        }
        Ok(())
    }

    /// Whether `outcome` may be applied.
    pub fn check_outcome(&self, outcome: &Outcome) -> Result<(), Breach> {
        let rowid = outcome.rowid;
        let refuse = |rule, why: String| Err(Breach::new(rule, Some(self.row_ref(rowid)), why));
        let Some(claim) = self.claim(rowid) else {
            let why = "was settled but this policy instance did not claim it in this tick";
            return refuse(Rule::SettleOnlyOwnClaims, why.into());
        };
        if claim.settled {
            return refuse(
                Rule::SettleOnlyOwnClaims,
                "was settled a second time in one tick".into(),
            );
        }
        if outcome.attempts != claim.attempts {
            let why = format!(
                "was claimed with {} attempts but settled with {}",
                claim.attempts, outcome.attempts
            );
            return refuse(Rule::OutcomeCarriesClaimedAttempts, why);
        }
        if let Verdict::Done {
            broker_message_id, ..
        } = &outcome.verdict
        {
            let why = match claim.sent {
                Sent::Accepted(span) if &self.text[span.range()] == broker_message_id => {
                    return Ok(());
                }
                Sent::Accepted(span) => format!(
                    "was settled done as broker message {broker_message_id:?}, but the broker accepted it as {:?}",
                    &self.text[span.range()]
                ),
                Sent::Rejected => "was settled done, but the broker rejected its send".into(),
                Sent::Failed => "was settled done, but its send failed".into(),
                Sent::Refused => {
                    "was settled done, but its dispatch broke a rule and was never written".into()
                }
                Sent::Awaiting => "was settled done before its send was answered".into(),
                Sent::No => "was settled done without being sent in this tick".into(),
            };
            return refuse(Rule::DoneOnlyAfterAccept, why);
        }
        Ok(())
    }

    /// Whether a store call (`call`) may use `now`.
    pub fn check_store_time(&self, call: &str, now: TimestampMs) -> Result<(), Breach> {
        if now <= self.clock {
            return Ok(());
        }
        let why = format!(
            "{call} was called with now = {now}, {} ms ahead of the latest time the host gave ({}): it would take rows or leases before their time",
            now - self.clock,
            self.clock
        );
        Err(Breach::new(Rule::StoreTimeNotAhead, None, why))
    }
}

/// A session row goes over its own session's link; any other row over the
/// daemon link of its mesh, or the only one when its mesh is NULL.
pub fn check_route(
    row: &RowView<'_>,
    route: &Route,
    meshes: &mut dyn FnMut() -> Vec<String>,
) -> Result<(), (Rule, String)> {
    let expected = match (present(row.sender_session_pubkey), present(row.mesh)) {
        (Some(session), _) => match route {
            Route::Session(key) if key == session => return Ok(()),
            Route::Daemon(mesh) => {
                let why = format!(
                    "has sender session {} but was dispatched over the daemon link of mesh {mesh:?}: its recipients could not decrypt it, and it would carry the daemon's name",
                    short(session)
                );
                return Err((Rule::SessionRowNeverOverDaemon, why));
            }
            Route::Session(_) => format!("the session link of {}", short(session)),
        },
        (None, Some(mesh)) => match route {
            Route::Daemon(m) if m == mesh => return Ok(()),
            _ => format!("the daemon link of mesh {mesh:?}"),
        },
        (None, None) => match (route, meshes().as_slice()) {
            (Route::Daemon(m), [only]) if m == only => return Ok(()),
            (_, [only]) => format!("the only daemon link, {only:?}"),
            (_, all) => format!(
                "no link: its mesh is NULL and there are {} daemon links",
                all.len()
            ),
        },
    };
    let sent = match route {
        Route::Daemon(mesh) => format!("the daemon link of mesh {mesh:?}"),
        Route::Session(key) => format!("the session link of {}", short(key)),
    };
    Err((
        Rule::RouteMatchesRow,
        format!("was dispatched over {sent}; it belongs on {expected}"),
    ))
}

/// Why a row must never be sent, if it must not.
pub fn malformed(row: &RowView<'_>) -> Option<String> {
    if let Some(defect) = row.defect {
        return Some(format!(
            "was sent although the host could not read it ({defect}): it must die"
        ));
    }
    let set = [row.target_spec, row.nonce, row.ciphertext]
        .iter()
        .filter(|v| present(**v).is_some())
        .count();
    (set != 0 && set != 3).then(|| {
        "was sent although some but not all of target_spec, nonce and ciphertext are set: it must die, never be broadcast".to_string()
    })
}

/// The dispatch carries its row's own content. Returns the nonce a legacy
/// row used, to be spent.
fn check_content(
    row: &RowView<'_>,
    dispatch: &Dispatch,
    nonces: &FnvHashSet<[u8; LEGACY_NONCE_BYTES]>,
) -> Result<Option<[u8; LEGACY_NONCE_BYTES]>, (Rule, String)> {
    if dispatch.client_message_id != row.client_message_id {
        let why = format!(
            "has client_message_id {:?} but went out as {:?}",
            row.client_message_id, dispatch.client_message_id
        );
        return Err((Rule::SameClientMessageId, why));
    }
    if !hex_matches(&dispatch.request_fingerprint_hex, row.request_fingerprint) {
        let why = format!(
            "went out with request fingerprint {:?}, which is not the lowercase hex of its own",
            dispatch.request_fingerprint_hex
        );
        return Err((Rule::ContentMatchesRow, why));
    }
    if !matches!(dispatch.priority.as_str(), "now" | "next" | "low") {
        let why = format!(
            "went out with priority {:?}; it must be now, next or low",
            dispatch.priority
        );
        return Err((Rule::ContentMatchesRow, why));
    }
    match (
        present(row.target_spec),
        present(row.nonce),
        present(row.ciphertext),
    ) {
        (Some(target_spec), Some(nonce), Some(ciphertext)) => {
            if dispatch.target_spec != target_spec {
                let why = format!(
                    "went out to {:?}, but its target_spec is {target_spec:?}",
                    dispatch.target_spec
                );
                return Err((Rule::ContentMatchesRow, why));
            }
            for (column, own, sent) in [
                ("nonce", nonce, &dispatch.nonce),
                ("ciphertext", ciphertext, &dispatch.ciphertext),
            ] {
                if own != sent {
                    let why = format!("went out with a {column} that is not its own");
                    return Err((Rule::ContentMatchesRow, why));
                }
            }
            Ok(None)
        }
        // `malformed` turned away rows with some of the three.
        _ => legacy_content(row, dispatch, nonces).map(Some),
    }
}

/// A legacy row: broadcast, its payload in base64, a nonce of this tick's
/// random bytes that no other dispatch used.
fn legacy_content(
    row: &RowView<'_>,
    dispatch: &Dispatch,
    nonces: &FnvHashSet<[u8; LEGACY_NONCE_BYTES]>,
) -> Result<[u8; LEGACY_NONCE_BYTES], (Rule, String)> {
    let rule = Rule::LegacyRowOnlyBroadcast;
    if dispatch.target_spec != "*" {
        let why = format!(
            "has no target_spec, nonce or ciphertext (a legacy row) but went out to {:?}: it may only be broadcast to *",
            dispatch.target_spec
        );
        return Err((rule, why));
    }
    if dispatch.ciphertext != BASE64.encode(row.payload) {
        let why = "is a legacy row, but its ciphertext is not the base64 of its payload";
        return Err((rule, why.into()));
    }
    let nonce = BASE64
        .decode(&dispatch.nonce)
        .ok()
        .and_then(|bytes| <[u8; LEGACY_NONCE_BYTES]>::try_from(bytes).ok());
    match nonce {
        Some(nonce) if nonces.contains(&nonce) => Ok(nonce),
        Some(_) => {
            let why = "is a legacy row, but its nonce is not fresh: it must be 24 bytes from env.random-bytes in this tick, used once";
            Err((rule, why.into()))
        }
        None => {
            let why = format!(
                "is a legacy row, but its nonce {:?} is not 24 bytes in base64",
                dispatch.nonce
            );
            Err((rule, why))
        }
    }
}

/// Whether `hex` is the lowercase hex of `bytes`, without allocating.
fn hex_matches(hex: &str, bytes: &[u8]) -> bool {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let hex = hex.as_bytes();
    hex.len() == bytes.len() * 2
        && bytes.iter().zip(hex.chunks_exact(2)).all(|(b, pair)| {
            pair[0] == DIGITS[usize::from(b >> 4)] && pair[1] == DIGITS[usize::from(b & 0xf)]
        })
}

fn present(value: Option<&str>) -> Option<&str> {
    value.filter(|v| !v.is_empty())
}

/// An arena offset; a tick's claim holds far less than 4 GiB of text.
fn span_offset(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The first 12 characters of a session key, as the policy logs them.
fn short(key: &str) -> String {
    key.chars().take(12).collect()
}

#[cfg(test)]
#[path = "rules_tests.rs"]
mod tests;
