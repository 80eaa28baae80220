//! Errors a client can see: always one of Kafka's error codes, with an optional message.

use gregor_storage::validator::{RecordError, RecordErrorsKind, ValidationError};
use kafka_protocol::ResponseError;

/// An operating error on its way to a response: Kafka's code plus an optional message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    pub code: ResponseError,
    pub message: Option<String>,
    /// Produce's per-record errors (KIP-467 `record_errors`): which records of the batch
    /// failed validation, and why. Empty for every other error.
    pub record_errors: Vec<RecordError>,
}

impl ApiError {
    pub fn new(code: ResponseError) -> Self {
        ApiError {
            code,
            message: None,
            record_errors: Vec::new(),
        }
    }

    pub fn with_message(code: ResponseError, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: Some(message.into()),
            record_errors: Vec::new(),
        }
    }

    pub fn code(&self) -> i16 {
        self.code.code()
    }
}

impl From<ResponseError> for ApiError {
    fn from(code: ResponseError) -> Self {
        ApiError::new(code)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.message {
            Some(m) => write!(f, "{}: {m}", self.code),
            None => write!(f, "{}", self.code),
        }
    }
}

/// Maps storage errors to Kafka's codes at the boundary.
impl From<gregor_storage::StorageError> for ApiError {
    fn from(e: gregor_storage::StorageError) -> Self {
        use gregor_storage::StorageError as S;
        let code = match &e {
            S::CorruptRecord(_) => ResponseError::CorruptMessage,
            S::InvalidRecord(_) => ResponseError::InvalidRecord,
            S::RecordTooLarge { .. } => ResponseError::MessageTooLarge,
            S::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
            S::NonMonotonicOffset { .. } => ResponseError::InvalidRecord,
            S::Io(_) => ResponseError::KafkaStorageError,
        };
        if matches!(e, S::Io(_)) {
            tracing::error!(error = %e, "storage I/O error");
        }
        ApiError::with_message(code, e.to_string())
    }
}

/// Maps a refused batch to Kafka's codes (`ReplicaManager.appendToLocalLog`): batch-level
/// refusals carry a message only; Kafka's `RecordValidationException` carries the records
/// that failed as well.
impl From<ValidationError> for ApiError {
    fn from(e: ValidationError) -> Self {
        let code = match e {
            ValidationError::Batch(storage) => return storage.into(),
            ValidationError::Records {
                kind,
                message,
                record_errors,
            } => {
                let code = match kind {
                    RecordErrorsKind::InvalidRecord => ResponseError::InvalidRecord,
                    RecordErrorsKind::InvalidTimestamp => ResponseError::InvalidTimestamp,
                };
                return ApiError {
                    code,
                    message: Some(message),
                    record_errors,
                };
            }
            ValidationError::InflatedTooLarge { .. } => ResponseError::MessageTooLarge,
            ValidationError::RecordListTooLarge { .. } => ResponseError::RecordListTooLarge,
            ValidationError::InvalidTxnState => ResponseError::InvalidTxnState,
        };
        ApiError::with_message(code, e.to_string())
    }
}
