//! Kafka's `LogValidator` for a leader append: the checks a producer's batch must pass before
//! it is given offsets, down to every record, compressed batches included.
//!
//! Order and errors follow Kafka (`UnifiedLog.analyzeAndValidateRecords`, then
//! `LogValidator.validateBatch`, `validateRecord` and `processRecordErrors`):
//!
//! 1. framing: one whole v2 batch; a client's base offset is 0 (INVALID_RECORD);
//! 2. size: at most `max.message.bytes` (MESSAGE_TOO_LARGE); CRC-32C (CORRUPT_MESSAGE);
//! 3. batch rules for clients (INVALID_RECORD): offset range and record count agree, no
//!    control batch, an idempotent batch carries a sequence;
//! 4. records, walked one by one (decompressed as a stream when compressed): exactly the
//!    claimed count with offset deltas 0, 1, 2, ... and nothing after them (INVALID_RECORD);
//!    per record, a key on compacted topics (INVALID_RECORD) and, with CreateTime, a timestamp
//!    within `message.timestamp.before.max.ms` / `.after.max.ms` of the broker's clock
//!    (INVALID_TIMESTAMP). Per-record failures are collected with their index in the batch
//!    (KIP-467 `record_errors`) and reject the batch once all records are seen;
//! 5. the batch fits a segment (`segment.bytes`, RECORD_LIST_TOO_LARGE).
//!
//! Uncompressed batches are walked in place, without a copy. A compressed batch is streamed
//! through its codec with a fixed-size buffer: records are parsed as they come out and their
//! keys, values and headers skipped, so memory stays bounded whatever the payload claims, and
//! the inflated bytes are capped at [`INFLATION_FACTOR_MAX`] x `max.message.bytes`
//! (MESSAGE_TOO_LARGE past it), which bounds the time a small decompression bomb can cost.
//!
//! The batch stays as the client sent it. The one rewrite is Kafka's `setMaxTimestamp` with
//! CreateTime: when the header's `max_timestamp` or timestamp type disagrees with its records,
//! [`ValidatedBatch::apply`] sets them and recomputes the CRC. LogAppendTime is written by the
//! log itself ([`crate::Log::append_as_leader`]).

use std::io::{self, BufRead, BufReader, Read};

use crate::batch::{self, BatchHeader, NO_TIMESTAMP, RECORD_BATCH_OVERHEAD};
use crate::config::TimestampType;
use crate::error::StorageError;

/// How many times `max.message.bytes` the records of one compressed batch may inflate to.
/// Kafka sets no bound (it streams); this one keeps the time a decompression bomb costs in
/// proportion to the bytes a batch may have. Producers compress batches of at most
/// `max.message.bytes` uncompressed (librdkafka) or split a batch refused with
/// MESSAGE_TOO_LARGE (the Java producer), so real batches stay far below it.
pub const INFLATION_FACTOR_MAX: u64 = 64;

/// Record errors kept per batch for the response: a compressed batch may hold millions of
/// records, and each error carries a message. The count in the top-level message stays exact.
pub const RECORD_ERRORS_MAX: usize = 1_000;

/// Read-ahead of the decompressing stream.
const STREAM_BUFFER_BYTES: usize = 16 * 1024;

/// Who appends the batch (Kafka's `AppendOrigin`). Client-only rules do not apply to batches
/// the broker's own coordinators write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppendOrigin {
    /// A producer's Produce request.
    Client,
    /// A coordinator of this broker (group offsets).
    Coordinator,
}

/// What the validator needs from the partition's configs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidatorConfig {
    /// `max.message.bytes`: the largest batch accepted.
    pub max_message_bytes: u32,
    /// `segment.bytes`: a batch must fit one segment.
    pub segment_bytes: u64,
    /// `message.timestamp.type`.
    pub timestamp_type: TimestampType,
    /// `message.timestamp.before.max.ms`: how far a CreateTime timestamp may lag the clock.
    pub timestamp_before_max_ms: i64,
    /// `message.timestamp.after.max.ms`: how far a CreateTime timestamp may lead the clock.
    pub timestamp_after_max_ms: i64,
    /// `cleanup.policy` includes `compact`: every record needs a key.
    pub compacted: bool,
    pub origin: AppendOrigin,
}

