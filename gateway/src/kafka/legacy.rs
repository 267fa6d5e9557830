//! Produce versions 0 to 2, which `kafka-protocol` does not decode, and the
//! message sets (magic 0 and 1) they carry. Clients that negotiate
//! versions through ApiVersions never send them to this node (they pick
//! Produce 3 or later); they are served for clients pinned to an old
//! protocol (`api.version.request=false` in librdkafka), and advertising
//! them keeps older librdkafka releases from turning off compression.
//!
//! A message set is decoded into records like a record batch: key and
//! value (a null value becomes empty), no headers; compressed wrapper
//! messages (gzip, snappy, lz4) are opened one level deep, within the same
//! decompression limit. LZ4 in magic 0 (whose frame checksum Kafka got
//! wrong) is refused as corrupt.

use bytes::{BufMut, Bytes, BytesMut};
use meshgate_protocol::ProduceRecord;

use super::compression::{Codec, decompress};
use super::records::{Reader, RecordsError};

/// Fewest bytes of a magic-0 message with its offset and size fields.
const MESSAGE_BYTES_MIN: usize = 26;

/// One partition's data in a Produce v0-2 request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyPartition {
    /// The partition.
    pub index: i32,
    /// Its message set.
    pub records: Bytes,
}

/// One topic's data in a Produce v0-2 request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyTopic {
    /// The topic.
    pub name: String,
    /// Its partitions.
    pub partitions: Vec<LegacyPartition>,
}

/// A Produce v0-2 request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyProduce {
    /// 0, 1 or -1.
    pub acks: i16,
    /// The producer's timeout, in milliseconds.
    pub timeout_ms: i32,
    /// The data.
    pub topics: Vec<LegacyTopic>,
}

/// Decodes a Produce v0-2 request body. Counts are checked against the
/// bytes left before anything is allocated for them.
pub fn decode_produce(body: &[u8]) -> Result<LegacyProduce, RecordsError> {
    let mut reader = Reader::new(body);
    let acks = reader.i16()?;
    let timeout_ms = reader.i32()?;
    let topic_count = count(&mut reader, 6)?;
    let mut topics = Vec::with_capacity(topic_count);
    for _ in 0..topic_count {
        let name_length = usize::try_from(reader.i16()?)
            .map_err(|_| RecordsError::Corrupt("null topic name".into()))?;
        let name = String::from_utf8(reader.take(name_length)?.to_vec())
            .map_err(|_| RecordsError::Corrupt("topic name is not UTF-8".into()))?;
        let partition_count = count(&mut reader, 8)?;
        let mut partitions = Vec::with_capacity(partition_count);
        for _ in 0..partition_count {
            let index = reader.i32()?;
            let length = reader.i32()?;
            let records = match usize::try_from(length) {
                Ok(length) => Bytes::copy_from_slice(reader.take(length)?),
                Err(_) => Bytes::new(),
            };
            partitions.push(LegacyPartition { index, records });
        }
        topics.push(LegacyTopic { name, partitions });
    }
    if !reader.rest().is_empty() {
        return Err(RecordsError::Corrupt(
            "bytes after the produce request".into(),
        ));
    }
    Ok(LegacyProduce {
        acks,
        timeout_ms,
        topics,
    })
}

fn count(reader: &mut Reader<'_>, element_bytes_min: usize) -> Result<usize, RecordsError> {
    let count = reader.i32()?;
    usize::try_from(count)
        .ok()
        .filter(|count| *count <= reader.rest().len() / element_bytes_min)
        .ok_or_else(|| RecordsError::Corrupt(format!("array of {count} cannot fit the request")))
}

/// One partition's answer to a Produce v0-2 request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyPartitionResponse {
    /// The partition.
    pub index: i32,
    /// Kafka error code, 0 for success.
    pub error_code: i16,
    /// Offset of the first record appended, -1 on error.
    pub base_offset: i64,
    /// Append time in ms (v2), -1 on error.
    pub log_append_time_ms: i64,
}

/// Encodes a Produce v0-2 response body.
pub fn encode_produce_response(
    version: i16,
    topics: &[(String, Vec<LegacyPartitionResponse>)],
    out: &mut BytesMut,
) {
    out.put_i32(topics.len() as i32);
    for (name, partitions) in topics {
        out.put_i16(name.len() as i16);
        out.put_slice(name.as_bytes());
        out.put_i32(partitions.len() as i32);
        for partition in partitions {
            out.put_i32(partition.index);
            out.put_i16(partition.error_code);
            out.put_i64(partition.base_offset);
            if version >= 2 {
                out.put_i64(partition.log_append_time_ms);
            }
        }
    }
    if version >= 1 {
        out.put_i32(0); // throttle time
    }
}

/// Decodes a message set (magic 0 or 1) into records.
pub fn decode_message_set(
    data: &[u8],
    decompressed_bytes_max: usize,
) -> Result<Vec<ProduceRecord>, RecordsError> {
    let mut records = Vec::new();
    decode_messages(data, decompressed_bytes_max, true, &mut records)?;
    if records.is_empty() {
        return Err(RecordsError::Corrupt("empty message set".into()));
    }
    Ok(records)
}

