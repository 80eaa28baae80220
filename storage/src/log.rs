//! One partition's log: an ordered run of segments, the offsets that bound it, and its leader
//! epoch cache. Appends, reads, rolls, truncation and flushing live here; opening and recovery
//! in `recovery.rs`, retention and DeleteRecords in `retention.rs`.

use std::ops::Range;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use tracing::{debug, info};

use crate::batch::{self, BatchHeader, RECORD_BATCH_OVERHEAD};
use crate::checkpoint;
use crate::config::{LogConfig, TimestampType};
use crate::epoch::LeaderEpochCache;
use crate::error::StorageError;
use crate::producer_snapshot::{self, ProducerSnapshotEntry};
use crate::segment::Segment;
use crate::txn_index::AbortedTxn;

/// Checkpoint holding the log start offset.
pub const LOG_START_OFFSET_CHECKPOINT_FILE: &str = "log-start-offset-checkpoint";
/// Checkpoint holding the recovery point: every offset below it is fsynced.
pub const RECOVERY_POINT_CHECKPOINT_FILE: &str = "recovery-point-offset-checkpoint";
/// Marker written by [`Log::close`] after a final flush; opening removes it.
pub const CLEAN_SHUTDOWN_FILE: &str = "clean-shutdown";
/// Rolls whose producer snapshot is still to be written, at most: the broker takes them
/// after every append, so only a caller that never does (a test) reaches this.
const PENDING_PRODUCER_SNAPSHOTS_MAX: usize = 64;

/// What an append did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogAppendInfo {
    /// Offset of the first record appended.
    pub first_offset: i64,
    /// Offset of the last record appended.
    pub last_offset: i64,
    /// Largest batch `max_timestamp` appended (-1 if none carried one).
    pub max_timestamp: i64,
    /// Last offset of the first batch carrying `max_timestamp` (the first offset with
    /// LogAppendTime, where every record carries it). Batch-level, records are not decoded.
    pub offset_of_max_timestamp: i64,
    /// The broker time written into the batches with LogAppendTime, else -1.
    pub log_append_time: i64,
    /// Records appended.
    pub records_count: i64,
    /// Bytes appended.
    pub valid_bytes: usize,
    /// Headers as stored (after the offset and epoch patch).
    pub batches: Vec<BatchHeader>,
}

/// What a read returned.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FetchDataInfo {
    /// Whole batches only (may be empty).
    pub records: Bytes,
    /// Base offset of the first batch in `records`, `None` when empty.
    pub first_batch_offset: Option<i64>,
}

/// One partition's log: a directory of segments `{base_offset:020}.log/.index/.timeindex`.
/// `Log` is not internally synchronised; the broker wraps it in a mutex.
///
/// # Invariants
/// - `segments` is never empty, is ordered by base offset, and each segment's base offset is
///   `>=` the previous segment's next offset. The last segment is the active one and the only
///   one appended to.
/// - `segments[0].base_offset() <= log_start_offset <= log_end_offset()`. Every method that
///   moves one of them moves the other along (truncation pulls the start back, a start past
///   the end restarts the log there).
/// - `recovery_point <= log_end_offset()`, and every byte of every segment below the recovery
///   point is fsynced: the recovery point only advances after the segments below it were
///   synced, and recovery only re-validates what lies past it.
/// - The leader epoch cache never has an entry starting past `log_end_offset()`: it is
///   truncated whenever the log is, and appends assign an epoch at the offset they write.
/// - The checkpoint files hold `log_start_offset` and `recovery_point_checkpointed`; the log
///   start offset checkpoint is written before any segment below it is deleted, so a restart
///   never exposes records below a start offset the broker has acknowledged.
/// - Producer snapshots (`{offset:020}.snapshot`) exist only at offsets `<= log_end_offset()`
///   (truncation deletes the ones past the new end), and below the log start offset only the
///   newest one at or below it is kept: the state it holds plus the log from there rebuilds
///   the producer state of every batch the log still holds, and of older producers not yet
///   expired.
#[derive(Debug)]
pub struct Log {
    pub(crate) dir: PathBuf,
    pub(crate) config: LogConfig,
    pub(crate) segments: Vec<Segment>,
    pub(crate) log_start_offset: i64,
    pub(crate) recovery_point: i64,
    /// The recovery point last written to its checkpoint file.
    pub(crate) recovery_point_checkpointed: i64,
    pub(crate) epoch_cache: LeaderEpochCache,
    /// Records appended since the last flush (for flush.messages).
    pub(crate) unflushed_records: i64,
    /// When the oldest unflushed append happened (for flush.ms).
    pub(crate) first_unflushed_append_ms: Option<i64>,
    /// The latest `now_ms` any call passed in: the creation time of segments made by calls
    /// that take no clock (truncation).
    pub(crate) latest_now_ms: i64,
    /// Base offsets of segments rolled since the broker last took them: each wants a producer
    /// snapshot holding the state of every batch below it. Oldest first, bounded.
    pub(crate) pending_producer_snapshots: Vec<i64>,
}

