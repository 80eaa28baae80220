//! One partition replica on this broker: its log, its role, its high watermark and its
//! producer state (Kafka's `cluster/Partition.scala`).
//!
//! # Invariants
//! - `log_start_offset <= high_watermark <= log_end_offset`.
//! - As leader, `high_watermark` only grows, and only to the smallest log end offset of the
//!   ISR (here: replicas that confirmed they hold the data), never past data that fewer than
//!   the ISR hold.
//! - Batches in the log carry the leader epoch they were appended in; epochs never decrease
//!   along the log.

use std::collections::HashMap;
use std::path::Path;

use bytes::Bytes;
use gregor_storage::validator::{self, AppendOrigin, ValidatorConfig};
use gregor_storage::{BatchHeader, Log, LogConfig};
use kafka_protocol::ResponseError;
use parking_lot::Mutex;
use tokio::sync::watch;
use uuid::Uuid;

use super::divergence;
use super::isr::{self, FollowerProgress};
use super::producer_state::{self, ProducerStateConfig, ProducerStateManager, SequenceCheck};
use crate::error::ApiError;
use crate::metadata::PartitionRegistration;

/// Acks values of a produce request.
pub const ACKS_NONE: i16 = 0;
pub const ACKS_LEADER: i16 = 1;
pub const ACKS_ALL: i16 = -1;

/// What an append produced, for the Produce response.
#[derive(Clone, Debug)]
pub struct AppendResult {
    /// The leader epoch the batch was appended under; an acks=all wait holds only while
    /// this replica still leads in that epoch.
    pub leader_epoch: i32,
    pub base_offset: i64,
    pub last_offset: i64,
    /// -1 unless the topic uses LogAppendTime.
    pub log_append_time_ms: i64,
    pub log_start_offset: i64,
}

/// An AlterPartition the leader sends to the controller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IsrChange {
    pub topic_id: Uuid,
    pub partition: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub new_isr: Vec<i32>,
}

/// A follower's fetch of one partition.
#[derive(Clone, Copy, Debug)]
pub struct FollowerFetch {
    pub replica_id: i32,
    pub fetch_offset: i64,
    pub current_leader_epoch: i32,
    pub last_fetched_epoch: i32,
}

/// What the leader answers a follower.
#[derive(Clone, Debug)]
pub struct FollowerRead {
    pub records: Bytes,
    pub high_watermark: i64,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
    /// (epoch, end offset) when the follower's log diverged from the leader's.
    pub diverging_epoch: Option<(i32, i64)>,
    pub high_watermark_advanced: bool,
}

/// A consumer's read, in the shape of a follower's: no divergence, no HW change.
impl From<ReadResult> for FollowerRead {
    fn from(r: ReadResult) -> Self {
        FollowerRead {
            records: r.records,
            high_watermark: r.high_watermark,
            log_start_offset: r.log_start_offset,
            log_end_offset: r.log_end_offset,
            diverging_epoch: None,
            high_watermark_advanced: false,
        }
    }
}

/// A follower's position, for its next fetch.
#[derive(Clone, Copy, Debug)]
pub struct FollowerFetchState {
    pub leader: i32,
    pub leader_epoch: i32,
    pub fetch_offset: i64,
    pub last_fetched_epoch: i32,
    pub log_start_offset: i64,
}

/// What a read returned, for the Fetch response.
#[derive(Clone, Debug)]
pub struct ReadResult {
    pub records: Bytes,
    pub high_watermark: i64,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
}

/// Mutable state behind the partition lock.
struct PartitionState {
    log: Log,
    /// The leader's broker id; -1 when offline.
    leader: i32,
    leader_epoch: i32,
    partition_epoch: i32,
    replicas: Vec<i32>,
    isr: Vec<i32>,
    high_watermark: i64,
    /// Log end offsets that followers reported in their fetches (leader only).
    /// What the leader knows of each follower (leader only).
    followers: HashMap<i32, FollowerProgress>,
    /// An ISR change sent to the controller and not yet seen in the image, with the
    /// partition epoch it was based on. The HW counts its members too (Kafka's "maximal
    /// ISR"), so a replica about to join can never be behind the HW it joins at.
    pending_isr: Option<(Vec<i32>, i32)>,
    producers: ProducerStateManager,
    config: PartitionConfig,
}

