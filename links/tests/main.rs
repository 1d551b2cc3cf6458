//! The links' tests, as one binary with a module per subject: the client
//! against scripted servers and the test broker, the broker's own
//! conformance and faults, signatures against libsodium vectors, TLS.
//! `quiet_logs` stays a binary of its own: it installs the process's global
//! log subscriber.

mod broker_support;
mod common;
mod scripted;

mod broker;
mod broker_faults;
mod broker_sends;
mod broker_tls;
mod budget;
mod hellos;
mod link_loss;
mod links;
mod sessions;
mod signatures;
mod tls;
