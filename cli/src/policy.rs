//! `sluice policy load|check|test|new|bundled`: change a running drainer's
//! policy, check or test a candidate offline, start a policy project, or
//! write out the policies and traces the binary carries.

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use sluice::config::Config;
use sluice::control::{self, LoadRequest};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct PolicyArgs {
    #[command(subcommand)]
    command: PolicyCommand,
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Hand a policy component to the running drainer(s) of a config: it is
    /// validated there and goes live at the next tick, or stays out.
    Load(LoadArgs),
    /// Validate a policy component offline, as a running drainer would.
    Check(super::policy_check::CheckArgs),
    /// Test a policy component by its behaviour beside the default's: seeded
    /// simulations over several fault profiles under the host's guard and
    /// invariants, and what-if over the golden traces.
    Test(super::policy_test::TestArgs),
    /// Make a policy project of its own in DIR (Rust or Python): the
    /// contract's WIT, a minimal working policy, its tests and a README.
    New(super::policy_new::NewArgs),
    /// Write the policy components and golden traces this binary carries
    /// into DIR: the default, the outage-aware policy, a faulty build to try
    /// rollback with, and DIR/golden for --verify.
    Bundled(BundledArgs),
}

#[derive(Debug, Args)]
struct BundledArgs {
    /// The folder to write them into (created if missing).
    dir: PathBuf,
}

#[derive(Debug, Args)]
struct LoadArgs {
    /// The policy component (.wasm).
    file: PathBuf,
    /// The TOML config file of the running drainer.
    #[arg(long)]
    config: PathBuf,
    /// A setting for this policy on top of the config's [policy]: KEY=VALUE.
    #[arg(long = "setting", value_name = "KEY=VALUE")]
    settings: Vec<String>,
}

pub fn policy(args: &PolicyArgs) -> anyhow::Result<ExitCode> {
    match &args.command {
        PolicyCommand::Load(load) => load_command(load),
        PolicyCommand::Check(check) => super::policy_check::check(check),
        PolicyCommand::Test(test) => super::policy_test::test(test),
        PolicyCommand::New(new) => super::policy_new::new(new),
        PolicyCommand::Bundled(bundled) => bundled_command(bundled),
    }
}

fn bundled_command(args: &BundledArgs) -> anyhow::Result<ExitCode> {
    let written = sluice::bundled::write(&args.dir).map_err(anyhow::Error::msg)?;
    for file in written {
        println!("{}: {}", file.path.display(), file.what);
    }
    Ok(ExitCode::SUCCESS)
}

fn load_command(args: &LoadArgs) -> anyhow::Result<ExitCode> {
    let config = Config::load(&args.config)?;
    let file = std::path::absolute(&args.file)
        .with_context(|| format!("resolving {}", args.file.display()))?;
    if !file.is_file() {
        bail!(
            "no policy file at {}: give a .wasm component",
            file.display()
        );
    }
    let request = LoadRequest {
        load: file,
        settings: super::setting_flags(&args.settings)?,
    };
    let replies = control::load(&config.outbox, &request).map_err(anyhow::Error::msg)?;
    let mut all_ok = true;
    for (socket, reply) in replies {
        let who = socket
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        if reply.ok {
            println!("drainer {who}: {}", reply.message);
        } else {
            all_ok = false;
            println!("drainer {who}: refused: {}", reply.message);
        }
    }
    Ok(if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
