//! The `sluice` binary: parse, run, print the cause chain, exit.

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = sluice::cli::Cli::parse();
    match sluice::cli::execute(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error}");
            for cause in error.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::from(2)
        }
    }
}
