//! The transaction coordinator service (Kafka's `TransactionCoordinator` with its
//! `TransactionStateManager`): the transactional ids of the `__transaction_state`
//! partitions this node leads, their loading on leadership change, and the writes that
//! carry every state change.
//!
//! A request runs a `decisions` function under the lock, which marks one transition
//! pending; the transition's record is appended to the id's partition as leader and takes
//! effect (`complete_transition`) once the high watermark passes it, so no answer reflects
//! a state the ISR does not hold. A failed append forgets the pending transition.
//!
//! # Invariants
//! - `txns` holds only ids of loaded shards; an id's `shard` is its partition.
//! - The coordinator epoch of a shard is the partition's leader epoch when it was loaded; a
//!   write checks the partition still leads at that epoch, and markers carry it.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::ResponseError;
use parking_lot::Mutex;
use tokio::sync::mpsc;

use super::config::TransactionCoordinatorConfig;
use super::decisions::{self, EndAction, InitAction};
use super::log::{self, TxnLogEntry};
use super::placement::{self, TRANSACTION_STATE_TOPIC};
use super::state::{TransactionMetadata, TransactionState, TxnRecord, TxnTransit};
use crate::broker::Broker;
use crate::clock::now_ms;
use crate::error::ApiError;
use crate::metadata::{MetadataImage, MetadataListener, MetadataPublisher};
use crate::replica::{ReplicaManager, TopicPartition};

/// How much of the log one read returns while loading.
const LOAD_READ_BYTES: usize = 1 << 20;

/// One `__transaction_state` partition this node leads.
struct Shard {
    /// The coordinator epoch: the partition's leader epoch when it was loaded.
    leader_epoch: i32,
    loaded: bool,
}

struct Entry {
    meta: TransactionMetadata,
    shard: i32,
}

#[derive(Default)]
struct Inner {
    shards: HashMap<i32, Shard>,
    txns: HashMap<String, Entry>,
    /// Ids whose markers a task is sending now (at most one task per id).
    sending_markers: HashSet<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct LoadJob {
    partition: i32,
    leader_epoch: i32,
}

/// A transaction whose markers must be written: what `markers.rs` sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MarkerJob {
    pub transactional_id: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub commit: bool,
    pub coordinator_epoch: i32,
    pub partitions: Vec<(String, i32)>,
}

/// A transaction as DescribeTransactions reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxnDescription {
    pub state: TransactionState,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub txn_timeout_ms: i32,
    pub txn_start_timestamp_ms: i64,
    pub partitions: Vec<(String, i32)>,
}

/// The answer of InitProducerId / EndTxn v5.
pub type ProducerIdAndEpoch = (i64, i16);

pub struct TransactionCoordinator {
    config: TransactionCoordinatorConfig,
    node_id: i32,
    replica_manager: Arc<ReplicaManager>,
    metadata: Arc<MetadataPublisher>,
    inner: Mutex<Inner>,
    load_tx: mpsc::UnboundedSender<LoadJob>,
    load_rx: Mutex<Option<mpsc::UnboundedReceiver<LoadJob>>>,
    creating_topic: AtomicBool,
}

/// Kafka's mapping of a failed transaction-log append (`TransactionStateManager.appendTransactionToLog`).
fn append_error(e: ResponseError) -> ResponseError {
    use ResponseError as E;
    match e {
        E::UnknownTopicOrPartition
        | E::NotEnoughReplicas
        | E::NotEnoughReplicasAfterAppend
        | E::RequestTimedOut => E::CoordinatorNotAvailable,
        E::NotLeaderOrFollower | E::KafkaStorageError | E::FencedLeaderEpoch => E::NotCoordinator,
        E::MessageTooLarge | E::RecordListTooLarge => E::UnknownServerError,
        other => other,
    }
}

fn marker_job(id: &str, r: &TxnRecord, coordinator_epoch: i32) -> MarkerJob {
    debug_assert!(matches!(
        r.state,
        TransactionState::PrepareCommit | TransactionState::PrepareAbort
    ));
    MarkerJob {
        transactional_id: id.to_string(),
        producer_id: r.producer_id,
        producer_epoch: r.producer_epoch,
        commit: r.state == TransactionState::PrepareCommit,
        coordinator_epoch,
        partitions: r.partitions.iter().cloned().collect(),
    }
}

