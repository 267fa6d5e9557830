use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use proptest::prelude::*;

use super::*;
use crate::config::Retention;
use crate::fs::{CrashMode, MemFs};
use crate::types::{Header, RegionId, StoredRecord, Timestamp};

const DIR: &str = "/data/topic-0";
const INCARNATION: Incarnation = Incarnation(7);

fn origin(name: &str) -> OriginStream {
    OriginStream {
        region: RegionId::parse(name).expect("valid test region"),
        incarnation: INCARNATION,
    }
}

fn small_config() -> LogConfig {
    LogConfig {
        segment_bytes_max: 4096,
        index_interval_bytes: 256,
        origin_checkpoint_bytes: 512,
        batch_bytes_max: 2048,
        durability: Durability::EveryBatch,
        ..LogConfig::default()
    }
}

fn open(fs: &MemFs, config: &LogConfig) -> Log {
    Log::open(
        Arc::new(fs.clone()),
        DIR,
        config.clone(),
        Some(INCARNATION),
        0,
    )
    .expect("log opens")
}

fn record(i: u64) -> Record {
    Record {
        key: Some(Bytes::from(format!("key-{i}"))),
        value: Bytes::from(format!("value-{i}-{}", "x".repeat((i % 7) as usize * 10))),
        headers: vec![Header {
            key: "n".into(),
            value: Bytes::from(i.to_string()),
        }],
        timestamp: Timestamp::from_millis(1_000 + i),
    }
}

fn sync(log: &mut Log) {
    if let Some(plan) = log.plan_sync() {
        let result = plan.execute();
        log.handle_synced(&plan, result).expect("fsync works");
    }
}

fn read_all(log: &Log) -> Vec<StoredRecord> {
    let mut records = Vec::new();
    let mut offset = log.start_offset();
    loop {
        let chunk = log.read(offset, 700).expect("reads");
        if chunk.bytes.is_empty() {
            return records;
        }
        records.extend(chunk.records_from(offset).expect("decodes"));
        offset = chunk.next_offset;
    }
}

/// Appends records of three origins interleaved (local us-east, mirrored
/// eu-west and ap-south) and returns each offset's coordinate.
fn interleaved(log: &mut Log, batches: u64, expected: &mut Vec<(OriginStream, u64)>) {
    let origins = [origin("us-east"), origin("eu-west"), origin("ap-south")];
    for i in 0..batches {
        let which = &origins[(i * 7 % 3) as usize];
        let count = 1 + i % 4;
        let records: Vec<Record> = (0..count).map(|j| record(i * 10 + j)).collect();
        let seq = log.vector().get(which);
        if which.region.as_str() == "us-east" {
            log.append_local(which, &records, 0).expect("appends");
        } else {
            let batch = Batch::encode(LocalOffset(999), which, OriginSeq(seq), &records);
            log.append_batch(&batch, 0).expect("appends");
        }
        for j in 0..count {
            expected.push((which.clone(), seq + j));
        }
    }
    sync(log);
}

fn check_mapping(log: &Log, expected: &[(OriginStream, u64)]) {
    let stored = read_all(log);
    assert_eq!(stored.len(), expected.len());
    let mut vector = VersionVector::new();
    for (offset, (origin, seq)) in expected.iter().enumerate() {
        let offset = LocalOffset(offset as u64);
        assert_eq!(
            log.prefix_vector(offset).expect("prefix"),
            vector,
            "prefix at {offset:?}"
        );
        assert_eq!(stored[offset.0 as usize].origin.seq, OriginSeq(*seq));
        assert_eq!(&stored[offset.0 as usize].origin.stream, origin);
        assert_eq!(
            log.locate(origin, *seq).expect("locate"),
            SeqLocation::At(offset)
        );
        vector.add(origin, 1);
    }
    assert_eq!(&vector, log.vector());
    assert_eq!(log.prefix_vector(log.end_offset()).expect("prefix"), vector);
}

#[test]
fn records_round_trip_across_segment_rolls() {
    let fs = MemFs::new();
    let mut log = open(&fs, &small_config());
    let local = origin("us-east");
    for i in 0..200 {
        log.append_local(&local, &[record(i)], 0).expect("appends");
    }
    sync(&mut log);
    assert!(log.segment_count() > 3, "small segments roll");
    let stored = read_all(&log);
    assert_eq!(stored.len(), 200);
    for (i, stored) in stored.iter().enumerate() {
        assert_eq!(stored.offset, LocalOffset(i as u64));
        assert_eq!(stored.record, record(i as u64));
    }
}

