//! The v2 record batch format, kept as bytes.
//!
//! A batch is a 61-byte header followed by its records:
//!
//! ```text
//! offset  size  field
//!      0     8  base_offset              \ not covered by the CRC: the log patches
//!      8     4  batch_length              | base_offset and partition_leader_epoch
//!     12     4  partition_leader_epoch   /  in place
//!     16     1  magic (2)
//!     17     4  crc (CRC-32C of bytes 21..end)
//!     21     2  attributes
//!     23     4  last_offset_delta
//!     27     8  base_timestamp
//!     35     8  max_timestamp
//!     43     8  producer_id
//!     51     2  producer_epoch
//!     53     4  base_sequence
//!     57     4  records_count
//! ```
//!
//! All integers are big-endian. `batch_length` counts the bytes after itself, so a batch
//! occupies `batch_length + 12` bytes.

use std::ops::Range;

use crate::config::TimestampType;
use crate::error::StorageError;

/// Size of the v2 batch header: the smallest possible batch.
pub const RECORD_BATCH_OVERHEAD: usize = 61;
/// Bytes before the `batch_length` count starts (base offset + the length itself).
pub const LOG_OVERHEAD: usize = 12;
/// The only record batch format the log accepts.
pub const MAGIC_V2: i8 = 2;
/// `partition_leader_epoch`, `base_sequence` and friends use -1 for "none".
pub const NO_PARTITION_LEADER_EPOCH: i32 = -1;
/// `max_timestamp` of a batch without timestamps.
pub const NO_TIMESTAMP: i64 = -1;
/// `base_sequence` of a batch from a non-idempotent producer.
pub const NO_SEQUENCE: i32 = -1;

pub(crate) const BASE_OFFSET_OFFSET: usize = 0;
pub(crate) const BATCH_LENGTH_OFFSET: usize = 8;
pub(crate) const PARTITION_LEADER_EPOCH_OFFSET: usize = 12;
pub(crate) const MAGIC_OFFSET: usize = 16;
pub(crate) const CRC_OFFSET: usize = 17;
pub(crate) const ATTRIBUTES_OFFSET: usize = 21;
const LAST_OFFSET_DELTA_OFFSET: usize = 23;
const BASE_TIMESTAMP_OFFSET: usize = 27;
pub(crate) const MAX_TIMESTAMP_OFFSET: usize = 35;
const PRODUCER_ID_OFFSET: usize = 43;
const PRODUCER_EPOCH_OFFSET: usize = 51;
const BASE_SEQUENCE_OFFSET: usize = 53;
const RECORDS_COUNT_OFFSET: usize = 57;

const COMPRESSION_CODEC_MASK: i16 = 0x07;
const TIMESTAMP_TYPE_MASK: i16 = 0x08;
const TRANSACTIONAL_FLAG_MASK: i16 = 0x10;
const CONTROL_FLAG_MASK: i16 = 0x20;

/// Parsed v2 record batch header (the 61 bytes before the records).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records_count: i32,
}

fn i16_at(buf: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([buf[at], buf[at + 1]])
}

fn i32_at(buf: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(buf[at..at + 4].try_into().expect("4 bytes"))
}

fn u32_at(buf: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(buf[at..at + 4].try_into().expect("4 bytes"))
}

fn i64_at(buf: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(buf[at..at + 8].try_into().expect("8 bytes"))
}

impl BatchHeader {
    /// Parses the header at the start of `buf`.
    ///
    /// Needs at least 61 bytes; the magic must be 2 (`InvalidRecord` otherwise) and
    /// `batch_length` must cover at least a header (`CorruptRecord` otherwise). Neither the CRC
    /// nor the presence of the whole batch is checked here: see [`verify_crc`] and [`batches`].
    pub fn parse(buf: &[u8]) -> Result<BatchHeader, StorageError> {
        if buf.len() < RECORD_BATCH_OVERHEAD {
            return Err(StorageError::corrupt(format!(
                "{} bytes is shorter than a batch header ({RECORD_BATCH_OVERHEAD})",
                buf.len()
            )));
        }
        let magic = buf[MAGIC_OFFSET] as i8;
        if magic != MAGIC_V2 {
            return Err(StorageError::invalid(format!(
                "record batch magic {magic}, only v2 is supported"
            )));
        }
        let batch_length = i32_at(buf, BATCH_LENGTH_OFFSET);
        if (batch_length as i64) < (RECORD_BATCH_OVERHEAD - LOG_OVERHEAD) as i64 {
            return Err(StorageError::corrupt(format!(
                "batch length {batch_length} is smaller than a batch header"
            )));
        }
        Ok(BatchHeader {
            base_offset: i64_at(buf, BASE_OFFSET_OFFSET),
            batch_length,
            partition_leader_epoch: i32_at(buf, PARTITION_LEADER_EPOCH_OFFSET),
            magic,
            crc: u32_at(buf, CRC_OFFSET),
            attributes: i16_at(buf, ATTRIBUTES_OFFSET),
            last_offset_delta: i32_at(buf, LAST_OFFSET_DELTA_OFFSET),
            base_timestamp: i64_at(buf, BASE_TIMESTAMP_OFFSET),
            max_timestamp: i64_at(buf, MAX_TIMESTAMP_OFFSET),
            producer_id: i64_at(buf, PRODUCER_ID_OFFSET),
            producer_epoch: i16_at(buf, PRODUCER_EPOCH_OFFSET),
            base_sequence: i32_at(buf, BASE_SEQUENCE_OFFSET),
            records_count: i32_at(buf, RECORDS_COUNT_OFFSET),
        })
    }

