//! Idempotent-producer state of one partition: de-duplication by (producer id, epoch,
//! sequence) over the last `BATCHES_PER_PRODUCER_MAX` batches of each producer, as Kafka's
//! `ProducerStateManager` does, with its expiry and its snapshots.
//!
//! The state survives restarts through producer snapshots (`{offset:020}.snapshot`, Kafka's
//! format, see `gregor_storage::producer_snapshot`): one at every segment roll, one at clean
//! shutdown. [`load`] takes the newest readable snapshot at or below the log end and replays
//! the log from its offset, so after a crash the state equals a replay of the whole log, and
//! remembers producers whose batches retention already deleted, until they expire.
//!
//! Memory: at most `BATCHES_PER_PRODUCER_MAX` batches a producer; producers idle for
//! `producer.id.expiration.ms` are removed (checked every
//! `producer.id.expiration.check.interval.ms`); and at most
//! `producer.state.max.producers.per.partition` producers are kept, because a producer id in a
//! batch is not checked against the ids InitProducerId handed out, so a client could
//! otherwise fill memory with made-up ids within the expiration window. When a new producer
//! would pass the bound, the eighth of the producers idle longest are dropped at once. A
//! dropped producer is treated as one whose state expired: its next batch is accepted at any
//! sequence (Kafka's rule for a producer without state), so only a retry of a batch it sent
//! before it was dropped could be appended twice.
//!
//! # Invariants
//! - Each entry keeps at most `BATCHES_PER_PRODUCER_MAX` batches, oldest first, all of the
//!   entry's epoch, with increasing (wrapping) sequences and offsets.
//! - `producers.len() <= config.max_producers`.

use std::collections::{HashMap, VecDeque};

use gregor_storage::{BatchHeader, Log, ProducerSnapshotEntry, StorageError};
use kafka_protocol::ResponseError;

use crate::error::ApiError;

/// The Java producer keeps at most 5 requests in flight with idempotence, so 5 batches cover
/// every retry it can make.
pub const BATCHES_PER_PRODUCER_MAX: usize = 5;

/// Kafka's `producer.id.expiration.ms` default: one day.
pub const PRODUCER_ID_EXPIRATION_MS_DEFAULT: i64 = 86_400_000;
/// Kafka's `producer.id.expiration.check.interval.ms` default: ten minutes.
pub const PRODUCER_ID_EXPIRATION_CHECK_INTERVAL_MS_DEFAULT: i64 = 600_000;
/// `producer.state.max.producers.per.partition` default (Gregor's; Kafka has no bound).
pub const MAX_PRODUCERS_PER_PARTITION_DEFAULT: usize = 10_000;

/// How long producer state lives and how much of it a partition keeps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProducerStateConfig {
    /// `producer.id.expiration.ms`: a producer whose last batch is older than this is
    /// forgotten.
    pub expiration_ms: i64,
    /// `producer.id.expiration.check.interval.ms`: how often expiry runs.
    pub expiration_check_interval_ms: i64,
    /// `producer.state.max.producers.per.partition`: the most producers one partition keeps.
    pub max_producers: usize,
}

impl Default for ProducerStateConfig {
    fn default() -> Self {
        ProducerStateConfig {
            expiration_ms: PRODUCER_ID_EXPIRATION_MS_DEFAULT,
            expiration_check_interval_ms: PRODUCER_ID_EXPIRATION_CHECK_INTERVAL_MS_DEFAULT,
            max_producers: MAX_PRODUCERS_PER_PARTITION_DEFAULT,
        }
    }
}

impl ProducerStateConfig {
    /// The most entries a snapshot of this partition can hold.
    pub fn snapshot_entries_max(&self) -> usize {
        self.max_producers.saturating_mul(BATCHES_PER_PRODUCER_MAX)
    }
}

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
    /// Max timestamp of the producer's last batch: expiry counts from it (Kafka's
    /// `lastTimestamp`). Kept apart from `batches`, which may be empty for a producer that a
    /// snapshot knows without a batch.
    last_timestamp: i64,
}

