//! The leader epoch cache: which leader epoch started at which offset (KIP-101, KIP-279).
//!
//! A follower that restarts or sees a new leader asks the leader for the end offset of its own
//! latest epoch (OffsetForLeaderEpoch, or Fetch's DivergingEpoch) and truncates where the two
//! logs diverge, instead of truncating to a possibly stale high watermark. This cache answers
//! that question on the leader and tells the follower which epoch to ask about.
//!
//! Durable in `leader-epoch-checkpoint` in the partition directory, in Kafka's text format:
//! a version line (`0`), a count line, then one `epoch start_offset` line per entry. Every
//! change is written through atomically before the call returns, so the file never misses an
//! entry for data already in the log (the log appends after assigning the epoch); entries past
//! the log end that a crash leaves behind are truncated when the log opens.

use std::path::{Path, PathBuf};

use tracing::{debug, warn};

use crate::checkpoint;
use crate::error::StorageError;

/// Name of the checkpoint file in the partition directory.
pub const LEADER_EPOCH_CHECKPOINT_FILE: &str = "leader-epoch-checkpoint";

/// One leader epoch and the first offset written in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EpochEntry {
    pub epoch: i32,
    pub start_offset: i64,
}

/// Durable map from leader epoch to the first offset of that epoch.
///
/// # Invariants
/// - Entries strictly increase in both epoch and start offset. `assign` removes any entry that
///   would break this (an epoch or start offset at or past the new entry's), as Kafka does.
/// - Every epoch and start offset is non-negative.
/// - After a successful mutating call the checkpoint file holds exactly these entries.
#[derive(Debug)]
pub struct LeaderEpochCache {
    /// The partition directory holding the checkpoint file.
    dir: PathBuf,
    entries: Vec<EpochEntry>,
}

impl LeaderEpochCache {
    /// Loads the cache from `dir/leader-epoch-checkpoint`; a missing file is an empty cache.
    /// A malformed file is `CorruptRecord`.
    pub fn load(dir: &Path) -> Result<LeaderEpochCache, StorageError> {
        let mut cache = LeaderEpochCache {
            dir: dir.to_path_buf(),
            entries: Vec::new(),
        };
        let Some(lines) = checkpoint::read_lines(dir, LEADER_EPOCH_CHECKPOINT_FILE)? else {
            return Ok(cache);
        };
        let mut parsed = Vec::with_capacity(lines.len());
        for line in &lines {
            let mut fields = line.split_whitespace();
            let entry = match (fields.next(), fields.next(), fields.next()) {
                (Some(epoch), Some(offset), None) => epoch
                    .parse::<i32>()
                    .ok()
                    .zip(offset.parse::<i64>().ok())
                    .filter(|(epoch, offset)| *epoch >= 0 && *offset >= 0)
                    .map(|(epoch, start_offset)| EpochEntry {
                        epoch,
                        start_offset,
                    }),
                _ => None,
            };
            let entry = entry.ok_or_else(|| {
                StorageError::corrupt(format!(
                    "{LEADER_EPOCH_CHECKPOINT_FILE}: bad entry {line:?}"
                ))
            })?;
            parsed.push(entry);
        }
        for entry in &parsed {
            cache.assign_in_memory(entry.epoch, entry.start_offset);
        }
        if cache.entries != parsed {
            warn!(dir = %dir.display(), loaded = ?parsed, kept = ?cache.entries,
                "leader epoch checkpoint was not monotonic; dropped conflicting entries");
            cache.write()?;
        }
        Ok(cache)
    }

    /// An empty cache for `dir` that has not read the checkpoint (used to rebuild a cache whose
    /// checkpoint is unreadable from the log itself).
    pub(crate) fn empty(dir: &Path) -> LeaderEpochCache {
        LeaderEpochCache {
            dir: dir.to_path_buf(),
            entries: Vec::new(),
        }
    }

    /// Writes the entries to the checkpoint file.
    pub(crate) fn write(&self) -> Result<(), StorageError> {
        let lines: Vec<String> = self
            .entries
            .iter()
            .map(|e| format!("{} {}", e.epoch, e.start_offset))
            .collect();
        checkpoint::write_lines(&self.dir, LEADER_EPOCH_CHECKPOINT_FILE, &lines)?;
        Ok(())
    }

