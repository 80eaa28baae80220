//! Sending a prepared transaction's COMMIT/ABORT markers to the leaders of its partitions
//! (Kafka's `TransactionMarkerChannelManager` and `TransactionMarkerRequestCompletionHandler`),
//! as WriteTxnMarkers v1 over the node-to-node channel.
//!
//! A round sends one request per leader; a partition whose leader answered no error is
//! done. Kafka's completion handler rules decide the rest: a partition of a deleted topic
//! (UNKNOWN_TOPIC_OR_PARTITION and the topic gone from the metadata) is dropped; NOT_LEADER,
//! NOT_ENOUGH_REPLICAS, a timeout or an unreachable leader are retried against whoever
//! leads in the next round's image. A run is bounded (`ROUNDS_MAX`, back-off capped at
//! `BACKOFF_MAX`) and logs each failed round; an unfinished transaction stays prepared and
//! maintenance starts a new run, so markers are retried until acknowledged (they are
//! idempotent at the leader, which compares the producer epoch).

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use kafka_protocol::messages::write_txn_markers_request::{
    WritableTxnMarker, WritableTxnMarkerTopic,
};
use kafka_protocol::messages::{ProducerId, TopicName, WriteTxnMarkersRequest};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::coordinator::{MarkerJob, TransactionCoordinator};
use crate::broker::Broker;
use crate::metadata::MetadataImage;

/// Rounds of one run before it yields to maintenance.
const ROUNDS_MAX: u32 = 20;
const BACKOFF_INITIAL: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_millis(1000);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The WriteTxnMarkers version sent (the only one Kafka 4.x serves).
const WRITE_TXN_MARKERS_VERSION: i16 = 1;

/// What to do with one partition after a leader's answer.
#[derive(Debug, PartialEq, Eq)]
pub enum MarkerOutcome {
    Done,
    /// The topic was deleted: nothing to mark.
    Drop,
    Retry,
}

/// Kafka's `TransactionMarkerRequestCompletionHandler` decision for one partition.
pub fn marker_outcome(error: Option<ResponseError>, topic_exists: bool) -> MarkerOutcome {
    match error {
        None => MarkerOutcome::Done,
        Some(ResponseError::UnknownTopicOrPartition) if !topic_exists => MarkerOutcome::Drop,
        Some(_) => MarkerOutcome::Retry,
    }
}

fn leader_addr(image: &MetadataImage, topic: &str, partition: i32) -> Option<(i32, SocketAddr)> {
    let leader = image.topic(topic)?.partitions.get(&partition)?.leader;
    let b = image.brokers.get(&leader).filter(|b| !b.fenced)?;
    let ep = b.endpoints.first()?;
    let addr = (ep.host.as_str(), ep.port).to_socket_addrs().ok()?.next()?;
    Some((leader, addr))
}

fn request(job: &MarkerJob, partitions: &[(String, i32)]) -> WriteTxnMarkersRequest {
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (t, p) in partitions {
        by_topic.entry(t).or_default().push(*p);
    }
    WriteTxnMarkersRequest::default().with_markers(vec![WritableTxnMarker::default()
        .with_producer_id(ProducerId(job.producer_id))
        .with_producer_epoch(job.producer_epoch)
        .with_transaction_result(job.commit)
        .with_coordinator_epoch(job.coordinator_epoch)
        .with_topics(
            by_topic
                .into_iter()
                .map(|(t, ps)| {
                    WritableTxnMarkerTopic::default()
                        .with_name(TopicName(StrBytes::from_string(t.to_string())))
                        .with_partition_indexes(ps)
                })
                .collect(),
        )])
}

