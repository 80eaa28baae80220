//! The active controller: validates metadata changes against the committed image, writes
//! them as records to the metadata log, and applies them once committed.
//!
//! Flow (the same for every mutation): validate -> append records (commit) -> publish the
//! new image -> brokers react to the delta. Mutations are serialised by `log`'s lock, like
//! Kafka's single-threaded controller event queue, so each one validates against the image
//! that the previous one produced.

pub mod placement;

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use kafka_protocol::ResponseError;
use uuid::Uuid;

use crate::config::BrokerConfig;
use crate::error::ApiError;
use crate::metadata::local_log::LocalMetadataLog;
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

pub struct Controller {
    node_id: i32,
    config: Arc<BrokerConfig>,
    publisher: Arc<MetadataPublisher>,
    /// The metadata log; holding its lock makes a mutation exclusive.
    log: tokio::sync::Mutex<LocalMetadataLog>,
}

impl Controller {
    /// Opens the metadata log and replays the committed records into the publisher.
    pub fn open(
        config: Arc<BrokerConfig>,
        publisher: Arc<MetadataPublisher>,
        dir: &Path,
    ) -> std::io::Result<Controller> {
        let (log, records) = LocalMetadataLog::open(dir)?;
        tracing::info!(records = records.len(), path = %log.path().display(), "replayed metadata log");
        publisher.apply(&records);
        Ok(Controller {
            node_id: config.node_id,
            config,
            publisher,
            log: tokio::sync::Mutex::new(log),
        })
    }

    pub fn image(&self) -> Arc<MetadataImage> {
        self.publisher.image()
    }

    /// The node id of the active controller.
    pub fn active_controller_id(&self) -> i32 {
        self.node_id
    }

    /// Commits records and publishes them; the caller holds the log lock.
    fn commit(
        &self,
        log: &mut LocalMetadataLog,
        records: Vec<MetadataRecord>,
    ) -> Result<(), ApiError> {
        if records.is_empty() {
            return Ok(());
        }
        let offsets = log.append(&records).map_err(|e| {
            tracing::error!(error = %e, "metadata log append failed");
            ApiError::with_message(
                ResponseError::UnknownServerError,
                format!("metadata log append failed: {e}"),
            )
        })?;
        let committed: Vec<(u64, MetadataRecord)> = offsets.into_iter().zip(records).collect();
        self.publisher.apply(&committed);
        Ok(())
    }

    /// First start: writes the cluster id; every start: registers this broker with a new
    /// broker epoch and unfences it (a single node is always caught up with its own log).
    pub async fn register_local_broker(&self) -> Result<(), ApiError> {
        let mut log = self.log.lock().await;
        let image = self.image();
        let mut records = Vec::new();
        if image.cluster_id.is_none() {
            let cluster_id = self
                .config
                .cluster_id
                .clone()
                .unwrap_or_else(new_cluster_id);
            records.push(MetadataRecord::ClusterId { cluster_id });
        }
        let broker_epoch = image.last_offset as i64 + records.len() as i64 + 1;
        let endpoints = self
            .config
            .advertised_listeners
            .iter()
            .map(|l| BrokerEndpoint {
                listener: l.name.clone(),
                host: l.host.clone(),
                port: l.port,
            })
            .collect();
        records.push(MetadataRecord::RegisterBroker {
            broker_id: self.node_id,
            broker_epoch,
            incarnation_id: Uuid::new_v4(),
            endpoints,
            rack: self.config.rack.clone(),
        });
        records.push(MetadataRecord::BrokerFencing {
            broker_id: self.node_id,
            broker_epoch,
            fenced: false,
        });
        self.commit(&mut log, records)
    }

    /// Creates topics; each gets its own result.
    pub async fn create_topics(
        &self,
        topics: Vec<NewTopic>,
        validate_only: bool,
    ) -> Vec<(String, Result<CreatedTopic, ApiError>)> {
        let mut log = self.log.lock().await;
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
        if let Err(e) = self.commit(&mut log, records) {
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
        let mut log = self.log.lock().await;
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
        if let Err(e) = self.commit(&mut log, records) {
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
        let mut log = self.log.lock().await;
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
        if let Err(e) = self.commit(&mut log, records) {
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
        let mut log = self.log.lock().await;
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
        self.commit(&mut log, records)
    }

    /// Hands this broker the next block of producer ids.
    pub async fn allocate_producer_ids(&self, broker_id: i32) -> Result<(i64, i32), ApiError> {
        let mut log = self.log.lock().await;
        let first = self.image().next_producer_id;
        let record = MetadataRecord::ProducerIds {
            broker_id,
            first_producer_id: first,
            size: PRODUCER_ID_BLOCK_SIZE,
        };
        self.commit(&mut log, vec![record])?;
        Ok((first, PRODUCER_ID_BLOCK_SIZE))
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
