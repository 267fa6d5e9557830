use bytes::{BufMut, Bytes, BytesMut};
use meshgate_storage::{
    Batch, Header, Incarnation, LocalOffset, OriginSeq, OriginStream, Record, RegionId, Timestamp,
};

use super::*;

fn limits() -> DecodeLimits {
    DecodeLimits {
        decompressed_bytes_max: 1 << 20,
        zstd_allowed: true,
    }
}

/// Encodes records as a producer would: one magic-2 batch, optionally
/// gzip-compressed, with the given producer id and base sequence.
pub(crate) fn producer_batch(
    records: &[ProduceRecord],
    gzip: bool,
    producer: Option<(i64, i32)>,
) -> Vec<u8> {
    let mut body = BytesMut::new();
    for (index, record) in records.iter().enumerate() {
        let mut encoded = BytesMut::new();
        encoded.put_i8(0);
        put_varlong(&mut encoded, 0);
        put_varlong(&mut encoded, index as i64);
        match &record.key {
            Some(key) => put_bytes(&mut encoded, key),
            None => put_varlong(&mut encoded, -1),
        }
        put_bytes(&mut encoded, &record.value);
        put_varlong(&mut encoded, record.headers.len() as i64);
        for header in &record.headers {
            put_bytes(&mut encoded, header.key.as_bytes());
            put_bytes(&mut encoded, &header.value);
        }
        put_varlong(&mut body, encoded.len() as i64);
        body.put_slice(&encoded);
    }
    let body = if gzip {
        use std::io::Write;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(&body).expect("in memory");
        encoder.finish().expect("in memory")
    } else {
        body.to_vec()
    };
    let mut out = BytesMut::new();
    out.put_i64(0);
    out.put_i32((BATCH_HEADER_BYTES - 12 + body.len()) as i32);
    out.put_i32(-1);
    out.put_i8(2);
    out.put_u32(0);
    out.put_i16(if gzip { 1 } else { 0 });
    out.put_i32(records.len() as i32 - 1);
    out.put_i64(1_700_000_000_000);
    out.put_i64(1_700_000_000_000);
    let (producer_id, sequence) = producer.unwrap_or((-1, -1));
    out.put_i64(producer_id);
    out.put_i16(0);
    out.put_i32(sequence);
    out.put_i32(records.len() as i32);
    out.put_slice(&body);
    let crc = crc32c::crc32c(&out[21..]);
    out[17..21].copy_from_slice(&crc.to_be_bytes());
    out.to_vec()
}

fn sample_records() -> Vec<ProduceRecord> {
    vec![
        ProduceRecord {
            key: Some(Bytes::from_static(b"k1")),
            value: Bytes::from_static(b"v1"),
            headers: vec![
                Header {
                    key: "trace".into(),
                    value: Bytes::from_static(b"a"),
                },
                Header {
                    key: "trace".into(),
                    value: Bytes::from_static(b"b"),
                },
            ],
        },
        ProduceRecord {
            key: None,
            value: Bytes::from_static(b"v2"),
            headers: Vec::new(),
        },
    ]
}

#[test]
fn producer_batches_decode_with_repeated_header_keys_in_order() {
    for gzip in [false, true] {
        let bytes = producer_batch(&sample_records(), gzip, Some((7, 40)));
        let batches = decode_batches(&bytes, limits()).expect("decodes");
        assert_eq!(batches.len(), 1);
        assert_eq!(batches[0].records, sample_records());
        assert_eq!(batches[0].producer_id, Some(7));
        assert_eq!(batches[0].base_sequence, 40);
    }
}

#[test]
fn a_flipped_bit_anywhere_is_refused_without_panicking() {
    let bytes = producer_batch(&sample_records(), false, None);
    for at in 0..bytes.len() {
        let mut damaged = bytes.clone();
        damaged[at] ^= 0x04;
        // The base offset, partition leader epoch and CRC-covered fields:
        // only the first two are outside the checksum.
        let result = decode_batches(&damaged, limits());
        if at >= 8 && !(12..16).contains(&at) {
            assert!(result.is_err(), "bit flip at {at} accepted");
        }
    }
    for length in 0..bytes.len() {
        assert!(decode_batches(&bytes[..length], limits()).is_err() || length == 0);
    }
}

#[test]
fn transactional_batches_and_unknown_codecs_are_refused() {
    let mut bytes = producer_batch(&sample_records(), false, None);
    bytes[22] |= 0x10;
    let crc = crc32c::crc32c(&bytes[21..]);
    bytes[17..21].copy_from_slice(&crc.to_be_bytes());
    assert!(matches!(
        decode_batches(&bytes, limits()),
        Err(RecordsError::Unsupported(_))
    ));
    bytes[22] = 0x06;
    let crc = crc32c::crc32c(&bytes[21..]);
    bytes[17..21].copy_from_slice(&crc.to_be_bytes());
    assert!(matches!(
        decode_batches(&bytes, limits()),
        Err(RecordsError::UnsupportedCompression(_))
    ));
}

fn stored_batch() -> Batch {
    let origin = OriginStream {
        region: RegionId::parse("eu-west").expect("valid"),
        incarnation: Incarnation(9),
    };
    let records: Vec<Record> = sample_records()
        .into_iter()
        .enumerate()
        .map(|(index, record)| Record {
            key: record.key,
            value: record.value,
            headers: record.headers,
            timestamp: Timestamp(Timestamp::from_millis(1_700_000_000_123).0 + index as u64),
        })
        .collect();
    Batch::encode(LocalOffset(40), &origin, OriginSeq(3), &records)
}

#[test]
fn stored_batches_become_kafka_batches_at_the_same_offsets() {
    let mut out = BytesMut::new();
    encode_batch(&mut out, &stored_batch(), &SkipNothing).expect("encodes");
    // Our decoder reads it back (offsets are not checked by it).
    let batches = decode_batches(&out, limits()).expect("decodes");
    assert_eq!(batches[0].records, sample_records());
    // And so does kafka-protocol's, with offsets and timestamps.
    let mut bytes = out.freeze();
    let set = kafka_protocol::records::RecordBatchDecoder::decode(&mut bytes).expect("decodes");
    let offsets: Vec<i64> = set.records.iter().map(|r| r.offset).collect();
    assert_eq!(offsets, vec![40, 41]);
    assert_eq!(set.records[0].timestamp, 1_700_000_000_123);
    assert_eq!(
        set.records[0].timestamp_type,
        kafka_protocol::records::TimestampType::LogAppend
    );
}

struct SkipOffset(u64);

impl Skip for SkipOffset {
    fn skips(&self, record: &StoredRecord) -> bool {
        record.offset.0 == self.0
    }
}

#[test]
fn skipped_records_leave_an_offset_gap_and_keep_the_batch_range() {
    let mut out = BytesMut::new();
    encode_batch(&mut out, &stored_batch(), &SkipOffset(40)).expect("encodes");
    let mut bytes = out.clone().freeze();
    let set = kafka_protocol::records::RecordBatchDecoder::decode(&mut bytes).expect("decodes");
    let offsets: Vec<i64> = set.records.iter().map(|r| r.offset).collect();
    assert_eq!(offsets, vec![41]);
    // lastOffsetDelta still covers both offsets.
    assert_eq!(
        i32::from_be_bytes(out[23..27].try_into().expect("4 bytes")),
        1
    );
}
