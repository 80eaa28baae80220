//! The active controller, in the shape of Kafka's `QuorumController`: a thin write path that
//! delegates every decision to one control manager per concern.
//!
//! - `cluster_control`: broker registration, heartbeats, fencing, liveness.
//! - `replication_control`: topics, partitions, ISR changes, elections.
//! - `config_control`: IncrementalAlterConfigs.
//! - `producer_id_control`: producer-id blocks.
//! - `limits`: the bounds every operation is held to.
//!
//! The Raft leader is the active controller and the only writer. Every mutation follows one
//! flow: [`Controller::begin_write`] (the write lock, then a read barrier, so the image holds
//! everything committed) -> a manager validates against the image and returns a
//! [`ControllerResult`] (records + answer) -> [`Controller::commit`] proposes the records and
//! answers once they are committed and applied.
//!
//! # Invariants
//! - One write at a time, and a write starts only once the previous one has *resolved*: the
//!   write lock moves into the task that waits for the proposal and is released only when
//!   the entries are committed and applied here, or this node stepped down. A client that
//!   already got REQUEST_TIMED_OUT does not release it. So every write is validated against
//!   an image that holds everything this controller proposed before (Kafka's single-threaded
//!   event queue plus its in-memory uncommitted state give the same guarantee).
//! - A user operation is one metadata log entry: it commits whole or not at all.

pub mod cluster_control;
pub mod config_control;
pub mod election;
pub mod limits;
pub mod placement;
pub mod producer_id_control;
pub mod replication_control;

use std::sync::Arc;
use std::time::Duration;

use gregor_raft::{MetadataQuorum, QuorumError, ENTRY_BYTES_MAX};
use kafka_protocol::ResponseError;
use tokio::sync::OwnedMutexGuard;

use crate::clock::now_ms;
use crate::config::BrokerConfig;
use crate::error::ApiError;
use crate::metadata::{MetadataImage, MetadataPublisher, MetadataRecord};

pub use cluster_control::{BrokerRegistrationInput, ClusterControlManager, HeartbeatOutcome};
pub use config_control::AlterConfigOp;
pub use producer_id_control::PRODUCER_ID_BLOCK_SIZE;
pub use replication_control::{validate_topic_name, CreatedTopic, NewPartitions, NewTopic};

use limits::RECORDS_PER_ENTRY_MAX;

/// How long a write waits for its decision to commit before answering REQUEST_TIMED_OUT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestTimeout {
    /// The quorum's own bound (`controller.quorum.request.timeout.ms`).
    Quorum,
    /// A request's `timeout_ms`, capped by the quorum's bound; zero or less means the
    /// client does not wait for the commit at all.
    Client(i32),
}

impl RequestTimeout {
    fn wait(self, quorum: Duration) -> Duration {
        match self {
            RequestTimeout::Quorum => quorum,
            RequestTimeout::Client(ms) => {
                Duration::from_millis(u64::try_from(ms).unwrap_or(0)).min(quorum)
            }
        }
    }
}

/// Records that commit together: one metadata log entry, or, when `divisible`, as many
/// entries as the size bounds need, in order (each record then must be safe to apply
/// without the ones after it).
#[derive(Debug, Default)]
pub struct RecordBatch {
    pub records: Vec<MetadataRecord>,
    pub divisible: bool,
}

/// What a control manager decided (Kafka's `ControllerResult`): the record batches to
/// commit, in order, and the answer to give once they are committed.
#[derive(Debug)]
pub struct ControllerResult<T> {
    pub batches: Vec<RecordBatch>,
    pub response: T,
}

impl<T> ControllerResult<T> {
    /// Nothing to write.
    pub fn of(response: T) -> Self {
        ControllerResult {
            batches: Vec::new(),
            response,
        }
    }

    /// One entry: all the records commit, or none.
    pub fn atomic(records: Vec<MetadataRecord>, response: T) -> Self {
        ControllerResult::of(response).then_atomic(records)
    }

