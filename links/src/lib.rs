//! Sluice's links to claudemesh brokers.
//!
//! Module map:
//! - `identity`: member keys (libsodium form), the three signed messages,
//!   signing and verifying.
//! - `wire`: the JSON frames, both directions, with borrowed parsing.
//! - `config`: `MeshConfig`, `SessionLinkConfig`, `LinkOptions`,
//!   `LinkState` and every limit.
//! - `links`: `Links`, the registry the host calls (states, budgets,
//!   reports, shutdown); `sessions` its session links (`set_sessions`);
//!   `route` its `send_batch`; `handle` starting one link task.
//! - `link`: one link's life, daemon or session: open (`connect`, with
//!   `tls` and `hello`), run, back off (`backoff`), reconnect; `tracker`
//!   publishes and logs its state, `report` what it tells, `hints` what
//!   to do about a refusal.
//! - `connection`: an open link's loop; `writer` its write half;
//!   `inflight` the sends waiting for acks; `budget` the mirror of the
//!   broker's per-member send budget.
//!
//! The test broker that checks hellos as the real one does is a crate of its
//! own (`test-broker/`); it speaks through `wire` and `identity` here.
//!
//! This crate never classifies a broker's answer: `Rejected` carries the
//! broker's text and `Failed` the transport failure; the policy decides.
//!
//! Calling from a thread that is not async: keep the runtime's `Handle` and
//! call `handle.block_on(links.send_batch(…))` on a dedicated std thread
//! (never on a runtime worker: `block_on` there panics).

mod backoff;
mod budget;
mod config;
mod connect;
mod connection;
mod handle;
mod hello;
mod hints;
mod identity;
mod inflight;
mod link;
mod links;
mod report;
mod route;
mod sessions;
mod tls;
mod tracker;
pub mod wire;
mod writer;

pub use budget::{MeshBudget, REFILL_WAIT_MAX, TokenBucket, UNLIMITED_REFUSED_PAUSE};
pub use config::{
    ACK_TIMEOUT_MAX, ATTESTATION_TTL_DEFAULT, ATTESTATION_TTL_MAX, AckObserver, CLOSE_TIMEOUT,
    CONNECT_TIMEOUT, HELLO_TIMEOUT, LINK_COMMANDS_MAX, LINK_PING_INTERVAL, LINK_SILENCE_MAX,
    LinkOptions, LinkState, MAX_INBOUND_MESSAGE_BYTES, MeshConfig, SessionLinkConfig,
};
pub use connect::LinkError;
pub use identity::{
    KeyError, MemberKey, daemon_hello_message, now_ms, session_attestation_message,
    session_hello_message, verify_hex,
};
pub use links::Links;
pub use report::{LinkKind, LinkReport};
/// The certificate type of `MeshConfig::ca_certs`, so callers need not
/// depend on rustls themselves.
pub use rustls::pki_types::CertificateDer;
pub use tls::{CA_FILE_CERTS_MAX, read_ca_file};
pub use tracker::FAILURE_WARN_EVERY;
