//! Test support for `tests/crash.rs`: appends records with four concurrent
//! producers under `every-batch` durability and prints one line per
//! acknowledged record, `ack <run> <task> <n> <offset>`, until killed.
//!
//! Usage: `meshgate-storage-crash-writer <log-dir> <run>`

use std::io::Write;
use std::sync::Arc;

use meshgate_storage::{
    Durability, Incarnation, Log, LogConfig, OriginStream, Record, RegionId, SharedLog, StdFs,
};

const TASKS: u32 = 4;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: meshgate-storage-crash-writer <log-dir> <run>";
    let dir = args.next().ok_or(usage)?;
    let run: u32 = args.next().ok_or(usage)?.parse()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let config = LogConfig {
            segment_bytes_max: 256 << 10,
            batch_bytes_max: 64 << 10,
            index_interval_bytes: 4 << 10,
            origin_checkpoint_bytes: 32 << 10,
            durability: Durability::EveryBatch,
            ..LogConfig::default()
        };
        let log = SharedLog::new(Log::open(
            Arc::new(StdFs),
            dir,
            config,
            Some(Incarnation(1)),
            0,
        )?);
        let origin = OriginStream {
            region: RegionId::parse("crash-test")?,
            incarnation: Incarnation(1),
        };
        let stdout = Arc::new(std::sync::Mutex::new(std::io::stdout()));
        let mut tasks = Vec::new();
        for task in 0..TASKS {
            let (log, origin, stdout) = (log.clone(), origin.clone(), stdout.clone());
            tasks.push(tokio::spawn(async move {
                for n in 0u64.. {
                    let record = Record::from_value(value(run, task, n));
                    let info = log.append_local(&origin, &[record], 0)?.durable().await?;
                    let mut out = stdout.lock().expect("stdout lock is never poisoned");
                    writeln!(out, "ack {run} {task} {n} {}", info.base_offset.0)?;
                    out.flush()?;
                }
                Result::Ok(())
            }));
        }
        for task in tasks {
            task.await??;
        }
        Result::Ok(())
    })
}

/// The value written for record `n` of `task` in `run`; the test recomputes it.
fn value(run: u32, task: u32, n: u64) -> String {
    format!(
        "run-{run}-task-{task}-n-{n}-{}",
        "p".repeat((n % 97) as usize * 9)
    )
}
