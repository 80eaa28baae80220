//! Topics, partitions, ISR changes and elections (Kafka's `ReplicationControlManager`).
//!
//! Every operation validates the whole request against the image and the limits
//! ([`super::limits`]) before it places a replica or builds a record: a request's size
//! never decides how much is allocated.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use kafka_protocol::ResponseError;
use uuid::Uuid;

use super::limits::{self, BoundedRecords};
use super::{election, placement, ControllerResult};
use crate::config::BrokerConfig;
use crate::error::ApiError;
use crate::metadata::records::ConfigResource;
use crate::metadata::{topic_config, MetadataImage, MetadataRecord, PartitionRegistration};
use crate::replica::IsrChange;

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
    /// Manual assignment: partition -> replicas, in request order. Empty for automatic
    /// placement.
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

type PerTopic<T> = Vec<(String, Result<T, ApiError>)>;

/// ElectLeaders' answer: an outcome per (topic, partition).
pub type ElectionResults = Vec<((String, i32), Result<(), ApiError>)>;

pub struct ReplicationControlManager {
    config: Arc<BrokerConfig>,
}

impl ReplicationControlManager {
    pub fn new(config: Arc<BrokerConfig>) -> Self {
        ReplicationControlManager { config }
    }

    /// CreateTopics: one atomic entry for the whole request (Kafka's `ControllerResult.atomic`).
    pub fn create_topics(
        &self,
        image: &MetadataImage,
        topics: Vec<NewTopic>,
        validate_only: bool,
    ) -> ControllerResult<PerTopic<CreatedTopic>> {
        // Kafka's validateTotalNumberOfPartitions: the whole request, before anything else.
        let requested = topics.iter().map(|t| {
            if !t.assignments.is_empty() {
                t.assignments.len() as i64
            } else if t.num_partitions == -1 {
                self.config.num_partitions as i64
            } else {
                t.num_partitions as i64
            }
        });
        if let Err(e) = limits::check_total_partitions(requested) {
            return ControllerResult::of(all_failed(topics.into_iter().map(|t| t.name), &e));
        }
        let mut records = BoundedRecords::new();
        let mut results = Vec::with_capacity(topics.len());
        let mut names_in_request = HashSet::new();
        let mut normalized_in_request = HashSet::new();
        for topic in topics {
            let name = topic.name.clone();
            if !names_in_request.insert(name.clone()) {
                results.push((
                    name,
                    Err(ApiError::with_message(
                        ResponseError::InvalidRequest,
                        "Duplicate topic name.",
                    )),
                ));
                continue;
            }
            let outcome = self
                .plan_topic(image, &topic)
                .and_then(|(created, planned)| {
                    if !normalized_in_request.insert(name.replace('.', "_")) {
                        return Err(ApiError::with_message(
                            ResponseError::InvalidTopicException,
                            format!("Topic '{name}' collides with another topic of this request."),
                        ));
                    }
                    if !validate_only {
                        records.extend(planned)?;
                    }
                    Ok(created)
                });
            if let Err(e) = &outcome {
                if e.code() == ResponseError::PolicyViolation.code() {
                    // The operation as a whole is too large: nothing of it is written.
                    let names = results.into_iter().map(|(n, _)| n).chain([name]);
                    return ControllerResult::of(all_failed(names, e));
                }
            }
            results.push((name, outcome));
        }
        ControllerResult::atomic(records.into_vec(), results)
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
        let normalized = topic.name.replace('.', "_");
        if let Some(other) = image
            .topics
            .keys()
            .find(|t| t.replace('.', "_") == normalized)
        {
            return Err(ApiError::with_message(
                ResponseError::InvalidTopicException,
                format!(
                    "Topic '{}' collides with existing topic: {other}",
                    topic.name
                ),
            ));
        }
        if topic.configs.len() > limits::MAX_RECORDS_PER_USER_OP {
            return Err(limits::excessive_batch());
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
        let assignment: Vec<Vec<i32>> = if !topic.assignments.is_empty() {
            if topic.replication_factor != -1 {
                return Err(ApiError::with_message(
                    ResponseError::InvalidRequest,
                    "A manual partition assignment was specified, but replication factor was not set to -1.",
                ));
            }
            if topic.num_partitions != -1 {
                return Err(ApiError::with_message(
                    ResponseError::InvalidRequest,
                    "A manual partition assignment was specified, but numPartitions was not set to -1.",
                ));
            }
            let mut replication_factor = None;
            for (expected, (p, replicas)) in topic.assignments.iter().enumerate() {
                if *p as i64 != expected as i64 {
                    return Err(ApiError::with_message(
                        ResponseError::InvalidReplicaAssignment,
                        format!("Partitions should be in the order of 0, 1, 2, ... but partition {p} was specified in position {expected}."),
                    ));
                }
                validate_manual_assignment(image, *p, replicas, replication_factor)?;
                replication_factor = Some(replicas.len());
            }
            topic.assignments.iter().map(|(_, r)| r.clone()).collect()
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
            if rf < 1 {
                return Err(ApiError::with_message(
                    ResponseError::InvalidReplicationFactor,
                    "Replication factor must be larger than 0, or -1 to use the default value.",
                ));
            }
            if partitions < 1 {
                return Err(ApiError::with_message(
                    ResponseError::InvalidPartitions,
                    "Number of partitions was set to an invalid non-positive value.",
                ));
            }
            if partitions as usize > limits::MAX_PARTITIONS_PER_BATCH {
                return Err(limits::excessive_partitions());
            }
            let brokers: Vec<i32> = image.live_brokers().map(|b| b.broker_id).collect();
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
        let mut records = Vec::with_capacity(1 + configs.len() + assignment.len());
        records.push(MetadataRecord::Topic {
            name: topic.name.clone(),
            topic_id,
        });
        for (k, v) in configs {
            records.push(MetadataRecord::Config {
                resource: ConfigResource::topic(&topic.name),
                name: k,
                value: Some(v),
            });
        }
        for (p, replicas) in assignment.iter().enumerate() {
            records.push(new_partition_record(image, topic_id, p as i32, replicas)?);
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

    /// DeleteTopics: one atomic entry.
    pub fn delete_topics(
        &self,
        image: &MetadataImage,
        names: Vec<String>,
    ) -> ControllerResult<PerTopic<Uuid>> {
        let mut records = BoundedRecords::new();
        let mut removed = HashSet::new();
        let mut results = Vec::with_capacity(names.len());
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
                    if removed.insert(t.topic_id) {
                        if let Err(e) = records.push(MetadataRecord::RemoveTopic {
                            topic_id: t.topic_id,
                        }) {
                            let names = results.into_iter().map(|(n, _)| n).chain([name]);
                            return ControllerResult::of(all_failed(names, &e));
                        }
                    }
                    Ok(t.topic_id)
                }
            };
            results.push((name, result));
        }
        ControllerResult::atomic(records.into_vec(), results)
    }

    /// CreatePartitions: one atomic entry for the whole request.
    pub fn create_partitions(
        &self,
        image: &MetadataImage,
        requests: Vec<NewPartitions>,
        validate_only: bool,
    ) -> ControllerResult<PerTopic<()>> {
        let added = requests.iter().map(|r| {
            let current = image
                .topic(&r.topic)
                .map_or(0, |t| t.partitions.len() as i64);
            r.count as i64 - current
        });
        if let Err(e) = limits::check_total_partitions(added) {
            return ControllerResult::of(all_failed(requests.into_iter().map(|r| r.topic), &e));
        }
        let mut records = BoundedRecords::new();
        let mut results = Vec::with_capacity(requests.len());
        let mut seen = HashSet::new();
        for request in requests {
            let name = request.topic.clone();
            if !seen.insert(name.clone()) {
                results.push((
                    name,
                    Err(ApiError::with_message(
                        ResponseError::InvalidRequest,
                        "Duplicate topic name.",
                    )),
                ));
                continue;
            }
            let outcome = self.plan_partitions(image, request).and_then(|planned| {
                if !validate_only {
                    records.extend(planned)?;
                }
                Ok(())
            });
            if let Err(e) = &outcome {
                if e.code() == ResponseError::PolicyViolation.code() {
                    let names = results.into_iter().map(|(n, _)| n).chain([name]);
                    return ControllerResult::of(all_failed(names, e));
                }
            }
            results.push((name, outcome));
        }
        ControllerResult::atomic(records.into_vec(), results)
    }

    fn plan_partitions(
        &self,
        image: &MetadataImage,
        request: NewPartitions,
    ) -> Result<Vec<MetadataRecord>, ApiError> {
        let NewPartitions {
            topic: name,
            count,
            assignments,
        } = request;
        let topic = image.topic(&name).ok_or_else(|| {
            ApiError::with_message(
                ResponseError::UnknownTopicOrPartition,
                format!("The topic '{name}' does not exist."),
            )
        })?;
        let current = topic.partitions.len() as i64;
        if (count as i64) < current {
            return Err(ApiError::with_message(
                ResponseError::InvalidPartitions,
                format!("The topic {name} currently has {current} partition(s); {count} would not be an increase."),
            ));
        }
        if count as i64 == current {
            return Err(ApiError::with_message(
                ResponseError::InvalidPartitions,
                format!("Topic already has {current} partition(s)."),
            ));
        }
        let additional = count as i64 - current;
        if additional > limits::MAX_PARTITIONS_PER_BATCH as i64 {
            return Err(limits::excessive_partitions());
        }
        let rf = topic
            .partitions
            .values()
            .next()
            .map(|p| p.replicas.len())
            .unwrap_or(1);
        let first = current as i32;
        let replica_sets = match assignments {
            Some(a) => {
                if a.len() as i64 != additional {
                    return Err(ApiError::with_message(
                        ResponseError::InvalidReplicaAssignment,
                        format!("Attempted to add {additional} additional partition(s), but only {} assignment(s) were specified.", a.len()),
                    ));
                }
                for (i, replicas) in a.iter().enumerate() {
                    validate_manual_assignment(image, first + i as i32, replicas, Some(rf))?;
                }
                a
            }
            None => {
                let brokers: Vec<i32> = image.live_brokers().map(|b| b.broker_id).collect();
                if rf > brokers.len() {
                    return Err(ApiError::with_message(
                        ResponseError::InvalidReplicationFactor,
                        format!(
                            "Unable to replicate the partition {rf} time(s): The target replication factor of {rf} cannot be reached because only {} broker(s) are registered.",
                            brokers.len()
                        ),
                    ));
                }
                placement::assign_replicas(&name, &brokers, first, additional as i32, rf as i16)
            }
        };
        replica_sets
            .iter()
            .enumerate()
            .map(|(i, r)| new_partition_record(image, topic.topic_id, first + i as i32, r))
            .collect()
    }

    /// AlterPartition: ISR changes asked for by partition leaders. Accepted only from the
    /// current leader at the current leader and partition epochs, and only with live
    /// replicas; committed with a new partition epoch. Each partition stands alone, so the
    /// records are divisible. A partition named twice is checked against its first change.
    pub fn alter_partitions(
        &self,
        image: &MetadataImage,
        broker_id: i32,
        broker_epoch: i64,
        changes: &[IsrChange],
    ) -> Result<ControllerResult<Vec<Result<PartitionRegistration, ApiError>>>, ApiError> {
        if image
            .brokers
            .get(&broker_id)
            .is_none_or(|b| b.broker_epoch != broker_epoch)
        {
            return Err(ApiError::new(ResponseError::StaleBrokerEpoch));
        }
        let mut updated: HashMap<(Uuid, i32), PartitionRegistration> = HashMap::new();
        let mut records = Vec::new();
        let mut results = Vec::with_capacity(changes.len());
        for change in changes {
            let outcome = image
                .topic_by_id(&change.topic_id)
                .ok_or_else(|| ApiError::new(ResponseError::UnknownTopicId))
                .and_then(|topic| {
                    let key = (change.topic_id, change.partition);
                    let reg = updated
                        .get(&key)
                        .or_else(|| topic.partitions.get(&change.partition))
                        .ok_or_else(|| ApiError::new(ResponseError::UnknownTopicOrPartition))?;
                    let next = validate_isr_change(image, broker_id, reg, change)?;
                    records.push(partition_change(
                        topic.topic_id,
                        change.partition,
                        next.clone(),
                    ));
                    updated.insert(key, next.clone());
                    Ok(next)
                });
            results.push(outcome);
        }
        Ok(ControllerResult::of(results).then_divisible(records))
    }

    /// ElectLeaders: each requested partition gets its own outcome; with `None` (every
    /// partition) only those that needed an election, or failed one, are listed. Bounded by
    /// `max.records.per.user.op` as a whole.
    pub fn elect_leaders(
        &self,
        image: &MetadataImage,
        unclean: bool,
        partitions: Option<Vec<(String, i32)>>,
    ) -> Result<ControllerResult<ElectionResults>, ApiError> {
        let live: BTreeSet<i32> = image.live_brokers().map(|b| b.broker_id).collect();
        let mut records = BoundedRecords::new();
        let mut results = Vec::new();
        let mut elect = |topic: &str, p: i32, list_not_needed: bool| -> Result<(), ApiError> {
            let Some((t, reg)) = image
                .topic(topic)
                .and_then(|t| t.partitions.get(&p).map(|r| (t, r)))
            else {
                results.push((
                    (topic.to_string(), p),
                    Err(ApiError::new(ResponseError::UnknownTopicOrPartition)),
                ));
                return Ok(());
            };
            let next = if unclean {
                election::after_broker_unfenced(reg, &live, true)
            } else {
                election::preferred(reg, &live)
            };
            let outcome = match next {
                Some(next) => {
                    records.push(partition_change(t.topic_id, p, next))?;
                    Ok(())
                }
                None if unclean || reg.leader == reg.replicas[0] => {
                    if !list_not_needed {
                        return Ok(());
                    }
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
            results.push(((topic.to_string(), p), outcome));
            Ok(())
        };
        match partitions {
            Some(wanted) => {
                let wanted: BTreeSet<(String, i32)> = wanted.into_iter().collect();
                for (topic, p) in &wanted {
                    elect(topic, *p, true)?;
                }
            }
            None => {
                for t in image.topics.values() {
                    for p in t.partitions.keys() {
                        elect(&t.name, *p, false)?;
                    }
                }
            }
        }
        let moved = records.len();
        if moved > 0 {
            tracing::info!(partitions = moved, unclean, "electing leaders");
        }
        Ok(ControllerResult::atomic(records.into_vec(), results))
    }

    /// Whether some partition's preferred replica could lead and does not.
    pub fn has_imbalance(&self, image: &MetadataImage) -> bool {
        let live: BTreeSet<i32> = image.live_brokers().map(|b| b.broker_id).collect();
        image.topics.values().any(|t| {
            t.partitions
                .values()
                .any(|r| election::preferred(r, &live).is_some())
        })
    }

    /// auto.leader.rebalance.enable: preferred elections for every partition that can have
    /// one; the controller's own decision, so divisible and not bounded per operation.
    pub fn rebalance_leaders(&self, image: &MetadataImage) -> ControllerResult<usize> {
        let live: BTreeSet<i32> = image.live_brokers().map(|b| b.broker_id).collect();
        let mut records = Vec::new();
        for t in image.topics.values() {
            for (p, r) in &t.partitions {
                if let Some(next) = election::preferred(r, &live) {
                    records.push(partition_change(t.topic_id, *p, next));
                }
            }
        }
        let moved = records.len();
        ControllerResult::of(moved).then_divisible(records)
    }
}

fn all_failed<T>(names: impl IntoIterator<Item = String>, e: &ApiError) -> PerTopic<T> {
    names.into_iter().map(|n| (n, Err(e.clone()))).collect()
}

/// Kafka's `validateAlterPartitionData` for one change; the next registration if valid.
fn validate_isr_change(
    image: &MetadataImage,
    broker_id: i32,
    reg: &PartitionRegistration,
    change: &IsrChange,
) -> Result<PartitionRegistration, ApiError> {
    if reg.leader != broker_id {
        return Err(ApiError::new(ResponseError::NotLeaderOrFollower));
    }
    if change.leader_epoch != reg.leader_epoch {
        return Err(ApiError::new(ResponseError::FencedLeaderEpoch));
    }
    if change.partition_epoch != reg.partition_epoch {
        return Err(ApiError::new(ResponseError::InvalidUpdateVersion));
    }
    // Kafka's `Replicas.validateIsr`: members of the replica set, each once, the leader
    // among them (so never longer than the replica list).
    let mut members = HashSet::with_capacity(change.new_isr.len().min(reg.replicas.len()));
    if change.new_isr.len() > reg.replicas.len()
        || !change.new_isr.contains(&broker_id)
        || change
            .new_isr
            .iter()
            .any(|r| !reg.replicas.contains(r) || !members.insert(*r))
    {
        return Err(ApiError::with_message(
            ResponseError::InvalidRequest,
            "The ISR must be distinct replicas of the partition, including its leader",
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
    Ok(next)
}

/// Kafka's `validateManualPartitionAssignment`: registered brokers, each once, and as many
/// as the other partitions have.
fn validate_manual_assignment(
    image: &MetadataImage,
    partition: i32,
    replicas: &[i32],
    replication_factor: Option<usize>,
) -> Result<(), ApiError> {
    let invalid = |m: String| {
        Err(ApiError::with_message(
            ResponseError::InvalidReplicaAssignment,
            m,
        ))
    };
    if replicas.is_empty() {
        return invalid("The manual partition assignment includes an empty replica list.".into());
    }
    if replicas.len() > image.brokers.len() {
        return invalid(format!(
            "The manual partition assignment of partition {partition} has {} replicas, but only {} broker(s) are registered.",
            replicas.len(),
            image.brokers.len()
        ));
    }
    let mut sorted = replicas.to_vec();
    sorted.sort_unstable();
    for (i, b) in sorted.iter().enumerate() {
        if !image.brokers.contains_key(b) {
            return invalid(format!(
                "The manual partition assignment includes broker {b}, but no such broker is registered."
            ));
        }
        if i > 0 && sorted[i - 1] == *b {
            return invalid(format!(
                "The manual partition assignment includes the broker {b} more than once."
            ));
        }
    }
    if let Some(rf) = replication_factor {
        if replicas.len() != rf {
            return invalid(format!(
                "The manual partition assignment includes a partition with {} replica(s), but this is not consistent with previous partitions, which have {rf} replica(s).",
                replicas.len()
            ));
        }
    }
    Ok(())
}

/// A new partition's first registration: its live replicas form the ISR, the first of them
/// leads (Kafka's: a partition with no live replica cannot be created).
fn new_partition_record(
    image: &MetadataImage,
    topic_id: Uuid,
    partition: i32,
    replicas: &[i32],
) -> Result<MetadataRecord, ApiError> {
    let isr: Vec<i32> = replicas
        .iter()
        .copied()
        .filter(|r| image.brokers.get(r).is_some_and(|b| !b.fenced))
        .collect();
    let Some(leader) = isr.first().copied() else {
        return Err(ApiError::with_message(
            ResponseError::InvalidReplicaAssignment,
            format!("All brokers specified in the manual partition assignment for partition {partition} are fenced or in controlled shutdown."),
        ));
    };
    Ok(MetadataRecord::Partition {
        topic_id,
        partition,
        replicas: replicas.to_vec(),
        isr,
        leader,
        leader_epoch: 0,
        partition_epoch: 0,
    })
}

/// A partition's new registration as a record.
pub(super) fn partition_change(
    topic_id: Uuid,
    partition: i32,
    reg: PartitionRegistration,
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

/// Whether `unclean.leader.election.enable` holds for `topic`.
pub(super) fn unclean_allowed(config: &BrokerConfig, image: &MetadataImage, topic: &str) -> bool {
    topic_config::value_of(
        "unclean.leader.election.enable",
        config,
        image.topic_configs(topic),
    )
    .eq_ignore_ascii_case("true")
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
        let shown: String = name.chars().take(TOPIC_NAME_LENGTH_MAX).collect();
        return invalid(format!("Topic name is illegal, it can't be longer than {TOPIC_NAME_LENGTH_MAX} characters, topic name: {shown}..."));
    }
    if !name
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || c == b'.' || c == b'_' || c == b'-')
    {
        return invalid(format!("Topic name \"{name}\" is illegal, it contains a character other than ASCII alphanumerics, '.', '_' and '-'"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::MetadataRecord as R;

    #[test]
    fn topic_names() {
        assert!(validate_topic_name("orders.v1_a-b").is_ok());
        assert!(validate_topic_name("").is_err());
        assert!(validate_topic_name("..").is_err());
        assert!(validate_topic_name("a b").is_err());
        assert!(validate_topic_name(&"x".repeat(250)).is_err());
    }

    fn manager() -> ReplicationControlManager {
        ReplicationControlManager::new(Arc::new(
            BrokerConfig::from_props(BrokerConfig::parse_properties("node.id=1\n").unwrap())
                .unwrap(),
        ))
    }

    /// Brokers 1..=3 live, topic "t" with one partition on [1, 2, 3].
    fn image() -> MetadataImage {
        let mut image = MetadataImage::default();
        let mut batch = Vec::new();
        for b in 1..=3 {
            batch.push(R::RegisterBroker {
                broker_id: b,
                broker_epoch: 10 + b as i64,
                incarnation_id: Uuid::new_v4(),
                endpoints: vec![],
                rack: None,
            });
            batch.push(R::BrokerFencing {
                broker_id: b,
                broker_epoch: 10 + b as i64,
                fenced: false,
            });
        }
        let id = Uuid::new_v4();
        batch.push(R::Topic {
            name: "t".into(),
            topic_id: id,
        });
        batch.push(R::Partition {
            topic_id: id,
            partition: 0,
            replicas: vec![1, 2, 3],
            isr: vec![1, 2, 3],
            leader: 1,
            leader_epoch: 0,
            partition_epoch: 0,
        });
        image.apply_batch(1, &batch);
        image
    }

    fn topic(name: &str, partitions: i32, rf: i16) -> NewTopic {
        NewTopic {
            name: name.into(),
            num_partitions: partitions,
            replication_factor: rf,
            ..NewTopic::default()
        }
    }

    fn code<T: std::fmt::Debug>(r: &Result<T, ApiError>) -> i16 {
        r.as_ref().map(|_| 0).unwrap_or_else(|e| e.code())
    }

    #[test]
    fn create_topics_bounds_the_request_before_placing_anything() {
        let m = manager();
        let image = image();
        for topics in [
            vec![topic("a", i32::MAX, 3)],
            vec![topic("a", 5_000, 1), topic("b", 5_000, 1), topic("c", 1, 1)],
            vec![topic("a", i32::MAX, 3), topic("b", i32::MAX, 3)],
        ] {
            let result = m.create_topics(&image, topics, false);
            assert_eq!(result.record_count(), 0);
            for (_, r) in &result.response {
                assert_eq!(code(r), ResponseError::PolicyViolation.code());
            }
        }
        // Exactly the limits are fine: partitions, then records (topic records count too).
        let ok = m.create_topics(&image, vec![topic("a", 10_000, 3)], true);
        assert_eq!(code(&ok.response[0].1), 0);
        let over = m.create_topics(&image, vec![topic("a", 10_000, 3)], false);
        assert_eq!(
            code(&over.response[0].1),
            ResponseError::PolicyViolation.code()
        );
        let ok = m.create_topics(
            &image,
            vec![topic("a", 9_000, 3), topic("b", 998, 3)],
            false,
        );
        assert_eq!(ok.record_count(), 10_000);
        assert_eq!(ok.batches.len(), 1, "one atomic entry");
    }

    #[test]
    fn create_topics_checks_counts_factors_and_assignments() {
        let m = manager();
        let image = image();
        let cases: Vec<(NewTopic, ResponseError)> = vec![
            (topic("a", 0, 1), ResponseError::InvalidPartitions),
            (topic("a", -7, 1), ResponseError::InvalidPartitions),
            (topic("a", 1, 0), ResponseError::InvalidReplicationFactor),
            (topic("a", 1, 4), ResponseError::InvalidReplicationFactor),
            (
                topic("a", 1, i16::MAX),
                ResponseError::InvalidReplicationFactor,
            ),
            (topic("t", 1, 1), ResponseError::TopicAlreadyExists),
            (
                NewTopic {
                    assignments: vec![(0, vec![1, 2]), (1, vec![1, 99])],
                    ..topic("a", -1, -1)
                },
                ResponseError::InvalidReplicaAssignment,
            ),
            (
                NewTopic {
                    assignments: vec![(0, vec![1, 1])],
                    ..topic("a", -1, -1)
                },
                ResponseError::InvalidReplicaAssignment,
            ),
            (
                NewTopic {
                    assignments: vec![(0, vec![1, 2]), (1, vec![3])],
                    ..topic("a", -1, -1)
                },
                ResponseError::InvalidReplicaAssignment,
            ),
            (
                NewTopic {
                    assignments: vec![(1, vec![1]), (0, vec![2])],
                    ..topic("a", -1, -1)
                },
                ResponseError::InvalidReplicaAssignment,
            ),
            (
                NewTopic {
                    assignments: vec![(0, vec![])],
                    ..topic("a", -1, -1)
                },
                ResponseError::InvalidReplicaAssignment,
            ),
            (
                NewTopic {
                    assignments: vec![(0, vec![1, 2, 3, 1, 2, 3, 1])],
                    ..topic("a", -1, -1)
                },
                ResponseError::InvalidReplicaAssignment,
            ),
            (
                NewTopic {
                    assignments: vec![(0, vec![1])],
                    ..topic("a", 1, -1)
                },
                ResponseError::InvalidRequest,
            ),
        ];
        for (t, expected) in cases {
            let shown = format!("{t:?}");
            let result = m.create_topics(&image, vec![t], false);
            assert_eq!(code(&result.response[0].1), expected.code(), "{shown}");
            assert_eq!(result.record_count(), 0, "{shown}");
        }
        let dup = m.create_topics(&image, vec![topic("a", 1, 1), topic("a", 1, 1)], false);
        assert_eq!(code(&dup.response[0].1), 0);
        assert_eq!(
            code(&dup.response[1].1),
            ResponseError::InvalidRequest.code()
        );
    }

    #[test]
    fn create_partitions_bounds_and_checks() {
        let m = manager();
        let image = image();
        let grow = |count: i32, assignments: Option<Vec<Vec<i32>>>| NewPartitions {
            topic: "t".into(),
            count,
            assignments,
        };
        for (request, expected) in [
            (grow(i32::MAX, None), ResponseError::PolicyViolation),
            (grow(10_002, None), ResponseError::PolicyViolation),
            (grow(1, None), ResponseError::InvalidPartitions),
            (grow(0, None), ResponseError::InvalidPartitions),
            (grow(i32::MIN, None), ResponseError::InvalidPartitions),
            (
                grow(3, Some(vec![vec![1, 2, 3]])),
                ResponseError::InvalidReplicaAssignment,
            ),
            (
                grow(2, Some(vec![vec![1, 2]])),
                ResponseError::InvalidReplicaAssignment,
            ),
            (
                grow(2, Some(vec![vec![1, 2, 42]])),
                ResponseError::InvalidReplicaAssignment,
            ),
            (
                grow(2, Some(vec![vec![1, 2, 2]])),
                ResponseError::InvalidReplicaAssignment,
            ),
        ] {
            let shown = format!("{request:?}");
            let result = m.create_partitions(&image, vec![request], false);
            assert_eq!(code(&result.response[0].1), expected.code(), "{shown}");
            assert_eq!(result.record_count(), 0, "{shown}");
        }
        let ok = m.create_partitions(&image, vec![grow(10_001, None)], false);
        assert_eq!(code(&ok.response[0].1), 0);
        assert_eq!(ok.record_count(), 10_000);
        assert_eq!(ok.batches.len(), 1, "one atomic entry");
    }

    #[test]
    fn alter_partition_refuses_duplicate_and_foreign_isr_members() {
        let m = manager();
        let image = image();
        let id = image.topics["t"].topic_id;
        let change = |isr: Vec<i32>, partition_epoch: i32| IsrChange {
            topic_id: id,
            partition: 0,
            leader_epoch: 0,
            partition_epoch,
            new_isr: isr,
        };
        let result = m
            .alter_partitions(
                &image,
                1,
                11,
                &[
                    change(vec![1, 1, 1, 1], 0),
                    change(vec![1, 2, 3, 2], 0),
                    change(vec![1, 4], 0),
                    change(vec![2, 3], 0),
                    change(vec![1, 2], 0),
                    change(vec![1, 2], 0),
                ],
            )
            .unwrap();
        let codes: Vec<i16> = result.response.iter().map(code).collect();
        let invalid = ResponseError::InvalidRequest.code();
        assert_eq!(
            codes,
            vec![
                invalid,
                invalid,
                invalid,
                invalid,
                0,
                ResponseError::InvalidUpdateVersion.code()
            ]
        );
        assert_eq!(result.record_count(), 1);
        assert!(m.alter_partitions(&image, 1, 99, &[]).is_err());
    }

    #[test]
    fn elect_all_lists_only_elections_and_is_bounded() {
        let m = manager();
        let image = image();
        let all = m.elect_leaders(&image, false, None).unwrap();
        assert!(all.response.is_empty(), "nothing needed an election");
        let named = m
            .elect_leaders(
                &image,
                false,
                Some(vec![("t".into(), 0), ("t".into(), 0), ("x".into(), 1)]),
            )
            .unwrap();
        assert_eq!(named.response.len(), 2, "duplicates collapse");
    }
}