impl TransactionCoordinator {
    pub fn new(
        config: TransactionCoordinatorConfig,
        node_id: i32,
        replica_manager: Arc<ReplicaManager>,
        metadata: Arc<MetadataPublisher>,
    ) -> Self {
        let (load_tx, load_rx) = mpsc::unbounded_channel();
        TransactionCoordinator {
            config,
            node_id,
            replica_manager,
            metadata,
            inner: Mutex::new(Inner::default()),
            load_tx,
            load_rx: Mutex::new(Some(load_rx)),
            creating_topic: AtomicBool::new(false),
        }
    }

    pub fn config(&self) -> &TransactionCoordinatorConfig {
        &self.config
    }

    /// Partitions of `__transaction_state` once it exists (the topic's own count).
    pub fn state_partitions(image: &MetadataImage) -> Option<i32> {
        image
            .topic(TRANSACTION_STATE_TOPIC)
            .map(|t| t.partitions.len() as i32)
            .filter(|n| *n > 0)
    }

    pub fn partition_for(image: &MetadataImage, transactional_id: &str) -> Option<i32> {
        Self::state_partitions(image).map(|n| placement::partition_for(transactional_id, n))
    }

    pub fn try_begin_topic_creation(&self) -> bool {
        !self.creating_topic.swap(true, Ordering::SeqCst)
    }

    pub fn finish_topic_creation(&self) {
        self.creating_topic.store(false, Ordering::SeqCst);
    }

    /// The shard of the id and its coordinator epoch, if this node coordinates it now.
    fn check(&self, inner: &Inner, transactional_id: &str) -> Result<(i32, i32), ResponseError> {
        let image = self.metadata.image();
        let shard =
            Self::partition_for(&image, transactional_id).ok_or(ResponseError::NotCoordinator)?;
        match inner.shards.get(&shard) {
            None => Err(ResponseError::NotCoordinator),
            Some(s) if !s.loaded => Err(ResponseError::CoordinatorLoadInProgress),
            Some(s) => Ok((shard, s.leader_epoch)),
        }
    }

    /// Appends `entry` to the shard's partition and waits until the ISR holds it.
    async fn append(
        &self,
        shard: i32,
        leader_epoch: i32,
        entry: TxnLogEntry,
    ) -> Result<(), ResponseError> {
        let image = self.metadata.image();
        let tp = TopicPartition::new(TRANSACTION_STATE_TOPIC, shard);
        let partition = self
            .replica_manager
            .get_partition(&image, &tp)
            .map_err(|e| append_error(e.code))?;
        if partition.leader_epoch() != leader_epoch {
            return Err(ResponseError::NotCoordinator);
        }
        let batch = log::encode_batch(std::slice::from_ref(&entry), now_ms());
        let appended = self
            .replica_manager
            .append_to_internal_topic(&partition, &batch)
            .map_err(|e| append_error(e.code))?;
        let deadline =
            tokio::time::Instant::now() + Duration::from_millis(self.config.write_timeout_ms);
        // Only while this node leads at the coordinator epoch: another leader's HW could pass
        // the same offset over other records.
        ReplicaManager::wait_for_high_watermark(
            &partition,
            leader_epoch,
            appended.last_offset + 1,
            deadline,
        )
        .await
        .map_err(|e| append_error(e.code))
    }

    /// Logs a prepared transition and completes it; on failure the transition is forgotten.
    async fn write_transit(
        &self,
        transactional_id: &str,
        shard: i32,
        leader_epoch: i32,
        transit: TxnTransit,
    ) -> Result<TxnRecord, ResponseError> {
        let entry = if transit.record.state == TransactionState::Dead {
            TxnLogEntry::Remove(transactional_id.to_string())
        } else {
            TxnLogEntry::Put(transactional_id.to_string(), transit.record.clone())
        };
        let result = self.append(shard, leader_epoch, entry).await;
        let mut inner = self.inner.lock();
        let still_ours = inner
            .shards
            .get(&shard)
            .is_some_and(|s| s.loaded && s.leader_epoch == leader_epoch);
        let Some(e) = inner.txns.get_mut(transactional_id).filter(|_| still_ours) else {
            // Resigned meanwhile: the next leader loads whatever the log holds.
            return Err(ResponseError::NotCoordinator);
        };
        match result {
            Ok(()) => {
                let record = transit.record.clone();
                e.meta.complete_transition(transit)?;
                if record.state == TransactionState::Dead {
                    inner.txns.remove(transactional_id);
                }
                Ok(record)
            }
            Err(err) => {
                tracing::debug!(transactional_id, error = %err, "transaction log append failed");
                e.meta.abort_transition();
                Err(err)
            }
        }
    }

