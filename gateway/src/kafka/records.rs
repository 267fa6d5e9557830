//! Kafka record batches (magic 2) <-> meshgate records.
//!
//! Our own codec rather than `kafka_protocol::records`, for three reasons:
//! its header map drops repeated header keys (meshgate keeps them, in
//! order), its decompressors are unbounded, and its counts reach
//! `with_capacity` before they are checked against the bytes that hold them.
//!
//! Produce: [`decode_batches`] checks each batch's length, magic and CRC32C,
//! decompresses within a limit and yields key, value and headers (a null
//! value or header value becomes empty bytes: meshgate records have no
//! null). Kafka timestamps are not kept: the node stamps its hybrid
//! logical clock on append, so topics behave as Kafka's
//! `message.timestamp.type=LogAppendTime`.
//!
//! Fetch: [`encode_batch`] turns one stored batch into one uncompressed
//! Kafka batch at the same offsets, marked LogAppendTime. Records a
//! [`Skip`] leaves out are absent while the batch keeps its offset range,
//! as in a compacted topic; a batch left with no record (or a stored gap
//! marker) becomes an empty batch, which clients step over.

use bytes::{BufMut, Bytes, BytesMut};
use meshgate_protocol::ProduceRecord;
use meshgate_storage::{Batch, Header, StoredRecord};

use super::compression::{Codec, decompress};

/// Bytes of a record batch header, up to and including the record count.
pub const BATCH_HEADER_BYTES: usize = 61;
/// Fewest bytes one record takes (seven one-byte varints and the attributes).
const RECORD_BYTES_MIN: usize = 7;
/// Attribute bit: the batch is part of a transaction.
const ATTRIBUTE_TRANSACTIONAL: i16 = 0x10;
/// Attribute bit: the batch is a control batch (transaction markers).
const ATTRIBUTE_CONTROL: i16 = 0x20;
/// Attribute bit: timestamps are the broker's append time.
const ATTRIBUTE_LOG_APPEND_TIME: i16 = 0x08;

/// Why record data was refused; the produce request changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordsError {
    /// Bad length, magic, checksum or record encoding (Kafka's
    /// `CORRUPT_MESSAGE`).
    #[error("corrupt record data: {0}")]
    Corrupt(String),
    /// Well formed, but not something this node accepts (transactions,
    /// control batches, an unknown codec, zstd before Produce v7):
    /// Kafka's `INVALID_RECORD` or `UNSUPPORTED_COMPRESSION_TYPE`.
    #[error("unsupported record data: {0}")]
    Unsupported(String),
    /// The compression codec is unknown or needs a newer request version.
    #[error("unsupported compression: {0}")]
    UnsupportedCompression(String),
    /// More records or bytes than the limits allow (`MESSAGE_TOO_LARGE`).
    #[error("record data too large: {0}")]
    TooLarge(String),
}

/// One decoded producer batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerBatch {
    /// The idempotent producer's id, or `None`.
    pub producer_id: Option<i64>,
    /// Its epoch.
    pub producer_epoch: i16,
    /// The sequence number of the first record (idempotent producers).
    pub base_sequence: i32,
    /// The codec the batch came in.
    pub codec: Codec,
    /// Its records.
    pub records: Vec<ProduceRecord>,
}

/// Limits on decoding.
#[derive(Debug, Clone, Copy)]
pub struct DecodeLimits {
    /// Most bytes a batch's records may decompress to.
    pub decompressed_bytes_max: usize,
    /// Whether zstd is allowed (Produce v7 and later).
    pub zstd_allowed: bool,
}

/// Splits `data` (a partition's records field) into batches and decodes
/// each one.
pub fn decode_batches(
    data: &[u8],
    limits: DecodeLimits,
) -> Result<Vec<ProducerBatch>, RecordsError> {
    let mut batches = Vec::new();
    let mut rest = data;
    // Each batch takes at least a header, which bounds the loop.
    while !rest.is_empty() {
        let (batch, tail) = decode_batch(rest, limits)?;
        batches.push(batch);
        rest = tail;
    }
    Ok(batches)
}

