//! The group coordinator: consumer groups under the classic protocol and their committed
//! offsets (Kafka's `GroupCoordinator` and `GroupMetadataManager`).
//!
//! Placement (`placement.rs`): a group lives in partition `abs(hash(group)) % n` of the
//! internal topic `__consumer_offsets`, and the leader of that partition coordinates it.
//! This node therefore holds one *shard* per offsets partition it leads: the groups of that
//! partition, their members (in memory only, as the classic protocol allows) and their
//! committed offsets, which are records of the partition (`offsets_log.rs`).
//!
//! - Becoming leader of an offsets partition starts a load (`loader.rs`): the shard answers
//!   COORDINATOR_LOAD_IN_PROGRESS until the partition's log has been replayed. Losing the
//!   leadership drops the shard and its groups; another node loads them from its replica.
//! - A write (commit, deletion, expiry, checkpoint) is appended to the partition as leader
//!   and acknowledged once the high watermark passes it, as a Produce with acks=all. The
//!   in-memory offsets change only then, in log order (`Shard::pending`), so OffsetFetch
//!   never shows an offset the ISR does not hold.
//! - `maintenance.rs` expires offsets of empty groups and keeps each partition's log bounded.

pub mod consumer_protocol;
mod loader;
mod maintenance;
pub mod offsets_log;
pub mod placement;
pub mod state;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::ResponseError;
use parking_lot::Mutex;
use tokio::sync::mpsc;

use crate::clock::now_ms;
use crate::config::GroupCoordinatorConfig;
use crate::metadata::{MetadataImage, MetadataPublisher};
use crate::replica::{Partition, ReplicaManager, TopicPartition};
pub use offsets_log::{CommittedOffset, OffsetKey, OffsetOp};
pub use placement::OFFSETS_TOPIC;
pub use state::{Group, GroupState, JoinRequest, JoinResult, Outcome, SyncResult};

/// How often session and rebalance timers are checked.
const TICK_MS: u64 = 50;
/// A write is cut into batches of about this many bytes, well below `max.message.bytes`.
const WRITE_BATCH_BYTES: usize = 256 * 1024;

/// A member as DescribeGroups reports it.
pub struct MemberDescription {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub metadata: Bytes,
    pub assignment: Bytes,
}

pub struct GroupDescription {
    pub state: GroupState,
    pub protocol_type: String,
    pub protocol_name: String,
    pub members: Vec<MemberDescription>,
}

/// A group this node coordinates, with its committed offsets.
struct GroupEntry {
    group: Group,
    offsets: BTreeMap<(String, i32), CommittedOffset>,
    /// The offsets partition that holds it.
    shard: i32,
}

impl GroupEntry {
    fn new(group_id: &str, shard: i32) -> GroupEntry {
        GroupEntry {
            group: Group::new(group_id),
            offsets: BTreeMap::new(),
            shard,
        }
    }

    /// Neither members nor offsets: nothing to remember.
    fn is_forgettable(&self) -> bool {
        self.group.state == GroupState::Empty && self.group.is_empty() && self.offsets.is_empty()
    }
}

/// Records appended to a shard's partition and not yet below its high watermark.
struct PendingWrite {
    /// The offset after the write's last record.
    end_offset: i64,
    ops: Vec<OffsetOp>,
}

/// One `__consumer_offsets` partition this node leads.
///
/// # Invariants
/// - `pending` is in log order, and its `end_offset`s grow.
/// - Once `loaded`, the offsets of this shard's groups are exactly the replay of the
///   partition's log up to the first pending write.
struct Shard {
    /// The leader epoch it was loaded at; a write checks the partition still has it.
    leader_epoch: i32,
    loaded: bool,
    pending: VecDeque<PendingWrite>,
}

/// State behind the coordinator's lock.
#[derive(Default)]
struct Inner {
    shards: HashMap<i32, Shard>,
    /// Groups of loaded shards only.
    groups: HashMap<String, GroupEntry>,
}