/// What to do with an incoming batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SequenceCheck {
    /// Append it.
    Append,
    /// A retry of a batch already in the log: answer with its original offsets.
    Duplicate(BatchMetadata),
}

pub struct ProducerStateManager {
    producers: HashMap<i64, ProducerEntry>,
    config: ProducerStateConfig,
    /// When expiry last ran (broker clock), for `expiration_check_interval_ms`.
    last_expiration_check_ms: i64,
}

impl Default for ProducerStateManager {
    fn default() -> Self {
        ProducerStateManager::new(ProducerStateConfig::default())
    }
}

fn in_sequence(last_seq: i32, next_seq: i32) -> bool {
    next_seq == last_seq.wrapping_add(1) || (next_seq == 0 && last_seq == i32::MAX)
}

/// Kafka's `DefaultRecordBatch.decrementSequence`: sequences wrap from `i32::MAX` to 0.
fn decrement_sequence(sequence: i32, decrement: i32) -> i32 {
    if sequence < decrement {
        i32::MAX - (decrement - sequence) + 1
    } else {
        sequence - decrement
    }
}

impl ProducerStateManager {
    pub fn new(config: ProducerStateConfig) -> Self {
        debug_assert!(config.max_producers >= 1);
        ProducerStateManager {
            producers: HashMap::new(),
            config,
            last_expiration_check_ms: i64::MIN,
        }
    }

    /// Applies new settings; a lower producer bound takes effect at once.
    pub fn set_config(&mut self, config: ProducerStateConfig) {
        self.config = config;
        while self.producers.len() > self.config.max_producers {
            self.evict_idlest();
        }
    }

