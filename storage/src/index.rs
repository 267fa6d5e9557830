//! The sparse indexes beside each segment, and their files.
//!
//! - `.index`: offset index, 8-byte entries `(relative offset u32, position u32)`.
//! - `.timeindex`: 12-byte entries `(largest timestamp before the entry u64,
//!   relative offset u32)`; the two files gain an entry together, every
//!   `index_interval_bytes` of batches, so entry `i` of each describes the
//!   same batch start.
//! - `.origins`: origin checkpoints, each `(u32 length, u32 CRC32C, payload)`
//!   with payload `(relative offset u32, position u32, vector)`: the prefix
//!   vector at that batch start. Every `origin_checkpoint_bytes`.
//!
//! All three are derived data: recovery rebuilds them from the segment.

use crate::error::StorageError;
use crate::types::{Incarnation, LocalOffset, OriginStream, RegionId, Timestamp};
use crate::vector::VersionVector;

/// One offset-index entry, with the time-index value written beside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IndexEntry {
    /// Offset of the batch starting here, relative to the segment's base.
    pub(crate) relative_offset: u32,
    /// Its file position.
    pub(crate) position: u32,
    /// The largest timestamp of all batches before this position.
    pub(crate) timestamp_before: Timestamp,
}

/// A prefix vector at a batch start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Checkpoint {
    pub(crate) offset: LocalOffset,
    pub(crate) position: u64,
    pub(crate) vector: VersionVector,
}

const OFFSET_ENTRY_BYTES: usize = 8;
const TIME_ENTRY_BYTES: usize = 12;

pub(crate) fn encode_offset_entry(entry: &IndexEntry) -> [u8; OFFSET_ENTRY_BYTES] {
    let mut out = [0; OFFSET_ENTRY_BYTES];
    out[..4].copy_from_slice(&entry.relative_offset.to_le_bytes());
    out[4..].copy_from_slice(&entry.position.to_le_bytes());
    out
}

pub(crate) fn encode_time_entry(
    timestamp: Timestamp,
    relative_offset: u32,
) -> [u8; TIME_ENTRY_BYTES] {
    let mut out = [0; TIME_ENTRY_BYTES];
    out[..8].copy_from_slice(&timestamp.0.to_le_bytes());
    out[8..].copy_from_slice(&relative_offset.to_le_bytes());
    out
}

/// Parses both index files and checks them against the segment: entries
/// strictly increasing, inside `(header_bytes, segment_bytes)`. Any doubt
/// returns `None`, and the caller rebuilds the index.
pub(crate) fn load_index(
    offsets: &[u8],
    times: &[u8],
    header_bytes: u64,
    segment_bytes: u64,
) -> Option<Vec<IndexEntry>> {
    if !offsets.len().is_multiple_of(OFFSET_ENTRY_BYTES)
        || !times.len().is_multiple_of(TIME_ENTRY_BYTES)
    {
        return None;
    }
    let count = offsets.len() / OFFSET_ENTRY_BYTES;
    if times.len() / TIME_ENTRY_BYTES != count {
        return None;
    }
    let mut entries: Vec<IndexEntry> = Vec::with_capacity(count);
    for i in 0..count {
        let o = &offsets[i * OFFSET_ENTRY_BYTES..(i + 1) * OFFSET_ENTRY_BYTES];
        let t = &times[i * TIME_ENTRY_BYTES..(i + 1) * TIME_ENTRY_BYTES];
        let entry = IndexEntry {
            relative_offset: u32::from_le_bytes(o[..4].try_into().ok()?),
            position: u32::from_le_bytes(o[4..].try_into().ok()?),
            timestamp_before: Timestamp(u64::from_le_bytes(t[..8].try_into().ok()?)),
        };
        let time_relative = u32::from_le_bytes(t[8..].try_into().ok()?);
        if time_relative != entry.relative_offset
            || u64::from(entry.position) <= header_bytes
            || u64::from(entry.position) >= segment_bytes
        {
            return None;
        }
        if let Some(previous) = entries.last()
            && (entry.relative_offset <= previous.relative_offset
                || entry.position <= previous.position
                || entry.timestamp_before < previous.timestamp_before)
        {
            return None;
        }
        entries.push(entry);
    }
    Some(entries)
}

