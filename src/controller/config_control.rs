//! IncrementalAlterConfigs for topics (Kafka's `ConfigurationControlManager`).

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use kafka_protocol::ResponseError;

use super::limits::{self, BoundedRecords};
use super::replication_control::{partition_change, unclean_allowed};
use super::{election, ControllerResult};
use crate::config::BrokerConfig;
use crate::error::ApiError;
use crate::metadata::records::ConfigResource;
use crate::metadata::{topic_config, MetadataImage, MetadataRecord};

/// One config change of IncrementalAlterConfigs (Kafka's `AlterConfigOp.OpType` codes).
#[derive(Clone, Debug)]
pub struct AlterConfigOp {
    pub name: String,
    /// 0 set, 1 delete, 2 append, 3 subtract.
    pub op: i8,
    pub value: Option<String>,
}

pub struct ConfigurationControlManager {
    config: Arc<BrokerConfig>,
}

impl ConfigurationControlManager {
    pub fn new(config: Arc<BrokerConfig>) -> Self {
        ConfigurationControlManager { config }
    }

    /// IncrementalAlterConfigs for one topic: the config records as one entry, then the
    /// elections that turning `unclean.leader.election.enable` on makes possible (each
    /// stands alone; the liveness sweep finishes them after a failover).
    pub fn alter_topic_configs(
        &self,
        image: &MetadataImage,
        topic: &str,
        ops: Vec<AlterConfigOp>,
        validate_only: bool,
    ) -> Result<ControllerResult<()>, ApiError> {
        // Every op is at most one record: more than an operation may write is refused
        // before any of them is looked at.
        if ops.len() > limits::MAX_RECORDS_PER_USER_OP {
            return Err(limits::excessive_batch());
        }
        let Some(t) = image.topic(topic) else {
            return Err(ApiError::with_message(
                ResponseError::UnknownTopicOrPartition,
                format!(
                    "The topic '{}' does not exist.",
                    topic_config::quoted(topic)
                ),
            ));
        };
        let mut current = image.topic_configs(topic).cloned().unwrap_or_default();
        let mut seen = HashSet::with_capacity(ops.len());
        for op in &ops {
            if !seen.insert(op.name.as_str()) {
                return Err(ApiError::with_message(
                    ResponseError::InvalidRequest,
                    format!(
                        "Error due to duplicate config keys: {}",
                        topic_config::quoted(&op.name)
                    ),
                ));
            }
            let def = topic_config::find(&op.name).ok_or_else(|| {
                ApiError::with_message(
                    ResponseError::InvalidConfig,
                    format!(
                        "Unknown topic config name: {}",
                        topic_config::quoted(&op.name)
                    ),
                )
            })?;
            if op
                .value
                .as_ref()
                .is_some_and(|v| v.len() > topic_config::CONFIG_VALUE_BYTES_MAX)
            {
                return Err(ApiError::with_message(
                    ResponseError::InvalidConfig,
                    format!(
                        "Invalid value for configuration {}: longer than {} bytes",
                        op.name,
                        topic_config::CONFIG_VALUE_BYTES_MAX
                    ),
                ));
            }
            let new_value = match op.op {
                0 => op.value.clone(),
                1 => None,
                2 | 3 => {
                    if def.kind != topic_config::ConfigType::List {
                        return Err(ApiError::with_message(
                            ResponseError::InvalidConfig,
                            format!(
                                "Config {} is not a list; APPEND/SUBTRACT are not allowed",
                                op.name
                            ),
                        ));
                    }
                    let effective = topic_config::value_of(&op.name, &self.config, Some(&current));
                    let mut items: Vec<String> = list_items(&effective);
                    let args = list_items(op.value.as_deref().unwrap_or(""));
                    if op.op == 2 {
                        let mut present: HashSet<String> = items.iter().cloned().collect();
                        for a in args {
                            if present.insert(a.clone()) {
                                items.push(a);
                            }
                        }
                    } else {
                        let removed: HashSet<String> = args.into_iter().collect();
                        items.retain(|i| !removed.contains(i));
                    }
                    Some(items.join(","))
                }
                other => {
                    return Err(ApiError::with_message(
                        ResponseError::InvalidRequest,
                        format!("Unknown config operation {other}"),
                    ))
                }
            };
            match new_value {
                Some(v) => {
                    topic_config::validate(&op.name, &v).map_err(|e| {
                        ApiError::with_message(ResponseError::InvalidConfig, e.to_string())
                    })?;
                    current.insert(op.name.clone(), v);
                }
                None => {
                    current.remove(&op.name);
                }
            }
        }
        if validate_only {
            return Ok(ControllerResult::of(()));
        }
        let before = image.topic_configs(topic).cloned().unwrap_or_default();
        let mut records = BoundedRecords::new();
        for (k, v) in &current {
            if before.get(k) != Some(v) {
                records.push(MetadataRecord::Config {
                    resource: ConfigResource::topic(topic),
                    name: k.clone(),
                    value: Some(v.clone()),
                })?;
            }
        }
        for k in before.keys() {
            if !current.contains_key(k) {
                records.push(MetadataRecord::Config {
                    resource: ConfigResource::topic(topic),
                    name: k.clone(),
                    value: None,
                })?;
            }
        }
        // Turning unclean.leader.election.enable on elects a leader for the topic's leaderless
        // partitions at once (Kafka's controller does it on its next unclean-election pass).
        let unclean_now = topic_config::value_of(
            "unclean.leader.election.enable",
            &self.config,
            Some(&current),
        )
        .eq_ignore_ascii_case("true");
        let mut elections = Vec::new();
        if unclean_now && !unclean_allowed(&self.config, image, topic) {
            let live: BTreeSet<i32> = image.live_brokers().map(|b| b.broker_id).collect();
            for (p, reg) in &t.partitions {
                if let Some(next) = election::after_broker_unfenced(reg, &live, true) {
                    tracing::warn!(
                        topic,
                        partition = *p,
                        leader = next.leader,
                        "unclean leader election: records the new leader lacks are lost"
                    );
                    elections.push(partition_change(t.topic_id, *p, next));
                }
            }
        }
        Ok(ControllerResult::atomic(records.into_vec(), ()).then_divisible(elections))
    }
}