    /// InitProducerId with a transactional id (Kafka's `handleInitProducerId`). Answers the
    /// producer id and epoch, or Kafka's error.
    pub async fn init_producer_id(
        self: &Arc<Self>,
        broker: &Arc<Broker>,
        transactional_id: &str,
        txn_timeout_ms: i32,
        expected: Option<ProducerIdAndEpoch>,
    ) -> Result<ProducerIdAndEpoch, ResponseError> {
        if transactional_id.is_empty() {
            return Err(ResponseError::InvalidRequest);
        }
        decisions::validate_txn_timeout_ms(txn_timeout_ms, self.config.max_timeout_ms)?;
        // Producer ids come from the controller's blocks; take one before the lock when the
        // id is new or its epochs are exhausted.
        let needs_id = {
            let inner = self.inner.lock();
            self.check(&inner, transactional_id)?;
            match inner.txns.get(transactional_id) {
                None => true,
                Some(e) => decisions::init_needs_new_producer_id(&e.meta, expected),
            }
        };
        let new_id = if needs_id {
            Some(broker.next_producer_id().await.map_err(|e| e.code)?)
        } else {
            None
        };
        let now = now_ms();
        let (shard, epoch, action) = {
            let mut inner = self.inner.lock();
            let (shard, epoch) = self.check(&inner, transactional_id)?;
            if !inner.txns.contains_key(transactional_id) {
                let Some(id) = new_id else {
                    return Err(ResponseError::ConcurrentTransactions); // expired meanwhile; retry
                };
                let meta = TransactionMetadata::new(transactional_id, id, txn_timeout_ms, now);
                inner
                    .txns
                    .insert(transactional_id.to_string(), Entry { meta, shard });
            }
            let e = inner.txns.get_mut(transactional_id).expect("present");
            (
                shard,
                epoch,
                decisions::init_producer_id(&mut e.meta, expected, txn_timeout_ms, new_id, now)?,
            )
        };
        match action {
            InitAction::Write(t) => {
                let r = self
                    .write_transit(transactional_id, shard, epoch, t)
                    .await?;
                tracing::info!(
                    transactional_id,
                    producer_id = r.producer_id,
                    producer_epoch = r.producer_epoch,
                    "initialized transactional producer"
                );
                Ok((r.producer_id, r.producer_epoch))
            }
            InitAction::FenceAndAbort(fence) => {
                // The fence is not logged by itself: the abort record carries its epoch.
                let (pid, fenced_epoch) = (fence.record.producer_id, fence.record.producer_epoch);
                tracing::info!(
                    transactional_id,
                    producer_id = pid,
                    "fencing the producer of an ongoing transaction and aborting it"
                );
                let tv = fence.record.client_transaction_version;
                if let Err(err) = self
                    .end_transaction(
                        broker,
                        transactional_id,
                        pid,
                        fenced_epoch,
                        false,
                        tv,
                        false,
                    )
                    .await
                {
                    tracing::info!(transactional_id, error = %err, "abort of the fenced transaction failed");
                    let mut inner = self.inner.lock();
                    if let Some(e) = inner.txns.get_mut(transactional_id) {
                        if e.meta.pending_state == Some(TransactionState::PrepareEpochFence) {
                            e.meta.abort_transition();
                        }
                    }
                }
                Err(ResponseError::ConcurrentTransactions)
            }
        }
    }

    /// AddPartitionsToTxn v0-3 (and v4+ without verify_only): adds partitions to the
    /// transaction, starting it if needed.
    pub async fn add_partitions(
        &self,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        partitions: &[(String, i32)],
        client_transaction_version: i16,
    ) -> Result<(), ResponseError> {
        if transactional_id.is_empty() {
            return Err(ResponseError::InvalidRequest);
        }
        let (shard, epoch, transit) = {
            let mut inner = self.inner.lock();
            let (shard, epoch) = self.check(&inner, transactional_id)?;
            let e = inner
                .txns
                .get_mut(transactional_id)
                .ok_or(ResponseError::InvalidProducerIdMapping)?;
            let t = decisions::add_partitions(
                &mut e.meta,
                producer_id,
                producer_epoch,
                partitions,
                client_transaction_version,
                now_ms(),
            )?;
            (shard, epoch, t)
        };
        match transit {
            None => Ok(()),
            Some(t) => self
                .write_transit(transactional_id, shard, epoch, t)
                .await
                .map(|_| ()),
        }
    }