#[test]
fn reads_respect_the_byte_limit_but_return_at_least_one_batch() {
    let fs = MemFs::new();
    let mut log = open(&fs, &small_config());
    let local = origin("us-east");
    for i in 0..10 {
        log.append_local(&local, &[record(i)], 0).expect("appends");
    }
    sync(&mut log);
    let one = log.read(LocalOffset(0), 1).expect("reads");
    assert_eq!(one.next_offset, LocalOffset(1));
    let some = log.read(LocalOffset(3), 300).expect("reads");
    assert!(some.bytes.len() <= 300);
    assert_eq!(some.first_offset, LocalOffset(3));
    assert!(some.next_offset > LocalOffset(3));
}

#[test]
fn unsynced_records_are_invisible_until_synced() {
    let fs = MemFs::new();
    let mut log = open(&fs, &small_config());
    log.append_local(&origin("us-east"), &[record(0)], 0)
        .expect("appends");
    assert_eq!(log.visible_offset(), LocalOffset(0));
    assert!(
        log.read(LocalOffset(0), 1000)
            .expect("reads")
            .bytes
            .is_empty()
    );
    sync(&mut log);
    assert_eq!(log.visible_offset(), LocalOffset(1));
    assert_eq!(read_all(&log).len(), 1);
}

#[test]
fn offset_mapping_holds_across_rolls_and_restarts() {
    let fs = MemFs::new();
    let config = small_config();
    let mut expected = Vec::new();
    let mut log = open(&fs, &config);
    interleaved(&mut log, 60, &mut expected);
    check_mapping(&log, &expected);
    log.close().expect("closes");
    let mut log = open(&fs, &config);
    check_mapping(&log, &expected);
    interleaved(&mut log, 40, &mut expected);
    // A crash (no clean close) forces the full-scan recovery path.
    fs.crash(CrashMode::LoseUnsynced);
    let log = open(&fs, &config);
    check_mapping(&log, &expected);
}

#[test]
fn mirror_appends_are_contiguous_idempotent_and_never_leave_gaps() {
    let fs = MemFs::new();
    let mut log = open(&fs, &small_config());
    let remote = origin("eu-west");
    let records: Vec<Record> = (0..5).map(record).collect();
    let first = Batch::encode(LocalOffset(0), &remote, OriginSeq(0), &records[..3]);
    assert!(matches!(
        log.append_batch(&first, 0),
        Ok(AppendOutcome::Appended { skipped: 0, .. })
    ));
    // The same batch again is a duplicate and writes nothing.
    assert_eq!(
        log.append_batch(&first, 0).expect("accepted"),
        AppendOutcome::Duplicate
    );
    // A batch starting past the held count is a gap.
    let gap = Batch::encode(LocalOffset(0), &remote, OriginSeq(4), &records[4..]);
    match log.append_batch(&gap, 0) {
        Err(StorageError::Gap { expected, got, .. }) => assert_eq!((expected, got), (3, 4)),
        other => panic!("expected a gap error, got {other:?}"),
    }
    // An overlapping batch appends only its new records.
    let overlap = Batch::encode(LocalOffset(0), &remote, OriginSeq(1), &records[1..]);
    match log.append_batch(&overlap, 0).expect("accepted") {
        AppendOutcome::Appended { info, skipped } => {
            assert_eq!(skipped, 2);
            assert_eq!(info.base_offset, LocalOffset(3));
            assert_eq!(info.base_seq, OriginSeq(3));
        }
        AppendOutcome::Duplicate => panic!("records 3 and 4 are new"),
    }
    sync(&mut log);
    let stored = read_all(&log);
    let values: Vec<_> = stored.iter().map(|s| s.record.clone()).collect();
    assert_eq!(values, records);
    assert_eq!(log.vector().get(&remote), 5);
}

#[test]
fn batches_of_another_incarnation_are_refused() {
    let fs = MemFs::new();
    let mut log = open(&fs, &small_config());
    let stale = OriginStream {
        region: RegionId::parse("eu-west").expect("valid"),
        incarnation: Incarnation(6),
    };
    let batch = Batch::encode(LocalOffset(0), &stale, OriginSeq(0), &[record(0)]);
    assert!(matches!(
        log.append_batch(&batch, 0),
        Err(StorageError::IncarnationMismatch { .. })
    ));
    assert_eq!(log.end_offset(), LocalOffset(0));
}

