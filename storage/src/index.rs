//! The sparse offset index of one segment (`{base_offset:020}.index`).
//!
//! Each entry maps the last offset of a batch to the byte position where that batch starts in
//! the segment's `.log`, stored as two big-endian 32-bit numbers: the offset relative to the
//! segment's base offset and the position. An entry is added every `index.interval.bytes` of
//! appended batches, so a lookup lands at most about that many bytes before the batch it wants
//! and finishes with a short scan of batch headers.
//!
//! The entries live in memory; the file only receives appended entries and truncations, and is
//! read once when the segment is loaded.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Bytes of one entry on disk: relative offset (u32) + position (u32).
pub const ENTRY_SIZE: usize = 8;

/// An offset and the position of the batch it points at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OffsetPosition {
    pub offset: i64,
    pub position: u64,
}

/// In-memory copy of an offset index file, kept in sync with the file.
///
/// # Invariants
/// - Entries are strictly increasing in both relative offset and position: each one points at a
///   later batch than the one before, because entries are only appended for batches appended
///   after the previous entry's batch.
/// - Every relative offset fits in `i32` (the segment rolls before one would not).
/// - After every successful call the file holds exactly `entries.len() * ENTRY_SIZE` bytes with
///   the same entries. A failed write leaves the memory untouched; the next write overwrites
///   whatever partial bytes it left.
#[derive(Debug)]
pub(crate) struct OffsetIndex {
    /// Base offset of the owning segment; entries are relative to it.
    base_offset: i64,
    path: PathBuf,
    file: File,
    /// (relative offset, position) pairs.
    entries: Vec<(u32, u32)>,
    /// Whether the file existed and was whole (a multiple of the entry size) when opened.
    loaded_whole: bool,
}

