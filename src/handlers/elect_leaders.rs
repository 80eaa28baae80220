//! ElectLeaders (key 43): preferred or unclean leader election, decided by the controller
//! (`kafka-leader-election`).

use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::{ElectLeadersRequest, ElectLeadersResponse, TopicName};

use super::{message, str_bytes, RequestContext};

/// ElectLeaders' election types.
const ELECTION_TYPE_UNCLEAN: i8 = 1;

pub async fn handle(ctx: &RequestContext, req: ElectLeadersRequest) -> ElectLeadersResponse {
    if !ctx.broker.controller.is_active() && !ctx.is_from_broker() {
        return match ctx.broker.send_to_controller(&req, ctx.api_version).await {
            Ok(resp) => resp,
            Err(e) => ElectLeadersResponse::default().with_error_code(e.code()),
        };
    }
    let partitions = req.topic_partitions.as_ref().map(|tps| {
        tps.iter()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .map(move |p| (t.topic.0.to_string(), *p))
            })
            .collect()
    });
    let unclean = ctx.api_version >= 1 && req.election_type == ELECTION_TYPE_UNCLEAN;
    match ctx
        .broker
        .controller
        .elect_leaders(unclean, partitions)
        .await
    {
        Err(e) => ElectLeadersResponse::default().with_error_code(e.code()),
        Ok(results) => {
            let mut by_topic: Vec<ReplicaElectionResult> = Vec::new();
            for ((topic, p), outcome) in results {
                let r = match outcome {
                    Ok(()) => PartitionResult::default().with_partition_id(p),
                    Err(e) => PartitionResult::default()
                        .with_partition_id(p)
                        .with_error_code(e.code())
                        .with_error_message(message(&e.message)),
                };
                match by_topic.iter_mut().find(|t| t.topic.0.as_str() == topic) {
                    Some(t) => t.partition_result.push(r),
                    None => by_topic.push(
                        ReplicaElectionResult::default()
                            .with_topic(TopicName(str_bytes(&topic)))
                            .with_partition_result(vec![r]),
                    ),
                }
            }
            ElectLeadersResponse::default().with_replica_election_results(by_topic)
        }
    }
}
