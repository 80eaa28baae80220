//! DescribeCluster (key 60): cluster id, controller and live brokers.

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};
use kafka_protocol::ResponseError;

use super::metadata::AUTHORIZED_OPERATIONS_OMITTED;
use super::{str_bytes, RequestContext};

/// DescribeCluster's EndpointType: 1 = brokers, 2 = controllers.
const ENDPOINT_TYPE_BROKERS: i8 = 1;

pub fn handle(ctx: &RequestContext, req: DescribeClusterRequest) -> DescribeClusterResponse {
    let image = ctx.broker.image();
    if ctx.api_version >= 1 && req.endpoint_type != ENDPOINT_TYPE_BROKERS {
        return DescribeClusterResponse::default()
            .with_endpoint_type(req.endpoint_type)
            .with_error_code(ResponseError::UnsupportedEndpointType.code())
            .with_error_message(Some(str_bytes(
                "This listener serves broker endpoints only",
            )));
    }
    let brokers = image
        .brokers
        .values()
        .filter(|b| !b.fenced || req.include_fenced_brokers)
        .filter_map(|b| {
            let ep = b.endpoints.first()?;
            Some(
                DescribeClusterBroker::default()
                    .with_broker_id(BrokerId(b.broker_id))
                    .with_host(str_bytes(&ep.host))
                    .with_port(ep.port as i32)
                    .with_rack(b.rack.as_deref().map(str_bytes))
                    .with_is_fenced(b.fenced),
            )
        })
        .collect();
    DescribeClusterResponse::default()
        .with_cluster_id(str_bytes(image.cluster_id.as_deref().unwrap_or_default()))
        .with_controller_id(BrokerId(ctx.broker.controller.active_controller_id()))
        .with_brokers(brokers)
        .with_cluster_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED)
}
