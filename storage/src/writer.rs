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
