//! Operating errors of the partition log.
//!
//! Every variant is something a caller can cause or the disk can do to us; broken internal
//! invariants panic instead. The broker maps each variant to a Kafka error code at the handler
//! boundary (see `API.md`).

use std::io;

/// An error returned by the partition log.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A file operation failed (Kafka `KAFKA_STORAGE_ERROR`).
    #[error("storage I/O error: {0}")]
    Io(#[from] io::Error),
    /// Bad CRC or a malformed batch (Kafka `CORRUPT_MESSAGE`).
    #[error("corrupt record batch: {0}")]
    CorruptRecord(String),
    /// A well-formed batch that is not acceptable: magic other than 2, inconsistent offset
    /// range or record count (Kafka `INVALID_RECORD`).
    #[error("invalid record batch: {0}")]
    InvalidRecord(String),
    /// A batch larger than `max.message.bytes` (Kafka `MESSAGE_TOO_LARGE`).
    #[error("record batch of {size} bytes exceeds max.message.bytes {max}")]
    RecordTooLarge {
        /// Size of the offending batch in bytes.
        size: usize,
        /// The configured `max.message.bytes`.
        max: u32,
    },
    /// An offset outside `[log_start, log_end]` (Kafka `OFFSET_OUT_OF_RANGE`).
    #[error("offset {offset} out of range [{log_start}, {log_end}]")]
    OffsetOutOfRange {
        /// The requested offset.
        offset: i64,
        /// The log start offset at the time of the request.
        log_start: i64,
        /// The log end offset at the time of the request.
        log_end: i64,
    },
    /// A follower append whose offsets go backwards (below the log end offset or within the
    /// appended records).
    #[error("non-monotonic offset: expected at least {expected_at_least}, got {got}")]
    NonMonotonicOffset {
        /// The smallest acceptable base offset.
        expected_at_least: i64,
        /// The base offset that was offered.
        got: i64,
    },
}

impl StorageError {
    pub(crate) fn corrupt(message: impl Into<String>) -> StorageError {
        StorageError::CorruptRecord(message.into())
    }

    pub(crate) fn invalid(message: impl Into<String>) -> StorageError {
        StorageError::InvalidRecord(message.into())
    }
}
