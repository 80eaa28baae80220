//! Opening a partition log: loading its segments and recovering from an unclean shutdown.
//!
//! Files in a partition directory:
//!
//! | file | written | meaning |
//! |---|---|---|
//! | `{base:020}.log` | appends | batches of one segment |
//! | `{base:020}.index`, `.timeindex` | appends | the segment's indexes, rebuilt from the log when they do not match it |
//! | `log-start-offset-checkpoint` | start offset moves | the log start offset (DeleteRecords, retention) |
//! | `recovery-point-offset-checkpoint` | flush, roll, close | every offset below it is fsynced |
//! | `leader-epoch-checkpoint` | epoch changes | the leader epoch cache |
//! | `clean-shutdown` | close | the last close flushed everything; removed on open |
//! | `{offset:020}.snapshot` | roll, close (by the broker) | producer state of the batches below `offset` (`producer_snapshot`) |
//!
//! After a clean shutdown every segment is trusted: indexes are checked and only the batches
//! past each segment's last index entry are read. Otherwise every segment that may hold data at
//! or past the recovery point is validated batch by batch (framing, magic, CRC, offsets); the
//! first invalid byte ends the log: that segment is cut there and every later segment deleted,
//! because a crash can only tear the tail of what was being written. Indexes of recovered
//! segments are rebuilt; the leader epoch cache is truncated to the recovered end.

use std::fs;
use std::path::Path;

use tracing::{info, warn};

use crate::batch::BatchHeader;
use crate::checkpoint::{self, TMP_SUFFIX};
use crate::config::LogConfig;
use crate::epoch::LeaderEpochCache;
use crate::error::StorageError;
use crate::log::{
    Log, CLEAN_SHUTDOWN_FILE, LOG_START_OFFSET_CHECKPOINT_FILE, RECOVERY_POINT_CHECKPOINT_FILE,
};
use crate::segment::{self, Segment, LOG_SUFFIX};

/// Segment base offsets with a `.log` file, sorted; index files without a log are removed,
/// as are leftover checkpoint temporaries.
fn list_segments(dir: &Path) -> Result<Vec<i64>, StorageError> {
    let mut logs = Vec::new();
    let mut others = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            continue;
        };
        if name.ends_with(TMP_SUFFIX) {
            warn!(file = %entry.path().display(), "removing leftover temporary file");
            fs::remove_file(entry.path())?;
            continue;
        }
        match segment::parse_segment_file_name(name) {
            Some((base, LOG_SUFFIX)) => logs.push(base),
            Some((base, _)) => others.push((base, entry.path())),
            None => {}
        }
    }
    logs.sort_unstable();
    for (base, path) in others {
        if logs.binary_search(&base).is_err() {
            warn!(file = %path.display(), "removing index file without a segment");
            fs::remove_file(path)?;
        }
    }
    Ok(logs)
}

/// Reads an offset checkpoint, treating a malformed one as missing (with a warning): the log
/// can always fall back to what its segments say. I/O errors are returned.
fn read_offset_or_warn(dir: &Path, name: &str) -> Result<Option<i64>, StorageError> {
    match checkpoint::read_offset(dir, name) {
        Ok(offset) => Ok(offset),
        Err(StorageError::Io(e)) => Err(e.into()),
        Err(e) => {
            warn!(dir = %dir.display(), checkpoint = name, error = %e, "ignoring malformed checkpoint");
            Ok(None)
        }
    }
}

