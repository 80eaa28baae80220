//! DescribeConfigs (key 32): topic configs with their sources and synonyms, as Kafka reports
//! them, and this broker's own static configs.

use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use kafka_protocol::ResponseError;

use super::{message, str_bytes, ListenerKind, RequestContext};
use crate::error::ApiError;
use crate::metadata::topic_config::{self, ConfigSource, ConfigType};
use crate::metadata::ConfigResource;

/// Topic configs can be changed (IncrementalAlterConfigs); none is read-only.
pub const READ_ONLY: bool = false;

pub async fn handle(ctx: &RequestContext, req: DescribeConfigsRequest) -> DescribeConfigsResponse {
    // A broker answers from its own copy of the metadata, which may lag. On the controller
    // listener the active controller answers after a Raft read barrier, so such reads are
    // linearizable; the other controllers forward to it.
    // (A broker's own static configs are its own to answer.)
    let topic_read = req
        .resources
        .iter()
        .any(|r| r.resource_type == ConfigResource::TOPIC);
    let image = if ctx.listener == ListenerKind::Controller && topic_read {
        let read = if ctx.broker.controller.is_active() || ctx.is_from_broker() {
            ctx.broker.controller.read_image().await
        } else {
            match ctx.broker.send_to_controller(&req, ctx.api_version).await {
                Ok(resp) => return resp,
                Err(e) => Err(e),
            }
        };
        match read {
            Ok(image) => image,
            Err(e) => return failed(&req, &e),
        }
    } else {
        ctx.broker.image()
    };
    let results = req
        .resources
        .iter()
        .map(|res| {
            let name = res.resource_name.to_string();
            let base = DescribeConfigsResult::default()
                .with_resource_type(res.resource_type)
                .with_resource_name(res.resource_name.clone());
            let keys: Option<Vec<String>> = res
                .configuration_keys
                .as_ref()
                .map(|k| k.iter().map(|s| s.to_string()).collect());
            let wanted = |k: &str| {
                keys.as_ref()
                    .map(|ks| ks.iter().any(|x| x == k))
                    .unwrap_or(true)
            };
            match res.resource_type {
                ConfigResource::TOPIC => {
                    if image.topic(&name).is_none() {
                        return base
                            .with_error_code(ResponseError::UnknownTopicOrPartition.code())
                            .with_error_message(Some(str_bytes(&format!(
                                "Topic {name} does not exist."
                            ))));
                    }
                    let configs =
                        topic_config::resolve_all(&ctx.broker.config, image.topic_configs(&name))
                            .into_iter()
                            .filter(|c| wanted(c.def.name))
                            .map(|c| {
                                let mut entry = DescribeConfigsResourceResult::default()
                                    .with_name(str_bytes(c.def.name))
                                    .with_value(Some(str_bytes(&c.value)))
                                    .with_read_only(READ_ONLY)
                                    .with_config_source(c.source as i8)
                                    .with_is_sensitive(false);
                                if req.include_synonyms {
                                    entry = entry.with_synonyms(
                                        c.synonyms
                                            .iter()
                                            .map(|(n, v, s)| {
                                                DescribeConfigsSynonym::default()
                                                    .with_name(str_bytes(n))
                                                    .with_value(Some(str_bytes(v)))
                                                    .with_source(*s as i8)
                                            })
                                            .collect(),
                                    );
                                }
                                if ctx.api_version >= 3 {
                                    entry = entry.with_config_type(c.def.kind as i8);
                                    if req.include_documentation {
                                        entry =
                                            entry.with_documentation(Some(str_bytes(c.def.doc)));
                                    }
                                }
                                entry
                            })
                            .collect();
                    base.with_configs(configs)
                }
                ConfigResource::BROKER => {
                    let is_self = name.is_empty()
                        || name.parse::<i32>().ok() == Some(ctx.broker.config.node_id);
                    if !is_self {
                        return base
                            .with_error_code(ResponseError::InvalidRequest.code())
                            .with_error_message(Some(str_bytes(
                                "Unexpected broker id, expected this broker's id or empty",
                            )));
                    }
                    // The broker's static configuration, as given at start-up.
                    let configs = ctx
                        .broker
                        .config
                        .props
                        .iter()
                        .filter(|(k, _)| wanted(k))
                        .map(|(k, v)| {
                            let mut e = DescribeConfigsResourceResult::default()
                                .with_name(str_bytes(k))
                                .with_value(Some(str_bytes(v)))
                                .with_read_only(true)
                                .with_config_source(ConfigSource::StaticBroker as i8);
                            if ctx.api_version >= 3 {
                                e = e.with_config_type(ConfigType::String as i8);
                            }
                            e
                        })
                        .collect();
                    base.with_configs(configs)
                }
                other => base
                    .with_error_code(ResponseError::InvalidRequest.code())
                    .with_error_message(Some(str_bytes(&format!(
                        "Unsupported resource type {other}"
                    )))),
            }
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

/// The same error for every resource of the request.
fn failed(req: &DescribeConfigsRequest, e: &ApiError) -> DescribeConfigsResponse {
    DescribeConfigsResponse::default().with_results(
        req.resources
            .iter()
            .map(|r| {
                DescribeConfigsResult::default()
                    .with_resource_type(r.resource_type)
                    .with_resource_name(r.resource_name.clone())
                    .with_error_code(e.code())
                    .with_error_message(message(&e.message))
            })
            .collect(),
    )
}
