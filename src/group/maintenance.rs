//! Periodic work on the offsets partitions this node leads: expiring old offsets of empty
//! groups (`offsets.retention.minutes`) and keeping each partition's log bounded.
//!
//! # The size bound (instead of a log cleaner)
//! A partition's log only grows with commits. When it spans more than
//! `offsets.checkpoint.min.records` offsets and more than twice the number of live keys,
//! the coordinator appends a *checkpoint*: every live offset of the partition written again,
//! in one step under the coordinator's lock, at a moment when no write is pending (so each
//! copy is the key's latest value in the log). Once the high watermark passes the
//! checkpoint, the log start offset advances to the checkpoint's first offset (the
//! DeleteRecords mechanism; followers follow the leader's log start offset).
//!
//! Invariant: the last value of every live key is never dropped. Everything below the new
//! log start is superseded: each live key has its latest value at or after the checkpoint's
//! first offset (the copy, or a later commit), and keys with no live value need none.
//! Replaying from the new start therefore rebuilds exactly the same offsets.
//! Whole segments below the log start are deleted, so disk use stays within about one
//! segment (`offsets.topic.segment.bytes`) plus twice the live offsets.

use std::sync::Arc;
use std::time::Duration;

use super::offsets_log::{self, OffsetKey, OffsetOp, OffsetsByGroup};
use super::{GroupCoordinator, GroupState, OFFSETS_TOPIC};
use crate::clock::now_ms;
use crate::replica::TopicPartition;

/// Offsets of an Empty group that expire at `now_ms` (Kafka 4's offset expiration for
/// classic groups: an Empty group, or one without a protocol type, loses each offset whose
/// commit is older than the retention).
pub(super) fn expired_offsets(
    group_id: &str,
    state: GroupState,
    offsets: &std::collections::BTreeMap<(String, i32), super::CommittedOffset>,
    retention_ms: i64,
    now_ms: i64,
) -> Vec<OffsetOp> {
    if state != GroupState::Empty {
        return vec![];
    }
    offsets
        .iter()
        .filter(|(_, v)| v.commit_timestamp_ms.saturating_add(retention_ms) <= now_ms)
        .map(|((topic, partition), _)| {
            OffsetOp::Delete(OffsetKey {
                group: group_id.to_string(),
                topic: topic.clone(),
                partition: *partition,
            })
        })
        .collect()
}

impl GroupCoordinator {
    /// Expiry and the size bound every `offsets.retention.check.interval.ms`, forever.
    pub async fn run_maintenance(self: Arc<Self>) {
        let interval =
            Duration::from_millis(self.config.offsets_retention_check_interval_ms.max(100));
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await; // the first tick is immediate; nothing is old yet
        loop {
            ticker.tick().await;
            let shards: Vec<i32> = {
                let inner = self.inner.lock();
                inner
                    .shards
                    .iter()
                    .filter(|(_, s)| s.loaded)
                    .map(|(p, _)| *p)
                    .collect()
            };
            for shard in shards {
                self.expire_offsets(shard).await;
                self.maybe_checkpoint(shard).await;
            }
        }
    }

    async fn expire_offsets(&self, shard: i32) {
        let now = now_ms();
        let retention_ms = self.config.offsets_retention_ms;
        let mut expired = 0;
        let result = self
            .write_to_shard(shard, |inner| {
                let ops: Vec<OffsetOp> = inner
                    .groups
                    .values()
                    .filter(|e| e.shard == shard && e.group.is_empty())
                    .flat_map(|e| {
                        expired_offsets(
                            &e.group.group_id,
                            e.group.state,
                            &e.offsets,
                            retention_ms,
                            now,
                        )
                    })
                    .collect();
                expired = ops.len();
                Ok(ops)
            })
            .await;
        match result {
            Ok(_) if expired > 0 => {
                tracing::info!(partition = shard, offsets = expired, "expired offsets")
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(partition = shard, error = %e, "offset expiry deferred"),
        }
    }

    /// Writes a checkpoint and moves the log start to it when the log is mostly superseded.
    async fn maybe_checkpoint(&self, shard: i32) {
        let image = self.metadata.image();
        let tp = TopicPartition::new(OFFSETS_TOPIC, shard);
        let Ok(partition) = self.replica_manager.get_partition(&image, &tp) else {
            return;
        };
        let min_records = self.config.offsets_checkpoint_min_records;
        let mut live = 0;
        let result = self
            .write_to_shard(shard, |inner| {
                // A pending write is in the log but not in memory: a copy of memory now
                // could be older than it, so wait for a quiet moment.
                if inner
                    .shards
                    .get(&shard)
                    .is_none_or(|s| !s.pending.is_empty())
                {
                    return Ok(vec![]);
                }
                let span = partition.log_end_offset() - partition.log_start_offset();
                let state: OffsetsByGroup = inner
                    .groups
                    .values()
                    .filter(|e| e.shard == shard && !e.offsets.is_empty())
                    .map(|e| (e.group.group_id.clone(), e.offsets.clone()))
                    .collect();
                live = state.values().map(|o| o.len()).sum::<usize>();
                if !offsets_log::checkpoint_due(span, live, min_records) {
                    return Ok(vec![]);
                }
                if live == 0 {
                    // Nothing is live and nothing pending: everything up to the high
                    // watermark is superseded. Done under the lock, so no commit slips in.
                    advance_log_start(shard, &partition, partition.high_watermark(), 0);
                    return Ok(vec![]);
                }
                Ok(offsets_log::checkpoint_ops(&state))
            })
            .await;
        match result {
            Ok(Some(checkpoint_start)) => {
                advance_log_start(shard, &partition, checkpoint_start, live)
            }
            Ok(None) => {}
            Err(e) => tracing::debug!(partition = shard, error = %e, "offsets checkpoint deferred"),
        }
    }
}

/// Moves the log start of an offsets partition forward (to a committed checkpoint).
fn advance_log_start(shard: i32, partition: &crate::replica::Partition, to: i64, live: usize) {
    let before = partition.log_start_offset();
    match partition.delete_records_on_leader(to) {
        Ok(start) => tracing::info!(
            partition = shard,
            live_offsets = live,
            log_start_before = before,
            log_start = start,
            "offsets checkpoint committed; log start advanced"
        ),
        Err(e) => {
            tracing::warn!(partition = shard, error = %e, "cannot advance the offsets log start")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group::CommittedOffset;
    use std::collections::BTreeMap;

    #[test]
    fn only_old_offsets_of_empty_groups_expire() {
        let at = |ts| CommittedOffset {
            offset: 1,
            leader_epoch: -1,
            metadata: String::new(),
            commit_timestamp_ms: ts,
        };
        let offsets: BTreeMap<(String, i32), CommittedOffset> = [
            (("t".to_string(), 0), at(1_000)),
            (("t".to_string(), 1), at(5_000)),
        ]
        .into_iter()
        .collect();
        let expired = expired_offsets("g", GroupState::Empty, &offsets, 3_000, 6_000);
        assert_eq!(expired.len(), 1);
        assert_eq!(expired[0].key().partition, 0);
        assert_eq!(
            expired_offsets("g", GroupState::Empty, &offsets, 3_000, 8_000).len(),
            2
        );
        assert!(expired_offsets("g", GroupState::Stable, &offsets, 3_000, 99_000).is_empty());
        assert!(expired_offsets("g", GroupState::Empty, &offsets, 3_000, 3_999).is_empty());
    }
}
