//! `sluice service print`: a systemd unit that runs `sluice run` for one
//! config, written to stdout (the repository's `dist/sluice.service` is the
//! same unit for the usual paths).
//!
//! Owns: the unit's text and the quoting of paths into it. The unit relies on
//! the daemon's signals: SIGTERM (systemd's stop) lets the running tick finish
//! and settle before exit; SIGHUP (`systemctl reload`) reads the sessions
//! again.

use anyhow::Context as _;
use clap::{Args, Subcommand};
use sluice::config::Config;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// How long systemd waits after SIGTERM before it kills: one tick with its
/// acks (the default policy's ack timeout is 15 s) and the settle after it,
/// with room to spare.
pub const STOP_TIMEOUT_SECS: u32 = 30;

/// How long systemd waits before starting a drainer that failed again.
pub const RESTART_DELAY_SECS: u32 = 2;

#[derive(Debug, Args)]
pub struct ServiceArgs {
    #[command(subcommand)]
    command: ServiceCommand,
}

#[derive(Debug, Subcommand)]
enum ServiceCommand {
    /// Write a systemd unit running this binary on the config to stdout.
    Print(PrintArgs),
}

#[derive(Debug, Args)]
struct PrintArgs {
    /// The TOML config file the service drains (checked, then named by its absolute path).
    #[arg(long)]
    config: PathBuf,
}

pub fn service(args: &ServiceArgs) -> anyhow::Result<ExitCode> {
    match &args.command {
        ServiceCommand::Print(print) => {
            Config::load(&print.config)?;
            let config = std::fs::canonicalize(&print.config).with_context(|| {
                format!("cannot resolve the config path {}", print.config.display())
            })?;
            let binary = std::env::current_exe()
                .and_then(std::fs::canonicalize)
                .context(
                    "cannot find the path of the running sluice binary; run it by its full path",
                )?;
            print!("{}", unit(&binary, &config));
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The unit for `binary run --config config`.
pub fn unit(binary: &Path, config: &Path) -> String {
    format!(
        "\
# Sluice drains the outbox of {config_name} to its brokers.
# Install as a user service:
#   sluice service print --config … > ~/.config/systemd/user/sluice.service
#   systemctl --user daemon-reload && systemctl --user enable --now sluice
[Unit]
Description=Sluice outbox drainer

[Service]
Type=simple
ExecStart={binary} run --config {config}
# SIGTERM: the running tick finishes and settles, then sluice exits.
KillSignal=SIGTERM
TimeoutStopSec={STOP_TIMEOUT_SECS}
# SIGHUP: sluice reads the config's sessions again.
ExecReload=/bin/kill -HUP $MAINPID
Restart=on-failure
RestartSec={RESTART_DELAY_SECS}

[Install]
WantedBy=default.target
",
        config_name = config.display(),
        binary = exec_word(binary),
        config = exec_word(config),
    )
}

/// A path as one word of a systemd `ExecStart=`: `%` and `$` escaped (they
/// would be expanded), quoted when it holds a space, quote or backslash.
fn exec_word(path: &Path) -> String {
    let text = path.display().to_string();
    let mut word = String::with_capacity(text.len() + 2);
    for c in text.chars() {
        match c {
            '%' => word.push_str("%%"),
            '$' => word.push_str("$$"),
            '\\' => word.push_str("\\\\"),
            '"' => word.push_str("\\\""),
            c => word.push(c),
        }
    }
    if text.contains(|c: char| c.is_whitespace() || c == '"' || c == '\\' || c == '\'') {
        format!("\"{word}\"")
    } else {
        word
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_with_spaces_and_specifiers_stay_one_literal_word() {
        assert_eq!(
            exec_word(Path::new("/srv/a b/100%$x")),
            "\"/srv/a b/100%%$$x\""
        );
        assert_eq!(exec_word(Path::new("/srv/plain.toml")), "/srv/plain.toml");
    }
}
