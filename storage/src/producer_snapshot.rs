//! Producer-state snapshot files, in Kafka's format and under Kafka's names, so that a
//! partition directory reads the same to a Kafka operator: `{offset:020}.snapshot` holds the
//! idempotent-producer state of every batch below `offset` (Kafka's
//! `ProducerStateManager.writeSnapshot` / `readSnapshot`, version 1).
//!
//! ```text
//! offset size field
//!      0    2 version (1)
//!      2    4 crc (CRC-32C of bytes 6..end, unsigned)
//!      6    4 number of entries
//!     10   46 each entry: producer_id i64, epoch i16, last_sequence i32, last_offset i64,
//!             offset_delta i32, timestamp i64, coordinator_epoch i32,
//!             current_txn_first_offset i64 (-1: none)
//! ```
//!
//! All integers are big-endian. Kafka writes one entry per producer (its last batch). Gregor
//! writes one entry per remembered batch (up to five per producer, oldest first) so that a
//! retry of any of them is still recognised after a restart; Kafka's reader keeps the last
//! entry of each producer id, which is exactly the entry Kafka itself would have written, so
//! the file stays readable by Kafka's tools.
//!
//! This module only encodes, decodes and names the files; when they are written and deleted
//! is the log's business (`log.rs`), and what the entries mean is the broker's.

use std::fs;
use std::io;
use std::path::Path;

use tracing::warn;

use crate::checkpoint;

/// Suffix of a producer-state snapshot file.
pub const PRODUCER_SNAPSHOT_SUFFIX: &str = ".snapshot";
/// The only snapshot version written and read (Kafka's `PRODUCER_SNAPSHOT_VERSION`).
pub const PRODUCER_SNAPSHOT_VERSION: i16 = 1;
/// Bytes before the entries: version, CRC, entry count.
pub const HEADER_BYTES: usize = 2 + 4 + 4;
/// Bytes of one entry.
pub const ENTRY_BYTES: usize = 8 + 2 + 4 + 8 + 4 + 8 + 4 + 8;
/// Where the CRC-covered bytes start.
const CRC_START: usize = 6;

/// One entry of a snapshot: one batch of one producer (Kafka's `ProducerStateEntry` with its
/// last `BatchMetadata`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProducerSnapshotEntry {
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// Sequence of the batch's last record.
    pub last_sequence: i32,
    /// Offset of the batch's last record; -1 for a producer known without a batch.
    pub last_offset: i64,
    /// `last_offset - first offset` of the batch (equal to the sequence span).
    pub offset_delta: i32,
    /// The batch's max timestamp; producer expiry counts from it.
    pub timestamp: i64,
    /// Epoch of the transaction coordinator that last wrote a marker; -1 without one.
    pub coordinator_epoch: i32,
    /// First offset of the producer's open transaction; -1 when none is open.
    pub current_txn_first_offset: i64,
}

/// Why a snapshot could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The file could not be read.
    #[error("cannot read producer snapshot: {0}")]
    Io(#[from] io::Error),
    /// The file is not a valid version-1 snapshot (size, version or CRC).
    #[error("corrupt producer snapshot: {0}")]
    Corrupt(String),
}

/// `00000000000000000123.snapshot`, as Kafka names it.
pub fn file_name(offset: i64) -> String {
    debug_assert!(offset >= 0, "snapshot offset {offset}");
    format!("{offset:020}{PRODUCER_SNAPSHOT_SUFFIX}")
}

