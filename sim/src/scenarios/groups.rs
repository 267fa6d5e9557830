//! Consumer-group failover while the group's region is cut off.

use std::collections::BTreeSet;
use std::time::Duration;

use rand::Rng;

use super::{TOPIC, others};
use crate::check::{Checked, Ledger, ensure, invariant, records};
use crate::client::{Delivery, Member, all_alive, mirrored_topic, produce_range};
use crate::faults::{heal, partition};
use crate::scenario::{Context, REGIONS, converge};

/// Group `billing` consumes part of a mirrored topic in one region; that
/// region is cut off (or crashes); the group resumes in another region while producers
/// go on everywhere, and again after the heal. Every record is delivered
/// exactly once.
pub async fn group_failover(mut cx: Context) -> Checked {
    let world = cx.world.clone();
    let first = cx.rng.random_range(0..REGIONS.len());
    let second = (first + cx.rng.random_range(1..REGIONS.len())) % REGIONS.len();
    let ((from, from_region), (to, _)) = (REGIONS[first], REGIONS[second]);
    let partitions = 2;
    all_alive(&world, Duration::from_secs(30)).await?;
    mirrored_topic(&world, "use-1", TOPIC, partitions, "full-mesh").await?;
    let mut ledger = Ledger::new(TOPIC, partitions);
    let per = cx.rng.random_range(5..15);
    for (name, region) in REGIONS {
        for p in 0..partitions {
            produce_range(&world, name, region, p, 0..per, &mut ledger).await?;
        }
    }
    converge(&world, &ledger, Duration::from_secs(60)).await?;
    let mut delivered: Vec<Delivery> = Vec::new();
    let first_take = cx.rng.random_range(1..=per as usize * 2);
    Member::join(&world, from, "billing", TOPIC)
        .await?
        .consume(first_take, &mut delivered)
        .await?;
    world.record(format!("{} delivered in {from_region}", delivered.len()));
    // Commits travel after the records they cover, to every region alive.
    tokio::time::sleep(Duration::from_secs(2)).await;
    // The group's region is cut off, or (by seed) crashes.
    let crashed = cx.rng.random::<bool>();
    if crashed {
        cx.faults.crash(from, None).await?;
    } else {
        partition(&world, &[from], &others(from));
    }
    // Producers go on on both sides of the cut (not in a crashed region).
    for (name, region) in REGIONS.into_iter().filter(|(h, _)| !crashed || *h != from) {
        produce_range(&world, name, region, 0, per..per + 5, &mut ledger).await?;
    }
    let member = Member::join(&world, to, "billing", TOPIC).await?;
    member.consume(usize::MAX, &mut delivered).await?;
    if crashed {
        cx.faults.restart(&world, from).await?;
    } else {
        heal(&world, &[from], &others(from));
    }
    converge(&world, &ledger, Duration::from_secs(60)).await?;
    member.consume(usize::MAX, &mut delivered).await?;
    let unique: BTreeSet<Delivery> = delivered.iter().cloned().collect();
    ensure(
        unique.len() == delivered.len(),
        invariant::GROUP_EXACT,
        || format!("{} records delivered twice", delivered.len() - unique.len()),
    )?;
    let Some(node) = world.node(to) else {
        return Err(crate::check::Violation::new(
            invariant::LIVENESS,
            format!("{to} is down"),
        ));
    };
    let mut all: BTreeSet<Delivery> = BTreeSet::new();
    for p in 0..partitions {
        for r in records(&node, TOPIC, p)? {
            all.insert((p, r.origin.stream.region.to_string(), r.origin.seq.0));
        }
    }
    ensure(unique == all, invariant::GROUP_EXACT, || {
        format!(
            "the group delivered {} of {} records ({} missing)",
            unique.len(),
            all.len(),
            all.difference(&unique).count()
        )
    })?;
    world.record(format!("group delivered all {} records once", all.len()));
    Ok(())
}
