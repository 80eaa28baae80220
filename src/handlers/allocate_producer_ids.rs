//! AllocateProducerIds (key 67): a broker's next block of producer ids, from the controller.

use kafka_protocol::messages::{
    AllocateProducerIdsRequest, AllocateProducerIdsResponse, ProducerId,
};

use super::RequestContext;

pub async fn handle(
    ctx: &RequestContext,
    req: AllocateProducerIdsRequest,
) -> AllocateProducerIdsResponse {
    match ctx
        .broker
        .controller
        .allocate_producer_ids(req.broker_id.0, req.broker_epoch)
        .await
    {
        Ok((first, size)) => AllocateProducerIdsResponse::default()
            .with_producer_id_start(ProducerId(first))
            .with_producer_id_len(size),
        Err(e) => AllocateProducerIdsResponse::default()
            .with_error_code(e.code())
            .with_producer_id_start(ProducerId(-1)),
    }
}
