//! BrokerHeartbeat (key 63): a broker's session with the active controller.

use kafka_protocol::messages::{BrokerHeartbeatRequest, BrokerHeartbeatResponse};

use super::RequestContext;

pub async fn handle(ctx: &RequestContext, req: BrokerHeartbeatRequest) -> BrokerHeartbeatResponse {
    match ctx
        .broker
        .controller
        .broker_heartbeat(
            req.broker_id.0,
            req.broker_epoch,
            req.current_metadata_offset,
            req.want_fence,
        )
        .await
    {
        Ok(o) => BrokerHeartbeatResponse::default()
            .with_is_caught_up(o.is_caught_up)
            .with_is_fenced(o.is_fenced),
        Err(e) => BrokerHeartbeatResponse::default()
            .with_error_code(e.code())
            .with_is_fenced(true),
    }
}