    /// Bytes the whole batch occupies: `batch_length + 12`.
    pub fn total_size(&self) -> usize {
        self.batch_length as usize + LOG_OVERHEAD
    }

    /// Offset of the last record: `base_offset + last_offset_delta`.
    pub fn last_offset(&self) -> i64 {
        self.base_offset + self.last_offset_delta as i64
    }

    /// The offset after this batch.
    pub fn next_offset(&self) -> i64 {
        self.last_offset() + 1
    }

    /// Compression codec: 0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd.
    pub fn compression(&self) -> u8 {
        (self.attributes & COMPRESSION_CODEC_MASK) as u8
    }

    /// Whether `max_timestamp` is the broker's append time.
    pub fn is_log_append_time(&self) -> bool {
        self.attributes & TIMESTAMP_TYPE_MASK != 0
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_FLAG_MASK != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_FLAG_MASK != 0
    }

    /// Sequence number of the last record, wrapping past `i32::MAX` to 0 like Kafka's
    /// `DefaultRecordBatch.lastSequence`.
    pub fn last_sequence(&self) -> i32 {
        if self.base_sequence == NO_SEQUENCE {
            return NO_SEQUENCE;
        }
        increment_sequence(self.base_sequence, self.last_offset_delta)
    }

    pub fn has_producer_id(&self) -> bool {
        self.producer_id >= 0
    }
}

/// Kafka's `DefaultRecordBatch.incrementSequence`.
fn increment_sequence(sequence: i32, increment: i32) -> i32 {
    if sequence > i32::MAX - increment {
        increment - (i32::MAX - sequence) - 1
    } else {
        sequence + increment
    }
}

/// CRC-32C of the bytes the batch CRC covers (attributes to the end).
fn compute_crc(batch: &[u8]) -> u32 {
    crc32c::crc32c(&batch[ATTRIBUTES_OFFSET..])
}

/// Checks the CRC-32C of one whole batch (bytes from attributes to the end).
pub fn verify_crc(batch: &[u8]) -> Result<(), StorageError> {
    if batch.len() < RECORD_BATCH_OVERHEAD {
        return Err(StorageError::corrupt(format!(
            "{} bytes is shorter than a batch header",
            batch.len()
        )));
    }
    let stored = u32_at(batch, CRC_OFFSET);
    let computed = compute_crc(batch);
    if stored != computed {
        return Err(StorageError::corrupt(format!(
            "batch CRC {stored:#010x} does not match computed {computed:#010x}"
        )));
    }
    Ok(())
}

/// Splits a buffer of concatenated batches; errors on a partial/invalid batch.
///
/// Each item is a parsed header and the byte range of its whole batch in `buf`. The iterator
/// ends after the first error. CRCs are not checked (see [`verify_crc`]).
pub fn batches(
    buf: &[u8],
) -> impl Iterator<Item = Result<(BatchHeader, Range<usize>), StorageError>> + '_ {
    let mut position = 0usize;
    let mut failed = false;
    std::iter::from_fn(move || {
        if failed || position >= buf.len() {
            return None;
        }
        let item = BatchHeader::parse(&buf[position..]).and_then(|header| {
            let end = position + header.total_size();
            if end > buf.len() {
                return Err(StorageError::corrupt(format!(
                    "partial batch at byte {position}: needs {} bytes, {} remain",
                    header.total_size(),
                    buf.len() - position
                )));
            }
            Ok((header, position..end))
        });
        match &item {
            Ok((_, range)) => position = range.end,
            Err(_) => failed = true,
        }
        Some(item)
    })
}

