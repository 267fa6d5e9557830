//! The scenarios on a few seeds each, replay by seed, and the mutation
//! check: a log that keeps mirrored duplicates is caught.

use meshgate_sim::check::invariant;
use meshgate_sim::{ALL, run_seed};

#[test]
fn every_scenario_keeps_its_invariants_on_a_few_seeds() {
    for scenario in &ALL {
        for seed in 1..=3 {
            let outcome = run_seed(scenario, seed);
            assert!(
                outcome.verdict.is_ok(),
                "{} seed {seed}: {:?}\n{}",
                scenario.name,
                outcome.verdict,
                outcome.trace.lines().join("\n")
            );
        }
    }
}

#[test]
fn a_seed_replays_exactly() {
    for scenario in &ALL {
        let first = run_seed(scenario, 11);
        let second = run_seed(scenario, 11);
        assert!(
            first.trace.lines().len() > 10,
            "{}: the trace records the run",
            scenario.name
        );
        assert_eq!(
            first.trace.lines(),
            second.trace.lines(),
            "{}: seed 11 ran the same way twice",
            scenario.name
        );
        assert_eq!(first.trace.hash(), second.trace.hash());
        assert_ne!(
            first.trace.hash(),
            run_seed(scenario, 12).trace.hash(),
            "{}: another seed makes another run",
            scenario.name
        );
    }
}

#[test]
fn a_log_that_keeps_mirrored_duplicates_is_caught_within_twenty_seeds() {
    let scenario = meshgate_sim::scenario::find("chaos").expect("chaos");
    meshgate_storage::mutation::keep_duplicates(true);
    let caught = (1..=20).find_map(|seed| {
        let outcome = run_seed(scenario, seed);
        outcome.verdict.err().map(|violation| (seed, violation))
    });
    meshgate_storage::mutation::keep_duplicates(false);
    let (seed, violation) = caught.expect("the mutation is caught within 20 seeds");
    assert_eq!(
        violation.invariant,
        invariant::PREFIX,
        "seed {seed}: {violation}"
    );
    assert!(
        run_seed(scenario, seed).verdict.is_ok(),
        "seed {seed} passes unmutated"
    );
}

/// Seeds that found bugs, kept as regressions (the code changed since, so
/// each now runs a different schedule; they stay cheap checks).
#[test]
fn seeds_that_found_bugs_pass() {
    for (name, seed) in [
        // A new queue's start position was not written before a crash.
        ("queue-consumer-crashes", 7),
        // A pull session did not send commits made while it was down.
        ("group-failover", 29),
        // foca's own rejoin left a member suspect for good.
        ("chaos", 298),
        // Every region crashed in turn lost the mirror rule.
        ("chaos", 3642),
    ] {
        let scenario = meshgate_sim::scenario::find(name).expect("scenario");
        let outcome = run_seed(scenario, seed);
        assert!(
            outcome.verdict.is_ok(),
            "{name} seed {seed}: {:?}",
            outcome.verdict
        );
    }
}

#[test]
fn a_task_that_panics_is_a_violation() {
    use std::time::Duration;
    let scenario = meshgate_sim::Scenario {
        name: "panics",
        about: "a client task panics",
        skew_ms_max: 0,
        limit: Duration::from_secs(10),
        body: |_| {
            Box::pin(async {
                tokio::task::spawn_local(async { panic!("a bug") });
                tokio::time::sleep(Duration::from_millis(100)).await;
                Ok(())
            })
        },
    };
    let outcome = run_seed(&scenario, 1);
    let violation = outcome.verdict.expect_err("the panic is caught");
    assert_eq!(violation.invariant, invariant::NO_PANIC, "{violation}");
    assert!(violation.detail.contains("a bug"), "{violation}");
}
