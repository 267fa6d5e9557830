//! The record batch: the unit the log writes, indexes, checksums and ships.
//!
//! A batch holds consecutive records of one origin stream: local produces
//! append runs of the local origin, mirroring appends runs of a remote one.
//! So one header carries the origin, the first seq and the first local
//! offset, and every record's coordinates follow from its position.
//!
//! Layout (little-endian), format version 1:
//!
//! | bytes | field |
//! | --- | --- |
//! | 0..4 | `length`: bytes after this field |
//! | 4..8 | CRC32C of bytes `8..4+length` |
//! | 8 | format version (1) |
//! | 9 | attributes: 0, or [`ATTRIBUTE_GAP`] (other bits reserved) |
//! | 10 | region name length `r` (1..=63) |
//! | 11 | reserved (0) |
//! | 12..16 | record count (>= 1) |
//! | 16..24 | base local offset |
//! | 24..32 | base timestamp (HLC) |
//! | 32..40 | max timestamp (HLC) |
//! | 40..48 | topic incarnation |
//! | 48..56 | base origin seq |
//! | 56..56+r | origin region name |
//! | then | records |
//!
//! A gap batch ([`ATTRIBUTE_GAP`]) has no record bodies: it stands for
//! `record count` records of its origin that this log will never hold
//! (retention deleted them at every holder before they were mirrored here).
//! It keeps offsets and seqs contiguous and makes the loss explicit.
//!
//! Each record: varint body length, then zigzag varint timestamp delta from
//! the base timestamp, zigzag varint key length (-1: no key) and key, varint
//! value length and value, varint header count, and per header a varint key
//! length, key (UTF-8), varint value length and value.

use bytes::{Bytes, BytesMut};

use crate::error::{Result, StorageError};
use crate::types::{
    Header, Incarnation, LocalOffset, OriginCoord, OriginSeq, OriginStream, Record, RegionId,
    StoredRecord, Timestamp,
};

/// The batch format this code writes and reads.
pub const BATCH_FORMAT_VERSION: u8 = 1;
/// Bytes of the fixed part of a header, before the region name.
pub const BATCH_HEADER_FIXED_BYTES: usize = 56;
/// The most bytes a header takes (fixed part plus the longest region name).
pub const BATCH_HEADER_BYTES_MAX: usize =
    BATCH_HEADER_FIXED_BYTES + crate::types::REGION_NAME_BYTES_MAX;
/// The largest batch the codec accepts at all, whatever the configured limit.
pub const BATCH_BYTES_LIMIT: usize = 64 << 20;

/// Attribute bit of a gap batch.
pub const ATTRIBUTE_GAP: u8 = 0x10;

const LENGTH_FIELD_BYTES: usize = 4;
const CRC_START: usize = 8;

/// What a batch header says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchHeader {
    /// Bytes of the whole batch, length field included.
    pub total_bytes: u32,
    /// Number of records, at least 1.
    pub record_count: u32,
    /// Local offset of the first record.
    pub base_offset: LocalOffset,
    /// Timestamp of the first record.
    pub base_timestamp: Timestamp,
    /// Largest timestamp of any record.
    pub max_timestamp: Timestamp,
    /// The origin stream all records belong to.
    pub origin: OriginStream,
    /// Origin seq of the first record.
    pub base_seq: OriginSeq,
    /// A gap marker: the records are missing (see [`ATTRIBUTE_GAP`]).
    pub gap: bool,
}

impl BatchHeader {
    /// The offset after the last record.
    pub fn next_offset(&self) -> LocalOffset {
        LocalOffset(self.base_offset.0 + u64::from(self.record_count))
    }

    /// The origin seq after the last record.
    pub fn next_seq(&self) -> OriginSeq {
        OriginSeq(self.base_seq.0 + u64::from(self.record_count))
    }

    /// Bytes of the header itself.
    pub fn header_bytes(&self) -> usize {
        BATCH_HEADER_FIXED_BYTES + self.origin.region.as_str().len()
    }
}