/// Batch boundaries (start positions) of a segment file.
fn batch_starts(bytes: &[u8]) -> Vec<usize> {
    let header_len = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes")) as usize;
    let mut starts = Vec::new();
    let mut at = header_len;
    while at < bytes.len() {
        starts.push(at);
        let length = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
        at += 4 + length;
    }
    starts.push(at);
    starts
}

fn recovery_case(fs: &MemFs, path: &Path, damaged: Vec<u8>, config: &LogConfig) -> Log {
    let copy = fs.snapshot();
    copy.replace_contents(path, damaged);
    open(&copy, config)
}

#[test]
fn recovery_keeps_exactly_the_valid_prefix_after_any_truncation_or_corruption() {
    let fs = MemFs::new();
    let config = LogConfig {
        segment_bytes_max: 1 << 20,
        ..small_config()
    };
    let mut log = open(&fs, &config);
    let local = origin("us-east");
    for i in 0..12 {
        log.append_local(&local, &[record(i), record(i + 100)], 0)
            .expect("appends");
    }
    sync(&mut log);
    let path = log.active_segment_path();
    let clean = fs.contents(&path).expect("segment exists");
    let starts = batch_starts(&clean);
    let last_three = starts[starts.len() - 4];
    for cut in last_three..clean.len() {
        let log = recovery_case(&fs, &path, clean[..cut].to_vec(), &config);
        let whole_batches = starts.iter().filter(|&&s| s > 0 && s <= cut).count() - 1;
        assert_eq!(
            log.end_offset(),
            LocalOffset(2 * whole_batches as u64),
            "cut at {cut}"
        );
        assert_eq!(read_all(&log).len(), 2 * whole_batches, "cut at {cut}");
    }
    for at in last_three..clean.len() {
        let mut damaged = clean.clone();
        damaged[at] ^= 0x5a;
        let mut log = recovery_case(&fs, &path, damaged, &config);
        let intact = starts.iter().filter(|&&s| s <= at).count() - 1;
        assert_eq!(
            log.end_offset(),
            LocalOffset(2 * intact as u64),
            "flip at {at}"
        );
        let stored = read_all(&log);
        assert_eq!(stored.len(), 2 * intact, "flip at {at}");
        // The recovered log takes new appends where the valid prefix ends.
        let info = log
            .append_local(&local, &[record(999)], 0)
            .expect("appends after recovery");
        assert_eq!(info.base_offset, LocalOffset(2 * intact as u64));
        assert_eq!(info.base_seq, OriginSeq(2 * intact as u64));
    }
}

#[test]
fn missing_or_damaged_indexes_are_rebuilt() {
    let fs = MemFs::new();
    let config = small_config();
    let mut expected = Vec::new();
    let mut log = open(&fs, &config);
    interleaved(&mut log, 50, &mut expected);
    log.close().expect("closes");
    let names = fs.list_dir(Path::new(DIR)).expect("lists");
    for name in &names {
        let path = Path::new(DIR).join(name);
        if name.ends_with(".index") {
            fs.remove_file(&path).expect("removes");
        } else if name.ends_with(".origins") || name.ends_with(".timeindex") {
            fs.replace_contents(&path, vec![0xab; 37]);
        }
    }
    let log = open(&fs, &config);
    check_mapping(&log, &expected);
}

#[test]
fn a_corrupt_sealed_segment_quarantines_only_its_log() {
    let fs = MemFs::new();
    let config = small_config();
    let mut log = open(&fs, &config);
    for i in 0..100 {
        log.append_local(&origin("us-east"), &[record(i)], 0)
            .expect("appends");
    }
    log.close().expect("closes");
    let sealed = Path::new(DIR).join(format!("{:020}.log", 0));
    let mut bytes = fs.contents(&sealed).expect("first segment");
    let last = bytes.len() - 3;
    bytes[last] ^= 1;
    fs.replace_contents(&sealed, bytes);
    let error = Log::open(Arc::new(fs.clone()), DIR, config.clone(), None, 0).expect_err("corrupt");
    assert!(
        matches!(error, StorageError::CorruptSegment { ref path, .. } if path == &sealed),
        "{error}"
    );
    let again =
        Log::open(Arc::new(fs.clone()), DIR, config.clone(), None, 0).expect_err("quarantined");
    assert!(matches!(again, StorageError::Quarantined { .. }), "{again}");
    // Another partition in the same file system is unaffected.
    let other = Log::open(Arc::new(fs.clone()), "/data/topic-1", config, None, 0).expect("opens");
    assert_eq!(other.end_offset(), LocalOffset(0));
}

