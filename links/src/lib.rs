//! Sluice's links to claudemesh brokers.
//!
//! Module map:
//! - `identity`: member keys (libsodium form), the three signed messages,
//!   signing and verifying.
//! - `wire`: the JSON frames, both directions, with borrowed parsing.
//! - `config`: `MeshConfig`, `LinkOptions`, `LinkState` and every limit.
//! - `links`: `Links`, the registry the host calls (`send_batch`, states).
//! - `link`: one daemon link's life: connect, hello, run, back off
//!   (`backoff`), reconnect.
//! - `connection`: an open link's loop; `writer` its write half;
//!   `inflight` the sends waiting for acks.
//! - `broker`: a test broker that checks hellos as the real one does.
//!
//! This crate never classifies a broker's answer: `Rejected` carries the
//! broker's text and `Failed` the transport failure; the policy decides.
//!
//! Calling from a thread that is not async: keep the runtime's `Handle` and
//! call `handle.block_on(links.send_batch(…))` on a dedicated std thread
//! (never on a runtime worker: `block_on` there panics).

mod backoff;
pub mod broker;
mod config;
mod connection;
mod identity;
mod inflight;
mod link;
mod links;
mod wire;
mod writer;

pub use broker::{
    Broker, BrokerOptions, BrokerStats, Member, MembersError, Peer, SentFrame, load_members,
};
pub use config::{
    ACK_TIMEOUT_MAX, CONNECT_TIMEOUT, HELLO_TIMEOUT, LINK_COMMANDS_MAX, LINK_PING_INTERVAL,
    LINK_SILENCE_MAX, LinkOptions, LinkState, MAX_INBOUND_MESSAGE_BYTES, MeshConfig,
};
pub use identity::{
    KeyError, MemberKey, daemon_hello_message, session_attestation_message, session_hello_message,
    verify_hex,
};
pub use link::LinkError;
pub use links::Links;
