//! The sparse offset index of one segment (`{base_offset:020}.index`).
//!
//! Each entry maps the last offset of a batch to the byte position where that batch starts in
//! the segment's `.log`, stored as two big-endian 32-bit numbers: the offset relative to the
//! segment's base offset and the position. An entry is added every `index.interval.bytes` of
//! appended batches, so a lookup lands at most about that many bytes before the batch it wants
//! and finishes with a short scan of batch headers.
//!
//! The entries live in memory. The file is read once when the segment is loaded and written
//! only when the segment is flushed (see [`OffsetIndex::flush`]); no descriptor is held in
//! between, so a segment keeps only its `.log` open however many segments and partitions a
//! node has. That is safe because nothing trusts an index file that was not flushed: recovery
//! rebuilds the indexes of every segment past the recovery point, and the recovery point only
//! moves past a segment after that segment (its indexes included) was flushed.

use std::fs::{self, OpenOptions};
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

/// In-memory copy of an offset index file, written to the file on [`OffsetIndex::flush`].
///
/// # Invariants
/// - Entries are strictly increasing in both relative offset and position: each one points at a
///   later batch than the one before, because entries are only appended for batches appended
///   after the previous entry's batch.
/// - Every relative offset fits in `i32` (the segment rolls before one would not).
/// - The first `flushed_entries` entries are in the file byte for byte and fsynced. When
///   `dirty` is false the file holds exactly `entries.len() * ENTRY_SIZE` bytes, all of them
///   flushed. A failed flush leaves `flushed_entries` and `dirty` as they were, so the next
///   flush rewrites whatever partial bytes it left.
#[derive(Debug)]
pub(crate) struct OffsetIndex {
    /// Base offset of the owning segment; entries are relative to it.
    base_offset: i64,
    path: PathBuf,
    /// (relative offset, position) pairs.
    entries: Vec<(u32, u32)>,
    /// Leading entries known to be in the file as they are in `entries`.
    flushed_entries: usize,
    /// Whether the file differs from `entries` (appends or truncations since the last flush).
    dirty: bool,
    /// Whether the file existed and was whole (a multiple of the entry size) when opened.
    loaded_whole: bool,
}

impl OffsetIndex {
    /// An empty index for a new segment. The file at `path` is written at the first flush.
    pub(crate) fn new(path: &Path, base_offset: i64) -> OffsetIndex {
        OffsetIndex {
            base_offset,
            path: path.to_path_buf(),
            entries: Vec::new(),
            flushed_entries: 0,
            dirty: true,
            loaded_whole: true,
        }
    }

    /// Loads the whole entries of the index file at `path` (none when it is missing) and closes
    /// it again. Use [`OffsetIndex::check`] before trusting them.
    pub(crate) fn open(path: &Path, base_offset: i64) -> io::Result<OffsetIndex> {
        let (bytes, existed) = match fs::read(path) {
            Ok(bytes) => (bytes, true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => (Vec::new(), false),
            Err(e) => return Err(e),
        };
        let len = bytes.len();
        let entries: Vec<(u32, u32)> = bytes
            .chunks_exact(ENTRY_SIZE)
            .map(|c| {
                (
                    u32::from_be_bytes(c[0..4].try_into().expect("4 bytes")),
                    u32::from_be_bytes(c[4..8].try_into().expect("4 bytes")),
                )
            })
            .collect();
        let loaded_whole = existed && len % ENTRY_SIZE == 0;
        Ok(OffsetIndex {
            base_offset,
            path: path.to_path_buf(),
            flushed_entries: entries.len(),
            entries,
            dirty: !loaded_whole,
            loaded_whole,
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

    /// Appends an entry for the batch ending at `offset` and starting at `position`; the file
    /// gets it at the next flush.
    pub(crate) fn append(&mut self, offset: i64, position: u64) {
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
        self.entries.push((relative as u32, position as u32));
        self.dirty = true;
    }

    /// Drops every entry pointing at or after byte `position` of the segment; the file is cut
    /// at the next flush.
    pub(crate) fn truncate_to_position(&mut self, position: u64) {
        let keep = self
            .entries
            .partition_point(|&(_, pos)| (pos as u64) < position);
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

    /// Writes the entries the file lacks, cuts what it holds beyond them, and fsyncs it. The
    /// file is opened for this and closed again. A no-op when nothing changed since the last
    /// flush.
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
        for &(relative, position) in &self.entries[self.flushed_entries..] {
            bytes.extend_from_slice(&relative.to_be_bytes());
            bytes.extend_from_slice(&position.to_be_bytes());
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
        index.append(110, 500);
        index.append(120, 1000);
        index.append(130, 1500);
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
        assert!(!path.exists(), "the file is written only by a flush");
        index.flush().unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 24);
    }

    #[test]
    fn reopen_check_and_truncate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("00000000000000000000.index");
        {
            let mut index = OffsetIndex::new(&path, 0);
            index.append(9, 100);
            index.append(19, 200);
            index.flush().unwrap();
        }
        let mut index = OffsetIndex::open(&path, 0).unwrap();
        assert_eq!(index.len(), 2);
        index.check(300).unwrap();
        assert!(index.check(200).is_err(), "position past segment");
        index.truncate_to_position(200);
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            16,
            "cut at the next flush"
        );
        index.flush().unwrap();
        assert_eq!(
            index.entries(),
            vec![OffsetPosition {
                offset: 9,
                position: 100
            }]
        );
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 8);
        index.append(29, 300);
        index.flush().unwrap();
        let reopened = OffsetIndex::open(&path, 0).unwrap();
        assert_eq!(
            reopened.entries(),
            index.entries(),
            "a flush appends past a cut"
        );

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
