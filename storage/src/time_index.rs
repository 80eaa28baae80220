//! The time index of one segment (`{base_offset:020}.timeindex`).
//!
//! Each entry says "up to and including this offset, the largest batch timestamp is this", stored
//! as a big-endian i64 timestamp and a u32 offset relative to the segment's base offset. Entries
//! are only added when the timestamp grows, so timestamps strictly increase and a lookup for a
//! target timestamp finds the last entry below or at it: no record before that entry's offset
//! can have a timestamp above the target.
//!
//! Like the offset index, entries live in memory and the file receives appends and truncations.

use std::fs::{File, OpenOptions};
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

/// In-memory copy of a time index file, kept in sync with the file.
///
/// # Invariants
/// - Timestamps strictly increase; offsets never decrease (entries are added only with a larger
///   timestamp at the current or a later offset).
/// - Every relative offset fits in `i32`.
/// - After every successful call the file holds exactly `entries.len() * ENTRY_SIZE` bytes with
///   the same entries.
#[derive(Debug)]
pub(crate) struct TimeIndex {
    base_offset: i64,
    path: PathBuf,
    file: File,
    /// (timestamp, relative offset) pairs.
    entries: Vec<(i64, u32)>,
    /// Whether the file existed and was whole when opened.
    loaded_whole: bool,
}

impl TimeIndex {
    /// Opens (creating if missing) the time index at `path`, loading its whole entries.
    pub(crate) fn open(path: &Path, base_offset: i64) -> io::Result<TimeIndex> {
        let existed = path.exists();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let len = file.metadata()?.len();
        let mut bytes = vec![0u8; len as usize];
        file.read_exact_at(&mut bytes, 0)?;
        let entries = bytes
            .chunks_exact(ENTRY_SIZE)
            .map(|c| {
                (
                    i64::from_be_bytes(c[0..8].try_into().expect("8 bytes")),
                    u32::from_be_bytes(c[8..12].try_into().expect("4 bytes")),
                )
            })
            .collect();
        Ok(TimeIndex {
            base_offset,
            path: path.to_path_buf(),
            file,
            entries,
            loaded_whole: existed && len % ENTRY_SIZE as u64 == 0,
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
    /// `TimeIndex.maybeAppend`). Returns whether an entry was written.
    pub(crate) fn maybe_append(&mut self, timestamp: i64, offset: i64) -> io::Result<bool> {
        let last_timestamp = self.entries.last().map_or(NO_TIMESTAMP, |e| e.0);
        if timestamp <= last_timestamp {
            return Ok(false);
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
        let mut bytes = [0u8; ENTRY_SIZE];
        bytes[0..8].copy_from_slice(&timestamp.to_be_bytes());
        bytes[8..12].copy_from_slice(&(relative as u32).to_be_bytes());
        self.file
            .write_all_at(&bytes, (self.entries.len() * ENTRY_SIZE) as u64)?;
        self.entries.push((timestamp, relative as u32));
        Ok(true)
    }

    /// Drops every entry whose offset is `>= offset`.
    pub(crate) fn truncate_to_offset(&mut self, offset: i64) -> io::Result<()> {
        let keep = self
            .entries
            .partition_point(|&(_, rel)| self.base_offset + (rel as i64) < offset);
        self.truncate_entries(keep)
    }

    /// Drops all entries.
    pub(crate) fn reset(&mut self) -> io::Result<()> {
        self.truncate_entries(0)?;
        self.loaded_whole = true;
        Ok(())
    }

    fn truncate_entries(&mut self, keep: usize) -> io::Result<()> {
        self.file.set_len((keep * ENTRY_SIZE) as u64)?;
        self.entries.truncate(keep);
        Ok(())
    }

    pub(crate) fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
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
        let mut index = TimeIndex::open(&path, 50).unwrap();
        assert_eq!(
            index.lookup(10),
            TimestampOffset {
                timestamp: -1,
                offset: 50
            }
        );
        assert!(!index.maybe_append(-1, 50).unwrap());
        assert!(index.maybe_append(100, 55).unwrap());
        assert!(!index.maybe_append(100, 56).unwrap());
        assert!(!index.maybe_append(90, 57).unwrap());
        assert!(index.maybe_append(200, 60).unwrap());
        assert!(index.maybe_append(300, 60).unwrap());
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
        drop(index);

        let mut index = TimeIndex::open(&path, 50).unwrap();
        index.check(61).unwrap();
        assert!(index.check(60).is_err());
        index.truncate_to_offset(60).unwrap();
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
