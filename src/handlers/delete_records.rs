//! DeleteRecords (key 21): move partitions' log start offsets forward.

use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};

use super::RequestContext;
use crate::replica::TopicPartition;

pub fn handle(ctx: &RequestContext, req: DeleteRecordsRequest) -> DeleteRecordsResponse {
    let image = ctx.broker.image();
    let rm = &ctx.broker.replica_manager;
    let topics = req
        .topics
        .iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let tp = TopicPartition::new(t.name.0.to_string(), p.partition_index);
                    let r = DeleteRecordsPartitionResult::default()
                        .with_partition_index(p.partition_index);
                    match rm
                        .get_partition(&image, &tp)
                        .and_then(|part| part.delete_records_on_leader(p.offset))
                    {
                        Ok(low_watermark) => r.with_low_watermark(low_watermark),
                        Err(e) => r.with_error_code(e.code()).with_low_watermark(-1),
                    }
                })
                .collect();
            DeleteRecordsTopicResult::default()
                .with_name(t.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    DeleteRecordsResponse::default().with_topics(topics)
}