impl ValidatorConfig {
    /// The most bytes the records of one compressed batch may inflate to.
    pub fn inflated_bytes_max(&self) -> u64 {
        (self.max_message_bytes as u64).saturating_mul(INFLATION_FACTOR_MAX)
    }
}

/// One record's failure (Kafka's `ProduceResponse.RecordError`, KIP-467).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordError {
    /// Index of the record within its batch.
    pub batch_index: i32,
    pub message: String,
}

/// Which Kafka error a batch with record errors gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordErrorsKind {
    /// INVALID_RECORD.
    InvalidRecord,
    /// INVALID_TIMESTAMP: at least one record's timestamp was refused.
    InvalidTimestamp,
}

/// Why a batch was refused. Each variant maps to one Kafka error code at the broker's edge.
#[derive(Debug, thiserror::Error)]
pub enum ValidationError {
    /// A batch-level refusal: `CorruptRecord` (CORRUPT_MESSAGE), `InvalidRecord`
    /// (INVALID_RECORD) or `RecordTooLarge` (MESSAGE_TOO_LARGE).
    #[error(transparent)]
    Batch(#[from] StorageError),
    /// The records of a compressed batch inflate past [`ValidatorConfig::inflated_bytes_max`]
    /// (MESSAGE_TOO_LARGE).
    #[error("the records of the batch inflate to more than {max} bytes ({INFLATION_FACTOR_MAX} x max.message.bytes)")]
    InflatedTooLarge {
        /// The bound that was passed.
        max: u64,
    },
    /// The batch is larger than a segment (RECORD_LIST_TOO_LARGE).
    #[error("Message batch size is {size} bytes which exceeds the maximum configured segment size of {segment_bytes}.")]
    RecordListTooLarge { size: usize, segment_bytes: u64 },
    /// A transactional batch with no transaction ongoing for its producer (INVALID_TXN_STATE).
    #[error("Record was not part of an ongoing transaction")]
    InvalidTxnState,
    /// Kafka's `RecordValidationException`: records that failed, each with its index.
    #[error("{message}")]
    Records {
        kind: RecordErrorsKind,
        /// The top-level `error_message`.
        message: String,
        /// At most [`RECORD_ERRORS_MAX`] of them.
        record_errors: Vec<RecordError>,
    },
}

fn invalid(message: impl Into<String>) -> ValidationError {
    ValidationError::Batch(StorageError::InvalidRecord(message.into()))
}

const PREMATURE_EOF: &str = "Incorrect declared batch size, premature EOF reached";

/// Kafka's `RecordValidationStats`: what validating the batch cost beyond the batch itself.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecordValidationStats {
    /// Bytes decompressed to walk the records (0 for an uncompressed batch, walked in place).
    /// Only a bounded buffer of them is in memory at a time.
    pub temporary_memory_bytes: u64,
}

/// A batch that passed validation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidatedBatch {
    /// The header as the client sent it.
    pub header: BatchHeader,
    /// The largest record timestamp (`NO_TIMESTAMP` when none is larger than -1).
    pub max_timestamp: i64,
    /// Offset delta of the first record carrying `max_timestamp` (-1 without one).
    pub offset_delta_of_max_timestamp: i32,
    pub stats: RecordValidationStats,
    /// The header must be set to CreateTime with `max_timestamp` (the client's disagrees).
    rewrite_max_timestamp: bool,
}

impl ValidatedBatch {
    /// Brings the header in line with the records, as Kafka's `setMaxTimestamp`: with
    /// CreateTime, `max_timestamp` becomes the largest record timestamp and the timestamp
    /// type CreateTime, the CRC recomputed. A no-op for a client that set them right.
    pub fn apply(&self, batch: &mut [u8]) {
        debug_assert_eq!(BatchHeader::parse(batch).ok(), Some(self.header));
        if self.rewrite_max_timestamp {
            batch::set_max_timestamp(batch, TimestampType::CreateTime, self.max_timestamp);
        }
    }

