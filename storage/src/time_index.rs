//! The time index of one segment (`{base_offset:020}.timeindex`).
//!
//! Each entry says "up to and including this offset, the largest batch timestamp is this", stored
//! as a big-endian i64 timestamp and a u32 offset relative to the segment's base offset. Entries
//! are only added when the timestamp grows, so timestamps strictly increase and a lookup for a
//! target timestamp finds the last entry below or at it: no record before that entry's offset
//! can have a timestamp above the target.
//!
//! Like the offset index, entries live in memory and the file is read when the segment is loaded
//! and written when it is flushed, with no descriptor held in between (see
//! [`crate::index`] for why that is safe).

use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::batch::NO_TIMESTAMP;

/// Bytes of one entry on disk: timestamp (i64) + relative offset (u32).
pub const ENTRY_SIZE: usize = 12;

/// A timestamp and the offset up to which it is the largest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimestampOffset {
    pub timestamp: i64,
    pub offset: i64,
}

/// In-memory copy of a time index file, written to the file on [`TimeIndex::flush`].
///
/// # Invariants
/// - Timestamps strictly increase; offsets never decrease (entries are added only with a larger
///   timestamp at the current or a later offset).
/// - Every relative offset fits in `i32`.
/// - The first `flushed_entries` entries are in the file byte for byte and fsynced; when
///   `dirty` is false the file holds exactly `entries.len() * ENTRY_SIZE` bytes, all flushed.
#[derive(Debug)]
pub(crate) struct TimeIndex {
    base_offset: i64,
    path: PathBuf,
    /// (timestamp, relative offset) pairs.
    entries: Vec<(i64, u32)>,
    /// Leading entries known to be in the file as they are in `entries`.
    flushed_entries: usize,
    /// Whether the file differs from `entries`.
    dirty: bool,
    /// Whether the file existed and was whole when opened.
    loaded_whole: bool,
}

impl TimeIndex {
    /// An empty time index for a new segment; the file is written at the first flush.
    pub(crate) fn new(path: &Path, base_offset: i64) -> TimeIndex {
        TimeIndex {
            base_offset,
            path: path.to_path_buf(),
            entries: Vec::new(),
            flushed_entries: 0,
            dirty: true,
            loaded_whole: true,
        }
    }

