//! The replica manager: the partitions this broker hosts, kept in step with the metadata
//! image, and the operations the data-path handlers run on them (Kafka's `ReplicaManager`).

pub mod alter_partition;
pub mod divergence;
pub mod fetcher;
pub mod isr;
pub mod partition;
pub mod producer_state;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use gregor_storage::validator::AppendOrigin;
use kafka_protocol::ResponseError;
use parking_lot::RwLock;
use tokio::sync::Notify;
use uuid::Uuid;

pub use partition::{
    AppendResult, FollowerFetch, FollowerFetchState, FollowerRead, IsrChange, Partition,
    PartitionConfig, PartitionId, ReadResult, ACKS_ALL, ACKS_LEADER, ACKS_NONE,
};

use crate::clock::now_ms;
use crate::config::{log_config_from, BrokerConfig};
use crate::error::ApiError;
use crate::metadata::{topic_config, ConfigResource, MetadataImage, MetadataListener, TopicImage};

/// A topic-partition, by name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: i32,
}

impl TopicPartition {
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }

    /// The log directory name, as Kafka names it.
    pub fn dir_name(&self) -> String {
        format!("{}-{}", self.topic, self.partition)
    }
}

/// The file in each partition directory that ties it to its topic id (Kafka's
/// `partition.metadata`), so a re-created topic of the same name never reuses old data.
const PARTITION_METADATA_FILE: &str = "partition.metadata";

pub struct ReplicaManager {
    config: Arc<BrokerConfig>,
    log_dir: PathBuf,
    partitions: RwLock<HashMap<TopicPartition, Arc<Partition>>>,
    /// Woken whenever a high watermark moves or a log changes; delayed fetches wait on it.
    data_arrived: Notify,
}

impl ReplicaManager {
    pub fn new(config: Arc<BrokerConfig>) -> std::io::Result<Self> {
        let log_dir = config.log_dir.clone();
        std::fs::create_dir_all(&log_dir)?;
        Ok(ReplicaManager {
            config,
            log_dir,
            partitions: RwLock::new(HashMap::new()),
            data_arrived: Notify::new(),
        })
    }

    pub fn node_id(&self) -> i32 {
        self.config.node_id
    }

    /// Deletes partition directories that the image does not assign to this broker (topics
    /// deleted while it was down). Called once the broker has caught up with the metadata
    /// log, never before: an image that is still behind would make live logs look stray.
    pub fn delete_stray_logs(&self, image: &MetadataImage) {
        self.reconcile(image);
        let known: HashSet<String> = self
            .partitions
            .read()
            .keys()
            .map(TopicPartition::dir_name)
            .collect();
        if let Ok(entries) = std::fs::read_dir(&self.log_dir) {
            for entry in entries.flatten() {
                let path = entry.path();
                let name = entry.file_name().to_string_lossy().to_string();
                if path.join(PARTITION_METADATA_FILE).exists() && !known.contains(&name) {
                    tracing::info!(dir = %path.display(), "deleting stray partition directory");
                    if let Err(e) = std::fs::remove_dir_all(&path) {
                        tracing::warn!(dir = %path.display(), error = %e, "could not delete stray partition directory");
                    }
                }
            }
        }
    }

    /// Brings every hosted partition in line with the image.
    fn reconcile(&self, image: &MetadataImage) {
        self.reconcile_topics(image, None);
    }