    /// Checks a batch from a client against the producer's state (Kafka's
    /// `ProducerAppendInfo.checkSequence` and `findDuplicateBatch`).
    pub fn check(&self, batch: &BatchHeader) -> Result<SequenceCheck, ApiError> {
        if !batch.has_producer_id() || batch.base_sequence < 0 {
            return Ok(SequenceCheck::Append);
        }
        let Some(entry) = self.producers.get(&batch.producer_id) else {
            // An unknown producer (new, or whose state expired) may start anywhere.
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

    /// Records a batch that is now in the log (after a leader or follower append, or while
    /// replaying the log at load).
    pub fn update(&mut self, batch: &BatchHeader) {
        if !batch.has_producer_id() || batch.base_sequence < 0 {
            return;
        }
        self.push(
            batch.producer_id,
            batch.producer_epoch,
            BatchMetadata {
                first_seq: batch.base_sequence,
                last_seq: batch.last_sequence(),
                first_offset: batch.base_offset,
                last_offset: batch.last_offset(),
                timestamp: batch.max_timestamp,
            },
        );
    }

    /// Adds one batch of one producer; a new epoch starts the producer's batches afresh.
    fn push(&mut self, producer_id: i64, epoch: i16, batch: BatchMetadata) {
        if !self.producers.contains_key(&producer_id)
            && self.producers.len() >= self.config.max_producers
        {
            self.evict_idlest();
        }
        let entry = self.producers.entry(producer_id).or_default();
        if epoch != entry.epoch {
            entry.epoch = epoch;
            entry.batches.clear();
        }
        debug_assert!(
            entry
                .batches
                .back()
                .is_none_or(|last| last.last_offset < batch.first_offset),
            "producer {producer_id}: batch at {} not after {:?}",
            batch.first_offset,
            entry.batches.back()
        );
        entry.batches.push_back(batch);
        entry.last_timestamp = batch.timestamp;
        while entry.batches.len() > BATCHES_PER_PRODUCER_MAX {
            entry.batches.pop_front();
        }
        debug_assert!(self.producers.len() <= self.config.max_producers);
    }

    /// Drops the eighth (at least one) of the producers whose last batch is oldest, so that a
    /// flood of new producer ids costs one selection per `max_producers / 8` of them.
    fn evict_idlest(&mut self) {
        let mut by_age: Vec<(i64, i64)> = self
            .producers
            .iter()
            .map(|(pid, e)| (e.last_timestamp, *pid))
            .collect();
        if by_age.is_empty() {
            return;
        }
        let count = (self.config.max_producers / 8).clamp(1, by_age.len());
        by_age.select_nth_unstable(count - 1);
        for (_, pid) in &by_age[..count] {
            self.producers.remove(pid);
        }
        tracing::warn!(
            evicted = count,
            max_producers = self.config.max_producers,
            "producer state full: forgot the producers idle longest"
        );
    }

    /// Forgets producers whose last batch is at least `producer.id.expiration.ms` old
    /// (Kafka's `removeExpiredProducers`); returns how many.
    pub fn remove_expired(&mut self, now_ms: i64) -> usize {
        let expiration_ms = self.config.expiration_ms;
        let before = self.producers.len();
        self.producers
            .retain(|_, e| now_ms.saturating_sub(e.last_timestamp) < expiration_ms);
        self.last_expiration_check_ms = now_ms;
        before - self.producers.len()
    }

    /// [`Self::remove_expired`] once `producer.id.expiration.check.interval.ms` has passed
    /// since it last ran.
    pub fn maybe_remove_expired(&mut self, now_ms: i64) -> usize {
        if now_ms.saturating_sub(self.last_expiration_check_ms)
            < self.config.expiration_check_interval_ms
        {
            return 0;
        }
        self.remove_expired(now_ms)
    }

    /// The state as snapshot entries: every remembered batch, oldest first per producer,
    /// producers in id order (so equal states give equal files).
    pub fn snapshot_entries(&self) -> Vec<ProducerSnapshotEntry> {
        let mut pids: Vec<i64> = self.producers.keys().copied().collect();
        pids.sort_unstable();
        let mut entries = Vec::with_capacity(pids.len());
        for pid in pids {
            let e = &self.producers[&pid];
            let entry = |b: Option<&BatchMetadata>| ProducerSnapshotEntry {
                producer_id: pid,
                producer_epoch: e.epoch,
                last_sequence: b.map_or(-1, |b| b.last_seq),
                last_offset: b.map_or(-1, |b| b.last_offset),
                offset_delta: b.map_or(0, |b| (b.last_offset - b.first_offset) as i32),
                timestamp: b.map_or(e.last_timestamp, |b| b.timestamp),
                coordinator_epoch: -1,
                current_txn_first_offset: -1,
            };
            if e.batches.is_empty() {
                entries.push(entry(None));
            }
            entries.extend(e.batches.iter().map(|b| entry(Some(b))));
        }
        entries
    }

    /// Replaces the state with a snapshot's (Kafka's `loadFromSnapshot`; expiry is the
    /// caller's). Entries that break the invariants (a corrupt file that kept its CRC) are
    /// skipped one by one rather than trusted.
    pub fn load_snapshot(&mut self, entries: &[ProducerSnapshotEntry]) {
        self.producers.clear();
        for e in entries {
            if e.producer_id < 0 || e.offset_delta < 0 {
                tracing::warn!(entry = ?e, "skipping an invalid producer snapshot entry");
                continue;
            }
            if e.last_offset < 0 {
                let known = self.producers.contains_key(&e.producer_id);
                if !known && self.producers.len() >= self.config.max_producers {
                    self.evict_idlest();
                }
                let entry = self.producers.entry(e.producer_id).or_default();
                entry.epoch = e.producer_epoch;
                entry.batches.clear();
                entry.last_timestamp = e.timestamp;
                continue;
            }
            let first_offset = e.last_offset - i64::from(e.offset_delta);
            let out_of_order = self.producers.get(&e.producer_id).is_some_and(|p| {
                p.epoch == e.producer_epoch
                    && p.batches
                        .back()
                        .is_some_and(|b| b.last_offset >= first_offset)
            });
            if out_of_order {
                tracing::warn!(entry = ?e, "skipping an out-of-order producer snapshot entry");
                continue;
            }
            self.push(
                e.producer_id,
                e.producer_epoch,
                BatchMetadata {
                    first_seq: decrement_sequence(e.last_sequence, e.offset_delta),
                    last_seq: e.last_sequence,
                    first_offset,
                    last_offset: e.last_offset,
                    timestamp: e.timestamp,
                },
            );
        }
    }

    /// Forgets everything (the log restarted empty).
    pub fn clear(&mut self) {
        self.producers.clear();
    }

    pub fn producer_count(&self) -> usize {
        self.producers.len()
    }
}

/// Builds a partition's producer state at start-up (Kafka's `loadProducerState`):
/// [`rebuild`], then expiry at `now_ms`.
pub fn load(
    log: &Log,
    config: &ProducerStateConfig,
    now_ms: i64,
) -> Result<ProducerStateManager, StorageError> {
    let mut producers = rebuild(log, config)?;
    producers.remove_expired(now_ms);
    Ok(producers)
}

/// Builds a partition's producer state from its log (Kafka's `rebuildProducerState`): the
/// newest readable snapshot at or below the log end, then every batch from its offset (or
/// from the log start without one).
pub fn rebuild(
    log: &Log,
    config: &ProducerStateConfig,
) -> Result<ProducerStateManager, StorageError> {
    let mut producers = ProducerStateManager::new(config.clone());
    let replay_from = match log.latest_producer_snapshot(config.snapshot_entries_max())? {
        Some((offset, entries)) => {
            producers.load_snapshot(&entries);
            offset
        }
        None => log.log_start_offset(),
    };
    // A snapshot sits at a batch boundary, so every batch read starts at or past it, and one
    // kept below the log start lies below every batch still in the log; the filter is a guard.
    log.for_each_batch_header_from(replay_from, |header| {
        if header.last_offset() >= replay_from {
            producers.update(header);
        }
    })?;
    tracing::debug!(
        dir = %log.dir().display(),
        replay_from,
        producers = producers.producer_count(),
        "loaded producer state"
    );
    Ok(producers)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use bytes::{Bytes, BytesMut};
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };
    use uuid::Uuid;

    use super::*;
    use crate::metadata::PartitionRegistration;
    use crate::replica::partition::{Partition, PartitionConfig, PartitionId};

    fn header(pid: i64, epoch: i16, seq: i32, count: i32, offset: i64) -> BatchHeader {
        header_at(pid, epoch, seq, count, offset, 0)
    }

    fn header_at(pid: i64, epoch: i16, seq: i32, count: i32, offset: i64, ts: i64) -> BatchHeader {
        BatchHeader {
            base_offset: offset,
            batch_length: 100,
            partition_leader_epoch: 0,
            magic: 2,
            crc: 0,
            attributes: 0,
            last_offset_delta: count - 1,
            base_timestamp: ts,
            max_timestamp: ts,
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: seq,
            records_count: count,
        }
    }

    fn config(max_producers: usize) -> ProducerStateConfig {
        ProducerStateConfig {
            expiration_ms: 1_000,
            expiration_check_interval_ms: 100,
            max_producers,
        }
    }

    #[test]
    fn sequences_duplicates_and_epochs() {
        let mut s = ProducerStateManager::default();
        let b0 = header(7, 0, 0, 10, 0);
        assert_eq!(s.check(&b0).unwrap(), SequenceCheck::Append);
        s.update(&b0);
        // A retry of the same batch is a duplicate, answered with the first offsets.
        match s.check(&header(7, 0, 0, 10, 99)).unwrap() {
            SequenceCheck::Duplicate(m) => assert_eq!((m.first_offset, m.last_offset), (0, 9)),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            s.check(&header(7, 0, 10, 5, 10)).unwrap(),
            SequenceCheck::Append
        );
        assert_eq!(
            s.check(&header(7, 0, 11, 5, 10)).unwrap_err().code,
            ResponseError::OutOfOrderSequenceNumber
        );
        // A new epoch must start at sequence 0; an older epoch is fenced.
        assert_eq!(
            s.check(&header(7, 1, 3, 1, 10)).unwrap_err().code,
            ResponseError::OutOfOrderSequenceNumber
        );
        assert_eq!(
            s.check(&header(7, 1, 0, 1, 10)).unwrap(),
            SequenceCheck::Append
        );
        s.update(&header(7, 1, 0, 1, 10));
        assert_eq!(
            s.check(&header(7, 0, 10, 1, 11)).unwrap_err().code,
            ResponseError::InvalidProducerEpoch
        );
        // Unknown producers and non-idempotent batches are appended.
        assert_eq!(
            s.check(&header(8, 0, 42, 1, 11)).unwrap(),
            SequenceCheck::Append
        );
        assert_eq!(
            s.check(&header(-1, -1, -1, 1, 11)).unwrap(),
            SequenceCheck::Append
        );
    }

    #[test]
    fn keeps_five_batches() {
        let mut s = ProducerStateManager::default();
        for i in 0..7 {
            s.update(&header(1, 0, i, 1, i as i64));
        }
        assert!(matches!(
            s.check(&header(1, 0, 2, 1, 0)).unwrap(),
            SequenceCheck::Duplicate(_)
        ));
        assert!(s.check(&header(1, 0, 1, 1, 0)).is_err());
        assert_eq!(s.snapshot_entries().len(), BATCHES_PER_PRODUCER_MAX);
        s.clear();
        assert_eq!(s.producer_count(), 0);
    }

    #[test]
    fn sequence_wraps() {
        assert!(in_sequence(i32::MAX, 0));
        assert!(in_sequence(4, 5));
        assert!(!in_sequence(4, 6));
        assert_eq!(decrement_sequence(2, 4), i32::MAX - 1);
        assert_eq!(decrement_sequence(9, 4), 5);
    }

    /// `producer.id.expiration.ms` counts from the producer's last batch timestamp, checked
    /// every `producer.id.expiration.check.interval.ms` of the injected clock.
    #[test]
    fn expiry_by_producer_id_expiration_ms() {
        let mut s = ProducerStateManager::new(config(100));
        s.update(&header_at(1, 0, 0, 1, 0, 10_000));
        s.update(&header_at(2, 0, 0, 1, 1, 10_500));
        assert_eq!(
            s.maybe_remove_expired(10_999),
            0,
            "first check: nothing is due"
        );
        assert_eq!(s.producer_count(), 2);
        // Producer 1 is due at 11_000, but the next check runs only 100 ms after the last.
        assert_eq!(s.maybe_remove_expired(11_050), 0);
        assert_eq!(s.producer_count(), 2);
        assert_eq!(s.maybe_remove_expired(11_099), 1);
        assert_eq!(s.producer_count(), 1);
        // An expired producer is unknown: any sequence is accepted (Kafka's rule).
        assert_eq!(
            s.check(&header(1, 0, 77, 1, 2)).unwrap(),
            SequenceCheck::Append
        );
        // A new batch keeps producer 2 alive.
        s.update(&header_at(2, 0, 1, 1, 2, 11_400));
        assert_eq!(s.maybe_remove_expired(11_600), 0);
        assert_eq!(s.remove_expired(12_400), 1);
        assert_eq!(s.producer_count(), 0);
    }

    /// A flood of producer ids is bounded: the producers idle longest go first.
    #[test]
    fn producer_count_is_bounded() {
        let mut s = ProducerStateManager::new(config(64));
        s.update(&header_at(1_000_000, 0, 0, 1, 0, 1_000_000));
        for pid in 0..10_000i64 {
            s.update(&header_at(pid, 0, 0, 1, pid + 1, pid));
            assert!(s.producer_count() <= 64);
        }
        // The most recent producer survived every eviction; the early flood did not.
        assert!(matches!(
            s.check(&header(1_000_000, 0, 0, 1, 0)).unwrap(),
            SequenceCheck::Duplicate(_)
        ));
        assert!(matches!(
            s.check(&header(9_999, 0, 0, 1, 0)).unwrap(),
            SequenceCheck::Duplicate(_)
        ));
        assert_eq!(
            s.check(&header(5, 0, 9, 1, 0)).unwrap(),
            SequenceCheck::Append
        );
        s.set_config(config(10));
        assert_eq!(s.producer_count(), 10, "a lower bound applies at once");
    }

    #[test]
    fn snapshot_entries_round_trip() {
        let mut s = ProducerStateManager::new(config(100));
        for i in 0..7 {
            s.update(&header_at(
                3,
                2,
                i * 3,
                3,
                100 + i as i64 * 3,
                5_000 + i as i64,
            ));
        }
        // A sequence that wraps inside a batch.
        s.update(&header_at(4, 0, i32::MAX - 1, 4, 200, 6_000));
        let entries = s.snapshot_entries();
        assert_eq!(entries.len(), 6);
        let bytes = gregor_storage::producer_snapshot::encode(&entries);
        let decoded = gregor_storage::producer_snapshot::decode(&bytes).unwrap();
        let mut loaded = ProducerStateManager::new(config(100));
        loaded.load_snapshot(&decoded);
        assert_eq!(loaded.snapshot_entries(), entries);
        assert!(matches!(
            loaded.check(&header(4, 0, i32::MAX - 1, 4, 0)).unwrap(),
            SequenceCheck::Duplicate(BatchMetadata {
                first_offset: 200,
                last_offset: 203,
                ..
            })
        ));
        assert!(matches!(
            loaded.check(&header(3, 2, 6, 3, 0)).unwrap(),
            SequenceCheck::Duplicate(BatchMetadata {
                first_offset: 106,
                ..
            })
        ));
        assert_eq!(
            loaded.check(&header(3, 2, 22, 1, 0)).unwrap_err().code,
            ResponseError::OutOfOrderSequenceNumber
        );
        assert_eq!(
            loaded.check(&header(3, 2, 21, 1, 0)).unwrap(),
            SequenceCheck::Append
        );
    }

    // ---- Partitions with real files: snapshots at rolls, recovery, truncation. ----

    const PRODUCERS: i64 = 40;

    fn idempotent_batch(pid: i64, seq: i32, records: i32, ts: i64) -> Bytes {
        let records: Vec<Record> = (0..records)
            .map(|i| Record {
                transactional: false,
                control: false,
                partition_leader_epoch: -1,
                producer_id: pid,
                producer_epoch: 0,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                sequence: seq + i,
                timestamp: ts,
                key: None,
                value: Some(Bytes::from(format!("{pid}-{}", seq + i))),
                headers: Default::default(),
                delete_horizon: false,
            })
            .collect();
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            records.iter(),
            &RecordEncodeOptions {
                version: 2,
                compression: Compression::None,
            },
        )
        .unwrap();
        buf.freeze()
    }

