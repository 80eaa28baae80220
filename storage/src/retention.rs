//! Deleting old data: retention by time and size, and moving the log start offset
//! (DeleteRecords). Only whole segments are deleted, never the active one.

use tracing::info;

use crate::checkpoint;
use crate::error::StorageError;
use crate::log::{Log, LOG_START_OFFSET_CHECKPOINT_FILE};

impl Log {
    /// DeleteRecords: moves the log start offset forward (never back, never past the log end
    /// offset), durably; whole segments entirely below it are deleted. Returns whether it
    /// moved. `OffsetOutOfRange` when `new_start` is past the log end offset.
    pub fn maybe_increment_log_start_offset(
        &mut self,
        new_start: i64,
    ) -> Result<bool, StorageError> {
        let log_end_offset = self.log_end_offset();
        if new_start > log_end_offset {
            return Err(StorageError::OffsetOutOfRange {
                offset: new_start,
                log_start: self.log_start_offset,
                log_end: log_end_offset,
            });
        }
        if new_start <= self.log_start_offset {
            return Ok(false);
        }
        self.set_log_start_offset(new_start)?;
        self.delete_segments_below_log_start()?;
        self.assert_invariants();
        Ok(true)
    }

    /// Moves the log start offset forward: checkpointed first, then the epoch cache follows.
    fn set_log_start_offset(&mut self, new_start: i64) -> Result<(), StorageError> {
        debug_assert!(new_start > self.log_start_offset && new_start <= self.log_end_offset());
        checkpoint::write_offset(&self.dir, LOG_START_OFFSET_CHECKPOINT_FILE, new_start)?;
        info!(dir = %self.dir.display(), old = self.log_start_offset, new = new_start, "log start offset moved");
        self.log_start_offset = new_start;
        self.epoch_cache.truncate_from_start(new_start)?;
        self.delete_producer_snapshots_below_log_start()?;
        Ok(())
    }

    /// Deletes the oldest `count` segments. The log start offset must already lie at or past
    /// the base offset of the first segment kept.
    fn delete_oldest_segments(&mut self, count: usize) -> Result<(), StorageError> {
        assert!(
            count < self.segments.len(),
            "the active segment is never deleted"
        );
        for segment in self.segments.drain(..count).collect::<Vec<_>>() {
            info!(segment = %segment.log_path().display(), next_offset = segment.next_offset(), "deleting segment");
            segment.delete()?;
        }
        debug_assert!(self.segments[0].base_offset() <= self.log_start_offset);
        Ok(())
    }

    /// Deletes every non-active segment whose offsets all lie below the log start offset
    /// (its successor starts at or before it).
    pub(crate) fn delete_segments_below_log_start(&mut self) -> Result<usize, StorageError> {
        let count = self
            .segments
            .windows(2)
            .take_while(|p| p[1].base_offset() <= self.log_start_offset)
            .count();
        if count > 0 {
            self.delete_oldest_segments(count)?;
        }
        Ok(count)
    }

    /// Retention: deletes whole non-active segments past retention.ms (by the segment's
    /// largest timestamp) or while size exceeds retention.bytes. Never the active segment.
    /// Returns how many segments were deleted.
    pub fn delete_old_segments(&mut self, now_ms: i64) -> Result<usize, StorageError> {
        self.delete_old_segments_up_to(now_ms, i64::MAX)
    }