/// Overwrites `base_offset` (not covered by the CRC).
pub(crate) fn set_base_offset(batch: &mut [u8], base_offset: i64) {
    batch[BASE_OFFSET_OFFSET..BASE_OFFSET_OFFSET + 8].copy_from_slice(&base_offset.to_be_bytes());
}

/// Overwrites `partition_leader_epoch` (not covered by the CRC).
pub(crate) fn set_partition_leader_epoch(batch: &mut [u8], epoch: i32) {
    batch[PARTITION_LEADER_EPOCH_OFFSET..PARTITION_LEADER_EPOCH_OFFSET + 4]
        .copy_from_slice(&epoch.to_be_bytes());
}

/// Sets the batch's timestamp type and `max_timestamp` and recomputes the CRC, both being
/// covered by it (Kafka's `DefaultRecordBatch.setMaxTimestamp`). Leaves the bytes untouched
/// when they already say exactly that.
pub(crate) fn set_max_timestamp(
    batch: &mut [u8],
    timestamp_type: TimestampType,
    max_timestamp: i64,
) {
    let attributes = i16_at(batch, ATTRIBUTES_OFFSET);
    let new_attributes = match timestamp_type {
        TimestampType::LogAppendTime => attributes | TIMESTAMP_TYPE_MASK,
        TimestampType::CreateTime => attributes & !TIMESTAMP_TYPE_MASK,
    };
    if new_attributes == attributes && i64_at(batch, MAX_TIMESTAMP_OFFSET) == max_timestamp {
        return;
    }
    batch[ATTRIBUTES_OFFSET..ATTRIBUTES_OFFSET + 2].copy_from_slice(&new_attributes.to_be_bytes());
    batch[MAX_TIMESTAMP_OFFSET..MAX_TIMESTAMP_OFFSET + 8]
        .copy_from_slice(&max_timestamp.to_be_bytes());
    let crc = compute_crc(batch);
    batch[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
}

/// Marks the batch as LogAppendTime with `max_timestamp = append_time_ms`.
pub(crate) fn set_log_append_time(batch: &mut [u8], append_time_ms: i64) {
    set_max_timestamp(batch, TimestampType::LogAppendTime, append_time_ms);
}

/// Reads a zigzag varint of at most `max_bytes` bytes from `buf[*at..]`.
fn read_varlong(buf: &[u8], at: &mut usize, max_bytes: usize) -> Result<i64, StorageError> {
    let mut value: u64 = 0;
    for i in 0..max_bytes {
        let Some(&byte) = buf.get(*at) else {
            return Err(StorageError::corrupt("record varint runs past the batch"));
        };
        *at += 1;
        value |= ((byte & 0x7f) as u64) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(((value >> 1) as i64) ^ -((value & 1) as i64));
        }
    }
    Err(StorageError::corrupt("record varint is too long"))
}

/// (offset, timestamp) of every record of one uncompressed batch, decoding only each record's
/// length, timestamp delta and offset delta. With LogAppendTime every record carries the
/// batch's `max_timestamp`, as Kafka's readers see it.
pub(crate) fn record_offsets_and_timestamps(batch: &[u8]) -> Result<Vec<(i64, i64)>, StorageError> {
    let header = BatchHeader::parse(batch)?;
    assert_eq!(
        header.compression(),
        0,
        "records of a compressed batch are not decoded"
    );
    if batch.len() != header.total_size() {
        return Err(StorageError::corrupt(
            "record decode needs exactly one whole batch",
        ));
    }
    let count = header.records_count.max(0) as usize;
    let mut records = Vec::with_capacity(count.min(batch.len() / 7));
    let mut at = RECORD_BATCH_OVERHEAD;
    for _ in 0..count {
        let length = read_varlong(batch, &mut at, 5)?;
        let body_start = at;
        if length < 0 || body_start + length as usize > batch.len() {
            return Err(StorageError::corrupt(format!(
                "record length {length} runs past the batch"
            )));
        }
        let mut field = body_start + 1; // attributes
        let timestamp_delta = read_varlong(batch, &mut field, 10)?;
        let offset_delta = read_varlong(batch, &mut field, 5)?;
        if field > body_start + length as usize {
            return Err(StorageError::corrupt(
                "record fields run past the record length",
            ));
        }
        let timestamp = if header.is_log_append_time() {
            header.max_timestamp
        } else {
            header.base_timestamp.wrapping_add(timestamp_delta)
        };
        records.push((header.base_offset + offset_delta, timestamp));
        at = body_start + length as usize;
    }
    Ok(records)
}

