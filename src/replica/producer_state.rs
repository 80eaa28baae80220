//! Idempotent-producer state of one partition: de-duplication by (producer id, epoch,
//! sequence) over the last `BATCHES_PER_PRODUCER_MAX` batches of each producer, as Kafka's
//! `ProducerStateManager` does.
//!
//! # Invariants
//! - Each entry keeps at most `BATCHES_PER_PRODUCER_MAX` batches, oldest first, all of the
//!   entry's epoch, with increasing (wrapping) sequences.

use std::collections::{HashMap, VecDeque};

use gregor_storage::BatchHeader;
use kafka_protocol::ResponseError;

use crate::error::ApiError;

/// The Java producer keeps at most 5 requests in flight with idempotence, so 5 batches cover
/// every retry it can make.
pub const BATCHES_PER_PRODUCER_MAX: usize = 5;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchMetadata {
    pub first_seq: i32,
    pub last_seq: i32,
    pub first_offset: i64,
    pub last_offset: i64,
    pub timestamp: i64,
}

#[derive(Clone, Debug, Default)]
struct ProducerEntry {
    epoch: i16,
    batches: VecDeque<BatchMetadata>,
}

/// What to do with an incoming batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SequenceCheck {
    /// Append it.
    Append,
    /// A retry of a batch already in the log: answer with its original offsets.
    Duplicate(BatchMetadata),
}

#[derive(Default)]
pub struct ProducerStateManager {
    producers: HashMap<i64, ProducerEntry>,
}

fn in_sequence(last_seq: i32, next_seq: i32) -> bool {
    next_seq == last_seq.wrapping_add(1) || (next_seq == 0 && last_seq == i32::MAX)
}

impl ProducerStateManager {
    /// Checks a batch from a client against the producer's state (Kafka's
    /// `ProducerAppendInfo.checkSequence` and `findDuplicateBatch`).
    pub fn check(&self, batch: &BatchHeader) -> Result<SequenceCheck, ApiError> {
        if !batch.has_producer_id() || batch.base_sequence < 0 {
            return Ok(SequenceCheck::Append);
        }
        let Some(entry) = self.producers.get(&batch.producer_id) else {
            // An unknown producer (new, or whose state was not kept) may start anywhere.
            return Ok(SequenceCheck::Append);
        };
        if batch.producer_epoch < entry.epoch {
            return Err(ApiError::with_message(
                ResponseError::InvalidProducerEpoch,
                format!(
                    "Epoch {} of producer {} is older than the current epoch {}",
                    batch.producer_epoch, batch.producer_id, entry.epoch
                ),
            ));
        }
        if batch.producer_epoch == entry.epoch {
            if let Some(dup) = entry
                .batches
                .iter()
                .find(|b| b.first_seq == batch.base_sequence && b.last_seq == batch.last_sequence())
            {
                return Ok(SequenceCheck::Duplicate(*dup));
            }
            if let Some(last) = entry.batches.back() {
                if !in_sequence(last.last_seq, batch.base_sequence) {
                    return Err(ApiError::with_message(
                        ResponseError::OutOfOrderSequenceNumber,
                        format!(
                            "Out of order sequence number for producer {} at offset {}: {} (incoming seq. number), {} (current end sequence number)",
                            batch.producer_id, last.last_offset, batch.base_sequence, last.last_seq
                        ),
                    ));
                }
            }
        } else if batch.base_sequence != 0 {
            return Err(ApiError::with_message(
                ResponseError::OutOfOrderSequenceNumber,
                format!("Invalid sequence number for new epoch of producer {}: {} (request epoch), {} (seq. number)", batch.producer_id, batch.producer_epoch, batch.base_sequence),
            ));
        }
        Ok(SequenceCheck::Append)
    }