    /// AddPartitionsToTxn v4+ with verify_only (KIP-890): each partition's error, none when
    /// it is in the producer's ongoing transaction. Nothing is written.
    pub fn verify_partitions(
        &self,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        partitions: &[(String, i32)],
    ) -> Result<Vec<((String, i32), Option<ResponseError>)>, ResponseError> {
        let inner = self.inner.lock();
        self.check(&inner, transactional_id)?;
        let e = inner
            .txns
            .get(transactional_id)
            .ok_or(ResponseError::InvalidProducerIdMapping)?;
        decisions::verify_partitions(&e.meta, producer_id, producer_epoch, partitions)
    }

    /// EndTxn (Kafka's `handleEndTransaction`): logs PrepareCommit/PrepareAbort, answers,
    /// and leaves the markers to a background task, which logs CompleteCommit/CompleteAbort
    /// once every partition leader has written them. Returns the producer id and epoch the
    /// client continues with (TV2 bumps it).
    #[allow(clippy::too_many_arguments)]
    pub async fn end_transaction(
        self: &Arc<Self>,
        broker: &Arc<Broker>,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
        client_transaction_version: i16,
        from_client: bool,
    ) -> Result<ProducerIdAndEpoch, ResponseError> {
        if transactional_id.is_empty() {
            return Err(ResponseError::InvalidRequest);
        }
        let needs_id = {
            let inner = self.inner.lock();
            self.check(&inner, transactional_id)?;
            let e = inner
                .txns
                .get(transactional_id)
                .ok_or(ResponseError::InvalidProducerIdMapping)?;
            e.meta.state() == TransactionState::Ongoing
                && decisions::end_needs_new_producer_id(&e.meta, client_transaction_version)
        };
        let new_id = if needs_id {
            Some(broker.next_producer_id().await.map_err(|e| e.code)?)
        } else {
            None
        };
        let (shard, epoch, action) = {
            let mut inner = self.inner.lock();
            let (shard, epoch) = self.check(&inner, transactional_id)?;
            let e = inner
                .txns
                .get_mut(transactional_id)
                .ok_or(ResponseError::InvalidProducerIdMapping)?;
            let a = decisions::end_transaction(
                &mut e.meta,
                producer_id,
                producer_epoch,
                commit,
                client_transaction_version,
                from_client,
                new_id,
                now_ms(),
            )?;
            if a == EndAction::AlreadyDone {
                return Ok((e.meta.producer_id(), e.meta.producer_epoch()));
            }
            (shard, epoch, a)
        };
        let EndAction::Prepare(t) = action else {
            unreachable!("handled above")
        };
        let r = self
            .write_transit(transactional_id, shard, epoch, t)
            .await?;
        tracing::debug!(
            transactional_id,
            state = r.state.name(),
            partitions = r.partitions.len(),
            "transaction prepared"
        );
        self.start_markers(broker, transactional_id);
        Ok(if r.next_producer_id >= 0 {
            (r.next_producer_id, 0)
        } else {
            (r.producer_id, r.producer_epoch)
        })
    }

    /// Starts the marker task of a prepared transaction unless one runs already.
    pub(super) fn start_markers(self: &Arc<Self>, broker: &Arc<Broker>, transactional_id: &str) {
        let job = {
            let mut inner = self.inner.lock();
            let Some(e) = inner.txns.get(transactional_id) else {
                return;
            };
            if !matches!(
                e.meta.state(),
                TransactionState::PrepareCommit | TransactionState::PrepareAbort
            ) || e.meta.pending_state.is_some()
            {
                return;
            }
            let Some(shard) = inner.shards.get(&e.shard) else {
                return;
            };
            let job = marker_job(transactional_id, &e.meta.current, shard.leader_epoch);
            if !inner.sending_markers.insert(transactional_id.to_string()) {
                return;
            }
            job
        };
        let (coordinator, broker) = (self.clone(), broker.clone());
        tokio::spawn(async move {
            let id = job.transactional_id.clone();
            let done = super::markers::send_markers(&broker, &coordinator, &job).await;
            if done {
                coordinator.complete_transaction(&job).await;
            }
            coordinator.inner.lock().sending_markers.remove(&id);
        });
    }