#[test]
fn a_segment_whose_creation_was_torn_is_recreated() {
    let fs = MemFs::new();
    let config = small_config();
    let mut log = open(&fs, &config);
    for i in 0..100 {
        log.append_local(&origin("us-east"), &[record(i)], 0)
            .expect("appends");
    }
    sync(&mut log);
    let (end, vector, segments) = (log.end_offset(), log.vector().clone(), log.segment_count());
    drop(log);
    // A crash in the middle of a roll: the next segment's file exists with
    // a header cut short.
    let torn = Path::new(DIR).join(format!("{:020}.log", end.0));
    let file = fs
        .open(&torn, crate::fs::OpenMode::CreateNew)
        .expect("creates");
    file.write_at(b"MESHGSEG\x40\0", 0).expect("writes");
    file.sync_data().expect("syncs");
    fs.sync_dir(Path::new(DIR)).expect("syncs dir");
    let mut log = open(&fs, &config);
    assert_eq!(log.segment_count(), segments + 1);
    assert_eq!((log.end_offset(), log.vector()), (end, &vector));
    let info = log
        .append_local(&origin("us-east"), &[record(100)], 0)
        .expect("appends");
    assert_eq!(info.base_offset, end);
    sync(&mut log);
    assert_eq!(read_all(&log).len(), 101);
}

#[test]
fn torn_crashes_keep_every_synced_record_and_a_prefix_of_the_rest() {
    for seed in 0..40 {
        let fs = MemFs::new();
        let config = small_config();
        let mut log = open(&fs, &config);
        let local = origin("us-east");
        let mut synced = 0;
        for i in 0..60 {
            log.append_local(&local, &[record(i)], 0).expect("appends");
            if i % 9 == 0 {
                sync(&mut log);
                synced = i + 1;
            }
        }
        drop(log);
        fs.crash(CrashMode::TornWrites { seed });
        let log = open(&fs, &config);
        let stored = read_all(&log);
        assert!(
            stored.len() as u64 >= synced,
            "seed {seed}: lost synced records"
        );
        for (i, stored) in stored.iter().enumerate() {
            assert_eq!(stored.record, record(i as u64), "seed {seed}");
        }
    }
}