fn decode_messages(
    data: &[u8],
    decompressed_bytes_max: usize,
    outer: bool,
    records: &mut Vec<ProduceRecord>,
) -> Result<(), RecordsError> {
    let mut reader = Reader::new(data);
    // Each message takes at least MESSAGE_BYTES_MIN bytes, which bounds the loop.
    while !reader.rest().is_empty() {
        if records.len()
            > data.len() / MESSAGE_BYTES_MIN + decompressed_bytes_max / MESSAGE_BYTES_MIN
        {
            return Err(RecordsError::TooLarge("too many messages".into()));
        }
        let _offset = reader.i64()?;
        let size = usize::try_from(reader.i32()?)
            .map_err(|_| RecordsError::Corrupt("negative message size".into()))?;
        let message = reader.take(size)?;
        let mut fields = Reader::new(message);
        let crc = fields.u32()?;
        if crc32fast::hash(fields.rest()) != crc {
            return Err(RecordsError::Corrupt("message checksum mismatch".into()));
        }
        let magic = fields.i8()?;
        if !(0..=1).contains(&magic) {
            return Err(RecordsError::Corrupt(format!(
                "message magic {magic} in a message set"
            )));
        }
        let attributes = fields.i8()?;
        if magic == 1 {
            let _timestamp = fields.i64()?;
        }
        let key = nullable(&mut fields)?;
        let value = nullable(&mut fields)?.unwrap_or_default();
        if !fields.rest().is_empty() {
            return Err(RecordsError::Corrupt(
                "bytes after a message's value".into(),
            ));
        }
        let codec = Codec::from_bits((attributes & 7) as u8)
            .filter(|codec| *codec != Codec::Zstd)
            .ok_or_else(|| {
                RecordsError::UnsupportedCompression(format!("codec {}", attributes & 7))
            })?;
        match codec {
            Codec::None => records.push(ProduceRecord {
                key,
                value,
                headers: Vec::new(),
            }),
            _ if !outer => {
                return Err(RecordsError::Corrupt("nested compressed messages".into()));
            }
            Codec::Lz4 if magic == 0 => {
                return Err(RecordsError::Corrupt(
                    "lz4 in message format v0 is not supported".into(),
                ));
            }
            codec => {
                let inner = decompress(codec, &value, decompressed_bytes_max)?;
                decode_messages(&inner, decompressed_bytes_max, false, records)?;
            }
        }
    }
    Ok(())
}

fn nullable(reader: &mut Reader<'_>) -> Result<Option<Bytes>, RecordsError> {
    match reader.i32()? {
        -1 => Ok(None),
        length if length >= 0 => Ok(Some(Bytes::copy_from_slice(reader.take(length as usize)?))),
        length => Err(RecordsError::Corrupt(format!("length {length}"))),
    }
}

/// Encodes one message (for tests and tools): offset, size, CRC, magic,
/// attributes, timestamp (magic 1), key, value.
pub fn encode_message(
    out: &mut BytesMut,
    magic: i8,
    attributes: i8,
    key: Option<&[u8]>,
    value: &[u8],
) {
    let mut message = BytesMut::new();
    message.put_i8(magic);
    message.put_i8(attributes);
    if magic == 1 {
        message.put_i64(0);
    }
    match key {
        Some(key) => {
            message.put_i32(key.len() as i32);
            message.put_slice(key);
        }
        None => message.put_i32(-1),
    }
    message.put_i32(value.len() as i32);
    message.put_slice(value);
    out.put_i64(0);
    out.put_i32(message.len() as i32 + 4);
    out.put_u32(crc32fast::hash(&message));
    out.put_slice(&message);
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use bytes::Buf;

    use super::*;

    #[test]
    fn message_sets_decode_plain_and_gzip_wrapped() {
        let mut plain = BytesMut::new();
        encode_message(&mut plain, 1, 0, Some(b"k"), b"one");
        encode_message(&mut plain, 1, 0, None, b"two");
        let records = decode_message_set(&plain, 1 << 20).expect("decodes");
        let values: Vec<&[u8]> = records.iter().map(|r| &r.value[..]).collect();
        assert_eq!(values, vec![&b"one"[..], &b"two"[..]]);
        assert_eq!(records[0].key.as_deref(), Some(&b"k"[..]));

        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(&plain).expect("in memory");
        let compressed = encoder.finish().expect("in memory");
        let mut wrapped = BytesMut::new();
        encode_message(&mut wrapped, 1, 1, None, &compressed);
        assert_eq!(
            decode_message_set(&wrapped, 1 << 20).expect("decodes"),
            records
        );
    }

    #[test]
    fn produce_v0_requests_round_trip_and_absurd_counts_are_refused() {
        let mut set = BytesMut::new();
        encode_message(&mut set, 0, 0, None, b"v");
        let mut body = BytesMut::new();
        body.put_i16(1);
        body.put_i32(1000);
        body.put_i32(1);
        body.put_i16(1);
        body.put_slice(b"t");
        body.put_i32(1);
        body.put_i32(0);
        body.put_i32(set.len() as i32);
        body.put_slice(&set);
        let request = decode_produce(&body).expect("decodes");
        assert_eq!(request.topics[0].name, "t");
        assert_eq!(request.topics[0].partitions[0].records, set.freeze());

        let mut absurd = BytesMut::new();
        absurd.put_i16(1);
        absurd.put_i32(1000);
        absurd.put_i32(i32::MAX);
        assert!(decode_produce(&absurd).is_err());
        let mut body = body.freeze();
        while body.has_remaining() {
            body.advance(1);
            let _ = decode_produce(&body);
        }
    }
}