/// A partition's settings from its topic configs.
#[derive(Clone, Debug)]
pub struct PartitionConfig {
    pub log: LogConfig,
    /// `min.insync.replicas`: ISR size that acks=all requires.
    pub min_insync_replicas: i32,
    /// `message.timestamp.before.max.ms`: how far a CreateTime timestamp may lag now.
    pub timestamp_before_max_ms: i64,
    /// `message.timestamp.after.max.ms`: how far a CreateTime timestamp may lead now.
    pub timestamp_after_max_ms: i64,
    /// Producer-state expiry and bound (broker configs).
    pub producer_state: ProducerStateConfig,
    /// `cleanup.policy` includes `compact`: records need keys.
    pub compacted: bool,
}

impl PartitionConfig {
    /// What Kafka's LogValidator takes from these configs, for an append from `origin`.
    pub fn validator(&self, origin: AppendOrigin) -> ValidatorConfig {
        ValidatorConfig {
            max_message_bytes: self.log.max_message_bytes,
            segment_bytes: self.log.segment_bytes,
            timestamp_type: self.log.timestamp_type,
            timestamp_before_max_ms: self.timestamp_before_max_ms,
            timestamp_after_max_ms: self.timestamp_after_max_ms,
            compacted: self.compacted,
            origin,
        }
    }
}

/// Which partition: topic name, index and topic id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionId {
    pub topic: String,
    pub index: i32,
    pub topic_id: Uuid,
}

pub struct Partition {
    pub topic: String,
    pub index: i32,
    pub topic_id: Uuid,
    /// This broker's id.
    local_broker_id: i32,
    state: Mutex<PartitionState>,
    /// The published high watermark with the leadership it was reached under; acks=all
    /// produce requests wait on it.
    high_watermark_tx: watch::Sender<HighWatermark>,
}

/// What an acks=all produce waits on. The HW alone is not enough: a leader that lost its
/// leadership truncates, re-fetches from the new leader and sees the HW pass the offset
/// again, over another record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HighWatermark {
    pub offset: i64,
    /// The leader epoch while this replica leads; None while it follows.
    pub leading_epoch: Option<i32>,
}

impl Partition {
    /// Opens (recovering) the partition's log and loads its producer state (the latest
    /// snapshot plus the log after it).
    pub fn open(
        dir: &Path,
        id: PartitionId,
        local_broker_id: i32,
        registration: &PartitionRegistration,
        config: PartitionConfig,
        now_ms: i64,
    ) -> Result<Partition, ApiError> {
        let log = Log::open(dir, config.log.clone(), now_ms)?;
        let producers = producer_state::load(&log, &config.producer_state, now_ms)?;
        // A single-replica partition commits everything it holds: the data survived, and no
        // other replica can disagree. With followers, the HW is only learned from the ISR.
        let high_watermark = if registration.replicas == [local_broker_id] {
            log.log_end_offset()
        } else {
            log.log_start_offset()
        };
        let (high_watermark_tx, _) = watch::channel(HighWatermark {
            offset: high_watermark,
            leading_epoch: (registration.leader == local_broker_id)
                .then_some(registration.leader_epoch),
        });
        let partition = Partition {
            topic: id.topic,
            index: id.index,
            topic_id: id.topic_id,
            local_broker_id,
            state: Mutex::new(PartitionState {
                log,
                leader: registration.leader,
                leader_epoch: registration.leader_epoch,
                partition_epoch: registration.partition_epoch,
                replicas: registration.replicas.clone(),
                isr: registration.isr.clone(),
                high_watermark,
                followers: HashMap::new(),
                pending_isr: None,
                producers,
                config,
            }),
            high_watermark_tx,
        };
        Ok(partition)
    }

