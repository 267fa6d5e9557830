//! Produce: checks, idempotent-producer de-duplication, backpressure,
//! append, and the acknowledgement the producer asked for.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use meshgate_protocol::{Acks, ErrorCode, Produce, ProduceOk, ProduceRecord, WireError};
use meshgate_storage::{
    AppendInfo, HybridClock, LocalOffset, OriginStream, Pending, Record, RegionId, SharedLog,
};
use parking_lot::Mutex;
use tokio::sync::Semaphore;

use crate::clock::Clock;
use crate::config::Limits;
use crate::errors::storage_error;
use crate::topics::Topics;

/// Resent batches recognised per producer and partition: the last few
/// acknowledged sequence numbers (as Kafka keeps five).
const RECENT_BATCHES: usize = 5;
/// Backpressure accounting unit: permits are KiB of in-flight records.
const PERMIT_BYTES: u64 = 1024;

/// A run of sequence numbers one produce request covers, for
/// de-duplication: native producers number batches (`count` 1), Kafka
/// producers number records (`first` is the batch's base sequence, `count`
/// its records), so the next request starts at `first + count` either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SequenceRun {
    /// The producer's identity in the de-duplication windows. Native ids
    /// are chosen at random by producers; the Kafka listener derives its
    /// keys from (producer id, epoch) so the two never meet in practice.
    pub producer: u64,
    /// The sequence number of the first batch or record.
    pub first: u64,
    /// How many sequence numbers the request uses (at least 1).
    pub count: u64,
}

impl From<meshgate_protocol::ProducerSequence> for SequenceRun {
    fn from(sequence: meshgate_protocol::ProducerSequence) -> Self {
        Self {
            producer: sequence.producer_id,
            first: sequence.sequence,
            count: 1,
        }
    }
}

/// What the node remembers of one idempotent producer in one partition.
#[derive(Debug, Default)]
struct ProducerWindow {
    /// The sequence number the next new request must start at.
    next_sequence: Option<u64>,
    recent: VecDeque<(u64, Produced)>,
}

enum SequenceCheck {
    New,
    Duplicate(Produced),
}

impl ProducerWindow {
    fn check(&self, sequence: u64) -> Result<SequenceCheck, WireError> {
        let Some(next) = self.next_sequence else {
            return Ok(SequenceCheck::New);
        };
        if sequence == next {
            return Ok(SequenceCheck::New);
        }
        if sequence > next {
            return Err(WireError::new(
                ErrorCode::OutOfOrderSequence,
                format!("expected sequence {next}, got {sequence}"),
            ));
        }
        match self.recent.iter().find(|(seq, _)| *seq == sequence) {
            Some((_, ok)) => Ok(SequenceCheck::Duplicate(ok.clone())),
            None => Err(WireError::new(
                ErrorCode::OutOfOrderSequence,
                format!(
                    "sequence {sequence} is older than the de-duplication window (next {next})"
                ),
            )),
        }
    }

    fn record(&mut self, sequence: u64, count: u64, ok: Produced) {
        self.next_sequence = Some(sequence.saturating_add(count.max(1)));
        if self.recent.len() == RECENT_BATCHES {
            self.recent.pop_front();
        }
        self.recent.push_back((sequence, ok));
    }
}

type WindowKey = (u64, u64, u32);

/// An accepted produce: where it landed, and the origin seq after its last
/// record (what `mirrored(k)` waits for other regions to hold).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Produced {
    /// The answer to the producer.
    pub ok: ProduceOk,
    /// Origin seq after the last record, in the local origin stream.
    pub seq_end: u64,
}

enum Appended {
    New(Pending<AppendInfo>, Produced),
    Duplicate(Produced),
}

/// Everything a produce needs besides the topics.
pub struct Producers {
    windows: moka::sync::Cache<WindowKey, Arc<Mutex<ProducerWindow>>>,
    in_flight: Arc<Semaphore>,
    hlc: Mutex<HybridClock>,
    origin_region: RegionId,
    limits: Limits,
}

impl std::fmt::Debug for Producers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producers")
            .field("windows", &self.windows.entry_count())
            .finish()
    }
}