    fn partition_config() -> PartitionConfig {
        PartitionConfig {
            log: gregor_storage::LogConfig {
                segment_bytes: 2_048,
                ..Default::default()
            },
            min_insync_replicas: 1,
            timestamp_before_max_ms: i64::MAX,
            timestamp_after_max_ms: i64::MAX,
            producer_state: ProducerStateConfig {
                expiration_ms: 3_600_000,
                ..ProducerStateConfig::default()
            },
            compacted: false,
        }
    }

    fn open_partition(dir: &Path, now_ms: i64) -> Partition {
        let registration = PartitionRegistration {
            replicas: vec![1],
            isr: vec![1],
            leader: 1,
            leader_epoch: 0,
            partition_epoch: 0,
        };
        let id = PartitionId {
            topic: "t".into(),
            index: 0,
            topic_id: Uuid::nil(),
        };
        Partition::open(dir, id, 1, &registration, partition_config(), now_ms).unwrap()
    }

    /// `PRODUCERS` producers send 6 batches each (timestamps from 1_000), then one producer
    /// sends enough to roll many segments: every early producer's batches lie far before the
    /// last two segments. Returns (pid, seq, base offset) of every batch.
    fn fill(partition: &Partition) -> Vec<(i64, i32, i64)> {
        let mut sent = Vec::new();
        for round in 0..6 {
            for pid in 0..PRODUCERS {
                let result = partition
                    .append_records_as_leader(
                        &idempotent_batch(pid, round * 2, 2, 1_000),
                        -1,
                        gregor_storage::AppendOrigin::Client,
                        2_000,
                    )
                    .unwrap();
                sent.push((pid, round * 2, result.base_offset));
            }
        }
        for seq in 0..200 {
            let result = partition
                .append_records_as_leader(
                    &idempotent_batch(PRODUCERS, seq, 1, 1_500),
                    -1,
                    gregor_storage::AppendOrigin::Client,
                    2_000,
                )
                .unwrap();
            sent.push((PRODUCERS, seq, result.base_offset));
        }
        sent
    }