    /// Whether the job still describes the id's prepared transaction at this coordinator.
    pub(super) fn is_current(&self, job: &MarkerJob) -> bool {
        let inner = self.inner.lock();
        inner.txns.get(&job.transactional_id).is_some_and(|e| {
            inner
                .shards
                .get(&e.shard)
                .is_some_and(|s| s.loaded && s.leader_epoch == job.coordinator_epoch)
                && e.meta.producer_id() == job.producer_id
                && e.meta.producer_epoch() == job.producer_epoch
                && matches!(
                    e.meta.state(),
                    TransactionState::PrepareCommit | TransactionState::PrepareAbort
                )
        })
    }

    /// Every marker is written: log CompleteCommit/CompleteAbort (Kafka's
    /// `TransactionMarkerChannelManager.tryAppendToLog`). A failed append leaves the state
    /// prepared; maintenance sends the markers again (they are idempotent) and retries.
    async fn complete_transaction(&self, job: &MarkerJob) {
        let prepared = {
            let mut inner = self.inner.lock();
            if !self.is_current_locked(&inner, job) {
                return;
            }
            let e = inner.txns.get_mut(&job.transactional_id).expect("checked");
            match e.meta.prepare_complete(now_ms()) {
                Ok(t) => Some((e.shard, t)),
                Err(_) => None,
            }
        };
        let Some((shard, t)) = prepared else { return };
        match self
            .write_transit(&job.transactional_id, shard, job.coordinator_epoch, t)
            .await
        {
            Ok(r) => {
                tracing::debug!(transactional_id = %job.transactional_id, state = r.state.name(), "transaction completed")
            }
            Err(e) => {
                tracing::info!(transactional_id = %job.transactional_id, error = %e, "cannot log the transaction's completion; will retry")
            }
        }
    }

    fn is_current_locked(&self, inner: &Inner, job: &MarkerJob) -> bool {
        inner.txns.get(&job.transactional_id).is_some_and(|e| {
            inner
                .shards
                .get(&e.shard)
                .is_some_and(|s| s.loaded && s.leader_epoch == job.coordinator_epoch)
                && e.meta.producer_id() == job.producer_id
                && e.meta.producer_epoch() == job.producer_epoch
                && matches!(
                    e.meta.state(),
                    TransactionState::PrepareCommit | TransactionState::PrepareAbort
                )
                && e.meta.pending_state.is_none()
        })
    }

    /// DescribeTransactions of one id.
    pub fn describe(&self, transactional_id: &str) -> Result<TxnDescription, ResponseError> {
        let inner = self.inner.lock();
        self.check(&inner, transactional_id)?;
        let e = inner
            .txns
            .get(transactional_id)
            .filter(|e| e.meta.state() != TransactionState::Dead)
            .ok_or(ResponseError::TransactionalIdNotFound)?;
        let r = &e.meta.current;
        Ok(TxnDescription {
            state: r.state,
            producer_id: r.producer_id,
            producer_epoch: r.producer_epoch,
            txn_timeout_ms: r.txn_timeout_ms,
            txn_start_timestamp_ms: r.txn_start_timestamp_ms,
            partitions: r.partitions.iter().cloned().collect(),
        })
    }

    /// ListTransactions (Kafka's `TransactionStateManager.listTransactionStates`): every id
    /// of the loaded shards matching the filters; COORDINATOR_LOAD_IN_PROGRESS while a shard
    /// loads. An empty filter matches everything; `min_duration_ms` (v1+, -1 = none) keeps
    /// transactions running at least that long.
    pub fn list(
        &self,
        states: &HashSet<TransactionState>,
        producer_ids: &HashSet<i64>,
        min_duration_ms: i64,
    ) -> Result<Vec<(String, i64, TransactionState)>, ResponseError> {
        let inner = self.inner.lock();
        if inner.shards.values().any(|s| !s.loaded) {
            return Err(ResponseError::CoordinatorLoadInProgress);
        }
        let now = now_ms();
        let mut out: Vec<_> = inner
            .txns
            .iter()
            .filter(|(_, e)| e.meta.state() != TransactionState::Dead)
            .filter(|(_, e)| states.is_empty() || states.contains(&e.meta.state()))
            .filter(|(_, e)| {
                producer_ids.is_empty() || producer_ids.contains(&e.meta.producer_id())
            })
            .filter(|(_, e)| {
                min_duration_ms < 0
                    || (e.meta.current.txn_start_timestamp_ms >= 0
                        && now - e.meta.current.txn_start_timestamp_ms >= min_duration_ms)
            })
            .map(|(id, e)| (id.clone(), e.meta.producer_id(), e.meta.state()))
            .collect();
        out.sort();
        Ok(out)
    }

