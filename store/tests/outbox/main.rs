//! Black-box tests of the outbox store: real SQLite files in temporary
//! folders, driven through the public API, checked through it and through a
//! second raw connection.

// A failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod admin;
mod checkpoint;
mod claim;
mod common;
mod concurrency;
mod defects;
mod enqueue;
mod idempotent;
mod open;
mod report;
mod settle;
mod share;
mod sweep;