#[test]
fn retention_deletes_old_segments_and_reports_what_is_gone() {
    let fs = MemFs::new();
    let config = LogConfig {
        retention: Retention {
            bytes_max: Some(8192),
            age_ms_max: None,
        },
        ..small_config()
    };
    let mut expected = Vec::new();
    let mut log = open(&fs, &config);
    interleaved(&mut log, 120, &mut expected);
    let before = log.segment_count();
    let report = log.apply_retention(0).expect("retention");
    assert!(report.deleted_segments > 0 && log.segment_count() < before);
    assert!(log.size_bytes() >= 8192);
    assert_eq!(report.start_offset, log.start_offset());
    let start = log.start_offset().0 as usize;
    let mut gone = VersionVector::new();
    for (origin, _) in &expected[..start] {
        gone.add(origin, 1);
    }
    assert_eq!(report.start_vector, gone);
    let (first_origin, first_seq) = &expected[0];
    assert_eq!(
        log.locate(first_origin, *first_seq).expect("locate"),
        SeqLocation::Deleted
    );
    match log.resume_offset(&VersionVector::new()).expect("resume") {
        Resume::At { offset, deleted } => {
            assert_eq!(offset, log.start_offset());
            assert_eq!(deleted, start as u64);
        }
        other => panic!("expected a resume point, got {other:?}"),
    }
    // Reads below the start are refused, with the range in the error.
    assert!(matches!(
        log.read(LocalOffset(0), 100),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
}

#[test]
fn retention_by_age_uses_the_newest_record_of_each_segment() {
    let fs = MemFs::new();
    let config = LogConfig {
        retention: Retention {
            bytes_max: None,
            age_ms_max: Some(10_000),
        },
        ..small_config()
    };
    let mut log = open(&fs, &config);
    for i in 0..100 {
        log.append_local(&origin("us-east"), &[record(i)], 0)
            .expect("appends");
    }
    sync(&mut log);
    // Records are stamped 1_000..1_100 ms: nothing is older than 10 s at 5 s.
    assert_eq!(
        log.apply_retention(5_000)
            .expect("retention")
            .deleted_segments,
        0
    );
    let report = log.apply_retention(1_000_000).expect("retention");
    assert_eq!(
        log.segment_count(),
        1,
        "everything but the active segment goes"
    );
    assert!(report.deleted_segments > 0);
}

#[test]
fn timestamps_find_the_first_record_at_or_after() {
    let fs = MemFs::new();
    let mut log = open(&fs, &small_config());
    for i in 0..150 {
        log.append_local(&origin("us-east"), &[record(i)], 0)
            .expect("appends");
    }
    sync(&mut log);
    for target in [0, 1_000, 1_042, 1_149] {
        let expected = target.max(1_000) - 1_000;
        let found = log
            .offset_for_timestamp(Timestamp::from_millis(target))
            .expect("lookup");
        assert_eq!(found, Some(LocalOffset(expected)), "target {target}");
    }
    assert_eq!(
        log.offset_for_timestamp(Timestamp::from_millis(5_000))
            .expect("lookup"),
        None
    );
}

#[test]
fn a_full_disk_refuses_the_append_and_changes_nothing() {
    let fs = MemFs::new();
    let config = LogConfig {
        segment_bytes_max: 1 << 20,
        ..small_config()
    };
    let mut log = open(&fs, &config);
    let local = origin("us-east");
    for i in 0..10 {
        log.append_local(&local, &[record(i)], 0).expect("appends");
    }
    sync(&mut log);
    let used = fs
        .list_dir(Path::new(DIR))
        .expect("lists")
        .iter()
        .map(|n| {
            fs.contents(&Path::new(DIR).join(n))
                .map_or(0, |c| c.len() as u64)
        })
        .sum::<u64>();
    fs.set_stored_bytes_max(Some(used + 10));
    assert!(matches!(
        log.append_local(&local, &[record(10)], 0),
        Err(StorageError::Io { .. })
    ));
    assert_eq!(log.end_offset(), LocalOffset(10));
    fs.set_stored_bytes_max(None);
    log.append_local(&local, &[record(10)], 0)
        .expect("appends once there is space");
    sync(&mut log);
    assert_eq!(read_all(&log).len(), 11);
}

#[test]
fn a_failed_fsync_stops_writes() {
    let fs = MemFs::new();
    let mut log = open(&fs, &small_config());
    log.append_local(&origin("us-east"), &[record(0)], 0)
        .expect("appends");
    fs.set_fail_syncs(true);
    let plan = log.plan_sync().expect("something to sync");
    let result = plan.execute();
    assert!(matches!(
        log.handle_synced(&plan, result),
        Err(StorageError::Failed { .. })
    ));
    assert!(matches!(
        log.append_local(&origin("us-east"), &[record(1)], 0),
        Err(StorageError::Failed { .. })
    ));
    assert_eq!(
        log.visible_offset(),
        LocalOffset(0),
        "nothing unsynced becomes visible"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// The resume point for any position vector is the largest offset below
    /// which every record is already consumed.
    #[test]
    fn resume_offset_is_the_largest_fully_consumed_prefix(
        batches in 1u64..60,
        fractions in proptest::collection::vec(0.0f64..=1.0, 3),
    ) {
        let fs = MemFs::new();
        let mut expected = Vec::new();
        let mut log = open(&fs, &small_config());
        interleaved(&mut log, batches, &mut expected);
        let position: VersionVector = log
            .vector()
            .iter()
            .zip(&fractions)
            .map(|((origin, held), f)| (origin.clone(), (held as f64 * f) as u64))
            .collect();
        let consumed = |(origin, seq): &(OriginStream, u64)| *seq < position.get(origin);
        let largest = expected.iter().position(|c| !consumed(c)).unwrap_or(expected.len());
        let resume = log.resume_offset(&position).expect("resume");
        prop_assert_eq!(resume, Resume::At { offset: LocalOffset(largest as u64), deleted: 0 });
    }
}

#[test]
fn a_position_ahead_of_the_log_waits_for_the_mirror() {
    let fs = MemFs::new();
    let mut log = open(&fs, &small_config());
    let remote = origin("eu-west");
    let batch = Batch::encode(
        LocalOffset(0),
        &remote,
        OriginSeq(0),
        &[record(0), record(1)],
    );
    log.append_batch(&batch, 0).expect("appends");
    let position: VersionVector = [(remote.clone(), 5)].into_iter().collect();
    assert_eq!(
        log.resume_offset(&position).expect("resume"),
        Resume::Behind {
            origin: remote,
            held: 2,
            needed: 5
        }
    );
}

#[test]
fn segments_below_a_snapshot_can_be_dropped() {
    let fs = MemFs::new();
    let mut log = open(&fs, &small_config());
    for i in 0..100 {
        log.append_local(&origin("us-east"), &[record(i)], 0)
            .expect("appends");
    }
    log.roll_now(0).expect("rolls");
    let snapshot_start = log.end_offset();
    log.append_local(&origin("us-east"), &[record(100)], 0)
        .expect("appends");
    sync(&mut log);
    let report = log.delete_segments_before(snapshot_start).expect("deletes");
    assert!(report.deleted_segments > 0);
    assert_eq!(log.start_offset(), snapshot_start);
    assert_eq!(log.segment_count(), 1);
    assert_eq!(read_all(&log).len(), 1);
}

#[test]
fn gap_markers_keep_origin_streams_contiguous_and_hold_no_records() {
    let fs = MemFs::new();
    let mut log = open(&fs, &small_config());
    let remote = origin("eu-west");
    let first = Batch::encode(
        LocalOffset(0),
        &remote,
        OriginSeq(0),
        &[record(0), record(1)],
    );
    log.append_batch(&first, 0).expect("appends");
    let gap = log
        .append_gap(&remote, 10, Timestamp::from_millis(5), 0)
        .expect("appends a gap")
        .expect("records 2..10 are missing");
    assert_eq!(
        (gap.base_offset, gap.next_offset),
        (LocalOffset(2), LocalOffset(10))
    );
    assert_eq!(log.vector().get(&remote), 10);
    let after = Batch::encode(LocalOffset(0), &remote, OriginSeq(10), &[record(10)]);
    log.append_batch(&after, 0)
        .expect("the stream continues after the gap");
    // A peer sending an overlapping gap only adds what is new.
    let overlapping = Batch::encode_gap(
        LocalOffset(0),
        &remote,
        OriginSeq(5),
        8,
        Timestamp::from_millis(5),
    );
    match log.append_batch(&overlapping, 0).expect("accepted") {
        AppendOutcome::Appended { info, skipped } => {
            assert_eq!(skipped, 6);
            assert_eq!(info.base_seq, OriginSeq(11));
            assert_eq!(info.next_offset, LocalOffset(13));
        }
        AppendOutcome::Duplicate => panic!("seqs 11 and 12 are new"),
    }
    sync(&mut log);
    let stored = read_all(&log);
    let seqs: Vec<u64> = stored.iter().map(|r| r.origin.seq.0).collect();
    assert_eq!(seqs, vec![0, 1, 10], "gaps hold no records");
    assert_eq!(
        log.locate(&remote, 5).expect("locate"),
        SeqLocation::At(LocalOffset(5))
    );
    drop(log);
    fs.crash(CrashMode::LoseUnsynced);
    let log = open(&fs, &small_config());
    assert_eq!(log.vector().get(&remote), 13, "gaps survive recovery");
}

#[test]
fn mirror_start_skips_what_the_peer_holds_and_reports_deleted_records() {
    let fs = MemFs::new();
    let config = LogConfig {
        retention: Retention {
            bytes_max: Some(8192),
            age_ms_max: None,
        },
        ..small_config()
    };
    let mut expected = Vec::new();
    let mut log = open(&fs, &config);
    interleaved(&mut log, 120, &mut expected);
    // A peer holding everything gets nothing.
    let (start, gaps) = log.mirror_start(&log.vector().clone()).expect("start");
    assert_eq!((start, gaps.len()), (log.end_offset(), 0));
    // A peer ahead on one origin is not a problem.
    let mut ahead = log.vector().clone();
    ahead.add(&origin("us-east"), 1_000);
    assert_eq!(log.mirror_start(&ahead).expect("start").0, log.end_offset());
    log.apply_retention(0).expect("retention");
    // A peer holding nothing lost what retention deleted, per origin.
    let (start, gaps) = log.mirror_start(&VersionVector::new()).expect("start");
    assert_eq!(start, log.start_offset());
    let lost: u64 = gaps.iter().map(|gap| gap.to_seq - gap.from_seq).sum();
    assert_eq!(lost, log.start_offset().0);
}
