//! DescribeQuorum (key 55): the metadata quorum's leader, epoch, high watermark and each
//! voter's progress, for `kafka-metadata-quorum describe --status / --replication`.
//! Only the leader knows the voters' progress, so other nodes forward the request to it.

use kafka_protocol::messages::describe_quorum_response::{
    Listener, Node, PartitionData, ReplicaState, TopicData,
};
use kafka_protocol::messages::{
    BrokerId, DescribeQuorumRequest, DescribeQuorumResponse, TopicName,
};
use kafka_protocol::ResponseError;

use super::{message, str_bytes, RequestContext};

/// The metadata log's topic name, as Kafka names it.
pub const METADATA_TOPIC: &str = "__cluster_metadata";

pub async fn handle(ctx: &RequestContext, req: DescribeQuorumRequest) -> DescribeQuorumResponse {
    let asks_for_metadata_partition = req.topics.iter().all(|t| {
        t.topic_name.0.as_str() == METADATA_TOPIC
            && t.partitions.iter().all(|p| p.partition_index == 0)
    });
    if !asks_for_metadata_partition || req.topics.is_empty() {
        return DescribeQuorumResponse::default()
            .with_error_code(ResponseError::InvalidRequest.code())
            .with_error_message(Some(str_bytes(
                "DescribeQuorum describes __cluster_metadata partition 0 only",
            )));
    }
    if !ctx.broker.controller.is_active() {
        if ctx.is_from_broker() {
            return not_leader(ctx);
        }
        return match ctx.broker.send_to_controller(&req, ctx.api_version).await {
            Ok(resp) => resp,
            Err(e) => DescribeQuorumResponse::default()
                .with_error_code(e.code())
                .with_error_message(message(&e.message)),
        };
    }
    let info = ctx.broker.quorum.quorum_info();
    let replica = |r: &gregor_raft::ReplicaProgress| {
        let mut s = ReplicaState::default()
            .with_replica_id(BrokerId(r.node_id as i32))
            .with_log_end_offset(r.log_end_offset);
        if ctx.api_version >= 1 {
            s = s
                .with_last_fetch_timestamp(r.last_fetch_timestamp_ms)
                .with_last_caught_up_timestamp(r.last_caught_up_timestamp_ms);
        }
        s
    };
    let partition = PartitionData::default()
        .with_partition_index(0)
        .with_leader_id(BrokerId(info.leader_id.map(|l| l as i32).unwrap_or(-1)))
        .with_leader_epoch(info.leader_epoch as i32)
        .with_high_watermark(info.high_watermark)
        .with_current_voters(info.voters.iter().map(replica).collect())
        .with_observers(info.observers.iter().map(replica).collect());
    let mut resp = DescribeQuorumResponse::default().with_topics(vec![TopicData::default()
        .with_topic_name(TopicName(str_bytes(METADATA_TOPIC)))
        .with_partitions(vec![partition])]);
    if ctx.api_version >= 2 {
        let listener_name = ctx
            .broker
            .config
            .controller_listener()
            .map(|l| l.name.clone())
            .unwrap_or_else(|| "CONTROLLER".to_string());
        resp = resp.with_nodes(
            ctx.broker
                .voters()
                .iter()
                .map(|(id, addr)| {
                    Node::default()
                        .with_node_id(BrokerId(*id))
                        .with_listeners(vec![Listener::default()
                            .with_name(str_bytes(&listener_name))
                            .with_host(str_bytes(&addr.ip().to_string()))
                            .with_port(addr.port())])
                })
                .collect(),
        );
    }
    resp
}

fn not_leader(ctx: &RequestContext) -> DescribeQuorumResponse {
    let partition = PartitionData::default()
        .with_partition_index(0)
        .with_error_code(ResponseError::NotLeaderOrFollower.code())
        .with_leader_id(BrokerId(ctx.broker.controller.active_controller_id()))
        .with_leader_epoch(-1);
    DescribeQuorumResponse::default().with_topics(vec![TopicData::default()
        .with_topic_name(TopicName(str_bytes(METADATA_TOPIC)))
        .with_partitions(vec![partition])])
}
