//! One log segment: a `.log` file of whole batches plus its offset and time indexes.
//!
//! Files are named by the segment's base offset, zero-padded to 20 digits like Kafka's
//! (`00000000000000000000.log`, `.index`, `.timeindex`). Batches are appended at the segment's
//! size with positional writes and read back with positional reads (`FileExt`), so readers
//! only ever see bytes below `size_bytes`, which moves after a write completes.
//!
//! A segment uses one file descriptor, its `.log`'s, and only while it is among the recently
//! used ones ([`crate::open_files`]): the indexes live in memory and their files are read at
//! load and written at flush (see [`crate::index`]), so open descriptors stay bounded however
//! many segments a broker holds.

use std::fs::{self, File};
use std::io;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use bytes::Bytes;
use tracing::{error, warn};

use crate::open_files::SegmentFile;

use crate::batch::{self, BatchHeader, NO_TIMESTAMP, RECORD_BATCH_OVERHEAD};
use crate::error::StorageError;
use crate::index::OffsetIndex;
use crate::time_index::TimeIndex;
use crate::txn_index::{AbortedTxn, TransactionIndex, TxnIndexSearchResult, TXN_INDEX_SUFFIX};

pub(crate) const LOG_SUFFIX: &str = ".log";
pub(crate) const INDEX_SUFFIX: &str = ".index";
pub(crate) const TIME_INDEX_SUFFIX: &str = ".timeindex";

/// Bytes read at once when scanning batch headers or checksumming batches.
const SCAN_CHUNK_BYTES: usize = 64 * 1024;
/// Bytes read at once when looking for one batch after an index lookup.
const LOOKUP_CHUNK_BYTES: usize = 16 * 1024;

/// `dir/{base_offset:020}{suffix}`.
pub(crate) fn segment_path(dir: &Path, base_offset: i64, suffix: &str) -> PathBuf {
    dir.join(format!("{base_offset:020}{suffix}"))
}

/// Parses a segment file name into its base offset and suffix.
pub(crate) fn parse_segment_file_name(name: &str) -> Option<(i64, &'static str)> {
    for suffix in [
        LOG_SUFFIX,
        INDEX_SUFFIX,
        TIME_INDEX_SUFFIX,
        TXN_INDEX_SUFFIX,
    ] {
        if let Some(stem) = name.strip_suffix(suffix) {
            if stem.len() == 20 && stem.bytes().all(|b| b.is_ascii_digit()) {
                return stem.parse().ok().map(|base| (base, suffix));
            }
        }
    }
    None
}

/// Removes a file, treating "already gone" as success.
fn remove_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Reads a file region in chunks, for scanning headers and checksumming batches without
/// holding a whole batch in memory.
struct Scanner<'a> {
    file: &'a File,
    /// Bytes at and past `end` are never read.
    end: u64,
    chunk_bytes: usize,
    buf: Vec<u8>,
    buf_start: u64,
}

