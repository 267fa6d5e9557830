//! A random mix of faults under active-active producers.

use std::time::Duration;

use rand::Rng;

use super::{TOPIC, others};
use crate::check::{Checked, Ledger, Violation, invariant};
use crate::client::{all_alive, mirrored_topic, produce};
use crate::faults::{Fault, heal, hold, partition, release};
use crate::scenario::{Context, REGIONS, converge};
use crate::world::{World, eventually};

/// Producers in every region write throughout while faults chosen by the
/// seed come and go: partitions and heals, holds and releases, packet
/// loss, latency, flapping links, crashes (torn or not) and restarts, with
/// clocks skewed up to 2 s. Then everything heals: prefixes held all
/// along, nothing acknowledged is lost, and every region converges.
pub async fn chaos(mut cx: Context) -> Checked {
    let world = cx.world.clone();
    let partitions = cx.rng.random_range(1..=3);
    all_alive(&world, Duration::from_secs(30)).await?;
    mirrored_topic(&world, "use-1", TOPIC, partitions, "full-mesh").await?;
    let mut producers = Vec::new();
    for (index, (name, region)) in REGIONS.into_iter().enumerate() {
        let world = world.clone();
        let count = cx.rng.random_range(20..60);
        let seed = cx.rng.random::<u64>() ^ index as u64;
        producers.push(tokio::task::spawn_local(async move {
            produce_through_faults(&world, name, region, partitions, count, seed).await
        }));
    }
    let rounds = cx.rng.random_range(4..12);
    let mut down: Option<&str> = None;
    for _ in 0..rounds {
        let (a, _) = REGIONS[cx.rng.random_range(0..REGIONS.len())];
        let others = others(a);
        let b = others[cx.rng.random_range(0..others.len())];
        match cx.rng.random_range(0..7) {
            0 => partition(&world, &[a], &[b]),
            1 => {
                // Datagrams held back, then delivered late all at once (or
                // left held until the next heal).
                hold(&world, a, b);
                if cx.rng.random::<bool>() {
                    let held = cx.rng.random_range(50..1_500);
                    tokio::time::sleep(Duration::from_millis(held)).await;
                    release(&world, a, b);
                }
            }
            2 => {
                let rate = f64::from(cx.rng.random_range(5..40u32)) / 100.0;
                cx.faults.ask(Fault::Loss(a.into(), b.into(), rate)).await?;
            }
            3 => {
                let delay = Duration::from_millis(cx.rng.random_range(1..150));
                cx.faults
                    .ask(Fault::Latency(a.into(), b.into(), delay))
                    .await?;
            }
            4 => {
                // A flapping link.
                for _ in 0..cx.rng.random_range(2..6) {
                    partition(&world, &[a], &[b]);
                    let gap = cx.rng.random_range(20..400);
                    tokio::time::sleep(Duration::from_millis(gap)).await;
                    heal(&world, &[a], &[b]);
                    let gap = cx.rng.random_range(20..400);
                    tokio::time::sleep(Duration::from_millis(gap)).await;
                }
            }
            5 => match down.take() {
                Some(host) => cx.faults.restart(&world, host).await?,
                None => {
                    let torn = cx.rng.random::<bool>().then(|| cx.rng.random());
                    cx.faults.crash(a, torn).await?;
                    down = Some(a);
                }
            },
            _ => cx.faults.ask(Fault::HealAll).await?,
        }
        let pause = cx.rng.random_range(100..2_000);
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
    if let Some(host) = down.take() {
        cx.faults.restart(&world, host).await?;
    }
    cx.faults.ask(Fault::HealAll).await?;
    let mut ledger = Ledger::new(TOPIC, partitions);
    for (producer, (name, _)) in producers.into_iter().zip(REGIONS) {
        let part = producer
            .await
            .map_err(|error| Violation::new(invariant::NO_PANIC, format!("producer: {error}")))??;
        world.record(format!(
            "{name}'s producer: {} records sent, {} acknowledged",
            part.sent_count(),
            part.acked()
        ));
        ledger.merge(part);
    }
    world.record(format!(
        "chaos over: {} records acknowledged",
        ledger.acked()
    ));
    ledger.check_prefixes(&world)?;
    for (name, region) in REGIONS {
        ledger.check_origin_kept(&world, name, region)?;
    }
    converge(&world, &ledger, Duration::from_secs(120)).await?;
    Ok(())
}

/// Produces `count` records in `region`, waiting out its gateway's
/// crashes (a request in flight at a crash is recorded unanswered).
async fn produce_through_faults(
    world: &World,
    name: &'static str,
    region: &'static str,
    partitions: u32,
    count: u32,
    seed: u64,
) -> Result<Ledger, Violation> {
    use rand::SeedableRng;
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
    let mut ledger = Ledger::new(TOPIC, partitions);
    for i in 0..count {
        // Bounded: a crashed gateway is restarted by the chaos loop.
        eventually(
            Duration::from_secs(120),
            invariant::LIVENESS,
            || format!("{name} stayed down"),
            || async { world.node(name).is_some() },
        )
        .await?;
        let p = rng.random_range(0..partitions);
        produce(
            world,
            name,
            region,
            p,
            format!("{region}-{p}-{i}"),
            &mut ledger,
        )
        .await?;
        let gap = rng.random_range(0..300);
        tokio::time::sleep(Duration::from_millis(gap)).await;
    }
    Ok(ledger)
}