/// The offset a snapshot file name stands for, or `None` for any other file.
pub fn parse_file_name(name: &str) -> Option<i64> {
    let digits = name.strip_suffix(PRODUCER_SNAPSHOT_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The file's bytes for `entries`.
pub fn encode(entries: &[ProducerSnapshotEntry]) -> Vec<u8> {
    let count = i32::try_from(entries.len()).expect("snapshot entry count fits an i32");
    let mut buf = Vec::with_capacity(HEADER_BYTES + entries.len() * ENTRY_BYTES);
    buf.extend_from_slice(&PRODUCER_SNAPSHOT_VERSION.to_be_bytes());
    buf.extend_from_slice(&[0; 4]);
    buf.extend_from_slice(&count.to_be_bytes());
    for e in entries {
        buf.extend_from_slice(&e.producer_id.to_be_bytes());
        buf.extend_from_slice(&e.producer_epoch.to_be_bytes());
        buf.extend_from_slice(&e.last_sequence.to_be_bytes());
        buf.extend_from_slice(&e.last_offset.to_be_bytes());
        buf.extend_from_slice(&e.offset_delta.to_be_bytes());
        buf.extend_from_slice(&e.timestamp.to_be_bytes());
        buf.extend_from_slice(&e.coordinator_epoch.to_be_bytes());
        buf.extend_from_slice(&e.current_txn_first_offset.to_be_bytes());
    }
    let crc = crc32c::crc32c(&buf[CRC_START..]);
    buf[2..CRC_START].copy_from_slice(&crc.to_be_bytes());
    debug_assert_eq!(buf.len(), HEADER_BYTES + entries.len() * ENTRY_BYTES);
    buf
}

/// Parses a snapshot, checking its version, its size against its entry count, and its CRC.
pub fn decode(buf: &[u8]) -> Result<Vec<ProducerSnapshotEntry>, SnapshotError> {
    let corrupt = SnapshotError::Corrupt;
    if buf.len() < HEADER_BYTES {
        return Err(corrupt(format!(
            "{} bytes is shorter than the header",
            buf.len()
        )));
    }
    let version = i16::from_be_bytes([buf[0], buf[1]]);
    if version != PRODUCER_SNAPSHOT_VERSION {
        return Err(corrupt(format!("unknown version {version}")));
    }
    let stored_crc = u32::from_be_bytes(buf[2..6].try_into().expect("4 bytes"));
    let computed_crc = crc32c::crc32c(&buf[CRC_START..]);
    if stored_crc != computed_crc {
        return Err(corrupt(format!(
            "CRC is no longer valid (stored {stored_crc}, computed {computed_crc})"
        )));
    }
    let count = i32::from_be_bytes(buf[6..10].try_into().expect("4 bytes"));
    // The count is checked against the bytes present before anything is allocated.
    let expected_len = usize::try_from(count)
        .ok()
        .and_then(|c| c.checked_mul(ENTRY_BYTES))
        .and_then(|b| b.checked_add(HEADER_BYTES));
    if expected_len != Some(buf.len()) {
        return Err(corrupt(format!(
            "{count} entries do not fill {} bytes",
            buf.len()
        )));
    }
    let mut entries = Vec::with_capacity(count as usize);
    for chunk in buf[HEADER_BYTES..].chunks_exact(ENTRY_BYTES) {
        let mut r = Reader(chunk);
        entries.push(ProducerSnapshotEntry {
            producer_id: i64::from_be_bytes(r.take()),
            producer_epoch: i16::from_be_bytes(r.take()),
            last_sequence: i32::from_be_bytes(r.take()),
            last_offset: i64::from_be_bytes(r.take()),
            offset_delta: i32::from_be_bytes(r.take()),
            timestamp: i64::from_be_bytes(r.take()),
            coordinator_epoch: i32::from_be_bytes(r.take()),
            current_txn_first_offset: i64::from_be_bytes(r.take()),
        });
        debug_assert!(r.0.is_empty());
    }
    Ok(entries)
}

/// Takes fixed-size fields off the front of an entry whose length was checked.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let (head, rest) = self.0.split_at(N);
        self.0 = rest;
        head.try_into().expect("N bytes")
    }
}

/// Writes the snapshot for `offset` atomically and durably (temporary file, fsync, rename,
/// directory fsync): a crash leaves the old file set or the new one, never a torn snapshot.
pub fn write(dir: &Path, offset: i64, entries: &[ProducerSnapshotEntry]) -> io::Result<()> {
    checkpoint::write_atomic(dir, &file_name(offset), &encode(entries))
}

/// Reads the snapshot for `offset`, refusing a file larger than `max_entries` entries
/// before reading it.
pub fn read(
    dir: &Path,
    offset: i64,
    max_entries: usize,
) -> Result<Vec<ProducerSnapshotEntry>, SnapshotError> {
    let path = dir.join(file_name(offset));
    let len = fs::metadata(&path)?.len();
    let max_len = max_entries
        .saturating_mul(ENTRY_BYTES)
        .saturating_add(HEADER_BYTES);
    if len > max_len as u64 {
        return Err(SnapshotError::Corrupt(format!(
            "{len} bytes is more than {max_entries} entries"
        )));
    }
    decode(&fs::read(&path)?)
}

/// Offsets of the snapshot files in `dir`, ascending.
pub fn list(dir: &Path) -> io::Result<Vec<i64>> {
    let mut offsets = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if let Some(offset) = entry.file_name().to_str().and_then(parse_file_name) {
            offsets.push(offset);
        }
    }
    offsets.sort_unstable();
    Ok(offsets)
}

