//! The imports: [`World`], one method per import, and the same imports as
//! values: one [`Call`] per import with its arguments, one
//! [`Reply`] per kind of answer, and [`Answer`], a world written as one
//! function from a call to its reply.
//!
//! Most worlds do one thing to every call: record it, answer it from a
//! trace, refuse it while a policy loads, hold it to the rules, or pass it
//! on. Written against [`World`] they would need a method per import each,
//! and every new import would touch all of them. Written against [`Answer`]
//! they handle the calls they care about and pass the rest through
//! [`Call::on`]; every type that implements [`Answer`] is a [`World`]. An
//! import is added here (a variant, its name, its dispatch and its empty
//! answers), in the two conversions and in the host's world; nothing else
//! needs to change.

use crate::types::*;

/// Everything a policy may observe or do: the imports of the WIT world.
///
/// The guest implements it over the component's imports; the host implements
/// it natively for the baseline benchmark; tests implement it in memory.
pub trait World {
    fn claim_due(
        &mut self,
        now: TimestampMs,
        limit: u32,
        lease_ms: i64,
        skip: &ClaimFilter,
    ) -> Result<Vec<Row>, String>;
    fn settle(&mut self, outcomes: Vec<Outcome>) -> Result<u32, String>;
    fn reclaim(&mut self, now: TimestampMs) -> Result<u32, String>;
    fn expire(&mut self, now: TimestampMs, cutoff: TimestampMs) -> Result<u32, String>;
    fn next_due_at(&mut self, skip: &ClaimFilter) -> Result<Option<TimestampMs>, String>;
    fn mesh_links(&mut self) -> Vec<MeshLink>;
    fn throttle(&mut self, mesh: &str);
    fn session_states(&mut self, pubkeys: Vec<String>) -> Vec<SessionState>;
    fn send_batch(&mut self, dispatches: Vec<Dispatch>, ack_timeout_ms: u32) -> Vec<SendResult>;
    fn now(&mut self) -> TimestampMs;
    fn random_bytes(&mut self, len: u32) -> Vec<u8>;
    fn log(&mut self, level: Level, event: &str, fields: Vec<(String, String)>);
}

/// One import call and its arguments.
///
/// In a trace, `name()` is the call's `call` and the fields are its `args`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(tag = "call", content = "args"))]
#[non_exhaustive]
pub enum Call {
    #[cfg_attr(feature = "serde", serde(rename = "store.claim-due"))]
    ClaimDue {
        now: TimestampMs,
        limit: u32,
        lease_ms: i64,
        skip: ClaimFilter,
    },
    #[cfg_attr(feature = "serde", serde(rename = "store.settle"))]
    Settle { outcomes: Vec<Outcome> },
    #[cfg_attr(feature = "serde", serde(rename = "store.reclaim"))]
    Reclaim { now: TimestampMs },
    #[cfg_attr(feature = "serde", serde(rename = "store.expire"))]
    Expire {
        now: TimestampMs,
        cutoff: TimestampMs,
    },
    #[cfg_attr(feature = "serde", serde(rename = "store.next-due-at"))]
    NextDueAt { skip: ClaimFilter },
    #[cfg_attr(feature = "serde", serde(rename = "links.mesh-links"))]
    MeshLinks {},
    #[cfg_attr(feature = "serde", serde(rename = "links.throttle"))]
    Throttle { mesh: String },
    #[cfg_attr(feature = "serde", serde(rename = "links.session-states"))]
    SessionStates { pubkeys: Vec<String> },
    #[cfg_attr(feature = "serde", serde(rename = "links.send-batch"))]
    SendBatch {
        dispatches: Vec<Dispatch>,
        ack_timeout_ms: u32,
    },
    #[cfg_attr(feature = "serde", serde(rename = "env.now"))]
    Now {},
    #[cfg_attr(feature = "serde", serde(rename = "env.random-bytes"))]
    RandomBytes { len: u32 },
    #[cfg_attr(feature = "serde", serde(rename = "env.log"))]
    Log {
        level: Level,
        event: String,
        fields: Vec<(String, String)>,
    },
}

/// What an import answers. Each call has one kind of reply; [`Call::on`],
/// [`Reply::nothing`], [`Reply::failing`] and [`Reply::read`] give the
/// right one by construction.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(untagged))]
#[non_exhaustive]
pub enum Reply {
    /// `claim-due`.
    Rows(Result<Vec<Row>, String>),
    /// `settle`, `reclaim`, `expire`.
    Count(Result<u32, String>),
    /// `next-due-at`.
    DueAt(Result<Option<TimestampMs>, String>),
    /// `mesh-links`.
    Links(Vec<MeshLink>),
    /// `session-states`, one per key asked.
    Sessions(Vec<SessionState>),
    /// `send-batch`, one per dispatch.
    Sent(Vec<SendResult>),
    /// `now`.
    Time(TimestampMs),
    /// `random-bytes` (base64 text in a trace).
    Bytes(#[cfg_attr(feature = "serde", serde(with = "crate::bytes"))] Vec<u8>),
    /// `throttle`, `log`.
    Nothing,
}

impl Call {
    /// The import's interface and function, as WIT spells them and a trace
    /// records them.
    pub fn name(&self) -> &'static str {
        match self {
            Call::ClaimDue { .. } => "store.claim-due",
            Call::Settle { .. } => "store.settle",
            Call::Reclaim { .. } => "store.reclaim",
            Call::Expire { .. } => "store.expire",
            Call::NextDueAt { .. } => "store.next-due-at",
            Call::MeshLinks {} => "links.mesh-links",
            Call::Throttle { .. } => "links.throttle",
            Call::SessionStates { .. } => "links.session-states",
            Call::SendBatch { .. } => "links.send-batch",
            Call::Now {} => "env.now",
            Call::RandomBytes { .. } => "env.random-bytes",
            Call::Log { .. } => "env.log",
        }
    }

