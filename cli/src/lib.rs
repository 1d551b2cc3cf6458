//! The `sluice` command line: one file per subcommand, `logging` for the
//! global `--log-format`, and `demo`, the embedded demonstration. It joins
//! the production library (`sluice`, in `host/`) with the lab
//! (`sluice_lab`) and the test broker (`sluice_test_broker`), which the
//! library does not carry; `main.rs` only parses and prints.

mod broker;
pub mod demo;
mod enqueue;
mod logging;
mod outbox;
mod policy;
pub mod policy_check;
mod policy_new;
pub mod policy_test;
mod replay;
mod run;
mod service;
mod session;
mod sim;
mod status;

use clap::{Parser, Subcommand};
pub(crate) use logging::init_logging;
use std::process::ExitCode;

/// Drains a SQLite transactional outbox to a message broker.
#[derive(Debug, Parser)]
#[command(name = "sluice", version, about)]
pub struct Cli {
    /// How log lines on stderr are written: text, or one JSON object per line.
    #[arg(long, global = true, value_enum, default_value_t = logging::LogFormat::Text)]
    log_format: logging::LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Drain the outbox of a config file until stopped (SIGINT/SIGTERM).
    Run(run::RunArgs),
    /// Drain a demo outbox to an embedded broker on 127.0.0.1, then summarise.
    Demo(run::DemoArgs),
    /// Add a row to the outbox (flags, or JSON lines on stdin with --json).
    Enqueue(enqueue::EnqueueArgs),
    /// Print counts per status, the oldest pending row's age and common errors.
    Status(status::StatusArgs),
    /// List, inspect, requeue or purge outbox rows (safe while a drain runs).
    Outbox(outbox::OutboxArgs),
    /// Run the project's test broker.
    Broker(broker::BrokerArgs),
    /// Replay a trace against a policy; with --diff, compare a candidate's decisions.
    Replay(replay::ReplayArgs),
    /// Work with trace files.
    Trace(replay::TraceArgs),
    /// Simulate a policy against a seeded outbox and broker, checking invariants every tick.
    Sim(sim::SimArgs),
    /// Add, remove or list the config's sessions; a running drainer picks the change up.
    Session(session::SessionArgs),
    /// Print a fresh key pair (public_key, secret_key) for a session or member.
    Keygen(session::KeygenArgs),
    /// Load a policy into a running drainer, or check one offline.
    Policy(policy::PolicyArgs),
    /// Write a systemd unit that runs `sluice run` for a config.
    Service(service::ServiceArgs),
}

/// The `--setting KEY=VALUE` flags of every command, in order, trimmed.
pub(crate) fn setting_flags(flags: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    flags
        .iter()
        .map(|flag| match flag.split_once('=') {
            Some((key, value)) if !key.trim().is_empty() => {
                Ok((key.trim().to_string(), value.trim().to_string()))
            }
            _ => anyhow::bail!(
                "--setting {flag:?} is not KEY=VALUE (as in --setting max_attempts=5)"
            ),
        })
        .collect()
}

pub fn execute(cli: Cli) -> anyhow::Result<ExitCode> {
    logging::set_format(cli.log_format);
    match cli.command {
        Command::Run(args) => run::run(&args),
        Command::Demo(args) => run::demo(&args),
        Command::Enqueue(args) => enqueue::enqueue(&args),
        Command::Status(args) => status::status(&args),
        Command::Outbox(args) => outbox::outbox(&args),
        Command::Broker(args) => broker::broker(&args),
        Command::Replay(args) => replay::replay_command(&args),
        Command::Trace(args) => replay::trace_command(&args),
        Command::Sim(args) => sim::sim(&args),
        Command::Session(args) => session::session(&args),
        Command::Keygen(args) => session::keygen(&args),
        Command::Policy(args) => policy::policy(&args),
        Command::Service(args) => service::service(&args),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setting_flags_parse_as_key_value_pairs() {
        let parsed =
            setting_flags(&["max_attempts=5".into(), " fault = never_dead ".into()]).unwrap();
        assert_eq!(
            parsed,
            [
                ("max_attempts".to_string(), "5".to_string()),
                ("fault".into(), "never_dead".into())
            ]
        );
        for bad in ["max_attempts", "=5"] {
            let err = setting_flags(&[bad.into()]).unwrap_err().to_string();
            assert!(err.contains("KEY=VALUE"), "{err}");
        }
    }
}
