//! DeleteTopics (key 20): by name (v0-5) or by name or id (v6+).

use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, TopicName};
use kafka_protocol::ResponseError;
use uuid::Uuid;

use super::{message, str_bytes, RequestContext};
use crate::controller::RequestTimeout;

pub async fn handle(ctx: &RequestContext, req: DeleteTopicsRequest) -> DeleteTopicsResponse {
    if !ctx.broker.controller.is_active() && !ctx.is_from_broker() {
        return match ctx.broker.send_to_controller(&req, ctx.api_version).await {
            Ok(resp) => resp,
            Err(e) => {
                let results = if ctx.api_version >= 6 {
                    req.topics
                        .iter()
                        .map(|t| {
                            DeletableTopicResult::default()
                                .with_name(t.name.clone())
                                .with_topic_id(t.topic_id)
                                .with_error_code(e.code())
                        })
                        .collect()
                } else {
                    req.topic_names
                        .iter()
                        .map(|n| {
                            DeletableTopicResult::default()
                                .with_name(Some(n.clone()))
                                .with_error_code(e.code())
                        })
                        .collect()
                };
                DeleteTopicsResponse::default().with_responses(results)
            }
        };
    }
    let image = ctx.broker.image();
    // (name if resolvable, id as requested)
    let wanted: Vec<(Option<String>, Uuid)> = if ctx.api_version >= 6 {
        req.topics
            .iter()
            .map(|t| match &t.name {
                Some(n) => (Some(n.0.to_string()), Uuid::nil()),
                None => (
                    image.topic_by_id(&t.topic_id).map(|t| t.name.clone()),
                    t.topic_id,
                ),
            })
            .collect()
    } else {
        req.topic_names
            .iter()
            .map(|n| (Some(n.0.to_string()), Uuid::nil()))
            .collect()
    };
    let names: Vec<String> = wanted.iter().filter_map(|(n, _)| n.clone()).collect();
    let mut results = ctx
        .broker
        .controller
        .delete_topics(names, RequestTimeout::Client(req.timeout_ms))
        .await
        .into_iter();
    let responses = wanted
        .into_iter()
        .map(|(name, id)| match name {
            None => DeletableTopicResult::default()
                .with_topic_id(id)
                .with_error_code(ResponseError::UnknownTopicId.code()),
            Some(name) => {
                let (_, result) = results.next().expect("one result per name");
                let r =
                    DeletableTopicResult::default().with_name(Some(TopicName(str_bytes(&name))));
                match result {
                    Ok(topic_id) => r.with_topic_id(topic_id),
                    Err(e) => r
                        .with_topic_id(id)
                        .with_error_code(e.code())
                        .with_error_message(message(&e.message)),
                }
            }
        })
        .collect();
    DeleteTopicsResponse::default().with_responses(responses)
}
