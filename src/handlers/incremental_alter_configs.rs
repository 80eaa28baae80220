//! IncrementalAlterConfigs (key 44): set / delete / append / subtract topic configs through
//! the controller.

use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse};
use kafka_protocol::ResponseError;

use super::{message, str_bytes, RequestContext};
use crate::controller::AlterConfigOp;
use crate::metadata::ConfigResource;

pub async fn handle(
    ctx: &RequestContext,
    req: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    if !ctx.broker.controller.is_active() && !ctx.is_from_broker() {
        return match ctx.broker.send_to_controller(&req, ctx.api_version).await {
            Ok(resp) => resp,
            Err(e) => IncrementalAlterConfigsResponse::default().with_responses(
                req.resources
                    .iter()
                    .map(|r| {
                        AlterConfigsResourceResponse::default()
                            .with_resource_type(r.resource_type)
                            .with_resource_name(r.resource_name.clone())
                            .with_error_code(e.code())
                            .with_error_message(message(&e.message))
                    })
                    .collect(),
            ),
        };
    }
    let mut responses = Vec::with_capacity(req.resources.len());
    for res in &req.resources {
        let base = AlterConfigsResourceResponse::default()
            .with_resource_type(res.resource_type)
            .with_resource_name(res.resource_name.clone());
        let result = match res.resource_type {
            ConfigResource::TOPIC => {
                let ops = res
                    .configs
                    .iter()
                    .map(|c| AlterConfigOp {
                        name: c.name.to_string(),
                        op: c.config_operation,
                        value: c.value.as_ref().map(|v| v.to_string()),
                    })
                    .collect();
                ctx.broker
                    .controller
                    .alter_topic_configs(res.resource_name.as_str(), ops, req.validate_only)
                    .await
            }
            ConfigResource::BROKER => Err(crate::error::ApiError::with_message(
                ResponseError::InvalidRequest,
                "Broker configs are static in this broker: set them in its properties file",
            )),
            other => Err(crate::error::ApiError::with_message(
                ResponseError::InvalidRequest,
                format!("Unsupported resource type {other}"),
            )),
        };
        responses.push(match result {
            Ok(()) => base,
            Err(e) => base.with_error_code(e.code()).with_error_message(
                message(&e.message).or_else(|| Some(str_bytes(&e.to_string()))),
            ),
        });
    }
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}
