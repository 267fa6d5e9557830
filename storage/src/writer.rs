//! The async shell around a [`Log`]: shares it between producers, readers
//! and one commit task that runs the fsyncs (group commit).
//!
//! Appenders write under a short lock and then wait for durability: under
//! [`Durability::EveryBatch`] the commit task starts an fsync as soon as
//! something is written and, while one runs, later appends pile up to share
//! the next; under [`Durability::IntervalMs`] it fsyncs at most once per
//! interval; under [`Durability::Never`] nobody waits. Readers plan under the
//! lock and read without it, so a large fetch never blocks producers.
//!
//! Time comes from tokio (so the simulation's clock drives it); fsyncs run
//! on tokio's blocking pool on a real disk and inline on [`crate::MemFs`].

use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::{Mutex, MutexGuard};
use tokio::sync::{Notify, watch};

use crate::batch::Batch;
use crate::config::Durability;
use crate::error::{Result, StorageError};
use crate::log::{AppendInfo, AppendOutcome, Log, ReadChunk, RetentionReport};
use crate::types::{LocalOffset, OriginStream, Record};

/// What readers and waiting appenders watch.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Visibility {
    /// Everything below is visible (durable, or written under `Never`).
    offset: LocalOffset,
    /// Set when the log failed; waiters get this error.
    failed: Option<String>,
}

/// A log shared between tasks. Cheap to clone.
#[derive(Clone)]
pub struct SharedLog {
    inner: Arc<Inner>,
}

struct Inner {
    log: Mutex<Log>,
    durability: Durability,
    visible: watch::Sender<Visibility>,
    /// Wakes the commit task; outlives `Inner` so the task can see it drop.
    wake: Arc<Notify>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.wake.notify_one();
    }
}

impl std::fmt::Debug for SharedLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("SharedLog")
            .field(&*self.inner.log.lock())
            .finish()
    }
}

/// An append that is written; await [`Pending::durable`] for the
/// acknowledgement the durability policy promises.
#[must_use = "an append is acknowledged only once durable"]
#[derive(Debug)]
pub struct Pending<T> {
    value: T,
    next_offset: Option<LocalOffset>,
    log: SharedLog,
}

impl<T> Pending<T> {
    /// What was written (not yet durable).
    pub fn value(&self) -> &T {
        &self.value
    }

    /// Waits until the write is durable per the log's policy.
    pub async fn durable(self) -> Result<T> {
        if let Some(next_offset) = self.next_offset {
            self.log.wait_durable(next_offset).await?;
        }
        Ok(self.value)
    }
}

impl SharedLog {
    /// Shares `log` and spawns its commit task on the current tokio runtime.
    pub fn new(log: Log) -> SharedLog {
        let durability = log.config().durability;
        let blocking_io = log.fs_blocking_io();
        let (visible, _) = watch::channel(Visibility {
            offset: log.visible_offset(),
            failed: None,
        });
        let wake = Arc::new(Notify::new());
        let inner = Arc::new(Inner {
            log: Mutex::new(log),
            durability,
            visible,
            wake: wake.clone(),
        });
        if durability.waits_for_sync() {
            tokio::spawn(commit_loop(Arc::downgrade(&inner), wake, blocking_io));
        }
        SharedLog { inner }
    }

