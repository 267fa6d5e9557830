//! One fetch task per assigned partition: long-poll fetches from the
//! partition's position, decoded into records and handed to the consumer
//! through one bounded channel (so prefetching is bounded too).

use std::sync::Arc;
use std::time::Duration;

use meshgate_protocol::{ErrorCode, Fetch, OffsetSpec};
use meshgate_storage::Batch;
use meshgate_storage::batch::BATCH_BYTES_LIMIT;
use tokio::sync::mpsc;

use crate::client::Client;
use crate::error::ClientError;
use crate::record::ConsumerRecord;

/// What a fetch task reports.
pub(crate) struct Fetched {
    pub(crate) topic: Arc<str>,
    pub(crate) partition: u32,
    /// The assignment this was fetched under; stale ones are dropped.
    pub(crate) epoch: u64,
    pub(crate) result: Result<Vec<ConsumerRecord>, ClientError>,
}

/// What a fetch task needs to know.
#[derive(Clone)]
pub(crate) struct FetchSettings {
    pub(crate) bytes_max: u32,
    pub(crate) wait: Duration,
    /// Where to go when the position falls outside the retained range.
    pub(crate) reset: OffsetSpec,
}

/// Decodes fetched batches, keeping the records at or after `from`.
pub(crate) fn decode_records(
    topic: &Arc<str>,
    partition: u32,
    batches: bytes::Bytes,
    from: u64,
) -> Result<Vec<ConsumerRecord>, ClientError> {
    let malformed = |error: meshgate_storage::StorageError| {
        ClientError::Protocol(format!("fetched batch of {topic}/{partition}: {error}"))
    };
    let mut records = Vec::new();
    for batch in Batch::parse_all(batches, BATCH_BYTES_LIMIT).map_err(malformed)? {
        if batch.header().next_offset().0 <= from {
            continue;
        }
        for stored in batch.records() {
            let stored = stored.map_err(malformed)?;
            if stored.offset.0 >= from {
                records.push(ConsumerRecord::from_stored(
                    topic.clone(),
                    partition,
                    stored,
                ));
            }
        }
    }
    Ok(records)
}

/// Fetches `topic`/`partition` from `offset` until the channel closes or a
/// fetch fails for good (which it reports, then stops).
pub(crate) async fn run(
    client: Client,
    topic: Arc<str>,
    partition: u32,
    mut offset: u64,
    epoch: u64,
    settings: FetchSettings,
    sender: mpsc::Sender<Fetched>,
) {
    let report = |result| Fetched {
        topic: topic.clone(),
        partition,
        epoch,
        result,
    };
    loop {
        let request = Fetch {
            topic: topic.to_string(),
            partition,
            offset,
            max_bytes: settings.bytes_max,
            max_wait_ms: settings.wait.as_millis().min(u128::from(u32::MAX)) as u32,
        };
        match client.fetch(request).await {
            Ok(ok) => {
                let next = ok.next_offset.max(offset);
                let records = decode_records(&topic, partition, ok.batches, offset);
                let failed = records.is_err();
                match records {
                    Ok(records) if records.is_empty() => {}
                    result => {
                        if sender.send(report(result)).await.is_err() || failed {
                            return;
                        }
                    }
                }
                offset = next;
            }
            Err(error) if error.code() == Some(ErrorCode::OffsetOutOfRange) => {
                match client.list_offsets(&topic, partition, settings.reset).await {
                    Ok(Some(reset)) if reset != offset => {
                        tracing::warn!(target: "meshgate::client::consumer", %topic, partition, from = offset, to = reset, "position out of range; reset");
                        offset = reset;
                    }
                    Ok(_) => {
                        let _ = sender.send(report(Err(error))).await;
                        return;
                    }
                    Err(error) => {
                        let _ = sender.send(report(Err(error))).await;
                        return;
                    }
                }
            }
            Err(error) => {
                let _ = sender.send(report(Err(error))).await;
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use meshgate_storage::{Incarnation, LocalOffset, OriginSeq, OriginStream, Record, RegionId};

    use super::*;

    fn batches() -> bytes::Bytes {
        let origin = OriginStream {
            region: RegionId::parse("us-east").expect("a region"),
            incarnation: Incarnation(3),
        };
        let first: Vec<Record> = (0..3)
            .map(|i| Record::from_value(format!("a{i}")))
            .collect();
        let second: Vec<Record> = (0..2)
            .map(|i| Record::from_value(format!("b{i}")))
            .collect();
        let mut bytes = Batch::encode(LocalOffset(10), &origin, OriginSeq(0), &first)
            .into_bytes()
            .to_vec();
        bytes.extend_from_slice(
            Batch::encode(LocalOffset(13), &origin, OriginSeq(3), &second).bytes(),
        );
        bytes.into()
    }

    #[test]
    fn records_below_the_requested_offset_are_skipped() {
        let topic: Arc<str> = Arc::from("t");
        let records = decode_records(&topic, 2, batches(), 12).expect("decodes");
        let offsets: Vec<u64> = records.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, [12, 13, 14]);
        assert_eq!(records[0].value, "a2");
        assert_eq!(records[1].origin.seq, OriginSeq(3));
        assert_eq!(records[1].origin.stream.region.as_str(), "us-east");
        assert_eq!(records[2].partition, 2);
    }

    #[test]
    fn damaged_batches_are_reported_not_decoded() {
        let topic: Arc<str> = Arc::from("t");
        let mut bytes = batches().to_vec();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        let error = decode_records(&topic, 0, bytes.into(), 0).expect_err("checksum");
        assert!(matches!(error, ClientError::Protocol(_)), "{error}");
    }
}