    fn assert_invariants(&self) {
        debug_assert!(
            self.entries
                .windows(2)
                .all(|p| p[0].epoch < p[1].epoch && p[0].start_offset < p[1].start_offset),
            "epoch entries not strictly increasing: {:?}",
            self.entries
        );
    }

    /// All entries, oldest epoch first.
    pub fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn latest_entry(&self) -> Option<EpochEntry> {
        self.entries.last().copied()
    }

    /// The latest epoch with data (or announced by a new leader).
    pub fn latest_epoch(&self) -> Option<i32> {
        self.entries.last().map(|e| e.epoch)
    }

    pub fn earliest_entry(&self) -> Option<EpochEntry> {
        self.entries.first().copied()
    }

    /// The epoch just before the latest one.
    pub fn previous_epoch(&self) -> Option<i32> {
        self.entries
            .len()
            .checked_sub(2)
            .map(|i| self.entries[i].epoch)
    }

    /// The epoch whose range holds `offset` (the last entry starting at or before it).
    pub fn epoch_for_offset(&self, offset: i64) -> Option<i32> {
        let i = self.entries.partition_point(|e| e.start_offset <= offset);
        i.checked_sub(1).map(|i| self.entries[i].epoch)
    }

    /// Adds the entry in memory only; returns whether anything changed. The caller writes the
    /// checkpoint (see [`LeaderEpochCache::write`]).
    pub(crate) fn assign_in_memory(&mut self, epoch: i32, start_offset: i64) -> bool {
        assert!(
            epoch >= 0 && start_offset >= 0,
            "invalid epoch entry ({epoch}, {start_offset})"
        );
        let update_needed = match self.entries.last() {
            Some(latest) => latest.epoch != epoch || start_offset < latest.start_offset,
            None => true,
        };
        if !update_needed {
            return false;
        }
        let keep = self
            .entries
            .iter()
            .rposition(|e| e.epoch < epoch && e.start_offset < start_offset)
            .map_or(0, |i| i + 1);
        if keep < self.entries.len() {
            let removed = &self.entries[keep..];
            if removed.len() > 1 || removed[0].start_offset != start_offset {
                warn!(dir = %self.dir.display(), epoch, start_offset, ?removed,
                    "new epoch entry truncates conflicting entries");
            }
            self.entries.truncate(keep);
        }
        self.entries.push(EpochEntry {
            epoch,
            start_offset,
        });
        self.assert_invariants();
        true
    }

    /// Records that `epoch` starts at `start_offset`, durably. A no-op when the latest entry
    /// already is `epoch` at or before that offset; entries conflicting with the new one (an
    /// epoch or start offset not below it) are removed first. Returns whether the cache changed.
    pub fn assign(&mut self, epoch: i32, start_offset: i64) -> Result<bool, StorageError> {
        if !self.assign_in_memory(epoch, start_offset) {
            return Ok(false);
        }
        debug!(dir = %self.dir.display(), epoch, start_offset, "assigned leader epoch");
        self.write()?;
        Ok(true)
    }

    /// Removes every entry starting at or after `end_offset` (the log was truncated there).
    pub fn truncate_from_end(&mut self, end_offset: i64) -> Result<(), StorageError> {
        let keep = self
            .entries
            .partition_point(|e| e.start_offset < end_offset);
        if keep == self.entries.len() {
            return Ok(());
        }
        debug!(dir = %self.dir.display(), end_offset, removed = ?&self.entries[keep..],
            "truncated leader epochs from end");
        self.entries.truncate(keep);
        self.write()
    }

    /// The log now starts at `start_offset`: entries starting at or before it collapse into one
    /// entry for the last of their epochs, starting at `start_offset` (Kafka's
    /// `truncateFromStart`, which keeps an entry starting exactly at `start_offset`).
    pub fn truncate_from_start(&mut self, start_offset: i64) -> Result<(), StorageError> {
        let removed = self
            .entries
            .partition_point(|e| e.start_offset <= start_offset);
        if removed == 0 {
            return Ok(());
        }
        let epoch = self.entries[removed - 1].epoch;
        let already = removed == 1 && self.entries[0].start_offset == start_offset;
        if already {
            return Ok(());
        }
        self.entries.drain(..removed);
        self.entries.insert(
            0,
            EpochEntry {
                epoch,
                start_offset,
            },
        );
        self.assert_invariants();
        debug!(dir = %self.dir.display(), start_offset, epoch, "truncated leader epochs from start");
        self.write()
    }