impl Log {
    /// Opens (creating the directory if needed) and recovers: validates every batch past the
    /// recovery point, truncates a torn or corrupt tail, rebuilds indexes that need it.
    pub fn open(dir: &Path, config: LogConfig, now_ms: i64) -> Result<Log, StorageError> {
        fs::create_dir_all(dir)?;
        let bases = list_segments(dir)?;
        let clean_marker = dir.join(CLEAN_SHUTDOWN_FILE);
        let clean = clean_marker.exists();
        if clean {
            // From here on a crash must recover: the marker only vouches for the last close.
            fs::remove_file(&clean_marker)?;
            checkpoint::sync_dir(dir)?;
        }
        let log_start_checkpoint = read_offset_or_warn(dir, LOG_START_OFFSET_CHECKPOINT_FILE)?;
        let recovery_point_checkpoint = read_offset_or_warn(dir, RECOVERY_POINT_CHECKPOINT_FILE)?;
        let (mut epoch_cache, rebuild_epochs) = match LeaderEpochCache::load(dir) {
            Ok(cache) => (cache, false),
            Err(StorageError::Io(e)) => return Err(e.into()),
            Err(e) => {
                warn!(dir = %dir.display(), error = %e, "rebuilding leader epoch cache from the log");
                (LeaderEpochCache::empty(dir), true)
            }
        };
        let recover_from = recovery_point_checkpoint.unwrap_or(0);

        let mut segments: Vec<Segment> = Vec::with_capacity(bases.len().max(1));
        let mut cut_here = None;
        for (i, &base) in bases.iter().enumerate() {
            if let Some(cut) = cut_here {
                warn!(dir = %dir.display(), base_offset = base, cut, "deleting segment after recovered end");
                Segment::delete_files(dir, base)?;
                continue;
            }
            let mut on_batch = |header: &BatchHeader| -> Result<(), StorageError> {
                let newer = match epoch_cache.latest_epoch() {
                    Some(latest) => header.partition_leader_epoch > latest,
                    None => true,
                };
                if !rebuild_epochs && header.partition_leader_epoch >= 0 && newer {
                    epoch_cache.assign(header.partition_leader_epoch, header.base_offset)?;
                }
                Ok(())
            };
            // A segment may hold offsets at or past the recovery point unless the next one
            // starts at or below it.
            let may_hold_unflushed = !clean
                && match bases.get(i + 1) {
                    Some(&next) => next > recover_from,
                    None => true,
                };
            let interval = config.index_interval_bytes;
            let (segment, truncated_bytes) = if may_hold_unflushed {
                Segment::open_and_recover(dir, base, now_ms, interval, &mut on_batch)?
            } else {
                Segment::load(dir, base, now_ms, interval, &mut on_batch)?
            };
            if let Some(previous) = segments.last() {
                if segment.base_offset() < previous.next_offset() {
                    warn!(dir = %dir.display(), base_offset = base, previous_end = previous.next_offset(),
                        "segment overlaps the one before it; the log ends before it");
                    segment.delete()?;
                    cut_here = Some(previous.next_offset());
                    continue;
                }
            }
            if truncated_bytes > 0 {
                cut_here = Some(segment.next_offset());
            }
            segments.push(segment);
        }
        if segments.is_empty() {
            let base = log_start_checkpoint.unwrap_or(0);
            segments.push(Segment::create(dir, base, now_ms)?);
            // A new log's first segment holds nothing a crash could lose: if its directory
            // entry is lost, the next open creates it again. Skipping the fsync keeps the
            // creation of thousands of partitions at once cheap.
            if !bases.is_empty() || log_start_checkpoint.is_some() {
                checkpoint::sync_dir(dir)?;
            }
        }

        let first_base = segments[0].base_offset();
        let log_end_offset = segments.last().expect("non-empty").next_offset();
        let recovery_point = if clean {
            log_end_offset
        } else {
            recovery_point_checkpoint.unwrap_or(0).min(log_end_offset)
        };
        let mut log = Log {
            dir: dir.to_path_buf(),
            config,
            segments,
            log_start_offset: log_start_checkpoint.unwrap_or(first_base).max(first_base),
            recovery_point,
            // A missing checkpoint reads as 0, so a recovery point of 0 needs no file.
            recovery_point_checkpointed: recovery_point_checkpoint.unwrap_or(0),
            epoch_cache,
            unflushed_records: 0,
            first_unflushed_append_ms: None,
            latest_now_ms: now_ms,
            pending_producer_snapshots: Vec::new(),
        };

        if log.log_start_offset > log_end_offset {
            warn!(dir = %dir.display(), log_start_offset = log.log_start_offset, log_end_offset,
                "log start offset lies past the recovered end; restarting the log there");
            let start = log.log_start_offset;
            log.log_start_offset = log_end_offset;
            log.truncate_fully_and_start_at(start)?;
        }
        if rebuild_epochs {
            log.rebuild_epoch_cache()?;
        }
        let log_end_offset = log.log_end_offset();
        log.epoch_cache.truncate_from_end(log_end_offset)?;
        log.epoch_cache.truncate_from_start(log.log_start_offset)?;
        // A missing checkpoint reads as the first segment's base, so that case needs no file.
        if log_start_checkpoint.unwrap_or(first_base) != log.log_start_offset {
            checkpoint::write_offset(dir, LOG_START_OFFSET_CHECKPOINT_FILE, log.log_start_offset)?;
        }
        log.checkpoint_recovery_point()?;
        log.delete_segments_below_log_start()?;
        // Kafka's `truncateAndReload` at load: no snapshot may claim batches the recovered log
        // lost, and the ones below the log start give way to the newest of them.
        log.delete_producer_snapshots_after_log_end()?;
        log.delete_producer_snapshots_below_log_start()?;
        log.assert_invariants();
        info!(
            dir = %dir.display(),
            clean,
            segments = log.segments.len(),
            log_start_offset = log.log_start_offset,
            log_end_offset = log.log_end_offset(),
            recovery_point = log.recovery_point,
            "opened log"
        );
        Ok(log)
    }