    /// [`Log::delete_old_segments`], deleting only segments whose offsets all lie below
    /// `upper_bound_offset` (the high watermark, as Kafka does, so retention never removes
    /// data followers may still need or consumers have not been allowed to see).
    ///
    /// Oldest segments go first while they breach retention.ms, then while the log is larger
    /// than retention.bytes by at least their size; the log start offset moves to the first
    /// remaining segment (checkpointed before any file is removed).
    pub fn delete_old_segments_up_to(
        &mut self,
        now_ms: i64,
        upper_bound_offset: i64,
    ) -> Result<usize, StorageError> {
        self.observe_now(now_ms);
        // A segment may go only if a later one exists and starts at or below the bound.
        let eligible = self
            .segments
            .windows(2)
            .take_while(|p| p[1].base_offset() <= upper_bound_offset)
            .count();
        let mut count = 0;
        if self.config.retention_ms >= 0 {
            while count < eligible
                && now_ms.saturating_sub(self.segments[count].largest_timestamp())
                    > self.config.retention_ms
            {
                count += 1;
            }
        }
        if self.config.retention_bytes >= 0 {
            let retained_bytes: u64 = self.segments[count..].iter().map(|s| s.size_bytes()).sum();
            let mut excess_bytes = retained_bytes as i64 - self.config.retention_bytes;
            while count < eligible && excess_bytes >= self.segments[count].size_bytes() as i64 {
                excess_bytes -= self.segments[count].size_bytes() as i64;
                count += 1;
            }
        }
        if count == 0 {
            return Ok(0);
        }
        let new_start = self.segments[count].base_offset();
        if new_start > self.log_start_offset {
            self.set_log_start_offset(new_start)?;
        }
        self.delete_oldest_segments(count)?;
        self.assert_invariants();
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use crate::batch::testing::batch;
    use crate::config::LogConfig;
    use crate::error::StorageError;
    use crate::log::Log;
    use crate::test_util::*;

    /// Ten batches of 2 records, 3 batches a segment: segments at 0, 6, 12, 18 with largest
    /// timestamps 1200, 1500, 1800, 1900 (batch i has timestamps 1000 + 100i and one more).
    fn log_with_four_segments(dir: &std::path::Path, config: LogConfig) -> Log {
        let one = batch(2, 0).len() as u64;
        let mut log = Log::open(
            dir,
            LogConfig {
                segment_bytes: 3 * one,
                ..config
            },
            0,
        )
        .unwrap();
        append_batches(&mut log, 10, 2, 1_000, 0);
        assert_eq!(log.segment_base_offsets(), vec![0, 6, 12, 18]);
        log
    }

    #[test]
    fn retention_by_time_deletes_old_segments_but_never_the_active_one() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = log_with_four_segments(
            dir.path(),
            LogConfig {
                retention_ms: 1_000,
                ..config()
            },
        );
        assert_eq!(
            log.delete_old_segments(2_201).unwrap(),
            0,
            "exactly retention.ms old stays"
        );
        assert_eq!(log.delete_old_segments(2_202).unwrap(), 1);
        assert_eq!(log.segment_base_offsets(), vec![6, 12, 18]);
        assert_eq!(log.log_start_offset(), 6);
        assert!(!segment_file(dir.path(), 0, ".log").exists());
        assert!(!segment_file(dir.path(), 0, ".index").exists());
        assert!(!segment_file(dir.path(), 0, ".timeindex").exists());
        assert!(matches!(
            log.read(5, 100, i64::MAX, true),
            Err(StorageError::OffsetOutOfRange { .. })
        ));

        assert_eq!(log.delete_old_segments(1_000_000).unwrap(), 2);
        assert_eq!(
            log.segment_base_offsets(),
            vec![18],
            "the active segment stays"
        );
        assert_eq!(log.log_start_offset(), 18);
        assert_eq!(log.delete_old_segments(1_000_000).unwrap(), 0);
        assert_every_offset_readable(&log);
        drop(log);

        let log = Log::open(dir.path(), config(), 0).unwrap();
        assert_eq!((log.log_start_offset(), log.log_end_offset()), (18, 20));
    }

