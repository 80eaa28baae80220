//! InitProducerId (key 22): a producer id for an idempotent producer, from this broker's
//! block of ids (blocks are allocated through the controller, so ids are never reused); with
//! a transactional id, the transaction coordinator's answer (`crate::txn`): epoch bumps,
//! fencing, KIP-360 recovery with the producer id and epoch of v3+.

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use kafka_protocol::ResponseError;

use super::RequestContext;

fn failed(e: ResponseError) -> InitProducerIdResponse {
    InitProducerIdResponse::default()
        .with_error_code(e.code())
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1)
}

pub async fn handle(ctx: &RequestContext, req: InitProducerIdRequest) -> InitProducerIdResponse {
    if let Some(transactional_id) = &req.transactional_id {
        // v3+: a producer recovering (KIP-360) names the id and epoch it had; -1/-1 is none.
        let expected = (ctx.api_version >= 3 && req.producer_id.0 >= 0)
            .then_some((req.producer_id.0, req.producer_epoch));
        if ctx.api_version >= 3 && (req.producer_id.0 >= 0) != (req.producer_epoch >= 0) {
            return failed(ResponseError::InvalidRequest);
        }
        let tc = ctx.broker.txn_coordinator.clone();
        return match tc
            .init_producer_id(
                &ctx.broker,
                transactional_id,
                req.transaction_timeout_ms,
                expected,
            )
            .await
        {
            Ok((id, epoch)) => InitProducerIdResponse::default()
                .with_producer_id(ProducerId(id))
                .with_producer_epoch(epoch),
            // Kafka answers PRODUCER_FENCED as INVALID_PRODUCER_EPOCH to clients before v4.
            Err(ResponseError::ProducerFenced) if ctx.api_version < 4 => {
                failed(ResponseError::InvalidProducerEpoch)
            }
            Err(e) => failed(e),
        };
    }
    match ctx.broker.next_producer_id().await {
        // A new id always starts at epoch 0; a producer re-initialising gets a fresh id
        // (the non-transactional path of Kafka's ProducerIdManager).
        Ok(id) => InitProducerIdResponse::default()
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(0),
        Err(e) => failed(e.code),
    }
}