/// Appends one batch of `records` to `out` and returns its size in bytes.
///
/// Panics if `records` is empty: an empty batch is a caller bug (the log
/// refuses empty appends before encoding).
pub fn encode(
    out: &mut Vec<u8>,
    base_offset: LocalOffset,
    origin: &OriginStream,
    base_seq: OriginSeq,
    records: &[Record],
) -> usize {
    assert!(!records.is_empty(), "a batch holds at least one record");
    let start = out.len();
    let base_timestamp = records[0].timestamp;
    let max_timestamp = records
        .iter()
        .map(|r| r.timestamp)
        .max()
        .unwrap_or(base_timestamp);
    let region = origin.region.as_str().as_bytes();

    out.extend_from_slice(&[0; 8]); // length and CRC, filled in below
    out.push(BATCH_FORMAT_VERSION);
    out.push(0);
    // RegionId guarantees 1..=63 bytes, so the cast cannot truncate.
    out.push(region.len() as u8);
    out.push(0);
    out.extend_from_slice(&(records.len() as u32).to_le_bytes());
    out.extend_from_slice(&base_offset.0.to_le_bytes());
    out.extend_from_slice(&base_timestamp.0.to_le_bytes());
    out.extend_from_slice(&max_timestamp.0.to_le_bytes());
    out.extend_from_slice(&origin.incarnation.0.to_le_bytes());
    out.extend_from_slice(&base_seq.0.to_le_bytes());
    out.extend_from_slice(region);
    for record in records {
        encode_record(out, record, base_timestamp);
    }
    let total = out.len() - start;
    let length = (total - LENGTH_FIELD_BYTES) as u32;
    out[start..start + 4].copy_from_slice(&length.to_le_bytes());
    let crc = crc32c::crc32c(&out[start + CRC_START..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    total
}

fn encode_record(out: &mut Vec<u8>, record: &Record, base_timestamp: Timestamp) {
    let delta = record.timestamp.0.wrapping_sub(base_timestamp.0) as i64;
    let key_len = record.key.as_ref().map_or(-1, |k| k.len() as i64);
    let mut body = varint::zigzag_len(delta)
        + varint::zigzag_len(key_len)
        + record.key.as_ref().map_or(0, Bytes::len)
        + varint::len(record.value.len() as u64)
        + record.value.len()
        + varint::len(record.headers.len() as u64);
    for header in &record.headers {
        body += varint::len(header.key.len() as u64)
            + header.key.len()
            + varint::len(header.value.len() as u64)
            + header.value.len();
    }
    varint::put(out, body as u64);
    varint::put_zigzag(out, delta);
    varint::put_zigzag(out, key_len);
    if let Some(key) = &record.key {
        out.extend_from_slice(key);
    }
    varint::put(out, record.value.len() as u64);
    out.extend_from_slice(&record.value);
    varint::put(out, record.headers.len() as u64);
    for header in &record.headers {
        varint::put(out, header.key.len() as u64);
        out.extend_from_slice(header.key.as_bytes());
        varint::put(out, header.value.len() as u64);
        out.extend_from_slice(&header.value);
    }
}

/// Appends a gap batch standing for `count` missing records of `origin`
/// from `base_seq`, and returns its size.
pub fn encode_gap(
    out: &mut Vec<u8>,
    base_offset: LocalOffset,
    origin: &OriginStream,
    base_seq: OriginSeq,
    count: u32,
    timestamp: Timestamp,
) -> usize {
    assert!(count > 0, "a gap covers at least one record");
    let start = out.len();
    let region = origin.region.as_str().as_bytes();
    out.extend_from_slice(&[0; 8]);
    out.push(BATCH_FORMAT_VERSION);
    out.push(ATTRIBUTE_GAP);
    out.push(region.len() as u8);
    out.push(0);
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&base_offset.0.to_le_bytes());
    out.extend_from_slice(&timestamp.0.to_le_bytes());
    out.extend_from_slice(&timestamp.0.to_le_bytes());
    out.extend_from_slice(&origin.incarnation.0.to_le_bytes());
    out.extend_from_slice(&base_seq.0.to_le_bytes());
    out.extend_from_slice(region);
    let total = out.len() - start;
    out[start..start + 4].copy_from_slice(&((total - LENGTH_FIELD_BYTES) as u32).to_le_bytes());
    let crc = crc32c::crc32c(&out[start + CRC_START..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    total
}

/// The size of the batch starting at `bytes`, read from its length field, or
/// `None` when fewer than 4 bytes are given. Checks the size against
/// `batch_bytes_max` so a damaged length never causes a huge allocation.
pub fn batch_size(bytes: &[u8], batch_bytes_max: usize) -> Result<Option<usize>> {
    let Some(length) = bytes.get(..LENGTH_FIELD_BYTES) else {
        return Ok(None);
    };
    // The slice is exactly 4 bytes long, so the conversion cannot fail.
    let length = u32::from_le_bytes(length.try_into().expect("4 bytes")) as usize;
    let total = length + LENGTH_FIELD_BYTES;
    if total < BATCH_HEADER_FIXED_BYTES + 1 {
        return Err(StorageError::invalid(format!(
            "batch length {total} is shorter than a header"
        )));
    }
    if total > batch_bytes_max.min(BATCH_BYTES_LIMIT) {
        return Err(StorageError::BatchTooLarge {
            bytes: total,
            bytes_max: batch_bytes_max.min(BATCH_BYTES_LIMIT),
        });
    }
    Ok(Some(total))
}

/// Parses the header at the start of `bytes`, which must hold at least the
/// whole header (not necessarily the records). Does not check the CRC.
pub fn parse_header(bytes: &[u8], batch_bytes_max: usize) -> Result<BatchHeader> {
    let total = batch_size(bytes, batch_bytes_max)?
        .ok_or_else(|| StorageError::invalid("truncated batch length"))?;
    let fixed = bytes
        .get(..BATCH_HEADER_FIXED_BYTES)
        .ok_or_else(|| StorageError::invalid("truncated batch header"))?;
    if fixed[8] != BATCH_FORMAT_VERSION {
        return Err(StorageError::invalid(format!(
            "unknown batch format version {}",
            fixed[8]
        )));
    }
    let attributes = fixed[9];
    if attributes & !ATTRIBUTE_GAP != 0 {
        return Err(StorageError::invalid(format!(
            "unknown batch attributes {attributes:#04x}"
        )));
    }
    let gap = attributes & ATTRIBUTE_GAP != 0;
    let region_len = usize::from(fixed[10]);
    let region_end = BATCH_HEADER_FIXED_BYTES + region_len;
    // A gap batch is exactly its header; any other holds records after it.
    let fits = if gap {
        region_end == total
    } else {
        region_end < total
    };
    if !fits {
        return Err(StorageError::invalid("batch header does not fit the batch"));
    }
    let region = bytes
        .get(BATCH_HEADER_FIXED_BYTES..region_end)
        .ok_or_else(|| StorageError::invalid("truncated region name"))?;
    let region = std::str::from_utf8(region)
        .ok()
        .and_then(|name| RegionId::parse(name).ok())
        .ok_or_else(|| StorageError::invalid("invalid region name in batch header"))?;
    let record_count = u32_at(fixed, 12);
    if record_count == 0 {
        return Err(StorageError::invalid("batch holds no records"));
    }
    // Every record takes at least 5 bytes, which bounds the count.
    if !gap && record_count as usize > total / 5 {
        return Err(StorageError::invalid(format!(
            "record count {record_count} cannot fit in {total} bytes"
        )));
    }
    Ok(BatchHeader {
        total_bytes: total as u32,
        record_count,
        base_offset: LocalOffset(u64_at(fixed, 16)),
        base_timestamp: Timestamp(u64_at(fixed, 24)),
        max_timestamp: Timestamp(u64_at(fixed, 32)),
        origin: OriginStream {
            region,
            incarnation: Incarnation(u64_at(fixed, 40)),
        },
        base_seq: OriginSeq(u64_at(fixed, 48)),
        gap,
    })
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    // Callers pass the fixed header, at least 56 bytes, and at + 4 <= 56.
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    // Callers pass the fixed header, at least 56 bytes, and at + 8 <= 56.
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

/// True when the CRC of the whole batch in `bytes` matches its header.
/// `bytes` must be exactly one batch.
pub fn crc_matches(bytes: &[u8]) -> bool {
    if bytes.len() < CRC_START {
        return false;
    }
    let stored = u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes"));
    crc32c::crc32c(&bytes[CRC_START..]) == stored
}

/// Rewrites the base offset of the batch in `bytes` and its CRC. Used when a
/// batch read from one log is appended to another (mirroring).
pub fn set_base_offset(bytes: &mut [u8], base_offset: LocalOffset) {
    assert!(bytes.len() >= BATCH_HEADER_FIXED_BYTES, "a whole batch");
    bytes[16..24].copy_from_slice(&base_offset.0.to_le_bytes());
    let crc = crc32c::crc32c(&bytes[CRC_START..]);
    bytes[4..8].copy_from_slice(&crc.to_le_bytes());
}

/// One whole, checksummed batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    header: BatchHeader,
    bytes: Bytes,
}

impl Batch {
    /// Splits the first batch off `bytes`, checking its length, header and
    /// CRC. Record encodings are checked when iterated (or by
    /// [`Batch::validate_records`]).
    pub fn split_first(bytes: &mut Bytes, batch_bytes_max: usize) -> Result<Batch> {
        let total = batch_size(bytes, batch_bytes_max)?
            .ok_or_else(|| StorageError::invalid("truncated batch length"))?;
        if bytes.len() < total {
            return Err(StorageError::invalid(format!(
                "batch of {total} bytes truncated to {}",
                bytes.len()
            )));
        }
        let header = parse_header(bytes, batch_bytes_max)?;
        if !crc_matches(&bytes[..total]) {
            return Err(StorageError::invalid("batch checksum mismatch"));
        }
        let bytes = bytes.split_to(total);
        Ok(Batch { header, bytes })
    }

    /// Parses a buffer of whole batches, checking each.
    pub fn parse_all(mut bytes: Bytes, batch_bytes_max: usize) -> Result<Vec<Batch>> {
        let mut batches = Vec::new();
        while !bytes.is_empty() {
            batches.push(Batch::split_first(&mut bytes, batch_bytes_max)?);
        }
        Ok(batches)
    }

    /// Encodes `records` as a new batch.
    pub fn encode(
        base_offset: LocalOffset,
        origin: &OriginStream,
        base_seq: OriginSeq,
        records: &[Record],
    ) -> Batch {
        let mut out = Vec::with_capacity(records.iter().map(Record::encoded_len_max).sum());
        encode(&mut out, base_offset, origin, base_seq, records);
        let bytes = Bytes::from(out);
        // Just encoded by this crate, so the header parses.
        let header = parse_header(&bytes, BATCH_BYTES_LIMIT).expect("freshly encoded batch");
        Batch { header, bytes }
    }

    /// The header.
    pub fn header(&self) -> &BatchHeader {
        &self.header
    }

    /// The encoded bytes.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// Consumes the batch, returning its bytes.
    pub fn into_bytes(self) -> Bytes {
        self.bytes
    }

    /// A copy of this batch placed at another local offset.
    pub fn with_base_offset(&self, base_offset: LocalOffset) -> Batch {
        let mut bytes = BytesMut::from(&self.bytes[..]);
        set_base_offset(&mut bytes, base_offset);
        let mut header = self.header.clone();
        header.base_offset = base_offset;
        Batch {
            header,
            bytes: bytes.freeze(),
        }
    }

    /// The records with their coordinates. Each item fails if the record's
    /// encoding is damaged; iteration stops after the first failure.
    pub fn records(&self) -> RecordIter {
        RecordIter {
            header: self.header.clone(),
            rest: self.bytes.slice(self.header.header_bytes()..),
            // A gap batch has no records to yield.
            index: if self.header.gap {
                self.header.record_count
            } else {
                0
            },
            failed: false,
        }
    }

    /// A gap batch standing for `count` missing records of `origin` from
    /// `base_seq`.
    pub fn encode_gap(
        base_offset: LocalOffset,
        origin: &OriginStream,
        base_seq: OriginSeq,
        count: u32,
        timestamp: Timestamp,
    ) -> Batch {
        let mut out = Vec::with_capacity(BATCH_HEADER_BYTES_MAX);
        encode_gap(&mut out, base_offset, origin, base_seq, count, timestamp);
        let bytes = Bytes::from(out);
        // Just encoded by this crate, so the header parses.
        let header = parse_header(&bytes, BATCH_BYTES_LIMIT).expect("freshly encoded gap");
        Batch { header, bytes }
    }

    /// Decodes every record, failing on the first damaged one.
    pub fn validate_records(&self) -> Result<()> {
        for record in self.records() {
            record?;
        }
        Ok(())
    }
}

/// Iterator over the records of a [`Batch`].
#[derive(Debug)]
pub struct RecordIter {
    header: BatchHeader,
    rest: Bytes,
    index: u32,
    failed: bool,
}

impl Iterator for RecordIter {
    type Item = Result<StoredRecord>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        if self.index == self.header.record_count {
            if !self.rest.is_empty() {
                self.failed = true;
                return Some(Err(StorageError::invalid("trailing bytes after records")));
            }
            return None;
        }
        let result = decode_record(&mut self.rest, self.header.base_timestamp);
        let index = u64::from(self.index);
        self.index += 1;
        match result {
            Ok(record) => Some(Ok(StoredRecord {
                offset: LocalOffset(self.header.base_offset.0 + index),
                origin: OriginCoord {
                    stream: self.header.origin.clone(),
                    seq: OriginSeq(self.header.base_seq.0 + index),
                },
                record,
            })),
            Err(error) => {
                self.failed = true;
                Some(Err(error))
            }
        }
    }
}

fn decode_record(rest: &mut Bytes, base_timestamp: Timestamp) -> Result<Record> {
    let body_len = varint::take(rest)? as usize;
    if body_len > rest.len() {
        return Err(StorageError::invalid("record longer than its batch"));
    }
    let mut body = rest.split_to(body_len);
    let delta = varint::take_zigzag(&mut body)?;
    let timestamp = Timestamp(base_timestamp.0.wrapping_add(delta as u64));
    let key_len = varint::take_zigzag(&mut body)?;
    let key = match key_len {
        -1 => None,
        len if len >= 0 => Some(take_bytes(&mut body, len as u64)?),
        _ => return Err(StorageError::invalid("negative key length")),
    };
    let value_len = varint::take(&mut body)?;
    let value = take_bytes(&mut body, value_len)?;
    let header_count = varint::take(&mut body)?;
    // Each header takes at least 2 bytes, which bounds the allocation.
    if header_count > body.len() as u64 / 2 {
        return Err(StorageError::invalid("header count larger than the record"));
    }
    let mut headers = Vec::with_capacity(header_count as usize);
    for _ in 0..header_count {
        let key_len = varint::take(&mut body)?;
        let key = take_bytes(&mut body, key_len)?;
        let key = String::from_utf8(key.to_vec())
            .map_err(|_| StorageError::invalid("header key is not UTF-8"))?;
        let value_len = varint::take(&mut body)?;
        let value = take_bytes(&mut body, value_len)?;
        headers.push(Header { key, value });
    }
    if !body.is_empty() {
        return Err(StorageError::invalid("trailing bytes in record"));
    }
    Ok(Record {
        key,
        value,
        headers,
        timestamp,
    })
}

fn take_bytes(body: &mut Bytes, len: u64) -> Result<Bytes> {
    if len > body.len() as u64 {
        return Err(StorageError::invalid("field longer than its record"));
    }
    Ok(body.split_to(len as usize))
}

/// LEB128 varints and zigzag encoding, as in protobuf and Kafka.
pub(crate) mod varint {
    use bytes::{Buf, Bytes};

    use crate::error::{Result, StorageError};

    pub(crate) fn len(mut value: u64) -> usize {
        let mut bytes = 1;
        while value >= 0x80 {
            value >>= 7;
            bytes += 1;
        }
        bytes
    }

    pub(crate) fn zigzag_len(value: i64) -> usize {
        len(zigzag(value))
    }

    fn zigzag(value: i64) -> u64 {
        ((value << 1) ^ (value >> 63)) as u64
    }

    pub(crate) fn put(out: &mut Vec<u8>, mut value: u64) {
        while value >= 0x80 {
            out.push((value as u8) | 0x80);
            value >>= 7;
        }
        out.push(value as u8);
    }

    pub(crate) fn put_zigzag(out: &mut Vec<u8>, value: i64) {
        put(out, zigzag(value));
    }

    pub(crate) fn take(bytes: &mut Bytes) -> Result<u64> {
        let mut value: u64 = 0;
        for index in 0..10 {
            if !bytes.has_remaining() {
                return Err(StorageError::invalid("truncated varint"));
            }
            let byte = bytes.get_u8();
            if index == 9 && byte > 1 {
                return Err(StorageError::invalid("varint overflows 64 bits"));
            }
            value |= u64::from(byte & 0x7f) << (7 * index);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(StorageError::invalid("varint longer than 10 bytes"))
    }

    pub(crate) fn take_zigzag(bytes: &mut Bytes) -> Result<i64> {
        let raw = take(bytes)?;
        Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64))
    }
}

#[cfg(test)]
mod tests;
