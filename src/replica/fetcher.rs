//! The replica fetcher (Kafka's `ReplicaFetcherThread`): for every partition this broker
//! follows, fetch from its leader with this broker's replica id, append what arrives
//! verbatim, take the leader's high watermark, and truncate where the leader says the logs
//! diverged.
//!
//! One task per leader broker long-polls all the partitions this broker follows on it; the
//! set is re-read from the replica manager before every fetch, so leadership changes in the
//! metadata image take effect at the next round without any other bookkeeping.
//!
//! OFFSET_OUT_OF_RANGE is answered as Kafka's `fetchOffsetAndTruncate` does: the follower
//! asks the leader for its log end (OffsetForLeaderEpoch of the current epoch), where the
//! two logs agree by the epochs (OffsetForLeaderEpoch of the follower's latest epoch) and its
//! log start (ListOffsets EARLIEST), then truncates to the leader's log or starts over at its
//! log start (`divergence::out_of_range`). Never to its own high watermark, which an unclean
//! election can leave above the new leader's log end.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::{
    BrokerId, FetchRequest, ListOffsetsRequest, OffsetForLeaderEpochRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use parking_lot::Mutex;

use super::{divergence, Partition, TopicPartition};
use crate::broker::Broker;
use crate::clock::now_ms;

/// Fetch version the followers speak: names topics, carries DivergingEpoch (KIP-320).
const FETCH_VERSION: i16 = 12;
/// OffsetForLeaderEpoch version for the out-of-range check: carries the replica id (v3+).
const OFFSET_FOR_LEADER_EPOCH_VERSION: i16 = 4;
/// ListOffsets version for the leader's log start: carries the current leader epoch (v4+).
const LIST_OFFSETS_VERSION: i16 = 7;
/// ListOffsets' timestamp for the log start offset.
const EARLIEST_TIMESTAMP: i64 = -2;
/// How long one of the out-of-range requests may take.
const OUT_OF_RANGE_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the leader may hold a follower fetch that finds nothing new.
const FETCH_MAX_WAIT_MS: i32 = 500;
/// Pause after a failed fetch before trying again.
const RETRY_BACKOFF: Duration = Duration::from_millis(100);
/// How often the supervisor looks for leaders that need a fetcher.
const SUPERVISE_INTERVAL: Duration = Duration::from_millis(100);

/// Starts a fetcher for each leader this broker follows partitions on, for the life of the
/// process.
pub async fn run(broker: Arc<Broker>) {
    let running: Arc<Mutex<HashSet<i32>>> = Arc::default();
    loop {
        let leaders: HashSet<i32> = broker
            .replica_manager
            .followed_partitions()
            .into_iter()
            .map(|(_, _, state)| state.leader)
            .collect();
        for leader in leaders {
            if running.lock().insert(leader) {
                let (broker, running) = (broker.clone(), running.clone());
                tokio::spawn(async move {
                    fetch_from_leader(&broker, leader).await;
                    running.lock().remove(&leader);
                });
            }
        }
        tokio::time::sleep(SUPERVISE_INTERVAL).await;
    }
}

/// The client endpoint of a live broker.
fn broker_addr(broker: &Broker, id: i32) -> Option<SocketAddr> {
    let image = broker.image();
    let b = image.brokers.get(&id).filter(|b| !b.fenced)?;
    let ep = b.endpoints.first()?;
    (ep.host.as_str(), ep.port).to_socket_addrs().ok()?.next()
}