    /// Applies a new registration from the metadata image.
    pub fn update_registration(&self, registration: &PartitionRegistration) {
        let mut s = self.state.lock();
        if registration.leader_epoch != s.leader_epoch {
            s.followers.clear();
        }
        if s.pending_isr.as_ref().is_some_and(|(_, base)| {
            registration.partition_epoch > *base || registration.leader_epoch != s.leader_epoch
        }) {
            s.pending_isr = None;
        }
        let becomes_leader = registration.leader == self.local_broker_id
            && (s.leader != self.local_broker_id || registration.leader_epoch != s.leader_epoch);
        if becomes_leader {
            // Kafka's `makeLeader`: the new epoch starts at this replica's log end, so that
            // followers that diverge from it can find where (OffsetForLeaderEpoch /
            // DivergingEpoch) and truncate there.
            let leo = s.log.log_end_offset();
            if let Err(e) = s
                .log
                .maybe_assign_epoch_start_offset(registration.leader_epoch, leo)
            {
                tracing::error!(topic = %self.topic, partition = self.index, error = %e, "cannot record the new leader epoch");
            }
        }
        s.leader = registration.leader;
        s.leader_epoch = registration.leader_epoch;
        s.partition_epoch = registration.partition_epoch;
        s.replicas = registration.replicas.clone();
        s.isr = registration.isr.clone();
        self.maybe_increment_high_watermark(&mut s);
        // Waiters re-check whether they still wait under the leadership they appended in.
        self.publish_high_watermark(&s);
    }

    fn publish_high_watermark(&self, s: &PartitionState) {
        let view = HighWatermark {
            offset: s.high_watermark,
            leading_epoch: (s.leader == self.local_broker_id).then_some(s.leader_epoch),
        };
        self.high_watermark_tx.send_if_modified(|v| {
            let changed = *v != view;
            *v = view;
            changed
        });
    }

    pub fn update_config(&self, config: PartitionConfig) {
        let mut s = self.state.lock();
        s.log.update_config(config.log.clone());
        s.producers.set_config(config.producer_state.clone());
        s.config = config;
    }

    pub fn is_leader(&self) -> bool {
        self.state.lock().leader == self.local_broker_id
    }

    pub fn leader_epoch(&self) -> i32 {
        self.state.lock().leader_epoch
    }

    pub fn high_watermark(&self) -> i64 {
        self.state.lock().high_watermark
    }

    pub fn log_start_offset(&self) -> i64 {
        self.state.lock().log.log_start_offset()
    }

    pub fn log_end_offset(&self) -> i64 {
        self.state.lock().log.log_end_offset()
    }

    pub fn subscribe_high_watermark(&self) -> watch::Receiver<HighWatermark> {
        self.high_watermark_tx.subscribe()
    }

    /// Checks that this broker leads the partition at the epoch the client believes in
    /// (-1: the client does not say).
    fn check_leader(&self, s: &PartitionState, current_leader_epoch: i32) -> Result<(), ApiError> {
        if current_leader_epoch >= 0 {
            if current_leader_epoch < s.leader_epoch {
                return Err(ApiError::new(ResponseError::FencedLeaderEpoch));
            }
            if current_leader_epoch > s.leader_epoch {
                return Err(ApiError::new(ResponseError::UnknownLeaderEpoch));
            }
        }
        if s.leader != self.local_broker_id {
            return Err(ApiError::new(ResponseError::NotLeaderOrFollower));
        }
        Ok(())
    }

    /// HW = min LEO over the ISR; moves only forward (Kafka's `maybeIncrementLeaderHW`).
    fn maybe_increment_high_watermark(&self, s: &mut PartitionState) {
        if s.leader != self.local_broker_id {
            return;
        }
        let leo = s.log.log_end_offset();
        let mut new_hw = leo;
        let pending = s
            .pending_isr
            .as_ref()
            .map(|(isr, _)| isr.as_slice())
            .unwrap_or(&[]);
        for r in s.isr.iter().chain(pending.iter()) {
            if *r != self.local_broker_id {
                let follower_leo = s
                    .followers
                    .get(r)
                    .map(|p| p.log_end_offset)
                    .filter(|o| *o >= 0)
                    .unwrap_or(s.high_watermark);
                new_hw = new_hw.min(follower_leo);
            }
        }
        if new_hw > s.high_watermark {
            debug_assert!(new_hw <= leo, "high watermark past the log end");
            s.high_watermark = new_hw;
            self.publish_high_watermark(s);
        }
    }

