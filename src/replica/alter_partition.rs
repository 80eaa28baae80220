//! ISR maintenance on leaders (Kafka's `AlterPartitionManager` with the leader's periodic
//! `maybeShrinkIsr` and fetch-time `maybeExpandIsr`): every leader partition checks its
//! followers, and a needed ISR change goes to the active controller as AlterPartition. The
//! new ISR takes effect when the committed record reaches this broker's image.

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::alter_partition_request::{PartitionData, TopicData};
use kafka_protocol::messages::{AlterPartitionRequest, BrokerId};
use kafka_protocol::ResponseError;

use super::IsrChange;
use crate::broker::Broker;
use crate::clock::now_ms;
use crate::error::ApiError;

pub async fn run(broker: Arc<Broker>) {
    let lag_ms = broker.config.replica_lag_time_max_ms.max(10);
    let mut ticker =
        tokio::time::interval(Duration::from_millis((lag_ms as u64 / 4).clamp(10, 500)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        for partition in broker.replica_manager.leader_partitions() {
            let Some(change) = partition.maybe_propose_isr_change(now_ms(), lag_ms) else {
                continue;
            };
            tracing::info!(topic = %partition.topic, partition = partition.index, new_isr = ?change.new_isr, "proposing ISR change");
            let broker = broker.clone();
            tokio::spawn(async move {
                if let Err(e) = send(&broker, &change).await {
                    tracing::info!(topic = %partition.topic, partition = partition.index, error = %e, "ISR change refused");
                    partition.isr_change_failed();
                }
            });
        }
    }
}

async fn send(broker: &Broker, change: &IsrChange) -> Result<(), ApiError> {
    let broker_epoch = broker.broker_epoch();
    if broker.controller.is_active() {
        broker
            .controller
            .alter_partition(broker.config.node_id, broker_epoch, change)
            .await?;
        return Ok(());
    }
    let request = AlterPartitionRequest::default()
        .with_broker_id(BrokerId(broker.config.node_id))
        .with_broker_epoch(broker_epoch)
        .with_topics(vec![TopicData::default()
            .with_topic_id(change.topic_id)
            .with_partitions(vec![PartitionData::default()
                .with_partition_index(change.partition)
                .with_leader_epoch(change.leader_epoch)
                .with_partition_epoch(change.partition_epoch)
                .with_new_isr(
                    change.new_isr.iter().map(|b| BrokerId(*b)).collect(),
                )])]);
    let response = broker.send_to_controller(&request, 2).await?;
    if let Some(code) = ResponseError::try_from_code(response.error_code) {
        return Err(ApiError::new(code));
    }
    let code = response
        .topics
        .first()
        .and_then(|t| t.partitions.first())
        .map(|p| p.error_code)
        .unwrap_or(ResponseError::UnknownServerError.code());
    match ResponseError::try_from_code(code) {
        None => Ok(()),
        Some(code) => Err(ApiError::new(code)),
    }
}
