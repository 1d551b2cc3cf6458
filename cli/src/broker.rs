//! `sluice broker`: the project's own test broker, on 127.0.0.1, as strict
//! as the real claudemesh broker (its rate limit on by default) and with
//! seeded faults on request. Parses flags and calls `sluice_test_broker::Broker`.

use anyhow::{Context as _, bail};
use clap::Args;
use sluice_test_broker::{
    Broker, BrokerOptions, BrokerStats, RateLimit, RefusalCode, load_members, self_signed_localhost,
};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, Args)]
pub struct BrokerArgs {
    /// Port to listen on (0 picks a free one; the URL is printed).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Address to bind.
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    bind: IpAddr,
    /// TOML file of `[[member]] mesh_id, member_id, public_key`: only these may connect.
    #[arg(long)]
    keys: Option<PathBuf>,
    /// Per-member send limit, PER_MINUTE/BURST, or `none`; the real broker's is 60/10.
    #[arg(long, default_value = "60/10", value_name = "PER_MINUTE/BURST|none")]
    rate_limit: String,
    /// A pubkey to treat as an online peer for direct sends (repeatable).
    #[arg(long = "peer", value_name = "PUBKEY")]
    peers: Vec<String>,
    /// Seed of every random fault (--drop-acks, --refuse-hellos): the same seed repeats a run.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Delay every ack by this many milliseconds (acks stay pipelined).
    #[arg(long, default_value_t = 0)]
    ack_delay_ms: u64,
    /// Never write this share (0–1) of accepted sends' acks; the messages still count as queued.
    #[arg(long, default_value_t = 0.0, value_name = "FRACTION")]
    drop_acks: f64,
    /// Close each connection (code 1012) on its Nth frame after the hello, that frame unread.
    #[arg(long, value_name = "N")]
    close_after_frames: Option<u32>,
    /// Close each connection on its Nth send, that send recorded but unanswered.
    #[arg(long, value_name = "N")]
    close_after_sends: Option<u32>,
    /// Refuse this share of good hellos (seeded), with CODE (default bad_signature).
    #[arg(long, value_name = "FRACTION[:CODE]")]
    refuse_hellos: Option<String>,
    /// Refuse the first N good hellos, with CODE (default bad_signature).
    #[arg(long, value_name = "N[:CODE]")]
    refuse_hello_first: Option<String>,
    /// Answer session_hello with unknown_message_type, like a broker without sessions.
    #[arg(long)]
    no_sessions: bool,
    /// Keep counts only, no record of each message: memory stays flat over
    /// millions of sends (benchmarks).
    #[arg(long)]
    forget_messages: bool,
    /// Reject sends to TARGET permanently: TARGET or TARGET=ERROR.
    #[arg(long, value_name = "TARGET[=ERROR]")]
    reject_permanent: Vec<String>,
    /// Reject the first TIMES sends of each message to TARGET transiently: TARGET[=TIMES[:ERROR]].
    #[arg(long, value_name = "TARGET[=TIMES[:ERROR]]")]
    reject_transient: Vec<String>,
    /// Never ack sends to TARGET.
    #[arg(long, value_name = "TARGET")]
    silent: Vec<String>,
    /// Mix garbage, binary and unrelated frames in with the acks.
    #[arg(long)]
    chatter: bool,
    /// Serve wss:// with a new self-signed localhost certificate, written to DIR/cert.pem
    /// (a client's ca_file) and DIR/key.pem.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["tls_cert", "tls_key"])]
    tls_self_signed: Option<PathBuf>,
    /// Serve wss:// with this PEM certificate chain (needs --tls-key).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

pub fn broker(args: &BrokerArgs) -> anyhow::Result<ExitCode> {
    super::init_logging("info");
    let options = broker_options(args)?;
    let tls = tls_pems(args)?;
    let bind = SocketAddr::new(args.bind, args.port);
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let broker = match &tls {
            Some((cert, key)) => Broker::start_tls(bind, options, cert, key).await,
            None => Broker::start(bind, options).await,
        }
        .with_context(|| format!("starting the broker on {bind}"))?;
        println!("listening on {}", broker.url());
        match args.rate_limit.as_str() {
            "none" => println!("no rate limit"),
            limit => println!("rate limit {limit} (per minute/burst, per member)"),
        }
        tokio::signal::ctrl_c()
            .await
            .context("waiting for ctrl-c")?;
        println!("{}", summary(&broker.stats()));
        broker.shutdown().await;
        Ok(ExitCode::SUCCESS)
    })
}