    /// Appends records that commit as one entry after the batches before.
    pub fn then_atomic(mut self, records: Vec<MetadataRecord>) -> Self {
        if !records.is_empty() {
            self.batches.push(RecordBatch {
                records,
                divisible: false,
            });
        }
        self
    }

    /// Appends records that may be split over several entries.
    pub fn then_divisible(mut self, records: Vec<MetadataRecord>) -> Self {
        if !records.is_empty() {
            self.batches.push(RecordBatch {
                records,
                divisible: true,
            });
        }
        self
    }

    pub fn record_count(&self) -> usize {
        self.batches.iter().map(|b| b.records.len()).sum()
    }
}

/// The write lock, held from validation until the proposal resolved.
type WriteGuard = OwnedMutexGuard<()>;

pub struct Controller {
    config: Arc<BrokerConfig>,
    publisher: Arc<MetadataPublisher>,
    quorum: Arc<MetadataQuorum>,
    /// Serialises writes; see the module's invariants for how long it is held.
    write_lock: Arc<tokio::sync::Mutex<()>>,
    cluster: ClusterControlManager,
    replication: replication_control::ReplicationControlManager,
    configs: config_control::ConfigurationControlManager,
    producer_ids: producer_id_control::ProducerIdControlManager,
}

impl Controller {
    pub fn new(
        config: Arc<BrokerConfig>,
        publisher: Arc<MetadataPublisher>,
        quorum: Arc<MetadataQuorum>,
    ) -> Controller {
        Controller {
            cluster: ClusterControlManager::new(config.clone()),
            replication: replication_control::ReplicationControlManager::new(config.clone()),
            configs: config_control::ConfigurationControlManager::new(config.clone()),
            producer_ids: producer_id_control::ProducerIdControlManager,
            config,
            publisher,
            quorum,
            write_lock: Arc::new(tokio::sync::Mutex::new(())),
        }
    }

    pub fn image(&self) -> Arc<MetadataImage> {
        self.publisher.image()
    }

    /// Whether this node is the active controller (the Raft leader).
    pub fn is_active(&self) -> bool {
        self.quorum.is_leader()
    }

    /// The node id of the active controller, -1 when there is none (an election is on).
    pub fn active_controller_id(&self) -> i32 {
        self.quorum.leader().map(|id| id as i32).unwrap_or(-1)
    }

    fn not_controller(&self) -> ApiError {
        ApiError::with_message(
            ResponseError::NotController,
            format!(
                "This node is not the active controller (active: {})",
                self.active_controller_id()
            ),
        )
    }

    fn timed_out(&self, what: &str) -> ApiError {
        ApiError::with_message(
            ResponseError::RequestTimedOut,
            format!(
                "{what} within {} ms",
                self.quorum.request_timeout().as_millis()
            ),
        )
    }

    /// Starts a mutation: exclusive, on the active controller, with an image that holds every
    /// committed record (a new leader may not have applied its predecessor's last entries).
    /// Waits for the previous write to resolve, bounded by the request timeout.
    async fn begin_write(&self) -> Result<(WriteGuard, Arc<MetadataImage>), ApiError> {
        let guard = tokio::time::timeout(
            self.quorum.request_timeout(),
            self.write_lock.clone().lock_owned(),
        )
        .await
        .map_err(|_| self.timed_out("An earlier metadata change did not resolve"))?;
        if !self.is_active() {
            return Err(self.not_controller());
        }
        self.quorum
            .read_barrier()
            .await
            .map_err(|e| self.quorum_error(e))?;
        Ok((guard, self.image()))
    }

    fn quorum_error(&self, e: QuorumError) -> ApiError {
        match e {
            QuorumError::NotLeader { .. } => self.not_controller(),
            QuorumError::Unavailable(m) => ApiError::with_message(
                ResponseError::RequestTimedOut,
                format!("metadata quorum unavailable: {m}"),
            ),
            QuorumError::EntryTooLarge { .. } => limits::excessive_batch(),
            QuorumError::InvalidConfig(m) => {
                ApiError::with_message(ResponseError::UnknownServerError, m)
            }
        }
    }