    /// Brings the hosted partitions of `changed` topics (all topics when None) in line with
    /// the image. Topics outside `changed` are untouched, so applying an entry costs what the
    /// entry changed, not what the broker hosts.
    fn reconcile_topics(&self, image: &MetadataImage, changed: Option<&HashSet<&str>>) {
        let node_id = self.config.node_id;
        let in_scope = |topic: &str| changed.is_none_or(|c| c.contains(topic));
        let mut wanted: HashMap<TopicPartition, (&TopicImage, i32)> = HashMap::new();
        let topics: Box<dyn Iterator<Item = &TopicImage>> = match changed {
            None => Box::new(image.topics.values()),
            Some(c) => Box::new(c.iter().filter_map(|name| image.topics.get(*name))),
        };
        for topic in topics {
            for (p, reg) in &topic.partitions {
                if reg.replicas.contains(&node_id) {
                    wanted.insert(TopicPartition::new(&topic.name, *p), (topic, *p));
                }
            }
        }
        // Remove what is gone (or whose topic was re-created under a new id).
        let removed: Vec<(TopicPartition, Arc<Partition>)> = {
            let mut parts = self.partitions.write();
            let gone: Vec<TopicPartition> = parts
                .iter()
                .filter(|(tp, _)| in_scope(&tp.topic))
                .filter(|(tp, p)| {
                    wanted
                        .get(*tp)
                        .map(|(t, _)| t.topic_id != p.topic_id)
                        .unwrap_or(true)
                })
                .map(|(tp, _)| tp.clone())
                .collect();
            gone.into_iter()
                .filter_map(|tp| parts.remove(&tp).map(|p| (tp, p)))
                .collect()
        };
        for (tp, partition) in removed {
            match Arc::try_unwrap(partition) {
                Ok(p) => {
                    if let Err(e) = p.delete() {
                        tracing::error!(partition = %tp.dir_name(), error = %e, "could not delete partition log");
                    } else {
                        tracing::info!(partition = %tp.dir_name(), "deleted partition log");
                    }
                }
                Err(p) => {
                    // A request still holds it; delete the directory once it is released.
                    tracing::info!(partition = %tp.dir_name(), "deleting partition log still in use");
                    let dir = self.log_dir.join(tp.dir_name());
                    drop(p);
                    let _ = std::fs::remove_dir_all(dir);
                }
            }
        }
        // Create or update what the image assigns here.
        let now = now_ms();
        let mut configs: HashMap<&str, PartitionConfig> = HashMap::new();
        for (tp, (topic, p)) in wanted {
            let reg = &topic.partitions[&p];
            let config = configs
                .entry(topic.name.as_str())
                .or_insert_with(|| partition_config(&self.config, image.topic_configs(&topic.name)))
                .clone();
            let existing = self.partitions.read().get(&tp).cloned();
            match existing {
                Some(partition) => {
                    partition.update_registration(reg);
                    partition.update_config(config);
                }
                None => {
                    let dir = self.log_dir.join(tp.dir_name());
                    if let Err(e) = prepare_partition_dir(&dir, topic.topic_id) {
                        tracing::error!(partition = %tp.dir_name(), error = %e, "cannot prepare partition directory");
                        continue;
                    }
                    match Partition::open(
                        &dir,
                        PartitionId {
                            topic: topic.name.clone(),
                            index: p,
                            topic_id: topic.topic_id,
                        },
                        node_id,
                        reg,
                        config,
                        now,
                    ) {
                        Ok(partition) => {
                            tracing::debug!(partition = %tp.dir_name(), leader = reg.leader, epoch = reg.leader_epoch, "opened partition");
                            self.partitions.write().insert(tp, Arc::new(partition));
                        }
                        Err(e) => {
                            tracing::error!(partition = %tp.dir_name(), error = %e, "cannot open partition log")
                        }
                    }
                }
            }
        }
        self.data_arrived.notify_waiters();
    }

    /// The partition if this broker hosts it; otherwise the error Kafka answers with.
    pub fn get_partition(
        &self,
        image: &MetadataImage,
        tp: &TopicPartition,
    ) -> Result<Arc<Partition>, ApiError> {
        if let Some(p) = self.partitions.read().get(tp) {
            return Ok(p.clone());
        }
        match image
            .topic(&tp.topic)
            .and_then(|t| t.partitions.get(&tp.partition))
        {
            Some(_) => Err(ApiError::new(ResponseError::NotLeaderOrFollower)),
            None => Err(ApiError::new(ResponseError::UnknownTopicOrPartition)),
        }
    }

