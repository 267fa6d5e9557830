//! Kill -9 a writer at random moments and check that every acknowledged
//! record survives, intact and in order.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use meshgate_storage::{Incarnation, LocalOffset, Log, LogConfig, StdFs};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const KILLS: u32 = 24;

fn value(run: u32, task: u32, n: u64) -> String {
    format!(
        "run-{run}-task-{task}-n-{n}-{}",
        "p".repeat((n % 97) as usize * 9)
    )
}

struct Ack {
    run: u32,
    task: u32,
    n: u64,
    offset: u64,
}

fn parse_ack(line: &str) -> Option<Ack> {
    let mut words = line.strip_prefix("ack ")?.split(' ');
    let ack = Ack {
        run: words.next()?.parse().ok()?,
        task: words.next()?.parse().ok()?,
        n: words.next()?.parse().ok()?,
        offset: words.next()?.parse().ok()?,
    };
    words.next().is_none().then_some(ack)
}

/// Runs the writer until it has acknowledged something and `delay` more has
/// passed, kills it with SIGKILL, and returns every ack it printed.
fn run_and_kill(dir: &std::path::Path, run: u32, delay: Duration) -> Vec<Ack> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_meshgate-storage-crash-writer"))
        .arg(dir)
        .arg(run.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("writer starts");
    let stdout = child.stdout.take().expect("stdout is piped");
    let (first_ack, first_ack_seen) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut acks = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            // A line cut by the kill does not parse and is not counted.
            if let Some(ack) = parse_ack(&line) {
                if acks.is_empty() {
                    let _ = first_ack.send(());
                }
                acks.push(ack);
            }
        }
        acks
    });
    first_ack_seen
        .recv_timeout(Duration::from_secs(30))
        .expect("the writer acknowledges within 30 s");
    std::thread::sleep(delay);
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");
    reader.join().expect("reader thread")
}

#[test]
fn every_acknowledged_record_survives_kill_minus_nine() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut rng = SmallRng::seed_from_u64(0x6d65_7368);
    let mut acked: BTreeMap<u64, String> = BTreeMap::new();
    let mut total_kills = 0;
    for run in 0..KILLS {
        let delay = Duration::from_millis(rng.random_range(1..250));
        for ack in run_and_kill(dir.path(), run, delay) {
            assert_eq!(ack.run, run);
            let previous = acked.insert(ack.offset, value(ack.run, ack.task, ack.n));
            assert!(
                previous.is_none(),
                "offset {} acknowledged twice",
                ack.offset
            );
        }
        total_kills += 1;

        let log = Log::open(
            Arc::new(StdFs),
            dir.path(),
            LogConfig::default(),
            Some(Incarnation(1)),
            0,
        )
        .expect("recovers after kill -9");
        let mut offset = log.start_offset();
        let mut stored = BTreeMap::new();
        let mut last_n: BTreeMap<(String, String), u64> = BTreeMap::new();
        loop {
            let chunk = log.read(offset, 1 << 20).expect("reads");
            if chunk.bytes.is_empty() {
                break;
            }
            for record in chunk.records_from(offset).expect("intact records") {
                let text = String::from_utf8(record.record.value.to_vec()).expect("utf-8");
                // Per producer, records are in the order they were written.
                let parts: Vec<&str> = text.split('-').collect();
                let producer = (parts[1].to_string(), parts[3].to_string());
                let n: u64 = parts[5].parse().expect("n");
                if let Some(&previous) = last_n.get(&producer) {
                    assert!(
                        n > previous,
                        "producer {producer:?} out of order at {}",
                        record.offset.0
                    );
                }
                last_n.insert(producer, n);
                stored.insert(record.offset.0, text);
            }
            offset = chunk.next_offset;
        }
        for (offset, expected) in &acked {
            assert_eq!(
                stored.get(offset),
                Some(expected),
                "run {run}: acknowledged record at offset {offset} lost or changed"
            );
        }
        assert_eq!(log.end_offset(), LocalOffset(stored.len() as u64));
    }
    assert_eq!(total_kills, KILLS);
    eprintln!(
        "{KILLS} kills, {} acknowledged records checked",
        acked.len()
    );
    assert!(
        acked.len() > KILLS as usize,
        "the writer made progress: {} acks",
        acked.len()
    );
}
