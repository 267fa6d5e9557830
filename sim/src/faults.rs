//! Faults: the network ones a simulated client sets itself (partition,
//! heal, hold, release), and the ones only the stepping loop can carry out
//! (crash and restart of a host, loss and latency of a link), which a
//! client asks for through [`Faults`]. Every fault goes into the trace.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

use crate::check::{Violation, invariant};
use crate::world::{World, within};

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
}

/// Faults asked by the simulated clients, and how many were carried out.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    asked: Arc<Mutex<Vec<Fault>>>,
    done: Arc<AtomicU64>,
}

impl Faults {
    /// Asks for `fault` and waits (in simulated time) until it happened.
    pub async fn ask(&self, fault: Fault) -> Result<(), Violation> {
        let before = self.done.load(Ordering::SeqCst);
        self.asked.lock().push(fault);
        let done = &self.done;
        let happened = within(Duration::from_secs(10), || async {
            done.load(Ordering::SeqCst) > before
        })
        .await;
        match happened {
            Some(_) => Ok(()),
            None => Err(Violation::new(
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
        let back = within(Duration::from_secs(30), || async {
            world.node(name).is_some()
        })
        .await;
        match back {
            Some(_) => Ok(()),
            None => Err(Violation::new(
                invariant::LIVENESS,
                format!("{name} did not start again"),
            )),
        }
    }

    /// Runs the simulation to its end, carrying out faults as asked.
    pub fn drive(
        &self,
        world: &World,
        sim: &mut turmoil::Sim<'_>,
    ) -> Result<(), Box<dyn std::error::Error>> {
        loop {
            let asked = std::mem::take(&mut *self.asked.lock());
            for fault in asked {
                match &fault {
                    Fault::Crash(name, torn) => world.crash(sim, name, *torn),
                    Fault::Restart(name) => world.restart(sim, name),
                    Fault::Loss(a, b, rate) => {
                        sim.set_link_fail_rate(a.as_str(), b.as_str(), *rate);
                        let event = format!("loss {a} <-> {b} {:.0}%", rate * 100.0);
                        world.trace().record(sim.elapsed(), event);
                    }
                    Fault::Latency(a, b, delay) => {
                        sim.set_link_latency(a.as_str(), b.as_str(), *delay);
                        let event = format!("latency {a} <-> {b} {} ms", delay.as_millis());
                        world.trace().record(sim.elapsed(), event);
                    }
                }
                self.done.fetch_add(1, Ordering::SeqCst);
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
