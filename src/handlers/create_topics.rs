//! CreateTopics (key 19): validated and committed by the controller.

use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};

use super::{describe_configs, message, str_bytes, RequestContext};
use crate::controller::{NewTopic, RequestTimeout};
use crate::metadata::topic_config;

pub async fn handle(ctx: &RequestContext, req: CreateTopicsRequest) -> CreateTopicsResponse {
    if !ctx.broker.controller.is_active() && !ctx.is_from_broker() {
        return match ctx.broker.send_to_controller(&req, ctx.api_version).await {
            Ok(resp) => resp,
            Err(e) => CreateTopicsResponse::default().with_topics(
                req.topics
                    .iter()
                    .map(|t| {
                        CreatableTopicResult::default()
                            .with_name(t.name.clone())
                            .with_error_code(e.code())
                            .with_error_message(message(&e.message))
                            .with_num_partitions(-1)
                            .with_replication_factor(-1)
                    })
                    .collect(),
            ),
        };
    }
    let new_topics: Vec<NewTopic> = req
        .topics
        .iter()
        .map(|t| NewTopic {
            name: t.name.0.to_string(),
            num_partitions: t.num_partitions,
            replication_factor: t.replication_factor,
            assignments: t
                .assignments
                .iter()
                .map(|a| {
                    (
                        a.partition_index,
                        a.broker_ids.iter().map(|b| b.0).collect(),
                    )
                })
                .collect(),
            configs: t
                .configs
                .iter()
                .map(|c| (c.name.to_string(), c.value.as_ref().map(|v| v.to_string())))
                .collect(),
        })
        .collect();
    let results = ctx
        .broker
        .controller
        .create_topics(
            new_topics.clone(),
            req.validate_only,
            RequestTimeout::Client(req.timeout_ms),
        )
        .await;
    let topics = results
        .into_iter()
        .zip(new_topics)
        .map(|((name, result), requested)| {
            let r = CreatableTopicResult::default()
                .with_name(kafka_protocol::messages::TopicName(str_bytes(&name)));
            match result {
                Ok(created) => {
                    let mut r = r
                        .with_num_partitions(created.num_partitions)
                        .with_replication_factor(created.replication_factor);
                    if !req.validate_only {
                        r = r.with_topic_id(created.topic_id);
                    }
                    if ctx.api_version >= 5 {
                        // v5+: the topic's effective configs, as DescribeConfigs would show them.
                        let overrides = requested
                            .configs
                            .iter()
                            .filter_map(|(k, v)| Some((k.clone(), v.clone()?)))
                            .collect();
                        let configs =
                            topic_config::resolve_all(&ctx.broker.config, Some(&overrides))
                                .into_iter()
                                .map(|c| {
                                    CreatableTopicConfigs::default()
                                        .with_name(str_bytes(c.def.name))
                                        .with_value(Some(str_bytes(&c.value)))
                                        .with_config_source(c.source as i8)
                                        .with_read_only(describe_configs::READ_ONLY)
                                })
                                .collect();
                        r = r.with_configs(Some(configs));
                    }
                    r
                }
                Err(e) => r
                    .with_error_code(e.code())
                    .with_error_message(message(&e.message))
                    .with_num_partitions(-1)
                    .with_replication_factor(-1),
            }
        })
        .collect();
    CreateTopicsResponse::default().with_topics(topics)
}