    /// Removes every entry, durably.
    pub fn clear(&mut self) -> Result<(), StorageError> {
        self.entries.clear();
        self.write()
    }

    /// OffsetForLeaderEpoch: the largest known epoch `<= epoch` and the end offset of
    /// `epoch`, which is the start offset of the first epoch after it, or `log_end_offset`
    /// when `epoch` is the latest epoch. `None` stands for Kafka's (UNDEFINED_EPOCH,
    /// UNDEFINED_EPOCH_OFFSET): `epoch` is -1, or larger than every known epoch.
    ///
    /// An `epoch` older than every entry answers `(epoch, first entry's start offset)`: that
    /// data is gone from this log, and the follower must not keep anything past where this
    /// log's history begins.
    pub fn end_offset_for(&self, epoch: i32, log_end_offset: i64) -> Option<(i32, i64)> {
        if epoch < 0 {
            return None;
        }
        if self.latest_epoch() == Some(epoch) {
            return Some((epoch, log_end_offset));
        }
        let higher = self.entries.partition_point(|e| e.epoch <= epoch);
        let higher_entry = self.entries.get(higher)?;
        match higher.checked_sub(1) {
            None => Some((epoch, higher_entry.start_offset)),
            Some(floor) => Some((self.entries[floor].epoch, higher_entry.start_offset)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(cache: &LeaderEpochCache) -> Vec<(i32, i64)> {
        cache
            .entries()
            .iter()
            .map(|e| (e.epoch, e.start_offset))
            .collect()
    }

    #[test]
    fn persists_in_kafkas_format() {
        let dir = tempfile::tempdir().unwrap();
        let mut cache = LeaderEpochCache::load(dir.path()).unwrap();
        assert!(cache.is_empty());
        assert!(cache.assign(0, 0).unwrap());
        assert!(
            !cache.assign(0, 5).unwrap(),
            "same epoch later offset is a no-op"
        );
        assert!(cache.assign(2, 10).unwrap());
        assert!(cache.assign(4, 25).unwrap());
        let text = std::fs::read_to_string(dir.path().join(LEADER_EPOCH_CHECKPOINT_FILE)).unwrap();
        assert_eq!(text, "0\n3\n0 0\n2 10\n4 25\n");
        let reloaded = LeaderEpochCache::load(dir.path()).unwrap();
        assert_eq!(entries(&reloaded), vec![(0, 0), (2, 10), (4, 25)]);
        assert_eq!(reloaded.latest_epoch(), Some(4));
        assert_eq!(reloaded.previous_epoch(), Some(2));
        assert_eq!(
            reloaded.earliest_entry(),
            Some(EpochEntry {
                epoch: 0,
                start_offset: 0
            })
        );
    }

    #[test]
    fn assign_removes_conflicting_entries() {
        let dir = tempfile::tempdir().unwrap();
        let mut cache = LeaderEpochCache::load(dir.path()).unwrap();
        cache.assign(1, 0).unwrap();
        cache.assign(3, 10).unwrap();
        cache.assign(5, 20).unwrap();
        // A lower start offset for a new epoch drops the entries at or past it.
        cache.assign(6, 15).unwrap();
        assert_eq!(entries(&cache), vec![(1, 0), (3, 10), (6, 15)]);
        // An older epoch drops newer epochs.
        cache.assign(2, 12).unwrap();
        assert_eq!(entries(&cache), vec![(1, 0), (2, 12)]);
        // Same epoch, smaller offset: rewritten.
        cache.assign(2, 11).unwrap();
        assert_eq!(entries(&cache), vec![(1, 0), (2, 11)]);
        let reloaded = LeaderEpochCache::load(dir.path()).unwrap();
        assert_eq!(entries(&reloaded), vec![(1, 0), (2, 11)]);
    }

    #[test]
    fn truncation_from_both_ends() {
        let dir = tempfile::tempdir().unwrap();
        let mut cache = LeaderEpochCache::load(dir.path()).unwrap();
        for (epoch, offset) in [(0, 0), (1, 10), (2, 20), (3, 30)] {
            cache.assign(epoch, offset).unwrap();
        }
        cache.truncate_from_end(30).unwrap();
        assert_eq!(entries(&cache), vec![(0, 0), (1, 10), (2, 20)]);
        cache.truncate_from_end(100).unwrap();
        assert_eq!(entries(&cache), vec![(0, 0), (1, 10), (2, 20)]);
        cache.truncate_from_start(15).unwrap();
        assert_eq!(entries(&cache), vec![(1, 15), (2, 20)]);
        cache.truncate_from_start(20).unwrap();
        assert_eq!(entries(&cache), vec![(2, 20)]);
        cache.truncate_from_start(5).unwrap();
        assert_eq!(entries(&cache), vec![(2, 20)]);
        let reloaded = LeaderEpochCache::load(dir.path()).unwrap();
        assert_eq!(entries(&reloaded), vec![(2, 20)]);
        cache.clear().unwrap();
        assert!(LeaderEpochCache::load(dir.path()).unwrap().is_empty());
    }

    #[test]
    fn end_offset_for_epoch_follows_kafka() {
        let dir = tempfile::tempdir().unwrap();
        let mut cache = LeaderEpochCache::load(dir.path()).unwrap();
        assert_eq!(cache.end_offset_for(0, 0), None, "empty cache");
        for (epoch, offset) in [(2, 10), (4, 20), (7, 35)] {
            cache.assign(epoch, offset).unwrap();
        }
        let leo = 50;
        // Undefined epoch.
        assert_eq!(cache.end_offset_for(-1, leo), None);
        // Latest epoch: the log end offset.
        assert_eq!(cache.end_offset_for(7, leo), Some((7, 50)));
        // Known older epoch: start of the next epoch.
        assert_eq!(cache.end_offset_for(2, leo), Some((2, 20)));
        assert_eq!(cache.end_offset_for(4, leo), Some((4, 35)));
        // Unknown epoch between known ones: the floor epoch, ending where the next starts.
        assert_eq!(cache.end_offset_for(3, leo), Some((2, 20)));
        assert_eq!(cache.end_offset_for(6, leo), Some((4, 35)));
        // Older than everything: the requested epoch ending at the first start offset.
        assert_eq!(cache.end_offset_for(1, leo), Some((1, 10)));
        // Newer than everything.
        assert_eq!(cache.end_offset_for(8, leo), None);
    }

    #[test]
    fn epoch_for_offset() {
        let dir = tempfile::tempdir().unwrap();
        let mut cache = LeaderEpochCache::load(dir.path()).unwrap();
        assert_eq!(cache.epoch_for_offset(0), None);
        cache.assign(1, 5).unwrap();
        cache.assign(3, 9).unwrap();
        assert_eq!(cache.epoch_for_offset(4), None);
        assert_eq!(cache.epoch_for_offset(5), Some(1));
        assert_eq!(cache.epoch_for_offset(8), Some(1));
        assert_eq!(cache.epoch_for_offset(9), Some(3));
        assert_eq!(cache.epoch_for_offset(1000), Some(3));
    }

    #[test]
    fn malformed_checkpoint_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LEADER_EPOCH_CHECKPOINT_FILE);
        for text in ["0\n1\n3\n", "0\n1\n3 x\n", "0\n1\n-1 4\n", "0\n2\n1 4\n"] {
            std::fs::write(&path, text).unwrap();
            assert!(
                matches!(
                    LeaderEpochCache::load(dir.path()),
                    Err(StorageError::CorruptRecord(_))
                ),
                "{text:?}"
            );
        }
        std::fs::write(&path, "0\n2\n3 10\n2 20\n").unwrap();
        let cache = LeaderEpochCache::load(dir.path()).unwrap();
        assert_eq!(
            entries(&cache),
            vec![(2, 20)],
            "non-monotonic entries resolved like assign"
        );
    }
}