    /// Ids of loaded shards as (id, state, producer id, epoch, start, last update, timeout,
    /// pending), for maintenance.
    pub(super) fn snapshot(&self) -> Vec<(String, TxnRecord, bool)> {
        let inner = self.inner.lock();
        inner
            .txns
            .iter()
            .filter(|(_, e)| inner.shards.get(&e.shard).is_some_and(|s| s.loaded))
            .map(|(id, e)| {
                (
                    id.clone(),
                    e.meta.current.clone(),
                    e.meta.pending_state.is_some(),
                )
            })
            .collect()
    }

    /// Aborts a transaction past its timeout (Kafka's `abortTimedOutTransactions`): fences
    /// the producer's epoch, then aborts as the coordinator.
    pub(super) async fn abort_timed_out(
        self: &Arc<Self>,
        broker: &Arc<Broker>,
        transactional_id: &str,
        producer_id: i64,
        client_transaction_version: i16,
    ) -> Result<ProducerIdAndEpoch, ResponseError> {
        let fenced_epoch = {
            let mut inner = self.inner.lock();
            self.check(&inner, transactional_id)?;
            let e = inner
                .txns
                .get_mut(transactional_id)
                .ok_or(ResponseError::InvalidProducerIdMapping)?;
            if e.meta.state() != TransactionState::Ongoing
                || e.meta.producer_id() != producer_id
                || e.meta.pending_state.is_some()
            {
                return Err(ResponseError::ConcurrentTransactions);
            }
            // The fence's epoch (not bumped again if an earlier fence failed to log).
            e.meta.prepare_fence_producer_epoch()?.record.producer_epoch
        };
        let result = self
            .end_transaction(
                broker,
                transactional_id,
                producer_id,
                fenced_epoch,
                false,
                client_transaction_version,
                false,
            )
            .await;
        if result.is_err() {
            let mut inner = self.inner.lock();
            if let Some(e) = inner.txns.get_mut(transactional_id) {
                if e.meta.pending_state == Some(TransactionState::PrepareEpochFence) {
                    e.meta.abort_transition();
                }
            }
        }
        result
    }

    /// Expires an idle id (Kafka's `removeExpiredTransactionalIds`): logs a tombstone.
    pub(super) async fn expire(&self, transactional_id: &str, last_update_ms: i64) {
        let prepared = {
            let mut inner = self.inner.lock();
            let Ok((shard, epoch)) = self.check(&inner, transactional_id) else {
                return;
            };
            let Some(e) = inner.txns.get_mut(transactional_id) else {
                return;
            };
            if e.meta.pending_state.is_some()
                || !e.meta.state().is_expiration_allowed()
                || e.meta.current.txn_last_update_timestamp_ms != last_update_ms
            {
                return;
            }
            match e.meta.prepare_dead() {
                Ok(t) => (shard, epoch, t),
                Err(_) => return,
            }
        };
        let (shard, epoch, t) = prepared;
        match self.write_transit(transactional_id, shard, epoch, t).await {
            Ok(_) => tracing::info!(transactional_id, "expired idle transactional id"),
            Err(e) => {
                tracing::debug!(transactional_id, error = %e, "cannot expire transactional id")
            }
        }
    }
}

/// The epochs at which `node_id` leads each `__transaction_state` partition.
fn led_partitions(image: &MetadataImage, node_id: i32) -> Vec<(i32, i32)> {
    image
        .topic(TRANSACTION_STATE_TOPIC)
        .map(|t| {
            t.partitions
                .iter()
                .filter(|(_, reg)| reg.leader == node_id)
                .map(|(p, reg)| (*p, reg.leader_epoch))
                .collect()
        })
        .unwrap_or_default()
}

