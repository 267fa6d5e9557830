//! Durable node metadata (topic definitions, committed group positions, and
//! later rules) as a key-value store kept in an internal log: the same
//! crash-safety story as the data. Each change is a record (key, value) or a
//! tombstone; open replays the log. A change made of several keys is one
//! batch, so it survives a crash whole or not at all.
//!
//! Compaction: once the log is much larger than the live entries, the log is
//! rolled, every live entry is written again as a snapshot, and the
//! segments before the snapshot are deleted once it is durable. Replaying
//! older segments before a snapshot (after a crash mid-compaction) gives the
//! same result, since the snapshot rewrites every live key.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use meshgate_storage::{
    Durability, FileSystem, Header, Incarnation, LocalOffset, Log, LogConfig, OriginStream, Record,
    RegionId, SharedLog, StorageError,
};
use parking_lot::Mutex;

use crate::clock::Clock;

const TOMBSTONE: &str = "tombstone";
/// Compact once the log holds more than this many bytes...
const COMPACT_BYTES_MIN: u64 = 16 << 20;
/// ...and more than this many times the live entries.
const COMPACT_RATIO: u64 = 4;
/// Most bytes of entries per snapshot batch.
const SNAPSHOT_BATCH_BYTES: usize = 1 << 20;

/// A durable key-value store of node metadata. Cheap to clone.
#[derive(Clone)]
pub struct MetaStore {
    inner: Arc<Inner>,
}

struct Inner {
    log: SharedLog,
    origin: OriginStream,
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    entries: BTreeMap<String, Bytes>,
    live_bytes: u64,
}

impl std::fmt::Debug for MetaStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetaStore")
            .field("entries", &self.inner.state.lock().entries.len())
            .finish()
    }
}

impl State {
    fn apply(&mut self, key: String, value: Option<Bytes>) {
        let added = value.as_ref().map_or(0, |v| (key.len() + v.len()) as u64);
        let removed = match value {
            Some(value) => self.entries.insert(key.clone(), value),
            None => self.entries.remove(&key),
        };
        let removed = removed.map_or(0, |v| (key.len() + v.len()) as u64);
        self.live_bytes = self.live_bytes + added - removed;
    }
}

fn to_record(key: &str, value: &Option<Bytes>) -> Record {
    Record {
        key: Some(Bytes::copy_from_slice(key.as_bytes())),
        value: value.clone().unwrap_or_default(),
        headers: match value {
            Some(_) => Vec::new(),
            None => vec![Header {
                key: TOMBSTONE.into(),
                value: Bytes::new(),
            }],
        },
        timestamp: Default::default(),
    }
}

