//! ListOffsets (key 2): earliest, latest, by timestamp and max timestamp, on the leader.

use std::collections::HashSet;

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use kafka_protocol::ResponseError;

use super::RequestContext;
use crate::error::ApiError;
use crate::replica::TopicPartition;

/// Partitions named more than once in the request: Kafka answers every occurrence with
/// INVALID_REQUEST (`ListOffsetsRequest.duplicatePartitions`).
fn duplicate_partitions(req: &ListOffsetsRequest) -> HashSet<(&str, i32)> {
    let mut seen = HashSet::new();
    let mut duplicates = HashSet::new();
    for t in &req.topics {
        for p in &t.partitions {
            let tp = (t.name.0.as_str(), p.partition_index);
            if !seen.insert(tp) {
                duplicates.insert(tp);
            }
        }
    }
    duplicates
}

pub fn handle(ctx: &RequestContext, req: ListOffsetsRequest) -> ListOffsetsResponse {
    let image = ctx.broker.image();
    let rm = &ctx.broker.replica_manager;
    let duplicates = duplicate_partitions(&req);
    let topics = req
        .topics
        .iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    if duplicates.contains(&(topic.name.0.as_str(), p.partition_index)) {
                        return ListOffsetsPartitionResponse::default()
                            .with_partition_index(p.partition_index)
                            .with_error_code(ResponseError::InvalidRequest.code())
                            .with_offset(-1)
                            .with_timestamp(-1);
                    }
                    let tp = TopicPartition::new(topic.name.0.to_string(), p.partition_index);
                    let result = rm.get_partition(&image, &tp).and_then(|part| {
                        // A leader whose session may have expired may have been replaced
                        // without knowing it: its high watermark could be stale.
                        if !ctx.broker.lease.is_valid() {
                            return Err(ApiError::with_message(
                                ResponseError::NotLeaderOrFollower,
                                "This broker's controller session is not confirmed",
                            ));
                        }
                        part.fetch_offset_for_timestamp(p.timestamp, p.current_leader_epoch)
                    });
                    let resp = ListOffsetsPartitionResponse::default()
                        .with_partition_index(p.partition_index);
                    match result {
                        Ok(found) => {
                            let (offset, timestamp, epoch) = found.unwrap_or((-1, -1, -1));
                            let resp = resp.with_offset(offset).with_timestamp(timestamp);
                            if ctx.api_version >= 4 {
                                resp.with_leader_epoch(epoch)
                            } else {
                                resp
                            }
                        }
                        Err(e) => resp
                            .with_error_code(e.code())
                            .with_offset(-1)
                            .with_timestamp(-1),
                    }
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}