fn summary(stats: &BrokerStats) -> String {
    format!(
        "sends={} accepted={} rejected={} rate_limited={} acks_dropped={} distinct={} hellos_accepted={} hellos_rejected={} hellos_ignored={}",
        stats.sends,
        stats.accepted,
        stats.rejected,
        stats.rate_limited,
        stats.acks_dropped,
        stats.receipts.len(),
        stats.hellos_accepted,
        stats.hellos_rejected,
        stats.hellos_ignored,
    )
}

/// The certificate and key PEM to serve wss:// with, if any.
fn tls_pems(args: &BrokerArgs) -> anyhow::Result<Option<(String, String)>> {
    if let Some(dir) = &args.tls_self_signed {
        let (cert, key) = self_signed_localhost();
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the certificate folder {}", dir.display()))?;
        write(&dir.join("cert.pem"), &cert)?;
        write(&dir.join("key.pem"), &key)?;
        eprintln!(
            "wrote {}: point a client's ca_file at it",
            dir.join("cert.pem").display()
        );
        return Ok(Some((cert, key)));
    }
    match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Ok(Some((read(cert)?, read(key)?))),
        _ => Ok(None),
    }
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

fn broker_options(args: &BrokerArgs) -> anyhow::Result<BrokerOptions> {
    let members = match &args.keys {
        Some(path) => Some(
            load_members(path).with_context(|| format!("reading keys file {}", path.display()))?,
        ),
        None => None,
    };
    let rate_limit = match args.rate_limit.as_str() {
        "none" => None,
        text => Some(text.parse::<RateLimit>().context("--rate-limit")?),
    };
    if !(0.0..=1.0).contains(&args.drop_acks) {
        bail!(
            "--drop-acks {}: give a share from 0 to 1, as in 0.1",
            args.drop_acks
        );
    }
    let refuse_hellos = match &args.refuse_hellos {
        Some(spec) => {
            let (share, code) = with_code(spec, "--refuse-hellos")?;
            match share.parse::<f64>() {
                Ok(share) if (0.0..=1.0).contains(&share) => Some((share, code)),
                _ => bail!(
                    "--refuse-hellos {spec:?}: FRACTION must be from 0 to 1, as in 0.2:unauthorized"
                ),
            }
        }
        None => None,
    };
    let refuse_hello_first = match &args.refuse_hello_first {
        Some(spec) => {
            let (count, code) = with_code(spec, "--refuse-hello-first")?;
            let Ok(count) = count.parse::<u32>() else {
                bail!(
                    "--refuse-hello-first {spec:?}: N must be a whole number, as in 3:timestamp_skew"
                );
            };
            Some((count, code))
        }
        None => None,
    };
    if args.close_after_frames == Some(0) || args.close_after_sends == Some(0) {
        bail!("--close-after-frames and --close-after-sends count from 1");
    }
    Ok(BrokerOptions {
        members,
        ack_delay: Duration::from_millis(args.ack_delay_ms),
        reject_permanent: reject_permanent(&args.reject_permanent),
        reject_transient: reject_transient(&args.reject_transient)?,
        silent_targets: args.silent.clone(),
        chatter: args.chatter,
        close_after_sends: args.close_after_sends,
        close_after_frames: args.close_after_frames,
        sessions_unsupported: args.no_sessions,
        forget_messages: args.forget_messages,
        rate_limit,
        online_peers: args.peers.clone(),
        seed: args.seed,
        drop_acks: args.drop_acks,
        refuse_hellos,
        refuse_hello_first,
        ..BrokerOptions::default()
    })
}