    /// Records a batch that is now in the log (after a leader append, or while rebuilding from
    /// the log at start-up).
    pub fn update(&mut self, batch: &BatchHeader) {
        if !batch.has_producer_id() || batch.base_sequence < 0 {
            return;
        }
        let entry = self.producers.entry(batch.producer_id).or_default();
        if batch.producer_epoch != entry.epoch {
            entry.epoch = batch.producer_epoch;
            entry.batches.clear();
        }
        entry.batches.push_back(BatchMetadata {
            first_seq: batch.base_sequence,
            last_seq: batch.last_sequence(),
            first_offset: batch.base_offset,
            last_offset: batch.last_offset(),
            timestamp: batch.max_timestamp,
        });
        while entry.batches.len() > BATCHES_PER_PRODUCER_MAX {
            entry.batches.pop_front();
        }
    }

    /// Forgets batches at or past `offset` (the log was truncated there).
    pub fn truncate_to(&mut self, offset: i64) {
        for entry in self.producers.values_mut() {
            entry.batches.retain(|b| b.last_offset < offset);
        }
        self.producers.retain(|_, e| !e.batches.is_empty());
    }

    pub fn producer_count(&self) -> usize {
        self.producers.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(pid: i64, epoch: i16, seq: i32, count: i32, offset: i64) -> BatchHeader {
        BatchHeader {
            base_offset: offset,
            batch_length: 100,
            partition_leader_epoch: 0,
            magic: 2,
            crc: 0,
            attributes: 0,
            last_offset_delta: count - 1,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: seq,
            records_count: count,
        }
    }

    #[test]
    fn sequences_duplicates_and_epochs() {
        let mut s = ProducerStateManager::default();
        let b0 = batch(7, 0, 0, 10, 0);
        assert_eq!(s.check(&b0).unwrap(), SequenceCheck::Append);
        s.update(&b0);
        // A retry of the same batch is a duplicate, answered with the first offsets.
        match s.check(&batch(7, 0, 0, 10, 99)).unwrap() {
            SequenceCheck::Duplicate(m) => assert_eq!((m.first_offset, m.last_offset), (0, 9)),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            s.check(&batch(7, 0, 10, 5, 10)).unwrap(),
            SequenceCheck::Append
        );
        assert_eq!(
            s.check(&batch(7, 0, 11, 5, 10)).unwrap_err().code,
            ResponseError::OutOfOrderSequenceNumber
        );
        // A new epoch must start at sequence 0; an older epoch is fenced.
        assert_eq!(
            s.check(&batch(7, 1, 3, 1, 10)).unwrap_err().code,
            ResponseError::OutOfOrderSequenceNumber
        );
        assert_eq!(
            s.check(&batch(7, 1, 0, 1, 10)).unwrap(),
            SequenceCheck::Append
        );
        s.update(&batch(7, 1, 0, 1, 10));
        assert_eq!(
            s.check(&batch(7, 0, 10, 1, 11)).unwrap_err().code,
            ResponseError::InvalidProducerEpoch
        );
        // Unknown producers and non-idempotent batches are appended.
        assert_eq!(
            s.check(&batch(8, 0, 42, 1, 11)).unwrap(),
            SequenceCheck::Append
        );
        assert_eq!(
            s.check(&batch(-1, -1, -1, 1, 11)).unwrap(),
            SequenceCheck::Append
        );
    }

    #[test]
    fn keeps_five_batches_and_truncates() {
        let mut s = ProducerStateManager::default();
        for i in 0..7 {
            s.update(&batch(1, 0, i, 1, i as i64));
        }
        assert!(matches!(
            s.check(&batch(1, 0, 2, 1, 0)).unwrap(),
            SequenceCheck::Duplicate(_)
        ));
        assert!(s.check(&batch(1, 0, 1, 1, 0)).is_err());
        s.truncate_to(3);
        assert!(matches!(
            s.check(&batch(1, 0, 2, 1, 0)).unwrap(),
            SequenceCheck::Duplicate(_)
        ));
        s.truncate_to(0);
        assert_eq!(s.producer_count(), 0);
    }

    #[test]
    fn sequence_wraps() {
        assert!(in_sequence(i32::MAX, 0));
        assert!(in_sequence(4, 5));
        assert!(!in_sequence(4, 6));
    }
}
