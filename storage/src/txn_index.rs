//! The aborted-transaction index of one segment (`{base_offset:020}.txnindex`), in Kafka's
//! on-disk format (`TransactionIndex` / `AbortedTxn` in Kafka's storage module): one entry
//! per transaction aborted by a marker in the segment, in the order the markers were written.
//!
//! ```text
//! offset size field (big-endian)
//!      0    2 version (0)
//!      2    8 producer id
//!     10    8 first offset of the transaction
//!     18    8 last offset: the offset of its ABORT marker
//!     26    8 last stable offset when the marker was written
//! ```
//!
//! Like the offset and time indexes, the entries live in memory: the file is read at load
//! and rewritten at flush, so a segment keeps one open descriptor (its `.log`). A file with
//! no entries is removed rather than written, as Kafka creates the file only on first use.
//!
//! # Invariants
//! - Entries have strictly increasing `last_offset` (markers are appended in log order;
//!   Kafka's `TransactionIndex.append` refuses anything else).
//! - `first_offset <= last_offset` for every entry.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Suffix of a segment's aborted-transaction index.
pub const TXN_INDEX_SUFFIX: &str = ".txnindex";
/// The only entry version (Kafka's `AbortedTxn.CURRENT_VERSION`).
pub const ABORTED_TXN_VERSION: i16 = 0;
/// Bytes of one entry (Kafka's `AbortedTxn.TOTAL_SIZE`).
pub const ENTRY_SIZE: usize = 2 + 8 + 8 + 8 + 8;

/// One aborted transaction (Kafka's `AbortedTxn`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AbortedTxn {
    pub producer_id: i64,
    /// Offset of the transaction's first batch in this partition.
    pub first_offset: i64,
    /// Offset of the ABORT marker that ended it.
    pub last_offset: i64,
    /// The partition's last stable offset once the marker was written: a fetch whose upper
    /// bound is at or below it needs no entry of a later segment (Kafka's search stops there).
    pub last_stable_offset: i64,
}

/// Appends the entry's bytes to `buf`.
pub fn encode_entry(txn: &AbortedTxn, buf: &mut Vec<u8>) {
    buf.extend_from_slice(&ABORTED_TXN_VERSION.to_be_bytes());
    buf.extend_from_slice(&txn.producer_id.to_be_bytes());
    buf.extend_from_slice(&txn.first_offset.to_be_bytes());
    buf.extend_from_slice(&txn.last_offset.to_be_bytes());
    buf.extend_from_slice(&txn.last_stable_offset.to_be_bytes());
}

/// Parses a whole index file. A size that is not a whole number of entries, an unknown
/// version or entries out of order make it corrupt (Kafka's `sanityCheck`).
pub fn decode(buf: &[u8]) -> Result<Vec<AbortedTxn>, String> {
    if !buf.len().is_multiple_of(ENTRY_SIZE) {
        return Err(format!(
            "{} bytes is not a whole number of {ENTRY_SIZE}-byte entries",
            buf.len()
        ));
    }
    let mut entries: Vec<AbortedTxn> = Vec::with_capacity(buf.len() / ENTRY_SIZE);
    for chunk in buf.chunks_exact(ENTRY_SIZE) {
        let version = i16::from_be_bytes([chunk[0], chunk[1]]);
        if version != ABORTED_TXN_VERSION {
            return Err(format!("unexpected aborted transaction version {version}"));
        }
        let long = |at: usize| i64::from_be_bytes(chunk[at..at + 8].try_into().expect("8 bytes"));
        let txn = AbortedTxn {
            producer_id: long(2),
            first_offset: long(10),
            last_offset: long(18),
            last_stable_offset: long(26),
        };
        if txn.first_offset > txn.last_offset {
            return Err(format!("entry {txn:?} ends before it starts"));
        }
        if let Some(previous) = entries.last() {
            if txn.last_offset <= previous.last_offset {
                return Err(format!("entry {txn:?} is not after {previous:?}"));
            }
        }
        entries.push(txn);
    }
    Ok(entries)
}

/// What a search of one segment's index found (Kafka's `TxnIndexSearchResult`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TxnIndexSearchResult {
    pub aborted_transactions: Vec<AbortedTxn>,
    /// True when no later segment can hold an entry the fetch needs.
    pub is_complete: bool,
}

