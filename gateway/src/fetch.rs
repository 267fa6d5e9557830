//! Fetch and offset lookups, with long polling.

use std::time::Duration;

use meshgate_protocol::{ErrorCode, Fetch, FetchOk, ListOffsets, OffsetSpec, WireError};
use meshgate_storage::{LocalOffset, Timestamp};

use crate::config::Limits;
use crate::errors::storage_error;
use crate::topics::Topics;

/// Reads whole batches from `request.offset`, waiting up to
/// `request.max_wait_ms` (capped by the node's limit) when nothing is there yet.
pub async fn fetch(topics: &Topics, limits: &Limits, request: Fetch) -> Result<FetchOk, WireError> {
    let topic = topics.get(&request.topic)?;
    let log = topic.partition(request.partition)?;
    let offset = LocalOffset(request.offset);
    let (start, visible) = {
        let log = log.lock();
        (log.start_offset(), log.visible_offset())
    };
    if offset < start || offset > visible {
        return Err(WireError::new(
            ErrorCode::OffsetOutOfRange,
            format!(
                "offset {} of {}/{} is outside [{}, {}]",
                offset.0, request.topic, request.partition, start.0, visible.0
            ),
        ));
    }
    if offset == visible && request.max_wait_ms > 0 {
        let wait = request.max_wait_ms.min(limits.long_poll_ms_max);
        log.wait_visible(offset, Duration::from_millis(wait.into()))
            .await;
    }
    let bytes_max = request.max_bytes.clamp(1, limits.fetch_bytes_max) as usize;
    let chunk = log.read(offset, bytes_max).map_err(storage_error)?;
    let (start_offset, high_watermark) = {
        let log = log.lock();
        (log.start_offset().0, log.visible_offset().0)
    };
    Ok(FetchOk {
        batches: chunk.bytes,
        next_offset: chunk.next_offset.0,
        high_watermark,
        start_offset,
    })
}

/// Finds the earliest or latest offset, or the first at a timestamp.
pub fn list_offsets(topics: &Topics, request: &ListOffsets) -> Result<Option<u64>, WireError> {
    let topic = topics.get(&request.topic)?;
    let log = topic.partition(request.partition)?.lock();
    Ok(match request.at {
        OffsetSpec::Earliest => Some(log.start_offset().0),
        OffsetSpec::Latest => Some(log.visible_offset().0),
        OffsetSpec::Timestamp(millis) => log
            .offset_for_timestamp(Timestamp::from_millis(millis))
            .map_err(storage_error)?
            .map(|offset| offset.0),
    })
}
