//! nearest_node: a client given every region's address connects to the
//! nearest healthy gateway and moves to the next nearest when it dies.
//!
//! Starts us-east, eu-west and ap-south in this process. The client is
//! given all three addresses and (with `--prefer-region R`) a preferred
//! region; it asks for the membership, measures the round trip to each
//! gateway and picks the nearest. The program then kills that gateway and
//! shows the client carrying on with the next.
//!
//! With `--server ADDR` (repeated) and `--ca-cert FILE` it uses running
//! gateways instead (the compose regions, say) and reports once a second
//! which gateway answers, while you kill one.
//!
//! ```sh
//! cargo run -p meshgate-examples --bin nearest_node -- [--prefer-region eu-west]
//! cargo run -p meshgate-examples --bin nearest_node -- --server 10.0.0.1:7420 --server 10.0.0.2:7420 --ca-cert ca.pem
//! ```

use std::time::Duration;

use anyhow::{Context, bail};
use meshgate_client::{Client, ClientConfig, TopicSettings, Trust};
use meshgate_examples::Regions;

struct Args {
    prefer: Option<String>,
    servers: Vec<String>,
    ca_cert: Option<String>,
    watch_secs: u64,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = std::env::args().skip(1);
    let mut parsed = Args {
        prefer: None,
        servers: Vec::new(),
        ca_cert: None,
        watch_secs: 60,
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--prefer-region" => {
                parsed.prefer = Some(args.next().context("--prefer-region needs a region")?)
            }
            "--server" => parsed
                .servers
                .push(args.next().context("--server needs HOST:PORT")?),
            "--ca-cert" => parsed.ca_cert = Some(args.next().context("--ca-cert needs a file")?),
            "--watch" => {
                parsed.watch_secs = args.next().context("--watch needs seconds")?.parse()?
            }
            "--help" | "-h" => {
                println!(
                    "usage: nearest_node [--prefer-region REGION]\n       \
                     nearest_node --server ADDR [--server ADDR ...] --ca-cert FILE [--prefer-region REGION] [--watch SECS]"
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?} (try --help)"),
        }
    }
    if !parsed.servers.is_empty() && parsed.ca_cert.is_none() {
        bail!(
            "--server needs --ca-cert FILE (the cluster CA, e.g. deploy/compose/certs/ca/ca.pem)"
        );
    }
    Ok(parsed)
}

fn client_config(seeds: Vec<String>, trust: Trust, prefer: Option<String>) -> ClientConfig {
    let mut config = ClientConfig::new(seeds, trust);
    config.preferred_region = prefer;
    // Notice a dead gateway quickly for the demonstration.
    config.transport.idle_timeout_ms = 2_000;
    config.transport.keep_alive_interval_ms = 500;
    config.request_timeout = Duration::from_secs(5);
    config
}

async fn connect(config: ClientConfig, prefer: Option<&str>) -> anyhow::Result<Client> {
    let client = Client::connect(config).await?;
    println!("ranking (preferred region: {}):", prefer.unwrap_or("none"));
    for (index, (node, region, address)) in client.ranking().iter().enumerate() {
        println!("  {}. {node} ({region}) at {address}", index + 1);
    }
    let first = client.node().context("connected")?;
    println!("connected to {} ({})", first.node_id, first.region);
    Ok(client)
}

/// Against running gateways: report which gateway answers, once a second,
/// for `secs` seconds, so that killing one (`docker kill`) shows the move.
async fn watch(args: Args) -> anyhow::Result<()> {
    let pem = std::fs::read_to_string(args.ca_cert.as_deref().unwrap_or_default())
        .context("cannot read --ca-cert")?;
    let config = client_config(args.servers, Trust::CaPem(pem), args.prefer.clone());
    let client = connect(config, args.prefer.as_deref()).await?;
    println!(
        "watching for {} s: kill the gateway above and see the client move",
        args.watch_secs
    );
    let mut answering = client.node().map(|n| n.node_id).unwrap_or_default();
    for _ in 0..args.watch_secs {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let started = tokio::time::Instant::now();
        match client.node_info().await {
            Ok(now) if now.node_id != answering => {
                println!(
                    "now answered by {} ({}), {} ms for that request",
                    now.node_id,
                    now.region,
                    started.elapsed().as_millis()
                );
                answering = now.node_id;
            }
            Ok(_) => {}
            Err(error) => println!("request failed: {error}"),
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    if !args.servers.is_empty() {
        return watch(args).await;
    }
    let prefer = args.prefer;
    let mut regions = Regions::start(&[
        ("use-1", "us-east"),
        ("euw-1", "eu-west"),
        ("aps-1", "ap-south"),
    ])
    .await?;
    let seeds: Vec<String> = regions
        .gateways
        .iter()
        .map(|g| g.client_address().to_string())
        .collect();
    let config = client_config(seeds, Trust::CaPem(regions.ca_pem.clone()), prefer.clone());
    let client = connect(config, prefer.as_deref()).await?;
    let first = client.node().context("connected")?;
    client
        .create_topic(
            "greetings",
            TopicSettings {
                partitions: 1,
                ..TopicSettings::default()
            },
        )
        .await?;

    let index = regions
        .gateways
        .iter()
        .position(|g| g.node().node_id() == first.node_id)
        .context("the chosen gateway is one of ours")?;
    regions.gateways.remove(index).kill().await;
    println!("killed {} ({})", first.node_id, first.region);
    let started = tokio::time::Instant::now();
    let now = client.node_info().await?;
    println!(
        "the next request was answered by {} ({}) after {} ms",
        now.node_id,
        now.region,
        started.elapsed().as_millis()
    );
    if now.node_id == first.node_id {
        bail!("the client did not move");
    }
    regions.stop().await;
    Ok(())
}