    #[test]
    fn retention_by_bytes_deletes_oldest_segments_while_over() {
        let dir = tempfile::tempdir().unwrap();
        let one = batch(2, 0).len() as i64;
        let mut log = log_with_four_segments(
            dir.path(),
            LogConfig {
                retention_ms: -1,
                ..config()
            },
        );
        log.update_config(LogConfig {
            retention_bytes: 7 * one,
            ..log.config().clone()
        });
        // 10 batches; dropping the first segment (3 batches) gets to 7.
        assert_eq!(log.delete_old_segments(i64::MAX).unwrap(), 1);
        assert_eq!(log.size_bytes() as i64, 7 * one);
        log.update_config(LogConfig {
            retention_bytes: 0,
            ..log.config().clone()
        });
        assert_eq!(log.delete_old_segments(0).unwrap(), 2);
        assert_eq!(
            log.segment_base_offsets(),
            vec![18],
            "never the active segment"
        );
        assert_eq!(log.log_start_offset(), 18);
    }

    #[test]
    fn retention_stops_at_the_upper_bound() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = log_with_four_segments(
            dir.path(),
            LogConfig {
                retention_ms: 0,
                ..config()
            },
        );
        assert_eq!(
            log.delete_old_segments_up_to(1_000_000, 11).unwrap(),
            1,
            "segment 6..=11 ends past 10"
        );
        assert_eq!(log.delete_old_segments_up_to(1_000_000, 12).unwrap(), 1);
        assert_eq!(log.segment_base_offsets(), vec![12, 18]);
    }

    #[test]
    fn unlimited_retention_keeps_everything() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = log_with_four_segments(
            dir.path(),
            LogConfig {
                retention_ms: -1,
                retention_bytes: -1,
                ..config()
            },
        );
        assert_eq!(log.delete_old_segments(i64::MAX).unwrap(), 0);
        assert_eq!(log.segment_count(), 4);
    }

    #[test]
    fn log_start_offset_moves_forward_durably() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = log_with_four_segments(dir.path(), config());
        log.maybe_assign_epoch_start_offset(1, 0).unwrap();
        log.maybe_assign_epoch_start_offset(2, 9).unwrap();

        assert!(log.maybe_increment_log_start_offset(7).unwrap());
        assert_eq!(log.log_start_offset(), 7);
        assert_eq!(
            log.segment_base_offsets(),
            vec![6, 12, 18],
            "only segments wholly below go"
        );
        let epochs: Vec<(i32, i64)> = log
            .leader_epoch_cache()
            .entries()
            .iter()
            .map(|e| (e.epoch, e.start_offset))
            .collect();
        assert_eq!(epochs, vec![(1, 7), (2, 9)]);
        assert!(
            !log.maybe_increment_log_start_offset(3).unwrap(),
            "never back"
        );
        assert!(!log.maybe_increment_log_start_offset(7).unwrap());
        assert!(matches!(
            log.maybe_increment_log_start_offset(21),
            Err(StorageError::OffsetOutOfRange {
                offset: 21,
                log_start: 7,
                log_end: 20
            })
        ));
        assert_eq!(
            log.read(7, 1, i64::MAX, true).unwrap().first_batch_offset,
            Some(6)
        );
        assert!(matches!(
            log.read(6, 1, i64::MAX, true),
            Err(StorageError::OffsetOutOfRange { .. })
        ));
        drop(log);

        let mut log = Log::open(dir.path(), config(), 0).unwrap();
        assert_eq!(
            log.log_start_offset(),
            7,
            "durable across an unclean restart"
        );
        assert!(log.maybe_increment_log_start_offset(20).unwrap());
        assert_eq!(log.segment_base_offsets(), vec![18]);
        let epochs: Vec<(i32, i64)> = log
            .leader_epoch_cache()
            .entries()
            .iter()
            .map(|e| (e.epoch, e.start_offset))
            .collect();
        assert_eq!(epochs, vec![(2, 20)]);
        assert_eq!(log.read(20, 100, i64::MAX, true).unwrap().records.len(), 0);
        log.close().unwrap();
        let log = Log::open(dir.path(), config(), 0).unwrap();
        assert_eq!(
            (log.log_start_offset(), log.log_end_offset()),
            (20, 20),
            "and across a clean one"
        );
        // Like Kafka's loader, opening drops epochs that start at the log end: no batch holds
        // them, and the next append or leadership assigns the epoch again.
        assert!(log.leader_epoch_cache().is_empty());
    }
}