    /// A follower's fetch (Kafka's `fetchRecords` for a replica): checks that the follower's
    /// log does not diverge from this leader's, records its log end offset (its fetch offset),
    /// advances the HW, and returns records up to the log end.
    pub fn read_for_follower(
        &self,
        fetch: &FollowerFetch,
        max_bytes: usize,
        now_ms: i64,
    ) -> Result<FollowerRead, ApiError> {
        let mut s = self.state.lock();
        self.check_leader(&s, fetch.current_leader_epoch)?;
        if !s.replicas.contains(&fetch.replica_id) {
            return Err(ApiError::with_message(
                ResponseError::NotLeaderOrFollower,
                format!(
                    "Broker {} is not a replica of {}-{}",
                    fetch.replica_id, self.topic, self.index
                ),
            ));
        }
        let log_start_offset = s.log.log_start_offset();
        let log_end_offset = s.log.log_end_offset();
        let hw_before = s.high_watermark;
        // KIP-320: a follower whose last fetched epoch ends earlier here than its fetch
        // offset (or which this leader never saw) has diverged; tell it where to truncate.
        let history_start = s
            .log
            .leader_epoch_cache()
            .entries()
            .first()
            .map(|e| e.start_offset)
            .unwrap_or(log_start_offset);
        let leader_end = if fetch.last_fetched_epoch >= 0 {
            s.log.end_offset_for_epoch(fetch.last_fetched_epoch)
        } else {
            None
        };
        if let Some((epoch, end_offset)) = divergence::diverging_epoch(
            leader_end,
            history_start,
            fetch.last_fetched_epoch,
            fetch.fetch_offset,
        ) {
            return Ok(FollowerRead {
                records: Bytes::new(),
                high_watermark: s.high_watermark,
                log_start_offset,
                log_end_offset,
                diverging_epoch: Some((epoch, end_offset)),
                high_watermark_advanced: false,
            });
        }
        if fetch.fetch_offset < log_start_offset || fetch.fetch_offset > log_end_offset {
            return Err(ApiError::with_message(
                ResponseError::OffsetOutOfRange,
                format!(
                    "Offset {} is out of range [{log_start_offset}, {log_end_offset}]",
                    fetch.fetch_offset
                ),
            ));
        }
        // A follower's fetch offset is its log end offset: everything before it is held.
        s.followers
            .entry(fetch.replica_id)
            .or_insert_with(|| FollowerProgress::new(now_ms))
            .on_fetch(fetch.fetch_offset, log_end_offset, now_ms);
        self.maybe_increment_high_watermark(&mut s);
        let records = if fetch.fetch_offset < log_end_offset {
            s.log
                .read(fetch.fetch_offset, max_bytes, log_end_offset, true)?
                .records
        } else {
            Bytes::new()
        };
        Ok(FollowerRead {
            records,
            high_watermark: s.high_watermark,
            log_start_offset,
            log_end_offset,
            diverging_epoch: None,
            high_watermark_advanced: s.high_watermark > hw_before,
        })
    }

    /// This replica's end offset of `epoch` (OffsetForLeaderEpoch semantics).
    pub fn end_offset_for_epoch(&self, epoch: i32) -> Option<(i32, i64)> {
        self.state.lock().log.end_offset_for_epoch(epoch)
    }

    /// Whether the ISR is at least `min.insync.replicas` (what acks=all promises).
    pub fn has_enough_isr(&self) -> bool {
        let s = self.state.lock();
        s.isr.len() as i32 >= s.config.min_insync_replicas
    }

