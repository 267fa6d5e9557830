use bytes::Bytes;
use proptest::prelude::*;

use super::*;

fn origin(name: &str, incarnation: u64) -> OriginStream {
    OriginStream {
        region: RegionId::parse(name).expect("valid test region"),
        incarnation: Incarnation(incarnation),
    }
}

fn record_strategy() -> impl Strategy<Value = Record> {
    (
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)),
        proptest::collection::vec(any::<u8>(), 0..300),
        proptest::collection::vec(
            ("[a-z]{0,8}", proptest::collection::vec(any::<u8>(), 0..20)),
            0..4,
        ),
        any::<u64>(),
    )
        .prop_map(|(key, value, headers, timestamp)| Record {
            key: key.map(Bytes::from),
            value: Bytes::from(value),
            headers: headers
                .into_iter()
                .map(|(key, value)| Header {
                    key,
                    value: Bytes::from(value),
                })
                .collect(),
            timestamp: Timestamp(timestamp),
        })
}

proptest! {
    #[test]
    fn batches_round_trip(
        records in proptest::collection::vec(record_strategy(), 1..20),
        base_offset in any::<u64>().prop_map(|o| o >> 2),
        base_seq in any::<u64>().prop_map(|s| s >> 2),
        region in "[a-z][a-z0-9-]{0,62}",
        incarnation in any::<u64>(),
    ) {
        let origin = origin(&region, incarnation);
        let batch = Batch::encode(LocalOffset(base_offset), &origin, OriginSeq(base_seq), &records);
        let mut bytes = batch.bytes().clone();
        let parsed = Batch::split_first(&mut bytes, BATCH_BYTES_LIMIT).expect("parses");
        prop_assert!(bytes.is_empty());
        prop_assert_eq!(parsed.header(), batch.header());
        let decoded: Vec<StoredRecord> = parsed.records().collect::<Result<_>>().expect("records decode");
        prop_assert_eq!(decoded.len(), records.len());
        for (index, (stored, original)) in decoded.iter().zip(&records).enumerate() {
            prop_assert_eq!(&stored.record, original);
            prop_assert_eq!(stored.offset, LocalOffset(base_offset + index as u64));
            prop_assert_eq!(stored.origin.seq, OriginSeq(base_seq + index as u64));
            prop_assert_eq!(&stored.origin.stream, &origin);
        }
    }

    #[test]
    fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let mut bytes = Bytes::from(bytes);
        if let Ok(batch) = Batch::split_first(&mut bytes, 1 << 20) {
            for record in batch.records() {
                let _ = record;
            }
        }
    }

    #[test]
    fn mangled_record_bodies_never_panic(
        records in proptest::collection::vec(record_strategy(), 1..5),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
    ) {
        // Damage the record area, then fix the CRC so decoding reaches the records.
        let batch = Batch::encode(LocalOffset(0), &origin("a", 1), OriginSeq(0), &records);
        let mut bytes = batch.bytes().to_vec();
        let start = batch.header().header_bytes();
        for (index, value) in flips {
            let at = start + index.index(bytes.len() - start);
            bytes[at] = value;
        }
        set_base_offset(&mut bytes, LocalOffset(0));
        let mut bytes = Bytes::from(bytes);
        let batch = Batch::split_first(&mut bytes, 1 << 20).expect("header and CRC are intact");
        for record in batch.records() {
            let _ = record;
        }
    }
}

#[test]
fn every_single_byte_flip_is_detected() {
    let records: Vec<Record> = (0..3)
        .map(|i| Record {
            key: Some(Bytes::from(format!("key-{i}"))),
            value: Bytes::from(vec![i as u8; 50]),
            headers: vec![Header {
                key: "h".into(),
                value: Bytes::from_static(b"v"),
            }],
            timestamp: Timestamp::from_millis(1_000 + i),
        })
        .collect();
    let batch = Batch::encode(
        LocalOffset(7),
        &origin("us-east", 3),
        OriginSeq(11),
        &records,
    );
    let clean = batch.bytes().to_vec();
    for at in 0..clean.len() {
        let mut damaged = clean.clone();
        damaged[at] ^= 0x01;
        let mut bytes = Bytes::from(damaged);
        assert!(
            Batch::split_first(&mut bytes, 1 << 20).is_err(),
            "flip at byte {at} went unnoticed"
        );
    }
}