    /// The WIT interface the import belongs to: `store`, `links` or `env`.
    pub fn interface(&self) -> &'static str {
        self.name().split('.').next().unwrap_or_default()
    }

    /// The policy's clock reading the call acts at, for the calls that take
    /// one (the guard holds it to the host's clock).
    pub fn stated_time(&self) -> Option<TimestampMs> {
        match self {
            Call::ClaimDue { now, .. } | Call::Reclaim { now } | Call::Expire { now, .. } => {
                Some(*now)
            }
            _ => None,
        }
    }

    /// Makes the call on `world` and wraps its answer.
    pub fn on<W: World + ?Sized>(self, world: &mut W) -> Reply {
        match self {
            Call::ClaimDue {
                now,
                limit,
                lease_ms,
                skip,
            } => Reply::Rows(world.claim_due(now, limit, lease_ms, &skip)),
            Call::Settle { outcomes } => Reply::Count(world.settle(outcomes)),
            Call::Reclaim { now } => Reply::Count(world.reclaim(now)),
            Call::Expire { now, cutoff } => Reply::Count(world.expire(now, cutoff)),
            Call::NextDueAt { skip } => Reply::DueAt(world.next_due_at(&skip)),
            Call::MeshLinks {} => Reply::Links(world.mesh_links()),
            Call::Throttle { mesh } => {
                world.throttle(&mesh);
                Reply::Nothing
            }
            Call::SessionStates { pubkeys } => Reply::Sessions(world.session_states(pubkeys)),
            Call::SendBatch {
                dispatches,
                ack_timeout_ms,
            } => Reply::Sent(world.send_batch(dispatches, ack_timeout_ms)),
            Call::Now {} => Reply::Time(world.now()),
            Call::RandomBytes { len } => Reply::Bytes(world.random_bytes(len)),
            Call::Log {
                level,
                event,
                fields,
            } => {
                world.log(level, &event, fields);
                Reply::Nothing
            }
        }
    }
}

/// The most `random-bytes` an empty answer fills in (a bound on what a
/// confused policy can make a test world allocate).
const EMPTY_BYTES_MAX: u32 = 1024;

impl Reply {
    /// The answer of a world where nothing is there and nothing happens:
    /// no rows, counts of 0, nothing due, no links, absent sessions, each
    /// dispatch failed with `send_failure`, the clock at 0, zero bytes.
    pub fn nothing(call: &Call, send_failure: &str) -> Reply {
        match call {
            Call::ClaimDue { .. } => Reply::Rows(Ok(Vec::new())),
            Call::Settle { outcomes } => Reply::Count(Ok(count(outcomes.len()))),
            Call::Reclaim { .. } | Call::Expire { .. } => Reply::Count(Ok(0)),
            Call::NextDueAt { .. } => Reply::DueAt(Ok(None)),
            Call::MeshLinks {} => Reply::Links(Vec::new()),
            Call::SessionStates { pubkeys } => {
                Reply::Sessions(vec![SessionState::Absent; pubkeys.len()])
            }
            Call::SendBatch { dispatches, .. } => {
                Reply::Sent(vec![
                    SendResult::Failed(send_failure.into());
                    dispatches.len()
                ])
            }
            Call::Now {} => Reply::Time(0),
            Call::RandomBytes { len } => {
                Reply::Bytes(vec![0; (*len).min(EMPTY_BYTES_MAX) as usize])
            }
            Call::Throttle { .. } | Call::Log { .. } => Reply::Nothing,
        }
    }

    /// The answer of a world that refuses the call with `why`: the error
    /// where the import can fail, and otherwise [`Reply::nothing`].
    pub fn failing(call: &Call, why: &str) -> Reply {
        match call {
            Call::ClaimDue { .. } => Reply::Rows(Err(why.into())),
            Call::Settle { .. } | Call::Reclaim { .. } | Call::Expire { .. } => {
                Reply::Count(Err(why.into()))
            }
            Call::NextDueAt { .. } => Reply::DueAt(Err(why.into())),
            other => Reply::nothing(other, why),
        }
    }

