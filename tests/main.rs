//! The end-to-end tests, as one binary: the real `sluice` binary, real SQLite
//! files, the test broker on 127.0.0.1 and wasmtime running the compiled
//! policies. One module per subject; `common` holds the fixtures. One
//! binary links the host and wasmtime once, where a binary per subject
//! linked them fifteen times.
//!
//! `cargo test --release --test e2e sim::` runs one subject.

// Test code fails loudly: an unwrap here is an assertion.
#![allow(clippy::unwrap_used)]

mod common;

mod cli;
mod crash;
mod drain;
mod enqueue;
mod faults;
mod golden;
mod links;
mod metrics;
mod ops;
mod outbox;
mod policy_load;
mod policy_new;
mod python;
mod replay;
mod sim;
mod sim_outage;
mod swap;
mod walkthroughs;
mod wasi;
