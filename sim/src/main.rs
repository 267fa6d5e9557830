//! `meshgate-sim` (also run as `meshgate sim`): lists the failure
//! scenarios and runs them over ranges of seeds, or one seed with its
//! timeline.

use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use meshgate_sim::scenario::{self, Scenario};
use meshgate_sim::{Outcome, run_many, run_seed};

/// Deterministic failure simulation: the real gateway code (storage,
/// membership, mirroring, groups, dispatch queues) under turmoil, with
/// partitions, loss, latency, holds, flapping links, crashes with torn
/// writes and clock skew. A seed reproduces a run exactly.
#[derive(Debug, Parser)]
#[command(name = "meshgate sim", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Lists the scenarios.
    List,
    /// Runs scenarios over seeds and prints a summary table; exits 1 when
    /// an invariant failed, naming the seed and the command that replays it.
    #[command(after_help = "Examples:\n  \
        meshgate sim run --scenario all --seeds 1..100 --jobs 2\n  \
        meshgate sim run --scenario chaos --seeds 1..10000 --jobs 8\n  \
        meshgate sim run --scenario region-crash --seed 42 --trace")]
    Run(RunArgs),
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// A scenario name (see `list`) or `all`.
    #[arg(long, default_value = "all")]
    scenario: String,
    /// Seeds to run: `A..B` (both ends included) or one number.
    #[arg(long, value_parser = parse_seeds, default_value = "1..20", conflicts_with = "seed")]
    seeds: SeedRange,
    /// Runs this one seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Prints each seed's timeline of faults and key events.
    #[arg(long)]
    trace: bool,
    /// Seeds run at once, each on its own thread.
    #[arg(long, default_value_t = default_jobs())]
    jobs: usize,
}

/// Seeds one run takes at most (a day's worth at the slowest scenario).
const SEEDS_MAX: u64 = 10_000_000;

/// An inclusive range of seeds.
#[derive(Debug, Clone, Copy)]
struct SeedRange {
    first: u64,
    last: u64,
}

fn parse_seeds(text: &str) -> Result<SeedRange, String> {
    let number = |part: &str| {
        part.trim()
            .parse::<u64>()
            .map_err(|_| format!("`{part}` is not a seed (a number from 0 to 2^64-1)"))
    };
    let range = match text.split_once("..") {
        Some((first, last)) => SeedRange {
            first: number(first)?,
            last: number(last.trim_start_matches('='))?,
        },
        None => {
            let seed = number(text)?;
            SeedRange {
                first: seed,
                last: seed,
            }
        }
    };
    if range.last < range.first {
        return Err(format!("{text}: the range is empty"));
    }
    if range.last - range.first >= SEEDS_MAX {
        return Err(format!("{text}: at most {SEEDS_MAX} seeds per run"));
    }
    Ok(range)
}

fn default_jobs() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// Set to `keep-duplicates`, the log keeps mirrored duplicates (a
/// deliberate bug): the runs must fail, which shows the checks have teeth.
const MUTATION_VARIABLE: &str = "MESHGATE_SIM_MUTATION";

fn main() -> ExitCode {
    let cli = Cli::parse();
    match std::env::var(MUTATION_VARIABLE).as_deref() {
        Ok("keep-duplicates") => {
            eprintln!("meshgate sim: mutation on: logs keep mirrored duplicates");
            meshgate_storage::mutation::keep_duplicates(true);
        }
        Ok(other) => {
            eprintln!(
                "meshgate sim: unknown {MUTATION_VARIABLE} `{other}` (known: keep-duplicates)"
            );
            return ExitCode::from(2);
        }
        Err(_) => {}
    }
    match cli.command {
        Command::List => {
            for scenario in &scenario::ALL {
                println!("{:<24} {}", scenario.name, scenario.about);
            }
            ExitCode::SUCCESS
        }
        Command::Run(args) => run(args),
    }
}