    /// Whether [`apply`](Self::apply) changes the bytes.
    pub fn rewrites_header(&self) -> bool {
        self.rewrite_max_timestamp
    }
}

/// Validates one whole v2 batch for a leader append at broker time `now_ms`.
pub fn validate(
    records: &[u8],
    config: &ValidatorConfig,
    now_ms: i64,
) -> Result<ValidatedBatch, ValidationError> {
    let header = BatchHeader::parse(records)?;
    if records.len() != header.total_size() {
        return Err(StorageError::CorruptRecord(format!(
            "the batch claims {} bytes, {} were sent",
            header.total_size(),
            records.len()
        ))
        .into());
    }
    let client = config.origin == AppendOrigin::Client;
    if client && header.base_offset != 0 {
        return Err(invalid(format!(
            "The baseOffset of the record batch in the append should be 0, but it is {}",
            header.base_offset
        )));
    }
    if records.len() > config.max_message_bytes as usize {
        return Err(StorageError::RecordTooLarge {
            size: records.len(),
            max: config.max_message_bytes,
        }
        .into());
    }
    batch::verify_crc(records)?;
    if client {
        validate_batch(&header)?;
    }
    if header.records_count < 0 {
        return Err(invalid(format!(
            "Found invalid record count {} in magic v2 batch",
            header.records_count
        )));
    }
    let body = &records[RECORD_BATCH_OVERHEAD..];
    let mut walk = RecordWalk::new(&header, config, now_ms);
    let temporary_memory_bytes = match header.compression() {
        0 => {
            let mut source = SliceSource { buf: body, at: 0 };
            walk.run(&mut source)?;
            0
        }
        1 => {
            let decoder = flate2::bufread::MultiGzDecoder::new(body);
            walk.run_stream(decoder, config.inflated_bytes_max())?
        }
        2 => walk.run_stream(
            SnappyDecoder::new(body, config.inflated_bytes_max()),
            config.inflated_bytes_max(),
        )?,
        3 => {
            let decoder = lz4::Decoder::new(body).map_err(decompress_error)?;
            let mut source = StreamSource::new(decoder, config.inflated_bytes_max());
            walk.run(&mut source)?;
            // A frame cut before its end mark reads like a clean end; the decoder knows.
            let (_, finished) = source.reader.into_inner().finish();
            finished.map_err(|_| invalid(PREMATURE_EOF))?;
            source.consumed
        }
        4 => {
            let decoder =
                zstd::stream::read::Decoder::with_buffer(body).map_err(decompress_error)?;
            walk.run_stream(decoder, config.inflated_bytes_max())?
        }
        codec => {
            return Err(invalid(format!("Unknown compression type id {codec}")));
        }
    };
    walk.finish()?;
    if records.len() as u64 > config.segment_bytes {
        return Err(ValidationError::RecordListTooLarge {
            size: records.len(),
            segment_bytes: config.segment_bytes,
        });
    }
    let rewrite_max_timestamp = config.timestamp_type == TimestampType::CreateTime
        && (header.is_log_append_time() || header.max_timestamp != walk.max_timestamp);
    Ok(ValidatedBatch {
        header,
        max_timestamp: walk.max_timestamp,
        offset_delta_of_max_timestamp: walk.offset_delta_of_max_timestamp,
        stats: RecordValidationStats {
            temporary_memory_bytes,
        },
        rewrite_max_timestamp,
    })
}

/// A transactional batch may only be appended inside a transaction its producer has going
/// (Kafka's `UnifiedLog.analyzeAndValidateProducerState`, run after the duplicate check). The
/// caller knows whether one is: the partition's producer state.
pub fn verify_transaction_state(
    header: &BatchHeader,
    origin: AppendOrigin,
    has_ongoing_transaction: bool,
) -> Result<(), ValidationError> {
    if origin == AppendOrigin::Client && header.is_transactional() && !has_ongoing_transaction {
        return Err(ValidationError::InvalidTxnState);
    }
    Ok(())
}