/// One bounded run; true once every partition is done or dropped.
pub async fn send_markers(
    broker: &Broker,
    coordinator: &TransactionCoordinator,
    job: &MarkerJob,
) -> bool {
    let mut remaining: Vec<(String, i32)> = job.partitions.clone();
    let mut backoff = BACKOFF_INITIAL;
    for round in 1..=ROUNDS_MAX {
        if remaining.is_empty() {
            return true;
        }
        if !coordinator.is_current(job) {
            return false; // resigned, or the transaction moved on
        }
        let image = broker.image();
        let mut by_leader: BTreeMap<(i32, SocketAddr), Vec<(String, i32)>> = BTreeMap::new();
        let mut next = Vec::new();
        for (t, p) in remaining.drain(..) {
            if image.topic(&t).is_none() {
                tracing::info!(transactional_id = %job.transactional_id, topic = %t, partition = p, "topic deleted; no marker needed");
                continue;
            }
            match leader_addr(&image, &t, p) {
                Some(l) => by_leader.entry(l).or_default().push((t, p)),
                None => next.push((t, p)), // no live leader yet
            }
        }
        let mut errors: Vec<String> = Vec::new();
        for ((leader, addr), parts) in by_leader {
            let req = request(job, &parts);
            match broker
                .node_channel()
                .send(addr, &req, WRITE_TXN_MARKERS_VERSION, REQUEST_TIMEOUT)
                .await
            {
                Ok(resp) => {
                    let mut answered: BTreeMap<(String, i32), Option<ResponseError>> =
                        BTreeMap::new();
                    for m in resp
                        .markers
                        .iter()
                        .filter(|m| m.producer_id.0 == job.producer_id)
                    {
                        for t in &m.topics {
                            for p in &t.partitions {
                                answered.insert(
                                    (t.name.0.to_string(), p.partition_index),
                                    ResponseError::try_from_code(p.error_code),
                                );
                            }
                        }
                    }
                    for tp in parts {
                        // A partition the answer leaves out is retried.
                        let err = answered
                            .get(&tp)
                            .copied()
                            .unwrap_or(Some(ResponseError::UnknownServerError));
                        match marker_outcome(err, image.topic(&tp.0).is_some()) {
                            MarkerOutcome::Done | MarkerOutcome::Drop => {}
                            MarkerOutcome::Retry => {
                                errors.push(format!("{}-{} on {leader}: {err:?}", tp.0, tp.1));
                                next.push(tp);
                            }
                        }
                    }
                }
                Err(e) => {
                    errors.push(format!("node {leader}: {e}"));
                    next.extend(parts);
                }
            }
        }
        remaining = next;
        if remaining.is_empty() {
            return true;
        }
        tracing::warn!(
            transactional_id = %job.transactional_id,
            commit = job.commit,
            round,
            remaining = remaining.len(),
            errors = ?errors,
            "transaction markers not yet written; retrying"
        );
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completion_handler_rules() {
        assert_eq!(marker_outcome(None, true), MarkerOutcome::Done);
        assert_eq!(
            marker_outcome(Some(ResponseError::UnknownTopicOrPartition), false),
            MarkerOutcome::Drop
        );
        assert_eq!(
            marker_outcome(Some(ResponseError::UnknownTopicOrPartition), true),
            MarkerOutcome::Retry
        );
        assert_eq!(
            marker_outcome(Some(ResponseError::NotLeaderOrFollower), true),
            MarkerOutcome::Retry
        );
        assert_eq!(
            marker_outcome(Some(ResponseError::NotEnoughReplicas), true),
            MarkerOutcome::Retry
        );
    }

    #[test]
    fn request_groups_partitions_by_topic() {
        let job = MarkerJob {
            transactional_id: "tx".into(),
            producer_id: 5,
            producer_epoch: 2,
            commit: true,
            coordinator_epoch: 3,
            partitions: vec![],
        };
        let r = request(&job, &[("b".into(), 1), ("a".into(), 0), ("a".into(), 2)]);
        let m = &r.markers[0];
        assert_eq!(
            (
                m.producer_id.0,
                m.producer_epoch,
                m.transaction_result,
                m.coordinator_epoch
            ),
            (5, 2, true, 3)
        );
        let topics: Vec<(String, Vec<i32>)> = m
            .topics
            .iter()
            .map(|t| (t.name.0.to_string(), t.partition_indexes.clone()))
            .collect();
        assert_eq!(
            topics,
            vec![("a".into(), vec![0, 2]), ("b".into(), vec![1])]
        );
    }
}