#[cfg(test)]
pub(crate) mod testing {
    //! Builds valid uncompressed v2 batches for tests.

    use super::*;

    fn put_varlong(out: &mut Vec<u8>, value: i64) {
        let mut v = ((value << 1) ^ (value >> 63)) as u64;
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    /// What goes into a test batch.
    #[derive(Clone, Debug)]
    pub(crate) struct BatchSpec {
        pub base_offset: i64,
        pub partition_leader_epoch: i32,
        pub base_timestamp: i64,
        /// Timestamp of record `i` is `base_timestamp + timestamps_delta_ms[i]`.
        pub timestamp_deltas_ms: Vec<i64>,
        pub value_bytes: usize,
        pub producer_id: i64,
        pub producer_epoch: i16,
        pub base_sequence: i32,
        pub attributes: i16,
    }

    impl BatchSpec {
        pub(crate) fn new(records: usize, base_timestamp: i64) -> BatchSpec {
            BatchSpec {
                base_offset: 0,
                partition_leader_epoch: NO_PARTITION_LEADER_EPOCH,
                base_timestamp,
                timestamp_deltas_ms: (0..records as i64).collect(),
                value_bytes: 10,
                producer_id: -1,
                producer_epoch: -1,
                base_sequence: NO_SEQUENCE,
                attributes: 0,
            }
        }

        pub(crate) fn build(&self) -> Vec<u8> {
            let mut records = Vec::new();
            for (i, delta) in self.timestamp_deltas_ms.iter().enumerate() {
                let mut body = vec![0u8]; // attributes
                put_varlong(&mut body, *delta);
                put_varlong(&mut body, i as i64);
                put_varlong(&mut body, -1); // null key
                let value: Vec<u8> = (0..self.value_bytes).map(|b| (b + i) as u8).collect();
                put_varlong(&mut body, value.len() as i64);
                body.extend_from_slice(&value);
                put_varlong(&mut body, 0); // no headers
                put_varlong(&mut records, body.len() as i64);
                records.extend_from_slice(&body);
            }
            let count = self.timestamp_deltas_ms.len() as i32;
            let max_delta = self.timestamp_deltas_ms.iter().copied().max().unwrap_or(0);
            let mut batch = Vec::with_capacity(RECORD_BATCH_OVERHEAD + records.len());
            batch.extend_from_slice(&self.base_offset.to_be_bytes());
            let batch_length = (RECORD_BATCH_OVERHEAD - LOG_OVERHEAD + records.len()) as i32;
            batch.extend_from_slice(&batch_length.to_be_bytes());
            batch.extend_from_slice(&self.partition_leader_epoch.to_be_bytes());
            batch.push(MAGIC_V2 as u8);
            batch.extend_from_slice(&[0; 4]); // crc
            batch.extend_from_slice(&self.attributes.to_be_bytes());
            batch.extend_from_slice(&(count - 1).to_be_bytes());
            batch.extend_from_slice(&self.base_timestamp.to_be_bytes());
            batch.extend_from_slice(&(self.base_timestamp + max_delta).to_be_bytes());
            batch.extend_from_slice(&self.producer_id.to_be_bytes());
            batch.extend_from_slice(&self.producer_epoch.to_be_bytes());
            batch.extend_from_slice(&self.base_sequence.to_be_bytes());
            batch.extend_from_slice(&count.to_be_bytes());
            batch.extend_from_slice(&records);
            let crc = compute_crc(&batch);
            batch[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
            batch
        }
    }

    /// An uncompressed batch of `records` records with timestamps `base_timestamp + i`.
    pub(crate) fn batch(records: usize, base_timestamp: i64) -> Vec<u8> {
        BatchSpec::new(records, base_timestamp).build()
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;

    #[test]
    fn parses_a_built_batch() {
        let mut spec = BatchSpec::new(3, 1_000);
        spec.producer_id = 7;
        spec.producer_epoch = 2;
        spec.base_sequence = 10;
        let bytes = spec.build();
        let header = BatchHeader::parse(&bytes).unwrap();
        assert_eq!(header.base_offset, 0);
        assert_eq!(header.total_size(), bytes.len());
        assert_eq!(header.magic, 2);
        assert_eq!(header.last_offset_delta, 2);
        assert_eq!(header.records_count, 3);
        assert_eq!(header.base_timestamp, 1_000);
        assert_eq!(header.max_timestamp, 1_002);
        assert_eq!(header.last_offset(), 2);
        assert_eq!(header.next_offset(), 3);
        assert_eq!(header.compression(), 0);
        assert!(!header.is_transactional());
        assert!(!header.is_control());
        assert!(header.has_producer_id());
        assert_eq!(header.last_sequence(), 12);
        verify_crc(&bytes).unwrap();
    }

    #[test]
    fn last_sequence_wraps_like_kafka() {
        let mut header = BatchHeader::parse(&batch(5, 0)).unwrap();
        header.base_sequence = i32::MAX - 1;
        header.last_offset_delta = 4;
        assert_eq!(header.last_sequence(), 2);
        header.base_sequence = NO_SEQUENCE;
        assert_eq!(header.last_sequence(), NO_SEQUENCE);
    }

    #[test]
    fn rejects_short_buffers_other_magic_and_bad_length() {
        let bytes = batch(1, 0);
        assert!(matches!(
            BatchHeader::parse(&bytes[..60]),
            Err(StorageError::CorruptRecord(_))
        ));
        let mut v1 = bytes.clone();
        v1[MAGIC_OFFSET] = 1;
        assert!(matches!(
            BatchHeader::parse(&v1),
            Err(StorageError::InvalidRecord(_))
        ));
        let mut short = bytes.clone();
        short[BATCH_LENGTH_OFFSET..BATCH_LENGTH_OFFSET + 4].copy_from_slice(&48i32.to_be_bytes());
        assert!(matches!(
            BatchHeader::parse(&short),
            Err(StorageError::CorruptRecord(_))
        ));
        let mut negative = bytes;
        negative[BATCH_LENGTH_OFFSET..BATCH_LENGTH_OFFSET + 4]
            .copy_from_slice(&(-5i32).to_be_bytes());
        assert!(matches!(
            BatchHeader::parse(&negative),
            Err(StorageError::CorruptRecord(_))
        ));
    }

    #[test]
    fn crc_detects_flips_only_in_covered_bytes() {
        let bytes = batch(2, 5);
        for i in 0..bytes.len() {
            let mut flipped = bytes.clone();
            flipped[i] ^= 0x01;
            let covered = i >= ATTRIBUTES_OFFSET || (CRC_OFFSET..CRC_OFFSET + 4).contains(&i);
            assert_eq!(verify_crc(&flipped).is_err(), covered, "byte {i}");
        }
    }

    #[test]
    fn patching_offset_and_epoch_keeps_crc_valid() {
        let mut bytes = batch(4, 0);
        set_base_offset(&mut bytes, 1234);
        set_partition_leader_epoch(&mut bytes, 9);
        verify_crc(&bytes).unwrap();
        let header = BatchHeader::parse(&bytes).unwrap();
        assert_eq!(header.base_offset, 1234);
        assert_eq!(header.partition_leader_epoch, 9);
    }

    #[test]
    fn log_append_time_recomputes_crc() {
        let mut bytes = batch(3, 100);
        let before = BatchHeader::parse(&bytes).unwrap();
        set_log_append_time(&mut bytes, 5_000);
        verify_crc(&bytes).unwrap();
        let after = BatchHeader::parse(&bytes).unwrap();
        assert!(after.is_log_append_time());
        assert_eq!(after.max_timestamp, 5_000);
        assert_ne!(after.crc, before.crc);
        assert_eq!(after.base_timestamp, before.base_timestamp);
        let records = record_offsets_and_timestamps(&bytes).unwrap();
        assert!(records.iter().all(|&(_, ts)| ts == 5_000));
    }

    #[test]
    fn splits_concatenated_batches_and_reports_partial_tail() {
        let first = batch(2, 0);
        let second = batch(3, 0);
        let mut buf = first.clone();
        buf.extend_from_slice(&second);
        let parts: Vec<_> = batches(&buf).collect::<Result<_, _>>().unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].1, 0..first.len());
        assert_eq!(parts[1].1, first.len()..buf.len());
        assert_eq!(parts[1].0.records_count, 3);

        let cut = &buf[..buf.len() - 1];
        let items: Vec<_> = batches(cut).collect();
        assert_eq!(items.len(), 2);
        assert!(items[0].is_ok());
        assert!(matches!(items[1], Err(StorageError::CorruptRecord(_))));
        assert_eq!(batches(&[]).count(), 0);
    }

    #[test]
    fn decodes_record_offsets_and_timestamps() {
        let mut spec = BatchSpec::new(3, 1_000);
        spec.timestamp_deltas_ms = vec![5, 0, 300];
        spec.base_offset = 40;
        let bytes = spec.build();
        assert_eq!(
            record_offsets_and_timestamps(&bytes).unwrap(),
            vec![(40, 1_005), (41, 1_000), (42, 1_300)]
        );
    }
}
