//! Scenarios: each a function of a seed, run by a simulated client against
//! three gateways in three regions. [`ALL`] lists them; the code of each is
//! in [`crate::scenarios`].

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use rand::rngs::SmallRng;

use crate::check::{Checked, Ledger, Violation, invariant};
use crate::faults::Faults;
use crate::scenarios;
use crate::world::World;

/// The gateways of every scenario: `(host, region)`.
pub const REGIONS: [(&str, &str); 3] = [
    ("use-1", "us-east"),
    ("euw-1", "eu-west"),
    ("aps-1", "ap-south"),
];

/// What a scenario runs with.
#[derive(Debug)]
pub struct Context {
    /// The seed of the run.
    pub seed: u64,
    /// The gateways.
    pub world: World,
    /// Crash, restart, loss and latency, carried out by the stepping loop.
    pub faults: Faults,
    /// The scenario's own choices (which region, how many records, when).
    pub rng: SmallRng,
}

/// The future a scenario runs as.
pub type Body = Pin<Box<dyn Future<Output = Checked>>>;

/// One scenario.
#[derive(Debug, Clone, Copy)]
pub struct Scenario {
    /// Its name on the command line.
    pub name: &'static str,
    /// One line on what it does.
    pub about: &'static str,
    /// Each gateway's clock is off by up to this much, chosen by the seed.
    pub skew_ms_max: i64,
    /// Simulated time a seed may take before it counts as stuck.
    pub limit: Duration,
    /// The client's work.
    pub body: fn(Context) -> Body,
}

/// Every scenario, in the order `meshgate sim list` shows them.
pub const ALL: [Scenario; 6] = [
    Scenario {
        name: "region-partition",
        about: "active-active producers in three regions; one region is cut off and healed",
        skew_ms_max: 250,
        limit: Duration::from_secs(300),
        body: |cx| Box::pin(scenarios::region_partition(cx)),
    },
    Scenario {
        name: "region-crash",
        about: "a region crashes mid-produce with torn writes and restarts on its disk",
        skew_ms_max: 250,
        limit: Duration::from_secs(300),
        body: |cx| Box::pin(scenarios::region_crash(cx)),
    },
    Scenario {
        name: "group-failover",
        about: "a consumer group fails over to another region while its region is cut off",
        skew_ms_max: 250,
        limit: Duration::from_secs(300),
        body: |cx| Box::pin(scenarios::group_failover(cx)),
    },
    Scenario {
        name: "chain-origin-down",
        about: "a chain of three regions carries the origin's records on while it is down",
        skew_ms_max: 250,
        limit: Duration::from_secs(300),
        body: |cx| Box::pin(scenarios::chain_origin_down(cx)),
    },
    Scenario {
        name: "queue-consumer-crashes",
        about: "a dispatch queue whose consumers crash, nack and time out, and whose gateway restarts",
        skew_ms_max: 250,
        limit: Duration::from_secs(600),
        body: |cx| Box::pin(scenarios::queue_consumer_crashes(cx)),
    },
    Scenario {
        name: "chaos",
        about: "producers everywhere under random partitions, loss, latency, holds, flapping links and crashes",
        skew_ms_max: 2_000,
        limit: Duration::from_secs(600),
        body: |cx| Box::pin(scenarios::chaos(cx)),
    },
];

/// The scenario called `name`.
pub fn find(name: &str) -> Option<&'static Scenario> {
    ALL.iter().find(|s| s.name == name)
}

/// Waits until every running region holds the same copy of every origin
/// stream with every acknowledged record, checking prefixes all along; a
/// convergence violation after `limit`. Returns how long it took.
pub async fn converge(
    world: &World,
    ledger: &Ledger,
    limit: Duration,
) -> Result<Duration, Violation> {
    let start = tokio::time::Instant::now();
    loop {
        ledger.check_prefixes(world)?;
        if ledger.converged(world)? {
            let took = start.elapsed();
            world.record(format!(
                "converged after {} ms ({} acknowledged records)",
                took.as_millis(),
                ledger.acked()
            ));
            return Ok(took);
        }
        if start.elapsed() > limit {
            let mut views = Vec::new();
            for (name, node) in world.running() {
                let members: Vec<String> = node
                    .members()
                    .await
                    .iter()
                    .map(|m| format!("{}#{} {}", m.node_id, m.incarnation, m.state))
                    .collect();
                views.push(format!("{name} sees [{}]", members.join(", ")));
                if let Some(Ok(meshgate_protocol::Reply::MirrorStatus(links))) = world
                    .call(&name, meshgate_protocol::Request::MirrorStatus)
                    .await
                {
                    let links: Vec<String> = links
                        .iter()
                        .map(|l| {
                            let origins: Vec<String> = l
                                .origins
                                .iter()
                                .map(|o| format!("{}:{}/{:?}", o.origin, o.held, o.head))
                                .collect();
                            format!(
                                "{}/{} from {}@{:?} {} {} pulled {} [{}]",
                                l.topic,
                                l.partition,
                                l.source_region,
                                l.source_node,
                                l.state,
                                l.error.as_deref().unwrap_or(""),
                                l.records_pulled,
                                origins.join(" ")
                            )
                        })
                        .collect();
                    views.push(format!("{name} links [{}]", links.join(", ")));
                }
                if let Some(Ok(meshgate_protocol::Reply::MirrorRules(rules))) = world
                    .call(&name, meshgate_protocol::Request::ListMirrorRules)
                    .await
                {
                    views.push(format!("{name} rules {rules:?}"));
                }
            }
            return Err(Violation::new(
                invariant::CONVERGENCE,
                format!(
                    "not converged {limit:?} after the heal: {}; membership: {}",
                    ledger.divergence(world),
                    views.join("; ")
                ),
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