impl<'a> Scanner<'a> {
    fn new(file: &'a File, end: u64, chunk_bytes: usize) -> Scanner<'a> {
        Scanner {
            file,
            end,
            chunk_bytes,
            buf: Vec::new(),
            buf_start: 0,
        }
    }

    /// Bytes `[position, position + len)`, which must lie below `end`.
    fn bytes(&mut self, position: u64, len: usize) -> io::Result<&[u8]> {
        assert!(
            position + len as u64 <= self.end,
            "scan past the end of the region"
        );
        let buf_end = self.buf_start + self.buf.len() as u64;
        if position < self.buf_start || position + len as u64 > buf_end {
            let want = (self.chunk_bytes as u64)
                .min(self.end - position)
                .max(len as u64) as usize;
            self.buf.resize(want, 0);
            self.file.read_exact_at(&mut self.buf, position)?;
            self.buf_start = position;
        }
        let start = (position - self.buf_start) as usize;
        Ok(&self.buf[start..start + len])
    }

    /// The header of the batch at `position`, checked to lie wholly below `end`.
    fn header(&mut self, position: u64) -> Result<BatchHeader, StorageError> {
        let remaining = self.end - position;
        if remaining < RECORD_BATCH_OVERHEAD as u64 {
            return Err(StorageError::corrupt(format!(
                "torn batch header: {remaining} bytes at position {position}"
            )));
        }
        let header = BatchHeader::parse(self.bytes(position, RECORD_BATCH_OVERHEAD)?)?;
        if header.total_size() as u64 > remaining {
            return Err(StorageError::corrupt(format!(
                "torn batch at position {position}: {} bytes, {remaining} remain",
                header.total_size()
            )));
        }
        Ok(header)
    }

    /// Checks the CRC of the batch at `position` without reading it whole into memory.
    fn verify_crc(&mut self, position: u64, header: &BatchHeader) -> Result<(), StorageError> {
        let end = position + header.total_size() as u64;
        let mut at = position + batch::ATTRIBUTES_OFFSET as u64;
        let mut crc = 0u32;
        while at < end {
            let len = (end - at).min(SCAN_CHUNK_BYTES as u64) as usize;
            crc = crc32c::crc32c_append(crc, self.bytes(at, len)?);
            at += len as u64;
        }
        if crc != header.crc {
            return Err(StorageError::corrupt(format!(
                "batch at position {position} (offset {}) has CRC {:#010x}, computed {crc:#010x}",
                header.base_offset, header.crc
            )));
        }
        Ok(())
    }
}

/// State derived from the tail of a segment (see [`Segment::load_tail`]).
struct Tail {
    next_offset: i64,
    max_timestamp: i64,
    offset_of_max_timestamp: i64,
}

/// One segment of a partition log.
///
/// # Invariants
/// - `[0, size_bytes)` of the `.log` file holds whole, CRC-valid v2 batches with increasing,
///   non-overlapping offsets, all `>= base_offset` and `<= base_offset + i32::MAX`; the first
///   batch's base offset is `>= base_offset`. Appends and recovery are the only writers and
///   both check this before the bytes count.
/// - `next_offset` is the last batch's last offset + 1, or `base_offset` when empty.
/// - `size_bytes <= i32::MAX`, so every position fits the 32-bit index entries.
/// - Every offset index entry is `(last offset of a batch, position of that batch)`, and every
///   time index entry's offset is below `next_offset`.
/// - `max_timestamp` is the largest batch `max_timestamp` in the segment (`NO_TIMESTAMP` if
///   none) and `offset_of_max_timestamp` the last offset of the first batch carrying it.
/// - `bytes_since_last_index_entry` is `size_bytes` minus the position of the last index entry
///   (or `size_bytes` when there is none): rebuilding the indexes from the batches with the same
///   rule as appends yields the same entries.
/// - `dirty` is false only when the file contents and both indexes are known to be fsynced.
#[derive(Debug)]
pub(crate) struct Segment {
    base_offset: i64,
    log_path: PathBuf,
    log: SegmentFile,
    size_bytes: u64,
    next_offset: i64,
    index: OffsetIndex,
    time_index: TimeIndex,
    /// The aborted transactions whose ABORT marker lies in this segment.
    txn_index: TransactionIndex,
    bytes_since_last_index_entry: u64,
    max_timestamp: i64,
    offset_of_max_timestamp: i64,
    /// `max_timestamp` of the first batch: what segment.ms measures age from (Kafka's
    /// `rollingBasedTimestamp`).
    first_batch_timestamp: Option<i64>,
    /// When this segment object was created or loaded; the age of an empty segment or of one
    /// whose first batch has no timestamp.
    created_ms: i64,
    dirty: bool,
}

impl Segment {
    /// Creates a new empty segment, replacing any files with its names.
    pub(crate) fn create(
        dir: &Path,
        base_offset: i64,
        now_ms: i64,
    ) -> Result<Segment, StorageError> {
        assert!(
            base_offset >= 0,
            "negative segment base offset {base_offset}"
        );
        let log_path = segment_path(dir, base_offset, LOG_SUFFIX);
        let log = SegmentFile::create(&log_path)?;
        // Index files of an earlier segment with this base offset must not outlive it: until
        // the first flush writes the new ones, a crash leaves this segment without indexes,
        // which makes loading it rebuild them.
        let index_path = segment_path(dir, base_offset, INDEX_SUFFIX);
        let time_index_path = segment_path(dir, base_offset, TIME_INDEX_SUFFIX);
        remove_if_exists(&index_path)?;
        remove_if_exists(&time_index_path)?;
        let txn_index_path = segment_path(dir, base_offset, TXN_INDEX_SUFFIX);
        remove_if_exists(&txn_index_path)?;
        let txn_index = TransactionIndex::new(&txn_index_path);
        let index = OffsetIndex::new(&index_path, base_offset);
        let time_index = TimeIndex::new(&time_index_path, base_offset);
        Ok(Segment {
            base_offset,
            log_path,
            log,
            size_bytes: 0,
            next_offset: base_offset,
            index,
            time_index,
            txn_index,
            bytes_since_last_index_entry: 0,
            max_timestamp: NO_TIMESTAMP,
            offset_of_max_timestamp: -1,
            first_batch_timestamp: None,
            created_ms: now_ms,
            dirty: true,
        })
    }

    /// Opens the files of an existing segment without trusting anything in them yet.
    fn open_files(dir: &Path, base_offset: i64, now_ms: i64) -> Result<Segment, StorageError> {
        let log_path = segment_path(dir, base_offset, LOG_SUFFIX);
        let log = SegmentFile::open(&log_path)?;
        let size_bytes = log.get()?.metadata()?.len();
        let index = OffsetIndex::open(&segment_path(dir, base_offset, INDEX_SUFFIX), base_offset)?;
        let time_index = TimeIndex::open(
            &segment_path(dir, base_offset, TIME_INDEX_SUFFIX),
            base_offset,
        )?;
        // A segment's entries are at most one per marker batch (far more than 34 bytes each),
        // so an index larger than the log is corrupt. A corrupt one is removed: the broker's
        // replay of producer state re-adds the entries it reaches.
        let txn_index_path = segment_path(dir, base_offset, TXN_INDEX_SUFFIX);
        let txn_index = match TransactionIndex::open(&txn_index_path, size_bytes)? {
            Ok(index) => index,
            Err(reason) => {
                warn!(file = %txn_index_path.display(), %reason, "removing corrupt transaction index");
                remove_if_exists(&txn_index_path)?;
                TransactionIndex::new(&txn_index_path)
            }
        };
        Ok(Segment {
            base_offset,
            log_path,
            log,
            size_bytes,
            next_offset: base_offset,
            index,
            time_index,
            txn_index,
            bytes_since_last_index_entry: 0,
            max_timestamp: NO_TIMESTAMP,
            offset_of_max_timestamp: -1,
            first_batch_timestamp: None,
            created_ms: now_ms,
            dirty: false,
        })
    }

