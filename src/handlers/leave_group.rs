//! LeaveGroup (key 13): one member (v0-2) or a batch of members by id or instance id (v3+).

use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};

use super::RequestContext;

pub fn handle(ctx: &RequestContext, req: LeaveGroupRequest) -> LeaveGroupResponse {
    let gc = &ctx.broker.group_coordinator;
    let group_id = req.group_id.0.as_str();
    if ctx.api_version < 3 {
        let error = gc
            .leave(group_id, &req.member_id, None)
            .unwrap_or_else(Some);
        return LeaveGroupResponse::default().with_error_code(error.map(|e| e.code()).unwrap_or(0));
    }
    // v3+: a coordinator error is the request's; member errors are per member.
    if let Err(e) = gc.check_coordinator(group_id) {
        return LeaveGroupResponse::default().with_error_code(e.code());
    }
    let members = req
        .members
        .iter()
        .map(|m| {
            let error = gc
                .leave(
                    group_id,
                    &m.member_id,
                    m.group_instance_id.as_ref().map(|s| s.as_str()),
                )
                .unwrap_or_else(Some);
            MemberResponse::default()
                .with_member_id(m.member_id.clone())
                .with_group_instance_id(m.group_instance_id.clone())
                .with_error_code(error.map(|e| e.code()).unwrap_or(0))
        })
        .collect();
    LeaveGroupResponse::default().with_members(members)
}
