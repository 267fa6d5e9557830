//! Mirroring scenarios: active-active across a partition, a region crash
//! with torn writes, a chain whose origin goes down.

use std::time::Duration;

use rand::Rng;

use super::{TOPIC, host, others};
use crate::check::{Checked, Ledger, Violation, invariant, streams};
use crate::client::{all_alive, mirrored_topic, produce, produce_range};
use crate::faults::{heal, partition};
use crate::scenario::{Context, REGIONS, converge};
use crate::world::eventually;

/// Active-active producers in three regions; a region chosen by the seed
/// is cut off from the others for a round of produce, then healed.
/// Prefixes hold throughout; after the heal every region holds every
/// stream, in order, once.
pub async fn region_partition(mut cx: Context) -> Checked {
    let world = cx.world.clone();
    let partitions = cx.rng.random_range(1..=2);
    let (cut, _) = REGIONS[cx.rng.random_range(0..REGIONS.len())];
    let per_round = cx.rng.random_range(4..=12);
    all_alive(&world, Duration::from_secs(30)).await?;
    mirrored_topic(&world, "use-1", TOPIC, partitions, "full-mesh").await?;
    let mut ledger = Ledger::new(TOPIC, partitions);
    for round in 0..3u32 {
        if round == 1 {
            partition(&world, &[cut], &others(cut));
        }
        for (name, region) in REGIONS {
            for p in 0..partitions {
                let first = round * 100;
                let range = first..first + per_round;
                produce_range(&world, name, region, p, range, &mut ledger).await?;
                ledger.check_prefixes(&world)?;
            }
        }
        let pause = cx.rng.random_range(100..1_500);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        ledger.check_prefixes(&world)?;
    }
    heal(&world, &[cut], &others(cut));
    converge(&world, &ledger, Duration::from_secs(60)).await?;
    Ok(())
}

/// A region chosen by the seed crashes while its producer is busy (a
/// request may be in flight), with torn unsynced writes; the others keep
/// producing; it restarts on what its disk kept. Every record it
/// acknowledged is still there, and all regions converge.
pub async fn region_crash(mut cx: Context) -> Checked {
    let world = cx.world.clone();
    let (victim, victim_region) = REGIONS[cx.rng.random_range(0..REGIONS.len())];
    let torn = cx.rng.random::<bool>().then_some(cx.seed);
    all_alive(&world, Duration::from_secs(30)).await?;
    mirrored_topic(&world, "use-1", TOPIC, 1, "full-mesh").await?;
    // The victim's producer runs beside the crash: whatever it had in
    // flight is recorded as unanswered.
    let producer = {
        let world = world.clone();
        let count = cx.rng.random_range(10..40);
        tokio::task::spawn_local(async move {
            let mut ledger = Ledger::new(TOPIC, 1);
            for i in 0..count {
                let value = format!("{victim_region}-0-{i}");
                if !produce(&world, victim, victim_region, 0, value, &mut ledger).await? {
                    break;
                }
            }
            Ok::<_, Violation>(ledger)
        })
    };
    let before = cx.rng.random_range(5..200);
    tokio::time::sleep(Duration::from_millis(before)).await;
    cx.faults.crash(victim, torn).await?;
    let mut ledger = producer
        .await
        .map_err(|error| Violation::new(invariant::NO_PANIC, format!("producer: {error}")))??;
    world.record(format!(
        "{victim}: {} records acknowledged before the crash, {} unanswered",
        ledger.acked(),
        ledger.sent_count() - ledger.acked()
    ));
    for (name, region) in REGIONS.iter().filter(|(h, _)| *h != victim) {
        let count = cx.rng.random_range(5..20);
        produce_range(&world, name, region, 0, 0..count, &mut ledger).await?;
    }
    ledger.check_prefixes(&world)?;
    cx.faults.restart(&world, victim).await?;
    ledger.check_origin_kept(&world, victim, victim_region)?;
    produce_range(&world, victim, victim_region, 0, 100..110, &mut ledger).await?;
    converge(&world, &ledger, Duration::from_secs(60)).await?;
    ledger.check_origin_kept(&world, victim, victim_region)?;
    Ok(())
}

/// A chain of the three regions in an order chosen by the seed; the first
/// writes, the second has it, then the first crashes: the last gets the
/// first's records through the second. The first restarts, writes more,
/// and everyone converges.
pub async fn chain_origin_down(mut cx: Context) -> Checked {
    let world = cx.world.clone();
    let mut order: Vec<&str> = REGIONS.iter().map(|(_, r)| *r).collect();
    let first = cx.rng.random_range(0..order.len());
    order.swap(0, first);
    if cx.rng.random::<bool>() {
        order.swap(1, 2);
    }
    let (origin, middle, last) = (order[0], order[1], order[2]);
    all_alive(&world, Duration::from_secs(30)).await?;
    let topology = format!("chain:{}", order.join(","));
    mirrored_topic(&world, host(origin), TOPIC, 1, &topology).await?;
    let mut ledger = Ledger::new(TOPIC, 1);
    let count = cx.rng.random_range(10..50);
    produce_range(&world, host(origin), origin, 0, 0..count, &mut ledger).await?;
    let holds_all = |name: &'static str| {
        let (world, want) = (world.clone(), count as usize);
        move || {
            let world = world.clone();
            async move {
                world.node(name).is_some_and(|node| {
                    streams(&node, TOPIC, 0).is_ok_and(|streams| {
                        streams.get(origin).is_some_and(|held| held.len() == want)
                    })
                })
            }
        }
    };
    eventually(
        Duration::from_secs(30),
        invariant::LIVENESS,
        || format!("{middle} did not get {origin}'s records"),
        holds_all(host(middle)),
    )
    .await?;
    cx.faults.crash(host(origin), None).await?;
    eventually(
        Duration::from_secs(60),
        invariant::CONVERGENCE,
        || {
            format!(
                "{last} did not get {origin}'s records through {middle} while {origin} was down"
            )
        },
        holds_all(host(last)),
    )
    .await?;
    ledger.check_prefixes(&world)?;
    world.record(format!("{last} holds {origin}'s records through {middle}"));
    cx.faults.restart(&world, host(origin)).await?;
    ledger.check_origin_kept(&world, host(origin), origin)?;
    let more = count..count + 10;
    produce_range(&world, host(origin), origin, 0, more, &mut ledger).await?;
    converge(&world, &ledger, Duration::from_secs(60)).await?;
    Ok(())
}
