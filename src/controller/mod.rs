//! The active controller: validates metadata changes against the committed image, writes
//! them as records to the metadata log (the Raft quorum), and applies them once committed.
//!
//! The Raft leader is the active controller and the only writer. Flow (the same for every
//! mutation): read barrier (the image holds everything committed) -> validate -> propose the
//! records as one entry -> committed and applied -> brokers react to the new image.
//! Mutations are serialised by `write_lock`, like Kafka's single-threaded controller event
//! queue, so each one validates against the image that the previous one produced.
//!
//! The active controller also tracks broker liveness from heartbeats (in memory, like
//! Kafka's `BrokerHeartbeatManager`): a broker silent for `broker.session.timeout.ms` is
//! fenced and loses its leaderships; a fenced broker that caught up with the metadata log is
//! unfenced and offline partitions it can lead get it as leader.

pub mod election;
pub mod placement;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use gregor_raft::{MetadataQuorum, QuorumError};
use parking_lot::Mutex;

use kafka_protocol::ResponseError;
use uuid::Uuid;

use crate::clock::now_ms;
use crate::config::BrokerConfig;
use crate::error::ApiError;
use crate::metadata::records::{BrokerEndpoint, ConfigResource, MetadataRecord};
use crate::metadata::{topic_config, MetadataImage, MetadataPublisher};

/// Producer ids are handed to brokers in blocks of this size (Kafka's `ProducerIdsBlock`).
pub const PRODUCER_ID_BLOCK_SIZE: i32 = 1000;

/// Longest legal topic name (Kafka's `Topic.MAX_NAME_LENGTH`).
const TOPIC_NAME_LENGTH_MAX: usize = 249;

/// A topic to create, as CreateTopics asks for it.
#[derive(Clone, Debug, Default)]
pub struct NewTopic {
    pub name: String,
    /// -1 for `num.partitions`.
    pub num_partitions: i32,
    /// -1 for `default.replication.factor`.
    pub replication_factor: i16,
    /// Manual assignment: partition -> replicas. Empty for automatic placement.
    pub assignments: Vec<(i32, Vec<i32>)>,
    pub configs: Vec<(String, Option<String>)>,
}

#[derive(Clone, Debug)]
pub struct CreatedTopic {
    pub topic_id: Uuid,
    pub num_partitions: i32,
    pub replication_factor: i16,
}

/// A CreatePartitions entry: grow `topic` to `count` partitions.
#[derive(Clone, Debug)]
pub struct NewPartitions {
    pub topic: String,
    pub count: i32,
    /// Replicas of each new partition, or `None` for automatic placement.
    pub assignments: Option<Vec<Vec<i32>>>,
}

/// One config change of IncrementalAlterConfigs (Kafka's `AlterConfigOp.OpType` codes).
#[derive(Clone, Debug)]
pub struct AlterConfigOp {
    pub name: String,
    /// 0 set, 1 delete, 2 append, 3 subtract.
    pub op: i8,
    pub value: Option<String>,
}

/// What the active controller knows of a broker's liveness (never replicated: a new active
/// controller starts everyone with a full session).
#[derive(Clone, Copy, Debug)]
struct BrokerContact {
    broker_epoch: i64,
    last_heartbeat_ms: i64,
}

/// A broker's registration request, as BrokerRegistration carries it.
#[derive(Clone, Debug)]
pub struct BrokerRegistrationInput {
    pub broker_id: i32,
    pub incarnation_id: Uuid,
    pub endpoints: Vec<BrokerEndpoint>,
    pub rack: Option<String>,
}

/// BrokerHeartbeat's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeartbeatOutcome {
    pub is_caught_up: bool,
    pub is_fenced: bool,
}

pub struct Controller {
    config: Arc<BrokerConfig>,
    publisher: Arc<MetadataPublisher>,
    quorum: Arc<MetadataQuorum>,
    /// Held for the whole of a mutation: validate, propose, apply.
    write_lock: tokio::sync::Mutex<()>,
    /// Broker liveness as seen by this node while it is the active controller.
    contacts: Mutex<HashMap<i32, BrokerContact>>,
}