    /// Locks the log for lookups (prefix vectors, coordinates, metadata).
    /// Hold it briefly: appends wait for it.
    pub fn lock(&self) -> MutexGuard<'_, Log> {
        self.inner.log.lock()
    }

    /// Appends records that originate here (see [`Log::append_local`]).
    pub fn append_local(
        &self,
        origin: &OriginStream,
        records: &[Record],
        now_ms: u64,
    ) -> Result<Pending<AppendInfo>> {
        let info = self
            .inner
            .log
            .lock()
            .append_local(origin, records, now_ms)?;
        let next = info.next_offset;
        Ok(self.written(info, Some(next)))
    }

    /// Appends a batch from another region (see [`Log::append_batch`]).
    pub fn append_batch(&self, batch: &Batch, now_ms: u64) -> Result<Pending<AppendOutcome>> {
        let outcome = self.inner.log.lock().append_batch(batch, now_ms)?;
        let next = match &outcome {
            AppendOutcome::Appended { info, .. } => Some(info.next_offset),
            AppendOutcome::Duplicate => None,
        };
        Ok(self.written(outcome, next))
    }

    fn written<T>(&self, value: T, next_offset: Option<LocalOffset>) -> Pending<T> {
        if next_offset.is_some() {
            if self.inner.durability.waits_for_sync() {
                self.inner.wake.notify_one();
            } else {
                let visible = self.inner.log.lock().visible_offset();
                self.publish(visible);
            }
        }
        Pending {
            value,
            next_offset,
            log: self.clone(),
        }
    }

    fn publish(&self, offset: LocalOffset) {
        advance(&self.inner.visible, offset);
    }

    async fn wait_durable(&self, next_offset: LocalOffset) -> Result<()> {
        if !self.inner.durability.waits_for_sync() {
            return Ok(());
        }
        let mut receiver = self.inner.visible.subscribe();
        let state = receiver
            .wait_for(|state| state.failed.is_some() || state.offset >= next_offset)
            .await
            .map_err(|_| StorageError::Closed)?;
        match &state.failed {
            Some(reason) if state.offset < next_offset => Err(StorageError::Failed {
                reason: reason.clone(),
            }),
            _ => Ok(()),
        }
    }

    /// The visible end (the high watermark).
    pub fn visible_offset(&self) -> LocalOffset {
        self.inner.visible.borrow().offset
    }

    /// Waits until something at or after `offset` is visible, or `timeout`
    /// passes (tokio time). Returns the visible end.
    pub async fn wait_visible(&self, offset: LocalOffset, timeout: Duration) -> LocalOffset {
        let mut receiver = self.inner.visible.subscribe();
        let wait = receiver.wait_for(|state| state.offset > offset || state.failed.is_some());
        let _ = tokio::time::timeout(timeout, wait).await;
        self.visible_offset()
    }

    /// Reads whole batches from `from` (see [`Log::read`]); the file read
    /// happens without the lock.
    pub fn read(&self, from: LocalOffset, bytes_max: usize) -> Result<ReadChunk> {
        let plan = self.inner.log.lock().plan_read(from, bytes_max)?;
        match plan {
            Some(plan) => plan.execute(),
            None => Ok(ReadChunk {
                bytes: bytes::Bytes::new(),
                first_offset: from,
                next_offset: from,
            }),
        }
    }

    /// Runs retention (see [`Log::apply_retention`]).
    pub fn apply_retention(&self, now_ms: u64) -> Result<RetentionReport> {
        self.inner.log.lock().apply_retention(now_ms)
    }

    /// Stops writes and syncs everything; see [`Log::close`]. On a real disk
    /// the fsync runs on the blocking pool.
    pub async fn close(&self) -> Result<()> {
        let inner = self.inner.clone();
        let blocking = inner.log.lock().fs_blocking_io();
        let result = if blocking {
            tokio::task::spawn_blocking(move || inner.log.lock().close())
                .await
                .unwrap_or_else(|error| {
                    Err(StorageError::Failed {
                        reason: error.to_string(),
                    })
                })
        } else {
            inner.log.lock().close()
        };
        let visible = self.inner.log.lock().visible_offset();
        self.publish(visible);
        result
    }
}

/// The commit task: one fsync at a time; appends made while one runs share
/// the next. Exits when the log is dropped, closed or failed.
async fn commit_loop(inner: Weak<Inner>, wake: Arc<Notify>, blocking_io: bool) {
    let mut last_sync_start = tokio::time::Instant::now();
    loop {
        wake.notified().await;
        let Some(shared) = inner.upgrade() else {
            return;
        };
        if let Durability::IntervalMs(ms) = shared.durability {
            let due = last_sync_start + Duration::from_millis(ms);
            drop(shared);
            tokio::time::sleep_until(due).await;
        } else {
            drop(shared);
        }
        let Some(shared) = inner.upgrade() else {
            return;
        };
        let plan = {
            let log = shared.log.lock();
            if log.is_closed() {
                return;
            }
            log.plan_sync()
        };
        let Some(plan) = plan else { continue };
        last_sync_start = tokio::time::Instant::now();
        let result = if blocking_io {
            let job = plan.clone();
            tokio::task::spawn_blocking(move || job.execute())
                .await
                .unwrap_or_else(|error| {
                    Err(StorageError::Failed {
                        reason: error.to_string(),
                    })
                })
        } else {
            plan.execute()
        };
        let synced = shared.log.lock().handle_synced(&plan, result);
        match synced {
            Ok(offset) => advance(&shared.visible, offset),
            Err(error) => {
                shared
                    .visible
                    .send_modify(|state| state.failed = Some(error.to_string()));
                return;
            }
        }
    }
}

