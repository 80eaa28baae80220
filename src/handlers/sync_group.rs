//! SyncGroup (key 14): members wait, in the response future, for the leader's assignment.

use kafka_protocol::messages::{ResponseKind, SyncGroupRequest, SyncGroupResponse};
use kafka_protocol::ResponseError;

use super::{str_bytes, RequestContext};
use crate::group::{Outcome, SyncResult};
use crate::net::connection::PendingResponse;

pub fn handle(ctx: RequestContext, req: SyncGroupRequest) -> PendingResponse {
    let assignments = req
        .assignments
        .iter()
        .map(|a| (a.member_id.to_string(), a.assignment.clone()))
        .collect();
    let outcome = ctx.broker.group_coordinator.sync(
        &req.group_id.0,
        &req.member_id,
        req.generation_id,
        assignments,
    );
    Box::pin(async move {
        let result = match outcome {
            Outcome::Now(r) => r,
            Outcome::Later(rx) => rx.await.unwrap_or(SyncResult {
                error: Some(ResponseError::UnknownMemberId),
                protocol_type: None,
                protocol_name: None,
                assignment: Default::default(),
            }),
        };
        let mut resp = SyncGroupResponse::default()
            .with_error_code(result.error.map(|e| e.code()).unwrap_or(0))
            .with_assignment(result.assignment);
        if ctx.api_version >= 5 {
            resp = resp
                .with_protocol_type(result.protocol_type.as_deref().map(str_bytes))
                .with_protocol_name(result.protocol_name.as_deref().map(str_bytes));
        }
        ctx.reply(ResponseKind::SyncGroup(resp))
    })
}