    /// Loads a segment that was flushed before the last shutdown: trusts its batches, checks
    /// its indexes and rescans only the tail past the last index entry. Falls back to a full
    /// [`Segment::recover`] when an index is missing or does not match the log.
    /// Returns the segment and the bytes recovery cut from its end.
    pub(crate) fn load(
        dir: &Path,
        base_offset: i64,
        now_ms: i64,
        index_interval_bytes: u32,
        on_batch: &mut dyn FnMut(&BatchHeader) -> Result<(), StorageError>,
    ) -> Result<(Segment, u64), StorageError> {
        let mut segment = Segment::open_files(dir, base_offset, now_ms)?;
        let checked = if segment.size_bytes > i32::MAX as u64 {
            Err(StorageError::corrupt(format!(
                "segment of {} bytes",
                segment.size_bytes
            )))
        } else {
            segment
                .index
                .check(segment.size_bytes)
                .map_err(StorageError::CorruptRecord)
                .and_then(|()| {
                    let tail = segment.load_tail()?;
                    segment
                        .time_index
                        .check(tail.next_offset)
                        .map_err(StorageError::CorruptRecord)?;
                    segment.apply_tail(tail);
                    segment.load_first_batch_timestamp()
                })
        };
        match checked {
            Ok(()) => Ok((segment, 0)),
            Err(StorageError::Io(e)) => Err(e.into()),
            Err(reason) => {
                warn!(segment = %segment.log_path.display(), %reason, "segment needs recovery");
                let truncated_bytes = segment.recover(index_interval_bytes, on_batch)?;
                Ok((segment, truncated_bytes))
            }
        }
    }

    /// Opens a segment that may hold unflushed data and recovers it.
    pub(crate) fn open_and_recover(
        dir: &Path,
        base_offset: i64,
        now_ms: i64,
        index_interval_bytes: u32,
        on_batch: &mut dyn FnMut(&BatchHeader) -> Result<(), StorageError>,
    ) -> Result<(Segment, u64), StorageError> {
        let mut segment = Segment::open_files(dir, base_offset, now_ms)?;
        let truncated_bytes = segment.recover(index_interval_bytes, on_batch)?;
        Ok((segment, truncated_bytes))
    }

    /// Validates every batch from the start (length, magic, CRC, offsets increasing and in
    /// range), truncates the file after the last valid batch and rebuilds both indexes.
    /// Calls `on_batch` for each valid batch in order. Returns how many bytes were cut.
    ///
    /// I/O errors are returned as such and never cause truncation: only bytes that were read
    /// and found invalid are cut.
    pub(crate) fn recover(
        &mut self,
        index_interval_bytes: u32,
        on_batch: &mut dyn FnMut(&BatchHeader) -> Result<(), StorageError>,
    ) -> Result<u64, StorageError> {
        let file = self.log.get()?;
        let file_bytes = file.metadata()?.len();
        self.index.reset();
        self.time_index.reset();
        self.size_bytes = 0;
        self.next_offset = self.base_offset;
        self.bytes_since_last_index_entry = 0;
        self.max_timestamp = NO_TIMESTAMP;
        self.offset_of_max_timestamp = -1;
        self.first_batch_timestamp = None;
        self.dirty = true;

        let mut scanner = Scanner::new(&file, file_bytes, SCAN_CHUNK_BYTES);
        let mut position = 0u64;
        let mut problem = None;
        while position < file_bytes {
            let valid = scanner.header(position).and_then(|header| {
                scanner.verify_crc(position, &header)?;
                self.check_offsets(&header, position)?;
                Ok(header)
            });
            let header = match valid {
                Ok(header) => header,
                Err(StorageError::Io(e)) => return Err(e.into()),
                Err(e) => {
                    problem = Some(e);
                    break;
                }
            };
            self.index_batch(&header, position, index_interval_bytes);
            on_batch(&header)?;
            position += header.total_size() as u64;
        }
        debug_assert_eq!(position, self.size_bytes);
        let truncated_bytes = file_bytes - position;
        if truncated_bytes > 0 {
            warn!(
                segment = %self.log_path.display(),
                valid_bytes = position,
                truncated_bytes,
                next_offset = self.next_offset,
                reason = %problem.as_ref().map_or_else(String::new, |e| e.to_string()),
                "truncating invalid tail of segment"
            );
            file.set_len(position)?;
        }
        // Entries of markers that did not survive go with them.
        self.txn_index.truncate_to(self.next_offset);
        Ok(truncated_bytes)
    }

    /// Checks that a batch about to be counted at `position` continues the segment: its offsets
    /// follow `next_offset`, stay within 32 bits of the base offset, and its end stays within
    /// 32-bit positions.
    fn check_offsets(&self, header: &BatchHeader, position: u64) -> Result<(), StorageError> {
        if header.base_offset < self.next_offset {
            return Err(StorageError::corrupt(format!(
                "batch at position {position} has base offset {}, expected at least {}",
                header.base_offset, self.next_offset
            )));
        }
        if header.last_offset_delta < 0 || header.last_offset() - self.base_offset > i32::MAX as i64
        {
            return Err(StorageError::corrupt(format!(
                "batch at position {position} has offsets {}..={} outside segment {}",
                header.base_offset,
                header.last_offset(),
                self.base_offset
            )));
        }
        if position + header.total_size() as u64 > i32::MAX as u64 {
            return Err(StorageError::corrupt(format!(
                "batch at position {position} ends past 2 GiB"
            )));
        }
        Ok(())
    }

