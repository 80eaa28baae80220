//! DescribeGroups (key 15): state, protocol and members of groups; NOT_COORDINATOR (or
//! COORDINATOR_LOAD_IN_PROGRESS) for groups this node does not coordinate.

use std::collections::HashSet;

use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse};

use super::metadata::AUTHORIZED_OPERATIONS_OMITTED;
use super::{str_bytes, RequestContext};

pub fn handle(ctx: &RequestContext, req: DescribeGroupsRequest) -> DescribeGroupsResponse {
    // Each group once, in request order: a group named a thousand times would otherwise
    // repeat its members' metadata and assignments a thousand times in the response.
    let mut seen = HashSet::new();
    let groups = req
        .groups
        .iter()
        .filter(|id| seen.insert(id.0.as_str()))
        .map(|id| {
            let d = match ctx.broker.group_coordinator.describe_group(&id.0) {
                Ok(d) => d,
                Err(e) => {
                    let mut g = DescribedGroup::default()
                        .with_group_id(id.clone())
                        .with_error_code(e.code());
                    if ctx.api_version >= 3 {
                        g = g.with_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED);
                    }
                    return g;
                }
            };
            let members = d
                .members
                .into_iter()
                .map(|m| {
                    DescribedGroupMember::default()
                        .with_member_id(str_bytes(&m.member_id))
                        .with_group_instance_id(m.group_instance_id.as_deref().map(str_bytes))
                        .with_client_id(str_bytes(&m.client_id))
                        .with_client_host(str_bytes(&m.client_host))
                        .with_member_metadata(m.metadata)
                        .with_member_assignment(m.assignment)
                })
                .collect();
            let mut g = DescribedGroup::default()
                .with_group_id(id.clone())
                .with_group_state(str_bytes(d.state.as_str()))
                .with_protocol_type(str_bytes(&d.protocol_type))
                .with_protocol_data(str_bytes(&d.protocol_name))
                .with_members(members);
            if ctx.api_version >= 3 {
                g = g.with_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED);
            }
            g
        })
        .collect();
    DescribeGroupsResponse::default().with_groups(groups)
}