/// Deletes the snapshot for `offset` if it exists (the caller syncs the directory).
pub fn delete(dir: &Path, offset: i64) -> io::Result<()> {
    match fs::remove_file(dir.join(file_name(offset))) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Deletes every snapshot for which `doomed(offset)` holds; returns how many went. The
/// directory is synced once when any did.
pub fn delete_where(dir: &Path, doomed: impl Fn(i64) -> bool) -> io::Result<usize> {
    let mut deleted = 0;
    for offset in list(dir)? {
        if doomed(offset) {
            delete(dir, offset)?;
            deleted += 1;
        }
    }
    if deleted > 0 {
        checkpoint::sync_dir(dir)?;
    }
    Ok(deleted)
}

/// The newest readable snapshot at or below `max_offset`, with its offset. Corrupt ones are
/// deleted and unreadable ones skipped (with a warning), falling back to older ones: the
/// caller rebuilds whatever a snapshot does not cover from the log.
pub fn latest_readable(
    dir: &Path,
    max_offset: i64,
    max_entries: usize,
) -> io::Result<Option<(i64, Vec<ProducerSnapshotEntry>)>> {
    for offset in list(dir)?.into_iter().rev() {
        if offset > max_offset {
            continue;
        }
        match read(dir, offset, max_entries) {
            Ok(entries) => return Ok(Some((offset, entries))),
            Err(SnapshotError::Corrupt(why)) => {
                warn!(dir = %dir.display(), offset, why, "deleting corrupt producer snapshot");
                delete(dir, offset)?;
            }
            Err(SnapshotError::Io(e)) => {
                warn!(dir = %dir.display(), offset, error = %e, "skipping unreadable producer snapshot");
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(pid: i64, seq: i32, offset: i64) -> ProducerSnapshotEntry {
        ProducerSnapshotEntry {
            producer_id: pid,
            producer_epoch: 3,
            last_sequence: seq,
            last_offset: offset,
            offset_delta: 4,
            timestamp: 1_700_000_000_000,
            coordinator_epoch: -1,
            current_txn_first_offset: -1,
        }
    }

    #[test]
    fn names_like_kafka() {
        assert_eq!(file_name(123), "00000000000000000123.snapshot");
        assert_eq!(parse_file_name("00000000000000000123.snapshot"), Some(123));
        assert_eq!(parse_file_name("00000000000000000123.log"), None);
        assert_eq!(parse_file_name("123.snapshot"), None);
        assert_eq!(parse_file_name("0000000000000000012x.snapshot"), None);
    }

    #[test]
    fn round_trip_in_kafkas_layout() {
        let entries = vec![entry(7, 4, 10), entry(7, 9, 15), entry(8, 0, 16)];
        let bytes = encode(&entries);
        assert_eq!(bytes.len(), 10 + 3 * 46);
        assert_eq!(&bytes[0..2], &[0, 1], "version 1");
        assert_eq!(&bytes[6..10], &[0, 0, 0, 3], "entry count");
        assert_eq!(&bytes[10..18], &7i64.to_be_bytes(), "first producer id");
        assert_eq!(decode(&bytes).unwrap(), entries);
        assert_eq!(decode(&encode(&[])).unwrap(), vec![]);

        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), 123, &entries).unwrap();
        assert!(dir.path().join("00000000000000000123.snapshot").exists());
        assert_eq!(read(dir.path(), 123, 10).unwrap(), entries);
        assert!(matches!(
            read(dir.path(), 123, 2),
            Err(SnapshotError::Corrupt(_))
        ));
        assert_eq!(list(dir.path()).unwrap(), vec![123]);
    }

    #[test]
    fn corruption_is_detected() {
        let bytes = encode(&[entry(7, 4, 10)]);
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x40;
            assert!(decode(&bad).is_err(), "flipped byte {i} went unnoticed");
        }
        for len in 0..bytes.len() {
            assert!(decode(&bytes[..len]).is_err(), "truncated to {len}");
        }
        // A count that claims more than the file holds, with a matching CRC.
        let mut lying = bytes.clone();
        lying[6..10].copy_from_slice(&i32::MAX.to_be_bytes());
        let crc = crc32c::crc32c(&lying[CRC_START..]);
        lying[2..6].copy_from_slice(&crc.to_be_bytes());
        assert!(matches!(decode(&lying), Err(SnapshotError::Corrupt(_))));
    }

    #[test]
    fn latest_readable_skips_and_deletes_corrupt_snapshots() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), 10, &[entry(1, 0, 5)]).unwrap();
        write(dir.path(), 20, &[entry(2, 0, 15)]).unwrap();
        write(dir.path(), 30, &[entry(3, 0, 25)]).unwrap();
        let path = dir.path().join(file_name(20));
        let mut bytes = fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        fs::write(&path, bytes).unwrap();

        // 30 lies past the bound, 20 is corrupt: 10 is the answer and 20 is gone.
        let (offset, entries) = latest_readable(dir.path(), 29, 100).unwrap().unwrap();
        assert_eq!((offset, entries), (10, vec![entry(1, 0, 5)]));
        assert_eq!(list(dir.path()).unwrap(), vec![10, 30]);
        assert_eq!(latest_readable(dir.path(), 9, 100).unwrap(), None);

        assert_eq!(delete_where(dir.path(), |o| o < 30).unwrap(), 1);
        assert_eq!(list(dir.path()).unwrap(), vec![30]);
    }
}