    /// The ISR change this leader should ask the controller for, if any (at most one in
    /// flight). Followers it has not heard from since it became leader get a full lag period.
    pub fn maybe_propose_isr_change(
        &self,
        now_ms: i64,
        replica_lag_time_max_ms: i64,
    ) -> Option<IsrChange> {
        let mut s = self.state.lock();
        if s.leader != self.local_broker_id || s.pending_isr.is_some() {
            return None;
        }
        for r in s.replicas.clone() {
            if r != self.local_broker_id {
                s.followers
                    .entry(r)
                    .or_insert_with(|| FollowerProgress::new(now_ms));
            }
        }
        let epoch_start = current_epoch_start_offset(&s);
        let new_isr = isr::next_isr(
            self.local_broker_id,
            &s.replicas,
            &s.isr,
            &s.followers,
            s.high_watermark,
            epoch_start,
            now_ms,
            replica_lag_time_max_ms,
        )?;
        s.pending_isr = Some((new_isr.clone(), s.partition_epoch));
        Some(IsrChange {
            topic_id: self.topic_id,
            partition: self.index,
            leader_epoch: s.leader_epoch,
            partition_epoch: s.partition_epoch,
            new_isr,
        })
    }

    /// The controller refused or never answered the ISR change: forget it, so the next check
    /// proposes again from the image's ISR.
    pub fn isr_change_failed(&self) {
        self.state.lock().pending_isr = None;
    }

    /// What a follower sends in its next fetch for this partition.
    pub fn follower_fetch_state(&self) -> Option<FollowerFetchState> {
        let s = self.state.lock();
        if s.leader == self.local_broker_id || s.leader < 0 {
            return None;
        }
        Some(FollowerFetchState {
            leader: s.leader,
            leader_epoch: s.leader_epoch,
            fetch_offset: s.log.log_end_offset(),
            last_fetched_epoch: s.log.latest_epoch().unwrap_or(-1),
            log_start_offset: s.log.log_start_offset(),
        })
    }

    /// A follower appends what its leader sent (offsets and epochs as the leader assigned
    /// them) and takes the leader's HW, capped by its own log end.
    pub fn append_as_follower(
        &self,
        leader_epoch: i32,
        records: &Bytes,
        leader_high_watermark: i64,
        now_ms: i64,
    ) -> Result<(), ApiError> {
        let mut s = self.state.lock();
        if s.leader_epoch != leader_epoch || s.leader == self.local_broker_id {
            return Ok(()); // the response belongs to an older leadership; the next fetch redoes it
        }
        if !records.is_empty() {
            let info = s.log.append_as_follower(records, now_ms)?;
            record_appended(&mut s, &info.batches);
        }
        let hw = leader_high_watermark.min(s.log.log_end_offset());
        if hw > s.high_watermark {
            s.high_watermark = hw;
            self.publish_high_watermark(&s);
        }
        Ok(())
    }

    /// Truncates a follower's log after a divergence (never below its log start), with its
    /// producer state.
    pub fn truncate_to(&self, offset: i64) -> Result<(), ApiError> {
        let mut s = self.state.lock();
        let target = offset.max(s.log.log_start_offset());
        if target >= s.log.log_end_offset() {
            // No records to cut; the log still drops an epoch entry that starts at its end.
            s.log.truncate_to(target)?;
            return Ok(());
        }
        tracing::info!(topic = %self.topic, partition = self.index, from = s.log.log_end_offset(), to = target, "truncating diverged log");
        s.log.truncate_to(target)?;
        // Batches evicted from a producer's last five may be the ones before the cut: the
        // state is reloaded from the snapshots (none lies past the new end) and the log.
        s.producers = producer_state::rebuild(&s.log, &s.config.producer_state)?;
        if s.high_watermark > s.log.log_end_offset() {
            s.high_watermark = s.log.log_end_offset();
            self.publish_high_watermark(&s);
        }
        Ok(())
    }

    /// A follower that fell behind the leader's log start starts over there.
    pub fn restart_at(&self, offset: i64) -> Result<(), ApiError> {
        let mut s = self.state.lock();
        tracing::info!(topic = %self.topic, partition = self.index, offset, "follower behind the leader's log start: restarting the log");
        s.log.truncate_fully_and_start_at(offset)?;
        s.producers.clear();
        s.high_watermark = offset;
        self.publish_high_watermark(&s);
        Ok(())
    }