/// Kafka's `validateBatch` for a client's v2 batch.
fn validate_batch(header: &BatchHeader) -> Result<(), ValidationError> {
    let count_from_offsets = header.last_offset_delta as i64 + 1;
    if count_from_offsets <= 0 {
        return Err(invalid(format!(
            "Batch has an invalid offset range: [{}, {}]",
            header.base_offset,
            header.last_offset()
        )));
    }
    let count = header.records_count as i64;
    if count <= 0 {
        return Err(invalid(format!(
            "Invalid reported count for record batch: {count}"
        )));
    }
    if count_from_offsets != count {
        return Err(invalid(format!(
            "Inconsistent batch offset range [{}, {}] and count of records {count}",
            header.base_offset,
            header.last_offset()
        )));
    }
    if header.is_control() {
        return Err(invalid("Clients are not allowed to write control records"));
    }
    if header.has_producer_id() && header.base_sequence < 0 {
        return Err(invalid(format!(
            "Invalid sequence number {} in record batch with producerId {}",
            header.base_sequence, header.producer_id
        )));
    }
    Ok(())
}

fn decompress_error(e: io::Error) -> ValidationError {
    if let Some(InflationBound(max)) = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<InflationBound>())
    {
        return ValidationError::InflatedTooLarge { max: *max };
    }
    if e.kind() == io::ErrorKind::UnexpectedEof {
        invalid(PREMATURE_EOF)
    } else {
        invalid(format!("Failed to decompress record stream: {e}"))
    }
}

/// Where the records' bytes come from: the batch itself, or a decompressing stream.
trait RecordSource {
    /// The next byte; `None` where the records end.
    fn next_byte(&mut self) -> Result<Option<u8>, ValidationError>;
    /// Skips `n` bytes; false when the records end first.
    fn skip(&mut self, n: u64) -> Result<bool, ValidationError>;
    /// Bytes consumed so far.
    fn position(&self) -> u64;
}

/// The records of an uncompressed batch, read in place.
struct SliceSource<'a> {
    buf: &'a [u8],
    at: usize,
}

impl RecordSource for SliceSource<'_> {
    #[inline]
    fn next_byte(&mut self) -> Result<Option<u8>, ValidationError> {
        let byte = self.buf.get(self.at).copied();
        self.at += byte.is_some() as usize;
        Ok(byte)
    }

    #[inline]
    fn skip(&mut self, n: u64) -> Result<bool, ValidationError> {
        let left = (self.buf.len() - self.at) as u64;
        if n > left {
            self.at = self.buf.len();
            return Ok(false);
        }
        self.at += n as usize;
        Ok(true)
    }

    fn position(&self) -> u64 {
        self.at as u64
    }
}

/// The records of a compressed batch as they come out of the codec, through a fixed-size
/// buffer, refused once more than `limit` bytes came out.
struct StreamSource<R: Read> {
    reader: BufReader<R>,
    consumed: u64,
    limit: u64,
}

impl<R: Read> StreamSource<R> {
    fn new(decoder: R, limit: u64) -> Self {
        StreamSource {
            reader: BufReader::with_capacity(STREAM_BUFFER_BYTES, decoder),
            consumed: 0,
            limit,
        }
    }

    fn fill(&mut self) -> Result<&[u8], ValidationError> {
        loop {
            match self.reader.fill_buf() {
                Ok(_) => return Ok(self.reader.buffer()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(decompress_error(e)),
            }
        }
    }

    fn take(&mut self, n: u64) -> Result<(), ValidationError> {
        self.consumed += n;
        if self.consumed > self.limit {
            return Err(ValidationError::InflatedTooLarge { max: self.limit });
        }
        Ok(())
    }
}

impl<R: Read> RecordSource for StreamSource<R> {
    fn next_byte(&mut self) -> Result<Option<u8>, ValidationError> {
        let Some(&byte) = self.fill()?.first() else {
            return Ok(None);
        };
        self.reader.consume(1);
        self.take(1)?;
        Ok(Some(byte))
    }

