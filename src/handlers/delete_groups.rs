//! DeleteGroups (key 42): deletes Empty groups and their committed offsets (tombstones in
//! `__consumer_offsets`), per group: NON_EMPTY_GROUP while it has members,
//! GROUP_ID_NOT_FOUND for an unknown group, NOT_COORDINATOR where another node coordinates.

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse, ResponseKind};

use super::RequestContext;
use crate::net::connection::PendingResponse;

pub fn handle(ctx: RequestContext, req: DeleteGroupsRequest) -> PendingResponse {
    Box::pin(async move {
        let gc = &ctx.broker.group_coordinator;
        let mut results = Vec::with_capacity(req.groups_names.len());
        for group_id in &req.groups_names {
            let error = gc.delete_group(&group_id.0).await.err();
            if let Some(e) = error {
                tracing::debug!(group = %group_id.0, error = %e, "group not deleted");
            } else {
                tracing::info!(group = %group_id.0, "group deleted");
            }
            results.push(
                DeletableGroupResult::default()
                    .with_group_id(group_id.clone())
                    .with_error_code(error.map(|e| e.code()).unwrap_or(0)),
            );
        }
        ctx.reply(ResponseKind::DeleteGroups(
            DeleteGroupsResponse::default().with_results(results),
        ))
    })
}
