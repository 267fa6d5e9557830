//! Append and read throughput of the log, beside plain sequential file
//! writes of the same bytes in the same run.
//!
//! `cargo bench -p meshgate-storage` runs every case; a filter such as
//! `cargo bench -p meshgate-storage -- append/1024B` runs some. Data goes to
//! `$MESHGATE_BENCH_DIR` (default: the system temp dir), which must be a real
//! disk for the fsync figures to mean anything.
//!
//! Producers pipeline: up to `WINDOW` appends are in flight, each
//! acknowledged when its durability policy says (as a Kafka producer with
//! several in-flight requests would see it). The summary at the end prints
//! MB/s and the ratio to the raw sequential-write figure for the same record
//! size and batch size.

use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput};
use meshgate_storage::{
    Batch, Durability, Incarnation, LocalOffset, Log, LogConfig, OriginSeq, OriginStream, Record,
    RegionId, SharedLog, StdFs, Timestamp,
};

/// Appends in flight per producer before it waits for the oldest ack.
const WINDOW: usize = 1024;
/// Bytes of record values appended per measured iteration (at most).
const BYTES_PER_ITERATION: usize = 32 << 20;
/// Records appended per measured iteration (at most).
const RECORDS_PER_ITERATION_MAX: usize = 200_000;
/// Bytes of the log the read benchmark scans.
const READ_LOG_BYTES: usize = 256 << 20;

/// Throughput figures in bytes per second, by case name.
static RESULTS: Mutex<BTreeMap<String, f64>> = Mutex::new(BTreeMap::new());