/// Fetches from one leader until this broker follows nothing on it.
async fn fetch_from_leader(broker: &Broker, leader: i32) {
    tracing::debug!(leader, "replica fetcher started");
    loop {
        let partitions: Vec<(TopicPartition, Arc<Partition>, super::FollowerFetchState)> = broker
            .replica_manager
            .followed_partitions()
            .into_iter()
            .filter(|(_, _, s)| s.leader == leader)
            .collect();
        if partitions.is_empty() {
            tracing::debug!(leader, "replica fetcher stopped: nothing to follow");
            return;
        }
        let Some(addr) = broker_addr(broker, leader) else {
            tokio::time::sleep(RETRY_BACKOFF).await;
            continue;
        };
        let mut by_topic: BTreeMap<String, Vec<FetchPartition>> = BTreeMap::new();
        for (tp, _, s) in &partitions {
            by_topic.entry(tp.topic.clone()).or_default().push(
                FetchPartition::default()
                    .with_partition(tp.partition)
                    .with_current_leader_epoch(s.leader_epoch)
                    .with_fetch_offset(s.fetch_offset)
                    .with_last_fetched_epoch(s.last_fetched_epoch)
                    .with_log_start_offset(s.log_start_offset)
                    .with_partition_max_bytes(broker.config.replica_fetch_max_bytes),
            );
        }
        let request = FetchRequest::default()
            .with_replica_id(BrokerId(broker.config.node_id))
            .with_max_wait_ms(FETCH_MAX_WAIT_MS)
            .with_min_bytes(1)
            // The leader builds the response in memory and this node holds it whole until
            // it is appended, so this bounds the memory of replication per leader.
            .with_max_bytes(broker.config.replica_fetch_response_max_bytes)
            .with_session_epoch(-1)
            .with_topics(
                by_topic
                    .into_iter()
                    .map(|(t, ps)| {
                        FetchTopic::default()
                            .with_topic(TopicName(StrBytes::from_string(t)))
                            .with_partitions(ps)
                    })
                    .collect(),
            );
        let timeout = Duration::from_millis(FETCH_MAX_WAIT_MS as u64) + Duration::from_secs(5);
        let response = match broker
            .node_channel()
            .send(addr, &request, FETCH_VERSION, timeout)
            .await
        {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(leader, error = %e, "follower fetch failed");
                tokio::time::sleep(RETRY_BACKOFF).await;
                continue;
            }
        };
        let mut backoff = false;
        // Looked up by name, not scanned: a fetch may carry thousands of partitions.
        let fetched: HashMap<(&str, i32), usize> = partitions
            .iter()
            .enumerate()
            .map(|(i, (tp, _, _))| ((tp.topic.as_str(), tp.partition), i))
            .collect();
        for topic in &response.responses {
            for p in &topic.partitions {
                let Some(&i) = fetched.get(&(&*topic.topic.0, p.partition_index)) else {
                    continue;
                };
                let (tp, partition, state) = &partitions[i];
                match handle_partition(partition, state, p) {
                    Ok(FetchOutcome::Applied) => {}
                    Ok(FetchOutcome::OutOfRange) => {
                        if let Err(e) =
                            handle_out_of_range(broker, addr, tp, partition, state).await
                        {
                            tracing::warn!(topic = %tp.topic, partition = tp.partition, error = %e, "follower could not resolve an out-of-range fetch");
                        }
                    }
                    Err(e) => {
                        tracing::warn!(topic = %tp.topic, partition = tp.partition, error = %e, "follower could not apply a fetch");
                        backoff = true;
                    }
                }
                if p.error_code != 0 {
                    backoff = true;
                }
            }
        }
        if backoff {
            tokio::time::sleep(RETRY_BACKOFF).await;
        }
        broker.replica_manager.data_arrived().notify_waiters();
    }
}

/// What applying one partition of a fetch response left to do.
enum FetchOutcome {
    /// Records appended, divergence truncated, or nothing to do (the image will tell).
    Applied,
    /// The leader answered OFFSET_OUT_OF_RANGE: ask it where its log starts and ends.
    OutOfRange,
}

/// Applies one partition of a fetch response on the follower.
fn handle_partition(
    partition: &Partition,
    state: &super::FollowerFetchState,
    p: &kafka_protocol::messages::fetch_response::PartitionData,
) -> Result<FetchOutcome, crate::error::ApiError> {
    match ResponseError::try_from_code(p.error_code) {
        None => {
            let diverging = &p.diverging_epoch;
            if diverging.epoch >= 0 || diverging.end_offset >= 0 {
                // The leader's log ends this epoch earlier than ours: truncate to where the
                // two agree; the next fetch checks again from there.
                let ours = partition.end_offset_for_epoch(diverging.epoch.max(0));
                let target = divergence::truncation_offset(
                    (diverging.epoch, diverging.end_offset),
                    ours,
                    state.fetch_offset,
                );
                partition.truncate_to(target)?;
                return Ok(FetchOutcome::Applied);
            }
            let records = p.records.clone().unwrap_or_default();
            partition.append_as_follower(
                state.leader_epoch,
                &records,
                p.high_watermark,
                now_ms(),
            )?;
            partition.follow_leader_log_start_offset(p.log_start_offset)?;
            Ok(FetchOutcome::Applied)
        }
        Some(ResponseError::OffsetOutOfRange) => Ok(FetchOutcome::OutOfRange),
        // Not the leader (any more), epochs moved: the metadata image will tell.
        Some(_) => Ok(FetchOutcome::Applied),
    }
}