impl Controller {
    pub fn new(
        config: Arc<BrokerConfig>,
        publisher: Arc<MetadataPublisher>,
        quorum: Arc<MetadataQuorum>,
    ) -> Controller {
        Controller {
            config,
            publisher,
            quorum,
            write_lock: tokio::sync::Mutex::new(()),
            contacts: Mutex::new(HashMap::new()),
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

    /// Starts a mutation: exclusive, on the active controller, with an image that holds every
    /// committed record (a new leader may not have applied its predecessor's last entries).
    async fn begin_write(&self) -> Result<tokio::sync::MutexGuard<'_, ()>, ApiError> {
        let guard = self.write_lock.lock().await;
        if !self.is_active() {
            return Err(self.not_controller());
        }
        self.quorum
            .read_barrier()
            .await
            .map_err(|e| self.quorum_error(e))?;
        Ok(guard)
    }

    fn quorum_error(&self, e: QuorumError) -> ApiError {
        match e {
            QuorumError::NotLeader { .. } => self.not_controller(),
            QuorumError::Unavailable(m) => ApiError::with_message(
                ResponseError::RequestTimedOut,
                format!("metadata quorum unavailable: {m}"),
            ),
            e @ QuorumError::EntryTooLarge { .. } => {
                ApiError::with_message(ResponseError::PolicyViolation, e.to_string())
            }
            QuorumError::InvalidConfig(m) => {
                ApiError::with_message(ResponseError::UnknownServerError, m)
            }
        }
    }

    /// Commits records as one entry; on return they are applied to the local image.
    async fn commit(&self, records: Vec<MetadataRecord>) -> Result<(), ApiError> {
        if records.is_empty() {
            return Ok(());
        }
        let entry = serde_json::to_vec(&records).expect("metadata records serialize");
        self.quorum
            .propose(vec![entry])
            .await
            .map_err(|e| self.quorum_error(e))?;
        Ok(())
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
        let _write = self.begin_write().await?;
        let image = self.image();
        if let Some(existing) = image.brokers.get(&input.broker_id) {
            if existing.incarnation_id == input.incarnation_id {
                return Ok(existing.broker_epoch);
            }
        }
        let mut records = Vec::new();
        if image.cluster_id.is_none() {
            let cluster_id = self
                .config
                .cluster_id
                .clone()
                .unwrap_or_else(new_cluster_id);
            records.push(MetadataRecord::ClusterId { cluster_id });
        }
        // The epoch must exceed every earlier one of this broker; the log offset does.
        let previous = image
            .brokers
            .get(&input.broker_id)
            .map(|b| b.broker_epoch)
            .unwrap_or(0);
        let broker_epoch = (image.last_offset as i64 + 1).max(previous + 1);
        records.push(MetadataRecord::RegisterBroker {
            broker_id: input.broker_id,
            broker_epoch,
            incarnation_id: input.incarnation_id,
            endpoints: input.endpoints,
            rack: input.rack,
        });
        // A re-registering broker is fenced until it catches up: it loses its leaderships.
        if image
            .brokers
            .get(&input.broker_id)
            .is_some_and(|b| !b.fenced)
        {
            records.extend(self.fence_records(&image, input.broker_id));
        }
        self.commit(records).await?;
        self.contacts.lock().insert(
            input.broker_id,
            BrokerContact {
                broker_epoch,
                last_heartbeat_ms: now_ms(),
            },
        );
        tracing::info!(broker = input.broker_id, broker_epoch, "broker registered");
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
        if !self.is_active() {
            return Err(self.not_controller());
        }
        // A deposed leader that has not noticed yet must not vouch for a broker: the
        // broker's session lease (src/lease.rs) rests on this answer.
        self.quorum
            .read_barrier()
            .await
            .map_err(|e| self.quorum_error(e))?;
        let image = self.image();
        let Some(reg) = image.brokers.get(&broker_id) else {
            return Err(ApiError::with_message(
                ResponseError::BrokerIdNotRegistered,
                format!("Broker {broker_id} is not registered"),
            ));
        };
        if reg.broker_epoch != broker_epoch {
            return Err(ApiError::with_message(
                ResponseError::StaleBrokerEpoch,
                format!(
                    "Expected broker epoch {}, got {broker_epoch}",
                    reg.broker_epoch
                ),
            ));
        }
        self.contacts.lock().insert(
            broker_id,
            BrokerContact {
                broker_epoch,
                last_heartbeat_ms: now_ms(),
            },
        );
        // Caught up: its metadata holds its registration and, if it is fenced, the fencing
        // (and so the leaderships moved away meanwhile). A broker resumed after a pause
        // must not be unfenced, and so trusted as a leader, on its stale metadata.
        let is_caught_up = metadata_offset >= broker_epoch
            && (!reg.fenced || metadata_offset as u64 >= reg.fenced_offset);
        if reg.fenced && is_caught_up && !want_fence {
            let _write = self.begin_write().await?;
            let image = self.image();
            if image
                .brokers
                .get(&broker_id)
                .is_some_and(|b| b.fenced && b.broker_epoch == broker_epoch)
            {
                let mut records = vec![MetadataRecord::BrokerFencing {
                    broker_id,
                    broker_epoch,
                    fenced: false,
                }];
                records.extend(self.unfence_records(&image, broker_id));
                self.commit(records).await?;
                tracing::info!(broker = broker_id, broker_epoch, "broker unfenced");
            }
            return Ok(HeartbeatOutcome {
                is_caught_up,
                is_fenced: false,
            });
        }
        Ok(HeartbeatOutcome {
            is_caught_up,
            is_fenced: reg.fenced,
        })
    }

    /// Records that fence `broker` and move its leaderships and ISR places.
    fn fence_records(&self, image: &MetadataImage, broker: i32) -> Vec<MetadataRecord> {
        let live: BTreeSet<i32> = image
            .live_brokers()
            .map(|b| b.broker_id)
            .filter(|b| *b != broker)
            .collect();
        let mut records = Vec::new();
        for topic in image.topics.values() {
            let unclean = self.unclean_allowed(image, &topic.name);
            for (p, reg) in &topic.partitions {
                if let Some(next) = election::after_broker_fenced(reg, broker, &live, unclean) {
                    records.push(partition_change(topic.topic_id, *p, next));
                }
            }
        }
        records
    }

    /// Records that give leaderless partitions a leader now that `broker` is back.
    fn unfence_records(&self, image: &MetadataImage, broker: i32) -> Vec<MetadataRecord> {
        let mut live: BTreeSet<i32> = image.live_brokers().map(|b| b.broker_id).collect();
        live.insert(broker);
        let mut records = Vec::new();
        for topic in image.topics.values() {
            let unclean = self.unclean_allowed(image, &topic.name);
            for (p, reg) in &topic.partitions {
                if let Some(next) = election::after_broker_unfenced(reg, &live, unclean) {
                    records.push(partition_change(topic.topic_id, *p, next));
                }
            }
        }
        records
    }

    fn unclean_allowed(&self, image: &MetadataImage, topic: &str) -> bool {
        topic_config::value_of(
            "unclean.leader.election.enable",
            &self.config,
            image.topic_configs(topic),
        )
        .eq_ignore_ascii_case("true")
    }

    /// Fences brokers whose session expired. Runs on every node; acts only while active.
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
                // A new active controller gives every broker a full session to find it.
                let now = now_ms();
                let image = self.image();
                let mut contacts = self.contacts.lock();
                contacts.clear();
                for b in image.brokers.values() {
                    contacts.insert(
                        b.broker_id,
                        BrokerContact {
                            broker_epoch: b.broker_epoch,
                            last_heartbeat_ms: now,
                        },
                    );
                }
                tracing::info!(node = self.config.node_id, "became the active controller");
            }
            was_active = active;
            if !active {
                continue;
            }
            let now = now_ms();
            let image = self.image();
            let expired: Vec<(i32, i64)> = {
                let contacts = self.contacts.lock();
                image
                    .live_brokers()
                    .filter(|b| {
                        contacts.get(&b.broker_id).is_none_or(|c| {
                            c.broker_epoch != b.broker_epoch
                                || now - c.last_heartbeat_ms > session_ms
                        })
                    })
                    .map(|b| (b.broker_id, b.broker_epoch))
                    .collect()
            };
            for (broker_id, broker_epoch) in expired {
                if let Err(e) = self.fence_expired(broker_id, broker_epoch).await {
                    tracing::warn!(broker = broker_id, error = %e, "could not fence broker");
                }
            }
            // auto.leader.rebalance.enable: move leadership back to preferred replicas that
            // are live and in sync, every leader.imbalance.check.interval.seconds.
            if self.config.auto_leader_rebalance_enable
                && now - last_rebalance_ms >= self.config.leader_imbalance_check_interval_ms
            {
                last_rebalance_ms = now;
                let live: BTreeSet<i32> = image.live_brokers().map(|b| b.broker_id).collect();
                let imbalanced: Vec<(String, i32)> = image
                    .topics
                    .values()
                    .flat_map(|t| {
                        t.partitions
                            .iter()
                            .filter(|(_, r)| election::preferred(r, &live).is_some())
                            .map(move |(p, _)| (t.name.clone(), *p))
                    })
                    .collect();
                if !imbalanced.is_empty() {
                    if let Err(e) = self.elect_leaders(false, Some(imbalanced)).await {
                        tracing::warn!(error = %e, "preferred leader election failed");
                    }
                }
            }
        }
    }

    async fn fence_expired(&self, broker_id: i32, broker_epoch: i64) -> Result<(), ApiError> {
        let _write = self.begin_write().await?;
        let image = self.image();
        let still_due = image
            .brokers
            .get(&broker_id)
            .is_some_and(|b| !b.fenced && b.broker_epoch == broker_epoch)
            && self.contacts.lock().get(&broker_id).is_none_or(|c| {
                c.broker_epoch != broker_epoch
                    || now_ms() - c.last_heartbeat_ms > self.config.broker_session_timeout_ms as i64
            });
        if !still_due {
            return Ok(());
        }
        let mut records = vec![MetadataRecord::BrokerFencing {
            broker_id,
            broker_epoch,
            fenced: true,
        }];
        records.extend(self.fence_records(&image, broker_id));
        let moved = records.len() - 1;
        self.commit(records).await?;
        tracing::warn!(
            broker = broker_id,
            broker_epoch,
            partitions = moved,
            "broker session expired: fenced"
        );
        Ok(())
    }

    /// Creates topics; each gets its own result.
    pub async fn create_topics(
        &self,
        topics: Vec<NewTopic>,
        validate_only: bool,
    ) -> Vec<(String, Result<CreatedTopic, ApiError>)> {
        let _write = match self.begin_write().await {
            Ok(w) => w,
            Err(e) => {
                return topics
                    .into_iter()
                    .map(|t| (t.name, Err(e.clone())))
                    .collect()
            }
        };
        let image = self.image();
        let mut records = Vec::new();
        let mut results = Vec::new();
        let mut names_in_request = HashSet::new();
        for topic in topics {
            let name = topic.name.clone();
            if !names_in_request.insert(name.clone()) {
                results.push((
                    name,
                    Err(ApiError::with_message(
                        ResponseError::InvalidRequest,
                        "Duplicate topic name in request",
                    )),
                ));
                continue;
            }
            match self.plan_topic(&image, &topic) {
                Ok((created, topic_records)) => {
                    if !validate_only {
                        records.extend(topic_records);
                    }
                    results.push((name, Ok(created)));
                }
                Err(e) => results.push((name, Err(e))),
            }
        }
        if let Err(e) = self.commit(records).await {
            for r in results.iter_mut() {
                if r.1.is_ok() {
                    r.1 = Err(e.clone());
                }
            }
        }
        results
    }

    fn plan_topic(
        &self,
        image: &MetadataImage,
        topic: &NewTopic,
    ) -> Result<(CreatedTopic, Vec<MetadataRecord>), ApiError> {
        validate_topic_name(&topic.name)?;
        if image.topic(&topic.name).is_some() {
            return Err(ApiError::with_message(
                ResponseError::TopicAlreadyExists,
                format!("Topic '{}' already exists.", topic.name),
            ));
        }
        if let Some(other) = image
            .topics
            .keys()
            .find(|t| t.replace('.', "_") == topic.name.replace('.', "_"))
        {
            return Err(ApiError::with_message(
                ResponseError::InvalidTopicException,
                format!(
                    "Topic '{}' collides with existing topic: {other}",
                    topic.name
                ),
            ));
        }
        let mut configs = BTreeMap::new();
        for (k, v) in &topic.configs {
            let Some(v) = v else {
                return Err(ApiError::with_message(
                    ResponseError::InvalidConfig,
                    format!("Null value not supported for topic config {k}"),
                ));
            };
            topic_config::validate(k, v)
                .map_err(|e| ApiError::with_message(ResponseError::InvalidConfig, e.to_string()))?;
            configs.insert(k.clone(), v.clone());
        }
        let brokers: Vec<i32> = image.live_brokers().map(|b| b.broker_id).collect();
        let assignment: Vec<Vec<i32>> = if !topic.assignments.is_empty() {
            if topic.num_partitions != -1 || topic.replication_factor != -1 {
                return Err(ApiError::with_message(
                    ResponseError::InvalidRequest,
                    "Both numPartitions or replicationFactor and replicasAssignments were set. Both cannot be used at the same time.",
                ));
            }
            let mut manual = topic.assignments.clone();
            manual.sort_by_key(|(p, _)| *p);
            for (i, (p, replicas)) in manual.iter().enumerate() {
                if *p != i as i32 {
                    return Err(ApiError::with_message(
                        ResponseError::InvalidReplicaAssignment,
                        "Partitions must be numbered 0..n without gaps",
                    ));
                }
                validate_replicas(image, replicas, manual[0].1.len())?;
            }
            manual.into_iter().map(|(_, r)| r).collect()
        } else {
            let partitions = if topic.num_partitions == -1 {
                self.config.num_partitions
            } else {
                topic.num_partitions
            };
            let rf = if topic.replication_factor == -1 {
                self.config.default_replication_factor
            } else {
                topic.replication_factor
            };
            if partitions < 1 {
                return Err(ApiError::with_message(
                    ResponseError::InvalidPartitions,
                    "Number of partitions must be larger than 0.",
                ));
            }
            if rf < 1 {
                return Err(ApiError::with_message(
                    ResponseError::InvalidReplicationFactor,
                    "Replication factor must be larger than 0.",
                ));
            }
            if rf as usize > brokers.len() {
                return Err(ApiError::with_message(
                    ResponseError::InvalidReplicationFactor,
                    format!(
                        "Unable to replicate the partition {rf} time(s): The target replication factor of {rf} cannot be reached because only {} broker(s) are registered.",
                        brokers.len()
                    ),
                ));
            }
            placement::assign_replicas(&topic.name, &brokers, 0, partitions, rf)
        };
        let topic_id = Uuid::new_v4();
        let mut records = vec![MetadataRecord::Topic {
            name: topic.name.clone(),
            topic_id,
        }];
        for (k, v) in configs {
            records.push(MetadataRecord::Config {
                resource: ConfigResource::topic(&topic.name),
                name: k,
                value: Some(v),
            });
        }
        for (p, replicas) in assignment.iter().enumerate() {
            records.push(partition_record(
                image,
                topic_id,
                p as i32,
                replicas.clone(),
            ));
        }
        Ok((
            CreatedTopic {
                topic_id,
                num_partitions: assignment.len() as i32,
                replication_factor: assignment[0].len() as i16,
            },
            records,
        ))
    }

    /// Deletes topics by name; each gets its own result.
    pub async fn delete_topics(&self, names: Vec<String>) -> Vec<(String, Result<Uuid, ApiError>)> {
        let _write = match self.begin_write().await {
            Ok(w) => w,
            Err(e) => return names.into_iter().map(|n| (n, Err(e.clone()))).collect(),
        };
        let image = self.image();
        let mut records = Vec::new();
        let mut results = Vec::new();
        for name in names {
            let result = match image.topic(&name) {
                _ if !self.config.delete_topic_enable => Err(ApiError::with_message(
                    ResponseError::TopicDeletionDisabled,
                    "Topic deletion is disabled.",
                )),
                None => Err(ApiError::with_message(
                    ResponseError::UnknownTopicOrPartition,
                    "This server does not host this topic-partition.",
                )),
                Some(t) => {
                    if !records.iter().any(|r| matches!(r, MetadataRecord::RemoveTopic { topic_id } if *topic_id == t.topic_id)) {
                        records.push(MetadataRecord::RemoveTopic { topic_id: t.topic_id });
                    }
                    Ok(t.topic_id)
                }
            };
            results.push((name, result));
        }
        if let Err(e) = self.commit(records).await {
            for r in results.iter_mut() {
                if r.1.is_ok() {
                    r.1 = Err(e.clone());
                }
            }
        }
        results
    }

    /// Grows topics to `count` partitions.
    pub async fn create_partitions(
        &self,
        requests: Vec<NewPartitions>,
        validate_only: bool,
    ) -> Vec<(String, Result<(), ApiError>)> {
        let _write = match self.begin_write().await {
            Ok(w) => w,
            Err(e) => {
                return requests
                    .into_iter()
                    .map(|r| (r.topic, Err(e.clone())))
                    .collect()
            }
        };
        let image = self.image();
        let mut records = Vec::new();
        let mut results = Vec::new();
        let mut seen = HashSet::new();
        for NewPartitions {
            topic: name,
            count,
            assignments,
        } in requests
        {
            if !seen.insert(name.clone()) {
                results.push((
                    name,
                    Err(ApiError::with_message(
                        ResponseError::InvalidRequest,
                        "Duplicate topic in request.",
                    )),
                ));
                continue;
            }
            let result = self.plan_partitions(&image, &name, count, assignments);
            match result {
                Ok(recs) => {
                    if !validate_only {
                        records.extend(recs);
                    }
                    results.push((name, Ok(())));
                }
                Err(e) => results.push((name, Err(e))),
            }
        }
        if let Err(e) = self.commit(records).await {
            for r in results.iter_mut() {
                if r.1.is_ok() {
                    r.1 = Err(e.clone());
                }
            }
        }
        results
    }

    fn plan_partitions(
        &self,
        image: &MetadataImage,
        name: &str,
        count: i32,
        assignments: Option<Vec<Vec<i32>>>,
    ) -> Result<Vec<MetadataRecord>, ApiError> {
        let topic = image.topic(name).ok_or_else(|| {
            ApiError::with_message(
                ResponseError::UnknownTopicOrPartition,
                format!("The topic '{name}' does not exist."),
            )
        })?;
        let current = topic.partitions.len() as i32;
        if count < current {
            return Err(ApiError::with_message(
                ResponseError::InvalidPartitions,
                format!("The topic {name} currently has {current} partition(s); {count} would not be an increase."),
            ));
        }
        if count == current {
            return Err(ApiError::with_message(
                ResponseError::InvalidPartitions,
                format!("Topic already has {current} partition(s)."),
            ));
        }
        let rf = topic
            .partitions
            .get(&0)
            .map(|p| p.replicas.len())
            .unwrap_or(1);
        let new = (count - current) as usize;
        let replica_sets = match assignments {
            Some(a) => {
                if a.len() != new {
                    return Err(ApiError::with_message(
                        ResponseError::InvalidReplicaAssignment,
                        format!("Attempted to add {new} additional partition(s), but only {} assignment(s) were specified.", a.len()),
                    ));
                }
                for replicas in &a {
                    validate_replicas(image, replicas, rf)?;
                }
                a
            }
            None => {
                let brokers: Vec<i32> = image.live_brokers().map(|b| b.broker_id).collect();
                if rf > brokers.len() {
                    return Err(ApiError::with_message(
                        ResponseError::InvalidReplicationFactor,
                        "Not enough live brokers for the topic's replication factor.",
                    ));
                }
                placement::assign_replicas(name, &brokers, current, count - current, rf as i16)
            }
        };
        Ok(replica_sets
            .into_iter()
            .enumerate()
            .map(|(i, r)| partition_record(image, topic.topic_id, current + i as i32, r))
            .collect())
    }

    /// IncrementalAlterConfigs for one topic.
    pub async fn alter_topic_configs(
        &self,
        topic: &str,
        ops: Vec<AlterConfigOp>,
        validate_only: bool,
    ) -> Result<(), ApiError> {
        let _write = self.begin_write().await?;
        let image = self.image();
        if image.topic(topic).is_none() {
            return Err(ApiError::with_message(
                ResponseError::UnknownTopicOrPartition,
                format!("The topic '{topic}' does not exist."),
            ));
        }
        let mut current = image.topic_configs(topic).cloned().unwrap_or_default();
        let mut seen = HashSet::new();
        for op in &ops {
            if !seen.insert(op.name.clone()) {
                return Err(ApiError::with_message(
                    ResponseError::InvalidRequest,
                    format!("Duplicate alter config operation for {}", op.name),
                ));
            }
            let def = topic_config::find(&op.name).ok_or_else(|| {
                ApiError::with_message(
                    ResponseError::InvalidConfig,
                    format!("Unknown topic config name: {}", op.name),
                )
            })?;
            let effective = topic_config::value_of(&op.name, &self.config, Some(&current));
            let new_value = match op.op {
                0 => op.value.clone(),
                1 => None,
                2 | 3 => {
                    if def.kind != topic_config::ConfigType::List {
                        return Err(ApiError::with_message(
                            ResponseError::InvalidConfig,
                            format!(
                                "Config {} is not a list; APPEND/SUBTRACT are not allowed",
                                op.name
                            ),
                        ));
                    }
                    let mut items: Vec<String> = effective
                        .split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(String::from)
                        .collect();
                    let args: Vec<String> = op
                        .value
                        .clone()
                        .unwrap_or_default()
                        .split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(String::from)
                        .collect();
                    if op.op == 2 {
                        for a in args {
                            if !items.contains(&a) {
                                items.push(a);
                            }
                        }
                    } else {
                        items.retain(|i| !args.contains(i));
                    }
                    Some(items.join(","))
                }
                other => {
                    return Err(ApiError::with_message(
                        ResponseError::InvalidRequest,
                        format!("Unknown config operation {other}"),
                    ))
                }
            };
            match new_value {
                Some(v) => {
                    topic_config::validate(&op.name, &v).map_err(|e| {
                        ApiError::with_message(ResponseError::InvalidConfig, e.to_string())
                    })?;
                    current.insert(op.name.clone(), v);
                }
                None => {
                    current.remove(&op.name);
                }
            }
        }
        if validate_only {
            return Ok(());
        }
        let before = image.topic_configs(topic).cloned().unwrap_or_default();
        let mut records = Vec::new();
        for (k, v) in &current {
            if before.get(k) != Some(v) {
                records.push(MetadataRecord::Config {
                    resource: ConfigResource::topic(topic),
                    name: k.clone(),
                    value: Some(v.clone()),
                });
            }
        }
        for k in before.keys() {
            if !current.contains_key(k) {
                records.push(MetadataRecord::Config {
                    resource: ConfigResource::topic(topic),
                    name: k.clone(),
                    value: None,
                });
            }
        }
        // Turning unclean.leader.election.enable on elects a leader for the topic's leaderless
        // partitions at once (Kafka's controller does it on its next unclean-election pass).
        let unclean_now = topic_config::value_of(
            "unclean.leader.election.enable",
            &self.config,
            Some(&current),
        )
        .eq_ignore_ascii_case("true");
        if unclean_now && !self.unclean_allowed(&image, topic) {
            let live: BTreeSet<i32> = image.live_brokers().map(|b| b.broker_id).collect();
            let t = image.topic(topic).expect("checked above");
            for (p, reg) in &t.partitions {
                if let Some(next) = election::after_broker_unfenced(reg, &live, true) {
                    tracing::warn!(
                        topic,
                        partition = *p,
                        leader = next.leader,
                        "unclean leader election: records the new leader lacks are lost"
                    );
                    records.push(partition_change(t.topic_id, *p, next));
                }
            }
        }
        self.commit(records).await
    }

    /// AlterPartition (Kafka's `ReplicationControlManager.alterPartition`): a leader asks to
    /// change its partition's ISR. Accepted only from the current leader at the current leader
    /// and partition epochs, and only with live replicas; committed with a new partition
    /// epoch.
    pub async fn alter_partition(
        &self,
        broker_id: i32,
        broker_epoch: i64,
        change: &crate::replica::IsrChange,
    ) -> Result<crate::metadata::PartitionRegistration, ApiError> {
        let _write = self.begin_write().await?;
        let image = self.image();
        if image
            .brokers
            .get(&broker_id)
            .is_none_or(|b| b.broker_epoch != broker_epoch)
        {
            return Err(ApiError::new(ResponseError::StaleBrokerEpoch));
        }
        let topic = image
            .topic_by_id(&change.topic_id)
            .ok_or_else(|| ApiError::new(ResponseError::UnknownTopicId))?;
        let reg = topic
            .partitions
            .get(&change.partition)
            .ok_or_else(|| ApiError::new(ResponseError::UnknownTopicOrPartition))?;
        if reg.leader != broker_id {
            return Err(ApiError::new(ResponseError::NotLeaderOrFollower));
        }
        if change.leader_epoch != reg.leader_epoch {
            return Err(ApiError::new(ResponseError::FencedLeaderEpoch));
        }
        if change.partition_epoch != reg.partition_epoch {
            return Err(ApiError::new(ResponseError::InvalidUpdateVersion));
        }
        if !change.new_isr.contains(&broker_id)
            || change.new_isr.iter().any(|r| !reg.replicas.contains(r))
        {
            return Err(ApiError::with_message(
                ResponseError::InvalidRequest,
                "The ISR must be replicas of the partition, including its leader",
            ));
        }
        // KIP-841: only live (unfenced) brokers may join the ISR.
        if change
            .new_isr
            .iter()
            .any(|r| !reg.isr.contains(r) && image.brokers.get(r).is_none_or(|b| b.fenced))
        {
            return Err(ApiError::new(ResponseError::IneligibleReplica));
        }
        let mut next = reg.clone();
        next.isr = change.new_isr.clone();
        next.partition_epoch += 1;
        self.commit(vec![partition_change(
            topic.topic_id,
            change.partition,
            next.clone(),
        )])
        .await?;
        tracing::info!(topic = %topic.name, partition = change.partition, isr = ?next.isr, partition_epoch = next.partition_epoch, "ISR changed");
        Ok(next)
    }

    /// ElectLeaders: preferred (the first replica leads again when it is live and in sync) or
    /// unclean (an offline partition takes any live replica). `None` means every partition.
    /// Each requested partition gets its own outcome.
    pub async fn elect_leaders(
        &self,
        unclean: bool,
        partitions: Option<Vec<(String, i32)>>,
    ) -> Result<Vec<((String, i32), Result<(), ApiError>)>, ApiError> {
        let _write = self.begin_write().await?;
        let image = self.image();
        let wanted: Vec<(String, i32)> = match partitions {
            Some(p) => p,
            None => image
                .topics
                .values()
                .flat_map(|t| t.partitions.keys().map(move |p| (t.name.clone(), *p)))
                .collect(),
        };
        let live: BTreeSet<i32> = image.live_brokers().map(|b| b.broker_id).collect();
        let mut records = Vec::new();
        let mut results = Vec::with_capacity(wanted.len());
        for (topic, p) in wanted {
            let Some((t, reg)) = image
                .topic(&topic)
                .and_then(|t| t.partitions.get(&p).map(|r| (t, r)))
            else {
                results.push((
                    (topic, p),
                    Err(ApiError::new(ResponseError::UnknownTopicOrPartition)),
                ));
                continue;
            };
            let next = if unclean {
                election::after_broker_unfenced(reg, &live, true)
            } else {
                election::preferred(reg, &live)
            };
            let outcome = match next {
                Some(next) => {
                    records.push(partition_change(t.topic_id, p, next));
                    Ok(())
                }
                None if unclean || reg.leader == reg.replicas[0] => {
                    Err(ApiError::new(ResponseError::ElectionNotNeeded))
                }
                None => Err(ApiError::with_message(
                    ResponseError::PreferredLeaderNotAvailable,
                    format!(
                        "Preferred replica {} is not live and in sync",
                        reg.replicas[0]
                    ),
                )),
            };
            results.push(((topic, p), outcome));
        }
        let moved = records.len();
        self.commit(records).await?;
        if moved > 0 {
            tracing::info!(partitions = moved, unclean, "leaders elected");
        }
        Ok(results)
    }

    /// Hands this broker the next block of producer ids.
    pub async fn allocate_producer_ids(&self, broker_id: i32) -> Result<(i64, i32), ApiError> {
        let _write = self.begin_write().await?;
        let first = self.image().next_producer_id;
        let record = MetadataRecord::ProducerIds {
            broker_id,
            first_producer_id: first,
            size: PRODUCER_ID_BLOCK_SIZE,
        };
        self.commit(vec![record]).await?;
        Ok((first, PRODUCER_ID_BLOCK_SIZE))
    }
}

