//! OffsetDelete (key 47): deletes a group's committed offsets of some partitions. The group
//! must exist (GROUP_ID_NOT_FOUND) and be Empty, or use the consumer protocol
//! (NON_EMPTY_GROUP); partitions of topics its members subscribe to get
//! GROUP_SUBSCRIBED_TO_TOPIC and keep their offsets.

use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::{
    OffsetDeleteRequest, OffsetDeleteResponse, ResponseKind, TopicName,
};

use super::{str_bytes, RequestContext};
use crate::net::connection::PendingResponse;

pub fn handle(ctx: RequestContext, req: OffsetDeleteRequest) -> PendingResponse {
    Box::pin(async move {
        let topics = req
            .topics
            .iter()
            .map(|t| {
                (
                    t.name.0.to_string(),
                    t.partitions.iter().map(|p| p.partition_index).collect(),
                )
            })
            .collect();
        let resp = match ctx
            .broker
            .group_coordinator
            .delete_offsets(&req.group_id.0, topics)
            .await
        {
            Err(e) => OffsetDeleteResponse::default().with_error_code(e.code()),
            Ok(results) => OffsetDeleteResponse::default().with_topics(
                results
                    .into_iter()
                    .map(|(topic, partitions)| {
                        OffsetDeleteResponseTopic::default()
                            .with_name(TopicName(str_bytes(&topic)))
                            .with_partitions(
                                partitions
                                    .into_iter()
                                    .map(|(p, e)| {
                                        OffsetDeleteResponsePartition::default()
                                            .with_partition_index(p)
                                            .with_error_code(e.map(|e| e.code()).unwrap_or(0))
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            ),
        };
        ctx.reply(ResponseKind::OffsetDelete(resp))
    })
}