fn corrupt(message: impl Into<String>) -> RecordsError {
    RecordsError::Corrupt(message.into())
}

fn decode_batch(data: &[u8], limits: DecodeLimits) -> Result<(ProducerBatch, &[u8]), RecordsError> {
    if data.len() < BATCH_HEADER_BYTES {
        return Err(corrupt(format!(
            "{} bytes cannot hold a batch header",
            data.len()
        )));
    }
    let mut header = Reader::new(data);
    let _base_offset = header.i64()?;
    let length = header.i32()?;
    let total = usize::try_from(length)
        .ok()
        .and_then(|length| length.checked_add(12))
        .filter(|total| (BATCH_HEADER_BYTES..=data.len()).contains(total))
        .ok_or_else(|| {
            corrupt(format!(
                "batch length {length} does not fit the {} bytes sent",
                data.len()
            ))
        })?;
    let _leader_epoch = header.i32()?;
    let magic = header.i8()?;
    if magic != 2 {
        return Err(corrupt(format!(
            "record batch magic {magic}; this request version needs 2"
        )));
    }
    let crc = header.u32()?;
    if crc32c::crc32c(&data[21..total]) != crc {
        return Err(corrupt("record batch checksum mismatch"));
    }
    let attributes = header.i16()?;
    let _last_offset_delta = header.i32()?;
    let _base_timestamp = header.i64()?;
    let _max_timestamp = header.i64()?;
    let producer_id = header.i64()?;
    let producer_epoch = header.i16()?;
    let base_sequence = header.i32()?;
    let count = header.i32()?;
    if attributes & ATTRIBUTE_CONTROL != 0 || attributes & ATTRIBUTE_TRANSACTIONAL != 0 {
        return Err(RecordsError::Unsupported(
            "transactional and control batches are not supported".into(),
        ));
    }
    let codec = Codec::from_bits((attributes & 7) as u8).ok_or_else(|| {
        RecordsError::UnsupportedCompression(format!("compression codec {}", attributes & 7))
    })?;
    if codec == Codec::Zstd && !limits.zstd_allowed {
        return Err(RecordsError::UnsupportedCompression(
            "zstd needs Produce version 7 or later".into(),
        ));
    }
    let body = &data[BATCH_HEADER_BYTES..total];
    let decompressed;
    let body = if codec == Codec::None {
        if body.len() > limits.decompressed_bytes_max {
            return Err(RecordsError::TooLarge(format!(
                "{} bytes of records",
                body.len()
            )));
        }
        body
    } else {
        decompressed = decompress(codec, body, limits.decompressed_bytes_max)?;
        &decompressed[..]
    };
    let count = usize::try_from(count)
        .ok()
        .filter(|count| *count >= 1 && *count <= body.len() / RECORD_BYTES_MIN)
        .ok_or_else(|| {
            corrupt(format!(
                "record count {count} does not fit {} bytes",
                body.len()
            ))
        })?;
    let mut reader = Reader::new(body);
    let mut records = Vec::with_capacity(count);
    for index in 0..count {
        records.push(decode_record(&mut reader).map_err(|error| match error {
            RecordsError::Corrupt(reason) => corrupt(format!("record {index}: {reason}")),
            other => other,
        })?);
    }
    if !reader.rest().is_empty() {
        return Err(corrupt(format!(
            "{} bytes after the last record",
            reader.rest().len()
        )));
    }
    let batch = ProducerBatch {
        producer_id: (producer_id >= 0).then_some(producer_id),
        producer_epoch,
        base_sequence,
        codec,
        records,
    };
    Ok((batch, &data[total..]))
}

