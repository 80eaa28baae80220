//! InitProducerId (key 22): a producer id for an idempotent producer, from this broker's
//! block of ids (blocks are allocated through the controller, so ids are never reused).

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use kafka_protocol::ResponseError;

use super::RequestContext;

pub async fn handle(ctx: &RequestContext, req: InitProducerIdRequest) -> InitProducerIdResponse {
    if req.transactional_id.is_some() {
        // Transactions need a transaction coordinator, which this broker does not run.
        return InitProducerIdResponse::default()
            .with_error_code(ResponseError::InvalidRequest.code())
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
    }
    match ctx.broker.next_producer_id().await {
        // A new id always starts at epoch 0; a producer re-initialising gets a fresh id
        // (the non-transactional path of Kafka's ProducerIdManager).
        Ok(id) => InitProducerIdResponse::default()
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(0),
        Err(e) => InitProducerIdResponse::default()
            .with_error_code(e.code())
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1),
    }
}