/// A partition's new registration as a record.
fn partition_change(
    topic_id: Uuid,
    partition: i32,
    reg: crate::metadata::PartitionRegistration,
) -> MetadataRecord {
    MetadataRecord::Partition {
        topic_id,
        partition,
        replicas: reg.replicas,
        isr: reg.isr,
        leader: reg.leader,
        leader_epoch: reg.leader_epoch,
        partition_epoch: reg.partition_epoch,
    }
}

/// A new partition's first registration: every replica in the ISR, the first one leads.
fn partition_record(
    _image: &MetadataImage,
    topic_id: Uuid,
    partition: i32,
    replicas: Vec<i32>,
) -> MetadataRecord {
    MetadataRecord::Partition {
        topic_id,
        partition,
        isr: replicas.clone(),
        leader: replicas[0],
        replicas,
        leader_epoch: 0,
        partition_epoch: 0,
    }
}

fn validate_replicas(
    image: &MetadataImage,
    replicas: &[i32],
    expected_len: usize,
) -> Result<(), ApiError> {
    if replicas.is_empty() || replicas.len() != expected_len {
        return Err(ApiError::with_message(
            ResponseError::InvalidReplicaAssignment,
            "All partitions must have the same, non-zero number of replicas.",
        ));
    }
    let unique: HashSet<_> = replicas.iter().collect();
    if unique.len() != replicas.len() {
        return Err(ApiError::with_message(
            ResponseError::InvalidReplicaAssignment,
            "Duplicate brokers in a replica assignment.",
        ));
    }
    if let Some(b) = replicas.iter().find(|b| !image.brokers.contains_key(b)) {
        return Err(ApiError::with_message(
            ResponseError::InvalidReplicaAssignment,
            format!("Broker {b} is not registered."),
        ));
    }
    Ok(())
}