    fn copy_dir(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }

    fn remove_snapshots(dir: &Path) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "snapshot") {
                std::fs::remove_file(path).unwrap();
            }
        }
    }

    fn state_of(dir: &Path) -> Vec<ProducerSnapshotEntry> {
        let log = Log::open(dir, partition_config().log, 3_000).unwrap();
        load(&log, &partition_config().producer_state, 3_000)
            .unwrap()
            .snapshot_entries()
    }

    /// A crash (no clean shutdown) after many rolls: the latest snapshot plus the log after
    /// it gives the state a replay of the whole log gives, and the state before the crash;
    /// every batch of every producer's last five is answered as a duplicate at its offsets.
    #[test]
    fn recovery_from_snapshot_and_tail_equals_whole_log_replay() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("t-0");
        let partition = open_partition(&dir, 0);
        let sent = fill(&partition);
        let before = partition.producer_snapshot_entries();
        let segments = partition.segment_base_offsets();
        assert!(segments.len() > 6, "{segments:?}");
        // The old recovery read the last two segments only: the early producers are not in them.
        let last_two_start = segments[segments.len() - 2];
        assert!(sent
            .iter()
            .filter(|b| b.0 < PRODUCERS)
            .all(|b| b.2 < last_two_start));
        drop(partition); // kill -9: no clean-shutdown snapshot

        let snapshots = gregor_storage::producer_snapshot::list(&dir).unwrap();
        assert!(
            snapshots.len() >= segments.len() - 1,
            "{snapshots:?} for {segments:?}"
        );
        let whole = root.path().join("whole");
        copy_dir(&dir, &whole);
        remove_snapshots(&whole);
        let from_snapshot = state_of(&dir);
        assert_eq!(from_snapshot, before);
        assert_eq!(state_of(&whole), before);
        assert_eq!(from_snapshot.len() as i64, PRODUCERS * 5 + 5);

        let partition = open_partition(&dir, 3_000);
        let end = partition.log_end_offset();
        // The last five batches of every producer are retries the log already holds.
        let mut checked = 0;
        for pid in 0..=PRODUCERS {
            let (records, mine): (i32, Vec<_>) = if pid < PRODUCERS {
                (2, sent.iter().filter(|b| b.0 == pid).collect())
            } else {
                (1, sent.iter().filter(|b| b.0 == pid).collect())
            };
            for (pid, seq, offset) in mine.iter().rev().take(BATCHES_PER_PRODUCER_MAX) {
                let result = partition
                    .append_records_as_leader(
                        &idempotent_batch(*pid, *seq, records, 1_000),
                        -1,
                        gregor_storage::AppendOrigin::Client,
                        3_000,
                    )
                    .unwrap();
                assert_eq!(result.base_offset, *offset, "producer {pid} seq {seq}");
                checked += 1;
            }
        }
        assert_eq!(checked, (PRODUCERS + 1) * 5);
        assert_eq!(
            partition.log_end_offset(),
            end,
            "no retry was appended again"
        );
    }

    /// A corrupt latest snapshot is deleted and the state rebuilt from the one before and
    /// the log; a clean shutdown leaves a snapshot at the log end.
    #[test]
    fn corrupt_snapshot_is_skipped() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("t-0");
        let partition = open_partition(&dir, 0);
        fill(&partition);
        let before = partition.producer_snapshot_entries();
        let end = partition.log_end_offset();
        partition.close().unwrap();
        let snapshots = gregor_storage::producer_snapshot::list(&dir).unwrap();
        assert_eq!(
            snapshots.last(),
            Some(&end),
            "clean shutdown snapshot at the log end"
        );

        for offset in snapshots.iter().rev().take(2) {
            let path = dir.join(gregor_storage::producer_snapshot::file_name(*offset));
            let mut bytes = std::fs::read(&path).unwrap();
            let middle = bytes.len() / 2;
            bytes[middle] ^= 0x10;
            std::fs::write(&path, bytes).unwrap();
        }
        assert_eq!(state_of(&dir), before);
        let left = gregor_storage::producer_snapshot::list(&dir).unwrap();
        assert_eq!(left, snapshots[..snapshots.len() - 2].to_vec());
    }

    /// Truncation reloads the state: a producer whose last five batches were all cut keeps
    /// its earlier batches (from the snapshots), as a replay of the truncated log gives.
    #[test]
    fn truncation_reloads_from_snapshots() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("t-0");
        let partition = open_partition(&dir, 0);
        let sent = fill(&partition);
        // Cut in the middle of producer PRODUCERS's run.
        let cut = sent[sent.len() - 100].2;
        partition.truncate_to(cut).unwrap();
        assert!(gregor_storage::producer_snapshot::list(&dir)
            .unwrap()
            .iter()
            .all(|o| *o <= cut));
        let after = partition.producer_snapshot_entries();
        let whole = root.path().join("whole");
        copy_dir(&dir, &whole);
        remove_snapshots(&whole);
        assert_eq!(after, state_of(&whole));
        // The retry of the last batch below the cut is a duplicate; the one above is new.
        let (pid, seq, offset) = sent[sent.len() - 101];
        let result = partition
            .append_records_as_leader(
                &idempotent_batch(pid, seq, 1, 1_500),
                -1,
                gregor_storage::AppendOrigin::Client,
                3_000,
            )
            .unwrap();
        assert_eq!(result.base_offset, offset);
        let (pid, seq, _) = sent[sent.len() - 100];
        let result = partition
            .append_records_as_leader(
                &idempotent_batch(pid, seq, 1, 1_500),
                -1,
                gregor_storage::AppendOrigin::Client,
                3_000,
            )
            .unwrap();
        assert_eq!(result.base_offset, cut, "appended again at the cut");
    }

    /// Producers idle past `producer.id.expiration.ms` are gone after a restart too.
    #[test]
    fn load_expires_by_the_injected_clock() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("t-0");
        let partition = open_partition(&dir, 0);
        fill(&partition);
        partition.close().unwrap();
        let config = partition_config();
        let log = Log::open(&dir, config.log.clone(), 0).unwrap();
        let expiration_ms = config.producer_state.expiration_ms;
        // The early producers' last batches carry 1_000, the last producer's 1_500.
        let state = load(&log, &config.producer_state, 1_000 + expiration_ms - 1).unwrap();
        assert_eq!(state.producer_count() as i64, PRODUCERS + 1);
        let state = load(&log, &config.producer_state, 1_000 + expiration_ms).unwrap();
        assert_eq!(state.producer_count(), 1);
        let state = load(&log, &config.producer_state, 1_500 + expiration_ms).unwrap();
        assert_eq!(state.producer_count(), 0);
    }
}