    /// Appends to a partition this broker leads and wakes delayed fetches.
    pub fn append(
        &self,
        image: &MetadataImage,
        tp: &TopicPartition,
        records: &bytes::Bytes,
        acks: i16,
    ) -> Result<(Arc<Partition>, AppendResult), ApiError> {
        let partition = self.get_partition(image, tp)?;
        if image
            .topic(&tp.topic)
            .map(|t| t.is_internal())
            .unwrap_or(false)
        {
            return Err(ApiError::with_message(
                ResponseError::InvalidTopicException,
                format!("Cannot append to internal topic {}", tp.topic),
            ));
        }
        let result =
            partition.append_records_as_leader(records, acks, AppendOrigin::Client, now_ms())?;
        self.data_arrived.notify_waiters();
        Ok((partition, result))
    }

    /// Appends a batch the broker itself wrote to an internal topic it leads (the group
    /// coordinator's `__consumer_offsets` records) with acks=all's ISR check, and wakes
    /// delayed fetches so followers replicate it at once.
    pub fn append_to_internal_topic(
        &self,
        partition: &Partition,
        records: &bytes::Bytes,
    ) -> Result<AppendResult, ApiError> {
        let result = partition.append_records_as_leader(
            records,
            ACKS_ALL,
            AppendOrigin::Coordinator,
            now_ms(),
        )?;
        self.data_arrived.notify_waiters();
        Ok(result)
    }

    /// Waits until the partition's HW covers `end_offset` (exclusive) while this replica
    /// still leads in `leader_epoch`, the epoch of the append, or the deadline. The ISR
    /// holding the data is what acks=all promises.
    pub async fn wait_for_high_watermark(
        partition: &Partition,
        leader_epoch: i32,
        end_offset: i64,
        deadline: tokio::time::Instant,
    ) -> Result<(), ApiError> {
        let mut rx = partition.subscribe_high_watermark();
        let waited = tokio::time::timeout_at(
            deadline,
            rx.wait_for(|hw| hw.offset >= end_offset || hw.leading_epoch != Some(leader_epoch)),
        )
        .await
        // A copy: the watch's lock must not be held while the partition's is taken below.
        .map(|r| r.map(|hw| *hw));
        match waited {
            Err(_elapsed) => Err(ApiError::new(ResponseError::RequestTimedOut)),
            Ok(Err(_closed)) => Err(ApiError::new(ResponseError::NotLeaderOrFollower)),
            // Kafka's DelayedProduce answers NOT_LEADER_OR_FOLLOWER once the replica stops
            // leading: the offset the batch got may now hold another leader's record.
            Ok(Ok(hw)) if hw.leading_epoch != Some(leader_epoch) => {
                Err(ApiError::new(ResponseError::NotLeaderOrFollower))
            }
            // The HW passed the batch, but if the ISR shrank below min.insync.replicas
            // meanwhile, fewer replicas than promised hold it.
            Ok(Ok(_)) if !partition.has_enough_isr() => {
                Err(ApiError::new(ResponseError::NotEnoughReplicasAfterAppend))
            }
            Ok(Ok(_)) => Ok(()),
        }
    }

    /// A future that resolves at the next `notify_data_arrived`; create it before checking
    /// for data so that no wake-up falls between the check and the wait.
    pub fn data_arrived(&self) -> &Notify {
        &self.data_arrived
    }

    /// Partitions this broker leads.
    pub fn leader_partitions(&self) -> Vec<Arc<Partition>> {
        self.partitions
            .read()
            .values()
            .filter(|p| p.is_leader())
            .cloned()
            .collect()
    }

    /// Partitions this broker follows, with what their next fetch sends.
    pub fn followed_partitions(&self) -> Vec<(TopicPartition, Arc<Partition>, FollowerFetchState)> {
        self.partitions
            .read()
            .iter()
            .filter_map(|(tp, p)| p.follower_fetch_state().map(|s| (tp.clone(), p.clone(), s)))
            .collect()
    }

    pub fn partition_count(&self) -> usize {
        self.partitions.read().len()
    }