/// Encodes a version vector: `u32 count`, then per origin `u8 region
/// length, region, u64 incarnation, u64 count`.
pub(crate) fn encode_vector(out: &mut Vec<u8>, vector: &VersionVector) {
    out.extend_from_slice(&(vector.len() as u32).to_le_bytes());
    for (origin, count) in vector.iter() {
        let region = origin.region.as_str().as_bytes();
        out.push(region.len() as u8);
        out.extend_from_slice(region);
        out.extend_from_slice(&origin.incarnation.0.to_le_bytes());
        out.extend_from_slice(&count.to_le_bytes());
    }
}

/// Most origins a stored vector may list; bounds decoding of damaged bytes.
pub(crate) const VECTOR_ORIGINS_MAX: usize = 65_536;

/// Decodes a vector from the front of `bytes`, returning it and the bytes used.
pub(crate) fn decode_vector(bytes: &[u8]) -> Result<(VersionVector, usize), StorageError> {
    let bad = |what: &str| StorageError::invalid(format!("stored vector: {what}"));
    let count = bytes.get(..4).ok_or_else(|| bad("truncated count"))?;
    let count = u32::from_le_bytes(count.try_into().map_err(|_| bad("count"))?) as usize;
    if count > VECTOR_ORIGINS_MAX {
        return Err(bad("too many origins"));
    }
    let mut at = 4;
    let mut vector = VersionVector::new();
    for _ in 0..count {
        let region_len = usize::from(*bytes.get(at).ok_or_else(|| bad("truncated entry"))?);
        at += 1;
        let region = bytes
            .get(at..at + region_len)
            .ok_or_else(|| bad("truncated region"))?;
        let region = std::str::from_utf8(region)
            .ok()
            .and_then(|name| RegionId::parse(name).ok())
            .ok_or_else(|| bad("invalid region"))?;
        at += region_len;
        let numbers = bytes
            .get(at..at + 16)
            .ok_or_else(|| bad("truncated entry"))?;
        let incarnation = u64::from_le_bytes(numbers[..8].try_into().map_err(|_| bad("entry"))?);
        let records = u64::from_le_bytes(numbers[8..].try_into().map_err(|_| bad("entry"))?);
        at += 16;
        vector.set(
            OriginStream {
                region,
                incarnation: Incarnation(incarnation),
            },
            records,
        );
    }
    Ok((vector, at))
}

pub(crate) fn encode_checkpoint(base_offset: LocalOffset, checkpoint: &Checkpoint) -> Vec<u8> {
    let mut payload = Vec::with_capacity(64);
    payload.extend_from_slice(&((checkpoint.offset.0 - base_offset.0) as u32).to_le_bytes());
    payload.extend_from_slice(&(checkpoint.position as u32).to_le_bytes());
    encode_vector(&mut payload, &checkpoint.vector);
    let mut out = Vec::with_capacity(payload.len() + 8);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    out
}

/// Parses checkpoint entries; stops at the first damaged one (a torn tail)
/// and reports whether the whole file was valid.
pub(crate) fn load_checkpoints(bytes: &[u8], base_offset: LocalOffset) -> (Vec<Checkpoint>, bool) {
    let mut checkpoints: Vec<Checkpoint> = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let Some(parsed) = parse_checkpoint(&bytes[at..], base_offset) else {
            return (checkpoints, false);
        };
        let (checkpoint, used) = parsed;
        if let Some(previous) = checkpoints.last()
            && (checkpoint.offset <= previous.offset || checkpoint.position <= previous.position)
        {
            return (checkpoints, false);
        }
        checkpoints.push(checkpoint);
        at += used;
    }
    (checkpoints, true)
}