    /// Loads the whole entries of the time index at `path` (none when it is missing).
    pub(crate) fn open(path: &Path, base_offset: i64) -> io::Result<TimeIndex> {
        let (bytes, existed) = match fs::read(path) {
            Ok(bytes) => (bytes, true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => (Vec::new(), false),
            Err(e) => return Err(e),
        };
        let len = bytes.len();
        let entries: Vec<(i64, u32)> = bytes
            .chunks_exact(ENTRY_SIZE)
            .map(|c| {
                (
                    i64::from_be_bytes(c[0..8].try_into().expect("8 bytes")),
                    u32::from_be_bytes(c[8..12].try_into().expect("4 bytes")),
                )
            })
            .collect();
        let loaded_whole = existed && len % ENTRY_SIZE == 0;
        Ok(TimeIndex {
            base_offset,
            path: path.to_path_buf(),
            flushed_entries: entries.len(),
            entries,
            dirty: !loaded_whole,
            loaded_whole,
        })
    }

    /// Checks the loaded entries: the file existed and was whole, timestamps strictly increase,
    /// offsets do not decrease and all lie below `next_offset`.
    pub(crate) fn check(&self, next_offset: i64) -> Result<(), String> {
        if !self.loaded_whole {
            return Err(format!(
                "{} is missing or has a partial entry",
                self.path.display()
            ));
        }
        for pair in self.entries.windows(2) {
            if pair[1].0 <= pair[0].0 || pair[1].1 < pair[0].1 {
                return Err(format!("{} entries do not increase", self.path.display()));
            }
        }
        if let Some(first) = self.entries.first() {
            if first.0 <= NO_TIMESTAMP {
                return Err(format!(
                    "{} holds timestamp {}",
                    self.path.display(),
                    first.0
                ));
            }
        }
        if let Some(last) = self.last_entry() {
            if last.offset >= next_offset {
                return Err(format!(
                    "{} entry {last:?} lies past next offset {next_offset}",
                    self.path.display()
                ));
            }
        }
        Ok(())
    }

    pub(crate) fn is_full(&self, entries_max: usize) -> bool {
        self.entries.len() >= entries_max
    }

    fn entry(&self, i: usize) -> TimestampOffset {
        let (timestamp, relative_offset) = self.entries[i];
        TimestampOffset {
            timestamp,
            offset: self.base_offset + relative_offset as i64,
        }
    }

    pub(crate) fn last_entry(&self) -> Option<TimestampOffset> {
        (!self.entries.is_empty()).then(|| self.entry(self.entries.len() - 1))
    }

    /// The last entry whose timestamp is `<= timestamp`, or `(NO_TIMESTAMP, base_offset)`.
    pub(crate) fn lookup(&self, timestamp: i64) -> TimestampOffset {
        let i = self.entries.partition_point(|&(ts, _)| ts <= timestamp);
        if i == 0 {
            TimestampOffset {
                timestamp: NO_TIMESTAMP,
                offset: self.base_offset,
            }
        } else {
            self.entry(i - 1)
        }
    }

    /// Appends `(timestamp, offset)` if `timestamp` is larger than the last entry's (Kafka's
    /// `TimeIndex.maybeAppend`). Returns whether an entry was added; the file gets it at the
    /// next flush.
    pub(crate) fn maybe_append(&mut self, timestamp: i64, offset: i64) -> bool {
        let last_timestamp = self.entries.last().map_or(NO_TIMESTAMP, |e| e.0);
        if timestamp <= last_timestamp {
            return false;
        }
        let relative = offset - self.base_offset;
        assert!(
            (0..=i32::MAX as i64).contains(&relative),
            "offset {offset} is not relative to base {}",
            self.base_offset
        );
        if let Some(last) = self.last_entry() {
            assert!(
                offset >= last.offset,
                "time index offset {offset} goes back from {last:?}"
            );
        }
        self.entries.push((timestamp, relative as u32));
        self.dirty = true;
        true
    }

    /// Drops every entry whose offset is `>= offset`; the file is cut at the next flush.
    pub(crate) fn truncate_to_offset(&mut self, offset: i64) {
        let keep = self
            .entries
            .partition_point(|&(_, rel)| self.base_offset + (rel as i64) < offset);
        self.truncate_entries(keep);
    }

    /// Drops all entries.
    pub(crate) fn reset(&mut self) {
        self.truncate_entries(0);
        self.loaded_whole = true;
    }

    fn truncate_entries(&mut self, keep: usize) {
        if keep < self.entries.len() {
            self.entries.truncate(keep);
            self.dirty = true;
        }
        self.flushed_entries = self.flushed_entries.min(keep);
    }

    /// Writes the entries the file lacks, cuts what it holds beyond them, and fsyncs it, opening
    /// the file only for this. A no-op when nothing changed since the last flush.
    pub(crate) fn flush(&mut self) -> io::Result<()> {
        if !self.dirty {
            return Ok(());
        }
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&self.path)?;
        let mut bytes =
            Vec::with_capacity((self.entries.len() - self.flushed_entries) * ENTRY_SIZE);
        for &(timestamp, relative) in &self.entries[self.flushed_entries..] {
            bytes.extend_from_slice(&timestamp.to_be_bytes());
            bytes.extend_from_slice(&relative.to_be_bytes());
        }
        file.write_all_at(&bytes, (self.flushed_entries * ENTRY_SIZE) as u64)?;
        file.set_len((self.entries.len() * ENTRY_SIZE) as u64)?;
        file.sync_data()?;
        self.flushed_entries = self.entries.len();
        self.dirty = false;
        Ok(())
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// All entries, oldest first.
    #[cfg(test)]
    pub(crate) fn entries(&self) -> Vec<TimestampOffset> {
        (0..self.entries.len()).map(|i| self.entry(i)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_only_growing_timestamps_and_looks_up_floor() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("00000000000000000050.timeindex");
        let mut index = TimeIndex::new(&path, 50);
        assert_eq!(
            index.lookup(10),
            TimestampOffset {
                timestamp: -1,
                offset: 50
            }
        );
        assert!(!index.maybe_append(-1, 50));
        assert!(index.maybe_append(100, 55));
        assert!(!index.maybe_append(100, 56));
        assert!(!index.maybe_append(90, 57));
        assert!(index.maybe_append(200, 60));
        assert!(index.maybe_append(300, 60));
        assert_eq!(
            index.lookup(99),
            TimestampOffset {
                timestamp: -1,
                offset: 50
            }
        );
        assert_eq!(
            index.lookup(100),
            TimestampOffset {
                timestamp: 100,
                offset: 55
            }
        );
        assert_eq!(
            index.lookup(250),
            TimestampOffset {
                timestamp: 200,
                offset: 60
            }
        );
        assert_eq!(
            index.last_entry(),
            Some(TimestampOffset {
                timestamp: 300,
                offset: 60
            })
        );
        assert!(index.is_full(3));
        index.flush().unwrap();
        drop(index);

        let mut index = TimeIndex::open(&path, 50).unwrap();
        index.check(61).unwrap();
        assert!(index.check(60).is_err());
        index.truncate_to_offset(60);
        index.flush().unwrap();
        assert_eq!(
            index.entries(),
            vec![TimestampOffset {
                timestamp: 100,
                offset: 55
            }]
        );
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 12);
        std::fs::write(&path, [1u8; 13]).unwrap();
        assert!(TimeIndex::open(&path, 50).unwrap().check(61).is_err());
    }
}