    /// Appends one batch as leader (Kafka's `appendRecordsToLeader`): validated record by
    /// record as Kafka's LogValidator does, de-duplicated by producer state, then given
    /// offsets and appended.
    pub fn append_records_as_leader(
        &self,
        records: &Bytes,
        required_acks: i16,
        origin: AppendOrigin,
        now_ms: i64,
    ) -> Result<AppendResult, ApiError> {
        let mut s = self.state.lock();
        self.check_leader(&s, -1)?;
        let isr_size = s.isr.len() as i32;
        if required_acks == ACKS_ALL && isr_size < s.config.min_insync_replicas {
            return Err(ApiError::with_message(
                ResponseError::NotEnoughReplicas,
                format!("The size of the current ISR {isr_size} is insufficient to satisfy the min.isr requirement of {}", s.config.min_insync_replicas),
            ));
        }
        let header = single_batch_header(records)?;
        let validated = validator::validate(records, &s.config.validator(origin), now_ms)?;
        match s.producers.check(&header)? {
            SequenceCheck::Duplicate(dup) => {
                return Ok(AppendResult {
                    leader_epoch: s.leader_epoch,
                    base_offset: dup.first_offset,
                    last_offset: dup.last_offset,
                    log_append_time_ms: -1,
                    log_start_offset: s.log.log_start_offset(),
                });
            }
            SequenceCheck::Append => {}
        }
        // No transaction is ever ongoing until transactions exist.
        validator::verify_transaction_state(&header, origin, false)?;
        let mut bytes = records.to_vec();
        validated.apply(&mut bytes);
        let leader_epoch = s.leader_epoch;
        let info = s.log.append_as_leader(&mut bytes, leader_epoch, now_ms)?;
        record_appended(&mut s, &info.batches);
        self.maybe_increment_high_watermark(&mut s);
        Ok(AppendResult {
            leader_epoch,
            base_offset: info.first_offset,
            last_offset: info.last_offset,
            log_append_time_ms: info.log_append_time,
            log_start_offset: s.log.log_start_offset(),
        })
    }

    /// Periodic work: time-based roll, producer expiry, retention, time-based flush.
    pub fn maintain(&self, now_ms: i64) -> Result<usize, ApiError> {
        let mut s = self.state.lock();
        s.log.maybe_roll(now_ms)?;
        record_appended(&mut s, &[]);
        let expired = s.producers.maybe_remove_expired(now_ms);
        if expired > 0 {
            tracing::debug!(topic = %self.topic, partition = self.index, expired, "expired producer ids");
        }
        // Kafka never deletes data consumers could not yet read: retention stops at the HW.
        let high_watermark = s.high_watermark;
        let deleted = s.log.delete_old_segments_up_to(now_ms, high_watermark)?;
        // flush.ms must hold even when no appends arrive.
        s.log.maybe_flush(now_ms)?;
        Ok(deleted)
    }

    /// Reads whole batches from `fetch_offset` for a consumer: only below the HW.
    pub fn read(
        &self,
        fetch_offset: i64,
        current_leader_epoch: i32,
        max_bytes: usize,
        min_one_batch: bool,
    ) -> Result<ReadResult, ApiError> {
        let s = self.state.lock();
        self.check_leader(&s, current_leader_epoch)?;
        let log_start_offset = s.log.log_start_offset();
        let log_end_offset = s.log.log_end_offset();
        if fetch_offset < log_start_offset || fetch_offset > log_end_offset {
            return Err(ApiError::with_message(
                ResponseError::OffsetOutOfRange,
                format!(
                    "Offset {fetch_offset} is out of range [{log_start_offset}, {log_end_offset}]"
                ),
            ));
        }
        let records = if fetch_offset >= s.high_watermark {
            Bytes::new()
        } else {
            s.log
                .read(fetch_offset, max_bytes, s.high_watermark, min_one_batch)?
                .records
        };
        Ok(ReadResult {
            records,
            high_watermark: s.high_watermark,
            log_start_offset,
            log_end_offset,
        })
    }

    /// Whole batches from `start_offset` up to the log end (not the HW), for the group
    /// coordinator's load of a partition it now leads: as leader, its whole log is what the
    /// partition will commit.
    pub fn read_to_log_end(&self, start_offset: i64, max_bytes: usize) -> Result<Bytes, ApiError> {
        let s = self.state.lock();
        let end = s.log.log_end_offset();
        Ok(s.log.read(start_offset, max_bytes, end, true)?.records)
    }