impl MetaStore {
    /// Opens (or creates) the store in `dir` and replays it.
    pub fn open(
        fs: Arc<dyn FileSystem>,
        dir: PathBuf,
        clock: Arc<dyn Clock>,
    ) -> Result<MetaStore, StorageError> {
        let config = LogConfig {
            durability: Durability::EveryBatch,
            segment_bytes_max: 64 << 20,
            batch_bytes_max: 16 << 20,
            ..LogConfig::default()
        };
        let log = Log::open(fs, dir, config, None, clock.now_ms())?;
        let mut state = State::default();
        let mut offset = log.start_offset();
        loop {
            let chunk = log.read(offset, 4 << 20)?;
            if chunk.bytes.is_empty() {
                break;
            }
            for stored in chunk.records_from(offset)? {
                let record = stored.record;
                let Some(key) = record.key.and_then(|k| String::from_utf8(k.to_vec()).ok()) else {
                    return Err(StorageError::InvalidBatch {
                        reason: format!("metadata record at {} has no UTF-8 key", stored.offset.0),
                    });
                };
                let tombstone = record.headers.iter().any(|h| h.key == TOMBSTONE);
                state.apply(key, (!tombstone).then_some(record.value));
            }
            offset = chunk.next_offset;
        }
        let origin = OriginStream {
            region: RegionId::parse("meta").expect("a valid constant name"),
            incarnation: Incarnation(0),
        };
        Ok(MetaStore {
            inner: Arc::new(Inner {
                log: SharedLog::new(log),
                origin,
                clock,
                state: Mutex::new(state),
            }),
        })
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<Bytes> {
        self.inner.state.lock().entries.get(key).cloned()
    }

    /// Every entry whose key starts with `prefix`, in key order.
    pub fn with_prefix(&self, prefix: &str) -> Vec<(String, Bytes)> {
        let state = self.inner.state.lock();
        state
            .entries
            .range(prefix.to_string()..)
            .take_while(|(key, _)| key.starts_with(prefix))
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect()
    }

    /// Sets `key`; returns once durable.
    pub async fn put(&self, key: impl Into<String>, value: Bytes) -> Result<(), StorageError> {
        self.apply(vec![(key.into(), Some(value))]).await
    }

    /// Removes `key`; returns once durable.
    pub async fn delete(&self, key: impl Into<String>) -> Result<(), StorageError> {
        self.apply(vec![(key.into(), None)]).await
    }

    /// Applies several changes as one atomic batch (`None` deletes);
    /// returns once durable. Readers see the changes at once.
    pub async fn apply(&self, changes: Vec<(String, Option<Bytes>)>) -> Result<(), StorageError> {
        if changes.is_empty() {
            return Ok(());
        }
        let records: Vec<Record> = changes.iter().map(|(k, v)| to_record(k, v)).collect();
        let pending = {
            // Appending under the state lock keeps the log's order and the
            // map's order the same.
            let mut state = self.inner.state.lock();
            let pending = self.inner.log.append_local(
                &self.inner.origin,
                &records,
                self.inner.clock.now_ms(),
            )?;
            for (key, value) in changes {
                state.apply(key, value);
            }
            pending
        };
        pending.durable().await?;
        self.compact_if_due().await
    }

    async fn compact_if_due(&self) -> Result<(), StorageError> {
        // Lock order everywhere: state, then log.
        let live = self.inner.state.lock().live_bytes;
        let size = self.inner.log.lock().size_bytes();
        if size < COMPACT_BYTES_MIN || size < COMPACT_RATIO * live.max(1) {
            return Ok(());
        }
        let (snapshot_start, pending) = {
            let state = self.inner.state.lock();
            let now_ms = self.inner.clock.now_ms();
            self.inner.log.lock().roll_now(now_ms)?;
            let snapshot_start: LocalOffset = self.inner.log.lock().end_offset();
            let mut pending = Vec::new();
            let mut batch = Vec::new();
            let mut batch_bytes = 0;
            for (key, value) in &state.entries {
                batch_bytes += key.len() + value.len();
                batch.push(to_record(key, &Some(value.clone())));
                if batch_bytes >= SNAPSHOT_BATCH_BYTES {
                    pending.push(self.inner.log.append_local(
                        &self.inner.origin,
                        &batch,
                        now_ms,
                    )?);
                    batch.clear();
                    batch_bytes = 0;
                }
            }
            if !batch.is_empty() {
                pending.push(
                    self.inner
                        .log
                        .append_local(&self.inner.origin, &batch, now_ms)?,
                );
            }
            (snapshot_start, pending)
        };
        for write in pending {
            write.durable().await?;
        }
        let report = self
            .inner
            .log
            .lock()
            .delete_segments_before(snapshot_start)?;
        tracing::info!(target: "meshgate::meta", deleted_bytes = report.deleted_bytes, "compacted metadata");
        Ok(())
    }

    /// Syncs and closes the store.
    pub async fn close(&self) -> Result<(), StorageError> {
        self.inner.log.close().await
    }
}

#[cfg(test)]
mod tests {
    use meshgate_storage::{CrashMode, MemFs};

    use super::*;
    use crate::clock::SystemClock;

    fn open(fs: &MemFs) -> MetaStore {
        MetaStore::open(
            Arc::new(fs.clone()),
            PathBuf::from("/meta"),
            Arc::new(SystemClock),
        )
        .expect("opens")
    }

    #[tokio::test]
    async fn entries_survive_a_crash_once_acknowledged() {
        let fs = MemFs::new();
        let store = open(&fs);
        store
            .put("topic/a", Bytes::from_static(b"1"))
            .await
            .expect("puts");
        store
            .put("topic/b", Bytes::from_static(b"2"))
            .await
            .expect("puts");
        store.delete("topic/a").await.expect("deletes");
        store
            .apply(vec![
                ("x/1".into(), Some(Bytes::from_static(b"y"))),
                ("topic/b".into(), None),
            ])
            .await
            .expect("applies");
        drop(store);
        fs.crash(CrashMode::LoseUnsynced);
        let store = open(&fs);
        assert_eq!(store.get("topic/a"), None);
        assert_eq!(store.get("topic/b"), None);
        assert_eq!(store.get("x/1"), Some(Bytes::from_static(b"y")));
        assert_eq!(store.with_prefix("x/").len(), 1);
    }

    #[tokio::test]
    async fn compaction_keeps_exactly_the_live_entries() {
        let fs = MemFs::new();
        let store = open(&fs);
        let value = Bytes::from(vec![7u8; 64 << 10]);
        // 400 overwrites of 4 keys: far more log than live data.
        for i in 0..400 {
            store
                .put(format!("k/{}", i % 4), value.clone())
                .await
                .expect("puts");
        }
        store
            .put("k/last", Bytes::from_static(b"end"))
            .await
            .expect("puts");
        let size = store.inner.log.lock().size_bytes();
        assert!(
            size < 2 * COMPACT_BYTES_MIN,
            "log was compacted: {size} bytes"
        );
        drop(store);
        fs.crash(CrashMode::LoseUnsynced);
        let store = open(&fs);
        assert_eq!(store.with_prefix("k/").len(), 5);
        assert_eq!(store.get("k/last"), Some(Bytes::from_static(b"end")));
        assert_eq!(store.get("k/3"), Some(value));
    }
}