    fn skip(&mut self, mut n: u64) -> Result<bool, ValidationError> {
        while n > 0 {
            let available = self.fill()?.len() as u64;
            if available == 0 {
                return Ok(false);
            }
            let step = available.min(n);
            self.reader.consume(step as usize);
            self.take(step)?;
            n -= step;
        }
        Ok(true)
    }

    fn position(&self) -> u64 {
        self.consumed
    }
}

fn next_or_eof<S: RecordSource>(source: &mut S) -> Result<u8, ValidationError> {
    source.next_byte()?.ok_or_else(|| invalid(PREMATURE_EOF))
}

/// A zigzag varint of at most `max_bytes` bytes (5 for Kafka's varint, 10 for varlong).
fn read_varlong<S: RecordSource>(source: &mut S, max_bytes: u32) -> Result<i64, ValidationError> {
    let mut value: u64 = 0;
    for i in 0..max_bytes {
        let byte = next_or_eof(source)?;
        value |= ((byte & 0x7f) as u64) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(((value >> 1) as i64) ^ -((value & 1) as i64));
        }
    }
    Err(invalid(
        "Found invalid record structure: varint is too long",
    ))
}

fn read_varint<S: RecordSource>(source: &mut S) -> Result<i32, ValidationError> {
    let value = read_varlong(source, 5)?;
    i32::try_from(value).map_err(|_| invalid("Found invalid record structure: varint overflow"))
}

/// The fields of one record that validation looks at.
struct RecordFields {
    timestamp_delta: i64,
    offset_delta: i32,
    key_bytes: i32,
    value_bytes: i32,
}

/// Reads one record (Kafka's `DefaultRecord.readFrom`), skipping key, value and headers, and
/// checks that its fields fill exactly the length it declares.
fn read_record<S: RecordSource>(source: &mut S) -> Result<RecordFields, ValidationError> {
    let size = read_varint(source)?;
    if size < 0 {
        return Err(invalid(format!("Invalid record size {size}")));
    }
    let size = size as u64;
    let start = source.position();
    // Keys, values and headers are skipped only within the record's declared length, so a
    // lying length field never reads on through the stream.
    let skip = |source: &mut S, n: i32| -> Result<(), ValidationError> {
        if n <= 0 {
            return Ok(());
        }
        let read = source.position() - start;
        if read + n as u64 > size {
            return Err(invalid(format!(
                "Invalid record size: a field of {n} bytes at byte {read} runs past the record's {size} bytes"
            )));
        }
        if !source.skip(n as u64)? {
            return Err(invalid(PREMATURE_EOF));
        }
        Ok(())
    };
    let _attributes = next_or_eof(source)?;
    let timestamp_delta = read_varlong(source, 10)?;
    let offset_delta = read_varint(source)?;
    let key_bytes = read_varint(source)?;
    skip(source, key_bytes)?;
    let value_bytes = read_varint(source)?;
    skip(source, value_bytes)?;
    let headers = read_varint(source)?;
    if headers < 0 {
        return Err(invalid(format!(
            "Found invalid number of record headers {headers}"
        )));
    }
    // Each header takes at least two bytes: a count past the record's length is a lie that
    // would otherwise be read through to the end of the stream.
    if headers as u64 > size.saturating_sub(source.position() - start) / 2 {
        return Err(invalid(format!(
            "Found invalid number of record headers. {headers} is larger than the remaining size of the record"
        )));
    }
    for _ in 0..headers {
        let key = read_varint(source)?;
        if key < 0 {
            return Err(invalid(format!("Invalid negative header key size {key}")));
        }
        skip(source, key)?;
        let value = read_varint(source)?;
        skip(source, value)?;
    }
    let read = source.position() - start;
    if read != size {
        return Err(invalid(format!(
            "Invalid record size: expected to read {size} bytes in record payload, but instead read {read}"
        )));
    }
    Ok(RecordFields {
        timestamp_delta,
        offset_delta,
        key_bytes,
        value_bytes,
    })
}

