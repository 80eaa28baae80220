//! ApiVersions (key 18): the versions of every API this broker serves.

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse, ResponseKind};
use kafka_protocol::ResponseError;

use super::{ListenerKind, RequestContext, SUPPORTED_APIS};
use crate::net::connection::Reply;
use crate::net::frame::encode_response;

fn api_keys(listener: ListenerKind) -> Vec<ApiVersion> {
    SUPPORTED_APIS
        .iter()
        .filter(|a| a.served_on(listener))
        .map(|a| {
            ApiVersion::default()
                .with_api_key(a.key as i16)
                .with_min_version(a.min_advertised)
                .with_max_version(a.max)
        })
        .collect()
}

pub fn handle(ctx: &RequestContext, _req: ApiVersionsRequest) -> ApiVersionsResponse {
    ApiVersionsResponse::default().with_api_keys(api_keys(ctx.listener))
}

/// KIP-511: a client that asks with a version newer than ours gets UNSUPPORTED_VERSION, the
/// key list, as a v0 response with header v0, and retries with a version it finds there.
pub fn unsupported_version_reply(correlation_id: i32, listener: ListenerKind) -> Reply {
    let body = ApiVersionsResponse::default()
        .with_error_code(ResponseError::UnsupportedVersion.code())
        .with_api_keys(api_keys(listener));
    match encode_response(correlation_id, 0, 0, &ResponseKind::ApiVersions(body)) {
        Ok(frame) => Reply::Frame(frame),
        Err(_) => Reply::Close,
    }
}
