//! AlterPartition (key 56): a partition leader's ISR change, decided by the controller.

use kafka_protocol::messages::alter_partition_response::{PartitionData, TopicData};
use kafka_protocol::messages::{AlterPartitionRequest, AlterPartitionResponse, BrokerId};

use super::RequestContext;
use crate::replica::IsrChange;

pub async fn handle(ctx: &RequestContext, req: AlterPartitionRequest) -> AlterPartitionResponse {
    let changes: Vec<IsrChange> = req
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| IsrChange {
                topic_id: t.topic_id,
                partition: p.partition_index,
                leader_epoch: p.leader_epoch,
                partition_epoch: p.partition_epoch,
                new_isr: if ctx.api_version >= 3 {
                    p.new_isr_with_epochs
                        .iter()
                        .map(|b| b.broker_id.0)
                        .collect()
                } else {
                    p.new_isr.iter().map(|b| b.0).collect()
                },
            })
        })
        .collect();
    // One controller write for the whole request: its cost does not grow with the number of
    // partitions beyond one validation pass.
    let results = match ctx
        .broker
        .controller
        .alter_partitions(req.broker_id.0, req.broker_epoch, &changes)
        .await
    {
        Ok(results) => results,
        Err(e) => return AlterPartitionResponse::default().with_error_code(e.code()),
    };
    let mut results = results.into_iter();
    let topics = req
        .topics
        .iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let r = PartitionData::default().with_partition_index(p.partition_index);
                    match results.next().expect("one outcome per partition") {
                        Ok(reg) => r
                            .with_leader_id(BrokerId(reg.leader))
                            .with_leader_epoch(reg.leader_epoch)
                            .with_isr(reg.isr.iter().map(|b| BrokerId(*b)).collect())
                            .with_partition_epoch(reg.partition_epoch),
                        Err(e) => r
                            .with_error_code(e.code())
                            .with_leader_id(BrokerId(-1))
                            .with_leader_epoch(-1),
                    }
                })
                .collect();
            TopicData::default()
                .with_topic_id(t.topic_id)
                .with_partitions(partitions)
        })
        .collect();
    AlterPartitionResponse::default().with_topics(topics)
}
