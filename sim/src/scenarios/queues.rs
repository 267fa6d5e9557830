//! A dispatch queue whose consumers misbehave and whose gateway restarts.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::rc::Rc;
use std::time::Duration;

use meshgate_protocol::{
    CreateTopic, QueueOptions, QueueSpec, Receive, Reply, Request, Settle, SettleAction,
    TopicSettings,
};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::check::{Checked, Ledger, Violation, ensure, invariant};
use crate::client::{CallError, all_alive, call, must, produce};
use crate::scenario::Context;
use crate::world::World;

const GATEWAY: &str = "use-1";
const QUEUE: &str = "orders.work";
const DEAD: &str = "orders.work.dlq";
const MAX_ATTEMPTS: u32 = 3;

/// What the consumers saw, shared by their tasks.
#[derive(Debug, Default)]
struct Seen {
    acked: BTreeSet<String>,
    dead: BTreeSet<String>,
    /// Acks whose answer was lost in a crash: the gateway may have taken
    /// them (then the message is settled and never comes back) or not.
    maybe_acked: BTreeSet<String>,
    deliveries: u64,
    done: bool,
}

impl Seen {
    /// Whether `value` was acknowledged or dead-lettered (or acked with
    /// the answer lost).
    fn settled(&self, value: &str) -> bool {
        self.acked.contains(value) || self.dead.contains(value) || self.maybe_acked.contains(value)
    }
}

/// Messages are produced to a topic feeding queue `orders.work` (lease
/// 500 ms, 3 attempts). Three consumers ack most messages, nack some,
/// and "crash" on others (drop the lease: it runs out and the message
/// comes back); poison messages are always nacked. A fourth drains the
/// dead-letter queue. The gateway crashes (torn writes or not, by seed)
/// half-way and restarts. Every message must end acknowledged or
/// dead-lettered, and no poison message acknowledged.
pub async fn queue_consumer_crashes(mut cx: Context) -> Checked {
    let world = cx.world.clone();
    all_alive(&world, Duration::from_secs(30)).await?;
    let create = CreateTopic {
        name: "orders".into(),
        settings: TopicSettings {
            partitions: 2,
            ..TopicSettings::default()
        },
    };
    must(&world, GATEWAY, Request::CreateTopic(create)).await?;
    let spec = QueueSpec {
        name: QUEUE.into(),
        topic: "orders".into(),
        tags: "*".into(),
        filter_header: None,
        filter_key_prefix: None,
        options: QueueOptions {
            visibility_timeout_ms: 500,
            max_attempts: MAX_ATTEMPTS,
            ..QueueOptions::default()
        },
    };
    must(&world, GATEWAY, Request::CreateQueue(spec)).await?;
    world.record(format!("queue {QUEUE} created"));
    let seen = Rc::new(RefCell::new(Seen::default()));
    let mut consumers = Vec::new();
    for index in 0..3u64 {
        let rng = SmallRng::seed_from_u64(cx.seed ^ (index + 1).wrapping_mul(0x9e37_79b9));
        let name = format!("consumer-{index}");
        let consumer = consume(world.clone(), name, QUEUE, rng, seen.clone());
        consumers.push(tokio::task::spawn_local(consumer));
    }
    let rng = SmallRng::seed_from_u64(cx.seed ^ 0xdead);
    let drainer = consume(world.clone(), "drainer".into(), DEAD, rng, seen.clone());
    consumers.push(tokio::task::spawn_local(drainer));

    let mut ledger = Ledger::new("orders", 2);
    let mut produced = BTreeSet::new();
    let mut poison = BTreeSet::new();
    let before = cx.rng.random_range(10..40);
    let after = cx.rng.random_range(5..20);
    for i in 0..before + after {
        if i == before {
            let torn = cx.rng.random::<bool>().then_some(cx.seed);
            cx.faults.crash(GATEWAY, torn).await?;
            let down = cx.rng.random_range(100..2_000);
            tokio::time::sleep(Duration::from_millis(down)).await;
            cx.faults.restart(&world, GATEWAY).await?;
        }
        let value = if cx.rng.random_ratio(1, 8) {
            format!("poison-{i}")
        } else {
            format!("order-{i}")
        };
        if !produce(
            &world,
            GATEWAY,
            "us-east",
            i % 2,
            value.clone(),
            &mut ledger,
        )
        .await?
        {
            return Err(Violation::new(
                invariant::LIVENESS,
                format!("{GATEWAY} went down under a produce"),
            ));
        }
        if value.starts_with("poison") {
            poison.insert(value.clone());
        }
        produced.insert(value);
        let gap = cx.rng.random_range(0..50);
        tokio::time::sleep(Duration::from_millis(gap)).await;
    }
    world.record(format!(
        "{} messages produced ({} poison)",
        produced.len(),
        poison.len()
    ));
    let settled = crate::world::within(Duration::from_secs(240), || async {
        let seen = seen.borrow();
        produced.iter().all(|v| seen.settled(v))
    })
    .await;
    seen.borrow_mut().done = true;
    for consumer in consumers {
        consumer
            .await
            .map_err(|error| Violation::new(invariant::NO_PANIC, format!("consumer: {error}")))??;
    }
    let seen = seen.borrow();
    let unsettled: Vec<&String> = produced.iter().filter(|v| !seen.settled(v)).collect();
    ensure(
        settled.is_some() && unsettled.is_empty(),
        invariant::QUEUE_DELIVERY,
        || {
            format!(
                "{} of {} messages neither acknowledged nor dead-lettered, e.g. {:?}",
                unsettled.len(),
                produced.len(),
                unsettled.first()
            )
        },
    )?;
    // Consumers always nack poison: it must end in the dead-letter queue
    // (or with an ack to the dead-letter queue whose answer was lost).
    let not_dead: Vec<&String> = poison
        .iter()
        .filter(|v| !seen.dead.contains(*v) && !seen.maybe_acked.contains(*v))
        .collect();
    ensure(not_dead.is_empty(), invariant::QUEUE_DELIVERY, || {
        format!("poison messages not dead-lettered: {not_dead:?}")
    })?;
    let foreign: Vec<&String> = seen
        .acked
        .iter()
        .chain(&seen.dead)
        .filter(|v| !produced.contains(*v))
        .collect();
    ensure(foreign.is_empty(), invariant::QUEUE_DELIVERY, || {
        format!("delivered messages nobody produced: {foreign:?}")
    })?;
    world.record(format!(
        "queue settled: {} acknowledged, {} dead-lettered, {} deliveries",
        seen.acked.len(),
        seen.dead.len(),
        seen.deliveries
    ));
    Ok(())
}

