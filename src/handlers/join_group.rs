//! JoinGroup (key 11): waits, in the response future, until the group's rebalance completes.

use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse, ResponseKind};
use kafka_protocol::ResponseError;

use super::{str_bytes, RequestContext};
use crate::group::{JoinRequest, JoinResult, Outcome};
use crate::net::connection::PendingResponse;

pub fn handle(ctx: RequestContext, req: JoinGroupRequest) -> PendingResponse {
    let group_id = req.group_id.0.to_string();
    if group_id.is_empty() {
        let resp = JoinGroupResponse::default()
            .with_error_code(ResponseError::InvalidGroupId.code())
            .with_generation_id(-1);
        let reply = ctx.reply(ResponseKind::JoinGroup(resp));
        return Box::pin(async move { reply });
    }
    let join = JoinRequest {
        member_id: req.member_id.to_string(),
        group_instance_id: req.group_instance_id.as_ref().map(|s| s.to_string()),
        client_id: ctx.client_id().to_string(),
        client_host: format!("/{}", ctx.peer.ip()),
        session_timeout_ms: req.session_timeout_ms,
        rebalance_timeout_ms: if ctx.api_version >= 1 {
            req.rebalance_timeout_ms
        } else {
            req.session_timeout_ms
        },
        protocol_type: req.protocol_type.to_string(),
        protocols: req
            .protocols
            .iter()
            .map(|p| (p.name.to_string(), p.metadata.clone()))
            .collect(),
        require_known_member_id: ctx.api_version >= 4,
    };
    let member_id = join.member_id.clone();
    let outcome = ctx.broker.group_coordinator.join(&group_id, join);
    Box::pin(async move {
        let result = match outcome {
            Outcome::Now(r) => r,
            Outcome::Later(rx) => rx.await.unwrap_or(JoinResult {
                error: Some(ResponseError::UnknownMemberId),
                generation_id: -1,
                protocol_type: None,
                protocol_name: None,
                leader: String::new(),
                member_id,
                members: vec![],
            }),
        };
        let mut resp = JoinGroupResponse::default()
            .with_error_code(result.error.map(|e| e.code()).unwrap_or(0))
            .with_generation_id(result.generation_id)
            .with_protocol_name(Some(str_bytes(
                result.protocol_name.as_deref().unwrap_or_default(),
            )))
            .with_leader(str_bytes(&result.leader))
            .with_member_id(str_bytes(&result.member_id))
            .with_members(
                result
                    .members
                    .iter()
                    .map(|m| {
                        JoinGroupResponseMember::default()
                            .with_member_id(str_bytes(&m.member_id))
                            .with_group_instance_id(m.group_instance_id.as_deref().map(str_bytes))
                            .with_metadata(m.metadata.clone())
                    })
                    .collect(),
            );
        if ctx.api_version >= 7 {
            resp = resp.with_protocol_type(result.protocol_type.as_deref().map(str_bytes));
            if result.protocol_name.is_none() {
                resp = resp.with_protocol_name(None);
            }
        }
        ctx.reply(ResponseKind::JoinGroup(resp))
    })
}
