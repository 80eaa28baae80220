//! DescribeTopicPartitions (key 75, KIP-966): topic descriptions paged by partition count,
//! which the 4.x admin client prefers over Metadata for `describeTopics`.

use kafka_protocol::messages::describe_topic_partitions_response::{
    Cursor, DescribeTopicPartitionsResponsePartition, DescribeTopicPartitionsResponseTopic,
};
use kafka_protocol::messages::{
    BrokerId, DescribeTopicPartitionsRequest, DescribeTopicPartitionsResponse, TopicName,
};
use kafka_protocol::ResponseError;

use super::metadata::AUTHORIZED_OPERATIONS_OMITTED;
use super::{str_bytes, RequestContext};

/// Kafka's error response for the request: every named topic with INVALID_REQUEST.
fn invalid_request(req: &DescribeTopicPartitionsRequest) -> DescribeTopicPartitionsResponse {
    DescribeTopicPartitionsResponse::default().with_topics(
        req.topics
            .iter()
            .map(|t| {
                DescribeTopicPartitionsResponseTopic::default()
                    .with_error_code(ResponseError::InvalidRequest.code())
                    .with_name(Some(t.name.clone()))
                    .with_topic_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED)
            })
            .collect(),
    )
}

pub fn handle(
    ctx: &RequestContext,
    req: DescribeTopicPartitionsRequest,
) -> DescribeTopicPartitionsResponse {
    let image = ctx.broker.image();
    let limit = req.response_partition_limit.clamp(1, 2000) as usize;
    // Topics in name order (all of them when none is named), starting at the cursor.
    let mut names: Vec<String> = if req.topics.is_empty() {
        image.topics.keys().cloned().collect()
    } else {
        req.topics.iter().map(|t| t.name.0.to_string()).collect()
    };
    names.sort();
    names.dedup();
    let (cursor_topic, cursor_partition) = match &req.cursor {
        Some(c) => (Some(c.topic_name.0.to_string()), c.partition_index),
        None => (None, 0),
    };
    // Kafka's DescribeTopicPartitionsRequestHandler.validateCursor.
    if let Some(topic) = &cursor_topic {
        let message = if cursor_partition < 0 {
            Some("DescribeTopicPartitionsRequest cursor partition must be valid")
        } else if names.binary_search(topic).is_err() {
            Some("DescribeTopicPartitionsRequest topic list should contain the cursor topic")
        } else {
            None
        };
        if let Some(message) = message {
            tracing::debug!(client = ctx.client_id(), message, "invalid request");
            return invalid_request(&req);
        }
    }
    let mut used = 0usize;
    let mut topics = Vec::new();
    let mut next_cursor = None;
    for name in names {
        if let Some(ct) = &cursor_topic {
            if &name < ct {
                continue;
            }
        }
        let Some(topic) = image.topic(&name) else {
            topics.push(
                DescribeTopicPartitionsResponseTopic::default()
                    .with_error_code(ResponseError::UnknownTopicOrPartition.code())
                    .with_name(Some(TopicName(str_bytes(&name))))
                    .with_topic_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED),
            );
            continue;
        };
        let first = if cursor_topic.as_deref() == Some(name.as_str()) {
            cursor_partition
        } else {
            0
        };
        let mut partitions = Vec::new();
        for (p, reg) in topic.partitions.range(first..) {
            if used == limit {
                next_cursor = Some(
                    Cursor::default()
                        .with_topic_name(TopicName(str_bytes(&name)))
                        .with_partition_index(*p),
                );
                break;
            }
            used += 1;
            let offline = reg
                .replicas
                .iter()
                .filter(|r| !image.brokers.get(r).map(|b| !b.fenced).unwrap_or(false))
                .map(|r| BrokerId(*r))
                .collect();
            partitions.push(
                DescribeTopicPartitionsResponsePartition::default()
                    .with_error_code(if reg.leader < 0 {
                        ResponseError::LeaderNotAvailable.code()
                    } else {
                        0
                    })
                    .with_partition_index(*p)
                    .with_leader_id(BrokerId(reg.leader))
                    .with_leader_epoch(reg.leader_epoch)
                    .with_replica_nodes(reg.replicas.iter().map(|r| BrokerId(*r)).collect())
                    .with_isr_nodes(reg.isr.iter().map(|r| BrokerId(*r)).collect())
                    .with_eligible_leader_replicas(Some(vec![]))
                    .with_last_known_elr(Some(vec![]))
                    .with_offline_replicas(offline),
            );
        }
        topics.push(
            DescribeTopicPartitionsResponseTopic::default()
                .with_name(Some(TopicName(str_bytes(&name))))
                .with_topic_id(topic.topic_id)
                .with_is_internal(topic.is_internal())
                .with_partitions(partitions)
                .with_topic_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED),
        );
        if next_cursor.is_some() {
            break;
        }
    }
    DescribeTopicPartitionsResponse::default()
        .with_topics(topics)
        .with_next_cursor(next_cursor)
}