    /// A follower moves its log start offset up to the leader's (Kafka's follower does the
    /// same after each fetch), never past its own high watermark, so records the leader
    /// deleted (DeleteRecords, the offsets checkpoint) go from every replica.
    pub fn follow_leader_log_start_offset(
        &self,
        leader_log_start_offset: i64,
    ) -> Result<(), ApiError> {
        let mut s = self.state.lock();
        if s.leader == self.local_broker_id {
            return Ok(());
        }
        let target = leader_log_start_offset.min(s.high_watermark);
        if target > s.log.log_start_offset() {
            s.log.maybe_increment_log_start_offset(target)?;
        }
        Ok(())
    }

    /// ListOffsets for one partition: (offset, timestamp, leader epoch).
    pub fn fetch_offset_for_timestamp(
        &self,
        timestamp: i64,
        current_leader_epoch: i32,
    ) -> Result<Option<(i64, i64, i32)>, ApiError> {
        let s = self.state.lock();
        self.check_leader(&s, current_leader_epoch)?;
        let epoch_of = |offset: i64| epoch_for_offset(&s.log, offset).unwrap_or(s.leader_epoch);
        let hw = s.high_watermark;
        // A new leader may hold a HW below what the previous leader exposed; until its HW
        // reaches the start of its own epoch it answers OFFSET_NOT_AVAILABLE, so the log end
        // a client observes never goes backwards (Kafka's `fetchOffsetForTimestamp`).
        let epoch_start = current_epoch_start_offset(&s);
        if hw < epoch_start {
            return Err(ApiError::with_message(
                ResponseError::OffsetNotAvailable,
                format!("The high watermark {hw} of the new leader has not reached its epoch's start offset {epoch_start}"),
            ));
        }
        let found = match timestamp {
            // LATEST: the high watermark (READ_UNCOMMITTED and READ_COMMITTED alike: there are
            // no transactions, so the last stable offset is the HW).
            -1 => Some((hw, -1)),
            // EARLIEST and EARLIEST_LOCAL: the log start offset.
            -2 | -4 => Some((s.log.log_start_offset(), -1)),
            // MAX_TIMESTAMP: the record with the largest timestamp below the HW.
            -3 => s
                .log
                .max_timestamp_and_offset()
                .filter(|(_, o)| *o < hw)
                .map(|(ts, o)| (o, ts))
                .or(Some((-1, -1))),
            // LATEST_TIERED: nothing is tiered.
            -5 => Some((-1, -1)),
            ts if ts < 0 => {
                return Err(ApiError::with_message(
                    ResponseError::InvalidRequest,
                    format!("Unknown special timestamp {ts}"),
                ))
            }
            ts => s
                .log
                .fetch_offset_by_timestamp(ts)?
                .filter(|(o, _)| *o < hw),
        };
        Ok(found.map(|(offset, ts)| (offset, ts, if offset >= 0 { epoch_of(offset) } else { -1 })))
    }

    /// OffsetForLeaderEpoch: the largest epoch <= `leader_epoch` this leader knows and the
    /// offset where it ended (the next epoch's start, or the log end for the latest one);
    /// (-1, -1) when there is none.
    pub fn last_offset_for_leader_epoch(
        &self,
        current_leader_epoch: i32,
        leader_epoch: i32,
    ) -> Result<(i32, i64), ApiError> {
        let s = self.state.lock();
        self.check_leader(&s, current_leader_epoch)?;
        Ok(s.log.end_offset_for_epoch(leader_epoch).unwrap_or((-1, -1)))
    }

    /// DeleteRecords: moves the log start offset to `offset` (-1: the HW); returns the new
    /// low watermark.
    pub fn delete_records_on_leader(&self, offset: i64) -> Result<i64, ApiError> {
        let mut s = self.state.lock();
        self.check_leader(&s, -1)?;
        let target = if offset == -1 {
            s.high_watermark
        } else {
            offset
        };
        if target < 0 || target > s.high_watermark {
            return Err(ApiError::with_message(
                ResponseError::OffsetOutOfRange,
                format!("Cannot increment the log start offset to {target} of partition {}-{} since it is larger than the high watermark {}", self.topic, self.index, s.high_watermark),
            ));
        }
        s.log.maybe_increment_log_start_offset(target)?;
        Ok(s.log.log_start_offset())
    }

