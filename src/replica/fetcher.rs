//! The replica fetcher (Kafka's `ReplicaFetcherThread`): for every partition this broker
//! follows, fetch from its leader with this broker's replica id, append what arrives
//! verbatim, take the leader's high watermark, and truncate where the leader says the logs
//! diverged.
//!
//! One task per leader broker long-polls all the partitions this broker follows on it; the
//! set is re-read from the replica manager before every fetch, so leadership changes in the
//! metadata image take effect at the next round without any other bookkeeping.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{BrokerId, FetchRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use parking_lot::Mutex;

use super::{divergence, Partition, TopicPartition};
use crate::broker::Broker;
use crate::clock::now_ms;

/// Fetch version the followers speak: names topics, carries DivergingEpoch (KIP-320).
const FETCH_VERSION: i16 = 12;
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
                if let Err(e) = handle_partition(partition, state, p) {
                    tracing::warn!(topic = %tp.topic, partition = tp.partition, error = %e, "follower could not apply a fetch");
                    backoff = true;
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

/// Applies one partition of a fetch response on the follower.
fn handle_partition(
    partition: &Partition,
    state: &super::FollowerFetchState,
    p: &kafka_protocol::messages::fetch_response::PartitionData,
) -> Result<(), crate::error::ApiError> {
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
                    partition.high_watermark(),
                );
                return partition.truncate_to(target);
            }
            let records = p.records.clone().unwrap_or_default();
            partition.append_as_follower(
                state.leader_epoch,
                &records,
                p.high_watermark,
                now_ms(),
            )?;
            partition.follow_leader_log_start_offset(p.log_start_offset)
        }
        Some(ResponseError::OffsetOutOfRange) => {
            if state.fetch_offset < p.log_start_offset {
                partition.restart_at(p.log_start_offset)
            } else {
                // Ahead of the leader's log end (it lost data in an unclean election): keep
                // only what was committed and fetch again.
                partition.truncate_to(partition.high_watermark())
            }
        }
        Some(_) => Ok(()), // not the leader (any more), epochs moved: the metadata image will tell
    }
}
