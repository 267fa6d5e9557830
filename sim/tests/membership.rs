//! Five real gateways in three regions under turmoil: membership converges,
//! a partitioned gateway is marked down within the configured bound, comes
//! back after repair, and a seed replays the same timeline.

use std::time::Duration;

use meshgate_sim::{World, within};

const LAYOUT: [(&str, &str); 5] = [
    ("use-1", "us-east"),
    ("use-2", "us-east"),
    ("euw-1", "eu-west"),
    ("euw-2", "eu-west"),
    ("aps-1", "ap-south"),
];

/// True when every running gateway but `cut` sees the other four alive
/// and `cut` in state `cut_state` (or, without `cut`, all five alive).
async fn all_see(world: &World, cut: Option<(&str, &str)>) -> bool {
    for (name, _) in LAYOUT {
        if cut.is_some_and(|(cut, _)| cut == name) {
            continue;
        }
        let Some(node) = world.node(name) else {
            return false;
        };
        let members = node.members().await;
        for (other, _) in LAYOUT {
            let expected = match cut {
                Some((cut, state)) if cut == other => state,
                _ => "alive",
            };
            // A restarted identity shows beside its old one: any row of the
            // node in the expected state counts.
            if !members
                .iter()
                .any(|m| m.node_id == other && m.state == expected)
            {
                return false;
            }
        }
    }
    true
}

fn run(seed: u64) -> (String, Vec<String>) {
    let world = World::new(seed, World::layout(&LAYOUT)).expect("world");
    let mut sim = turmoil::Builder::new()
        .rng_seed(seed)
        .simulation_duration(Duration::from_secs(120))
        .build();
    world.install(&mut sim);
    let test = world.clone();
    sim.client("observer", async move {
        let converged = within(Duration::from_secs(30), || all_see(&test, None)).await;
        assert!(converged.is_some(), "five gateways converge");
        test.record("converged");
        for (other, _) in LAYOUT.iter().filter(|(name, _)| *name != "aps-1") {
            turmoil::partition("aps-1", *other);
        }
        test.record("aps-1 partitioned");
        let detected = within(Duration::from_secs(10), || {
            all_see(&test, Some(("aps-1", "down")))
        })
        .await;
        let detected = detected.expect("the four others mark aps-1 down");
        test.record(format!(
            "aps-1 marked down after {} ms",
            detected.as_millis()
        ));
        // MembershipConfig::fast() bounds detection near 1 s; allow margin
        // for the probe that happens to be in flight.
        assert!(
            detected <= Duration::from_secs(3),
            "detected in {detected:?}"
        );
        for (other, _) in LAYOUT.iter().filter(|(name, _)| *name != "aps-1") {
            turmoil::repair("aps-1", *other);
        }
        test.record("aps-1 repaired");
        let back = within(Duration::from_secs(20), || all_see(&test, None)).await;
        assert!(back.is_some(), "aps-1 is alive again everywhere");
        test.record("all alive again");
        Ok(())
    });
    sim.run().expect("simulation succeeds");
    (world.trace().hash(), world.trace().lines())
}

#[test]
fn five_gateways_converge_detect_a_partition_recover_and_replay_by_seed() {
    let (first, lines) = run(7);
    let (second, again) = run(7);
    assert_eq!(lines, again, "same seed, same timeline");
    assert_eq!(first, second);
    assert!(lines.iter().any(|l| l.contains("aps-1 marked down")));
    let (other, _) = run(8);
    assert_ne!(first, other, "another seed, another timeline");
}