    /// Commits a manager's decision and returns its answer once every entry is committed and
    /// applied here. The proposal runs in its own task that owns the write lock: if the
    /// client's wait (the request timeout) ends first, it gets REQUEST_TIMED_OUT while the
    /// lock stays held until the entries' fate is known.
    async fn commit<T>(
        &self,
        write: WriteGuard,
        result: ControllerResult<T>,
        wait: Duration,
    ) -> Result<T, ApiError> {
        let entries = encode_entries(result.batches)?;
        if entries.is_empty() {
            return Ok(result.response);
        }
        let quorum = self.quorum.clone();
        let proposal = tokio::spawn(async move {
            let outcome = quorum.propose_until_resolved(entries).await;
            drop(write);
            outcome
        });
        match tokio::time::timeout(wait, proposal).await {
            Err(_) => Err(ApiError::with_message(
                ResponseError::RequestTimedOut,
                format!(
                    "The metadata change was proposed but not committed within {} ms; it may still apply",
                    wait.as_millis()
                ),
            )),
            Ok(Err(join)) => Err(ApiError::with_message(
                ResponseError::UnknownServerError,
                format!("metadata proposal failed: {join}"),
            )),
            Ok(Ok(Err(e))) => Err(self.quorum_error(e)),
            Ok(Ok(Ok(_))) => Ok(result.response),
        }
    }

    /// Runs one write: begin, decide with the image, commit.
    async fn write<T>(
        &self,
        decide: impl FnOnce(&MetadataImage) -> Result<ControllerResult<T>, ApiError>,
    ) -> Result<T, ApiError> {
        self.write_within(RequestTimeout::Quorum, decide).await
    }

    /// A write whose wait for the commit the client bounds (the `timeout_ms` of CreateTopics,
    /// CreatePartitions and DeleteTopics). Once the decision is proposed it stands: a client
    /// that stops waiting gets REQUEST_TIMED_OUT and the change still applies, as with
    /// Kafka's `timeout_ms <= 0` ("do not wait for the topics to be created").
    async fn write_within<T>(
        &self,
        timeout: RequestTimeout,
        decide: impl FnOnce(&MetadataImage) -> Result<ControllerResult<T>, ApiError>,
    ) -> Result<T, ApiError> {
        let (guard, image) = self.begin_write().await?;
        let result = decide(&image)?;
        let wait = timeout.wait(self.quorum.request_timeout());
        self.commit(guard, result, wait).await
    }

    /// A linearizable read of the image: on the active controller, after a read barrier.
    pub async fn read_image(&self) -> Result<Arc<MetadataImage>, ApiError> {
        if !self.is_active() {
            return Err(self.not_controller());
        }
        self.quorum
            .read_barrier()
            .await
            .map_err(|e| self.quorum_error(e))?;
        Ok(self.image())
    }

    /// BrokerRegistration: a new broker epoch for every start (a retry of the same
    /// incarnation gets the epoch it already has). The broker starts fenced.
    pub async fn register_broker(&self, input: BrokerRegistrationInput) -> Result<i64, ApiError> {
        let broker_id = input.broker_id;
        let broker_epoch = self
            .write(|image| Ok(self.cluster.register_broker(image, input)))
            .await?;
        self.cluster
            .record_contact(broker_id, broker_epoch, now_ms());
        tracing::info!(broker = broker_id, broker_epoch, "broker registered");
        Ok(broker_epoch)
    }

    /// BrokerHeartbeat: keeps the session alive; unfences a broker that has caught up with
    /// the metadata log (its applied offset reached its own registration).
    pub async fn broker_heartbeat(
        &self,
        broker_id: i32,
        broker_epoch: i64,
        metadata_offset: i64,
        want_fence: bool,
    ) -> Result<HeartbeatOutcome, ApiError> {
        // A deposed leader that has not noticed yet must not vouch for a broker: the
        // broker's session lease (src/lease.rs) rests on this answer.
        let image = self.read_image().await?;
        let outcome =
            self.cluster
                .heartbeat(&image, broker_id, broker_epoch, metadata_offset, now_ms())?;
        if !(outcome.is_fenced && outcome.is_caught_up && !want_fence) {
            return Ok(outcome);
        }
        let unfenced = self
            .write(|image| Ok(self.cluster.unfence(image, broker_id, broker_epoch)))
            .await?;
        if unfenced {
            tracing::info!(broker = broker_id, broker_epoch, "broker unfenced");
        }
        Ok(HeartbeatOutcome {
            is_caught_up: true,
            is_fenced: false,
        })
    }

