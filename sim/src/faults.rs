//! Faults: the network ones a simulated client sets itself (partition,
//! heal, hold, release), and the ones only the stepping loop can carry out
//! (crash and restart of a host, loss and latency of a link), which a
//! client asks for through [`Faults`]. Every fault goes into the trace.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::oneshot;

use crate::check::{Violation, invariant};
use crate::world::{World, eventually};

/// A fault carried out by the stepping loop.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// Crash the gateway; its disk tears unsynced writes with this seed
    /// when given, else loses them.
    Crash(String, Option<u64>),
    /// Start a crashed gateway again on its disk.
    Restart(String),
    /// Drop this share of the datagrams between two hosts (0 to heal).
    Loss(String, String, f64),
    /// Delay every datagram between two hosts by this much.
    Latency(String, String, Duration),
    /// Repair, release and clear loss on every link (latency set by a
    /// fault stays: slow is not broken).
    HealAll,
}

/// A fault and the ticket its asker waits on.
type Asked = (Fault, oneshot::Sender<()>);

/// Faults asked by the simulated clients, each with the ticket its asker
/// waits on.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    asked: Arc<Mutex<Vec<Asked>>>,
}

impl Faults {
    /// Asks for `fault` and waits (in simulated time) until it happened.
    pub async fn ask(&self, fault: Fault) -> Result<(), Violation> {
        let (done, happened) = oneshot::channel();
        self.asked.lock().push((fault, done));
        match tokio::time::timeout(Duration::from_secs(10), happened).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(Violation::new(
                invariant::LIVENESS,
                "a fault was not carried out",
            )),
        }
    }

    /// Crashes `name` (torn writes from `torn` when given).
    pub async fn crash(&self, name: &str, torn: Option<u64>) -> Result<(), Violation> {
        self.ask(Fault::Crash(name.to_string(), torn)).await
    }

    /// Restarts `name` and waits until its gateway runs again.
    pub async fn restart(&self, world: &World, name: &str) -> Result<(), Violation> {
        self.ask(Fault::Restart(name.to_string())).await?;
        eventually(
            Duration::from_secs(30),
            invariant::LIVENESS,
            || format!("{name} did not start again"),
            || async { world.node(name).is_some() },
        )
        .await
    }

    /// Runs the simulation to its end, carrying out faults as asked.
    pub fn drive(
        &self,
        world: &World,
        sim: &mut turmoil::Sim<'_>,
    ) -> Result<(), Box<dyn std::error::Error>> {
        loop {
            let asked = std::mem::take(&mut *self.asked.lock());
            for (fault, done) in asked {
                match &fault {
                    Fault::Crash(name, torn) => world.crash(sim, name, *torn),
                    Fault::Restart(name) => world.restart(sim, name),
                    Fault::Loss(a, b, rate) => {
                        sim.set_link_fail_rate(a.as_str(), b.as_str(), *rate);
                        let event = format!("loss {a} <-> {b} {:.0}%", rate * 100.0);
                        world.trace().record(sim.elapsed(), event);
                    }
                    Fault::HealAll => {
                        let hosts: Vec<String> =
                            world.specs().iter().map(|s| s.name.clone()).collect();
                        for (i, a) in hosts.iter().enumerate() {
                            for b in &hosts[i + 1..] {
                                sim.repair(a.as_str(), b.as_str());
                                sim.release(a.as_str(), b.as_str());
                                sim.set_link_fail_rate(a.as_str(), b.as_str(), 0.0);
                            }
                        }
                        world.trace().record(
                            sim.elapsed(),
                            "every link healed (repaired, released, no loss)",
                        );
                    }
                    Fault::Latency(a, b, delay) => {
                        sim.set_link_latency(a.as_str(), b.as_str(), *delay);
                        let event = format!("latency {a} <-> {b} {} ms", delay.as_millis());
                        world.trace().record(sim.elapsed(), event);
                    }
                }
                let _ = done.send(());
            }
            if sim.step()? {
                return Ok(());
            }
        }
    }
}

/// Cuts every link between the hosts of `a` and of `b`.
pub fn partition(world: &World, a: &[&str], b: &[&str]) {
    for x in a {
        for y in b {
            turmoil::partition(*x, *y);
        }
    }
    world.record(format!("partition {} | {}", a.join(","), b.join(",")));
}

/// Repairs every link between the hosts of `a` and of `b`.
pub fn heal(world: &World, a: &[&str], b: &[&str]) {
    for x in a {
        for y in b {
            turmoil::repair(*x, *y);
        }
    }
    world.record(format!("heal {} | {}", a.join(","), b.join(",")));
}

/// Holds every datagram between `a` and `b` until [`release`].
pub fn hold(world: &World, a: &str, b: &str) {
    turmoil::hold(a, b);
    world.record(format!("hold {a} <-> {b}"));
}

/// Delivers what [`hold`] kept back, and lets traffic flow again.
pub fn release(world: &World, a: &str, b: &str) {
    turmoil::release(a, b);
    world.record(format!("release {a} <-> {b}"));
}
