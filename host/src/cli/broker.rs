//! `sluice broker`: the project's own test broker, on 127.0.0.1.

use anyhow::{Context as _, bail};
use clap::Args;
use sluice_links::{Broker, BrokerOptions, load_members};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
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
    /// Delay every ack by this many milliseconds (acks stay pipelined).
    #[arg(long, default_value_t = 0)]
    ack_delay_ms: u64,
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
}

pub fn broker(args: &BrokerArgs) -> anyhow::Result<ExitCode> {
    super::init_logging("info");
    let options = broker_options(args)?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let broker = Broker::start(SocketAddr::new(args.bind, args.port), options)
            .await
            .with_context(|| format!("binding {}:{}", args.bind, args.port))?;
        println!("listening on {}", broker.url());
        tokio::signal::ctrl_c()
            .await
            .context("waiting for ctrl-c")?;
        let stats = broker.stats();
        println!(
            "sends={} accepted={} rejected={} distinct={}",
            stats.sends,
            stats.accepted,
            stats.rejected,
            stats.receipts.len()
        );
        broker.shutdown().await;
        Ok(ExitCode::SUCCESS)
    })
}

fn broker_options(args: &BrokerArgs) -> anyhow::Result<BrokerOptions> {
    let members = match &args.keys {
        Some(path) => Some(
            load_members(path).with_context(|| format!("reading keys file {}", path.display()))?,
        ),
        None => None,
    };
    let mut reject_permanent = Vec::new();
    for spec in &args.reject_permanent {
        let (target, error) = spec.split_once('=').unwrap_or((spec, "forbidden"));
        reject_permanent.push((target.to_string(), error.to_string()));
    }
    let mut reject_transient = Vec::new();
    for spec in &args.reject_transient {
        let (target, rest) = spec.split_once('=').unwrap_or((spec, "1"));
        let (times, error) = rest.split_once(':').unwrap_or((rest, "rate_limited"));
        let Ok(times) = times.parse::<u32>() else {
            bail!(
                "--reject-transient {spec:?}: TIMES must be a whole number, as in @peer=2:rate_limited"
            );
        };
        reject_transient.push((target.to_string(), times, error.to_string()));
    }
    Ok(BrokerOptions {
        members,
        ack_delay: Duration::from_millis(args.ack_delay_ms),
        reject_permanent,
        reject_transient,
        silent_targets: args.silent.clone(),
        chatter: args.chatter,
        ..BrokerOptions::default()
    })
}
