//! CreatePartitions (key 37): grow a topic's partition count.

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};

use super::{message, RequestContext};
use crate::controller::{NewPartitions, RequestTimeout};

pub async fn handle(
    ctx: &RequestContext,
    req: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    if !ctx.broker.controller.is_active() && !ctx.is_from_broker() {
        return match ctx.broker.send_to_controller(&req, ctx.api_version).await {
            Ok(resp) => resp,
            Err(e) => CreatePartitionsResponse::default().with_results(
                req.topics
                    .iter()
                    .map(|t| {
                        CreatePartitionsTopicResult::default()
                            .with_name(t.name.clone())
                            .with_error_code(e.code())
                            .with_error_message(message(&e.message))
                    })
                    .collect(),
            ),
        };
    }
    let requests = req
        .topics
        .iter()
        .map(|t| NewPartitions {
            topic: t.name.0.to_string(),
            count: t.count,
            assignments: t.assignments.as_ref().map(|a| {
                a.iter()
                    .map(|x| x.broker_ids.iter().map(|b| b.0).collect())
                    .collect()
            }),
        })
        .collect();
    let results = ctx
        .broker
        .controller
        .create_partitions(
            requests,
            req.validate_only,
            RequestTimeout::Client(req.timeout_ms),
        )
        .await;
    let results = results
        .into_iter()
        .zip(req.topics.iter())
        .map(|((_, result), t)| {
            let r = CreatePartitionsTopicResult::default().with_name(t.name.clone());
            match result {
                Ok(()) => r,
                Err(e) => r
                    .with_error_code(e.code())
                    .with_error_message(message(&e.message)),
            }
        })
        .collect();
    CreatePartitionsResponse::default().with_results(results)
}
