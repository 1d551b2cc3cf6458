//! `sluice session add|remove|list`: change the sessions of a config while
//! its drainer runs.
//!
//! The config file is edited in place, keeping its comments and layout
//! (toml_edit); the new text is checked as a whole config before it is
//! written, so a mistake never reaches the file. Then every drainer of the
//! outbox is asked to read it again (as SIGHUP would): a new session's link
//! starts, a removed one's stops and its rows see "absent". `sluice keygen`
//! makes a key pair for a new session.

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use sluice::config::Config;
use sluice::wake::notify_reload;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use toml_edit::{ArrayOfTables, DocumentMut, Item, Table, value};

#[derive(Debug, Args)]
pub struct SessionArgs {
    #[command(subcommand)]
    command: SessionCommand,
}

#[derive(Debug, Subcommand)]
enum SessionCommand {
    /// Add a [[session]] to the config and tell the running drainer.
    Add(AddArgs),
    /// Remove the [[session]] with this public key (or session id).
    Remove(RemoveArgs),
    /// List the config's sessions.
    List(ConfigArg),
}

#[derive(Debug, Args)]
struct ConfigArg {
    /// The TOML config file.
    #[arg(long)]
    config: PathBuf,
}

#[derive(Debug, Args)]
struct AddArgs {
    /// The TOML config file.
    #[arg(long)]
    config: PathBuf,
    /// The slug of the [[mesh]] the session belongs to.
    #[arg(long)]
    mesh: String,
    /// The session's id (its hello's sessionId).
    #[arg(long)]
    session_id: String,
    /// The session's Ed25519 public key, 64 hex characters.
    #[arg(long)]
    public_key: String,
    /// The session's libsodium secret key, 128 hex characters.
    #[arg(long, conflicts_with = "secret_key_file")]
    secret_key: Option<String>,
    /// A file holding the secret key (written into the config as a path).
    #[arg(long)]
    secret_key_file: Option<PathBuf>,
    /// Lifetime of each parent attestation, in hours (at most 24).
    #[arg(long)]
    attestation_ttl_hours: Option<f64>,
}

#[derive(Debug, Args)]
struct RemoveArgs {
    /// The TOML config file.
    #[arg(long)]
    config: PathBuf,
    /// The public key or session id of the session to remove.
    key_or_id: String,
}

#[derive(Debug, Args)]
pub struct KeygenArgs {}

pub fn session(args: &SessionArgs) -> anyhow::Result<ExitCode> {
    match &args.command {
        SessionCommand::Add(add) => edit(&add.config, |sessions| {
            let mut table = Table::new();
            table.insert("mesh", value(add.mesh.as_str()));
            table.insert("session_id", value(add.session_id.as_str()));
            table.insert("public_key", value(add.public_key.to_ascii_lowercase()));
            match (&add.secret_key, &add.secret_key_file) {
                (Some(key), _) => _ = table.insert("secret_key", value(key.as_str())),
                (None, Some(file)) => {
                    _ = table.insert("secret_key_file", value(file.display().to_string()))
                }
                (None, None) => bail!("give --secret-key or --secret-key-file"),
            }
            if let Some(hours) = add.attestation_ttl_hours {
                table.insert("attestation_ttl_hours", value(hours));
            }
            sessions.push(table);
            Ok(format!("added session {}", add.session_id))
        }),
        SessionCommand::Remove(remove) => edit(&remove.config, |sessions| {
            let wanted = remove.key_or_id.to_ascii_lowercase();
            let before = sessions.len();
            sessions.retain(|t| {
                let field = |k: &str| {
                    t.get(k)
                        .and_then(|v| v.as_str())
                        .map(str::to_ascii_lowercase)
                };
                field("public_key").as_deref() != Some(wanted.as_str())
                    && field("session_id").as_deref() != Some(wanted.as_str())
            });
            if sessions.len() == before {
                bail!(
                    "no [[session]] has public_key or session_id {}: see `sluice session list`",
                    remove.key_or_id
                );
            }
            Ok(format!("removed session {}", remove.key_or_id))
        }),
        SessionCommand::List(list) => {
            let config = Config::load(&list.config)?;
            for s in &config.sessions {
                println!(
                    "{}  mesh {}  session_id {}",
                    s.key.public_hex(),
                    s.mesh,
                    s.session_id
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Applies `change` to the config's [[session]] tables, checks the result
/// as a whole config, writes it atomically and tells the running drainers.
fn edit(
    path: &Path,
    change: impl FnOnce(&mut ArrayOfTables) -> anyhow::Result<String>,
) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading config {}", path.display()))?;
    let mut doc: DocumentMut = text
        .parse()
        .with_context(|| format!("config {} is not valid TOML", path.display()))?;
    if doc.get("session").is_none() {
        doc.insert("session", Item::ArrayOfTables(ArrayOfTables::new()));
    }
    let Some(sessions) = doc
        .get_mut("session")
        .and_then(Item::as_array_of_tables_mut)
    else {
        bail!(
            "config {}: `session` is not a list of [[session]] tables",
            path.display()
        );
    };
    let done = change(sessions)?;
    let new_text = doc.to_string();
    let config = Config::parse(path, &new_text)
        .context("the config would not be valid after this change; nothing was written")?;
    let temporary = path.with_extension("toml.tmp");
    std::fs::write(&temporary, &new_text)
        .with_context(|| format!("writing {}", temporary.display()))?;
    std::fs::rename(&temporary, path).with_context(|| format!("replacing {}", path.display()))?;
    let told = notify_reload(&config.outbox);
    println!(
        "{done}; {} now lists {} session(s)",
        path.display(),
        config.sessions.len()
    );
    match told {
        0 => println!(
            "no drainer is running on {}: the change applies at its next start",
            config.outbox.display()
        ),
        n => println!("told {n} running drainer(s) to reload"),
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints a fresh Ed25519 key pair in the config's form.
pub fn keygen(_: &KeygenArgs) -> anyhow::Result<ExitCode> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| anyhow::anyhow!("the OS random source failed: {e}"))?;
    let key = sluice_links::MemberKey::from_seed(seed);
    let public = key.public_hex();
    println!("public_key = \"{public}\"");
    println!("secret_key = \"{}{public}\"", hex::encode(seed));
    Ok(ExitCode::SUCCESS)
}