fn bench_dir() -> PathBuf {
    std::env::var_os("MESHGATE_BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from)
}

fn origin() -> OriginStream {
    OriginStream {
        region: RegionId::parse("bench").expect("valid region"),
        incarnation: Incarnation(1),
    }
}

fn records(record_bytes: usize, count: usize) -> Vec<Record> {
    (0..count)
        .map(|i| Record {
            key: Some(Bytes::from(format!("key-{i}"))),
            value: Bytes::from(
                (0..record_bytes)
                    .map(|b| (b * 31 + i) as u8)
                    .collect::<Vec<u8>>(),
            ),
            headers: Vec::new(),
            timestamp: Timestamp::from_millis(1_700_000_000_000),
        })
        .collect()
}

fn config(durability: Durability) -> LogConfig {
    LogConfig {
        durability,
        segment_bytes_max: 256 << 20,
        batch_bytes_max: 16 << 20,
        ..LogConfig::default()
    }
}

fn record(results_key: String, bytes: usize, elapsed: Duration) {
    let rate = bytes as f64 / elapsed.as_secs_f64();
    RESULTS
        .lock()
        .expect("results lock")
        .insert(results_key, rate);
}

/// Appends `batches` batches through the async shell and waits for the last
/// acknowledgement. Returns the elapsed time.
fn append_run(
    runtime: &tokio::runtime::Runtime,
    durability: Durability,
    batch: &[Record],
    batches: usize,
) -> Duration {
    let dir = tempfile::tempdir_in(bench_dir()).expect("bench dir");
    runtime.block_on(async {
        let log =
            Log::open(Arc::new(StdFs), dir.path(), config(durability), None, 0).expect("opens");
        let log = SharedLog::new(log);
        let origin = origin();
        #[allow(clippy::disallowed_methods)] // a benchmark measures wall time
        let start = std::time::Instant::now();
        let mut in_flight = VecDeque::with_capacity(WINDOW);
        for _ in 0..batches {
            if in_flight.len() == WINDOW {
                let oldest: meshgate_storage::Pending<_> =
                    in_flight.pop_front().expect("window is full");
                oldest.durable().await.expect("durable");
            }
            in_flight.push_back(log.append_local(&origin, batch, 0).expect("appends"));
        }
        for pending in in_flight {
            pending.durable().await.expect("durable");
        }
        let elapsed = start.elapsed();
        log.close().await.expect("closes");
        elapsed
    })
}

/// Writes the same encoded batches with plain `write_all` calls, then one
/// `fdatasync`. Returns the elapsed time.
fn raw_run(batch: &[Record], batches: usize) -> Duration {
    let dir = tempfile::tempdir_in(bench_dir()).expect("bench dir");
    let encoded = Batch::encode(LocalOffset(0), &origin(), OriginSeq(0), batch);
    let mut file = std::fs::File::create(dir.path().join("raw.log")).expect("creates");
    #[allow(clippy::disallowed_methods)] // a benchmark measures wall time
    let start = std::time::Instant::now();
    for _ in 0..batches {
        file.write_all(encoded.bytes()).expect("writes");
    }
    file.sync_data().expect("syncs");
    start.elapsed()
}

fn append_benches(criterion: &mut Criterion, runtime: &tokio::runtime::Runtime) {
    let policies = [
        ("every-batch", Durability::EveryBatch),
        ("10ms", Durability::IntervalMs(10)),
        ("never", Durability::Never),
    ];
    for record_bytes in [100usize, 1024] {
        let mut group = criterion.benchmark_group(format!("append/{record_bytes}B"));
        group.sample_size(10);
        group.warm_up_time(Duration::from_millis(500));
        group.measurement_time(Duration::from_secs(3));
        for batch_records in [1usize, 64, 1024] {
            let batch = records(record_bytes, batch_records);
            let total_records = (BYTES_PER_ITERATION / record_bytes).min(RECORDS_PER_ITERATION_MAX);
            let batches = (total_records / batch_records).max(1);
            let bytes = batches * batch_records * record_bytes;
            group.throughput(Throughput::Bytes(bytes as u64));
            let raw_key = format!("raw {record_bytes}B x{batch_records}");
            group.bench_function(BenchmarkId::new("raw-write", batch_records), |b| {
                b.iter_custom(|iterations| {
                    let elapsed: Duration = (0..iterations).map(|_| raw_run(&batch, batches)).sum();
                    record(raw_key.clone(), bytes * iterations as usize, elapsed);
                    elapsed
                })
            });
            for (name, durability) in policies {
                let key = format!("log {record_bytes}B x{batch_records} {name}");
                group.bench_function(BenchmarkId::new(name, batch_records), |b| {
                    b.iter_custom(|iterations| {
                        let elapsed: Duration = (0..iterations)
                            .map(|_| append_run(runtime, durability, &batch, batches))
                            .sum();
                        record(key.clone(), bytes * iterations as usize, elapsed);
                        elapsed
                    })
                });
            }
        }
        group.finish();
    }
}

fn read_bench(criterion: &mut Criterion, runtime: &tokio::runtime::Runtime) {
    let dir = tempfile::tempdir_in(bench_dir()).expect("bench dir");
    let batch = records(1024, 64);
    let batches = READ_LOG_BYTES / (1024 * 64);
    let log = runtime.block_on(async {
        let log = Log::open(
            Arc::new(StdFs),
            dir.path(),
            config(Durability::Never),
            None,
            0,
        )
        .expect("opens");
        let log = SharedLog::new(log);
        for _ in 0..batches {
            let _ = log.append_local(&origin(), &batch, 0).expect("appends");
        }
        log.close().await.expect("closes");
        log
    });
    let total_bytes = log.lock().size_bytes();
    let mut group = criterion.benchmark_group("read");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(total_bytes));
    group.bench_function("sequential-1MiB-fetches", |b| {
        b.iter_custom(|iterations| {
            #[allow(clippy::disallowed_methods)] // a benchmark measures wall time
            let start = std::time::Instant::now();
            for _ in 0..iterations {
                let mut offset = LocalOffset(0);
                let mut read = 0;
                loop {
                    let chunk = log.read(offset, 1 << 20).expect("reads");
                    if chunk.bytes.is_empty() {
                        break;
                    }
                    read += chunk.bytes.len();
                    offset = chunk.next_offset;
                }
                assert!(read as u64 > total_bytes * 9 / 10, "read the whole log");
            }
            let elapsed = start.elapsed();
            record(
                "read sequential 1MiB fetches".into(),
                total_bytes as usize * iterations as usize,
                elapsed,
            );
            elapsed
        })
    });
    group.finish();
}

fn print_summary() {
    let results = RESULTS.lock().expect("results lock");
    if results.is_empty() {
        return;
    }
    println!("\n{:<34} {:>10} {:>14}", "case", "MB/s", "ratio to raw");
    for (name, rate) in results.iter() {
        let raw = name
            .strip_prefix("log ")
            .and_then(|rest| rest.rsplit_once(' '))
            .and_then(|(shape, _)| results.get(&format!("raw {shape}")));
        let ratio = raw.map_or(String::from("-"), |raw| format!("{:.2}", rate / raw));
        println!("{name:<34} {:>10.1} {ratio:>14}", rate / 1e6);
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut criterion = Criterion::default().configure_from_args();
    append_benches(&mut criterion, &runtime);
    read_bench(&mut criterion, &runtime);
    criterion.final_summary();
    print_summary();
}