impl Log {
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    /// Replaces the config; size and time limits apply from the next append, roll or
    /// retention pass.
    pub fn update_config(&mut self, config: LogConfig) {
        self.config = config;
    }

    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset
    }

    pub fn log_end_offset(&self) -> i64 {
        self.active().next_offset()
    }

    /// Every offset below this is on disk (fsynced).
    pub fn recovery_point(&self) -> i64 {
        self.recovery_point
    }

    /// Bytes of all segments.
    pub fn size_bytes(&self) -> u64 {
        self.segments.iter().map(Segment::size_bytes).sum()
    }

    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// Base offsets of the segments, oldest first.
    pub fn segment_base_offsets(&self) -> Vec<i64> {
        self.segments.iter().map(Segment::base_offset).collect()
    }

    pub(crate) fn observe_now(&mut self, now_ms: i64) {
        self.latest_now_ms = self.latest_now_ms.max(now_ms);
    }

    pub(crate) fn active(&self) -> &Segment {
        self.segments
            .last()
            .expect("a log always has an active segment")
    }

    pub(crate) fn active_mut(&mut self) -> &mut Segment {
        self.segments
            .last_mut()
            .expect("a log always has an active segment")
    }

    pub(crate) fn assert_invariants(&self) {
        debug_assert!(!self.segments.is_empty());
        debug_assert!(
            self.segments
                .windows(2)
                .all(|p| p[0].next_offset() <= p[1].base_offset()),
            "segments overlap: {:?}",
            self.segments
                .iter()
                .map(|s| (s.base_offset(), s.next_offset()))
                .collect::<Vec<_>>()
        );
        let leo = self.log_end_offset();
        debug_assert!(
            self.segments[0].base_offset() <= self.log_start_offset && self.log_start_offset <= leo,
            "log start {} outside [{}, {leo}]",
            self.log_start_offset,
            self.segments[0].base_offset()
        );
        debug_assert!(
            self.recovery_point <= leo,
            "recovery point {} past {leo}",
            self.recovery_point
        );
        let epoch_end = self.epoch_cache.latest_entry().map(|e| e.start_offset);
        debug_assert!(
            epoch_end.unwrap_or(leo) <= leo,
            "epoch cache {:?} past log end {leo}",
            self.epoch_cache.entries()
        );
    }

    /// Leader append: `records` holds one or more v2 batches exactly as a client sent them.
    ///
    /// Checks each batch's size (`max.message.bytes`), framing, CRC and record count once,
    /// then assigns offsets from the log end by patching `base_offset` and
    /// `partition_leader_epoch` in place (neither is covered by the CRC). With LogAppendTime
    /// the batch is marked so, `max_timestamp` set to `now_ms` and the CRC recomputed. Rolls
    /// first if needed, records a new epoch in the leader epoch cache, then appends the bytes.
    /// All-or-nothing: a bad batch rejects the call before anything is patched or written.
    ///
    /// The append is in the page cache when this returns; it is fsynced only by the flush
    /// policy (flush.messages / flush.ms) or an explicit flush. When the policy's flush fails
    /// the error is returned although the records were appended: they are not durable.
    pub fn append_as_leader(
        &mut self,
        records: &mut [u8],
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<LogAppendInfo, StorageError> {
        self.observe_now(now_ms);
        let mut headers = self.validate_leader_batches(records)?;
        let first_offset = self.log_end_offset();
        let records_count: i64 = headers
            .iter()
            .map(|(h, _)| h.last_offset_delta as i64 + 1)
            .sum();
        let last_offset = first_offset + records_count - 1;
        if last_offset - first_offset > i32::MAX as i64 || records.len() > i32::MAX as usize {
            return Err(StorageError::invalid(format!(
                "{records_count} records in {} bytes do not fit one segment",
                records.len()
            )));
        }
        let log_append_time = match self.config.timestamp_type {
            TimestampType::LogAppendTime => now_ms,
            TimestampType::CreateTime => -1,
        };

        let mut next_offset = first_offset;
        for (header, range) in headers.iter_mut() {
            let bytes = &mut records[range.clone()];
            batch::set_base_offset(bytes, next_offset);
            batch::set_partition_leader_epoch(bytes, leader_epoch);
            if self.config.timestamp_type == TimestampType::LogAppendTime {
                batch::set_log_append_time(bytes, now_ms);
            }
            *header = BatchHeader::parse(bytes).expect("a patched batch still parses");
            debug_assert!(batch::verify_crc(bytes).is_ok(), "patching broke the CRC");
            next_offset = header.next_offset();
        }
        debug_assert_eq!(next_offset, last_offset + 1);

        let max_timestamp_in_append = headers
            .iter()
            .map(|(h, _)| h.max_timestamp)
            .max()
            .unwrap_or(-1);
        self.maybe_roll_for_append(
            records.len(),
            max_timestamp_in_append,
            first_offset,
            last_offset,
            now_ms,
        )?;
        if leader_epoch >= 0 {
            self.maybe_assign_epoch_start_offset(leader_epoch, first_offset)?;
        }
        self.append_to_active(records, &headers)?;
        let info = append_info(&headers, log_append_time, records.len());
        self.after_append(info.records_count, now_ms)?;
        self.assert_invariants();
        Ok(info)
    }

    /// Checks a producer's batches: whole v2 batches, each within max.message.bytes, with a
    /// valid CRC and a record count matching its offset range (Kafka's LogValidator checks,
    /// without decoding records).
    fn validate_leader_batches(
        &self,
        records: &[u8],
    ) -> Result<Vec<(BatchHeader, Range<usize>)>, StorageError> {
        if records.is_empty() {
            return Err(StorageError::invalid("no record batches"));
        }
        let mut headers = Vec::new();
        for item in batch::batches(records) {
            let (header, range) = item?;
            if header.total_size() > self.config.max_message_bytes as usize {
                return Err(StorageError::RecordTooLarge {
                    size: header.total_size(),
                    max: self.config.max_message_bytes,
                });
            }
            batch::verify_crc(&records[range.clone()])?;
            if header.last_offset_delta < 0 {
                return Err(StorageError::invalid(format!(
                    "last offset delta {} is negative",
                    header.last_offset_delta
                )));
            }
            if header.records_count <= 0
                || header.records_count as i64 != header.last_offset_delta as i64 + 1
            {
                return Err(StorageError::invalid(format!(
                    "record count {} does not match last offset delta {}",
                    header.records_count, header.last_offset_delta
                )));
            }
            headers.push((header, range));
        }
        Ok(headers)
    }

    /// Follower append: offsets and epochs are kept as the leader assigned them. The first
    /// batch must start at or after the log end offset and batches must increase
    /// (`NonMonotonicOffset` otherwise); each batch's CRC is checked. A trailing partial batch
    /// is ignored, as Kafka's follower does; `max.message.bytes` is not applied (the leader
    /// accepted the batch). Empty input appends nothing.
    pub fn append_as_follower(
        &mut self,
        records: &[u8],
        now_ms: i64,
    ) -> Result<LogAppendInfo, StorageError> {
        self.observe_now(now_ms);
        let log_end_offset = self.log_end_offset();
        let mut headers = Vec::new();
        let mut position = 0usize;
        let mut expected_at_least = log_end_offset;
        while records.len() - position >= RECORD_BATCH_OVERHEAD {
            let header = BatchHeader::parse(&records[position..])?;
            let end = position + header.total_size();
            if end > records.len() {
                break;
            }
            batch::verify_crc(&records[position..end])?;
            if header.base_offset < expected_at_least {
                return Err(StorageError::NonMonotonicOffset {
                    expected_at_least,
                    got: header.base_offset,
                });
            }
            if header.last_offset_delta < 0 {
                return Err(StorageError::invalid(format!(
                    "last offset delta {} is negative",
                    header.last_offset_delta
                )));
            }
            expected_at_least = header.next_offset();
            headers.push((header, position..end));
            position = end;
        }
        let valid = &records[..position];
        let Some((first, _)) = headers.first() else {
            return Ok(LogAppendInfo {
                first_offset: log_end_offset,
                last_offset: log_end_offset - 1,
                max_timestamp: -1,
                offset_of_max_timestamp: -1,
                log_append_time: -1,
                records_count: 0,
                valid_bytes: 0,
                batches: Vec::new(),
            });
        };
        let first_offset = first.base_offset;
        let last_offset = headers.last().expect("non-empty").0.last_offset();
        if last_offset - first_offset > i32::MAX as i64 || valid.len() > i32::MAX as usize {
            return Err(StorageError::invalid(
                "follower append does not fit one segment",
            ));
        }
        let max_timestamp_in_append = headers
            .iter()
            .map(|(h, _)| h.max_timestamp)
            .max()
            .unwrap_or(-1);
        self.maybe_roll_for_append(
            valid.len(),
            max_timestamp_in_append,
            first_offset,
            last_offset,
            now_ms,
        )?;
        for (header, _) in &headers {
            if header.partition_leader_epoch >= 0 {
                self.maybe_assign_epoch_start_offset(
                    header.partition_leader_epoch,
                    header.base_offset,
                )?;
            }
        }
        self.append_to_active(valid, &headers)?;
        let info = append_info(&headers, -1, valid.len());
        self.after_append(info.records_count, now_ms)?;
        self.assert_invariants();
        Ok(info)
    }

    /// Records that `epoch` starts at `start_offset` if it is newer than the latest cached
    /// epoch (Kafka's `maybeAssignEpochStartOffset`). A new leader calls this with its log end
    /// offset when it takes over, so OffsetForLeaderEpoch answers reflect the new epoch at once.
    pub fn maybe_assign_epoch_start_offset(
        &mut self,
        epoch: i32,
        start_offset: i64,
    ) -> Result<(), StorageError> {
        assert!(
            start_offset >= 0,
            "negative epoch start offset {start_offset}"
        );
        let newer = match self.epoch_cache.latest_epoch() {
            Some(latest) => epoch > latest,
            None => true,
        };
        if epoch >= 0 && newer {
            self.epoch_cache.assign(epoch, start_offset)?;
        }
        Ok(())
    }

    /// Writes validated batches to the active segment. If the write fails, epochs assigned for
    /// it are taken back so the cache does not run past the log end.
    fn append_to_active(
        &mut self,
        records: &[u8],
        headers: &[(BatchHeader, Range<usize>)],
    ) -> Result<(), StorageError> {
        let interval = self.config.index_interval_bytes;
        if let Err(e) = self.active_mut().append(records, headers, interval) {
            let log_end_offset = self.log_end_offset();
            if let Err(undo) = self.epoch_cache.truncate_from_end(log_end_offset) {
                tracing::error!(dir = %self.dir.display(), error = %undo, "cannot undo epoch of failed append");
            }
            return Err(e);
        }
        Ok(())
    }

    /// Flush policy after an append.
    fn after_append(&mut self, records_count: i64, now_ms: i64) -> Result<(), StorageError> {
        self.unflushed_records = self.unflushed_records.saturating_add(records_count);
        self.first_unflushed_append_ms.get_or_insert(now_ms);
        if self.unflushed_records >= self.config.flush_messages {
            self.flush()?;
        } else {
            self.maybe_flush(now_ms)?;
        }
        Ok(())
    }

    /// Flushes when unflushed data is older than flush.ms; returns whether it flushed. The
    /// broker calls this from a timer so flush.ms holds without appends.
    pub fn maybe_flush(&mut self, now_ms: i64) -> Result<bool, StorageError> {
        self.observe_now(now_ms);
        match self.first_unflushed_append_ms {
            Some(since) if now_ms.saturating_sub(since) >= self.config.flush_ms => {
                self.flush()?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Rolls before an append of `append_bytes` bytes covering `first_offset..=last_offset`
    /// when the active segment is full (segment.bytes), old (segment.ms), has a full index, or
    /// cannot address `last_offset` with a 32-bit relative offset.
    fn maybe_roll_for_append(
        &mut self,
        append_bytes: usize,
        max_timestamp_in_append: i64,
        first_offset: i64,
        last_offset: i64,
        now_ms: i64,
    ) -> Result<(), StorageError> {
        let active = self.active();
        let offset_overflow = last_offset - active.base_offset() > i32::MAX as i64;
        if active.is_empty() {
            if offset_overflow {
                self.roll(first_offset, now_ms)?;
            }
            return Ok(());
        }
        let size_full = active.size_bytes() + append_bytes as u64 > self.config.segment_bytes_max();
        let too_old = active.time_waited_for_roll_ms(now_ms, max_timestamp_in_append)
            > self.config.segment_ms;
        let index_full = active
            .offset_index()
            .is_full(self.config.offset_index_entries_max())
            || active
                .time_index()
                .is_full(self.config.time_index_entries_max());
        if size_full || too_old || index_full || offset_overflow {
            debug!(dir = %self.dir.display(), size_full, too_old, index_full, offset_overflow, "rolling segment");
            self.roll(first_offset.max(self.log_end_offset()), now_ms)?;
        }
        Ok(())
    }

    /// Rolls when the active segment is older than segment.ms even with no append.
    pub fn maybe_roll(&mut self, now_ms: i64) -> Result<bool, StorageError> {
        self.observe_now(now_ms);
        let active = self.active();
        if active.is_empty()
            || active.time_waited_for_roll_ms(now_ms, now_ms) <= self.config.segment_ms
        {
            return Ok(false);
        }
        self.roll(self.log_end_offset(), now_ms)?;
        Ok(true)
    }

    /// Starts a new active segment at `new_base_offset` (`>=` the log end offset). The old
    /// active segment gets its final time index entry and, like every older segment, is
    /// fsynced, so the recovery point moves to the old log end offset. An empty active segment
    /// is replaced rather than kept (a follower append far past it), and the log start offset
    /// follows when that was the only segment.
    pub(crate) fn roll(&mut self, new_base_offset: i64, now_ms: i64) -> Result<(), StorageError> {
        let log_end_offset = self.log_end_offset();
        assert!(
            new_base_offset >= log_end_offset,
            "roll to {new_base_offset} below log end {log_end_offset}"
        );
        if self.active().is_empty() {
            assert!(
                new_base_offset > self.active().base_offset(),
                "roll of an empty segment onto itself"
            );
            if self.segments.len() == 1 {
                checkpoint::write_offset(
                    &self.dir,
                    LOG_START_OFFSET_CHECKPOINT_FILE,
                    new_base_offset,
                )?;
                self.log_start_offset = new_base_offset;
                self.epoch_cache.truncate_from_start(new_base_offset)?;
            }
            let empty = self.segments.pop().expect("active segment");
            empty.delete()?;
        } else {
            self.active_mut().on_become_inactive()?;
        }
        for segment in &mut self.segments {
            segment.sync()?;
        }
        let segment = Segment::create(&self.dir, new_base_offset, now_ms)?;
        checkpoint::sync_dir(&self.dir)?;
        self.segments.push(segment);
        info!(dir = %self.dir.display(), base_offset = new_base_offset, "rolled new segment");
        self.recovery_point = self.recovery_point.max(log_end_offset);
        self.checkpoint_recovery_point()?;
        // Kafka's `takeProducerSnapshot` on roll: the broker writes it, as only it knows the
        // state (see `take_pending_producer_snapshots`).
        if self.pending_producer_snapshots.len() >= PENDING_PRODUCER_SNAPSHOTS_MAX {
            self.pending_producer_snapshots.remove(0);
        }
        self.pending_producer_snapshots.push(new_base_offset);
        self.delete_producer_snapshots_below_log_start()?;
        self.assert_invariants();
        Ok(())
    }

    /// The base offsets of the segments rolled since the last call, oldest first. For each the
    /// broker writes [`Log::write_producer_snapshot`] with the state of the batches below it:
    /// the rolls of one append come before all of its batches' offsets at or past them.
    pub fn take_pending_producer_snapshots(&mut self) -> Vec<i64> {
        std::mem::take(&mut self.pending_producer_snapshots)
    }

    /// Writes the producer snapshot at `offset` (the state of every batch below it),
    /// atomically and durably. An offset past the log end is refused: no snapshot may claim
    /// batches the log does not hold.
    pub fn write_producer_snapshot(
        &mut self,
        offset: i64,
        entries: &[ProducerSnapshotEntry],
    ) -> Result<(), StorageError> {
        let log_end_offset = self.log_end_offset();
        if offset > log_end_offset || offset < 0 {
            return Err(StorageError::OffsetOutOfRange {
                offset,
                log_start: self.log_start_offset,
                log_end: log_end_offset,
            });
        }
        producer_snapshot::write(&self.dir, offset, entries)?;
        debug!(dir = %self.dir.display(), offset, entries = entries.len(), "wrote producer snapshot");
        Ok(())
    }

    /// The newest readable producer snapshot at or below the log end offset (Kafka's
    /// `loadFromSnapshot`), refusing one of more than `max_entries` entries. Corrupt snapshots
    /// are deleted and unreadable ones skipped in favour of older ones; `None` means the
    /// state must be rebuilt from the log start.
    pub fn latest_producer_snapshot(
        &self,
        max_entries: usize,
    ) -> Result<Option<(i64, Vec<ProducerSnapshotEntry>)>, StorageError> {
        Ok(producer_snapshot::latest_readable(
            &self.dir,
            self.log_end_offset(),
            max_entries,
        )?)
    }

    /// Offsets of the producer snapshots on disk, ascending.
    pub fn producer_snapshot_offsets(&self) -> Result<Vec<i64>, StorageError> {
        Ok(producer_snapshot::list(&self.dir)?)
    }

    /// Keeps, below the log start offset, only the newest snapshot at or below it (Kafka
    /// deletes the snapshots of deleted segments the same way): it still holds the producers
    /// whose batches went with the deleted segments, until they expire.
    pub(crate) fn delete_producer_snapshots_below_log_start(&mut self) -> Result<(), StorageError> {
        let log_start_offset = self.log_start_offset;
        let offsets = producer_snapshot::list(&self.dir)?;
        let keep = offsets
            .iter()
            .copied()
            .filter(|o| *o <= log_start_offset)
            .max();
        if let Some(keep) = keep {
            producer_snapshot::delete_where(&self.dir, |o| o < keep)?;
        }
        Ok(())
    }

    /// Deletes the producer snapshots past the log end offset (after truncation or recovery).
    pub(crate) fn delete_producer_snapshots_after_log_end(&mut self) -> Result<(), StorageError> {
        let log_end_offset = self.log_end_offset();
        self.pending_producer_snapshots
            .retain(|o| *o <= log_end_offset);
        producer_snapshot::delete_where(&self.dir, |o| o > log_end_offset)?;
        Ok(())
    }

    /// Whole batches starting with the batch containing `start_offset`, stopping before
    /// `max_offset` (exclusive, e.g. the high watermark: a batch is included only if its base
    /// offset is below it) and after `max_bytes`, but always at least one whole batch when
    /// `min_one_batch` is set. Reads stay within one segment, like Kafka's.
    /// `OffsetOutOfRange` outside `[log_start_offset, log_end_offset]`; the log end offset
    /// itself reads nothing.
    pub fn read(
        &self,
        start_offset: i64,
        max_bytes: usize,
        max_offset: i64,
        min_one_batch: bool,
    ) -> Result<FetchDataInfo, StorageError> {
        let log_end_offset = self.log_end_offset();
        if start_offset < self.log_start_offset || start_offset > log_end_offset {
            return Err(StorageError::OffsetOutOfRange {
                offset: start_offset,
                log_start: self.log_start_offset,
                log_end: log_end_offset,
            });
        }
        if start_offset == log_end_offset || start_offset >= max_offset {
            return Ok(FetchDataInfo::default());
        }
        let first = self.segment_index_for(start_offset);
        for segment in &self.segments[first..] {
            if let Some((records, first_batch_offset)) =
                segment.read(start_offset, max_bytes, max_offset, min_one_batch)?
            {
                return Ok(FetchDataInfo {
                    records,
                    first_batch_offset,
                });
            }
        }
        Ok(FetchDataInfo::default())
    }

    /// Records an aborted transaction in the index of the segment holding its ABORT marker
    /// (`txn.last_offset`); one already held is skipped (Kafka's `updateTxnIndex`). Returns
    /// whether it was added.
    pub fn append_aborted_txn(&mut self, txn: AbortedTxn) -> Result<bool, StorageError> {
        if txn.last_offset < self.log_start_offset || txn.last_offset >= self.log_end_offset() {
            return Err(StorageError::OffsetOutOfRange {
                offset: txn.last_offset,
                log_start: self.log_start_offset,
                log_end: self.log_end_offset(),
            });
        }
        let i = self.segment_index_for(txn.last_offset);
        self.segments[i].append_aborted_txn(txn)
    }

    /// The aborted transactions overlapping `[start_offset, upper_bound_offset)`, searched
    /// from the segment holding `start_offset` on until one segment's search is complete
    /// (Kafka's `collectAbortedTransactions`).
    pub fn collect_aborted_transactions(
        &self,
        start_offset: i64,
        upper_bound_offset: i64,
    ) -> Vec<AbortedTxn> {
        let mut found = Vec::new();
        let first = self.segment_index_for(start_offset);
        for segment in &self.segments[first..] {
            let result = segment.collect_aborted_txns(start_offset, upper_bound_offset);
            found.extend(result.aborted_transactions);
            if result.is_complete {
                break;
            }
        }
        found
    }

    /// Index of the segment that would hold `offset`: the last one whose base offset is
    /// `<= offset` (or the first segment).
    pub(crate) fn segment_index_for(&self, offset: i64) -> usize {
        self.segments
            .partition_point(|s| s.base_offset() <= offset)
            .saturating_sub(1)
    }

    /// Calls `f` with the header of every batch from the one holding `start_offset` to the
    /// end, holding one segment's headers at a time (producer state rebuild). A start below
    /// the log start offset reads from the log start offset.
    pub fn for_each_batch_header_from(
        &self,
        start_offset: i64,
        mut f: impl FnMut(&BatchHeader),
    ) -> Result<(), StorageError> {
        let start_offset = start_offset.max(self.log_start_offset);
        let mut headers = Vec::new();
        let first = self.segment_index_for(start_offset);
        for segment in &self.segments[first..] {
            segment.batch_headers_from(start_offset, &mut headers)?;
            headers.drain(..).for_each(|h| f(&h));
        }
        Ok(())
    }

    /// Headers of the batches from the one holding `start_offset` to the end (tests). A start
    /// below the log start offset reads from the log start offset.
    pub fn batch_headers_from(&self, start_offset: i64) -> Result<Vec<BatchHeader>, StorageError> {
        let start_offset = start_offset.max(self.log_start_offset);
        let mut headers = Vec::new();
        let first = self.segment_index_for(start_offset);
        for segment in &self.segments[first..] {
            segment.batch_headers_from(start_offset, &mut headers)?;
        }
        Ok(headers)
    }

    /// ListOffsets by timestamp: `(offset, timestamp)` of the first record at or after the log
    /// start offset whose timestamp is `>= timestamp`, or `None` when there is none.
    ///
    /// Finds the first segment whose largest timestamp reaches the target, narrows with its
    /// time and offset indexes, then scans batch headers for the first batch whose
    /// `max_timestamp` reaches it. Only that one batch's records are decoded, and only when it
    /// is uncompressed CreateTime; otherwise the answer is its base offset and max timestamp.
    pub fn fetch_offset_by_timestamp(
        &self,
        timestamp: i64,
    ) -> Result<Option<(i64, i64)>, StorageError> {
        for segment in &self.segments {
            if segment.max_timestamp() < timestamp || segment.next_offset() <= self.log_start_offset
            {
                continue;
            }
            if let Some(found) =
                segment.find_offset_by_timestamp(timestamp, self.log_start_offset)?
            {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    /// `(max timestamp, its offset)` over the whole log, for ListOffsets MAX_TIMESTAMP (-3):
    /// the first record carrying the largest timestamp (exact for uncompressed CreateTime
    /// batches, else the base offset of its batch). `None` when no batch has a timestamp.
    pub fn max_timestamp_and_offset(&self) -> Option<(i64, i64)> {
        let mut best: Option<&Segment> = None;
        for segment in &self.segments {
            if segment.max_timestamp() > best.map_or(batch::NO_TIMESTAMP, Segment::max_timestamp) {
                best = Some(segment);
            }
        }
        let segment = best?;
        match segment.offset_of_max_timestamp_exact() {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(segment = %segment.log_path().display(), error = %e,
                    "cannot decode batch with max timestamp; answering with its last offset");
                Some((segment.max_timestamp(), segment.offset_of_max_timestamp()))
            }
        }
    }

    /// Truncates everything at and after `offset` (follower divergence), cutting at a batch
    /// boundary: a batch holding `offset` goes whole, so the new log end offset may be below
    /// `offset`. A no-op when `offset >= log_end_offset`. Segments starting past `offset` are
    /// deleted; when even the first segment starts past it the log restarts at `offset`. Also
    /// truncates the leader epoch cache and pulls the log start offset and recovery point back
    /// if they lay past the new end.
    pub fn truncate_to(&mut self, offset: i64) -> Result<(), StorageError> {
        let log_end_offset = self.log_end_offset();
        if offset < 0 {
            return Err(StorageError::OffsetOutOfRange {
                offset,
                log_start: self.log_start_offset,
                log_end: log_end_offset,
            });
        }
        if offset >= log_end_offset {
            // Nothing to cut, but an epoch entry may start at the log end: a replica that
            // became leader records its epoch there before appending anything, and if another
            // leader took over first that entry conflicts with the new leader's log. Kafka's
            // `UnifiedLog.truncateTo` drops it the same way.
            self.epoch_cache.truncate_from_end(log_end_offset)?;
            return Ok(());
        }
        if self.segments[0].base_offset() > offset {
            return self.truncate_fully_and_start_at(offset);
        }
        let mut deleted_segments = false;
        while self.active().base_offset() > offset {
            let segment = self
                .segments
                .pop()
                .expect("the first segment starts at or below offset");
            segment.delete()?;
            deleted_segments = true;
        }
        // Diverged data must not come back after a crash: the cut and the deletions are made
        // durable before the caller fetches the leader's data in their place.
        self.active_mut().truncate_to(offset)?;
        self.active_mut().sync()?;
        if deleted_segments {
            checkpoint::sync_dir(&self.dir)?;
        }
        let new_end = self.log_end_offset();
        info!(dir = %self.dir.display(), offset, old_end = log_end_offset, new_end, "truncated log");
        self.epoch_cache.truncate_from_end(new_end)?;
        self.delete_producer_snapshots_after_log_end()?;
        if self.recovery_point > new_end {
            self.recovery_point = new_end;
            self.checkpoint_recovery_point()?;
        }
        if self.log_start_offset > new_end {
            self.log_start_offset = new_end;
            checkpoint::write_offset(&self.dir, LOG_START_OFFSET_CHECKPOINT_FILE, new_end)?;
        }
        self.assert_invariants();
        Ok(())
    }

    /// Drops everything and restarts the log at `offset` (follower far behind the leader's
    /// start): all segments deleted, a new empty one at `offset`, the log start offset and
    /// recovery point set to it, the epoch cache cleared.
    pub fn truncate_fully_and_start_at(&mut self, offset: i64) -> Result<(), StorageError> {
        if offset < 0 {
            return Err(StorageError::OffsetOutOfRange {
                offset,
                log_start: self.log_start_offset,
                log_end: self.log_end_offset(),
            });
        }
        while let Some(segment) = self.segments.pop() {
            segment.delete()?;
        }
        let segment = Segment::create(&self.dir, offset, self.latest_now_ms)?;
        checkpoint::sync_dir(&self.dir)?;
        self.segments.push(segment);
        self.epoch_cache.clear()?;
        // Kafka's `truncateFullyAndStartAt`: no producer state survives a restart of the log.
        self.pending_producer_snapshots.clear();
        producer_snapshot::delete_where(&self.dir, |_| true)?;
        checkpoint::write_offset(&self.dir, LOG_START_OFFSET_CHECKPOINT_FILE, offset)?;
        self.log_start_offset = offset;
        self.recovery_point = offset;
        self.checkpoint_recovery_point()?;
        self.unflushed_records = 0;
        self.first_unflushed_append_ms = None;
        info!(dir = %self.dir.display(), offset, "truncated log fully");
        self.assert_invariants();
        Ok(())
    }

    /// Fsyncs every segment with unsynced data and both its indexes, then checkpoints the
    /// recovery point at the log end offset.
    pub fn flush(&mut self) -> Result<(), StorageError> {
        for segment in &mut self.segments {
            segment.sync()?;
        }
        self.recovery_point = self.log_end_offset();
        self.checkpoint_recovery_point()?;
        self.unflushed_records = 0;
        self.first_unflushed_append_ms = None;
        Ok(())
    }

    pub(crate) fn checkpoint_recovery_point(&mut self) -> Result<(), StorageError> {
        if self.recovery_point != self.recovery_point_checkpointed {
            checkpoint::write_offset(
                &self.dir,
                RECOVERY_POINT_CHECKPOINT_FILE,
                self.recovery_point,
            )?;
            self.recovery_point_checkpointed = self.recovery_point;
        }
        Ok(())
    }

    /// Flushes and writes the clean-shutdown marker, so the next open trusts the segments and
    /// skips the recovery scan.
    pub fn close(mut self) -> Result<(), StorageError> {
        self.flush()?;
        checkpoint::write_atomic(&self.dir, CLEAN_SHUTDOWN_FILE, b"")?;
        info!(dir = %self.dir.display(), log_end_offset = self.log_end_offset(), "closed log");
        Ok(())
    }

    /// Removes the whole partition directory.
    pub fn delete(self) -> Result<(), StorageError> {
        let dir = self.dir.clone();
        drop(self);
        std::fs::remove_dir_all(&dir)?;
        info!(dir = %dir.display(), "deleted log");
        Ok(())
    }

    pub fn leader_epoch_cache(&self) -> &LeaderEpochCache {
        &self.epoch_cache
    }

    /// Epoch -> (epoch, end offset) as OffsetForLeaderEpoch answers it (see
    /// [`LeaderEpochCache::end_offset_for`]).
    pub fn end_offset_for_epoch(&self, epoch: i32) -> Option<(i32, i64)> {
        self.epoch_cache
            .end_offset_for(epoch, self.log_end_offset())
    }

    pub fn latest_epoch(&self) -> Option<i32> {
        self.epoch_cache.latest_epoch()
    }
}

/// Summarises appended batches.
fn append_info(
    headers: &[(BatchHeader, Range<usize>)],
    log_append_time: i64,
    valid_bytes: usize,
) -> LogAppendInfo {
    let first_offset = headers.first().expect("batches").0.base_offset;
    let last_offset = headers.last().expect("batches").0.last_offset();
    let mut max_timestamp = batch::NO_TIMESTAMP;
    let mut offset_of_max_timestamp = -1;
    for (header, _) in headers {
        if header.max_timestamp > max_timestamp {
            max_timestamp = header.max_timestamp;
            offset_of_max_timestamp = header.last_offset();
        }
    }
    if log_append_time >= 0 {
        offset_of_max_timestamp = first_offset;
    }
    LogAppendInfo {
        first_offset,
        last_offset,
        max_timestamp,
        offset_of_max_timestamp,
        log_append_time,
        records_count: headers.iter().map(|(h, _)| h.records_count as i64).sum(),
        valid_bytes,
        batches: headers.iter().map(|(h, _)| *h).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::testing::{batch, BatchSpec};
    use crate::batch::{ATTRIBUTES_OFFSET, BATCH_LENGTH_OFFSET, CRC_OFFSET, MAGIC_OFFSET};
    use crate::test_util::*;

    fn open(dir: &Path, config: LogConfig) -> Log {
        Log::open(dir, config, 0).unwrap()
    }

    #[test]
    fn append_and_read_round_trip_keeps_bytes_verbatim() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = open(dir.path(), config());
        assert_eq!(
            (
                log.log_start_offset(),
                log.log_end_offset(),
                log.segment_count()
            ),
            (0, 0, 1)
        );

        let originals: Vec<Vec<u8>> = (0..5).map(|i| batch(i + 1, 1_000 + i as i64)).collect();
        let mut infos = Vec::new();
        for original in &originals {
            let mut bytes = original.clone();
            infos.push(log.append_as_leader(&mut bytes, 7, 5_000).unwrap());
        }
        assert_eq!(log.log_end_offset(), 15);
        assert_eq!(infos[2].first_offset, 3);
        assert_eq!(infos[2].last_offset, 5);
        assert_eq!(infos[2].records_count, 3);
        assert_eq!(infos[2].valid_bytes, originals[2].len());
        assert_eq!(infos[2].max_timestamp, 1_004);
        assert_eq!(infos[2].offset_of_max_timestamp, 5);
        assert_eq!(infos[2].log_append_time, -1);
        assert_eq!(infos[2].batches[0].base_offset, 3);
        assert_eq!(infos[2].batches[0].partition_leader_epoch, 7);

        let stored = read_all(&log);
        assert_eq!(stored.len(), 5);
        for ((header, bytes), original) in stored.iter().zip(&originals) {
            assert_eq!(bytes.len(), original.len());
            assert_eq!(&bytes[8..12], &original[8..12], "batch length");
            assert_eq!(
                &bytes[16..],
                &original[16..],
                "magic, CRC and everything it covers"
            );
            assert_eq!(header.partition_leader_epoch, 7);
        }
        let bases: Vec<i64> = stored.iter().map(|(h, _)| h.base_offset).collect();
        assert_eq!(bases, vec![0, 1, 3, 6, 10]);

        let everything = log.read(0, usize::MAX, i64::MAX, false).unwrap();
        assert_eq!(everything.first_batch_offset, Some(0));
        let concatenated: Vec<u8> = stored.iter().flat_map(|(_, b)| b.clone()).collect();
        assert_eq!(everything.records.as_ref(), concatenated.as_slice());
        assert_eq!(log.size_bytes(), concatenated.len() as u64);
    }

    #[test]
    fn several_batches_in_one_append() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = open(dir.path(), config());
        let mut records = batch(2, 10);
        records.extend_from_slice(&batch(3, 20));
        let info = log.append_as_leader(&mut records, 1, 0).unwrap();
        assert_eq!(
            (info.first_offset, info.last_offset, info.records_count),
            (0, 4, 5)
        );
        assert_eq!(
            info.batches
                .iter()
                .map(|h| h.base_offset)
                .collect::<Vec<_>>(),
            vec![0, 2]
        );
        assert_eq!(
            log.read(0, usize::MAX, i64::MAX, false)
                .unwrap()
                .records
                .as_ref(),
            &records[..]
        );
    }

    #[test]
    fn bad_batches_reject_the_whole_append() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = open(
            dir.path(),
            LogConfig {
                max_message_bytes: 200,
                ..config()
            },
        );
        let good = batch(1, 0);
        let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
        let mut bad_crc = good.clone();
        *bad_crc.last_mut().unwrap() ^= 1;
        cases.push(("bad crc", bad_crc));
        let mut v1 = good.clone();
        v1[MAGIC_OFFSET] = 1;
        cases.push(("magic 1", v1));
        cases.push(("partial", good[..good.len() - 1].to_vec()));
        cases.push(("too large", batch(20, 0)));
        let mut count_mismatch = BatchSpec::new(2, 0).build();
        count_mismatch[57..61].copy_from_slice(&3i32.to_be_bytes());
        let crc = crc32c::crc32c(&count_mismatch[ATTRIBUTES_OFFSET..]);
        count_mismatch[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
        cases.push(("count mismatch", count_mismatch));
        let mut short_length = good.clone();
        short_length[BATCH_LENGTH_OFFSET..BATCH_LENGTH_OFFSET + 4]
            .copy_from_slice(&10i32.to_be_bytes());
        cases.push(("short length", short_length));

        for (name, bad) in cases {
            let mut records = good.clone();
            records.extend_from_slice(&bad);
            let result = log.append_as_leader(&mut records, 0, 0);
            match name {
                "bad crc" | "partial" | "short length" => {
                    assert!(
                        matches!(result, Err(StorageError::CorruptRecord(_))),
                        "{name}: {result:?}"
                    )
                }
                "magic 1" | "count mismatch" => {
                    assert!(
                        matches!(result, Err(StorageError::InvalidRecord(_))),
                        "{name}: {result:?}"
                    )
                }
                "too large" => assert!(
                    matches!(result, Err(StorageError::RecordTooLarge { max: 200, .. })),
                    "{name}: {result:?}"
                ),
                _ => unreachable!(),
            }
            assert_eq!(log.log_end_offset(), 0, "{name}: nothing appended");
            assert_eq!(log.size_bytes(), 0);
        }
        assert!(matches!(
            log.append_as_leader(&mut [], 0, 0),
            Err(StorageError::InvalidRecord(_))
        ));
        assert!(
            log.leader_epoch_cache().is_empty(),
            "failed appends assign no epoch"
        );
    }

    #[test]
    fn log_append_time_rewrites_max_timestamp_and_crc() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = open(
            dir.path(),
            LogConfig {
                timestamp_type: TimestampType::LogAppendTime,
                ..config()
            },
        );
        let original = batch(3, 100);
        let mut bytes = original.clone();
        let info = log.append_as_leader(&mut bytes, 0, 9_999).unwrap();
        assert_eq!(info.log_append_time, 9_999);
        assert_eq!(info.max_timestamp, 9_999);
        assert_eq!(info.offset_of_max_timestamp, 0);
        let (header, stored) = read_all(&log).remove(0);
        assert!(header.is_log_append_time());
        assert_eq!(header.max_timestamp, 9_999);
        assert_ne!(header.crc, BatchHeader::parse(&original).unwrap().crc);
        batch::verify_crc(&stored).unwrap();
        assert_eq!(
            stored[ATTRIBUTES_OFFSET + 2..35],
            original[ATTRIBUTES_OFFSET + 2..35]
        );
        assert_eq!(stored[43..], original[43..], "records untouched");
        assert_eq!(
            log.fetch_offset_by_timestamp(9_999).unwrap(),
            Some((0, 9_999))
        );
    }

    #[test]
    fn rolls_on_segment_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let one = batch(2, 0).len() as u64;
        let mut log = open(
            dir.path(),
            LogConfig {
                segment_bytes: 3 * one,
                ..config()
            },
        );
        append_batches(&mut log, 10, 2, 0, 0);
        assert_eq!(log.segment_base_offsets(), vec![0, 6, 12, 18]);
        assert!(log.segments.iter().all(|s| s.size_bytes() <= 3 * one));
        assert_eq!(log.recovery_point(), 18, "rolling fsyncs the old segments");
        for base in [0, 6, 12, 18] {
            assert!(segment_file(dir.path(), base, ".log").exists());
            // Rolling flushed the indexes of the old segments; the active one's are written
            // at its first flush.
            let flushed = base < 18;
            assert_eq!(segment_file(dir.path(), base, ".index").exists(), flushed);
            assert_eq!(
                segment_file(dir.path(), base, ".timeindex").exists(),
                flushed
            );
        }
        assert_every_offset_readable(&log);
        log.flush().unwrap();
        assert!(segment_file(dir.path(), 18, ".index").exists());
        let read = log.read(5, usize::MAX, i64::MAX, false).unwrap();
        assert_eq!(read.first_batch_offset, Some(4));
        assert_eq!(
            read.records.len() as u64,
            one,
            "a read stays within one segment"
        );
    }

    #[test]
    fn rolls_on_segment_ms_and_timer() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = open(
            dir.path(),
            LogConfig {
                segment_ms: 1_000,
                ..config()
            },
        );
        let mut first = batch(1, 10_000);
        log.append_as_leader(&mut first, 0, 10_000).unwrap();
        let mut within = batch(1, 11_000);
        log.append_as_leader(&mut within, 0, 11_000).unwrap();
        assert_eq!(
            log.segment_count(),
            1,
            "exactly segment.ms old does not roll"
        );
        let mut late = batch(1, 11_001);
        log.append_as_leader(&mut late, 0, 11_001).unwrap();
        assert_eq!(log.segment_base_offsets(), vec![0, 2]);

        assert!(!log.maybe_roll(12_001).unwrap());
        assert!(log.maybe_roll(12_002).unwrap());
        assert_eq!(log.segment_base_offsets(), vec![0, 2, 3]);
        assert!(
            !log.maybe_roll(1_000_000).unwrap(),
            "an empty active segment never rolls"
        );
    }

    #[test]
    fn rolls_when_index_is_full() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = open(
            dir.path(),
            LogConfig {
                index_interval_bytes: 0,
                segment_index_bytes: 24,
                ..config()
            },
        );
        append_batches(&mut log, 7, 1, 0, 0);
        // Entries for every batch but the first; the time index (12 bytes an entry) fills at 2.
        assert_eq!(log.segment_base_offsets(), vec![0, 3, 6]);
        for segment in &log.segments[..2] {
            assert_eq!(segment.time_index().entries().len(), 2);
        }
        assert_every_offset_readable(&log);
    }

    #[test]
    fn index_lookups_find_every_offset() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = open(
            dir.path(),
            LogConfig {
                index_interval_bytes: 300,
                ..config()
            },
        );
        append_batches(&mut log, 60, 3, 0, 0);
        let entries = log.segments[0].offset_index().entries();
        assert!(entries.len() > 10, "{entries:?}");
        for entry in &entries {
            let fetched = log.read(entry.offset, 1, i64::MAX, true).unwrap();
            let header = BatchHeader::parse(&fetched.records).unwrap();
            assert_eq!(
                header.last_offset(),
                entry.offset,
                "entries name the last offset of a batch"
            );
        }
        let positions: Vec<u64> = entries.iter().map(|e| e.position).collect();
        assert!(positions.windows(2).all(|p| p[1] - p[0] > 300));
        assert_every_offset_readable(&log);
    }

    #[test]
    fn read_honours_limits() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = open(dir.path(), config());
        append_batches(&mut log, 10, 2, 0, 0);
        let one = batch(2, 0).len();

        let read = log.read(0, 3 * one + one / 2, i64::MAX, false).unwrap();
        assert_eq!(read.records.len(), 3 * one, "cut at a whole batch");
        let read = log.read(0, one - 1, i64::MAX, false).unwrap();
        assert!(read.records.is_empty());
        assert_eq!(read.first_batch_offset, None);
        let read = log.read(0, 1, i64::MAX, true).unwrap();
        assert_eq!(
            read.records.len(),
            one,
            "min_one_batch returns one whole batch"
        );
        let read = log.read(0, 0, i64::MAX, true).unwrap();
        assert_eq!(read.records.len(), one);

        let read = log.read(3, usize::MAX, i64::MAX, false).unwrap();
        assert_eq!(
            read.first_batch_offset,
            Some(2),
            "starts with the batch holding the offset"
        );
        assert_eq!(read.records.len(), 9 * one);

        let read = log.read(0, usize::MAX, 6, false).unwrap();
        assert_eq!(read.records.len(), 3 * one, "max_offset is exclusive");
        let read = log.read(0, usize::MAX, 5, false).unwrap();
        assert_eq!(
            read.records.len(),
            3 * one,
            "a batch starting below max_offset is included"
        );
        let read = log.read(6, usize::MAX, 6, true).unwrap();
        assert!(
            read.records.is_empty(),
            "nothing at or past max_offset, even with min_one_batch"
        );
        let read = log.read(2, one * 2, 8, true).unwrap();
        assert_eq!(read.records.len(), 2 * one);

        assert!(
            log.read(20, 100, i64::MAX, true)
                .unwrap()
                .records
                .is_empty(),
            "log end reads nothing"
        );
        assert!(matches!(
            log.read(21, 100, i64::MAX, true),
            Err(StorageError::OffsetOutOfRange {
                offset: 21,
                log_start: 0,
                log_end: 20
            })
        ));
        log.maybe_increment_log_start_offset(4).unwrap();
        assert!(matches!(
            log.read(3, 100, i64::MAX, true),
            Err(StorageError::OffsetOutOfRange { .. })
        ));
        assert_eq!(
            log.read(4, 1, i64::MAX, true).unwrap().first_batch_offset,
            Some(4)
        );
    }

    #[test]
    fn follower_append_keeps_leader_offsets_and_epochs() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = open(dir.path(), config());
        let mut records = Vec::new();
        for (base, epoch, count) in [(0, 1, 2), (2, 1, 3), (5, 3, 1)] {
            let mut spec = BatchSpec::new(count, 100);
            spec.base_offset = base;
            spec.partition_leader_epoch = epoch;
            records.extend_from_slice(&spec.build());
        }
        let info = log.append_as_follower(&records, 0).unwrap();
        assert_eq!(
            (info.first_offset, info.last_offset, info.records_count),
            (0, 5, 6)
        );
        assert_eq!(log.log_end_offset(), 6);
        assert_eq!(
            log.read(0, usize::MAX, i64::MAX, false)
                .unwrap()
                .records
                .as_ref(),
            &records[..]
        );
        let epochs: Vec<(i32, i64)> = log
            .leader_epoch_cache()
            .entries()
            .iter()
            .map(|e| (e.epoch, e.start_offset))
            .collect();
        assert_eq!(epochs, vec![(1, 0), (3, 5)]);

        let mut stale = BatchSpec::new(1, 0);
        stale.base_offset = 5;
        assert!(matches!(
            log.append_as_follower(&stale.build(), 0),
            Err(StorageError::NonMonotonicOffset {
                expected_at_least: 6,
                got: 5
            })
        ));
        let mut a = BatchSpec::new(2, 0);
        a.base_offset = 6;
        let mut b = BatchSpec::new(1, 0);
        b.base_offset = 7;
        let mut overlapping = a.build();
        overlapping.extend_from_slice(&b.build());
        assert!(matches!(
            log.append_as_follower(&overlapping, 0),
            Err(StorageError::NonMonotonicOffset {
                expected_at_least: 8,
                got: 7
            })
        ));
        assert_eq!(log.log_end_offset(), 6);

        // A trailing partial batch is left for the next fetch.
        let mut next = BatchSpec::new(1, 0);
        next.base_offset = 6;
        let mut with_partial = next.build();
        let whole = with_partial.len();
        with_partial.extend_from_slice(&batch(2, 0)[..30]);
        let info = log.append_as_follower(&with_partial, 0).unwrap();
        assert_eq!((info.valid_bytes, info.last_offset), (whole, 6));
        let info = log.append_as_follower(&[], 0).unwrap();
        assert_eq!((info.records_count, info.first_offset), (0, 7));

        let mut gap = BatchSpec::new(1, 0);
        gap.base_offset = 10;
        log.append_as_follower(&gap.build(), 0).unwrap();
        assert_eq!(log.log_end_offset(), 11);
        assert_eq!(
            log.read(8, 1, i64::MAX, true).unwrap().first_batch_offset,
            Some(10)
        );
    }

    #[test]
    fn truncate_to_cuts_at_batch_boundaries_and_appends_continue() {
        let dir = tempfile::tempdir().unwrap();
        let one = batch(2, 0).len() as u64;
        let mut log = open(
            dir.path(),
            LogConfig {
                segment_bytes: 3 * one,
                ..config()
            },
        );
        append_batches(&mut log, 4, 2, 0, 1);
        append_batches(&mut log, 4, 2, 1_000, 2);
        append_batches(&mut log, 2, 2, 2_000, 4);
        assert_eq!(log.segment_base_offsets(), vec![0, 6, 12, 18]);
        let entries = |log: &Log| -> Vec<(i32, i64)> {
            log.leader_epoch_cache()
                .entries()
                .iter()
                .map(|e| (e.epoch, e.start_offset))
                .collect()
        };
        assert_eq!(entries(&log), vec![(1, 0), (2, 8), (4, 16)]);

        log.truncate_to(25).unwrap();
        assert_eq!(log.log_end_offset(), 20, "past the end is a no-op");
        log.truncate_to(13).unwrap();
        assert_eq!(
            log.log_end_offset(),
            12,
            "offset 13 sits in batch 12..=13, which goes whole"
        );
        assert_eq!(log.segment_base_offsets(), vec![0, 6, 12]);
        assert!(!segment_file(dir.path(), 18, ".log").exists());
        assert_eq!(entries(&log), vec![(1, 0), (2, 8)]);
        assert_eq!(log.latest_epoch(), Some(2));

        log.truncate_to(8).unwrap();
        assert_eq!(log.log_end_offset(), 8);
        assert_eq!(log.segment_base_offsets(), vec![0, 6]);
        assert_eq!(entries(&log), vec![(1, 0)]);
        assert_eq!(log.recovery_point(), 8, "pulled back to the new end");
        let info = append_batches(&mut log, 1, 2, 3_000, 5).remove(0);
        assert_eq!(info.first_offset, 8);
        assert_eq!(entries(&log), vec![(1, 0), (5, 8)]);
        assert_every_offset_readable(&log);
        drop(log);

        let log = Log::open(dir.path(), config(), 0).unwrap();
        assert_eq!(log.log_end_offset(), 10);
        assert_eq!(entries(&log), vec![(1, 0), (5, 8)]);
        assert_every_offset_readable(&log);
    }

    #[test]
    fn truncate_below_first_segment_restarts_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = open(dir.path(), config());
        append_batches(&mut log, 3, 2, 0, 1);
        log.maybe_increment_log_start_offset(4).unwrap();
        log.truncate_to(2).unwrap();
        assert_eq!(
            (log.log_start_offset(), log.log_end_offset()),
            (2, 2),
            "start pulled back to the end"
        );

        log.truncate_fully_and_start_at(100).unwrap();
        assert_eq!((log.log_start_offset(), log.log_end_offset()), (100, 100));
        assert_eq!(log.segment_base_offsets(), vec![100]);
        assert!(log.leader_epoch_cache().is_empty());
        assert!(!segment_file(dir.path(), 0, ".log").exists());
        let info = append_batches(&mut log, 1, 1, 0, 3).remove(0);
        assert_eq!(info.first_offset, 100);
        drop(log);
        let log = Log::open(dir.path(), config(), 0).unwrap();
        assert_eq!((log.log_start_offset(), log.log_end_offset()), (100, 101));
        assert_eq!(log.end_offset_for_epoch(3), Some((3, 101)));
    }

    #[test]
    fn flush_policy_by_messages_and_time() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = open(
            dir.path(),
            LogConfig {
                flush_messages: 5,
                ..config()
            },
        );
        append_batches(&mut log, 2, 2, 0, 0);
        assert_eq!(log.recovery_point(), 0);
        append_batches(&mut log, 1, 2, 0, 0);
        assert_eq!(log.recovery_point(), 6, "5 or more unflushed records flush");
        assert_eq!(
            checkpoint::read_offset(dir.path(), RECOVERY_POINT_CHECKPOINT_FILE).unwrap(),
            Some(6)
        );
        drop(log);

        let dir = tempfile::tempdir().unwrap();
        let mut log = open(
            dir.path(),
            LogConfig {
                flush_ms: 1_000,
                ..config()
            },
        );
        let mut bytes = batch(1, 0);
        log.append_as_leader(&mut bytes, 0, 10_000).unwrap();
        assert!(!log.maybe_flush(10_999).unwrap());
        assert_eq!(log.recovery_point(), 0);
        assert!(log.maybe_flush(11_000).unwrap());
        assert_eq!(log.recovery_point(), 1);
        assert!(!log.maybe_flush(20_000).unwrap(), "nothing unflushed");
        let mut bytes = batch(1, 0);
        log.append_as_leader(&mut bytes, 0, 20_000).unwrap();
        let mut bytes = batch(1, 0);
        log.append_as_leader(&mut bytes, 0, 21_000).unwrap();
        assert_eq!(log.recovery_point(), 3, "an append past flush.ms flushes");
    }

    #[test]
    fn offsets_by_timestamp() {
        let dir = tempfile::tempdir().unwrap();
        let one = batch(3, 0).len() as u64;
        let mut log = open(
            dir.path(),
            LogConfig {
                segment_bytes: 4 * one,
                index_interval_bytes: 0,
                ..config()
            },
        );
        assert_eq!(log.max_timestamp_and_offset(), None);
        assert_eq!(log.fetch_offset_by_timestamp(0).unwrap(), None);
        // Batch i holds offsets 3i..3i+2 with timestamps 1000+100i+{0,1,2}.
        append_batches(&mut log, 10, 3, 1_000, 0);
        assert!(log.segment_count() > 2);
        assert_eq!(log.fetch_offset_by_timestamp(0).unwrap(), Some((0, 1_000)));
        assert_eq!(
            log.fetch_offset_by_timestamp(1_001).unwrap(),
            Some((1, 1_001))
        );
        assert_eq!(
            log.fetch_offset_by_timestamp(1_003).unwrap(),
            Some((3, 1_100))
        );
        assert_eq!(
            log.fetch_offset_by_timestamp(1_502).unwrap(),
            Some((17, 1_502))
        );
        assert_eq!(
            log.fetch_offset_by_timestamp(1_902).unwrap(),
            Some((29, 1_902))
        );
        assert_eq!(log.fetch_offset_by_timestamp(1_903).unwrap(), None);
        assert_eq!(log.max_timestamp_and_offset(), Some((1_902, 29)));

        // A batch whose first record carries the max timestamp.
        let mut spec = BatchSpec::new(3, 5_000);
        spec.timestamp_deltas_ms = vec![7, 0, 3];
        log.append_as_leader(&mut spec.build(), 0, 0).unwrap();
        assert_eq!(log.max_timestamp_and_offset(), Some((5_007, 30)));
        assert_eq!(
            log.fetch_offset_by_timestamp(5_001).unwrap(),
            Some((30, 5_007))
        );
        assert_eq!(
            log.fetch_offset_by_timestamp(5_000).unwrap(),
            Some((30, 5_007))
        );

        log.maybe_increment_log_start_offset(4).unwrap();
        assert_eq!(log.fetch_offset_by_timestamp(0).unwrap(), Some((4, 1_101)));
    }

    #[test]
    fn batch_headers_from_any_offset() {
        let dir = tempfile::tempdir().unwrap();
        let one = batch(2, 0).len() as u64;
        let mut log = open(
            dir.path(),
            LogConfig {
                segment_bytes: 3 * one,
                ..config()
            },
        );
        append_batches(&mut log, 8, 2, 0, 0);
        let all: Vec<i64> = log
            .batch_headers_from(0)
            .unwrap()
            .iter()
            .map(|h| h.base_offset)
            .collect();
        assert_eq!(all, (0..8).map(|i| 2 * i).collect::<Vec<_>>());
        let tail: Vec<i64> = log
            .batch_headers_from(7)
            .unwrap()
            .iter()
            .map(|h| h.base_offset)
            .collect();
        assert_eq!(tail, vec![6, 8, 10, 12, 14]);
        assert!(log.batch_headers_from(16).unwrap().is_empty());
    }

    #[test]
    fn epochs_from_leader_appends_answer_offset_for_leader_epoch() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = open(dir.path(), config());
        assert_eq!(log.end_offset_for_epoch(0), None);
        append_batches(&mut log, 2, 5, 0, 0);
        append_batches(&mut log, 1, 5, 0, 2);
        log.maybe_assign_epoch_start_offset(5, log.log_end_offset())
            .unwrap();
        assert_eq!(log.latest_epoch(), Some(5));
        append_batches(&mut log, 2, 5, 0, 5);
        assert_eq!(log.end_offset_for_epoch(0), Some((0, 10)));
        assert_eq!(log.end_offset_for_epoch(1), Some((0, 10)));
        assert_eq!(log.end_offset_for_epoch(2), Some((2, 15)));
        assert_eq!(log.end_offset_for_epoch(4), Some((2, 15)));
        assert_eq!(log.end_offset_for_epoch(5), Some((5, 25)));
        assert_eq!(log.end_offset_for_epoch(6), None);
        assert_eq!(log.end_offset_for_epoch(-1), None);
        log.close().unwrap();

        let log = Log::open(dir.path(), config(), 0).unwrap();
        let entries: Vec<(i32, i64)> = log
            .leader_epoch_cache()
            .entries()
            .iter()
            .map(|e| (e.epoch, e.start_offset))
            .collect();
        assert_eq!(entries, vec![(0, 0), (2, 10), (5, 15)]);
        assert_eq!(log.end_offset_for_epoch(2), Some((2, 15)));
        assert_eq!(
            std::fs::read_to_string(dir.path().join(crate::epoch::LEADER_EPOCH_CHECKPOINT_FILE))
                .unwrap(),
            "0\n3\n0 0\n2 10\n5 15\n"
        );
    }

    #[test]
    fn follower_append_far_ahead_starts_a_new_segment() {
        let dir = tempfile::tempdir().unwrap();
        let far = 3_000_000_000i64;
        let mut log = open(dir.path(), config());
        let mut spec = BatchSpec::new(2, 0);
        spec.base_offset = far;
        log.append_as_follower(&spec.build(), 0).unwrap();
        assert_eq!(
            log.segment_base_offsets(),
            vec![far],
            "the empty segment at 0 is replaced"
        );
        assert_eq!(
            (log.log_start_offset(), log.log_end_offset()),
            (far, far + 2)
        );
        spec.base_offset = 2 * far;
        log.append_as_follower(&spec.build(), 0).unwrap();
        assert_eq!(log.segment_base_offsets(), vec![far, 2 * far]);
        assert_eq!(
            log.read(far + 2, 1, i64::MAX, true)
                .unwrap()
                .first_batch_offset,
            Some(2 * far)
        );
        drop(log);
        let log = Log::open(dir.path(), config(), 0).unwrap();
        assert_eq!(
            (log.log_start_offset(), log.log_end_offset()),
            (far, 2 * far + 2)
        );
    }

    #[test]
    fn batches_larger_than_a_segment_get_a_segment_each() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = open(
            dir.path(),
            LogConfig {
                segment_bytes: 10,
                ..config()
            },
        );
        append_batches(&mut log, 3, 2, 0, 0);
        assert_eq!(log.segment_base_offsets(), vec![0, 2, 4]);
        assert_every_offset_readable(&log);
    }

    #[test]
    fn log_can_move_between_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Log>();
    }

    #[test]
    fn delete_removes_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("topic-0");
        let mut log = open(&path, config());
        append_batches(&mut log, 2, 1, 0, 0);
        log.delete().unwrap();
        assert!(!path.exists());
    }

    fn snapshot(pid: i64, last_offset: i64) -> ProducerSnapshotEntry {
        ProducerSnapshotEntry {
            producer_id: pid,
            producer_epoch: 0,
            last_sequence: last_offset as i32,
            last_offset,
            offset_delta: 1,
            timestamp: 0,
            coordinator_epoch: -1,
            current_txn_first_offset: -1,
        }
    }

    /// Every roll asks for a snapshot at the new segment's base; the broker writes them.
    fn write_pending_snapshots(log: &mut Log) {
        for offset in log.take_pending_producer_snapshots() {
            log.write_producer_snapshot(offset, &[snapshot(1, offset - 1)])
                .unwrap();
        }
    }

    #[test]
    fn producer_snapshots_follow_rolls_truncation_and_the_log_start() {
        let dir = tempfile::tempdir().unwrap();
        let one = batch(2, 0).len() as u64;
        let mut log = open(
            dir.path(),
            LogConfig {
                segment_bytes: 3 * one,
                ..config()
            },
        );
        append_batches(&mut log, 10, 2, 0, 0);
        assert_eq!(log.take_pending_producer_snapshots(), vec![6, 12, 18]);
        assert!(log.take_pending_producer_snapshots().is_empty());
        for offset in [6, 12, 18] {
            log.write_producer_snapshot(offset, &[snapshot(1, offset - 1)])
                .unwrap();
        }
        assert!(dir.path().join("00000000000000000012.snapshot").exists());
        assert!(matches!(
            log.write_producer_snapshot(21, &[]),
            Err(StorageError::OffsetOutOfRange { .. })
        ));
        // The clean-shutdown snapshot at the log end.
        log.write_producer_snapshot(20, &[snapshot(1, 19)]).unwrap();
        assert_eq!(
            log.producer_snapshot_offsets().unwrap(),
            vec![6, 12, 18, 20]
        );
        let (offset, entries) = log.latest_producer_snapshot(10).unwrap().unwrap();
        assert_eq!((offset, entries), (20, vec![snapshot(1, 19)]));

        // Truncation deletes the snapshots past the new end and keeps the one at it.
        log.truncate_to(12).unwrap();
        assert_eq!(log.producer_snapshot_offsets().unwrap(), vec![6, 12]);
        append_batches(&mut log, 4, 2, 2_000, 1);
        write_pending_snapshots(&mut log);
        assert_eq!(log.producer_snapshot_offsets().unwrap(), vec![6, 12, 18]);

        // DeleteRecords into a segment keeps the newest snapshot at or below the new start.
        assert!(log.maybe_increment_log_start_offset(14).unwrap());
        assert_eq!(log.producer_snapshot_offsets().unwrap(), vec![12, 18]);
        // Retention of whole segments likewise.
        assert!(log.maybe_increment_log_start_offset(18).unwrap());
        assert_eq!(log.producer_snapshot_offsets().unwrap(), vec![18]);

        // Restarting the log drops every snapshot.
        log.truncate_fully_and_start_at(100).unwrap();
        assert!(log.producer_snapshot_offsets().unwrap().is_empty());
        assert!(log.take_pending_producer_snapshots().is_empty());
    }

    #[test]
    fn open_deletes_producer_snapshots_past_the_recovered_end() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = open(dir.path(), config());
        append_batches(&mut log, 3, 2, 0, 0);
        log.write_producer_snapshot(6, &[snapshot(1, 5)]).unwrap();
        drop(log);
        // A snapshot from a log that lost its tail (or a stray one) claims too much.
        crate::producer_snapshot::write(dir.path(), 40, &[snapshot(1, 39)]).unwrap();
        let log = open(dir.path(), config());
        assert_eq!(log.producer_snapshot_offsets().unwrap(), vec![6]);
    }

    #[test]
    fn headers_are_visited_segment_by_segment() {
        let dir = tempfile::tempdir().unwrap();
        let one = batch(2, 0).len() as u64;
        let mut log = open(
            dir.path(),
            LogConfig {
                segment_bytes: 3 * one,
                ..config()
            },
        );
        append_batches(&mut log, 10, 2, 0, 0);
        let mut seen = Vec::new();
        log.for_each_batch_header_from(7, |h| seen.push(h.base_offset))
            .unwrap();
        assert_eq!(seen, vec![6, 8, 10, 12, 14, 16, 18]);
        let all: Vec<i64> = log
            .batch_headers_from(7)
            .unwrap()
            .iter()
            .map(|h| h.base_offset)
            .collect();
        assert_eq!(seen, all);
    }
}

