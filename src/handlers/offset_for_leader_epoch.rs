//! OffsetForLeaderEpoch (key 23): where a leader epoch ended on the leader, so consumers and
//! followers can detect divergence and truncate (KIP-101, KIP-320).

use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

use super::RequestContext;
use crate::replica::TopicPartition;

pub fn handle(
    ctx: &RequestContext,
    req: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let image = ctx.broker.image();
    let rm = &ctx.broker.replica_manager;
    let topics = req
        .topics
        .iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let tp = TopicPartition::new(topic.topic.0.to_string(), p.partition);
                    let result = rm.get_partition(&image, &tp).and_then(|part| {
                        part.last_offset_for_leader_epoch(p.current_leader_epoch, p.leader_epoch)
                    });
                    let resp = EpochEndOffset::default().with_partition(p.partition);
                    match result {
                        Ok((epoch, end_offset)) => {
                            resp.with_leader_epoch(epoch).with_end_offset(end_offset)
                        }
                        Err(e) => resp
                            .with_error_code(e.code())
                            .with_leader_epoch(-1)
                            .with_end_offset(-1),
                    }
                })
                .collect();
            OffsetForLeaderTopicResult::default()
                .with_topic(topic.topic.clone())
                .with_partitions(partitions)
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}
