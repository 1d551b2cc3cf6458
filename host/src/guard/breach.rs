//! What a broken rule looks like: the rule's stable name, the row, and a
//! sentence that says what the policy did and what the row needed.
//!
//! Owns: [`Rule`] (one variant per rule of the guard, with the name that
//! logs, metrics, `sluice status` and the simulator use) and [`Breach`].
//! Not here: finding breaches (`rules`).

use std::fmt;

/// One rule the host holds every policy to. The names are stable: operators
/// grep for them and the simulator reports them under the same names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Rule {
    /// A dispatch is only for a row this instance claimed in this tick and
    /// has not settled yet.
    OnlyClaimedRowsDispatched,
    /// At most one dispatch per row per tick.
    OneDispatchPerRow,
    /// A row with a sender session goes only over that session's link.
    SessionRowNeverOverDaemon,
    /// Any other row goes over its mesh's daemon link (the only one when
    /// its mesh is NULL).
    RouteMatchesRow,
    /// A row with a defect, or with some but not all of `target_spec`,
    /// `nonce` and `ciphertext`, is never sent.
    MalformedRowNeverSent,
    /// A dispatch carries its row's client message id.
    SameClientMessageId,
    /// A routed row goes out with its own fingerprint, target, nonce and
    /// ciphertext, and one of the three priorities.
    ContentMatchesRow,
    /// A legacy row goes out only as the broadcast fallback: target `*`,
    /// the payload in base64, and a fresh 24-byte nonce.
    LegacyRowOnlyBroadcast,
    /// A row's lease outlasts the wait for its ack: otherwise another
    /// drainer may reclaim and send it while this one still waits.
    LeaseOutlastsAck,
    /// Store calls use the host's time, never a time ahead of it.
    StoreTimeNotAhead,
    /// An outcome is only for a row claimed in this tick, once.
    SettleOnlyOwnClaims,
    /// An outcome carries the attempts its claim returned.
    OutcomeCarriesClaimedAttempts,
    /// `done` only for a row whose dispatch in this tick came back
    /// accepted, with that broker message id.
    DoneOnlyAfterAccept,
}

impl Rule {
    /// Every rule, in the order the guard looks.
    pub const ALL: [Rule; 13] = [
        Rule::OnlyClaimedRowsDispatched,
        Rule::OneDispatchPerRow,
        Rule::SessionRowNeverOverDaemon,
        Rule::RouteMatchesRow,
        Rule::MalformedRowNeverSent,
        Rule::SameClientMessageId,
        Rule::ContentMatchesRow,
        Rule::LegacyRowOnlyBroadcast,
        Rule::LeaseOutlastsAck,
        Rule::StoreTimeNotAhead,
        Rule::SettleOnlyOwnClaims,
        Rule::OutcomeCarriesClaimedAttempts,
        Rule::DoneOnlyAfterAccept,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Rule::OnlyClaimedRowsDispatched => "only_claimed_rows_dispatched",
            Rule::OneDispatchPerRow => "one_dispatch_per_row",
            Rule::SessionRowNeverOverDaemon => "session_row_never_over_daemon",
            Rule::RouteMatchesRow => "route_matches_row",
            Rule::MalformedRowNeverSent => "malformed_row_never_sent",
            Rule::SameClientMessageId => "same_client_message_id",
            Rule::ContentMatchesRow => "content_matches_row",
            Rule::LegacyRowOnlyBroadcast => "legacy_row_only_broadcast",
            Rule::LeaseOutlastsAck => "lease_outlasts_ack",
            Rule::StoreTimeNotAhead => "store_time_not_ahead",
            Rule::SettleOnlyOwnClaims => "settle_only_own_claims",
            Rule::OutcomeCarriesClaimedAttempts => "outcome_carries_claimed_attempts",
            Rule::DoneOnlyAfterAccept => "done_only_after_accept",
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A row in a message: rowid, and primary key when the guard knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowRef {
    pub rowid: i64,
    pub id: Option<String>,
}

impl fmt::Display for RowRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.id {
            Some(id) => write!(f, "row {} (id {id})", self.rowid),
            None => write!(f, "rowid {}", self.rowid),
        }
    }
}

/// One call of a policy that broke a rule; the call was not carried out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Breach {
    pub rule: Rule,
    /// The row the call was about, when it was about one.
    pub row: Option<RowRef>,
    /// What the policy did, and what the rule asks.
    pub detail: String,
}

impl Breach {
    pub(super) fn new(rule: Rule, row: Option<RowRef>, detail: impl Into<String>) -> Breach {
        Breach {
            rule,
            row,
            detail: detail.into(),
        }
    }

    /// What the policy is told in place of the call's result.
    pub fn answer(&self) -> String {
        format!("policy_violation: {}", self.rule)
    }
}

impl fmt::Display for Breach {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.row {
            Some(row) => write!(f, "{}: {row} {}", self.rule, self.detail),
            None => write!(f, "{}: {}", self.rule, self.detail),
        }
    }
}

impl std::error::Error for Breach {}