    /// Writes a producer snapshot at the log end, then flushes and closes the log (clean
    /// shutdown; Kafka's `UnifiedLog.close` takes the snapshot the same way).
    pub fn close(self) -> Result<(), ApiError> {
        let mut state = self.state.into_inner();
        let log_end_offset = state.log.log_end_offset();
        let entries = state.producers.snapshot_entries();
        if let Err(e) = state.log.write_producer_snapshot(log_end_offset, &entries) {
            // The roll snapshots and the log still rebuild the state, only with a longer replay.
            tracing::warn!(topic = %self.topic, partition = self.index, error = %e, "cannot write the shutdown producer snapshot");
        }
        state.log.close()?;
        Ok(())
    }

    /// Deletes the log and its directory (topic deleted, or replica moved away).
    pub fn delete(self) -> Result<(), ApiError> {
        let state = self.state.into_inner();
        state.log.delete()?;
        Ok(())
    }

    /// For tests: the producer state as snapshot entries.
    #[cfg(test)]
    pub(crate) fn producer_snapshot_entries(&self) -> Vec<gregor_storage::ProducerSnapshotEntry> {
        self.state.lock().producers.snapshot_entries()
    }

    /// For tests: the log's segment base offsets.
    #[cfg(test)]
    pub(crate) fn segment_base_offsets(&self) -> Vec<i64> {
        self.state.lock().log.segment_base_offsets()
    }

    /// For tests and diagnostics: (replicas, isr, leader, leader epoch, partition epoch).
    pub fn registration(&self) -> (Vec<i32>, Vec<i32>, i32, i32, i32) {
        let s = self.state.lock();
        (
            s.replicas.clone(),
            s.isr.clone(),
            s.leader,
            s.leader_epoch,
            s.partition_epoch,
        )
    }
}

/// Records appended batches in the producer state, writing the producer snapshot of every
/// segment roll the append made (Kafka's `takeProducerSnapshot` in `roll`) once the state holds
/// exactly the batches below that roll's offset. A failed snapshot write is only logged: the
/// previous snapshot plus a longer replay of the log rebuild the same state.
fn record_appended(s: &mut PartitionState, batches: &[BatchHeader]) {
    let mut batches = batches.iter().peekable();
    for roll_offset in s.log.take_pending_producer_snapshots() {
        while let Some(batch) = batches.next_if(|b| b.base_offset < roll_offset) {
            s.producers.update(batch);
        }
        let entries = s.producers.snapshot_entries();
        if let Err(e) = s.log.write_producer_snapshot(roll_offset, &entries) {
            tracing::warn!(dir = %s.log.dir().display(), offset = roll_offset, error = %e, "cannot write producer snapshot");
        }
    }
    for batch in batches {
        s.producers.update(batch);
    }
}

/// Where the partition's current leader epoch starts in its log (0 if it never wrote in it).
fn current_epoch_start_offset(s: &PartitionState) -> i64 {
    s.log
        .leader_epoch_cache()
        .entries()
        .iter()
        .find(|e| e.epoch == s.leader_epoch)
        .map(|e| e.start_offset)
        .unwrap_or(0)
}

/// The leader epoch in which `offset` was written, from the epoch cache.
fn epoch_for_offset(log: &Log, offset: i64) -> Option<i32> {
    log.leader_epoch_cache().epoch_for_offset(offset)
}

/// Produce v3+ carries exactly one v2 batch per partition (Kafka rejects anything else).
fn single_batch_header(records: &Bytes) -> Result<BatchHeader, ApiError> {
    let mut headers = Vec::with_capacity(1);
    for item in gregor_storage::batches(records) {
        let (header, _) = item?;
        headers.push(header);
    }
    match headers.as_slice() {
        [one] => Ok(*one),
        [] => Err(ApiError::with_message(
            ResponseError::InvalidRecord,
            "Produce request carries no record batch",
        )),
        _ => Err(ApiError::with_message(
            ResponseError::InvalidRecord,
            "Produce requests must carry exactly one record batch per partition",
        )),
    }
}