/// A request to load (replay) an offsets partition this node now leads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct LoadJob {
    partition: i32,
    leader_epoch: i32,
}

pub struct GroupCoordinator {
    config: GroupCoordinatorConfig,
    node_id: i32,
    replica_manager: Arc<ReplicaManager>,
    metadata: Arc<MetadataPublisher>,
    inner: Mutex<Inner>,
    /// Loads requested by leadership changes, run one at a time by `run_loader`.
    load_tx: mpsc::UnboundedSender<LoadJob>,
    load_rx: Mutex<Option<mpsc::UnboundedReceiver<LoadJob>>>,
    /// Whether a creation of `__consumer_offsets` is in flight (one at a time).
    creating_topic: AtomicBool,
}

/// Kafka's mapping of a failed offsets append to what the group APIs answer
/// (`GroupMetadataManager.storeOffsets`).
fn coordinator_error(e: ResponseError) -> ResponseError {
    use ResponseError as E;
    match e {
        E::UnknownTopicOrPartition | E::NotEnoughReplicas | E::NotEnoughReplicasAfterAppend => {
            E::CoordinatorNotAvailable
        }
        E::NotLeaderOrFollower | E::KafkaStorageError | E::FencedLeaderEpoch => E::NotCoordinator,
        E::MessageTooLarge | E::RecordListTooLarge | E::InvalidFetchSize => {
            E::InvalidCommitOffsetSize
        }
        other => other,
    }
}