    /// Runs roll, producer expiry, retention and time-based flush on every partition,
    /// forever.
    pub async fn run_log_maintenance(self: Arc<Self>) {
        let expiration_check_ms =
            u64::try_from(self.config.producer_state.expiration_check_interval_ms).unwrap_or(1);
        let interval_ms = self
            .config
            .log_retention_check_interval_ms
            .min(expiration_check_ms)
            .clamp(100, 300_000);
        let mut ticker = tokio::time::interval(Duration::from_millis(interval_ms));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let partitions: Vec<Arc<Partition>> =
                self.partitions.read().values().cloned().collect();
            let now = now_ms();
            for p in partitions {
                match p.maintain(now) {
                    Ok(0) => {}
                    Ok(n) => {
                        tracing::info!(topic = %p.topic, partition = p.index, segments = n, "retention deleted segments")
                    }
                    Err(e) => {
                        tracing::warn!(topic = %p.topic, partition = p.index, error = %e, "log maintenance failed")
                    }
                }
            }
        }
    }

    /// Flushes and closes every log (clean shutdown).
    pub fn shutdown(&self) {
        let parts: BTreeMap<TopicPartition, Arc<Partition>> =
            self.partitions.write().drain().collect();
        for (tp, p) in parts {
            match Arc::try_unwrap(p) {
                Ok(p) => {
                    if let Err(e) = p.close() {
                        tracing::warn!(partition = %tp.dir_name(), error = %e, "close failed");
                    }
                }
                Err(_) => {
                    tracing::warn!(partition = %tp.dir_name(), "partition still in use at shutdown; recovery will check it")
                }
            }
        }
    }
}

impl MetadataListener for ReplicaManager {
    fn on_metadata(&self, old: &MetadataImage, new: &MetadataImage) {
        // Broker-level configs are every topic's defaults: a change to them touches all.
        if !broker_configs(old).eq(broker_configs(new)) {
            self.reconcile(new);
            return;
        }
        let changed: HashSet<&str> = new
            .topics
            .iter()
            .filter(|(name, topic)| {
                old.topics.get(*name) != Some(*topic)
                    || old.topic_configs(name) != new.topic_configs(name)
            })
            .map(|(name, _)| name.as_str())
            .chain(
                old.topics
                    .keys()
                    .filter(|name| !new.topics.contains_key(*name))
                    .map(String::as_str),
            )
            .collect();
        if !changed.is_empty() {
            self.reconcile_topics(new, Some(&changed));
        }
    }
}

/// The configs of brokers and of the cluster-wide default, in key order.
fn broker_configs(
    image: &MetadataImage,
) -> impl Iterator<Item = (&ConfigResource, &BTreeMap<String, String>)> + '_ {
    image
        .configs
        .iter()
        .filter(|(resource, _)| !resource.is_topic())
}

/// A partition's settings from its topic's configs (override, broker default, Kafka default).
fn partition_config(
    broker: &BrokerConfig,
    overrides: Option<&std::collections::BTreeMap<String, String>>,
) -> PartitionConfig {
    let value = |k: &str| topic_config::value_of(k, broker, overrides);
    let number = |k: &str, default: i64| value(k).trim().parse::<i64>().unwrap_or(default);
    let mut log = log_config_from(&value);
    let policy = |name: &str| value("cleanup.policy").split(',').any(|p| p.trim() == name);
    // Time and size retention apply only with cleanup.policy=delete (as in Kafka): a
    // compacted topic such as __consumer_offsets keeps its records until they are superseded.
    if !policy("delete") {
        log.retention_ms = -1;
        log.retention_bytes = -1;
    }
    PartitionConfig {
        log,
        min_insync_replicas: number("min.insync.replicas", 1) as i32,
        timestamp_before_max_ms: number("message.timestamp.before.max.ms", i64::MAX),
        timestamp_after_max_ms: number("message.timestamp.after.max.ms", i64::MAX),
        producer_state: broker.producer_state.clone(),
        compacted: policy("compact"),
    }
}