    /// Rebuilds the leader epoch cache from the epochs recorded in every batch.
    fn rebuild_epoch_cache(&mut self) -> Result<(), StorageError> {
        let mut cache = LeaderEpochCache::empty(&self.dir);
        for header in self.batch_headers_from(self.log_start_offset)? {
            let newer = match cache.latest_epoch() {
                Some(latest) => header.partition_leader_epoch > latest,
                None => true,
            };
            if header.partition_leader_epoch >= 0 && newer {
                cache.assign_in_memory(header.partition_leader_epoch, header.base_offset);
            }
        }
        cache.write()?;
        self.epoch_cache = cache;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::path::Path;

    use super::*;
    use crate::batch::testing::{batch, BatchSpec};
    use crate::epoch::LEADER_EPOCH_CHECKPOINT_FILE;
    use crate::test_util::*;

    fn epochs(log: &Log) -> Vec<(i32, i64)> {
        log.leader_epoch_cache()
            .entries()
            .iter()
            .map(|e| (e.epoch, e.start_offset))
            .collect()
    }

    fn copy_dir(from: &Path, to: &Path) {
        fs::create_dir_all(to).unwrap();
        for entry in fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }

    /// A log of 8 batches of 3 records in epoch 1, then one batch in epoch 2, left without a
    /// clean shutdown. Returns the byte position where the last batch starts.
    fn crashed_log(dir: &Path) -> u64 {
        let mut log = Log::open(dir, config(), 0).unwrap();
        append_batches(&mut log, 8, 3, 1_000, 1);
        let last_start = log.size_bytes();
        append_batches(&mut log, 1, 3, 5_000, 2);
        assert_eq!(epochs(&log), vec![(1, 0), (2, 24)]);
        last_start
    }

    /// What recovery must produce: the same first 8 batches, appended and never crashed.
    fn reference_log(dir: &Path) -> Log {
        let mut log = Log::open(dir, config(), 0).unwrap();
        append_batches(&mut log, 8, 3, 1_000, 1);
        log
    }

    fn assert_recovered_to_reference(log: &Log, reference: &Log) {
        assert_eq!(log.log_end_offset(), 24);
        assert_eq!(log.size_bytes(), reference.size_bytes());
        assert_eq!(
            index_entries(log),
            index_entries(reference),
            "indexes rebuilt"
        );
        assert_eq!(epochs(log), vec![(1, 0)], "epoch of the lost batch dropped");
        assert_eq!(read_all(log), read_all(reference));
        assert_eq!(log.max_timestamp_and_offset(), Some((1_702, 23)));
    }

    #[test]
    fn torn_last_batch_at_every_byte_recovers_to_last_whole_batch() {
        let root = tempfile::tempdir().unwrap();
        let crashed = root.path().join("crashed");
        let last_start = crashed_log(&crashed);
        let reference = reference_log(&root.path().join("reference"));
        let full_bytes = fs::metadata(segment_file(&crashed, 0, ".log"))
            .unwrap()
            .len();
        assert!(full_bytes - last_start > RECORD_BATCH_OVERHEAD_FOR_TEST);

        for cut in last_start..full_bytes {
            let case = root.path().join(format!("cut-{cut}"));
            copy_dir(&crashed, &case);
            fs::OpenOptions::new()
                .write(true)
                .open(segment_file(&case, 0, ".log"))
                .unwrap()
                .set_len(cut)
                .unwrap();
            let mut log = Log::open(&case, config(), 0).unwrap();
            assert_recovered_to_reference(&log, &reference);
            assert_eq!(
                fs::metadata(segment_file(&case, 0, ".log")).unwrap().len(),
                last_start
            );

            let info = append_batches(&mut log, 1, 2, 9_000, 3).remove(0);
            assert_eq!(
                info.first_offset, 24,
                "offsets continue from the recovered end"
            );
            drop(log);
            let log = Log::open(&case, config(), 0).unwrap();
            assert_eq!(log.log_end_offset(), 26);
            assert_eq!(epochs(&log), vec![(1, 0), (3, 24)]);
            assert_every_offset_readable(&log);
            fs::remove_dir_all(&case).unwrap();
        }
    }

    const RECORD_BATCH_OVERHEAD_FOR_TEST: u64 = crate::batch::RECORD_BATCH_OVERHEAD as u64;

    #[test]
    fn flipped_byte_in_last_batch_recovers_to_last_whole_batch() {
        let root = tempfile::tempdir().unwrap();
        let crashed = root.path().join("crashed");
        let last_start = crashed_log(&crashed) as usize;
        let reference = reference_log(&root.path().join("reference"));
        let original = fs::read(segment_file(&crashed, 0, ".log")).unwrap();

        // Base offset and partition leader epoch are outside the CRC: a flip there is caught
        // only when it breaks offset order, so the top bit of the base offset stands for them.
        let positions = std::iter::once(last_start).chain(
            (last_start + 8..original.len())
                .filter(|p| !(last_start + 12..last_start + 16).contains(p)),
        );
        for position in positions {
            let case = root.path().join(format!("flip-{position}"));
            copy_dir(&crashed, &case);
            let mut bytes = original.clone();
            bytes[position] ^= if position == last_start { 0x80 } else { 0x01 };
            fs::write(segment_file(&case, 0, ".log"), &bytes).unwrap();
            let mut log = Log::open(&case, config(), 0).unwrap();
            assert_recovered_to_reference(&log, &reference);
            assert_eq!(append_batches(&mut log, 1, 1, 0, 3)[0].first_offset, 24);
            drop(log);
            fs::remove_dir_all(&case).unwrap();
        }
    }

    #[test]
    fn corrupt_middle_segment_ends_the_log_there() {
        let dir = tempfile::tempdir().unwrap();
        let one = batch(2, 0).len() as u64;
        let config = LogConfig {
            segment_bytes: 3 * one,
            ..config()
        };
        let mut log = Log::open(dir.path(), config.clone(), 0).unwrap();
        append_batches(&mut log, 3, 2, 0, 1);
        append_batches(&mut log, 7, 2, 0, 2);
        assert_eq!(log.segment_base_offsets(), vec![0, 6, 12, 18]);
        drop(log);
        // Make recovery start from the beginning, then break the second batch of segment 6.
        checkpoint::write_offset(dir.path(), RECOVERY_POINT_CHECKPOINT_FILE, 0).unwrap();
        let path = segment_file(dir.path(), 6, ".log");
        let mut bytes = fs::read(&path).unwrap();
        let at = one as usize + 40;
        bytes[at] ^= 0xff;
        fs::write(&path, bytes).unwrap();

        let log = Log::open(dir.path(), config, 0).unwrap();
        assert_eq!(log.log_end_offset(), 8);
        assert_eq!(log.segment_base_offsets(), vec![0, 6]);
        assert!(!segment_file(dir.path(), 12, ".log").exists());
        assert!(!segment_file(dir.path(), 18, ".index").exists());
        assert_eq!(epochs(&log), vec![(1, 0), (2, 6)]);
        assert_every_offset_readable(&log);
    }

    #[test]
    fn clean_shutdown_skips_the_scan_and_keeps_everything() {
        let dir = tempfile::tempdir().unwrap();
        let one = batch(2, 0).len() as u64;
        let config = LogConfig {
            segment_bytes: 4 * one,
            ..config()
        };
        let mut log = Log::open(dir.path(), config.clone(), 0).unwrap();
        append_batches(&mut log, 10, 2, 0, 4);
        let before = (
            index_entries(&log),
            read_all(&log),
            log.max_timestamp_and_offset(),
        );
        log.close().unwrap();
        assert!(dir.path().join(CLEAN_SHUTDOWN_FILE).exists());
        assert_eq!(
            checkpoint::read_offset(dir.path(), RECOVERY_POINT_CHECKPOINT_FILE).unwrap(),
            Some(20)
        );

        // The scan is skipped: a flipped record byte in the active segment goes unnoticed.
        let path = segment_file(dir.path(), 16, ".log");
        let mut bytes = fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        fs::write(&path, &bytes).unwrap();
        let log = Log::open(dir.path(), config.clone(), 0).unwrap();
        assert!(
            !dir.path().join(CLEAN_SHUTDOWN_FILE).exists(),
            "the marker vouches for one open only"
        );
        assert_eq!(log.log_end_offset(), 20);
        assert_eq!(index_entries(&log), before.0);
        assert_eq!(log.max_timestamp_and_offset(), before.2);
        assert_eq!(log.recovery_point(), 20);
        drop(log);

        // Without the marker the active segment is scanned again and the bad batch cut.
        let log = Log::open(dir.path(), config, 0).unwrap();
        assert_eq!(log.log_end_offset(), 18);
        assert_eq!(read_all(&log)[..], before.1[..9]);
    }

    #[test]
    fn missing_or_corrupt_indexes_are_rebuilt() {
        let dir = tempfile::tempdir().unwrap();
        let one = batch(2, 0).len() as u64;
        let config = LogConfig {
            segment_bytes: 8 * one,
            index_interval_bytes: 100,
            ..config()
        };
        let mut log = Log::open(dir.path(), config.clone(), 0).unwrap();
        append_batches(&mut log, 20, 2, 0, 0);
        assert_eq!(log.segment_base_offsets(), vec![0, 16, 32]);
        let offsets_before: Vec<_> = index_entries(&log)
            .into_iter()
            .map(|(b, o, _)| (b, o))
            .collect();
        let max_before: Vec<_> = log
            .segments
            .iter()
            .map(|s| (s.max_timestamp(), s.offset_of_max_timestamp()))
            .collect();
        let data_before = read_all(&log);
        log.close().unwrap();

        type Damage = Box<dyn Fn(&Path)>;
        let damage: Vec<(i64, &str, Damage)> = vec![
            (
                0,
                ".index",
                Box::new(|p: &Path| fs::remove_file(p).unwrap()),
            ),
            (
                16,
                ".timeindex",
                Box::new(|p: &Path| fs::remove_file(p).unwrap()),
            ),
            (
                0,
                ".index",
                Box::new(|p: &Path| {
                    let mut bytes = fs::read(p).unwrap();
                    bytes.extend_from_slice(&[1, 2, 3]);
                    fs::write(p, bytes).unwrap();
                }),
            ),
            (
                16,
                ".index",
                Box::new(|p: &Path| {
                    // A whole entry that names the wrong batch.
                    let mut bytes = fs::read(p).unwrap();
                    let last = bytes.len() - 5;
                    bytes[last] ^= 1;
                    fs::write(p, bytes).unwrap();
                }),
            ),
            (
                32,
                ".index",
                Box::new(|p: &Path| fs::write(p, [0u8, 0, 0, 9, 0, 0, 255, 0]).unwrap()),
            ),
            (
                16,
                ".timeindex",
                Box::new(|p: &Path| {
                    let mut entry = 99i64.to_be_bytes().to_vec();
                    entry.extend_from_slice(&1000u32.to_be_bytes());
                    fs::write(p, entry).unwrap();
                }),
            ),
        ];
        for (base, suffix, damage) in damage {
            damage(&segment_file(dir.path(), base, suffix));
            let log = Log::open(dir.path(), config.clone(), 0).unwrap();
            let offsets: Vec<_> = index_entries(&log)
                .into_iter()
                .map(|(b, o, _)| (b, o))
                .collect();
            assert_eq!(offsets, offsets_before, "{base}{suffix}");
            let max: Vec<_> = log
                .segments
                .iter()
                .map(|s| (s.max_timestamp(), s.offset_of_max_timestamp()))
                .collect();
            assert_eq!(max, max_before, "{base}{suffix}");
            assert_eq!(read_all(&log), data_before);
            assert_every_offset_readable(&log);
            assert_eq!(
                log.fetch_offset_by_timestamp(1_000).unwrap(),
                Some((20, 1_000))
            );
            log.close().unwrap();
            for suffix in [".index", ".timeindex"] {
                for base in [0, 16, 32] {
                    assert!(segment_file(dir.path(), base, suffix).exists());
                }
            }
        }
    }

    #[test]
    fn unreadable_epoch_checkpoint_is_rebuilt_from_batches() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), config(), 0).unwrap();
        append_batches(&mut log, 2, 2, 0, 3);
        append_batches(&mut log, 2, 2, 0, 6);
        log.close().unwrap();
        fs::write(dir.path().join(LEADER_EPOCH_CHECKPOINT_FILE), "garbage").unwrap();
        let log = Log::open(dir.path(), config(), 0).unwrap();
        assert_eq!(epochs(&log), vec![(3, 0), (6, 4)]);
        drop(log);
        let log = Log::open(dir.path(), config(), 0).unwrap();
        assert_eq!(epochs(&log), vec![(3, 0), (6, 4)]);
    }

    #[test]
    fn unflushed_tail_lost_in_a_crash_drops_its_epochs() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), config(), 0).unwrap();
        append_batches(&mut log, 3, 2, 0, 1);
        log.flush().unwrap();
        let flushed_bytes = log.size_bytes();
        append_batches(&mut log, 2, 2, 0, 4);
        assert_eq!(epochs(&log), vec![(1, 0), (4, 6)]);
        drop(log);
        // The page cache held the last two batches; the disk did not.
        fs::OpenOptions::new()
            .write(true)
            .open(segment_file(dir.path(), 0, ".log"))
            .unwrap()
            .set_len(flushed_bytes)
            .unwrap();
        let log = Log::open(dir.path(), config(), 0).unwrap();
        assert_eq!(log.log_end_offset(), 6);
        assert_eq!(epochs(&log), vec![(1, 0)]);
        assert_eq!(log.end_offset_for_epoch(1), Some((1, 6)));
        assert_eq!(log.recovery_point(), 6);
    }

    #[test]
    fn leftovers_are_cleaned_and_empty_directories_start_at_the_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("log-start-offset-checkpoint.tmp"), "half").unwrap();
        fs::write(segment_file(dir.path(), 99, ".index"), [0u8; 8]).unwrap();
        checkpoint::write_offset(dir.path(), LOG_START_OFFSET_CHECKPOINT_FILE, 42).unwrap();
        let mut log = Log::open(dir.path(), config(), 0).unwrap();
        assert!(!dir.path().join("log-start-offset-checkpoint.tmp").exists());
        assert!(!segment_file(dir.path(), 99, ".index").exists());
        assert_eq!((log.log_start_offset(), log.log_end_offset()), (42, 42));
        assert_eq!(log.segment_base_offsets(), vec![42]);
        let mut bytes = BatchSpec::new(1, 0).build();
        assert_eq!(
            log.append_as_leader(&mut bytes, 0, 0).unwrap().first_offset,
            42
        );
    }

    #[test]
    fn log_start_past_recovered_end_restarts_the_log_there() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), config(), 0).unwrap();
        append_batches(&mut log, 5, 2, 0, 1);
        log.maybe_increment_log_start_offset(8).unwrap();
        drop(log);
        // Lose everything past offset 4 (e.g. a disk that dropped unflushed pages).
        let keep = batch(2, 0).len() as u64 * 2;
        fs::OpenOptions::new()
            .write(true)
            .open(segment_file(dir.path(), 0, ".log"))
            .unwrap()
            .set_len(keep)
            .unwrap();
        let log = Log::open(dir.path(), config(), 0).unwrap();
        assert_eq!(
            (log.log_start_offset(), log.log_end_offset()),
            (8, 8),
            "deleted offsets are never reused"
        );
        assert!(log.leader_epoch_cache().is_empty());
    }
}