impl Producers {
    /// Sets up de-duplication windows and backpressure per `limits`.
    pub fn new(region: RegionId, limits: &Limits) -> Self {
        let permits =
            (limits.produce_in_flight_bytes_max / PERMIT_BYTES).clamp(1, u64::from(u32::MAX >> 3));
        Self {
            windows: moka::sync::Cache::builder()
                .max_capacity(limits.producers_max)
                .time_to_idle(Duration::from_millis(limits.producer_idle_ms))
                .build(),
            in_flight: Arc::new(Semaphore::new(permits as usize)),
            hlc: Mutex::new(HybridClock::default()),
            origin_region: region,
            limits: limits.clone(),
        }
    }

    /// A fresh hybrid-logical-clock reading.
    pub fn timestamp(&self, clock: &dyn Clock) -> meshgate_storage::Timestamp {
        self.hlc.lock().tick(clock.now_ms())
    }

    /// Handles one produce request.
    pub async fn produce(
        &self,
        topics: &Topics,
        clock: &dyn Clock,
        request: Produce,
    ) -> Result<Produced, WireError> {
        let run = request.producer.map(SequenceRun::from);
        self.produce_run(topics, clock, request, run).await
    }

    /// Handles one produce request whose idempotence is described by `run`
    /// (and not by `request.producer`, which is ignored).
    pub async fn produce_run(
        &self,
        topics: &Topics,
        clock: &dyn Clock,
        request: Produce,
        run: Option<SequenceRun>,
    ) -> Result<Produced, WireError> {
        if request.records.is_empty() {
            return Err(WireError::new(
                ErrorCode::InvalidArgument,
                "a produce request needs at least one record",
            ));
        }
        let mut bytes: u64 = 0;
        for (index, record) in request.records.iter().enumerate() {
            let size = record.key.as_ref().map_or(0, |k| k.len())
                + record.value.len()
                + record
                    .headers
                    .iter()
                    .map(|h| h.key.len() + h.value.len())
                    .sum::<usize>();
            if size > self.limits.record_bytes_max as usize {
                return Err(WireError::new(
                    ErrorCode::RecordTooLarge,
                    format!(
                        "record {index} has {size} bytes; the limit is {}",
                        self.limits.record_bytes_max
                    ),
                ));
            }
            bytes += size as u64;
        }
        let topic = topics.get(&request.topic)?;
        let log = topic.partition(request.partition)?.clone();
        let origin = OriginStream {
            region: self.origin_region.clone(),
            incarnation: topic.incarnation(),
        };

        let permits = (bytes / PERMIT_BYTES + 1).min(self.in_flight_permits_max()) as u32;
        let wait = Duration::from_millis(self.limits.produce_wait_ms_max);
        let _permit =
            tokio::time::timeout(wait, self.in_flight.clone().acquire_many_owned(permits))
                .await
                .map_err(|_| {
                    WireError::new(
                        ErrorCode::Busy,
                        "the node is saturated with writes; retry shortly",
                    )
                })?
                .map_err(|_| {
                    WireError::new(ErrorCode::ShuttingDown, "the node is shutting down")
                })?;

        let window = run.map(|run| {
            let key = (run.producer, topic.incarnation().0, request.partition);
            (run, self.windows.get_with(key, Default::default))
        });
        let appended = self.append_once(&log, &origin, clock, request.records, window.as_ref())?;
        let (pending, produced) = match appended {
            Appended::New(pending, produced) => (pending, produced),
            Appended::Duplicate(mut produced) => {
                let end = produced.ok.base_offset + u64::from(produced.ok.record_count);
                wait_durable(&log, LocalOffset(end)).await;
                produced.ok.duplicate = true;
                return Ok(produced);
            }
        };
        match request.acks {
            Acks::None => Ok(produced),
            // Mirrored acknowledgements wait for local durability here and
            // for the other regions in the caller.
            Acks::Local | Acks::Mirrored(_) => {
                pending.durable().await.map_err(storage_error)?;
                Ok(produced)
            }
        }
    }

