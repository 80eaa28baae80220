//! FindCoordinator (key 10): this node coordinates every consumer group (v0-3 one key,
//! v4+ a batch of keys). Transactions and share groups are not coordinated here.

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::{str_bytes, RequestContext};

/// FindCoordinator's key type for consumer groups.
const KEY_TYPE_GROUP: i8 = 0;

pub fn handle(ctx: &RequestContext, req: FindCoordinatorRequest) -> FindCoordinatorResponse {
    let advertised = ctx.broker.config.advertised();
    let answer = |key: &StrBytes| -> Coordinator {
        let c = Coordinator::default().with_key(key.clone());
        if req.key_type != KEY_TYPE_GROUP {
            return c
                .with_error_code(ResponseError::InvalidRequest.code())
                .with_error_message(Some(str_bytes(
                    "Only consumer group coordinators are served by this broker",
                )))
                .with_node_id(BrokerId(-1))
                .with_port(-1);
        }
        if key.is_empty() {
            return c
                .with_error_code(ResponseError::InvalidGroupId.code())
                .with_node_id(BrokerId(-1))
                .with_port(-1);
        }
        c.with_node_id(BrokerId(ctx.broker.config.node_id))
            .with_host(str_bytes(&advertised.host))
            .with_port(advertised.port as i32)
    };
    if ctx.api_version >= 4 {
        return FindCoordinatorResponse::default()
            .with_coordinators(req.coordinator_keys.iter().map(answer).collect());
    }
    let c = answer(&req.key);
    let mut resp = FindCoordinatorResponse::default()
        .with_error_code(c.error_code)
        .with_node_id(c.node_id)
        .with_host(c.host)
        .with_port(c.port);
    if ctx.api_version >= 1 {
        resp = resp.with_error_message(c.error_message);
    }
    resp
}
