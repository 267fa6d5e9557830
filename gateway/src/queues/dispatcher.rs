//! One dispatcher per source partition: reads the log once, from the
//! lowest ack floor of the partition's queues, and routes every record to
//! every queue whose filter matches (and marks it done for the others),
//! however many queues there are. Records read are put in the hot-record
//! cache so deliveries rarely read the log again.
//!
//! A queue never makes the dispatcher wait: routing only adds a reference
//! to the queue's state (its backlog bound dead-letters instead of
//! blocking), so one domain whose consumers stopped does not slow the
//! others.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use meshgate_storage::{LocalOffset, StoredRecord};
use tokio_util::sync::CancellationToken;

use super::queue::{Incoming, MessageId};
use super::service::{QueueHandle, Queues};

/// The header that holds a record's earliest delivery time, in
/// milliseconds since the epoch (decimal text).
pub const DELIVER_AT_HEADER: &str = "deliver-at";
/// How long a dispatcher waits for new records before looking again, in ms.
const IDLE_WAIT_MS: u64 = 500;
/// Pause after a failed read, in ms.
const RETRY_MS: u64 = 1_000;

/// Runs the dispatcher of `(topic, incarnation, partition)` until cancelled.
pub(super) async fn run(
    queues: Arc<Queues>,
    (topic_name, incarnation, partition): (String, u64, u32),
    cancel: CancellationToken,
) {
    loop {
        if cancel.is_cancelled() {
            return;
        }
        let Some(node) = queues.node() else { return };
        let log = match node.topics().get(&topic_name) {
            Ok(topic) if topic.incarnation().0 == incarnation => match topic.partition(partition) {
                Ok(log) => log.clone(),
                Err(_) => {
                    sleep_or_cancel(&cancel, RETRY_MS).await;
                    continue;
                }
            },
            _ => {
                // The topic is gone: the reconciler stops us.
                cancel.cancel();
                return;
            }
        };
        drop(node);
        let handles = routes(&queues, &topic_name, incarnation);
        // Where the queue furthest behind needs the next record: normally
        // every queue is at the same place, so each record is read once; a
        // queue opened from its saved state catches up from its ack floor.
        let Some(from) = handles
            .iter()
            .filter_map(|handle| handle.slot.lock().next_to_route(partition))
            .min()
        else {
            sleep_or_cancel(&cancel, IDLE_WAIT_MS).await;
            continue;
        };
        let (start, visible) = {
            let log = log.lock();
            (log.start_offset().0, log.visible_offset().0)
        };
        if from < start {
            tracing::warn!(target: "meshgate::queues", topic = %topic_name, partition, from, start, "records deleted by retention before they were dispatched");
            for handle in &handles {
                let mut slot = handle.slot.lock();
                slot.domain.handle_skipped(partition, from, start);
                slot.mark_routed(partition, start);
            }
            continue;
        }
        if from >= visible {
            tokio::select! {
                biased;
                () = cancel.cancelled() => return,
                _ = log.wait_visible(LocalOffset(from), Duration::from_millis(IDLE_WAIT_MS)) => {}
            }
            continue;
        }
        let read = log
            .read(LocalOffset(from), queues.config.read_bytes_max as usize)
            .and_then(|chunk| Ok((chunk.records_from(LocalOffset(from))?, chunk.next_offset.0)));
        match read {
            Ok((records, next_offset)) => route(
                &queues,
                &topic_name,
                incarnation,
                partition,
                from,
                records,
                next_offset,
            ),
            Err(error) => {
                tracing::warn!(target: "meshgate::queues", topic = %topic_name, partition, %error, "dispatcher read failed");
                sleep_or_cancel(&cancel, RETRY_MS).await;
            }
        }
    }
}

/// The queues fed by this topic incarnation.
fn routes(queues: &Queues, topic: &str, incarnation: u64) -> Vec<Arc<QueueHandle>> {
    queues
        .queues
        .read()
        .values()
        .filter(|handle| handle.topic == topic && handle.incarnation == incarnation)
        .cloned()
        .collect()
}

/// Routes one chunk of records `[from, next_offset)` to every queue that
/// has not seen it yet.
fn route(
    queues: &Queues,
    topic: &str,
    incarnation: u64,
    partition: u32,
    from: u64,
    records: Vec<StoredRecord>,
    next_offset: u64,
) {
    queues
        .dispatch_reads
        .fetch_add(records.len() as u64, Ordering::Relaxed);
    let records: Vec<Arc<StoredRecord>> = records.into_iter().map(Arc::new).collect();
    if queues.config.cache_bytes_max > 0 {
        for record in &records {
            queues
                .cache
                .insert((incarnation, partition, record.offset.0), record.clone());
        }
    }
    let end = records
        .last()
        .map_or(next_offset, |record| next_offset.max(record.offset.0 + 1))
        .max(from + 1);
    let now_ms = queues.clock.now_ms();
    // Held while routing, so a queue created meanwhile (its floor is the
    // log's end at creation) cannot miss records of this chunk.
    let map = queues.queues.read();
    for handle in map
        .values()
        .filter(|handle| handle.topic == topic && handle.incarnation == incarnation)
    {
        let mut routed = false;
        {
            let mut slot = handle.slot.lock();
            let slot = &mut *slot;
            let Some(mut expected) = slot.next_to_route(partition) else {
                continue;
            };
            if expected >= end {
                continue;
            }
            let first = expected;
            for record in records.iter().filter(|record| record.offset.0 >= first) {
                let offset = record.offset.0;
                if offset > expected {
                    slot.domain.handle_skipped(partition, expected, offset);
                }
                if slot.filter.matches(&record.record) {
                    slot.domain
                        .handle_routed(now_ms, incoming(partition, record, now_ms));
                    routed = true;
                } else {
                    slot.domain.handle_skipped(partition, offset, offset + 1);
                }
                expected = offset + 1;
            }
            if end > expected {
                slot.domain.handle_skipped(partition, expected, end);
            }
            slot.mark_routed(partition, end);
        }
        if routed {
            handle.notify.notify_waiters();
        }
    }
}

fn incoming(partition: u32, record: &StoredRecord, now_ms: u64) -> Incoming {
    let not_before_ms = record
        .record
        .header(DELIVER_AT_HEADER)
        .and_then(|value| std::str::from_utf8(value).ok())
        .and_then(|text| text.trim().parse::<u64>().ok())
        .unwrap_or(0);
    Incoming {
        id: MessageId {
            partition,
            offset: record.offset.0,
        },
        key: record.record.key.clone(),
        routed_ms: now_ms,
        not_before_ms,
        attempts: 0,
    }
}

async fn sleep_or_cancel(cancel: &CancellationToken, ms: u64) {
    tokio::select! {
        biased;
        () = cancel.cancelled() => {}
        () = tokio::time::sleep(Duration::from_millis(ms)) => {}
    }
}