/// Moves the visible end forward (never back) and wakes watchers if it moved.
fn advance(visible: &watch::Sender<Visibility>, offset: LocalOffset) {
    visible.send_if_modified(|state| {
        let advanced = offset > state.offset;
        if advanced {
            state.offset = offset;
        }
        advanced
    });
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::config::LogConfig;
    use crate::fs::{FileSystem, MemFs};
    use crate::types::{Incarnation, RegionId};

    fn origin() -> OriginStream {
        OriginStream {
            region: RegionId::parse("us-east").expect("valid"),
            incarnation: Incarnation(1),
        }
    }

    fn shared(fs: &MemFs, durability: Durability) -> SharedLog {
        let config = LogConfig {
            durability,
            ..LogConfig::default()
        };
        let log = Log::open(Arc::new(fs.clone()), "/log", config, None, 0).expect("opens");
        SharedLog::new(log)
    }

    #[tokio::test]
    async fn concurrent_appends_share_fsyncs() {
        let fs = MemFs::new();
        let log = shared(&fs, Durability::EveryBatch);
        let syncs_before = fs.sync_count();
        let tasks: Vec<_> = (0..200)
            .map(|i| {
                let log = log.clone();
                tokio::spawn(async move {
                    let record = Record::from_value(format!("r{i}"));
                    log.append_local(&origin(), &[record], 0)
                        .expect("appends")
                        .durable()
                        .await
                        .expect("durable")
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("task runs");
        }
        let syncs = fs.sync_count() - syncs_before;
        assert!(syncs < 20, "200 appends took {syncs} fsyncs");
        assert_eq!(log.visible_offset(), LocalOffset(200));
    }

    #[tokio::test(start_paused = true)]
    async fn interval_policy_acknowledges_after_the_covering_fsync() {
        let fs = MemFs::new();
        let log = shared(&fs, Durability::IntervalMs(50));
        // The first fsync after idle runs at once; the next waits its turn.
        log.append_local(&origin(), &[Record::from_value("a")], 0)
            .expect("appends")
            .durable()
            .await
            .expect("durable");
        let start = tokio::time::Instant::now();
        let pending = log
            .append_local(&origin(), &[Record::from_value("b")], 0)
            .expect("appends");
        assert_eq!(
            log.visible_offset(),
            LocalOffset(1),
            "b is not visible before its fsync"
        );
        pending.durable().await.expect("durable");
        assert!(
            start.elapsed() >= Duration::from_millis(40),
            "waited {:?}",
            start.elapsed()
        );
        assert_eq!(log.visible_offset(), LocalOffset(2));
    }

    #[tokio::test]
    async fn never_policy_makes_writes_visible_at_once() {
        let fs = MemFs::new();
        let log = shared(&fs, Durability::Never);
        let syncs_before = fs.sync_count();
        log.append_local(&origin(), &[Record::from_value("a")], 0)
            .expect("appends")
            .durable()
            .await
            .expect("acknowledged");
        assert_eq!(log.visible_offset(), LocalOffset(1));
        assert_eq!(fs.sync_count(), syncs_before);
    }

    #[tokio::test(start_paused = true)]
    async fn long_polls_wake_on_new_data_or_time_out() {
        let fs = MemFs::new();
        let log = shared(&fs, Durability::EveryBatch);
        let waiter = {
            let log = log.clone();
            tokio::spawn(async move {
                log.wait_visible(LocalOffset(0), Duration::from_secs(30))
                    .await
            })
        };
        tokio::task::yield_now().await;
        log.append_local(&origin(), &[Record::from_value("a")], 0)
            .expect("appends")
            .durable()
            .await
            .expect("durable");
        assert_eq!(waiter.await.expect("task"), LocalOffset(1));
        let start = tokio::time::Instant::now();
        let visible = log
            .wait_visible(LocalOffset(1), Duration::from_millis(200))
            .await;
        assert_eq!(visible, LocalOffset(1));
        assert!(start.elapsed() >= Duration::from_millis(200));
    }

    #[tokio::test]
    async fn a_failed_fsync_fails_the_waiting_appends() {
        let fs = MemFs::new();
        let log = shared(&fs, Durability::EveryBatch);
        fs.set_fail_syncs(true);
        let result = log
            .append_local(&origin(), &[Record::from_value("a")], 0)
            .expect("written")
            .durable()
            .await;
        assert!(
            matches!(result, Err(StorageError::Failed { .. })),
            "{result:?}"
        );
        assert_eq!(log.visible_offset(), LocalOffset(0));
    }

    #[tokio::test]
    async fn close_syncs_and_marks_the_log_clean() {
        let fs = MemFs::new();
        let log = shared(&fs, Durability::IntervalMs(1000));
        let pending = log
            .append_local(&origin(), &[Record::from_value("a")], 0)
            .expect("appends");
        log.close().await.expect("closes");
        pending.durable().await.expect("close made it durable");
        assert!(matches!(
            log.append_local(&origin(), &[Record::from_value("b")], 0),
            Err(StorageError::Closed)
        ));
        assert!(fs.exists(std::path::Path::new("/log/.clean")));
    }
}
