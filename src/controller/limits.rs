//! The bounds every controller operation is held to, Kafka's own (`QuorumController`,
//! `ReplicationControlManager`), checked before anything sized by a request is allocated.
//!
//! - A user operation (CreateTopics, CreatePartitions, DeleteTopics, ElectLeaders,
//!   IncrementalAlterConfigs) may produce at most [`MAX_RECORDS_PER_USER_OP`] records; more
//!   is POLICY_VIOLATION and nothing is written (Kafka's `BoundedList` in the controller).
//! - CreateTopics and CreatePartitions count the partitions they ask for first, before any
//!   placement: over [`MAX_PARTITIONS_PER_BATCH`] is POLICY_VIOLATION.
//! - One metadata log entry holds at most [`RECORDS_PER_ENTRY_MAX`] records and
//!   `gregor_raft::ENTRY_BYTES_MAX` bytes. A user operation is one entry (atomic); a larger
//!   decision of the controller's own (fencing a broker, elections) is split into entries that
//!   are each safe to apply alone.

use kafka_protocol::ResponseError;

use crate::error::ApiError;
use crate::metadata::MetadataRecord;

/// Kafka's `QuorumController.MAX_RECORDS_PER_USER_OP`.
pub const MAX_RECORDS_PER_USER_OP: usize = 10_000;

/// Kafka's `ReplicationControlManager.MAX_PARTITIONS_PER_BATCH`.
pub const MAX_PARTITIONS_PER_BATCH: usize = 10_000;

/// Kafka's `QuorumController.MAX_RECORDS_PER_BATCH`: records in one metadata log entry.
pub const RECORDS_PER_ENTRY_MAX: usize = 10_000;

/// Kafka's answer when a request asks for more partitions than one batch may create.
pub fn excessive_partitions() -> ApiError {
    ApiError::with_message(
        ResponseError::PolicyViolation,
        "Excessively large number of partitions per request.",
    )
}

/// Kafka's answer when an operation would produce more records than one batch holds
/// (`BoundedListTooLongException`, mapped by `EventHandlerExceptionInfo`).
pub fn excessive_batch() -> ApiError {
    ApiError::with_message(
        ResponseError::PolicyViolation,
        "Unable to perform excessively large batch operation.",
    )
}

/// Kafka's `validateTotalNumberOfPartitions`: the partitions a request creates, summed
/// without overflow, against [`MAX_PARTITIONS_PER_BATCH`]. Each item is the count one topic
/// asks for (non-positive counts are invalid and left to the per-topic check).
pub fn check_total_partitions(counts: impl IntoIterator<Item = i64>) -> Result<(), ApiError> {
    let mut total: i64 = 0;
    for count in counts {
        total = total.saturating_add(count.max(0));
        if total > MAX_PARTITIONS_PER_BATCH as i64 {
            return Err(excessive_partitions());
        }
    }
    Ok(())
}

/// The records of one user operation, refused past [`MAX_RECORDS_PER_USER_OP`] (Kafka's
/// `BoundedList`): an operation stops growing the moment it would exceed the bound.
///
/// # Invariants
/// - `records.len() <= MAX_RECORDS_PER_USER_OP`.
#[derive(Debug, Default)]
pub struct BoundedRecords {
    records: Vec<MetadataRecord>,
}

impl BoundedRecords {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one record, or POLICY_VIOLATION when the operation is full.
    pub fn push(&mut self, record: MetadataRecord) -> Result<(), ApiError> {
        self.reserve(1)?;
        self.records.push(record);
        debug_assert!(self.records.len() <= MAX_RECORDS_PER_USER_OP);
        Ok(())
    }

    /// Adds several records, all or none.
    pub fn extend(&mut self, records: Vec<MetadataRecord>) -> Result<(), ApiError> {
        self.reserve(records.len())?;
        self.records.extend(records);
        Ok(())
    }

    /// Fails unless `more` records still fit.
    pub fn reserve(&self, more: usize) -> Result<(), ApiError> {
        if more > MAX_RECORDS_PER_USER_OP - self.records.len() {
            return Err(excessive_batch());
        }
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    pub fn into_vec(self) -> Vec<MetadataRecord> {
        self.records
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> MetadataRecord {
        MetadataRecord::ClusterId {
            cluster_id: "c".into(),
        }
    }

    #[test]
    fn total_partitions_are_summed_without_overflow() {
        assert!(check_total_partitions([5_000, 5_000]).is_ok());
        let e = check_total_partitions([5_000, 5_000, 1]).unwrap_err();
        assert_eq!(e.code(), ResponseError::PolicyViolation.code());
        assert_eq!(
            e.message.as_deref(),
            Some("Excessively large number of partitions per request.")
        );
        assert!(check_total_partitions([i32::MAX as i64, i32::MAX as i64]).is_err());
        assert!(check_total_partitions([i64::MAX, i64::MAX]).is_err());
        assert!(check_total_partitions([-1, 0, i32::MIN as i64, 3]).is_ok());
    }

    #[test]
    fn bounded_records_stop_at_the_user_op_limit() {
        let mut records = BoundedRecords::new();
        records
            .extend(vec![record(); MAX_RECORDS_PER_USER_OP - 1])
            .unwrap();
        records.push(record()).unwrap();
        let e = records.push(record()).unwrap_err();
        assert_eq!(e.code(), ResponseError::PolicyViolation.code());
        assert!(records.extend(vec![record()]).is_err());
        assert_eq!(records.len(), MAX_RECORDS_PER_USER_OP);
        let mut fresh = BoundedRecords::new();
        assert!(fresh
            .extend(vec![record(); MAX_RECORDS_PER_USER_OP + 1])
            .is_err());
        assert!(fresh.is_empty(), "all or none");
        assert!(fresh.reserve(usize::MAX).is_err());
    }
}