    /// Reads the reply to `call` from its serialized form (a trace's
    /// `result`).
    #[cfg(feature = "serde")]
    pub fn read<'de, D: serde::Deserializer<'de>>(call: &Call, from: D) -> Result<Reply, D::Error> {
        use serde::Deserialize;
        Ok(match call {
            Call::ClaimDue { .. } => Reply::Rows(Deserialize::deserialize(from)?),
            Call::Settle { .. } | Call::Reclaim { .. } | Call::Expire { .. } => {
                Reply::Count(Deserialize::deserialize(from)?)
            }
            Call::NextDueAt { .. } => Reply::DueAt(Deserialize::deserialize(from)?),
            Call::MeshLinks {} => Reply::Links(Deserialize::deserialize(from)?),
            Call::SessionStates { .. } => Reply::Sessions(Deserialize::deserialize(from)?),
            Call::SendBatch { .. } => Reply::Sent(Deserialize::deserialize(from)?),
            Call::Now {} => Reply::Time(Deserialize::deserialize(from)?),
            Call::RandomBytes { .. } => Reply::Bytes(crate::bytes::deserialize(from)?),
            Call::Throttle { .. } | Call::Log { .. } => {
                <()>::deserialize(from)?;
                Reply::Nothing
            }
        })
    }
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// A world written as one function: each import call in, its reply out.
/// Every `Answer` is a [`World`].
pub trait Answer {
    fn answer(&mut self, call: Call) -> Reply;
}

/// The text of a reply of the wrong kind: a bug in the world that gave it.
fn wrong_kind(call: &'static str, reply: &Reply) -> String {
    format!("host bug: {call} was answered with {reply:?}")
}

impl<A: Answer + ?Sized> World for A {
    fn claim_due(
        &mut self,
        now: TimestampMs,
        limit: u32,
        lease_ms: i64,
        skip: &ClaimFilter,
    ) -> Result<Vec<Row>, String> {
        let skip = skip.clone();
        match self.answer(Call::ClaimDue {
            now,
            limit,
            lease_ms,
            skip,
        }) {
            Reply::Rows(rows) => rows,
            other => Err(wrong_kind("store.claim-due", &other)),
        }
    }
    fn settle(&mut self, outcomes: Vec<Outcome>) -> Result<u32, String> {
        match self.answer(Call::Settle { outcomes }) {
            Reply::Count(n) => n,
            other => Err(wrong_kind("store.settle", &other)),
        }
    }
    fn reclaim(&mut self, now: TimestampMs) -> Result<u32, String> {
        match self.answer(Call::Reclaim { now }) {
            Reply::Count(n) => n,
            other => Err(wrong_kind("store.reclaim", &other)),
        }
    }
    fn expire(&mut self, now: TimestampMs, cutoff: TimestampMs) -> Result<u32, String> {
        match self.answer(Call::Expire { now, cutoff }) {
            Reply::Count(n) => n,
            other => Err(wrong_kind("store.expire", &other)),
        }
    }
    fn next_due_at(&mut self, skip: &ClaimFilter) -> Result<Option<TimestampMs>, String> {
        let skip = skip.clone();
        match self.answer(Call::NextDueAt { skip }) {
            Reply::DueAt(at) => at,
            other => Err(wrong_kind("store.next-due-at", &other)),
        }
    }
    fn mesh_links(&mut self) -> Vec<MeshLink> {
        match self.answer(Call::MeshLinks {}) {
            Reply::Links(links) => links,
            // The infallible imports panic on a reply of the wrong kind:
            // only a world's bug gives one, and a made-up answer would hide it.
            other => panic!("{}", wrong_kind("links.mesh-links", &other)),
        }
    }
    fn throttle(&mut self, mesh: &str) {
        let mesh = mesh.to_string();
        match self.answer(Call::Throttle { mesh }) {
            Reply::Nothing => {}
            other => panic!("{}", wrong_kind("links.throttle", &other)),
        }
    }
    fn session_states(&mut self, pubkeys: Vec<String>) -> Vec<SessionState> {
        match self.answer(Call::SessionStates { pubkeys }) {
            Reply::Sessions(states) => states,
            other => panic!("{}", wrong_kind("links.session-states", &other)),
        }
    }
    fn send_batch(&mut self, dispatches: Vec<Dispatch>, ack_timeout_ms: u32) -> Vec<SendResult> {
        match self.answer(Call::SendBatch {
            dispatches,
            ack_timeout_ms,
        }) {
            Reply::Sent(results) => results,
            other => panic!("{}", wrong_kind("links.send-batch", &other)),
        }
    }
    fn now(&mut self) -> TimestampMs {
        match self.answer(Call::Now {}) {
            Reply::Time(now) => now,
            other => panic!("{}", wrong_kind("env.now", &other)),
        }
    }
    fn random_bytes(&mut self, len: u32) -> Vec<u8> {
        match self.answer(Call::RandomBytes { len }) {
            Reply::Bytes(bytes) => bytes,
            other => panic!("{}", wrong_kind("env.random-bytes", &other)),
        }
    }
    fn log(&mut self, level: Level, event: &str, fields: Vec<(String, String)>) {
        let event = event.to_string();
        match self.answer(Call::Log {
            level,
            event,
            fields,
        }) {
            Reply::Nothing => {}
            other => panic!("{}", wrong_kind("env.log", &other)),
        }
    }
}