    /// Fences brokers whose session expired, and keeps partitions consistent with broker
    /// liveness. Runs on every node; acts only while active.
    pub async fn run_liveness_checks(self: Arc<Self>) {
        let session_ms = self.config.broker_session_timeout_ms as i64;
        let mut ticker = tokio::time::interval(Duration::from_millis(
            (session_ms as u64 / 8).clamp(50, 1000),
        ));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut was_active = false;
        let mut last_rebalance_ms = now_ms();
        loop {
            ticker.tick().await;
            let active = self.is_active();
            if active && !was_active {
                self.cluster.became_active(&self.image(), now_ms());
                tracing::info!(node = self.config.node_id, "became the active controller");
            }
            was_active = active;
            if !active {
                continue;
            }
            for (broker_id, broker_epoch) in self.cluster.expired(&self.image(), now_ms()) {
                let started_ms = now_ms();
                match self
                    .write(|image| {
                        Ok(self
                            .cluster
                            .fence_expired(image, broker_id, broker_epoch, now_ms()))
                    })
                    .await
                {
                    Ok(Some(moved)) => tracing::warn!(
                        broker = broker_id,
                        broker_epoch,
                        partitions = moved,
                        elapsed_ms = now_ms() - started_ms,
                        "broker session expired: fenced"
                    ),
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(broker = broker_id, error = %e, "could not fence broker")
                    }
                }
            }
            // Finishes what a failover interrupted: leaderships of fenced brokers, leaders
            // for partitions that can have one again.
            if self.cluster.needs_sweep(&self.image()) {
                match self.write(|image| Ok(self.cluster.sweep(image))).await {
                    Ok(moved) if moved > 0 => {
                        tracing::info!(
                            partitions = moved,
                            "partitions reconciled with broker liveness"
                        )
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "partition reconciliation failed"),
                }
            }
            // auto.leader.rebalance.enable: move leadership back to preferred replicas that
            // are live and in sync, every leader.imbalance.check.interval.seconds.
            let now = now_ms();
            if self.config.auto_leader_rebalance_enable
                && now - last_rebalance_ms >= self.config.leader_imbalance_check_interval_ms
            {
                last_rebalance_ms = now;
                if self.replication.has_imbalance(&self.image()) {
                    match self
                        .write(|image| Ok(self.replication.rebalance_leaders(image)))
                        .await
                    {
                        Ok(moved) if moved > 0 => {
                            tracing::info!(partitions = moved, "preferred leaders elected")
                        }
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "preferred leader election failed"),
                    }
                }
            }
        }
    }

    /// Creates topics; each gets its own result.
    pub async fn create_topics(
        &self,
        topics: Vec<NewTopic>,
        validate_only: bool,
        timeout: RequestTimeout,
    ) -> Vec<(String, Result<CreatedTopic, ApiError>)> {
        let names: Vec<String> = topics.iter().map(|t| t.name.clone()).collect();
        let outcome = self
            .write_within(timeout, |image| {
                Ok(self.replication.create_topics(image, topics, validate_only))
            })
            .await;
        per_item(names, outcome)
    }

    /// Deletes topics by name; each gets its own result.
    pub async fn delete_topics(
        &self,
        names: Vec<String>,
        timeout: RequestTimeout,
    ) -> Vec<(String, Result<uuid::Uuid, ApiError>)> {
        let requested = names.clone();
        let outcome = self
            .write_within(timeout, |image| {
                Ok(self.replication.delete_topics(image, names))
            })
            .await;
        per_item(requested, outcome)
    }

    /// Grows topics to `count` partitions.
    pub async fn create_partitions(
        &self,
        requests: Vec<NewPartitions>,
        validate_only: bool,
        timeout: RequestTimeout,
    ) -> Vec<(String, Result<(), ApiError>)> {
        let names: Vec<String> = requests.iter().map(|r| r.topic.clone()).collect();
        let outcome = self
            .write_within(timeout, |image| {
                Ok(self
                    .replication
                    .create_partitions(image, requests, validate_only))
            })
            .await;
        per_item(names, outcome)
    }

    /// IncrementalAlterConfigs for one topic.
    pub async fn alter_topic_configs(
        &self,
        topic: &str,
        ops: Vec<AlterConfigOp>,
        validate_only: bool,
    ) -> Result<(), ApiError> {
        self.write(|image| {
            self.configs
                .alter_topic_configs(image, topic, ops, validate_only)
        })
        .await
    }

    /// AlterPartition (Kafka's `ReplicationControlManager.alterPartition`): a leader asks to
    /// change its partitions' ISRs; each change gets its own outcome.
    pub async fn alter_partitions(
        &self,
        broker_id: i32,
        broker_epoch: i64,
        changes: &[crate::replica::IsrChange],
    ) -> Result<Vec<Result<crate::metadata::PartitionRegistration, ApiError>>, ApiError> {
        let results = self
            .write(|image| {
                self.replication
                    .alter_partitions(image, broker_id, broker_epoch, changes)
            })
            .await?;
        for (change, result) in changes.iter().zip(&results) {
            if let Ok(next) = result {
                tracing::info!(topic_id = %change.topic_id, partition = change.partition, isr = ?next.isr, partition_epoch = next.partition_epoch, "ISR changed");
            }
        }
        Ok(results)
    }

    /// AlterPartition for one partition.
    pub async fn alter_partition(
        &self,
        broker_id: i32,
        broker_epoch: i64,
        change: &crate::replica::IsrChange,
    ) -> Result<crate::metadata::PartitionRegistration, ApiError> {
        self.alter_partitions(broker_id, broker_epoch, std::slice::from_ref(change))
            .await?
            .pop()
            .expect("one outcome per change")
    }

    /// ElectLeaders: preferred (the first replica leads again when it is live and in sync) or
    /// unclean (an offline partition takes any live replica). `None` means every partition;
    /// then only partitions that needed an election, or failed one, are listed (Kafka's).
    pub async fn elect_leaders(
        &self,
        unclean: bool,
        partitions: Option<Vec<(String, i32)>>,
    ) -> Result<Vec<((String, i32), Result<(), ApiError>)>, ApiError> {
        self.write(|image| self.replication.elect_leaders(image, unclean, partitions))
            .await
    }

    /// Hands this broker the next block of producer ids.
    pub async fn allocate_producer_ids(
        &self,
        broker_id: i32,
        broker_epoch: i64,
    ) -> Result<(i64, i32), ApiError> {
        self.write(|image| self.producer_ids.allocate(image, broker_id, broker_epoch))
            .await
    }
}