    /// Counts the batch at `position` (which must be the current end) into the segment state and
    /// its indexes, with Kafka's rule: an index entry for a batch when more than
    /// `index_interval_bytes` were appended since the last entry. The index files get the
    /// entries at the next flush.
    fn index_batch(&mut self, header: &BatchHeader, position: u64, index_interval_bytes: u32) {
        debug_assert_eq!(position, self.size_bytes);
        if header.max_timestamp > self.max_timestamp {
            self.max_timestamp = header.max_timestamp;
            self.offset_of_max_timestamp = header.last_offset();
        }
        if self.first_batch_timestamp.is_none() {
            self.first_batch_timestamp = Some(header.max_timestamp);
        }
        if self.bytes_since_last_index_entry > index_interval_bytes as u64 {
            self.index.append(header.last_offset(), position);
            self.time_index
                .maybe_append(self.max_timestamp, self.offset_of_max_timestamp);
            self.bytes_since_last_index_entry = 0;
        }
        let size = header.total_size() as u64;
        self.bytes_since_last_index_entry += size;
        self.size_bytes = position + size;
        self.next_offset = header.next_offset();
    }

    /// Scans the batches past the last offset index entry (every batch before it is covered by
    /// the time index, see [`TimeIndex`](crate::time_index)) and derives the segment's next
    /// offset and largest timestamp. Checks that the last index entry names the batch at its
    /// position.
    fn load_tail(&self) -> Result<Tail, StorageError> {
        let file = self.log.get()?;
        let mut scanner = Scanner::new(&file, self.size_bytes, SCAN_CHUNK_BYTES);
        let start = self.index.last_entry();
        let mut position = start.map_or(0, |e| e.position);
        let mut next_offset = self.base_offset;
        let mut tail_max = (NO_TIMESTAMP, -1);
        let mut first = true;
        while position < self.size_bytes {
            let header = scanner.header(position)?;
            if let (true, Some(entry)) = (first, start) {
                if header.last_offset() != entry.offset {
                    return Err(StorageError::corrupt(format!(
                        "index entry {entry:?} names a batch ending at {}",
                        header.last_offset()
                    )));
                }
            } else if header.base_offset < next_offset {
                return Err(StorageError::corrupt(format!(
                    "batch at position {position} has base offset {} below {next_offset}",
                    header.base_offset
                )));
            }
            first = false;
            if header.last_offset_delta < 0
                || header.last_offset() - self.base_offset > i32::MAX as i64
            {
                return Err(StorageError::corrupt(format!(
                    "batch at position {position} has bad offsets"
                )));
            }
            if header.max_timestamp > tail_max.0 {
                tail_max = (header.max_timestamp, header.last_offset());
            }
            next_offset = header.next_offset();
            position += header.total_size() as u64;
        }
        let (max_timestamp, offset_of_max_timestamp) = match self.time_index.last_entry() {
            Some(entry) if entry.timestamp >= tail_max.0 => (entry.timestamp, entry.offset),
            _ => tail_max,
        };
        Ok(Tail {
            next_offset,
            max_timestamp,
            offset_of_max_timestamp,
        })
    }

    fn apply_tail(&mut self, tail: Tail) {
        self.next_offset = tail.next_offset;
        self.max_timestamp = tail.max_timestamp;
        self.offset_of_max_timestamp = tail.offset_of_max_timestamp;
        self.bytes_since_last_index_entry =
            self.size_bytes - self.index.last_entry().map_or(0, |e| e.position);
    }

    fn load_first_batch_timestamp(&mut self) -> Result<(), StorageError> {
        self.first_batch_timestamp = if self.size_bytes == 0 {
            None
        } else {
            Some(self.read_header_at(0)?.max_timestamp)
        };
        Ok(())
    }

    /// Appends whole, validated batches at the end of the segment. `headers` describe the
    /// batches of `records` (ranges relative to `records`) as they are written. The log write
    /// is the commit point: once it succeeded the batches count.
    pub(crate) fn append(
        &mut self,
        records: &[u8],
        headers: &[(BatchHeader, Range<usize>)],
        index_interval_bytes: u32,
    ) -> Result<(), StorageError> {
        let first = &headers.first().expect("append needs at least one batch").0;
        let last = &headers.last().expect("append needs at least one batch").0;
        assert!(
            first.base_offset >= self.next_offset,
            "append at offset {} below segment next offset {}",
            first.base_offset,
            self.next_offset
        );
        assert!(
            last.last_offset() - self.base_offset <= i32::MAX as i64,
            "offset overflows segment"
        );
        assert!(
            self.size_bytes + records.len() as u64 <= i32::MAX as u64,
            "segment overflows 2 GiB"
        );
        let position = self.size_bytes;
        let file = self.log.get()?;
        if let Err(e) = file.write_all_at(records, position) {
            if let Err(truncate_error) = file.set_len(position) {
                error!(segment = %self.log_path.display(), %truncate_error, "cannot cut failed append");
            }
            return Err(e.into());
        }
        self.dirty = true;
        for (header, range) in headers {
            self.index_batch(header, position + range.start as u64, index_interval_bytes);
        }
        debug_assert_eq!(self.size_bytes, position + records.len() as u64);
        Ok(())
    }

