//! ListGroups (key 16): the groups this node coordinates (those of the offsets partitions
//! it leads), filtered by state (v4+) and type (v5+). The admin client asks every broker.

use std::collections::HashSet;

use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse};

use super::{str_bytes, RequestContext};

pub fn handle(ctx: &RequestContext, req: ListGroupsRequest) -> ListGroupsResponse {
    // Sets: the filters come from the client and may be long.
    let states: HashSet<String> = req
        .states_filter
        .iter()
        .map(|s| s.to_ascii_lowercase())
        .collect();
    let types: HashSet<String> = req
        .types_filter
        .iter()
        .map(|s| s.to_ascii_lowercase())
        .collect();
    let listed = match ctx.broker.group_coordinator.list_groups() {
        Ok(l) => l,
        Err(e) => return ListGroupsResponse::default().with_error_code(e.code()),
    };
    let groups = listed
        .into_iter()
        .filter(|(_, _, state)| {
            states.is_empty() || states.contains(&state.as_str().to_ascii_lowercase())
        })
        .filter(|_| types.is_empty() || types.contains("classic"))
        .map(|(id, protocol_type, state)| {
            let mut g = ListedGroup::default()
                .with_group_id(GroupId(str_bytes(&id)))
                .with_protocol_type(str_bytes(&protocol_type));
            if ctx.api_version >= 4 {
                g = g.with_group_state(str_bytes(state.as_str()));
            }
            if ctx.api_version >= 5 {
                g = g.with_group_type(str_bytes("classic"));
            }
            g
        })
        .collect();
    ListGroupsResponse::default().with_groups(groups)
}
