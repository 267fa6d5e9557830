//! The `meshgate-sim` program (`meshgate sim`): list, run, replay, exit codes.

use std::process::{Command, Output};

fn sim(args: &[&str], envs: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_meshgate-sim"))
        .args(args)
        .envs(envs.iter().copied())
        .output()
        .expect("meshgate-sim runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn list_names_every_scenario() {
    let out = sim(&["list"], &[]);
    assert!(out.status.success());
    let listed = text(&out.stdout);
    for scenario in &meshgate_sim::ALL {
        assert!(listed.contains(scenario.name), "{listed}");
    }
}

#[test]
fn a_range_of_seeds_prints_a_summary_and_one_seed_its_timeline() {
    let out = sim(
        &[
            "run",
            "--scenario",
            "region-crash",
            "--seeds",
            "1..3",
            "--jobs",
            "2",
        ],
        &[],
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("seeds/s"), "{stdout}");
    assert!(stdout.contains("region-crash"), "{stdout}");
    assert!(stdout.contains("3 seeds in"), "{stdout}");

    let replay = [
        "run",
        "--scenario",
        "region-crash",
        "--seed",
        "2",
        "--trace",
    ];
    let (first, second) = (sim(&replay, &[]), sim(&replay, &[]));
    assert!(first.status.success());
    let timeline = text(&first.stdout);
    assert!(timeline.contains("crashed"), "{timeline}");
    assert!(timeline.contains("every invariant held"), "{timeline}");
    // The last line has the wall-clock time, which differs; the timeline
    // and its hash must not.
    let without_wall = |out: &str| {
        out.lines()
            .map(|line| match line.split_once(" wall; trace ") {
                Some((_, hash)) => hash.to_string(),
                None => line.to_string(),
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        without_wall(&timeline),
        without_wall(&text(&second.stdout)),
        "a seed replays exactly"
    );
}

#[test]
fn a_failing_seed_exits_non_zero_naming_the_seed_and_the_replay_command() {
    let out = sim(
        &[
            "run",
            "--scenario",
            "chaos",
            "--seeds",
            "1..2",
            "--jobs",
            "1",
        ],
        &[("MESHGATE_SIM_MUTATION", "keep-duplicates")],
    );
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("FAILED chaos seed"), "{stdout}");
    assert!(
        stdout.contains("replay: meshgate sim run --scenario chaos --seed"),
        "{stdout}"
    );
}

#[test]
fn bad_arguments_are_refused() {
    let unknown = sim(&["run", "--scenario", "nope", "--seed", "1"], &[]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(text(&unknown.stderr).contains("unknown scenario `nope`"));
    let empty = sim(&["run", "--seeds", "5..2"], &[]);
    assert_eq!(empty.status.code(), Some(2));
    assert!(
        text(&empty.stderr).contains("empty"),
        "{}",
        text(&empty.stderr)
    );
    let mutation = sim(&["list"], &[("MESHGATE_SIM_MUTATION", "other")]);
    assert_eq!(mutation.status.code(), Some(2));
}
