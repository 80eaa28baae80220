//! Helpers shared by the unit tests: small configs, batch appends, file surgery.

use std::path::{Path, PathBuf};

use crate::batch::testing::BatchSpec;
use crate::batch::{self, BatchHeader};
use crate::config::LogConfig;
use crate::index::OffsetPosition;
use crate::log::{Log, LogAppendInfo};
use crate::time_index::TimestampOffset;

/// A config with small indexes intervals so tests exercise index entries.
pub(crate) fn config() -> LogConfig {
    LogConfig {
        index_interval_bytes: 200,
        ..LogConfig::default()
    }
}

/// Appends `count` leader batches of `records` records each, the i-th with timestamps from
/// `base_timestamp + 100 * i`.
pub(crate) fn append_batches(
    log: &mut Log,
    count: usize,
    records: usize,
    base_timestamp: i64,
    leader_epoch: i32,
) -> Vec<LogAppendInfo> {
    (0..count)
        .map(|i| {
            let mut bytes = BatchSpec::new(records, base_timestamp + 100 * i as i64).build();
            log.append_as_leader(&mut bytes, leader_epoch, base_timestamp + 100 * i as i64)
                .unwrap()
        })
        .collect()
}

/// Every batch of the log, read one at a time from the log start offset.
pub(crate) fn read_all(log: &Log) -> Vec<(BatchHeader, Vec<u8>)> {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < log.log_end_offset() {
        let fetched = log.read(offset, 1, i64::MAX, true).unwrap();
        assert!(!fetched.records.is_empty(), "no batch at {offset}");
        let header = BatchHeader::parse(&fetched.records).unwrap();
        assert_eq!(
            header.total_size(),
            fetched.records.len(),
            "min_one_batch returns exactly one batch"
        );
        batch::verify_crc(&fetched.records).unwrap();
        offset = header.next_offset();
        out.push((header, fetched.records.to_vec()));
    }
    out
}

/// Path of a segment file.
pub(crate) fn segment_file(dir: &Path, base_offset: i64, suffix: &str) -> PathBuf {
    crate::segment::segment_path(dir, base_offset, suffix)
}

/// Offset and time index entries of every segment.
pub(crate) fn index_entries(log: &Log) -> Vec<(i64, Vec<OffsetPosition>, Vec<TimestampOffset>)> {
    log.segments
        .iter()
        .map(|s| {
            (
                s.base_offset(),
                s.offset_index().entries(),
                s.time_index().entries(),
            )
        })
        .collect()
}

/// Checks that every offset of the log reads back the batch holding it.
pub(crate) fn assert_every_offset_readable(log: &Log) {
    for offset in log.log_start_offset()..log.log_end_offset() {
        let fetched = log.read(offset, 1, i64::MAX, true).unwrap();
        let header = BatchHeader::parse(&fetched.records).unwrap();
        assert!(
            header.base_offset <= offset && offset <= header.last_offset(),
            "offset {offset} read batch {}..={}",
            header.base_offset,
            header.last_offset()
        );
    }
}
