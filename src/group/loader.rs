//! How the coordinator follows the leadership of `__consumer_offsets` partitions (Kafka's
//! `onElection` / `onResignation`) and loads a partition it starts to lead.
//!
//! The replica manager sees every metadata image first (it is registered first), so when
//! the coordinator learns that this node leads partition P at epoch E, P's `Partition`
//! already leads at E. The shard is created at once in the loading state (its groups answer
//! COORDINATOR_LOAD_IN_PROGRESS) and a job goes to `run_loader`, which replays P's log from
//! its log start offset to its log end offset, as Kafka's loader does: as leader, this
//! node's whole log is what the partition will commit (a leader never truncates its own
//! log), and nothing else can be appended while the shard loads, because only the shard
//! writes to P.

use std::sync::Arc;

use kafka_protocol::ResponseError;

use super::offsets_log::{self, CoordinatorRecord, OffsetsByGroup};
use super::{GroupCoordinator, GroupEntry, Inner, LoadJob, Shard, OFFSETS_TOPIC};
use crate::error::ApiError;
use crate::metadata::{MetadataImage, MetadataListener};
use crate::replica::TopicPartition;

/// How much of the log one read returns while loading.
const LOAD_READ_BYTES: usize = 1 << 20;

/// The epochs at which `node_id` leads each offsets partition in `image`.
fn led_partitions(image: &MetadataImage, node_id: i32) -> Vec<(i32, i32)> {
    image
        .topic(OFFSETS_TOPIC)
        .map(|t| {
            t.partitions
                .iter()
                .filter(|(_, reg)| reg.leader == node_id)
                .map(|(p, reg)| (*p, reg.leader_epoch))
                .collect()
        })
        .unwrap_or_default()
}

impl MetadataListener for GroupCoordinator {
    fn on_metadata(&self, _old: &MetadataImage, new: &MetadataImage) {
        let led = led_partitions(new, self.node_id);
        let mut inner = self.inner.lock();
        // Resign what this node no longer leads, or leads at a new epoch (another leader
        // may have written in between): those groups are loaded again from the log.
        let resigned: Vec<i32> = inner
            .shards
            .iter()
            .filter(|(p, s)| !led.contains(&(**p, s.leader_epoch)))
            .map(|(p, _)| *p)
            .collect();
        for p in resigned {
            unload(&mut inner, p);
        }
        for (partition, leader_epoch) in led {
            if inner.shards.contains_key(&partition) {
                continue;
            }
            tracing::info!(
                partition,
                leader_epoch,
                "elected coordinator of an offsets partition; loading"
            );
            inner.shards.insert(
                partition,
                Shard {
                    leader_epoch,
                    loaded: false,
                    pending: Default::default(),
                },
            );
            // The receiver lives as long as the coordinator; a send can only fail at shutdown.
            let _ = self.load_tx.send(LoadJob {
                partition,
                leader_epoch,
            });
        }
    }
}

/// Drops a shard and its groups; members waiting for a rebalance learn NOT_COORDINATOR.
fn unload(inner: &mut Inner, partition: i32) {
    let Some(shard) = inner.shards.remove(&partition) else {
        return;
    };
    let mut dropped = 0;
    inner.groups.retain(|_, e| {
        if e.shard != partition {
            return true;
        }
        e.group.fail_waiters(ResponseError::NotCoordinator);
        dropped += 1;
        false
    });
    tracing::info!(
        partition,
        leader_epoch = shard.leader_epoch,
        groups = dropped,
        pending_writes = shard.pending.len(),
        "resigned as coordinator of an offsets partition"
    );
}