/// A segment's aborted transactions, held in memory and written at flush.
#[derive(Debug)]
pub struct TransactionIndex {
    path: PathBuf,
    entries: Vec<AbortedTxn>,
    /// Entries changed since the file was last written.
    dirty: bool,
}

impl TransactionIndex {
    /// An empty index for a new segment (no file until an entry is flushed).
    pub fn new(path: &Path) -> TransactionIndex {
        TransactionIndex {
            path: path.to_path_buf(),
            entries: Vec::new(),
            dirty: false,
        }
    }

    /// Reads the index file if there is one; a missing file is an empty index. The caller
    /// bounds the file (a segment's index never exceeds one entry per marker it holds, and a
    /// marker batch is at least 78 bytes), so `max_bytes` refuses a file that could not be.
    pub fn open(path: &Path, max_bytes: u64) -> io::Result<Result<TransactionIndex, String>> {
        let len = match fs::metadata(path) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Ok(Self::new(path))),
            Err(e) => return Err(e),
        };
        if len > max_bytes {
            return Ok(Err(format!("{len} bytes is more than {max_bytes}")));
        }
        let bytes = fs::read(path)?;
        Ok(decode(&bytes).map(|entries| TransactionIndex {
            path: path.to_path_buf(),
            entries,
            dirty: false,
        }))
    }

    /// Adds the entry of an ABORT marker; refuses one not after the last (Kafka's
    /// "The last offset of appended transactions must increase sequentially").
    pub fn append(&mut self, txn: AbortedTxn) -> Result<(), String> {
        if txn.first_offset > txn.last_offset {
            return Err(format!("entry {txn:?} ends before it starts"));
        }
        if let Some(last) = self.entries.last() {
            if txn.last_offset <= last.last_offset {
                return Err(format!(
                    "The last offset of appended transactions must increase sequentially, but {} is not greater than current last offset {} of index {}",
                    txn.last_offset,
                    last.last_offset,
                    self.path.display()
                ));
            }
        }
        self.entries.push(txn);
        self.dirty = true;
        Ok(())
    }

    /// The last entry's marker offset, if any: an entry at or below it is already held.
    pub fn last_offset(&self) -> Option<i64> {
        self.entries.last().map(|e| e.last_offset)
    }

    /// Drops the entries whose marker lies at or after `offset` (Kafka's `truncateTo`).
    pub fn truncate_to(&mut self, offset: i64) {
        let keep = self.entries.partition_point(|e| e.last_offset < offset);
        if keep < self.entries.len() {
            self.entries.truncate(keep);
            self.dirty = true;
        }
    }

    /// Forgets every entry (the segment is being rebuilt).
    pub fn reset(&mut self) {
        if !self.entries.is_empty() {
            self.entries.clear();
            self.dirty = true;
        }
    }

    /// The aborted transactions that overlap `[fetch_offset, upper_bound_offset)` (Kafka's
    /// `collectAbortedTxns`): complete once an entry's last stable offset reaches the upper
    /// bound, as no transaction aborted later can have started below it.
    pub fn collect_aborted_txns(
        &self,
        fetch_offset: i64,
        upper_bound_offset: i64,
    ) -> TxnIndexSearchResult {
        let mut result = TxnIndexSearchResult::default();
        for txn in &self.entries {
            if txn.last_offset >= fetch_offset && txn.first_offset < upper_bound_offset {
                result.aborted_transactions.push(*txn);
            }
            if txn.last_stable_offset >= upper_bound_offset {
                result.is_complete = true;
                return result;
            }
        }
        result
    }

    /// Writes the file if the entries changed: the whole file, fsynced; no entries, no file.
    pub fn flush(&mut self) -> io::Result<()> {
        if !self.dirty {
            return Ok(());
        }
        if self.entries.is_empty() {
            match fs::remove_file(&self.path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        } else {
            let mut buf = Vec::with_capacity(self.entries.len() * ENTRY_SIZE);
            for txn in &self.entries {
                encode_entry(txn, &mut buf);
            }
            let file = fs::File::create(&self.path)?;
            io::Write::write_all(&mut &file, &buf)?;
            file.sync_data()?;
        }
        self.dirty = false;
        Ok(())
    }

    pub fn entries(&self) -> &[AbortedTxn] {
        &self.entries
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn txn(pid: i64, first: i64, last: i64, lso: i64) -> AbortedTxn {
        AbortedTxn {
            producer_id: pid,
            first_offset: first,
            last_offset: last,
            last_stable_offset: lso,
        }
    }

    /// The bytes are Kafka's: version 0, then four big-endian longs.
    #[test]
    fn entry_layout_is_kafkas() {
        let mut buf = Vec::new();
        encode_entry(&txn(7, 10, 20, 11), &mut buf);
        assert_eq!(buf.len(), ENTRY_SIZE);
        assert_eq!(&buf[0..2], &[0, 0]);
        assert_eq!(&buf[2..10], &7i64.to_be_bytes());
        assert_eq!(&buf[10..18], &10i64.to_be_bytes());
        assert_eq!(&buf[18..26], &20i64.to_be_bytes());
        assert_eq!(&buf[26..34], &11i64.to_be_bytes());
        assert_eq!(decode(&buf).unwrap(), vec![txn(7, 10, 20, 11)]);
    }

    #[test]
    fn corrupt_files_are_refused() {
        let mut buf = Vec::new();
        encode_entry(&txn(1, 0, 5, 6), &mut buf);
        assert!(decode(&buf[..ENTRY_SIZE - 1]).is_err());
        let mut bad_version = buf.clone();
        bad_version[1] = 1;
        assert!(decode(&bad_version).is_err());
        let mut out_of_order = buf.clone();
        encode_entry(&txn(2, 0, 5, 6), &mut out_of_order);
        assert!(decode(&out_of_order).is_err());
        let mut backwards = Vec::new();
        encode_entry(&txn(1, 9, 5, 6), &mut backwards);
        assert!(decode(&backwards).is_err());
    }

    #[test]
    fn flush_open_truncate_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("00000000000000000000.txnindex");
        let mut index = TransactionIndex::new(&path);
        index.flush().unwrap();
        assert!(!path.exists(), "no entries, no file");
        index.append(txn(1, 0, 4, 5)).unwrap();
        index.append(txn(2, 2, 9, 10)).unwrap();
        assert!(
            index.append(txn(3, 3, 9, 10)).is_err(),
            "not after the last"
        );
        assert!(!path.exists(), "written only at flush");
        index.flush().unwrap();
        assert_eq!(fs::metadata(&path).unwrap().len(), 2 * ENTRY_SIZE as u64);
        let reopened = TransactionIndex::open(&path, 1 << 20).unwrap().unwrap();
        assert_eq!(reopened.entries(), index.entries());
        assert!(TransactionIndex::open(&path, ENTRY_SIZE as u64)
            .unwrap()
            .is_err());

        index.truncate_to(9);
        assert_eq!(index.entries(), &[txn(1, 0, 4, 5)]);
        assert_eq!(index.last_offset(), Some(4));
        index.flush().unwrap();
        let reopened = TransactionIndex::open(&path, 1 << 20).unwrap().unwrap();
        assert_eq!(reopened.entries(), &[txn(1, 0, 4, 5)]);
        index.reset();
        index.flush().unwrap();
        assert!(!path.exists());
    }

    /// Kafka's `collectAbortedTxns`: entries overlapping the fetched range, complete once an
    /// entry's last stable offset reaches the upper bound.
    #[test]
    fn collect_aborted_txns_overlapping_the_range() {
        let mut index = TransactionIndex::new(Path::new("unused"));
        index.append(txn(1, 0, 10, 11)).unwrap();
        index.append(txn(2, 5, 20, 21)).unwrap();
        index.append(txn(3, 30, 40, 41)).unwrap();
        // Fetch [12, 25): txn 1 ended before it, txn 3 starts after it.
        let r = index.collect_aborted_txns(12, 25);
        assert_eq!(r.aborted_transactions, vec![txn(2, 5, 20, 21)]);
        assert!(r.is_complete, "txn 3's LSO 41 reaches the bound");
        // Fetch [0, 100): everything, and a later segment may hold more.
        let r = index.collect_aborted_txns(0, 100);
        assert_eq!(r.aborted_transactions.len(), 3);
        assert!(!r.is_complete);
        // Fetch [0, 6): txns 1 and 2 started below 6; txn 1's LSO 11 completes the search.
        let r = index.collect_aborted_txns(0, 6);
        assert_eq!(r.aborted_transactions, vec![txn(1, 0, 10, 11)]);
        assert!(r.is_complete);
    }
}