/// Kafka's `fetchOffsetAndTruncate`: asks the leader where its log ends, where the two logs
/// agree by the epochs and where its log starts, and moves the follower's log accordingly
/// (`divergence::out_of_range`). A leader that cannot answer leaves the log as it is; the
/// caller backs off and the next fetch tries again.
async fn handle_out_of_range(
    broker: &Broker,
    addr: SocketAddr,
    tp: &TopicPartition,
    partition: &Partition,
    state: &super::FollowerFetchState,
) -> Result<(), crate::error::ApiError> {
    let replica_id = broker.config.node_id;
    // The leader's answer for its own current epoch ends at its log end.
    let Some((_, leader_log_end)) = leader_epoch_end(
        broker,
        addr,
        tp,
        replica_id,
        state.leader_epoch,
        state.leader_epoch,
    )
    .await
    else {
        return Ok(());
    };
    let epoch_agreement = match state.last_fetched_epoch {
        epoch if epoch >= 0 && leader_log_end < state.fetch_offset => {
            leader_epoch_end(broker, addr, tp, replica_id, state.leader_epoch, epoch)
                .await
                .map(|diverging| {
                    divergence::truncation_offset(
                        diverging,
                        partition.end_offset_for_epoch(diverging.0.max(0)),
                        state.fetch_offset,
                    )
                })
        }
        _ => None,
    };
    let leader_log_start = leader_log_start(broker, addr, tp, replica_id, state.leader_epoch).await;
    let action = divergence::out_of_range(
        state.fetch_offset,
        leader_log_end,
        leader_log_start,
        epoch_agreement,
    );
    tracing::info!(
        topic = %tp.topic,
        partition = tp.partition,
        fetch_offset = state.fetch_offset,
        high_watermark = partition.high_watermark(),
        leader_log_end,
        ?leader_log_start,
        ?epoch_agreement,
        ?action,
        "follower fetch offset out of range"
    );
    // The answers took round trips: act only if this replica still follows the same leader
    // in the same epoch from the same offset (a leader must never truncate its own log).
    let unchanged = partition.follower_fetch_state().is_some_and(|now| {
        now.leader == state.leader
            && now.leader_epoch == state.leader_epoch
            && now.fetch_offset == state.fetch_offset
    });
    if !unchanged {
        return Ok(());
    }
    match action {
        divergence::OutOfRange::TruncateTo(offset) => partition.truncate_to(offset),
        divergence::OutOfRange::TruncateFullyAndStartAt(offset) => partition.restart_at(offset),
        divergence::OutOfRange::Refetch => Ok(()),
    }
}

/// The leader's OffsetForLeaderEpoch answer for `epoch`: the largest epoch <= it that the
/// leader knows and where it ends ((-1, -1) when none); None when the leader did not answer.
async fn leader_epoch_end(
    broker: &Broker,
    addr: SocketAddr,
    tp: &TopicPartition,
    replica_id: i32,
    current_leader_epoch: i32,
    epoch: i32,
) -> Option<(i32, i64)> {
    let request = OffsetForLeaderEpochRequest::default()
        .with_replica_id(BrokerId(replica_id))
        .with_topics(vec![OffsetForLeaderTopic::default()
            .with_topic(TopicName(StrBytes::from_string(tp.topic.clone())))
            .with_partitions(vec![OffsetForLeaderPartition::default()
                .with_partition(tp.partition)
                .with_current_leader_epoch(current_leader_epoch)
                .with_leader_epoch(epoch)])]);
    let response = broker
        .node_channel()
        .send(
            addr,
            &request,
            OFFSET_FOR_LEADER_EPOCH_VERSION,
            OUT_OF_RANGE_REQUEST_TIMEOUT,
        )
        .await
        .map_err(|e| tracing::debug!(error = %e, "OffsetForLeaderEpoch to the leader failed"))
        .ok()?;
    let p = response
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter())
        .find(|p| p.partition == tp.partition)?;
    (p.error_code == 0).then_some((p.leader_epoch, p.end_offset))
}

/// The leader's log start offset (ListOffsets EARLIEST), if it answers.
async fn leader_log_start(
    broker: &Broker,
    addr: SocketAddr,
    tp: &TopicPartition,
    replica_id: i32,
    current_leader_epoch: i32,
) -> Option<i64> {
    let request = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(replica_id))
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(TopicName(StrBytes::from_string(tp.topic.clone())))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(tp.partition)
                .with_current_leader_epoch(current_leader_epoch)
                .with_timestamp(EARLIEST_TIMESTAMP)])]);
    let response = broker
        .node_channel()
        .send(
            addr,
            &request,
            LIST_OFFSETS_VERSION,
            OUT_OF_RANGE_REQUEST_TIMEOUT,
        )
        .await
        .map_err(|e| tracing::debug!(error = %e, "ListOffsets to the leader failed"))
        .ok()?;
    let p = response
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter())
        .find(|p| p.partition_index == tp.partition)?;
    (p.error_code == 0 && p.offset >= 0).then_some(p.offset)
}
