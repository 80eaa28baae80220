//! EndTxn (key 26): commit or abort. v5+ is TV2 (KIP-890): the epoch is bumped on every end
//! and the response carries the producer id and epoch to continue with.

use kafka_protocol::messages::{EndTxnRequest, EndTxnResponse, ProducerId};
use kafka_protocol::ResponseError;

use super::RequestContext;

pub async fn handle(ctx: &RequestContext, req: EndTxnRequest) -> EndTxnResponse {
    // Kafka's `TransactionVersion.transactionVersionForEndTxn`.
    let tv = if ctx.api_version > 4 { 2 } else { 1 };
    let tc = ctx.broker.txn_coordinator.clone();
    let r = tc
        .end_transaction(
            &ctx.broker,
            &req.transactional_id,
            req.producer_id.0,
            req.producer_epoch,
            req.committed,
            tv,
            true,
        )
        .await;
    match r {
        Ok((id, epoch)) => EndTxnResponse::default()
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(epoch),
        Err(e) => {
            let e = match e {
                ResponseError::ProducerFenced if ctx.api_version < 2 => {
                    ResponseError::InvalidProducerEpoch
                }
                e => e,
            };
            EndTxnResponse::default()
                .with_error_code(e.code())
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1)
        }
    }
}