/// Splits `VALUE[:CODE]`; the code defaults to `bad_signature`.
fn with_code<'a>(spec: &'a str, flag: &str) -> anyhow::Result<(&'a str, RefusalCode)> {
    match spec.split_once(':') {
        Some((value, code)) => Ok((
            value,
            code.parse().with_context(|| format!("{flag} {spec:?}"))?,
        )),
        None => Ok((spec, RefusalCode::BadSignature)),
    }
}

fn reject_permanent(specs: &[String]) -> Vec<(String, String)> {
    specs
        .iter()
        .map(|spec| {
            let (target, error) = spec.split_once('=').unwrap_or((spec, "forbidden"));
            (target.to_string(), error.to_string())
        })
        .collect()
}

fn reject_transient(specs: &[String]) -> anyhow::Result<Vec<(String, u32, String)>> {
    let mut reject_transient = Vec::new();
    for spec in specs {
        let (target, rest) = spec.split_once('=').unwrap_or((spec, "1"));
        let (times, error) = rest.split_once(':').unwrap_or((rest, "rate_limited"));
        let Ok(times) = times.parse::<u32>() else {
            bail!(
                "--reject-transient {spec:?}: TIMES must be a whole number, as in @peer=2:rate_limited"
            );
        };
        reject_transient.push((target.to_string(), times, error.to_string()));
    }
    Ok(reject_transient)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: BrokerArgs,
    }

    fn options(flags: &[&str]) -> anyhow::Result<BrokerOptions> {
        let cli = Cli::try_parse_from(std::iter::once("broker").chain(flags.iter().copied()))?;
        broker_options(&cli.args)
    }

    #[test]
    fn the_default_broker_has_the_real_rate_limit_and_no_faults() -> anyhow::Result<()> {
        let options = options(&[])?;
        assert_eq!(options.rate_limit, Some(RateLimit::REAL));
        assert_eq!((options.seed, options.drop_acks), (0, 0.0));
        assert!(options.refuse_hellos.is_none() && !options.sessions_unsupported);
        Ok(())
    }

    #[test]
    fn fault_flags_become_options() -> anyhow::Result<()> {
        let options = options(&[
            "--rate-limit",
            "none",
            "--seed",
            "9",
            "--drop-acks",
            "0.1",
            "--close-after-frames",
            "5",
            "--refuse-hellos",
            "0.25:unauthorized",
            "--refuse-hello-first",
            "2",
            "--no-sessions",
            "--peer",
            "ab",
            "--peer",
            "cd",
        ])?;
        assert_eq!(options.rate_limit, None);
        assert_eq!((options.seed, options.drop_acks), (9, 0.1));
        assert_eq!(options.close_after_frames, Some(5));
        assert_eq!(
            options.refuse_hellos,
            Some((0.25, RefusalCode::Unauthorized))
        );
        assert_eq!(
            options.refuse_hello_first,
            Some((2, RefusalCode::BadSignature))
        );
        assert!(options.sessions_unsupported);
        assert_eq!(options.online_peers, ["ab", "cd"]);
        Ok(())
    }

    #[test]
    fn bad_fault_flags_name_the_flag_and_the_fix() {
        for (flags, expected) in [
            (&["--rate-limit", "60"][..], "PER_MINUTE/BURST"),
            (
                &["--refuse-hellos", "0.5:nope"][..],
                "bad_signature, timestamp_skew",
            ),
            (&["--refuse-hellos", "2"][..], "from 0 to 1"),
            (&["--drop-acks", "1.5"][..], "from 0 to 1"),
        ] {
            let error = format!("{:#}", options(flags).expect_err("refused"));
            assert!(error.contains(expected), "{flags:?}: {error}");
        }
        let both = Cli::try_parse_from(["broker", "--tls-self-signed", "d", "--tls-cert", "c"]);
        assert!(both.is_err(), "self-signed and a given certificate at once");
        assert!(
            Cli::try_parse_from(["broker", "--tls-cert", "c"]).is_err(),
            "a cert without its key"
        );
    }
}