fn parse_checkpoint(bytes: &[u8], base_offset: LocalOffset) -> Option<(Checkpoint, usize)> {
    let length = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(bytes.get(4..8)?.try_into().ok()?);
    let payload = bytes.get(8..8usize.checked_add(length)?)?;
    if crc32c::crc32c(payload) != crc || payload.len() < 8 {
        return None;
    }
    let relative = u32::from_le_bytes(payload[..4].try_into().ok()?);
    let position = u32::from_le_bytes(payload[4..8].try_into().ok()?);
    let (vector, used) = decode_vector(&payload[8..]).ok()?;
    if 8 + used != payload.len() {
        return None;
    }
    Some((
        Checkpoint {
            offset: LocalOffset(base_offset.0 + u64::from(relative)),
            position: u64::from(position),
            vector,
        },
        8 + length,
    ))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn vector_strategy() -> impl Strategy<Value = VersionVector> {
        proptest::collection::vec(("[a-z]{1,10}", any::<u64>(), 1..u64::MAX), 0..6).prop_map(
            |entries| {
                entries
                    .into_iter()
                    .map(|(region, incarnation, count)| {
                        (
                            OriginStream {
                                region: RegionId::parse(&region).expect("valid"),
                                incarnation: Incarnation(incarnation),
                            },
                            count,
                        )
                    })
                    .collect()
            },
        )
    }

    proptest! {
        #[test]
        fn vectors_round_trip(vector in vector_strategy()) {
            let mut out = Vec::new();
            encode_vector(&mut out, &vector);
            let (decoded, used) = decode_vector(&out).expect("decodes");
            prop_assert_eq!(used, out.len());
            prop_assert_eq!(decoded, vector);
        }

        #[test]
        fn checkpoints_round_trip_and_stop_at_damage(
            vectors in proptest::collection::vec(vector_strategy(), 1..5),
            cut in any::<prop::sample::Index>(),
        ) {
            let base = LocalOffset(1000);
            let checkpoints: Vec<Checkpoint> = vectors
                .into_iter()
                .enumerate()
                .map(|(i, vector)| Checkpoint {
                    offset: LocalOffset(1000 + 10 * (i as u64 + 1)),
                    position: 100 * (i as u64 + 1),
                    vector,
                })
                .collect();
            let bytes: Vec<u8> = checkpoints.iter().flat_map(|c| encode_checkpoint(base, c)).collect();
            let (loaded, complete) = load_checkpoints(&bytes, base);
            prop_assert!(complete);
            prop_assert_eq!(&loaded, &checkpoints);
            let cut = cut.index(bytes.len());
            let (prefix, _) = load_checkpoints(&bytes[..cut], base);
            prop_assert!(checkpoints.starts_with(&prefix));
        }

        #[test]
        fn index_files_of_garbage_never_panic(
            offsets in proptest::collection::vec(any::<u8>(), 0..64),
            times in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let _ = load_index(&offsets, &times, 40, 10_000);
            let _ = decode_vector(&offsets);
            let _ = load_checkpoints(&times, LocalOffset(0));
        }
    }

    #[test]
    fn index_round_trips() {
        let entries = [
            IndexEntry {
                relative_offset: 3,
                position: 100,
                timestamp_before: Timestamp(5),
            },
            IndexEntry {
                relative_offset: 9,
                position: 300,
                timestamp_before: Timestamp(7),
            },
        ];
        let offsets: Vec<u8> = entries.iter().flat_map(encode_offset_entry).collect();
        let times: Vec<u8> = entries
            .iter()
            .flat_map(|e| encode_time_entry(e.timestamp_before, e.relative_offset))
            .collect();
        let loaded = load_index(&offsets, &times, 40, 1000).expect("valid");
        assert_eq!(loaded, entries);
    }

    #[test]
    fn index_entries_out_of_order_are_rejected() {
        let entries = [
            IndexEntry {
                relative_offset: 9,
                position: 300,
                timestamp_before: Timestamp(5),
            },
            IndexEntry {
                relative_offset: 3,
                position: 100,
                timestamp_before: Timestamp(7),
            },
        ];
        let offsets: Vec<u8> = entries.iter().flat_map(encode_offset_entry).collect();
        let times: Vec<u8> = entries
            .iter()
            .flat_map(|e| encode_time_entry(e.timestamp_before, e.relative_offset))
            .collect();
        assert!(load_index(&offsets, &times, 40, 1000).is_none());
        assert!(load_index(&offsets, &times[..12], 40, 1000).is_none());
    }
}