/// The walk over one batch's records: what is checked per record and what is learned.
struct RecordWalk<'a> {
    header: &'a BatchHeader,
    config: &'a ValidatorConfig,
    now_ms: i64,
    max_timestamp: i64,
    offset_delta_of_max_timestamp: i32,
    record_errors: Vec<RecordError>,
    record_errors_total: usize,
    invalid_timestamp: bool,
}

impl<'a> RecordWalk<'a> {
    fn new(header: &'a BatchHeader, config: &'a ValidatorConfig, now_ms: i64) -> Self {
        RecordWalk {
            header,
            config,
            now_ms,
            max_timestamp: NO_TIMESTAMP,
            offset_delta_of_max_timestamp: -1,
            record_errors: Vec::new(),
            record_errors_total: 0,
            invalid_timestamp: false,
        }
    }

    /// Walks a decompressing stream; returns the bytes that came out of it.
    fn run_stream<R: Read>(&mut self, decoder: R, limit: u64) -> Result<u64, ValidationError> {
        let mut source = StreamSource::new(decoder, limit);
        self.run(&mut source)?;
        Ok(source.consumed)
    }

    /// Reads exactly `records_count` records with offset deltas 0, 1, 2, ..., then checks that
    /// nothing follows them (Kafka's `RecordIterator.ensureNoneRemaining`).
    fn run<S: RecordSource>(&mut self, source: &mut S) -> Result<(), ValidationError> {
        let count = self.header.records_count;
        debug_assert!(count >= 0, "negative counts are refused before the walk");
        for index in 0..count {
            let record = read_record(source)?;
            if record.offset_delta != index {
                return Err(invalid(format!(
                    "Record {index} of the batch has offset delta {}: the offset deltas of a batch must run 0, 1, 2, ... up to its last offset delta {}",
                    record.offset_delta, self.header.last_offset_delta
                )));
            }
            self.check_record(index, &record);
        }
        if source.next_byte()?.is_some() {
            return Err(invalid(
                "Incorrect declared batch size, records still remaining in file",
            ));
        }
        Ok(())
    }

    /// Kafka's `validateRecord`: key on compacted topics, then the timestamp.
    fn check_record(&mut self, index: i32, record: &RecordFields) {
        let timestamp = if self.header.is_log_append_time() {
            self.header.max_timestamp
        } else {
            self.header
                .base_timestamp
                .wrapping_add(record.timestamp_delta)
        };
        if self.config.compacted && record.key_bytes < 0 {
            self.record_error(
                index,
                "Compacted topic cannot accept message without key".to_string(),
            );
        } else if let Some(message) = self.timestamp_error(index, timestamp, record) {
            self.invalid_timestamp = true;
            self.record_error(index, message);
        }
        if timestamp > self.max_timestamp {
            self.max_timestamp = timestamp;
            self.offset_delta_of_max_timestamp = index;
        }
    }

    /// Kafka's `validateTimestamp`.
    fn timestamp_error(&self, index: i32, timestamp: i64, record: &RecordFields) -> Option<String> {
        let (before, after) = (
            self.config.timestamp_before_max_ms,
            self.config.timestamp_after_max_ms,
        );
        if self.config.timestamp_type == TimestampType::CreateTime && timestamp != NO_TIMESTAMP {
            // In i128 so that no timestamp can wrap around the bounds.
            let lag = self.now_ms as i128 - timestamp as i128;
            if lag > before as i128 || -lag > after as i128 {
                return Some(format!(
                    "Timestamp {timestamp} of message with offset {index} is out of range. The timestamp should be within [{}, {}]",
                    self.now_ms.saturating_sub(before),
                    self.now_ms.saturating_add(after)
                ));
            }
        } else if self.header.is_log_append_time() {
            return Some(format!(
                "Invalid timestamp type in message DefaultRecord(offset={index}, timestamp={timestamp}, key={} bytes, value={} bytes). Producer should not set timestamp type to LogAppendTime.",
                record.key_bytes.max(0),
                record.value_bytes.max(0)
            ));
        }
        None
    }

