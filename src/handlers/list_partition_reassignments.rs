//! ListPartitionReassignments (key 46): ongoing replica reassignments. Partitions here keep
//! the replicas they were created with, so none is ever in progress.

use kafka_protocol::messages::{
    ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse,
};

use super::RequestContext;

pub fn handle(
    _ctx: &RequestContext,
    _req: ListPartitionReassignmentsRequest,
) -> ListPartitionReassignmentsResponse {
    ListPartitionReassignmentsResponse::default()
}