    /// Reads and checks the header of the batch at `position`.
    fn read_header_at(&self, position: u64) -> Result<BatchHeader, StorageError> {
        Scanner::new(&*self.log.get()?, self.size_bytes, RECORD_BATCH_OVERHEAD).header(position)
    }

    /// The first batch whose last offset is `>= offset`, with its position, or `None` when
    /// every batch here ends before `offset`.
    pub(crate) fn find_batch(
        &self,
        offset: i64,
    ) -> Result<Option<(BatchHeader, u64)>, StorageError> {
        if offset >= self.next_offset {
            return Ok(None);
        }
        let file = self.log.get()?;
        let mut scanner = Scanner::new(&file, self.size_bytes, LOOKUP_CHUNK_BYTES);
        let mut position = self.index.lookup(offset).position;
        while position < self.size_bytes {
            let header = scanner.header(position)?;
            if header.last_offset() >= offset {
                return Ok(Some((header, position)));
            }
            position += header.total_size() as u64;
        }
        Err(StorageError::corrupt(format!(
            "{}: no batch holds offset {offset} below next offset {}",
            self.log_path.display(),
            self.next_offset
        )))
    }

    /// Whole batches starting with the one holding `start_offset`, each with a base offset
    /// below `max_offset`, at most `max_bytes` in total unless `min_one_batch` lets the first
    /// batch exceed it. `None` when no batch here reaches `start_offset`.
    ///
    /// Debug builds also verify each batch's CRC on the way out.
    pub(crate) fn read(
        &self,
        start_offset: i64,
        max_bytes: usize,
        max_offset: i64,
        min_one_batch: bool,
    ) -> Result<Option<(Bytes, Option<i64>)>, StorageError> {
        let Some((first, position)) = self.find_batch(start_offset)? else {
            return Ok(None);
        };
        let first_size = first.total_size();
        let limit_bytes = if min_one_batch {
            max_bytes.max(first_size)
        } else {
            max_bytes
        };
        if first.base_offset >= max_offset || first_size > limit_bytes {
            return Ok(Some((Bytes::new(), None)));
        }
        let mut end = self
            .size_bytes
            .min(position.saturating_add(limit_bytes as u64));
        if max_offset < self.next_offset {
            if let Some((bound, bound_position)) = self.find_batch(max_offset)? {
                let bound_end = if bound.base_offset >= max_offset {
                    bound_position
                } else {
                    bound_position + bound.total_size() as u64
                };
                end = end.min(bound_end);
            }
        }
        let mut buf = vec![0u8; (end - position) as usize];
        self.log.get()?.read_exact_at(&mut buf, position)?;

        let mut taken = 0usize;
        let mut expected_offset = first.base_offset;
        while buf.len() - taken >= RECORD_BATCH_OVERHEAD {
            let header = BatchHeader::parse(&buf[taken..])?;
            let size = header.total_size();
            if size > buf.len() - taken || header.base_offset >= max_offset {
                break;
            }
            if header.base_offset < expected_offset {
                return Err(StorageError::corrupt(format!(
                    "{}: batch offset {} goes back from {expected_offset}",
                    self.log_path.display(),
                    header.base_offset
                )));
            }
            if cfg!(debug_assertions) {
                batch::verify_crc(&buf[taken..taken + size])?;
            }
            expected_offset = header.next_offset();
            taken += size;
        }
        assert!(taken >= first_size, "the first batch always fits the read");
        buf.truncate(taken);
        Ok(Some((Bytes::from(buf), Some(first.base_offset))))
    }

    /// Appends the headers of the batches from the one holding `start_offset` to the end.
    pub(crate) fn batch_headers_from(
        &self,
        start_offset: i64,
        out: &mut Vec<BatchHeader>,
    ) -> Result<(), StorageError> {
        let Some((first, mut position)) = self.find_batch(start_offset)? else {
            return Ok(());
        };
        let file = self.log.get()?;
        let mut scanner = Scanner::new(&file, self.size_bytes, SCAN_CHUNK_BYTES);
        out.push(first);
        position += first.total_size() as u64;
        while position < self.size_bytes {
            let header = scanner.header(position)?;
            out.push(header);
            position += header.total_size() as u64;
        }
        Ok(())
    }

    /// The whole batch at `position`.
    fn read_batch(&self, header: &BatchHeader, position: u64) -> Result<Vec<u8>, StorageError> {
        let mut buf = vec![0u8; header.total_size()];
        self.log.get()?.read_exact_at(&mut buf, position)?;
        Ok(buf)
    }