#[test]
fn every_truncation_is_detected() {
    let batch = Batch::encode(
        LocalOffset(0),
        &origin("a", 1),
        OriginSeq(0),
        &[Record::from_value("hello"), Record::from_value("world")],
    );
    for len in 0..batch.bytes().len() {
        let mut bytes = batch.bytes().slice(..len);
        assert!(
            Batch::split_first(&mut bytes, 1 << 20).is_err(),
            "length {len}"
        );
    }
}

#[test]
fn oversize_length_is_refused_before_allocating() {
    let mut bytes = Bytes::from(vec![0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0]);
    match Batch::split_first(&mut bytes, 1 << 20) {
        Err(StorageError::BatchTooLarge { bytes_max, .. }) => assert_eq!(bytes_max, 1 << 20),
        other => panic!("expected BatchTooLarge, got {other:?}"),
    }
}

#[test]
fn moving_a_batch_keeps_records_and_checksum() {
    let batch = Batch::encode(
        LocalOffset(0),
        &origin("a", 1),
        OriginSeq(5),
        &[Record::from_value("x")],
    );
    let moved = batch.with_base_offset(LocalOffset(42));
    let mut bytes = moved.bytes().clone();
    let parsed = Batch::split_first(&mut bytes, 1 << 20).expect("checksum was rewritten");
    let record = parsed
        .records()
        .next()
        .expect("one record")
        .expect("decodes");
    assert_eq!(record.offset, LocalOffset(42));
    assert_eq!(record.origin.seq, OriginSeq(5));
}

#[test]
fn varints_round_trip_at_the_edges() {
    for value in [0, 1, 127, 128, 16_383, 16_384, u64::MAX / 2, u64::MAX] {
        let mut out = Vec::new();
        varint::put(&mut out, value);
        assert_eq!(out.len(), varint::len(value));
        let mut bytes = Bytes::from(out);
        assert_eq!(varint::take(&mut bytes).expect("decodes"), value);
    }
    for value in [0i64, -1, 1, i64::MIN, i64::MAX] {
        let mut out = Vec::new();
        varint::put_zigzag(&mut out, value);
        let mut bytes = Bytes::from(out);
        assert_eq!(varint::take_zigzag(&mut bytes).expect("decodes"), value);
    }
}

#[test]
fn gap_batches_round_trip_and_yield_no_records() {
    let gap = Batch::encode_gap(
        LocalOffset(40),
        &origin("eu-west", 2),
        OriginSeq(7),
        1000,
        Timestamp(9),
    );
    let mut bytes = gap.bytes().clone();
    let parsed = Batch::split_first(&mut bytes, 1 << 20).expect("parses");
    assert!(parsed.header().gap);
    assert_eq!(parsed.header().record_count, 1000);
    assert_eq!(parsed.header().next_offset(), LocalOffset(1040));
    assert_eq!(parsed.records().count(), 0);
    let clean = gap.bytes().to_vec();
    for at in 0..clean.len() {
        let mut damaged = clean.clone();
        damaged[at] ^= 0x01;
        let mut bytes = Bytes::from(damaged);
        assert!(
            Batch::split_first(&mut bytes, 1 << 20).is_err(),
            "flip at {at}"
        );
    }
}

#[test]
fn unknown_attribute_bits_are_refused() {
    let batch = Batch::encode(
        LocalOffset(0),
        &origin("a", 1),
        OriginSeq(0),
        &[Record::from_value("x")],
    );
    let mut bytes = batch.bytes().to_vec();
    bytes[9] = 0x01;
    set_base_offset(&mut bytes, LocalOffset(0));
    let mut bytes = Bytes::from(bytes);
    assert!(Batch::split_first(&mut bytes, 1 << 20).is_err());
}