impl GroupCoordinator {
    /// Runs load jobs one at a time, for the life of the process.
    pub async fn run_loader(self: Arc<Self>) {
        let Some(mut rx) = self.load_rx.lock().take() else {
            tracing::error!("group coordinator loader started twice");
            return;
        };
        while let Some(job) = rx.recv().await {
            if !self.is_loading(job) {
                continue; // resigned (or re-elected at another epoch) before the load began
            }
            let started = std::time::Instant::now();
            match self.read_partition(job) {
                Ok((state, records)) => self.finish_load(job, state, records, started),
                Err(e) => {
                    // Leave the shard out: its groups answer NOT_COORDINATOR rather than
                    // serve offsets that may be incomplete.
                    tracing::error!(partition = job.partition, error = %e, "cannot load offsets partition");
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

    fn is_loading(&self, job: LoadJob) -> bool {
        self.inner
            .lock()
            .shards
            .get(&job.partition)
            .is_some_and(|s| !s.loaded && s.leader_epoch == job.leader_epoch)
    }

    /// Replays the partition's log from its start to its end; returns the committed offsets
    /// it holds and how many records it read.
    fn read_partition(&self, job: LoadJob) -> Result<(OffsetsByGroup, usize), ApiError> {
        let image = self.metadata.image();
        let tp = TopicPartition::new(OFFSETS_TOPIC, job.partition);
        let partition = self.replica_manager.get_partition(&image, &tp)?;
        if partition.leader_epoch() != job.leader_epoch {
            return Err(ApiError::new(ResponseError::NotLeaderOrFollower));
        }
        let mut next = partition.log_start_offset();
        let end = partition.log_end_offset();
        let mut state = OffsetsByGroup::new();
        let mut records = 0;
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
                // Batches were CRC-checked when appended; one that still does not decode is
                // skipped rather than blocking every group of the partition.
                match offsets_log::decode_batches(bytes.slice(range)) {
                    Ok(decoded) => {
                        for (_, record) in decoded {
                            records += 1;
                            if let CoordinatorRecord::Offset(op) = record {
                                offsets_log::apply(&mut state, op);
                            }
                        }
                    }
                    Err(e) => {
                        tracing::warn!(partition = job.partition, offset = header.base_offset, error = %e, "skipping undecodable batch in the offsets topic")
                    }
                }
            }
            if !advanced {
                break;
            }
        }
        Ok((state, records))
    }

    fn finish_load(
        &self,
        job: LoadJob,
        state: OffsetsByGroup,
        records: usize,
        started: std::time::Instant,
    ) {
        let mut inner = self.inner.lock();
        let still_ours = inner
            .shards
            .get(&job.partition)
            .is_some_and(|s| !s.loaded && s.leader_epoch == job.leader_epoch);
        if !still_ours {
            return;
        }
        let groups = state.len();
        for (group_id, offsets) in state {
            // No group of a loading shard can exist: every API answered LOAD_IN_PROGRESS.
            debug_assert!(!inner.groups.contains_key(&group_id));
            let mut entry = GroupEntry::new(&group_id, job.partition);
            entry.offsets = offsets;
            inner.groups.insert(group_id, entry);
        }
        inner
            .shards
            .get_mut(&job.partition)
            .expect("checked above")
            .loaded = true;
        tracing::info!(
            partition = job.partition,
            leader_epoch = job.leader_epoch,
            groups,
            records,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "loaded offsets partition"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::{PartitionRegistration, TopicImage};

    #[test]
    fn led_partitions_are_those_with_this_leader() {
        let mut image = MetadataImage::default();
        let reg = |leader, epoch| PartitionRegistration {
            replicas: vec![1, 2, 3],
            isr: vec![1, 2, 3],
            leader,
            leader_epoch: epoch,
            partition_epoch: 0,
        };
        image.topics.insert(
            OFFSETS_TOPIC.into(),
            TopicImage {
                name: OFFSETS_TOPIC.into(),
                topic_id: uuid::Uuid::new_v4(),
                partitions: [(0, reg(1, 3)), (1, reg(2, 0)), (2, reg(1, 7))]
                    .into_iter()
                    .collect(),
            },
        );
        assert_eq!(led_partitions(&image, 1), vec![(0, 3), (2, 7)]);
        assert_eq!(led_partitions(&image, 3), vec![]);
        assert_eq!(led_partitions(&MetadataImage::default(), 1), vec![]);
    }
}
