//! ISR maintenance on leaders (Kafka's `AlterPartitionManager` with the leader's periodic
//! `maybeShrinkIsr` and fetch-time `maybeExpandIsr`): every leader partition checks its
//! followers, and a needed ISR change goes to the active controller as AlterPartition. The
//! new ISR takes effect when the committed record reaches this broker's image.

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::alter_partition_request::{PartitionData, TopicData};
use kafka_protocol::messages::{AlterPartitionRequest, BrokerId};
use kafka_protocol::ResponseError;

use super::{IsrChange, Partition};
use crate::broker::Broker;
use crate::clock::now_ms;
use crate::error::ApiError;

/// ISR changes sent in one AlterPartition, at most: a batch stays well inside one metadata
/// log entry ([`crate::controller::limits::RECORDS_PER_ENTRY_MAX`]).
const CHANGES_PER_REQUEST_MAX: usize = 5_000;

pub async fn run(broker: Arc<Broker>) {
    let lag_ms = broker.config.replica_lag_time_max_ms.max(10);
    let mut ticker =
        tokio::time::interval(Duration::from_millis((lag_ms as u64 / 4).clamp(10, 500)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let now = now_ms();
        let pending: Vec<(Arc<Partition>, IsrChange)> = broker
            .replica_manager
            .leader_partitions()
            .into_iter()
            .filter_map(|p| p.maybe_propose_isr_change(now, lag_ms).map(|c| (p, c)))
            .collect();
        // As Kafka's AlterPartitionManager: every change due goes in one request, and the
        // next request waits for this one's answer, so a broker with many partitions sends
        // few controller writes rather than one per partition.
        for batch in pending.chunks(CHANGES_PER_REQUEST_MAX) {
            for (partition, change) in batch {
                tracing::info!(topic = %partition.topic, partition = partition.index, new_isr = ?change.new_isr, "proposing ISR change");
            }
            let changes: Vec<IsrChange> = batch.iter().map(|(_, c)| c.clone()).collect();
            let outcomes = send(&broker, &changes).await;
            for ((partition, _), outcome) in batch.iter().zip(outcomes) {
                if let Err(e) = outcome {
                    tracing::info!(topic = %partition.topic, partition = partition.index, error = %e, "ISR change refused");
                    partition.isr_change_failed();
                }
            }
        }
    }
}

/// Sends the changes to the active controller; one outcome per change, in order.
async fn send(broker: &Broker, changes: &[IsrChange]) -> Vec<Result<(), ApiError>> {
    let all = |e: ApiError| changes.iter().map(|_| Err(e.clone())).collect();
    let broker_epoch = broker.broker_epoch();
    if broker.controller.is_active() {
        return match broker
            .controller
            .alter_partitions(broker.config.node_id, broker_epoch, changes)
            .await
        {
            Ok(results) => results.into_iter().map(|r| r.map(|_| ())).collect(),
            Err(e) => all(e),
        };
    }
    // One topic entry per change keeps the answers in the changes' order.
    let request = AlterPartitionRequest::default()
        .with_broker_id(BrokerId(broker.config.node_id))
        .with_broker_epoch(broker_epoch)
        .with_topics(
            changes
                .iter()
                .map(|change| {
                    TopicData::default()
                        .with_topic_id(change.topic_id)
                        .with_partitions(vec![PartitionData::default()
                            .with_partition_index(change.partition)
                            .with_leader_epoch(change.leader_epoch)
                            .with_partition_epoch(change.partition_epoch)
                            .with_new_isr(change.new_isr.iter().map(|b| BrokerId(*b)).collect())])
                })
                .collect(),
        );
    let response = match broker.send_to_controller(&request, 2).await {
        Ok(r) => r,
        Err(e) => return all(e),
    };
    if let Some(code) = ResponseError::try_from_code(response.error_code) {
        return all(ApiError::new(code));
    }
    let codes: Vec<i16> = response
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
        .collect();
    if codes.len() != changes.len() {
        return all(ApiError::with_message(
            ResponseError::UnknownServerError,
            format!(
                "AlterPartition answered {} of {} changes",
                codes.len(),
                changes.len()
            ),
        ));
    }
    codes
        .into_iter()
        .map(|code| match ResponseError::try_from_code(code) {
            None => Ok(()),
            Some(code) => Err(ApiError::new(code)),
        })
        .collect()
}
