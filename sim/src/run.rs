//! Running scenarios: one seed ([`run_seed`]), or many on several threads
//! ([`run_many`]), each seed in its own turmoil simulation.

use std::cell::RefCell;
use std::panic::AssertUnwindSafe;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::check::{Violation, invariant};
use crate::faults::Faults;
use crate::scenario::{Context, REGIONS, Scenario};
use crate::trace::Trace;
use crate::world::{NodeSpec, World};

/// How one seed of one scenario went.
#[derive(Debug)]
pub struct Outcome {
    /// The scenario's name.
    pub scenario: &'static str,
    /// The seed.
    pub seed: u64,
    /// `Ok` when every invariant held.
    pub verdict: Result<(), Violation>,
    /// Simulated time the run took.
    pub simulated: Duration,
    /// Wall-clock time the run took.
    pub wall: Duration,
    /// The timeline of faults and key events.
    pub trace: Trace,
}

impl Outcome {
    /// The command that replays this seed with its timeline.
    pub fn replay_command(&self) -> String {
        format!(
            "meshgate sim run --scenario {} --seed {} --trace",
            self.scenario, self.seed
        )
    }
}

thread_local! {
    /// Panics seen on this thread while a seed runs (`None`: not running).
    static PANICS: RefCell<Option<Vec<String>>> = const { RefCell::new(None) };
}

/// Installs (once) a panic hook that records a panic on a thread running a
/// seed instead of printing it, and defers to the previous hook elsewhere.
/// A gateway task that panics is caught by its runtime; the hook is how
/// the run learns about it.
fn capture_panics() {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let mut message = info.to_string();
            if std::env::var_os("RUST_BACKTRACE").is_some() {
                message = format!("{message}\n{}", std::backtrace::Backtrace::force_capture());
            }
            let captured = PANICS.with(|panics| match panics.borrow_mut().as_mut() {
                Some(seen) => {
                    seen.push(message.clone());
                    true
                }
                None => false,
            });
            if !captured {
                previous(info);
            }
        }));
    });
}

/// The gateways of a run: three regions, clocks skewed as the seed says.
fn layout(scenario: &Scenario, seed: u64) -> Vec<NodeSpec> {
    let mut rng = SmallRng::seed_from_u64(seed ^ 0x5eed_c10c);
    REGIONS
        .iter()
        .map(|(name, region)| NodeSpec {
            name: (*name).to_string(),
            region: (*region).to_string(),
            skew_ms: rng.random_range(-scenario.skew_ms_max..=scenario.skew_ms_max),
        })
        .collect()
}

/// Runs `scenario` with `seed` on a thread of its own (what earlier runs
/// left in thread-locals cannot reach it). The storage mutation switch of
/// the calling thread carries over.
pub fn run_seed(scenario: &Scenario, seed: u64) -> Outcome {
    let mutated = meshgate_storage::mutation::duplicates_kept();
    std::thread::scope(|scope| {
        let run = scope.spawn(|| {
            meshgate_storage::mutation::keep_duplicates(mutated);
            run_here(scenario, seed)
        });
        run.join().unwrap_or_else(|_| Outcome {
            scenario: scenario.name,
            seed,
            verdict: Err(Violation::new(invariant::NO_PANIC, "the runner panicked")),
            simulated: Duration::ZERO,
            wall: Duration::ZERO,
            trace: Trace::default(),
        })
    })
}

fn run_here(scenario: &Scenario, seed: u64) -> Outcome {
    capture_panics();
    #[allow(
        clippy::disallowed_methods,
        reason = "how long a seed takes on the wall clock is a figure of the runner, not of simulated code"
    )]
    let started = std::time::Instant::now();
    let specs = layout(scenario, seed);
    let world = match World::new(seed, specs.clone()) {
        Ok(world) => world,
        Err(error) => {
            return Outcome {
                scenario: scenario.name,
                seed,
                verdict: Err(Violation::new(
                    invariant::LIVENESS,
                    format!("world: {error:#}"),
                )),
                simulated: Duration::ZERO,
                wall: started.elapsed(),
                trace: Trace::default(),
            };
        }
    };
    for spec in &specs {
        world.trace().record(
            Duration::ZERO,
            format!(
                "{} in {}, clock skew {} ms",
                spec.name, spec.region, spec.skew_ms
            ),
        );
    }
    let mut sim = turmoil::Builder::new()
        .rng_seed(seed)
        .simulation_duration(scenario.limit)
        .build();
    world.install(&mut sim);
    let faults = Faults::default();
    let context = Context {
        seed,
        world: world.clone(),
        faults: faults.clone(),
        rng: SmallRng::seed_from_u64(seed),
    };
    let body = (scenario.body)(context);
    sim.client("scenario", async move {
        body.await.map_err(|violation| violation.into())
    });
    PANICS.with(|panics| *panics.borrow_mut() = Some(Vec::new()));
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| faults.drive(&world, &mut sim)));
    let panics = PANICS
        .with(|panics| panics.borrow_mut().take())
        .unwrap_or_default();
    let simulated = sim.elapsed();
    // Drop the simulation (and every host's tasks) before the next seed.
    drop(sim);
    let verdict = match (result, panics.first()) {
        (_, Some(panic)) => Err(Violation::new(
            invariant::NO_PANIC,
            format!("{} panic(s), first: {panic}", panics.len()),
        )),
        (Err(_), None) => Err(Violation::new(
            invariant::NO_PANIC,
            "the simulation panicked",
        )),
        (Ok(Ok(())), None) => Ok(()),
        (Ok(Err(error)), None) => Err(match error.downcast::<Violation>() {
            Ok(violation) => *violation,
            Err(other) => Violation::new(invariant::LIVENESS, other.to_string()),
        }),
    };
    match &verdict {
        Ok(()) => world.trace().record(simulated, "every invariant held"),
        Err(violation) => world
            .trace()
            .record(simulated, format!("VIOLATION {violation}")),
    }
    Outcome {
        scenario: scenario.name,
        seed,
        verdict,
        simulated,
        wall: started.elapsed(),
        trace: world.trace().clone(),
    }
}

/// Runs every seed of every scenario on `jobs` threads; `progress` sees
/// each outcome as it ends. Outcomes come back by scenario, then seed.
pub fn run_many(
    scenarios: &[&'static Scenario],
    seeds: &[u64],
    jobs: usize,
    progress: &(dyn Fn(&Outcome) + Sync),
) -> Vec<Outcome> {
    let work: Vec<(&'static Scenario, u64)> = scenarios
        .iter()
        .flat_map(|scenario| seeds.iter().map(move |seed| (*scenario, *seed)))
        .collect();
    let next = AtomicUsize::new(0);
    let outcomes = Mutex::new(Vec::with_capacity(work.len()));
    let mutated = meshgate_storage::mutation::duplicates_kept();
    std::thread::scope(|scope| {
        for _ in 0..jobs.max(1) {
            scope.spawn(|| {
                meshgate_storage::mutation::keep_duplicates(mutated);
                // Bounded: each round takes the next item of `work`.
                loop {
                    let index = next.fetch_add(1, Ordering::SeqCst);
                    let Some((scenario, seed)) = work.get(index) else {
                        return;
                    };
                    let outcome = run_seed(scenario, *seed);
                    progress(&outcome);
                    if let Ok(mut outcomes) = outcomes.lock() {
                        outcomes.push(outcome);
                    }
                }
            });
        }
    });
    let mut outcomes = outcomes.into_inner().unwrap_or_default();
    let order = |name: &str| scenarios.iter().position(|s| s.name == name);
    outcomes.sort_by_key(|o| (order(o.scenario), o.seed));
    outcomes
}