/// Kafka's `Topic.validate`: 1-249 characters of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<(), ApiError> {
    let invalid = |m: String| {
        Err(ApiError::with_message(
            ResponseError::InvalidTopicException,
            m,
        ))
    };
    if name.is_empty() {
        return invalid("Topic name is illegal, it can't be empty".into());
    }
    if name == "." || name == ".." {
        return invalid("Topic name cannot be \".\" or \"..\"".into());
    }
    if name.len() > TOPIC_NAME_LENGTH_MAX {
        return invalid(format!("Topic name is illegal, it can't be longer than {TOPIC_NAME_LENGTH_MAX} characters, topic name: {name}"));
    }
    if !name
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || c == b'.' || c == b'_' || c == b'-')
    {
        return invalid(format!("Topic name \"{name}\" is illegal, it contains a character other than ASCII alphanumerics, '.', '_' and '-'"));
    }
    Ok(())
}

/// A cluster id in Kafka's form: 16 random bytes, URL-safe base64 without padding.
fn new_cluster_id() -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes = Uuid::new_v4().into_bytes();
    let mut bits: u32 = 0;
    let mut n = 0;
    let mut out = String::with_capacity(22);
    for b in bytes {
        bits = (bits << 8) | b as u32;
        n += 8;
        while n >= 6 {
            n -= 6;
            out.push(ALPHABET[((bits >> n) & 63) as usize] as char);
        }
    }
    if n > 0 {
        out.push(ALPHABET[((bits << (6 - n)) & 63) as usize] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names() {
        assert!(validate_topic_name("orders.v1_a-b").is_ok());
        assert!(validate_topic_name("").is_err());
        assert!(validate_topic_name("..").is_err());
        assert!(validate_topic_name("a b").is_err());
        assert!(validate_topic_name(&"x".repeat(250)).is_err());
    }

    #[test]
    fn cluster_id_shape() {
        let id = new_cluster_id();
        assert_eq!(id.len(), 22);
    }
}
