//! nearest_node: a client given every region's address connects to the
//! nearest healthy gateway and moves to the next nearest when it dies.
//!
//! Starts us-east, eu-west and ap-south in this process. The client is
//! given all three addresses and (with `--prefer-region R`) a preferred
//! region; it asks for the membership, measures the round trip to each
//! gateway and picks the nearest. The program then kills that gateway and
//! shows the client carrying on with the next.
//!
//! ```sh
//! cargo run -p meshgate-examples --bin nearest_node -- [--prefer-region eu-west]
//! ```

use std::time::Duration;

use anyhow::{Context, bail};
use meshgate_client::{Client, ClientConfig, TopicSettings, Trust};
use meshgate_examples::Regions;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut prefer = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--prefer-region" => prefer = Some(args.next().context("--prefer-region needs a region")?),
            "--help" | "-h" => {
                println!("usage: nearest_node [--prefer-region REGION]");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?} (try --help)"),
        }
    }
    let mut regions = Regions::start(&[("use-1", "us-east"), ("euw-1", "eu-west"), ("aps-1", "ap-south")]).await?;
    let seeds: Vec<String> = regions.gateways.iter().map(|g| g.client_address().to_string()).collect();
    let mut config = ClientConfig::new(seeds, Trust::CaPem(regions.ca_pem.clone()));
    config.preferred_region = prefer.clone();
    // Notice a dead gateway quickly for the demonstration.
    config.transport.idle_timeout_ms = 2_000;
    config.transport.keep_alive_interval_ms = 500;
    config.request_timeout = Duration::from_secs(5);
    let client = Client::connect(config).await?;
    println!("ranking (preferred region: {}):", prefer.as_deref().unwrap_or("none"));
    for (index, (node, region, address)) in client.ranking().iter().enumerate() {
        println!("  {}. {node} ({region}) at {address}", index + 1);
    }
    let first = client.node().context("connected")?;
    println!("connected to {} ({})", first.node_id, first.region);
    client.create_topic("greetings", TopicSettings { partitions: 1, ..TopicSettings::default() }).await?;

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
