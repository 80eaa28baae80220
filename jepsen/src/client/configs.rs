//! The metadata workload's client: topic configs set and described through the controller
//! listener, as Kafka's `--bootstrap-controller` admin tools do (librdkafka cannot bootstrap
//! from controllers, so these requests are built with the kafka-protocol crate). Each register
//! is the `retention.ms` of one topic.
//!
//! Classification: a write that may have reached the active controller and got no definite
//! answer is `info`; one refused by validation, before anything was proposed, is `fail`. A
//! read that errs is `fail` (a read changes nothing).

use std::time::Duration;

use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::{DescribeConfigsRequest, IncrementalAlterConfigsRequest};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::kafka::Outcome;
use crate::wire::{Connection, WireError};

/// The config each register lives in.
pub const REGISTER_CONFIG: &str = "retention.ms";
const TOPIC_RESOURCE: i8 = 2;
/// DescribeConfigs' source for a config set on the topic itself; any other source means the
/// register was never written.
const TOPIC_CONFIG_SOURCE: i8 = 1;
const SET: i8 = 0;

pub struct ConfigClient {
    timeout: Duration,
}

impl ConfigClient {
    pub fn new(timeout: Duration) -> ConfigClient {
        ConfigClient { timeout }
    }

    /// Sets the register (topic `topic`'s retention.ms) to `value`, through `controller`.
    pub fn write(&self, controller: &str, topic: &str, value: i64) -> Outcome<()> {
        let req = IncrementalAlterConfigsRequest::default().with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(TOPIC_RESOURCE)
                .with_resource_name(StrBytes::from_string(topic.into()))
                .with_configs(vec![AlterableConfig::default()
                    .with_name(StrBytes::from_static_str(REGISTER_CONFIG))
                    .with_config_operation(SET)
                    .with_value(Some(StrBytes::from_string(value.to_string())))]),
        ]);
        let resp = match Connection::connect(controller, self.timeout)
            .and_then(|mut c| c.request(&req, 1))
        {
            Ok(r) => r,
            Err(WireError::NotSent(e)) => return Outcome::Fail(e),
            Err(e @ WireError::NoAnswer(_)) => return Outcome::Info(e.to_string()),
        };
        let Some(r) = resp.responses.first() else {
            return Outcome::Info("empty response".into());
        };
        if r.error_code == 0 {
            return Outcome::Ok(());
        }
        let error = ResponseError::try_from_code(r.error_code);
        let text = format!(
            "{error:?}: {}",
            r.error_message.as_ref().map(|m| m.as_str()).unwrap_or("")
        );
        match error {
            // Validation errors come before the controller proposes anything.
            Some(ResponseError::InvalidConfig)
            | Some(ResponseError::InvalidRequest)
            | Some(ResponseError::PolicyViolation)
            | Some(ResponseError::UnknownTopicOrPartition) => Outcome::Fail(text),
            // NOT_CONTROLLER and timeouts may come after the proposal was made.
            _ => Outcome::Info(text),
        }
    }

    /// Reads the register: `None` while the config is at its default.
    pub fn read(&self, controller: &str, topic: &str) -> Outcome<Option<i64>> {
        let req = DescribeConfigsRequest::default().with_resources(vec![
            DescribeConfigsResource::default()
                .with_resource_type(TOPIC_RESOURCE)
                .with_resource_name(StrBytes::from_string(topic.into()))
                .with_configuration_keys(Some(vec![StrBytes::from_static_str(REGISTER_CONFIG)])),
        ]);
        let resp = match Connection::connect(controller, self.timeout)
            .and_then(|mut c| c.request(&req, 4))
        {
            Ok(r) => r,
            Err(e) => return Outcome::Fail(e.to_string()),
        };
        let Some(r) = resp.results.first() else {
            return Outcome::Fail("empty response".into());
        };
        if r.error_code != 0 {
            return Outcome::Fail(format!("{:?}", ResponseError::try_from_code(r.error_code)));
        }
        let Some(c) = r
            .configs
            .iter()
            .find(|c| c.name.as_str() == REGISTER_CONFIG)
        else {
            return Outcome::Fail(format!("{REGISTER_CONFIG} missing from the answer"));
        };
        if c.config_source != TOPIC_CONFIG_SOURCE {
            return Outcome::Ok(None);
        }
        match c.value.as_ref().map(|v| v.as_str().parse::<i64>()) {
            Some(Ok(v)) => Outcome::Ok(Some(v)),
            other => Outcome::Fail(format!("unreadable value {other:?}")),
        }
    }
}
