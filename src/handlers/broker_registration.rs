//! BrokerRegistration (key 62): a broker announces itself to the active controller.

use kafka_protocol::messages::{BrokerRegistrationRequest, BrokerRegistrationResponse};

use super::RequestContext;
use crate::controller::BrokerRegistrationInput;
use crate::metadata::BrokerEndpoint;

pub async fn handle(
    ctx: &RequestContext,
    req: BrokerRegistrationRequest,
) -> BrokerRegistrationResponse {
    let input = BrokerRegistrationInput {
        broker_id: req.broker_id.0,
        incarnation_id: req.incarnation_id,
        endpoints: req
            .listeners
            .iter()
            .map(|l| BrokerEndpoint {
                listener: l.name.to_string(),
                host: l.host.to_string(),
                port: l.port,
            })
            .collect(),
        rack: req.rack.as_ref().map(|r| r.to_string()),
    };
    match ctx.broker.controller.register_broker(input).await {
        Ok(epoch) => BrokerRegistrationResponse::default().with_broker_epoch(epoch),
        Err(e) => BrokerRegistrationResponse::default()
            .with_error_code(e.code())
            .with_broker_epoch(-1),
    }
}
