//! DescribeCluster (key 60): cluster id, controller and live brokers.

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};
use kafka_protocol::ResponseError;

use super::metadata::AUTHORIZED_OPERATIONS_OMITTED;
use super::{str_bytes, ListenerKind, RequestContext};

/// DescribeCluster's EndpointType: 1 = brokers, 2 = controllers.
const ENDPOINT_TYPE_BROKERS: i8 = 1;
const ENDPOINT_TYPE_CONTROLLERS: i8 = 2;

pub fn handle(ctx: &RequestContext, req: DescribeClusterRequest) -> DescribeClusterResponse {
    let image = ctx.broker.image();
    let cluster_id = str_bytes(image.cluster_id.as_deref().unwrap_or_default());
    if ctx.api_version >= 1 && req.endpoint_type == ENDPOINT_TYPE_CONTROLLERS {
        if ctx.listener != ListenerKind::Controller {
            return DescribeClusterResponse::default()
                .with_endpoint_type(req.endpoint_type)
                .with_error_code(ResponseError::UnsupportedEndpointType.code())
                .with_error_message(Some(str_bytes("Controller endpoints are served on the controller listener (--bootstrap-controller)")));
        }
        // The voters, at their controller listeners.
        let brokers = ctx
            .broker
            .voters()
            .iter()
            .map(|(id, addr)| {
                DescribeClusterBroker::default()
                    .with_broker_id(BrokerId(*id))
                    .with_host(str_bytes(&addr.ip().to_string()))
                    .with_port(addr.port() as i32)
            })
            .collect();
        return DescribeClusterResponse::default()
            .with_endpoint_type(req.endpoint_type)
            .with_cluster_id(cluster_id)
            .with_controller_id(BrokerId(ctx.broker.controller.active_controller_id()))
            .with_brokers(brokers)
            .with_cluster_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED);
    }
    if ctx.api_version >= 1 && req.endpoint_type != ENDPOINT_TYPE_BROKERS {
        return DescribeClusterResponse::default()
            .with_endpoint_type(req.endpoint_type)
            .with_error_code(ResponseError::UnsupportedEndpointType.code())
            .with_error_message(Some(str_bytes("Unknown endpoint type")));
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
        .with_cluster_id(cluster_id)
        .with_controller_id(BrokerId(super::metadata::controller_id_for_clients(
            ctx, &image,
        )))
        .with_brokers(brokers)
        .with_cluster_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED)
}