impl OffsetIndex {
    /// Opens (creating if missing) the index at `path`, loading the whole entries it holds.
    /// Use [`OffsetIndex::check`] before trusting them.
    pub(crate) fn open(path: &Path, base_offset: i64) -> io::Result<OffsetIndex> {
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
                    u32::from_be_bytes(c[0..4].try_into().expect("4 bytes")),
                    u32::from_be_bytes(c[4..8].try_into().expect("4 bytes")),
                )
            })
            .collect();
        Ok(OffsetIndex {
            base_offset,
            path: path.to_path_buf(),
            file,
            entries,
            loaded_whole: existed && len % ENTRY_SIZE as u64 == 0,
        })
    }

    /// Checks the loaded entries against the segment they index: the file existed and was whole,
    /// entries increase, relative offsets fit in `i32` and every position lies inside
    /// `segment_bytes`. Returns why the index cannot be trusted. The caller still confirms that
    /// the last entry names the batch at its position.
    pub(crate) fn check(&self, segment_bytes: u64) -> Result<(), String> {
        if !self.loaded_whole {
            return Err(format!(
                "{} is missing or has a partial entry",
                self.path.display()
            ));
        }
        for pair in self.entries.windows(2) {
            if pair[1].0 <= pair[0].0 || pair[1].1 <= pair[0].1 {
                return Err(format!("{} entries do not increase", self.path.display()));
            }
        }
        if let Some(&(relative, position)) = self.entries.last() {
            if relative > i32::MAX as u32 || position as u64 >= segment_bytes {
                return Err(format!(
                    "{} entry ({relative}, {position}) lies past the segment of {segment_bytes} bytes",
                    self.path.display()
                ));
            }
        }
        Ok(())
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn is_full(&self, entries_max: usize) -> bool {
        self.entries.len() >= entries_max
    }

    fn entry(&self, i: usize) -> OffsetPosition {
        let (relative_offset, position) = self.entries[i];
        OffsetPosition {
            offset: self.base_offset + relative_offset as i64,
            position: position as u64,
        }
    }

    pub(crate) fn last_entry(&self) -> Option<OffsetPosition> {
        (!self.entries.is_empty()).then(|| self.entry(self.entries.len() - 1))
    }

    /// The entry with the largest offset `<= offset`, or the start of the segment when there is
    /// none. The batch holding `offset`, if any, starts at or after the returned position.
    pub(crate) fn lookup(&self, offset: i64) -> OffsetPosition {
        let i = self
            .entries
            .partition_point(|&(rel, _)| self.base_offset + (rel as i64) <= offset);
        if i == 0 {
            OffsetPosition {
                offset: self.base_offset,
                position: 0,
            }
        } else {
            self.entry(i - 1)
        }
    }

    /// Appends an entry for the batch ending at `offset` and starting at `position`.
    pub(crate) fn append(&mut self, offset: i64, position: u64) -> io::Result<()> {
        let relative = offset - self.base_offset;
        assert!(
            (0..=i32::MAX as i64).contains(&relative),
            "offset {offset} is not relative to base {}",
            self.base_offset
        );
        assert!(
            position <= i32::MAX as u64,
            "position {position} exceeds 32 bits"
        );
        if let Some(last) = self.last_entry() {
            assert!(
                offset > last.offset && position > last.position,
                "index entry ({offset}, {position}) does not follow {last:?}"
            );
        }
        let entry = (relative as u32, position as u32);
        let mut bytes = [0u8; ENTRY_SIZE];
        bytes[0..4].copy_from_slice(&entry.0.to_be_bytes());
        bytes[4..8].copy_from_slice(&entry.1.to_be_bytes());
        self.file
            .write_all_at(&bytes, (self.entries.len() * ENTRY_SIZE) as u64)?;
        self.entries.push(entry);
        Ok(())
    }

    /// Drops every entry pointing at or after byte `position` of the segment.
    pub(crate) fn truncate_to_position(&mut self, position: u64) -> io::Result<()> {
        let keep = self
            .entries
            .partition_point(|&(_, pos)| (pos as u64) < position);
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
    pub(crate) fn entries(&self) -> Vec<OffsetPosition> {
        (0..self.entries.len()).map(|i| self.entry(i)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_finds_floor_entry() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("00000000000000000100.index");
        let mut index = OffsetIndex::open(&path, 100).unwrap();
        assert_eq!(
            index.lookup(150),
            OffsetPosition {
                offset: 100,
                position: 0
            }
        );
        index.append(110, 500).unwrap();
        index.append(120, 1000).unwrap();
        index.append(130, 1500).unwrap();
        assert_eq!(
            index.lookup(105),
            OffsetPosition {
                offset: 100,
                position: 0
            }
        );
        assert_eq!(
            index.lookup(110),
            OffsetPosition {
                offset: 110,
                position: 500
            }
        );
        assert_eq!(
            index.lookup(125),
            OffsetPosition {
                offset: 120,
                position: 1000
            }
        );
        assert_eq!(
            index.lookup(1000),
            OffsetPosition {
                offset: 130,
                position: 1500
            }
        );
        assert!(index.is_full(3));
        assert!(!index.is_full(4));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 24);
    }

    #[test]
    fn reopen_check_and_truncate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("00000000000000000000.index");
        {
            let mut index = OffsetIndex::open(&path, 0).unwrap();
            index.append(9, 100).unwrap();
            index.append(19, 200).unwrap();
        }
        let mut index = OffsetIndex::open(&path, 0).unwrap();
        assert_eq!(index.len(), 2);
        index.check(300).unwrap();
        assert!(index.check(200).is_err(), "position past segment");
        index.truncate_to_position(200).unwrap();
        assert_eq!(
            index.entries(),
            vec![OffsetPosition {
                offset: 9,
                position: 100
            }]
        );
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 8);

        std::fs::write(&path, [0u8; 12]).unwrap();
        assert!(
            OffsetIndex::open(&path, 0).unwrap().check(300).is_err(),
            "partial entry"
        );
        let mut decreasing = Vec::new();
        for (rel, pos) in [(5u32, 50u32), (4, 60)] {
            decreasing.extend_from_slice(&rel.to_be_bytes());
            decreasing.extend_from_slice(&pos.to_be_bytes());
        }
        std::fs::write(&path, decreasing).unwrap();
        assert!(
            OffsetIndex::open(&path, 0).unwrap().check(300).is_err(),
            "not increasing"
        );
        std::fs::remove_file(&path).unwrap();
        assert!(
            OffsetIndex::open(&path, 0).unwrap().check(300).is_err(),
            "missing file"
        );
    }
}
