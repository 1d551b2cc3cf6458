//! The `sluice` command line: one file per subcommand.

mod broker;
mod enqueue;
mod policy;
pub mod policy_check;
mod replay;
mod run;
mod session;
mod sim;
mod status;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Drains a SQLite transactional outbox to a message broker.
#[derive(Debug, Parser)]
#[command(name = "sluice", version, about)]
pub struct Cli {
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
}

pub fn execute(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Run(args) => run::run(&args),
        Command::Demo(args) => run::demo(&args),
        Command::Enqueue(args) => enqueue::enqueue(&args),
        Command::Status(args) => status::status(&args),
        Command::Broker(args) => broker::broker(&args),
        Command::Replay(args) => replay::replay_command(&args),
        Command::Trace(args) => replay::trace_command(&args),
        Command::Sim(args) => sim::sim(&args),
        Command::Session(args) => session::session(&args),
        Command::Keygen(args) => session::keygen(&args),
        Command::Policy(args) => policy::policy(&args),
    }
}

/// Logs to stderr; `RUST_LOG` overrides `default`.
pub(crate) fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}