/// Leadership of `__transaction_state` partitions (Kafka's `onElection` / `onResignation`);
/// registered after the replica manager, so a partition already has its new role.
impl MetadataListener for TransactionCoordinator {
    fn on_metadata(&self, _old: &MetadataImage, new: &MetadataImage) {
        let led = led_partitions(new, self.node_id);
        let mut inner = self.inner.lock();
        let resigned: Vec<i32> = inner
            .shards
            .iter()
            .filter(|(p, s)| !led.contains(&(**p, s.leader_epoch)))
            .map(|(p, _)| *p)
            .collect();
        for p in resigned {
            inner.shards.remove(&p);
            inner.txns.retain(|_, e| e.shard != p);
            tracing::info!(
                partition = p,
                "resigned as transaction coordinator of a partition"
            );
        }
        for (partition, leader_epoch) in led {
            if inner.shards.contains_key(&partition) {
                continue;
            }
            tracing::info!(
                partition,
                leader_epoch,
                "elected transaction coordinator of a partition; loading"
            );
            inner.shards.insert(
                partition,
                Shard {
                    leader_epoch,
                    loaded: false,
                },
            );
            let _ = self.load_tx.send(LoadJob {
                partition,
                leader_epoch,
            });
        }
    }
}

impl TransactionCoordinator {
    /// Runs load jobs one at a time, for the life of the process. After a load, prepared
    /// transactions get their markers from maintenance (as Kafka resends them on load).
    pub async fn run_loader(self: Arc<Self>) {
        let Some(mut rx) = self.load_rx.lock().take() else {
            tracing::error!("transaction coordinator loader started twice");
            return;
        };
        while let Some(job) = rx.recv().await {
            let loading = self
                .inner
                .lock()
                .shards
                .get(&job.partition)
                .is_some_and(|s| !s.loaded && s.leader_epoch == job.leader_epoch);
            if !loading {
                continue;
            }
            match self.read_partition(job) {
                Ok(state) => {
                    let mut inner = self.inner.lock();
                    let still = inner
                        .shards
                        .get(&job.partition)
                        .is_some_and(|s| !s.loaded && s.leader_epoch == job.leader_epoch);
                    if !still {
                        continue;
                    }
                    let n = state.len();
                    for (id, record) in state {
                        let meta = TransactionMetadata::loaded(&id, record);
                        inner.txns.insert(
                            id,
                            Entry {
                                meta,
                                shard: job.partition,
                            },
                        );
                    }
                    inner
                        .shards
                        .get_mut(&job.partition)
                        .expect("checked")
                        .loaded = true;
                    tracing::info!(
                        partition = job.partition,
                        coordinator_epoch = job.leader_epoch,
                        transactional_ids = n,
                        "loaded transaction state partition"
                    );
                }
                Err(e) => {
                    tracing::error!(partition = job.partition, error = %e, "cannot load transaction state partition");
                    let mut inner = self.inner.lock();
                    if inner
                        .shards
                        .get(&job.partition)
                        .is_some_and(|s| s.leader_epoch == job.leader_epoch)
                    {
                        inner.shards.remove(&job.partition);
                    }
                }
            }
        }
    }

    /// Replays the partition's whole log (as leader, all of it will be committed).
    fn read_partition(&self, job: LoadJob) -> Result<HashMap<String, TxnRecord>, ApiError> {
        let image = self.metadata.image();
        let tp = TopicPartition::new(TRANSACTION_STATE_TOPIC, job.partition);
        let partition = self.replica_manager.get_partition(&image, &tp)?;
        if partition.leader_epoch() != job.leader_epoch {
            return Err(ApiError::new(ResponseError::NotLeaderOrFollower));
        }
        let mut next = partition.log_start_offset();
        let end = partition.log_end_offset();
        let mut state = HashMap::new();
        while next < end {
            let bytes = partition.read_to_log_end(next, LOAD_READ_BYTES)?;
            if bytes.is_empty() {
                break;
            }
            let mut advanced = false;
            for item in gregor_storage::batches(&bytes) {
                let (header, range) = item?;
                next = header.next_offset();
                advanced = true;
                match log::decode_batches(bytes.slice(range)) {
                    Ok(entries) => log::replay(&mut state, entries),
                    Err(e) => {
                        tracing::warn!(partition = job.partition, offset = header.base_offset, error = %e, "skipping undecodable batch in the transaction log")
                    }
                }
            }
            if !advanced {
                break;
            }
        }
        Ok(state)
    }
}