    /// The first offset `>= min_offset` whose record timestamp is `>= timestamp`, with that
    /// timestamp (Kafka's `LogSegment.findOffsetByTimestamp`). Records are decoded only for the
    /// one uncompressed CreateTime batch that holds the answer; a compressed batch answers with
    /// its base offset (or `min_offset`) and its max timestamp.
    pub(crate) fn find_offset_by_timestamp(
        &self,
        timestamp: i64,
        min_offset: i64,
    ) -> Result<Option<(i64, i64)>, StorageError> {
        if self.max_timestamp < timestamp || self.next_offset <= min_offset {
            return Ok(None);
        }
        let floor = self.time_index.lookup(timestamp);
        let mut position = self.index.lookup(floor.offset.max(min_offset)).position;
        let file = self.log.get()?;
        let mut scanner = Scanner::new(&file, self.size_bytes, SCAN_CHUNK_BYTES);
        while position < self.size_bytes {
            let header = scanner.header(position)?;
            if header.max_timestamp >= timestamp && header.last_offset() >= min_offset {
                if header.compression() != 0 || header.is_log_append_time() {
                    return Ok(Some((
                        header.base_offset.max(min_offset),
                        header.max_timestamp,
                    )));
                }
                let batch = self.read_batch(&header, position)?;
                let found = batch::record_offsets_and_timestamps(&batch)?
                    .into_iter()
                    .find(|&(offset, ts)| ts >= timestamp && offset >= min_offset);
                if found.is_some() {
                    return Ok(found);
                }
            }
            position += header.total_size() as u64;
        }
        Ok(None)
    }

    /// The offset of the first record carrying the segment's max timestamp: decoded from its
    /// batch when that batch is uncompressed CreateTime, else the batch's base offset.
    pub(crate) fn offset_of_max_timestamp_exact(&self) -> Result<Option<(i64, i64)>, StorageError> {
        if self.max_timestamp == NO_TIMESTAMP {
            return Ok(None);
        }
        let Some((header, position)) = self.find_batch(self.offset_of_max_timestamp)? else {
            return Ok(None);
        };
        if header.max_timestamp != self.max_timestamp {
            return Ok(Some((self.max_timestamp, self.offset_of_max_timestamp)));
        }
        if header.compression() != 0 || header.is_log_append_time() {
            return Ok(Some((self.max_timestamp, header.base_offset)));
        }
        let batch = self.read_batch(&header, position)?;
        let offset = batch::record_offsets_and_timestamps(&batch)?
            .into_iter()
            .find(|&(_, ts)| ts == self.max_timestamp)
            .map_or(header.last_offset(), |(offset, _)| offset);
        Ok(Some((self.max_timestamp, offset)))
    }

    /// Removes every batch whose last offset is `>= offset` (so a batch holding `offset` goes
    /// whole). Returns how many bytes were removed.
    pub(crate) fn truncate_to(&mut self, offset: i64) -> Result<u64, StorageError> {
        let Some((_, position)) = self.find_batch(offset)? else {
            return Ok(0);
        };
        let removed_bytes = self.size_bytes - position;
        self.log.get()?.set_len(position)?;
        self.size_bytes = position;
        self.dirty = true;
        self.index.truncate_to_position(position);
        self.txn_index.truncate_to(offset);
        let tail = self.load_tail()?;
        self.time_index.truncate_to_offset(tail.next_offset);
        let tail = self.load_tail()?;
        self.apply_tail(tail);
        if self.size_bytes == 0 {
            self.first_batch_timestamp = None;
        }
        Ok(removed_bytes)
    }

    /// How long this segment has been filling, as segment.ms measures it: from its first
    /// batch's timestamp to `message_timestamp`, or from its creation to `now_ms` when it has
    /// no timestamped batch.
    pub(crate) fn time_waited_for_roll_ms(&self, now_ms: i64, message_timestamp: i64) -> i64 {
        match self.first_batch_timestamp {
            Some(first) if first >= 0 => message_timestamp.saturating_sub(first),
            _ => now_ms.saturating_sub(self.created_ms),
        }
    }