fn decode_record(reader: &mut Reader<'_>) -> Result<ProduceRecord, RecordsError> {
    let length =
        usize::try_from(reader.varint()?).map_err(|_| corrupt("negative record length"))?;
    let body = reader.take(length)?;
    let mut record = Reader::new(body);
    let _attributes = record.i8()?;
    let _timestamp_delta = record.varlong()?;
    let _offset_delta = record.varint()?;
    let key = record.nullable_bytes()?;
    let value = record.nullable_bytes()?.unwrap_or_default();
    let header_count =
        usize::try_from(record.varint()?).map_err(|_| corrupt("negative header count"))?;
    // A header takes at least two bytes, which bounds the count.
    if header_count > record.rest().len() / 2 {
        return Err(corrupt(format!(
            "{header_count} headers cannot fit the record"
        )));
    }
    let mut headers = Vec::with_capacity(header_count);
    for _ in 0..header_count {
        let key = record
            .nullable_bytes()?
            .ok_or_else(|| corrupt("null header key"))?;
        let key =
            String::from_utf8(key.to_vec()).map_err(|_| corrupt("header key is not UTF-8"))?;
        let value = record.nullable_bytes()?.unwrap_or_default();
        headers.push(Header { key, value });
    }
    if !record.rest().is_empty() {
        return Err(corrupt("bytes after the record's headers"));
    }
    Ok(ProduceRecord {
        key,
        value,
        headers,
    })
}

/// Which records of a stored batch to leave out of a fetch.
pub trait Skip {
    /// True when `record` must not be delivered.
    fn skips(&self, record: &StoredRecord) -> bool;
}

/// Delivers everything.
#[derive(Debug, Clone, Copy)]
pub struct SkipNothing;

impl Skip for SkipNothing {
    fn skips(&self, _record: &StoredRecord) -> bool {
        false
    }
}

/// Appends the Kafka form of `batch` to `out`: one uncompressed magic-2
/// batch covering the same offsets, with the records `skip` keeps. Fails
/// only on a damaged stored record (the caller reports the partition).
pub fn encode_batch(
    out: &mut BytesMut,
    batch: &Batch,
    skip: &dyn Skip,
) -> Result<(), meshgate_storage::StorageError> {
    let header = batch.header();
    let base_timestamp = header.base_timestamp.millis() as i64;
    let mut body = BytesMut::new();
    let mut count: i32 = 0;
    for record in batch.records() {
        let record = record?;
        if skip.skips(&record) {
            continue;
        }
        count += 1;
        let delta_ms = record.record.timestamp.millis() as i64 - base_timestamp;
        let offset_delta = (record.offset.0 - header.base_offset.0) as i64;
        encode_record(&mut body, &record, delta_ms, offset_delta);
    }
    let start = out.len();
    out.put_i64(header.base_offset.0 as i64);
    // batchLength: everything after this field.
    out.put_i32((BATCH_HEADER_BYTES - 12 + body.len()) as i32);
    out.put_i32(0); // partition leader epoch
    out.put_i8(2); // magic
    let crc_at = out.len();
    out.put_u32(0); // CRC, filled in below
    out.put_i16(ATTRIBUTE_LOG_APPEND_TIME);
    out.put_i32(header.record_count as i32 - 1); // lastOffsetDelta
    out.put_i64(base_timestamp);
    out.put_i64(header.max_timestamp.millis() as i64);
    out.put_i64(-1); // producer id
    out.put_i16(-1); // producer epoch
    out.put_i32(-1); // base sequence
    out.put_i32(count);
    out.put_slice(&body);
    let crc = crc32c::crc32c(&out[crc_at + 4..]);
    out[crc_at..crc_at + 4].copy_from_slice(&crc.to_be_bytes());
    debug_assert_eq!(out.len() - start, BATCH_HEADER_BYTES + body.len());
    Ok(())
}