    /// Appends unless the window says this batch was appended already. The
    /// window stays locked from the check to the record, so two copies of a
    /// batch racing each other are appended once.
    fn append_once(
        &self,
        log: &SharedLog,
        origin: &OriginStream,
        clock: &dyn Clock,
        records: Vec<ProduceRecord>,
        window: Option<&(SequenceRun, Arc<Mutex<ProducerWindow>>)>,
    ) -> Result<Appended, WireError> {
        let mut guard = window.map(|(run, window)| (*run, window.lock()));
        if let Some((run, window)) = &guard
            && let SequenceCheck::Duplicate(ok) = window.check(run.first)?
        {
            return Ok(Appended::Duplicate(ok));
        }
        let now_ms = clock.now_ms();
        let records: Vec<Record> = {
            let mut hlc = self.hlc.lock();
            records
                .into_iter()
                .map(|r| Record {
                    key: r.key,
                    value: r.value,
                    headers: r.headers,
                    timestamp: hlc.tick(now_ms),
                })
                .collect()
        };
        let pending = log
            .append_local(origin, &records, now_ms)
            .map_err(storage_error)?;
        let produced = Produced {
            ok: ProduceOk {
                base_offset: pending.value().base_offset.0,
                record_count: records.len() as u32,
                duplicate: false,
            },
            seq_end: pending.value().base_seq.0 + records.len() as u64,
        };
        if let Some((run, window)) = guard.as_mut() {
            window.record(run.first, run.count, produced.clone());
        }
        Ok(Appended::New(pending, produced))
    }

    fn in_flight_permits_max(&self) -> u64 {
        (self.limits.produce_in_flight_bytes_max / PERMIT_BYTES).max(1)
    }
}

/// Waits until everything below `offset` is durable (a resent batch is
/// acknowledged only once its first copy is).
async fn wait_durable(log: &meshgate_storage::SharedLog, offset: LocalOffset) {
    for _ in 0..600 {
        if log.visible_offset() >= offset {
            return;
        }
        log.wait_visible(
            LocalOffset(offset.0.saturating_sub(1)),
            Duration::from_millis(100),
        )
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(base: u64) -> Produced {
        Produced {
            ok: ProduceOk {
                base_offset: base,
                record_count: 1,
                duplicate: false,
            },
            seq_end: base + 1,
        }
    }

    #[test]
    fn windows_accept_the_next_sequence_and_recognise_resends() {
        let mut window = ProducerWindow::default();
        assert!(
            matches!(window.check(7), Ok(SequenceCheck::New)),
            "any start is accepted"
        );
        window.record(7, 1, ok(0));
        assert!(matches!(window.check(8), Ok(SequenceCheck::New)));
        window.record(8, 1, ok(1));
        match window.check(7) {
            Ok(SequenceCheck::Duplicate(first)) => assert_eq!(first.ok.base_offset, 0),
            _ => panic!("7 is a resend"),
        }
        let gap = window.check(10).err().expect("a gap");
        assert_eq!(gap.code, ErrorCode::OutOfOrderSequence);
    }

    #[test]
    fn resends_older_than_the_window_are_refused() {
        let mut window = ProducerWindow::default();
        for sequence in 0..10 {
            window.record(sequence, 1, ok(sequence));
        }
        assert!(matches!(window.check(6), Ok(SequenceCheck::Duplicate(_))));
        let old = window.check(2).err().expect("too old");
        assert_eq!(old.code, ErrorCode::OutOfOrderSequence);
    }

    #[test]
    fn runs_of_records_expect_the_next_run_after_their_last_record() {
        let mut window = ProducerWindow::default();
        window.record(0, 5, ok(0));
        assert!(matches!(window.check(5), Ok(SequenceCheck::New)));
        assert!(matches!(window.check(0), Ok(SequenceCheck::Duplicate(_))));
        let gap = window.check(3).err().expect("inside the last run");
        assert_eq!(gap.code, ErrorCode::OutOfOrderSequence);
        let skip = window.check(6).err().expect("a gap");
        assert_eq!(skip.code, ErrorCode::OutOfOrderSequence);
    }
}