/// A per-item answer from an operation that either produced one (`Ok`) or failed whole.
fn per_item<T>(
    names: Vec<String>,
    outcome: Result<Vec<(String, Result<T, ApiError>)>, ApiError>,
) -> Vec<(String, Result<T, ApiError>)> {
    match outcome {
        Ok(results) => results,
        Err(e) => names.into_iter().map(|n| (n, Err(e.clone()))).collect(),
    }
}

/// Serialises batches into metadata log entries: an atomic batch is one entry (too large
/// for one is POLICY_VIOLATION, before anything is proposed); a divisible one is packed
/// into as few entries as [`RECORDS_PER_ENTRY_MAX`] and `ENTRY_BYTES_MAX` allow.
fn encode_entries(batches: Vec<RecordBatch>) -> Result<Vec<Vec<u8>>, ApiError> {
    let mut entries = Vec::new();
    for batch in batches {
        if batch.records.is_empty() {
            continue;
        }
        if !batch.divisible {
            if batch.records.len() > RECORDS_PER_ENTRY_MAX {
                return Err(limits::excessive_batch());
            }
            let entry = serde_json::to_vec(&batch.records).expect("metadata records serialize");
            if entry.len() > ENTRY_BYTES_MAX {
                return Err(limits::excessive_batch());
            }
            entries.push(entry);
            continue;
        }
        // A JSON array built record by record, so each entry's size is known exactly.
        let mut entry = vec![b'['];
        let mut in_entry = 0;
        for record in &batch.records {
            let bytes = serde_json::to_vec(record).expect("metadata records serialize");
            if bytes.len() + 2 > ENTRY_BYTES_MAX {
                return Err(limits::excessive_batch());
            }
            if in_entry == RECORDS_PER_ENTRY_MAX || entry.len() + bytes.len() + 2 > ENTRY_BYTES_MAX
            {
                entry.push(b']');
                entries.push(std::mem::replace(&mut entry, vec![b'[']));
                in_entry = 0;
            }
            if in_entry > 0 {
                entry.push(b',');
            }
            entry.extend_from_slice(&bytes);
            in_entry += 1;
        }
        entry.push(b']');
        debug_assert!(entry.len() <= ENTRY_BYTES_MAX);
        entries.push(entry);
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(i: usize) -> MetadataRecord {
        MetadataRecord::Config {
            resource: crate::metadata::ConfigResource::topic("t"),
            name: format!("n{i}"),
            value: Some("v".repeat(100)),
        }
    }

    #[test]
    fn divisible_batches_split_by_count_and_bytes_and_decode_in_order() {
        let records: Vec<MetadataRecord> = (0..25_000).map(record).collect();
        let result = ControllerResult::of(())
            .then_divisible(records.clone())
            .then_atomic(vec![record(99_999)]);
        let entries = encode_entries(result.batches).unwrap();
        assert_eq!(entries.len(), 4, "10,000 + 10,000 + 5,000, then the last");
        let mut decoded = Vec::new();
        for entry in &entries {
            assert!(entry.len() <= ENTRY_BYTES_MAX);
            let part: Vec<MetadataRecord> = serde_json::from_slice(entry).unwrap();
            assert!(part.len() <= RECORDS_PER_ENTRY_MAX);
            decoded.extend(part);
        }
        assert_eq!(decoded.pop(), Some(record(99_999)));
        assert_eq!(decoded, records);

        // Large records: the byte bound splits first.
        let big: Vec<MetadataRecord> = (0..100)
            .map(|i| MetadataRecord::Config {
                resource: crate::metadata::ConfigResource::topic("t"),
                name: format!("n{i}"),
                value: Some("v".repeat(200_000)),
            })
            .collect();
        let entries = encode_entries(ControllerResult::of(()).then_divisible(big).batches).unwrap();
        assert!(entries.len() >= 3);
        assert!(entries.iter().all(|e| e.len() <= ENTRY_BYTES_MAX));
    }

    #[test]
    fn atomic_batches_too_large_are_policy_violations() {
        let too_many: Vec<MetadataRecord> = (0..RECORDS_PER_ENTRY_MAX + 1).map(record).collect();
        let e = encode_entries(ControllerResult::atomic(too_many, ()).batches).unwrap_err();
        assert_eq!(e.code(), ResponseError::PolicyViolation.code());
        let too_big = vec![MetadataRecord::Config {
            resource: crate::metadata::ConfigResource::topic("t"),
            name: "n".into(),
            value: Some("v".repeat(ENTRY_BYTES_MAX)),
        }];
        assert!(encode_entries(ControllerResult::atomic(too_big.clone(), ()).batches).is_err());
        assert!(
            encode_entries(ControllerResult::of(()).then_divisible(too_big).batches).is_err(),
            "one record larger than an entry cannot be split"
        );
        assert!(encode_entries(ControllerResult::atomic(vec![], ()).batches)
            .unwrap()
            .is_empty());
    }
}