/// A list config's items: comma-separated, trimmed, empty ones dropped.
fn list_items(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn image() -> MetadataImage {
        let mut image = MetadataImage::default();
        image.apply(
            1,
            &MetadataRecord::Topic {
                name: "t".into(),
                topic_id: Uuid::new_v4(),
            },
        );
        image
    }

    fn set(name: &str, value: &str) -> AlterConfigOp {
        AlterConfigOp {
            name: name.into(),
            op: 0,
            value: Some(value.into()),
        }
    }

    #[test]
    fn too_many_duplicate_unknown_and_too_long_entries_are_refused() {
        let m = ConfigurationControlManager::new(Arc::new(
            BrokerConfig::from_props(BrokerConfig::parse_properties("node.id=1\n").unwrap())
                .unwrap(),
        ));
        let image = image();
        let code = |ops: Vec<AlterConfigOp>| {
            m.alter_topic_configs(&image, "t", ops, false)
                .map(|_| 0)
                .unwrap_or_else(|e| e.code())
        };
        assert_eq!(
            code(vec![
                set("retention.ms", "1");
                limits::MAX_RECORDS_PER_USER_OP + 1
            ]),
            ResponseError::PolicyViolation.code()
        );
        assert_eq!(
            code(vec![set("retention.ms", "1"), set("retention.ms", "2")]),
            ResponseError::InvalidRequest.code()
        );
        assert_eq!(
            code(vec![set(&"x".repeat(100_000), "1")]),
            ResponseError::InvalidConfig.code()
        );
        assert_eq!(
            code(vec![set("retention.ms", &"0".repeat(1 << 20))]),
            ResponseError::InvalidConfig.code()
        );
        let append = AlterConfigOp {
            name: "cleanup.policy".into(),
            op: 2,
            value: Some("compact,".repeat(4_000)),
        };
        assert_eq!(code(vec![append]), 0, "appending duplicates collapses them");
        assert_eq!(code(vec![set("retention.ms", "5")]), 0);
    }
}