/// Creates the directory and records the topic id, or wipes a directory left by an older
/// topic of the same name.
fn prepare_partition_dir(dir: &Path, topic_id: Uuid) -> std::io::Result<()> {
    let meta = dir.join(PARTITION_METADATA_FILE);
    if let Ok(text) = std::fs::read_to_string(&meta) {
        let recorded = text
            .lines()
            .find_map(|l| l.strip_prefix("topic_id: "))
            .map(str::trim)
            .map(str::to_string);
        if recorded.as_deref() == Some(&topic_id.to_string()) {
            return Ok(());
        }
        tracing::info!(dir = %dir.display(), "partition directory belongs to an older topic; wiping it");
        std::fs::remove_dir_all(dir)?;
    }
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!("{PARTITION_METADATA_FILE}.tmp"));
    std::fs::write(&tmp, format!("version: 0\ntopic_id: {topic_id}\n"))?;
    std::fs::rename(&tmp, &meta)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::PartitionRegistration;
    use crate::replica::partition::{PartitionConfig, PartitionId};
    use bytes::{Bytes, BytesMut};
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };

    fn batch(value: &'static [u8]) -> Bytes {
        let record = Record {
            transactional: false,
            control: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: 0,
            sequence: -1,
            timestamp: now_ms(),
            key: None,
            value: Some(Bytes::from_static(value)),
            headers: Default::default(),
            delete_horizon: false,
        };
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            [&record],
            &RecordEncodeOptions {
                version: 2,
                compression: Compression::None,
            },
        )
        .unwrap();
        buf.freeze()
    }

    fn registration(leader: i32, leader_epoch: i32, isr: &[i32]) -> PartitionRegistration {
        PartitionRegistration {
            replicas: vec![1, 2, 3],
            isr: isr.to_vec(),
            leader,
            leader_epoch,
            partition_epoch: leader_epoch,
        }
    }

    /// Found by jepsen/ under pause faults: a paused leader, resumed with stale metadata,
    /// appended a produce at offset o; it then learned of the new leader, truncated, fetched
    /// the new leader's record at o, and its HW passed o. The waiting acks=all produce must
    /// fail (NOT_LEADER_OR_FOLLOWER), not acknowledge offset o.
    #[tokio::test]
    async fn acks_all_wait_ends_when_leadership_is_lost() {
        let dir = tempfile::tempdir().unwrap();
        let id = PartitionId {
            topic: "t".into(),
            index: 0,
            topic_id: Uuid::new_v4(),
        };
        let config = PartitionConfig {
            log: Default::default(),
            min_insync_replicas: 2,
            timestamp_before_max_ms: i64::MAX,
            timestamp_after_max_ms: i64::MAX,
            producer_state: Default::default(),
            compacted: false,
        };
        let partition = Arc::new(
            Partition::open(
                dir.path(),
                id,
                1,
                &registration(1, 0, &[1, 2, 3]),
                config,
                now_ms(),
            )
            .unwrap(),
        );
        let appended = partition
            .append_records_as_leader(&batch(b"old leader"), -1, AppendOrigin::Client, now_ms())
            .unwrap();
        assert_eq!((appended.base_offset, appended.leader_epoch), (0, 0));
        let waiter = {
            let p = partition.clone();
            tokio::spawn(async move {
                let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
                ReplicaManager::wait_for_high_watermark(&p, 0, 1, deadline).await
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        // Broker 2 leads epoch 1; this replica truncates and takes the new leader's record.
        partition.update_registration(&registration(2, 1, &[2, 3]));
        partition.truncate_to(0).unwrap();
        partition
            .append_as_follower(1, &batch(b"new leader"), 1, now_ms())
            .unwrap();
        assert_eq!(partition.high_watermark(), 1);
        let result = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("the wait ends")
            .unwrap();
        assert_eq!(
            result.unwrap_err().code(),
            ResponseError::NotLeaderOrFollower.code()
        );
    }
}