fn run(args: RunArgs) -> ExitCode {
    let scenarios: Vec<&'static Scenario> = if args.scenario == "all" {
        scenario::ALL.iter().collect()
    } else {
        match scenario::find(&args.scenario) {
            Some(scenario) => vec![scenario],
            None => {
                let names: Vec<&str> = scenario::ALL.iter().map(|s| s.name).collect();
                eprintln!(
                    "meshgate sim: unknown scenario `{}` (known: all, {})",
                    args.scenario,
                    names.join(", ")
                );
                return ExitCode::from(2);
            }
        }
    };
    if let Some(seed) = args.seed {
        let mut failed = false;
        for scenario in scenarios {
            let outcome = run_seed(scenario, seed);
            let mut out = std::io::stdout().lock();
            if args.trace {
                print_trace(&mut out, &outcome);
            }
            let verdict = match &outcome.verdict {
                Ok(()) => "passed".to_string(),
                Err(violation) => format!("FAILED {violation}"),
            };
            let _ = writeln!(
                out,
                "{} seed {}: {verdict} in {:.1} s simulated, {:.2} s wall; trace {}",
                outcome.scenario,
                outcome.seed,
                outcome.simulated.as_secs_f64(),
                outcome.wall.as_secs_f64(),
                &outcome.trace.hash()[..16],
            );
            failed |= outcome.verdict.is_err();
        }
        return if failed {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        };
    }
    let seeds: Vec<u64> = (args.seeds.first..=args.seeds.last).collect();
    let show_trace = args.trace;
    // Failures as they happen, and again in the summary.
    let progress = move |outcome: &Outcome| {
        let mut out = std::io::stdout().lock();
        if show_trace {
            print_trace(&mut out, outcome);
        }
        print_failure(&mut out, outcome);
    };
    #[allow(
        clippy::disallowed_methods,
        reason = "seeds per second is a figure of the runner, not of simulated code"
    )]
    let started = std::time::Instant::now();
    let outcomes = run_many(&scenarios, &seeds, args.jobs, &progress);
    let total = started.elapsed();
    println!(
        "\n{:<24} {:>6} {:>6} {:>6} {:>9} {:>14} {:>12}",
        "scenario", "seeds", "passed", "failed", "seeds/s", "longest (seed)", "sim s/seed"
    );
    let mut failed = Vec::new();
    for scenario in &scenarios {
        let mine: Vec<&Outcome> = outcomes
            .iter()
            .filter(|o| o.scenario == scenario.name)
            .collect();
        let passed = mine.iter().filter(|o| o.verdict.is_ok()).count();
        let wall: f64 = mine.iter().map(|o| o.wall.as_secs_f64()).sum();
        let simulated: f64 = mine.iter().map(|o| o.simulated.as_secs_f64()).sum();
        let longest = mine.iter().max_by_key(|o| o.wall);
        println!(
            "{:<24} {:>6} {:>6} {:>6} {:>9.2} {:>14} {:>12.1}",
            scenario.name,
            mine.len(),
            passed,
            mine.len() - passed,
            // Per job: what one thread gets through.
            mine.len() as f64 / wall.max(f64::EPSILON),
            longest.map_or(String::new(), |o| format!(
                "{:.2} s ({})",
                o.wall.as_secs_f64(),
                o.seed
            )),
            simulated / mine.len().max(1) as f64,
        );
        failed.extend(mine.into_iter().filter(|o| o.verdict.is_err()));
    }
    println!(
        "{} seeds in {:.1} s on {} jobs",
        outcomes.len(),
        total.as_secs_f64(),
        args.jobs
    );
    if failed.is_empty() {
        return ExitCode::SUCCESS;
    }
    println!("\n{} seed(s) failed:", failed.len());
    let mut out = std::io::stdout().lock();
    for outcome in failed {
        print_failure(&mut out, outcome);
    }
    ExitCode::FAILURE
}

/// The timeline of a run, under a header naming it.
fn print_trace(out: &mut impl Write, outcome: &Outcome) {
    let _ = writeln!(out, "# {} seed {}", outcome.scenario, outcome.seed);
    for line in outcome.trace.lines() {
        let _ = writeln!(out, "{line}");
    }
}

/// A failed run: its violation and the command that replays it.
fn print_failure(out: &mut impl Write, outcome: &Outcome) {
    if let Err(violation) = &outcome.verdict {
        let _ = writeln!(
            out,
            "FAILED {} seed {}: {violation}\n  replay: {}",
            outcome.scenario,
            outcome.seed,
            outcome.replay_command()
        );
    }
}