#[cfg(test)]
mod txn_index_tests {
    use super::*;
    use crate::control::{encode_end_txn_marker, ControlRecordType, EndTxnMarker};

    fn abort(log: &mut Log, pid: i64) -> i64 {
        let marker = EndTxnMarker {
            control_type: ControlRecordType::Abort,
            coordinator_epoch: 0,
        };
        let mut bytes = encode_end_txn_marker(pid, 0, marker, 1_000);
        log.append_as_leader(&mut bytes, 0, 1_000)
            .unwrap()
            .first_offset
    }

    /// Entries land in the segment of their marker, survive a reopen, are found across
    /// segments, and go with truncation.
    #[test]
    fn aborted_txns_follow_their_segments() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig::default();
        let mut log = Log::open(dir.path(), config.clone(), 1_000).unwrap();
        let m1 = abort(&mut log, 1);
        let e1 = AbortedTxn {
            producer_id: 1,
            first_offset: m1,
            last_offset: m1,
            last_stable_offset: m1 + 1,
        };
        assert!(log.append_aborted_txn(e1).unwrap());
        assert!(!log.append_aborted_txn(e1).unwrap(), "already held");
        log.roll(log.log_end_offset(), 1_000).unwrap();
        let m2 = abort(&mut log, 2);
        let m3 = abort(&mut log, 3);
        let e2 = AbortedTxn {
            producer_id: 2,
            first_offset: m1,
            last_offset: m2,
            last_stable_offset: m2 + 1,
        };
        let e3 = AbortedTxn {
            producer_id: 3,
            first_offset: m3,
            last_offset: m3,
            last_stable_offset: m3 + 1,
        };
        log.append_aborted_txn(e2).unwrap();
        log.append_aborted_txn(e3).unwrap();
        assert!(log
            .append_aborted_txn(AbortedTxn {
                last_offset: log.log_end_offset(),
                ..e3
            })
            .is_err());
        assert_eq!(
            log.collect_aborted_transactions(0, m3 + 1),
            vec![e1, e2, e3]
        );
        assert_eq!(log.collect_aborted_transactions(m2, m3), vec![e2]);
        log.flush().unwrap();
        let txn_index_files = |dir: &Path| {
            std::fs::read_dir(dir)
                .unwrap()
                .filter(|e| {
                    e.as_ref()
                        .unwrap()
                        .file_name()
                        .to_string_lossy()
                        .ends_with(".txnindex")
                })
                .count()
        };
        assert_eq!(txn_index_files(dir.path()), 2);
        log.close().unwrap();

        let mut log = Log::open(dir.path(), config, 2_000).unwrap();
        assert_eq!(
            log.collect_aborted_transactions(0, m3 + 1),
            vec![e1, e2, e3]
        );
        log.truncate_to(m3).unwrap();
        assert_eq!(log.collect_aborted_transactions(0, i64::MAX), vec![e1, e2]);
        log.truncate_to(m2).unwrap();
        assert_eq!(log.collect_aborted_transactions(0, i64::MAX), vec![e1]);
        assert_eq!(
            txn_index_files(dir.path()),
            1,
            "an emptied index leaves no file"
        );
    }
}
