//! AddOffsetsToTxn (key 25): adds the group's `__consumer_offsets` partition to the
//! transaction, so its markers reach the group coordinator (Kafka's
//! `handleAddOffsetsToTxnRequest`). TxnOffsetCommit itself is not served yet.

use kafka_protocol::messages::{AddOffsetsToTxnRequest, AddOffsetsToTxnResponse};
use kafka_protocol::ResponseError;

use super::RequestContext;
use crate::group::{GroupCoordinator, OFFSETS_TOPIC};

pub async fn handle(ctx: &RequestContext, req: AddOffsetsToTxnRequest) -> AddOffsetsToTxnResponse {
    let image = ctx.broker.image();
    let Some(partition) = GroupCoordinator::partition_for(&image, &req.group_id) else {
        // No offsets topic yet: the group has no coordinator to take markers.
        return AddOffsetsToTxnResponse::default()
            .with_error_code(ResponseError::CoordinatorNotAvailable.code());
    };
    let r = ctx
        .broker
        .txn_coordinator
        .add_partitions(
            &req.transactional_id,
            req.producer_id.0,
            req.producer_epoch,
            &[(OFFSETS_TOPIC.to_string(), partition)],
            1,
        )
        .await;
    let code = match r {
        Ok(()) => 0,
        Err(ResponseError::ProducerFenced) if ctx.api_version < 2 => {
            ResponseError::InvalidProducerEpoch.code()
        }
        Err(e) => e.code(),
    };
    AddOffsetsToTxnResponse::default().with_error_code(code)
}