    fn record_error(&mut self, batch_index: i32, message: String) {
        self.record_errors_total += 1;
        if self.record_errors.len() < RECORD_ERRORS_MAX {
            self.record_errors.push(RecordError {
                batch_index,
                message,
            });
        }
    }

    /// Kafka's `processRecordErrors`: any record error rejects the batch.
    fn finish(&mut self) -> Result<(), ValidationError> {
        if self.record_errors_total == 0 {
            return Ok(());
        }
        let record_errors = std::mem::take(&mut self.record_errors);
        if self.invalid_timestamp {
            return Err(ValidationError::Records {
                kind: RecordErrorsKind::InvalidTimestamp,
                message: "One or more records have been rejected due to invalid timestamp"
                    .to_string(),
                record_errors,
            });
        }
        let first: Vec<String> = record_errors
            .iter()
            .take(3)
            .map(|e| {
                format!(
                    "RecordError(batchIndex={}, message='{}')",
                    e.batch_index, e.message
                )
            })
            .collect();
        Err(ValidationError::Records {
            kind: RecordErrorsKind::InvalidRecord,
            message: format!(
                "One or more records have been rejected due to {} record errors in total, and only showing the first three errors at most: [{}]",
                self.record_errors_total,
                first.join(", ")
            ),
            record_errors,
        })
    }
}

/// Snappy as Kafka's producers write it: xerial's framing (`\x82SNAPPY\0`, two version ints,
/// then blocks of a 4-byte length and a raw snappy block), or one raw snappy block (what
/// xerial's reader falls back to, and what librdkafka writes). Each block's inflated length is
/// read from its header and checked against the bound before its buffer is allocated.
struct SnappyDecoder<'a> {
    input: &'a [u8],
    framed: bool,
    block: Vec<u8>,
    at: usize,
    /// Bytes the blocks may still inflate to.
    budget: u64,
    limit: u64,
}

const XERIAL_MAGIC: &[u8] = b"\x82SNAPPY\x00";
const XERIAL_HEADER_BYTES: usize = XERIAL_MAGIC.len() + 8;

impl<'a> SnappyDecoder<'a> {
    fn new(input: &'a [u8], limit: u64) -> Self {
        let framed = input.len() >= XERIAL_HEADER_BYTES && input.starts_with(XERIAL_MAGIC);
        SnappyDecoder {
            input: if framed {
                &input[XERIAL_HEADER_BYTES..]
            } else {
                input
            },
            framed,
            block: Vec::new(),
            at: 0,
            budget: limit,
            limit,
        }
    }

    /// Inflates the next block into `self.block`; false at the end of the input.
    fn next_block(&mut self) -> io::Result<bool> {
        if self.input.is_empty() {
            return Ok(false);
        }
        let compressed = if self.framed {
            if self.input.len() < 4 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            let length = u32::from_be_bytes(self.input[..4].try_into().expect("4 bytes")) as usize;
            let rest = &self.input[4..];
            if rest.len() < length {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            let (block, rest) = rest.split_at(length);
            self.input = rest;
            block
        } else {
            std::mem::take(&mut self.input)
        };
        let inflated = snap::raw::decompress_len(compressed).map_err(io::Error::other)? as u64;
        if inflated > self.budget {
            return Err(io::Error::other(InflationBound(self.limit)));
        }
        self.budget -= inflated;
        self.block.clear();
        self.block.resize(inflated as usize, 0);
        snap::raw::Decoder::new()
            .decompress(compressed, &mut self.block)
            .map_err(io::Error::other)?;
        self.at = 0;
        Ok(true)
    }
}

/// The snappy decoder's way of saying the bound was reached, through `io::Error`.
#[derive(Debug)]
struct InflationBound(u64);

impl std::fmt::Display for InflationBound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "inflates past {} bytes", self.0)
    }
}

impl std::error::Error for InflationBound {}

impl Read for SnappyDecoder<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at == self.block.len() {
            if !self.next_block()? {
                return Ok(0);
            }
        }
        let n = buf.len().min(self.block.len() - self.at);
        buf[..n].copy_from_slice(&self.block[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests;
