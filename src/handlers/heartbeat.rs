//! Heartbeat (key 12): keeps a member's session alive and tells it about rebalances.

use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};

use super::RequestContext;

pub fn handle(ctx: &RequestContext, req: HeartbeatRequest) -> HeartbeatResponse {
    let error =
        ctx.broker
            .group_coordinator
            .heartbeat(&req.group_id.0, &req.member_id, req.generation_id);
    HeartbeatResponse::default().with_error_code(error.map(|e| e.code()).unwrap_or(0))
}
