//! OffsetCommit (key 8): a group member's (or a standalone consumer's, or the admin
//! client's) committed positions, answered once the group's offsets partition holds them on
//! every in-sync replica.

use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse, ResponseKind};
use kafka_protocol::ResponseError;

use super::RequestContext;
use crate::clock::now_ms;
use crate::group::CommittedOffset;
use crate::net::connection::PendingResponse;

/// Longest offset metadata string kept (Kafka's `offset.metadata.max.bytes`).
const OFFSET_METADATA_BYTES_MAX: usize = 4096;

pub fn handle(ctx: RequestContext, req: OffsetCommitRequest) -> PendingResponse {
    Box::pin(async move {
        let resp = commit(&ctx, &req).await;
        ctx.reply(ResponseKind::OffsetCommit(resp))
    })
}

async fn commit(ctx: &RequestContext, req: &OffsetCommitRequest) -> OffsetCommitResponse {
    let image = ctx.broker.image();
    let now = now_ms();
    // Per-partition checks first (Kafka's KafkaApis does them before the coordinator).
    let mut per_partition: Vec<Vec<i16>> = Vec::with_capacity(req.topics.len());
    let mut accepted = Vec::new();
    for t in &req.topics {
        let topic = image.topic(&t.name.0);
        let codes = t
            .partitions
            .iter()
            .map(|p| {
                if topic.is_none_or(|t| !t.partitions.contains_key(&p.partition_index)) {
                    return ResponseError::UnknownTopicOrPartition.code();
                }
                if p.committed_metadata
                    .as_ref()
                    .is_some_and(|m| m.len() > OFFSET_METADATA_BYTES_MAX)
                {
                    return ResponseError::OffsetMetadataTooLarge.code();
                }
                accepted.push((
                    (t.name.0.to_string(), p.partition_index),
                    CommittedOffset {
                        offset: p.committed_offset,
                        leader_epoch: if ctx.api_version >= 6 {
                            p.committed_leader_epoch
                        } else {
                            -1
                        },
                        metadata: p
                            .committed_metadata
                            .as_ref()
                            .map(|m| m.to_string())
                            .unwrap_or_default(),
                        commit_timestamp_ms: now,
                    },
                ));
                0
            })
            .collect();
        per_partition.push(codes);
    }
    let group_error = if req.group_id.0.is_empty() {
        Some(ResponseError::InvalidGroupId)
    } else {
        ctx.broker
            .group_coordinator
            .commit_offsets(
                &req.group_id.0,
                &req.member_id,
                req.group_instance_id.as_ref().map(|s| s.as_str()),
                req.generation_id_or_member_epoch,
                ctx.api_version,
                accepted,
            )
            .await
            .err()
    };
    let topics = req
        .topics
        .iter()
        .zip(per_partition)
        .map(|(t, codes)| {
            let partitions = t
                .partitions
                .iter()
                .zip(codes)
                .map(|(p, code)| {
                    let code = if code == 0 {
                        group_error.map(|e| e.code()).unwrap_or(0)
                    } else {
                        code
                    };
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(code)
                })
                .collect();
            OffsetCommitResponseTopic::default()
                .with_name(t.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}