    /// The timestamp retention.ms measures from: the largest batch timestamp, or the file's
    /// modification time when no batch has one (as Kafka does).
    pub(crate) fn largest_timestamp(&self) -> i64 {
        if self.max_timestamp != NO_TIMESTAMP {
            return self.max_timestamp;
        }
        fs::metadata(&self.log_path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(self.created_ms, |d| d.as_millis() as i64)
    }

    /// Called when the segment stops being the active one: writes a final time index entry for
    /// its largest timestamp (so loading it later needs no scan) and fsyncs everything.
    pub(crate) fn on_become_inactive(&mut self) -> Result<(), StorageError> {
        if self.max_timestamp != NO_TIMESTAMP
            && self
                .time_index
                .maybe_append(self.max_timestamp, self.offset_of_max_timestamp)
        {
            self.dirty = true;
        }
        self.sync()
    }

    /// Fsyncs the log and writes and fsyncs whichever index changed, if anything changed since
    /// the last sync.
    pub(crate) fn sync(&mut self) -> Result<(), StorageError> {
        if self.dirty {
            self.log.get()?.sync_data()?;
            self.index.flush()?;
            self.time_index.flush()?;
            self.txn_index.flush()?;
            self.dirty = false;
        }
        Ok(())
    }

    /// Removes the segment's files (the log first, so a crash in between leaves only index
    /// files without a log, which opening the log removes).
    pub(crate) fn delete(self) -> Result<(), StorageError> {
        let Segment {
            log_path,
            log,
            index,
            time_index,
            txn_index,
            ..
        } = self;
        drop(log);
        remove_if_exists(&log_path)?;
        remove_if_exists(index.path())?;
        remove_if_exists(time_index.path())?;
        remove_if_exists(txn_index.path())?;
        Ok(())
    }

    /// Removes the files of segment `base_offset` in `dir` without opening them.
    pub(crate) fn delete_files(dir: &Path, base_offset: i64) -> Result<(), StorageError> {
        for suffix in [
            LOG_SUFFIX,
            INDEX_SUFFIX,
            TIME_INDEX_SUFFIX,
            TXN_INDEX_SUFFIX,
        ] {
            remove_if_exists(&segment_path(dir, base_offset, suffix))?;
        }
        Ok(())
    }

    pub(crate) fn base_offset(&self) -> i64 {
        self.base_offset
    }

    pub(crate) fn size_bytes(&self) -> u64 {
        self.size_bytes
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.size_bytes == 0
    }

    pub(crate) fn next_offset(&self) -> i64 {
        self.next_offset
    }

    pub(crate) fn max_timestamp(&self) -> i64 {
        self.max_timestamp
    }

    pub(crate) fn offset_of_max_timestamp(&self) -> i64 {
        self.offset_of_max_timestamp
    }

    #[cfg(test)]
    pub(crate) fn is_dirty(&self) -> bool {
        self.dirty
    }

    pub(crate) fn offset_index(&self) -> &OffsetIndex {
        &self.index
    }

    pub(crate) fn time_index(&self) -> &TimeIndex {
        &self.time_index
    }

    /// Records an aborted transaction whose marker lies in this segment; one already held
    /// (its marker at or below the last entry's, e.g. re-found by a replay) is skipped.
    /// Returns whether it was added.
    pub(crate) fn append_aborted_txn(&mut self, txn: AbortedTxn) -> Result<bool, StorageError> {
        if txn.last_offset < self.base_offset || txn.last_offset >= self.next_offset {
            return Err(StorageError::InvalidRecord(format!(
                "aborted transaction {txn:?} does not end in segment [{}, {})",
                self.base_offset, self.next_offset
            )));
        }
        if self
            .txn_index
            .last_offset()
            .is_some_and(|last| last >= txn.last_offset)
        {
            return Ok(false);
        }
        self.txn_index
            .append(txn)
            .map_err(StorageError::InvalidRecord)?;
        self.dirty = true;
        Ok(true)
    }

    pub(crate) fn collect_aborted_txns(
        &self,
        fetch_offset: i64,
        upper_bound_offset: i64,
    ) -> TxnIndexSearchResult {
        self.txn_index
            .collect_aborted_txns(fetch_offset, upper_bound_offset)
    }

    pub(crate) fn log_path(&self) -> &Path {
        &self.log_path
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::testing::BatchSpec;

    fn noop(_: &BatchHeader) -> Result<(), StorageError> {
        Ok(())
    }

    /// Appends `count` batches of 2 records each with consecutive offsets and timestamps.
    fn fill(segment: &mut Segment, count: usize, index_interval_bytes: u32) -> Vec<Vec<u8>> {
        let mut written = Vec::new();
        for i in 0..count {
            let mut spec = BatchSpec::new(2, 1_000 + 10 * i as i64);
            spec.base_offset = segment.next_offset();
            let bytes = spec.build();
            let header = BatchHeader::parse(&bytes).unwrap();
            segment
                .append(&bytes, &[(header, 0..bytes.len())], index_interval_bytes)
                .unwrap();
            written.push(bytes);
        }
        written
    }

    #[test]
    fn file_names_parse_back() {
        let dir = Path::new("/d");
        assert_eq!(
            segment_path(dir, 42, LOG_SUFFIX),
            PathBuf::from("/d/00000000000000000042.log")
        );
        assert_eq!(
            parse_segment_file_name("00000000000000000042.log"),
            Some((42, LOG_SUFFIX))
        );
        assert_eq!(
            parse_segment_file_name("00000000000000000042.timeindex"),
            Some((42, TIME_INDEX_SUFFIX))
        );
        assert_eq!(parse_segment_file_name("42.log"), None);
        assert_eq!(parse_segment_file_name("leader-epoch-checkpoint"), None);
    }

    #[test]
    fn append_indexes_and_finds_batches() {
        let dir = tempfile::tempdir().unwrap();
        let mut segment = Segment::create(dir.path(), 100, 0).unwrap();
        let batches = fill(&mut segment, 10, 200);
        let batch_bytes = batches[0].len() as u64;
        assert_eq!(segment.next_offset(), 120);
        assert_eq!(segment.size_bytes(), 10 * batch_bytes);
        assert_eq!(segment.max_timestamp(), 1_091);
        assert_eq!(segment.offset_of_max_timestamp(), 119);
        assert!(!segment.offset_index().entries().is_empty());
        for offset in 100..120 {
            let (header, position) = segment.find_batch(offset).unwrap().unwrap();
            assert!(header.base_offset <= offset && offset <= header.last_offset());
            assert_eq!(position, (offset as u64 - 100) / 2 * batch_bytes);
        }
        assert!(segment.find_batch(120).unwrap().is_none());
        assert_eq!(
            segment.find_offset_by_timestamp(1_035, 0).unwrap(),
            Some((108, 1_040))
        );
        assert_eq!(
            segment.find_offset_by_timestamp(1_041, 0).unwrap(),
            Some((109, 1_041))
        );
        assert_eq!(
            segment.find_offset_by_timestamp(1_000, 105).unwrap(),
            Some((105, 1_021))
        );
        assert_eq!(segment.find_offset_by_timestamp(2_000, 0).unwrap(), None);
    }

    #[test]
    fn reload_matches_rebuild() {
        let dir = tempfile::tempdir().unwrap();
        let mut segment = Segment::create(dir.path(), 0, 0).unwrap();
        fill(&mut segment, 25, 150);
        segment.on_become_inactive().unwrap();
        let index = segment.offset_index().entries();
        let time_index = segment.time_index().entries();
        let (next, max_ts, size) = (
            segment.next_offset(),
            segment.max_timestamp(),
            segment.size_bytes(),
        );
        drop(segment);

        let (loaded, cut) = Segment::load(dir.path(), 0, 0, 150, &mut noop).unwrap();
        assert_eq!(cut, 0);
        assert_eq!(loaded.offset_index().entries(), index);
        assert_eq!(
            (
                loaded.next_offset(),
                loaded.max_timestamp(),
                loaded.size_bytes()
            ),
            (next, max_ts, size)
        );
        assert!(!loaded.is_dirty(), "fast load does not rewrite anything");
        drop(loaded);

        let (mut recovered, cut) =
            Segment::open_and_recover(dir.path(), 0, 0, 150, &mut noop).unwrap();
        assert_eq!(cut, 0);
        assert_eq!(recovered.offset_index().entries(), index);
        assert!(time_index.starts_with(&recovered.time_index().entries()));
        assert_eq!(
            time_index.last().map(|e| (e.timestamp, e.offset)),
            Some((1_241, 49))
        );
        assert_eq!(
            (recovered.next_offset(), recovered.max_timestamp()),
            (next, max_ts)
        );
        recovered.sync().unwrap();
    }

    #[test]
    fn indexes_reach_their_files_only_on_sync() {
        let dir = tempfile::tempdir().unwrap();
        let index_path = segment_path(dir.path(), 0, INDEX_SUFFIX);
        let time_index_path = segment_path(dir.path(), 0, TIME_INDEX_SUFFIX);
        fs::write(&index_path, [7u8; 24]).unwrap();
        let mut segment = Segment::create(dir.path(), 0, 0).unwrap();
        assert!(
            !index_path.exists(),
            "a new segment drops stale index files"
        );
        fill(&mut segment, 10, 100);
        let entries = segment.offset_index().entries().len() as u64;
        assert!(entries > 2);
        assert!(!index_path.exists() && !time_index_path.exists());
        segment.sync().unwrap();
        let file_len = |p: &Path| fs::metadata(p).unwrap().len();
        assert_eq!(file_len(&index_path), entries * 8);
        assert_eq!(
            file_len(&time_index_path),
            segment.time_index().entries().len() as u64 * 12
        );

        segment.truncate_to(9).unwrap();
        let kept = segment.offset_index().entries().len() as u64;
        assert!(kept < entries);
        assert_eq!(file_len(&index_path), entries * 8, "cut at the next sync");
        fill(&mut segment, 3, 100);
        segment.sync().unwrap();
        let index = segment.offset_index().entries();
        let time_index = segment.time_index().entries();
        assert_eq!(file_len(&index_path), index.len() as u64 * 8);
        drop(segment);

        let (loaded, cut) = Segment::load(dir.path(), 0, 0, 100, &mut noop).unwrap();
        assert_eq!(cut, 0);
        assert!(!loaded.is_dirty(), "the flushed indexes match the log");
        assert_eq!(loaded.offset_index().entries(), index);
        assert_eq!(loaded.time_index().entries(), time_index);
    }

    #[test]
    fn unflushed_indexes_are_rebuilt_by_recovery() {
        let dir = tempfile::tempdir().unwrap();
        let mut segment = Segment::create(dir.path(), 0, 0).unwrap();
        fill(&mut segment, 5, 100);
        segment.sync().unwrap();
        fill(&mut segment, 10, 100);
        let index = segment.offset_index().entries();
        let next_offset = segment.next_offset();
        drop(segment); // a crash: the last ten batches' index entries never reached the files

        let (recovered, cut) = Segment::open_and_recover(dir.path(), 0, 0, 100, &mut noop).unwrap();
        assert_eq!(cut, 0);
        assert_eq!(recovered.offset_index().entries(), index);
        assert_eq!(recovered.next_offset(), next_offset);
        for offset in 0..next_offset {
            assert!(recovered.find_batch(offset).unwrap().is_some());
        }
    }

    #[test]
    fn truncate_drops_whole_batches() {
        let dir = tempfile::tempdir().unwrap();
        let mut segment = Segment::create(dir.path(), 0, 0).unwrap();
        let batches = fill(&mut segment, 10, 100);
        let removed = segment.truncate_to(9).unwrap();
        assert_eq!(segment.next_offset(), 8, "offset 9 sits in batch 8..=9");
        assert_eq!(removed, 6 * batches[0].len() as u64);
        assert_eq!(segment.max_timestamp(), 1_031);
        assert_eq!(segment.offset_of_max_timestamp(), 7);
        assert!(segment
            .offset_index()
            .entries()
            .iter()
            .all(|e| e.offset < 8));
        assert!(segment.time_index().entries().iter().all(|e| e.offset < 8));
        assert_eq!(segment.truncate_to(8).unwrap(), 0);
        segment.truncate_to(0).unwrap();
        assert!(segment.is_empty());
        assert_eq!(segment.next_offset(), 0);
        assert_eq!(segment.max_timestamp(), NO_TIMESTAMP);
    }
}