/// One consumer of `queue` until the scenario is done: acks, nacks or
/// drops each message as its `rng` says (a dead-letter consumer acks all).
async fn consume(
    world: World,
    name: String,
    queue: &'static str,
    mut rng: SmallRng,
    seen: Rc<RefCell<Seen>>,
) -> Checked {
    let drains = queue == DEAD;
    // Bounded: the scenario sets `done` before its time limit.
    while !seen.borrow().done {
        let receive = Receive {
            queue: queue.into(),
            count_max: rng.random_range(1..=4),
            wait_ms: 200,
            visibility_ms: None,
        };
        let messages = match call(&world, GATEWAY, Request::Receive(receive)).await {
            Ok(Reply::Messages(messages)) => messages,
            Ok(other) => {
                return Err(Violation::new(
                    invariant::LIVENESS,
                    format!("receive: unexpected reply {other:?}"),
                ));
            }
            Err(CallError::Down) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            Err(CallError::Refused(error)) => {
                return Err(Violation::new(
                    invariant::LIVENESS,
                    format!("receive: {error}"),
                ));
            }
        };
        for message in messages {
            let value = String::from_utf8_lossy(&message.value).into_owned();
            seen.borrow_mut().deliveries += 1;
            let roll = rng.random_range(0..100);
            let action = if drains {
                SettleAction::Ack
            } else if value.starts_with("poison") || roll >= 85 {
                SettleAction::Nack {
                    delay_ms: Some(rng.random_range(0..300)),
                }
            } else if roll >= 70 {
                // The consumer crashed: the lease runs out.
                world.record(format!(
                    "{name}: {value} attempt {} dropped",
                    message.attempt
                ));
                continue;
            } else {
                SettleAction::Ack
            };
            world.record(format!(
                "{name}: {value} attempt {} {}",
                message.attempt,
                match action {
                    SettleAction::Ack => "acked",
                    SettleAction::Nack { .. } => "nacked",
                    SettleAction::Extend { .. } => "extended",
                }
            ));
            let settle = Settle {
                queue: queue.into(),
                leases: vec![message.lease],
                action,
            };
            let answer = call(&world, GATEWAY, Request::Settle(settle)).await;
            if action != SettleAction::Ack {
                continue;
            }
            let mut seen = seen.borrow_mut();
            match answer {
                Ok(Reply::Settled(results)) if results.first().is_some_and(Option::is_none) => {
                    if drains {
                        seen.dead.insert(value);
                    } else {
                        seen.acked.insert(value);
                    }
                }
                Err(CallError::Down) => {
                    seen.maybe_acked.insert(value);
                }
                // A lease that ran out or a refused ack: the message comes
                // back.
                _ => {}
            }
        }
    }
    Ok(())
}