fn encode_record(out: &mut BytesMut, stored: &StoredRecord, delta_ms: i64, offset_delta: i64) {
    let record = &stored.record;
    let mut body = BytesMut::with_capacity(record.encoded_len_max());
    body.put_i8(0);
    put_varlong(&mut body, delta_ms);
    put_varlong(&mut body, offset_delta);
    match &record.key {
        Some(key) => put_bytes(&mut body, key),
        None => put_varlong(&mut body, -1),
    }
    put_bytes(&mut body, &record.value);
    put_varlong(&mut body, record.headers.len() as i64);
    for header in &record.headers {
        put_bytes(&mut body, header.key.as_bytes());
        put_bytes(&mut body, &header.value);
    }
    put_varlong(out, body.len() as i64);
    out.put_slice(&body);
}

fn put_bytes(out: &mut BytesMut, bytes: &[u8]) {
    put_varlong(out, bytes.len() as i64);
    out.put_slice(bytes);
}

/// Writes a zigzag varint (Kafka's varint and varlong share the encoding).
pub fn put_varlong(out: &mut impl BufMut, value: i64) {
    let mut zigzag = ((value << 1) ^ (value >> 63)) as u64;
    while zigzag >= 0x80 {
        out.put_u8((zigzag as u8) | 0x80);
        zigzag >>= 7;
    }
    out.put_u8(zigzag as u8);
}

/// A bounds-checked reader over a byte slice; every read fails with
/// [`RecordsError::Corrupt`] past the end.
#[derive(Debug)]
pub struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Reads from the start of `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes }
    }

    /// What is left.
    pub fn rest(&self) -> &'a [u8] {
        self.bytes
    }

    /// The next `length` bytes.
    pub fn take(&mut self, length: usize) -> Result<&'a [u8], RecordsError> {
        if length > self.bytes.len() {
            return Err(corrupt(format!(
                "{length} bytes wanted, {} left",
                self.bytes.len()
            )));
        }
        let (head, tail) = self.bytes.split_at(length);
        self.bytes = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], RecordsError> {
        let bytes = self.take(N)?;
        let mut array = [0; N];
        array.copy_from_slice(bytes);
        Ok(array)
    }

    /// A big-endian i8.
    pub fn i8(&mut self) -> Result<i8, RecordsError> {
        Ok(i8::from_be_bytes(self.array()?))
    }

    /// A big-endian i16.
    pub fn i16(&mut self) -> Result<i16, RecordsError> {
        Ok(i16::from_be_bytes(self.array()?))
    }

    /// A big-endian i32.
    pub fn i32(&mut self) -> Result<i32, RecordsError> {
        Ok(i32::from_be_bytes(self.array()?))
    }

    /// A big-endian u32.
    pub fn u32(&mut self) -> Result<u32, RecordsError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    /// A big-endian i64.
    pub fn i64(&mut self) -> Result<i64, RecordsError> {
        Ok(i64::from_be_bytes(self.array()?))
    }

    /// A zigzag varlong (at most 10 bytes).
    pub fn varlong(&mut self) -> Result<i64, RecordsError> {
        let mut value: u64 = 0;
        for index in 0..10 {
            let byte = self.array::<1>()?[0];
            value |= u64::from(byte & 0x7f) << (7 * index);
            if byte & 0x80 == 0 {
                return Ok((value >> 1) as i64 ^ -((value & 1) as i64));
            }
        }
        Err(corrupt("varint longer than 10 bytes"))
    }

    /// A zigzag varint that must fit an i32.
    pub fn varint(&mut self) -> Result<i64, RecordsError> {
        let value = self.varlong()?;
        if i32::try_from(value).is_err() {
            return Err(corrupt(format!("varint {value} out of range")));
        }
        Ok(value)
    }

    /// Varint-length-prefixed bytes; -1 is null.
    fn nullable_bytes(&mut self) -> Result<Option<Bytes>, RecordsError> {
        match self.varint()? {
            -1 => Ok(None),
            length if length >= 0 => Ok(Some(Bytes::copy_from_slice(self.take(length as usize)?))),
            length => Err(corrupt(format!("length {length}"))),
        }
    }
}

#[cfg(test)]
mod tests;