impl GroupCoordinator {
    pub fn new(
        config: GroupCoordinatorConfig,
        node_id: i32,
        replica_manager: Arc<ReplicaManager>,
        metadata: Arc<MetadataPublisher>,
    ) -> Self {
        let (load_tx, load_rx) = mpsc::unbounded_channel();
        GroupCoordinator {
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

    pub fn config(&self) -> &GroupCoordinatorConfig {
        &self.config
    }

    /// Partitions of `__consumer_offsets`: the topic's own count once it exists (Kafka reads
    /// it from the metadata too), else `None`.
    pub fn offsets_partitions(image: &MetadataImage) -> Option<i32> {
        image
            .topic(OFFSETS_TOPIC)
            .map(|t| t.partitions.len() as i32)
            .filter(|n| *n > 0)
    }

    /// The offsets partition of a group, if the topic exists.
    pub fn partition_for(image: &MetadataImage, group_id: &str) -> Option<i32> {
        Self::offsets_partitions(image).map(|n| placement::partition_for(group_id, n))
    }

    /// Claims the right to create `__consumer_offsets`; `finish_topic_creation` releases it.
    pub fn try_begin_topic_creation(&self) -> bool {
        !self.creating_topic.swap(true, Ordering::SeqCst)
    }

    pub fn finish_topic_creation(&self) {
        self.creating_topic.store(false, Ordering::SeqCst);
    }

    /// Which shard holds the group, if this node coordinates it right now; otherwise
    /// NOT_COORDINATOR, or COORDINATOR_LOAD_IN_PROGRESS while its partition loads.
    fn check(&self, inner: &Inner, group_id: &str) -> Result<i32, ResponseError> {
        let image = self.metadata.image();
        let shard = Self::partition_for(&image, group_id).ok_or(ResponseError::NotCoordinator)?;
        match inner.shards.get(&shard) {
            None => Err(ResponseError::NotCoordinator),
            Some(s) if !s.loaded => Err(ResponseError::CoordinatorLoadInProgress),
            Some(_) => Ok(shard),
        }
    }

    /// Whether this node coordinates the group (for handlers that answer per group).
    pub fn check_coordinator(&self, group_id: &str) -> Result<(), ResponseError> {
        if group_id.is_empty() {
            return Err(ResponseError::InvalidGroupId);
        }
        self.check(&self.inner.lock(), group_id).map(|_| ())
    }

    /// Runs `f` on the group (created if asked and missing) of a shard this node coordinates;
    /// `Ok(None)` when the group does not exist. An emptied group without offsets is
    /// forgotten, keeping the map bounded.
    fn with_group<T>(
        &self,
        group_id: &str,
        create: bool,
        f: impl FnOnce(&mut GroupEntry) -> T,
    ) -> Result<Option<T>, ResponseError> {
        let mut inner = self.inner.lock();
        let shard = self.check(&inner, group_id)?;
        if create && !inner.groups.contains_key(group_id) {
            inner
                .groups
                .insert(group_id.to_string(), GroupEntry::new(group_id, shard));
        }
        let result = inner.groups.get_mut(group_id).map(f);
        if inner
            .groups
            .get(group_id)
            .is_some_and(GroupEntry::is_forgettable)
        {
            inner.groups.remove(group_id);
        }
        Ok(result)
    }

    pub fn join(&self, group_id: &str, req: JoinRequest) -> Outcome<JoinResult> {
        let delay = self.config.initial_rebalance_delay_ms;
        let member_id = req.member_id.clone();
        // Kafka's GroupCoordinator: the coordinator checks first, then the session timeout
        // against the broker's range, before the group is looked up or created.
        let timeouts = self.config.min_session_timeout_ms..=self.config.max_session_timeout_ms;
        if !timeouts.contains(&req.session_timeout_ms) {
            let error = self
                .check_coordinator(group_id)
                .err()
                .unwrap_or(ResponseError::InvalidSessionTimeout);
            return Outcome::Now(JoinResult::error(&member_id, error));
        }
        match self.with_group(group_id, true, |e| e.group.join(req, now_ms(), delay)) {
            Ok(Some(outcome)) => outcome,
            Ok(None) => unreachable!("created above"),
            Err(e) => Outcome::Now(JoinResult::error(&member_id, e)),
        }
    }

    pub fn sync(
        &self,
        group_id: &str,
        member_id: &str,
        generation_id: i32,
        assignments: Vec<(String, Bytes)>,
    ) -> Outcome<SyncResult> {
        match self.with_group(group_id, false, |e| {
            e.group
                .sync(member_id, generation_id, assignments, now_ms())
        }) {
            Ok(Some(outcome)) => outcome,
            Ok(None) => Outcome::Now(SyncResult::error(ResponseError::UnknownMemberId)),
            Err(e) => Outcome::Now(SyncResult::error(e)),
        }
    }

    pub fn heartbeat(
        &self,
        group_id: &str,
        member_id: &str,
        generation_id: i32,
    ) -> Option<ResponseError> {
        match self.with_group(group_id, false, |e| {
            e.group.heartbeat(member_id, generation_id, now_ms())
        }) {
            Ok(Some(r)) => r,
            Ok(None) => Some(ResponseError::UnknownMemberId),
            Err(e) => Some(e),
        }
    }

    /// LeaveGroup of one member; `Err` is a group-level error (not the coordinator).
    pub fn leave(
        &self,
        group_id: &str,
        member_id: &str,
        group_instance_id: Option<&str>,
    ) -> Result<Option<ResponseError>, ResponseError> {
        Ok(self
            .with_group(group_id, false, |e| {
                e.group.leave(member_id, group_instance_id, now_ms())
            })?
            .unwrap_or(Some(ResponseError::UnknownMemberId)))
    }

    /// OffsetCommit (Kafka's `commitOffset`): validates the committer against the group,
    /// appends the offsets to the group's partition and returns once the ISR holds them.
    pub async fn commit_offsets(
        &self,
        group_id: &str,
        member_id: &str,
        group_instance_id: Option<&str>,
        generation_id: i32,
        api_version: i16,
        offsets: Vec<((String, i32), CommittedOffset)>,
    ) -> Result<(), ResponseError> {
        let now = now_ms();
        self.write(group_id, |inner, shard| {
            if !inner.groups.contains_key(group_id) {
                if generation_id >= 0 {
                    // A member of a group this coordinator does not know (Kafka: v9+ says
                    // GROUP_ID_NOT_FOUND, older versions ILLEGAL_GENERATION).
                    return Err(if api_version >= 9 {
                        ResponseError::GroupIdNotFound
                    } else {
                        ResponseError::IllegalGeneration
                    });
                }
                // Generation -1: the admin client or a consumer without group management,
                // which Kafka serves with a "simple" group.
                inner
                    .groups
                    .insert(group_id.to_string(), GroupEntry::new(group_id, shard));
            }
            let entry = inner.groups.get_mut(group_id).expect("present");
            let verdict = entry.group.validate_offset_commit(
                member_id,
                group_instance_id,
                generation_id,
                now,
            );
            if let Some(err) = verdict {
                if entry.is_forgettable() {
                    inner.groups.remove(group_id);
                }
                return Err(err);
            }
            Ok(offsets
                .into_iter()
                .map(|((topic, partition), v)| {
                    OffsetOp::Commit(
                        OffsetKey {
                            group: group_id.to_string(),
                            topic,
                            partition,
                        },
                        v,
                    )
                })
                .collect())
        })
        .await
        .map(|_| ())
    }

    /// Committed offsets of the given partitions (all of the group's when `None`).
    pub fn fetch_offsets(
        &self,
        group_id: &str,
        partitions: Option<Vec<(String, i32)>>,
    ) -> Result<Vec<((String, i32), Option<CommittedOffset>)>, ResponseError> {
        let inner = self.inner.lock();
        self.check(&inner, group_id)?;
        let offsets = inner.groups.get(group_id).map(|e| &e.offsets);
        Ok(match partitions {
            Some(ps) => ps
                .into_iter()
                .map(|tp| (tp.clone(), offsets.and_then(|o| o.get(&tp).cloned())))
                .collect(),
            None => offsets
                .map(|o| {
                    o.iter()
                        .map(|(tp, c)| (tp.clone(), Some(c.clone())))
                        .collect()
                })
                .unwrap_or_default(),
        })
    }

    /// (group id, protocol type, state) of every group this node coordinates; while any of
    /// its partitions is still loading, COORDINATOR_LOAD_IN_PROGRESS (Kafka does the same, so
    /// a listing is never silently partial).
    pub fn list_groups(&self) -> Result<Vec<(String, String, GroupState)>, ResponseError> {
        let inner = self.inner.lock();
        if inner.shards.values().any(|s| !s.loaded) {
            return Err(ResponseError::CoordinatorLoadInProgress);
        }
        let mut out: Vec<_> = inner
            .groups
            .values()
            .map(|e| {
                (
                    e.group.group_id.clone(),
                    e.group.protocol_type.clone().unwrap_or_default(),
                    e.group.state,
                )
            })
            .collect();
        out.sort();
        Ok(out)
    }

    pub fn describe_group(&self, group_id: &str) -> Result<GroupDescription, ResponseError> {
        let inner = self.inner.lock();
        self.check(&inner, group_id)?;
        let Some(e) = inner.groups.get(group_id) else {
            // Kafka describes an unknown group as Dead with no members.
            return Ok(GroupDescription {
                state: GroupState::Dead,
                protocol_type: String::new(),
                protocol_name: String::new(),
                members: vec![],
            });
        };
        let g = &e.group;
        let protocol = g.protocol_name.clone().unwrap_or_default();
        let stable = g.state == GroupState::Stable;
        Ok(GroupDescription {
            state: g.state,
            protocol_type: g.protocol_type.clone().unwrap_or_default(),
            protocol_name: if stable {
                protocol.clone()
            } else {
                String::new()
            },
            members: g
                .members
                .values()
                .map(|m| MemberDescription {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    metadata: if stable {
                        m.metadata_for(&protocol)
                    } else {
                        Default::default()
                    },
                    assignment: if stable {
                        m.assignment.clone()
                    } else {
                        Default::default()
                    },
                })
                .collect(),
        })
    }

    /// DeleteGroups for one group (Kafka's `validateDeleteGroup` + offset tombstones): only an
    /// Empty group may go; its offsets are deleted once the tombstones are committed.
    pub async fn delete_group(&self, group_id: &str) -> Result<(), ResponseError> {
        if group_id.is_empty() {
            return Err(ResponseError::InvalidGroupId);
        }
        self.write(group_id, |inner, _| {
            let Some(entry) = inner.groups.get(group_id) else {
                return Err(ResponseError::GroupIdNotFound);
            };
            match entry.group.state {
                GroupState::Dead => return Err(ResponseError::GroupIdNotFound),
                GroupState::Empty => {}
                _ => return Err(ResponseError::NonEmptyGroup),
            }
            Ok(entry
                .offsets
                .keys()
                .map(|(topic, partition)| {
                    OffsetOp::Delete(OffsetKey {
                        group: group_id.to_string(),
                        topic: topic.clone(),
                        partition: *partition,
                    })
                })
                .collect())
        })
        .await?;
        // An Empty group without offsets is gone (unless a member joined meanwhile).
        let mut inner = self.inner.lock();
        if inner
            .groups
            .get(group_id)
            .is_some_and(GroupEntry::is_forgettable)
        {
            inner.groups.remove(group_id);
        }
        Ok(())
    }

    /// OffsetDelete (Kafka's `deleteOffsets`): per partition, GROUP_SUBSCRIBED_TO_TOPIC for
    /// topics the group's members still consume; the other offsets are deleted. The group
    /// must exist, and a non-empty group only qualifies if it uses the consumer protocol.
    pub async fn delete_offsets(
        &self,
        group_id: &str,
        topics: Vec<(String, Vec<i32>)>,
    ) -> Result<Vec<(String, Vec<(i32, Option<ResponseError>)>)>, ResponseError> {
        if group_id.is_empty() {
            return Err(ResponseError::InvalidGroupId);
        }
        let mut results = Vec::new();
        self.write(group_id, |inner, _| {
            let Some(entry) = inner.groups.get(group_id) else {
                return Err(ResponseError::GroupIdNotFound);
            };
            let g = &entry.group;
            match g.state {
                GroupState::Dead => return Err(ResponseError::GroupIdNotFound),
                GroupState::Empty => {}
                _ if g.protocol_type.as_deref() != Some("consumer") => {
                    return Err(ResponseError::NonEmptyGroup)
                }
                _ => {}
            }
            let subscribed = g.subscribed_topics();
            let mut ops = Vec::new();
            for (topic, partitions) in topics {
                let is_subscribed = subscribed.as_ref().is_none_or(|s| s.contains(&topic));
                let mut per_partition = Vec::with_capacity(partitions.len());
                for p in partitions {
                    if is_subscribed {
                        per_partition.push((p, Some(ResponseError::GroupSubscribedToTopic)));
                        continue;
                    }
                    if entry.offsets.contains_key(&(topic.clone(), p)) {
                        ops.push(OffsetOp::Delete(OffsetKey {
                            group: group_id.to_string(),
                            topic: topic.clone(),
                            partition: p,
                        }));
                    }
                    per_partition.push((p, None));
                }
                results.push((topic, per_partition));
            }
            Ok(ops)
        })
        .await?;
        Ok(results)
    }

    /// Appends what `build` decides (under the coordinator's lock, so validation and append
    /// are one step and appends are in log order) to the group's partition, then waits until
    /// the high watermark passes it: the ISR holds it, as acks=all promises. Returns the
    /// first offset written (`None` if nothing was).
    async fn write(
        &self,
        group_id: &str,
        build: impl FnOnce(&mut Inner, i32) -> Result<Vec<OffsetOp>, ResponseError>,
    ) -> Result<Option<i64>, ResponseError> {
        let shard = self.check(&self.inner.lock(), group_id)?;
        self.write_to_shard(shard, |inner| build(inner, shard))
            .await
    }

    async fn write_to_shard(
        &self,
        shard: i32,
        build: impl FnOnce(&mut Inner) -> Result<Vec<OffsetOp>, ResponseError>,
    ) -> Result<Option<i64>, ResponseError> {
        let image = self.metadata.image();
        let (partition, leader_epoch, first_offset, end_offset) = {
            let mut inner = self.inner.lock();
            let leader_epoch = match inner.shards.get(&shard) {
                Some(s) if s.loaded => s.leader_epoch,
                Some(_) => return Err(ResponseError::CoordinatorLoadInProgress),
                None => return Err(ResponseError::NotCoordinator),
            };
            let ops = build(&mut inner)?;
            if ops.is_empty() {
                return Ok(None);
            }
            let tp = TopicPartition::new(OFFSETS_TOPIC, shard);
            let partition = self
                .replica_manager
                .get_partition(&image, &tp)
                .map_err(|e| coordinator_error(e.code))?;
            if partition.leader_epoch() != leader_epoch {
                return Err(ResponseError::NotCoordinator);
            }
            let now = now_ms();
            let mut first_offset = None;
            let mut end_offset = 0;
            let mut appended_ops = 0;
            for chunk in chunks_by_size(&ops) {
                let batch = offsets_log::encode_batch(chunk, now);
                match self
                    .replica_manager
                    .append_to_internal_topic(&partition, &batch)
                {
                    Ok(a) => {
                        first_offset.get_or_insert(a.base_offset);
                        end_offset = a.last_offset + 1;
                        appended_ops += chunk.len();
                    }
                    Err(e) => {
                        tracing::debug!(partition = shard, error = %e, "offsets append failed");
                        // Earlier chunks are in the log: they stay pending and take effect
                        // if committed, so memory keeps following the log.
                        if appended_ops > 0 {
                            let s = inner.shards.get_mut(&shard).expect("checked");
                            s.pending.push_back(PendingWrite {
                                end_offset,
                                ops: ops[..appended_ops].to_vec(),
                            });
                        }
                        return Err(coordinator_error(e.code));
                    }
                }
            }
            let pending = &mut inner.shards.get_mut(&shard).expect("checked").pending;
            debug_assert!(pending.back().is_none_or(|w| w.end_offset < end_offset));
            pending.push_back(PendingWrite { end_offset, ops });
            (partition, leader_epoch, first_offset, end_offset)
        };
        let deadline = tokio::time::Instant::now()
            + Duration::from_millis(self.config.offsets_commit_timeout_ms);
        // The wait holds only while this node leads in the shard's epoch: a former leader's
        // HW can pass the same offset over another leader's records.
        ReplicaManager::wait_for_high_watermark(&partition, leader_epoch, end_offset, deadline)
            .await
            .map_err(|e| coordinator_error(e.code))?;
        let mut inner = self.inner.lock();
        self.apply_committed(&mut inner, shard, &partition);
        Ok(first_offset)
    }

    /// Applies, in log order, the shard's pending writes that the high watermark now covers.
    fn apply_committed(&self, inner: &mut Inner, shard: i32, partition: &Partition) {
        let Some(s) = inner.shards.get_mut(&shard) else {
            return;
        };
        if !partition.is_leader() || partition.leader_epoch() != s.leader_epoch {
            return;
        }
        let hw = partition.high_watermark();
        let mut committed = Vec::new();
        while s.pending.front().is_some_and(|w| w.end_offset <= hw) {
            committed.push(s.pending.pop_front().expect("front exists"));
        }
        for write in committed {
            for op in write.ops {
                apply_op(&mut inner.groups, shard, op);
            }
        }
    }

    /// Applies the committed writes of every shard (a waiter that timed out leaves its write
    /// pending; it takes effect here once the ISR catches up).
    fn apply_all_committed(&self, inner: &mut Inner) {
        let image = self.metadata.image();
        let shards: Vec<i32> = inner
            .shards
            .iter()
            .filter(|(_, s)| !s.pending.is_empty())
            .map(|(p, _)| *p)
            .collect();
        for shard in shards {
            let tp = TopicPartition::new(OFFSETS_TOPIC, shard);
            if let Ok(partition) = self.replica_manager.get_partition(&image, &tp) {
                self.apply_committed(inner, shard, &partition);
            }
        }
    }

    /// Drives session and rebalance timers and late commits, forever.
    pub async fn run_timers(self: Arc<Self>) {
        let mut ticker = tokio::time::interval(Duration::from_millis(TICK_MS));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let now = now_ms();
            let mut inner = self.inner.lock();
            for e in inner.groups.values_mut() {
                e.group.tick(now);
            }
            self.apply_all_committed(&mut inner);
            inner.groups.retain(|_, e| !e.is_forgettable());
        }
    }
}

/// Applies one committed change to the groups of a shard.
fn apply_op(groups: &mut HashMap<String, GroupEntry>, shard: i32, op: OffsetOp) {
    match op {
        OffsetOp::Commit(k, v) => {
            let entry = groups
                .entry(k.group.clone())
                .or_insert_with(|| GroupEntry::new(&k.group, shard));
            debug_assert_eq!(entry.shard, shard, "a group lives in one shard");
            entry.offsets.insert((k.topic, k.partition), v);
        }
        OffsetOp::Delete(k) => {
            if let Some(entry) = groups.get_mut(&k.group) {
                entry.offsets.remove(&(k.topic, k.partition));
                if entry.is_forgettable() {
                    groups.remove(&k.group);
                }
            }
        }
    }
}

/// Rough encoded size of one record: key and value plus record framing.
fn record_size(op: &OffsetOp) -> usize {
    let k = op.key();
    let value = match op {
        OffsetOp::Commit(_, v) => 30 + v.metadata.len(),
        OffsetOp::Delete(_) => 0,
    };
    30 + k.group.len() + k.topic.len() + value
}

/// Splits a write into batches of at most `WRITE_BATCH_BYTES` (at least one record each).
fn chunks_by_size(ops: &[OffsetOp]) -> Vec<&[OffsetOp]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut size = 0;
    for (i, op) in ops.iter().enumerate() {
        let s = record_size(op);
        if i > start && size + s > WRITE_BATCH_BYTES {
            out.push(&ops[start..i]);
            start = i;
            size = 0;
        }
        size += s;
    }
    if start < ops.len() {
        out.push(&ops[start..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_are_cut_into_bounded_batches() {
        let op = |i: i32| {
            OffsetOp::Commit(
                OffsetKey {
                    group: "g".into(),
                    topic: "t".into(),
                    partition: i,
                },
                CommittedOffset {
                    offset: 1,
                    leader_epoch: -1,
                    metadata: "x".repeat(1000),
                    commit_timestamp_ms: 0,
                },
            )
        };
        let ops: Vec<OffsetOp> = (0..1000).map(op).collect();
        let chunks = chunks_by_size(&ops);
        assert!(chunks.len() > 1);
        assert_eq!(chunks.iter().map(|c| c.len()).sum::<usize>(), ops.len());
        for c in &chunks {
            assert!(c.iter().map(record_size).sum::<usize>() <= WRITE_BATCH_BYTES);
            assert!(offsets_log::encode_batch(c, 0).len() < 1_048_588);
        }
        assert_eq!(chunks_by_size(&ops[..1]).len(), 1);
        assert!(chunks_by_size(&[]).is_empty());
    }
}
