//! Topic-level configs: their names, broker synonyms, defaults, types and validation, and how
//! a topic's effective value is resolved (topic override, then broker property, then default),
//! which is what DescribeConfigs reports and what the partition logs run with.

use std::collections::BTreeMap;

use crate::config::BrokerConfig;

/// Kafka's `ConfigDef.Type` as DescribeConfigs v3+ reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigType {
    Boolean = 1,
    String = 2,
    Int = 3,
    Long = 5,
    Double = 6,
    List = 7,
}

/// Kafka's `DescribeConfigsResponse.ConfigSource`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigSource {
    DynamicTopic = 1,
    StaticBroker = 4,
    Default = 5,
}

pub struct TopicConfigDef {
    pub name: &'static str,
    /// Broker properties that set the default, most specific first, with the factor that
    /// turns their unit into the topic config's (`log.retention.hours` is hours, ...).
    pub synonyms: &'static [(&'static str, i64)],
    pub default: &'static str,
    pub kind: ConfigType,
    /// Smallest accepted value for numbers.
    pub min: Option<i64>,
    /// Accepted values for enumerations (each element for lists).
    pub one_of: &'static [&'static str],
    pub doc: &'static str,
}

const LONG_MAX: &str = "9223372036854775807";

/// The topic configs Gregor knows, as Apache Kafka 4.x names and defaults them.
pub const TOPIC_CONFIGS: &[TopicConfigDef] = &[
    TopicConfigDef {
        name: "cleanup.policy",
        synonyms: &[("log.cleanup.policy", 1)],
        default: "delete",
        kind: ConfigType::List,
        min: None,
        one_of: &["delete", "compact"],
        doc: "The retention policy for log segments.",
    },
    TopicConfigDef {
        name: "compression.type",
        synonyms: &[("compression.type", 1)],
        default: "producer",
        kind: ConfigType::String,
        min: None,
        one_of: &["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"],
        doc: "The final compression type for a topic; 'producer' keeps what the producer sent.",
    },
    TopicConfigDef {
        name: "delete.retention.ms",
        synonyms: &[("log.cleaner.delete.retention.ms", 1)],
        default: "86400000",
        kind: ConfigType::Long,
        min: Some(0),
        one_of: &[],
        doc: "How long delete tombstones are kept for compacted topics.",
    },
    TopicConfigDef {
        name: "file.delete.delay.ms",
        synonyms: &[("log.segment.delete.delay.ms", 1)],
        default: "60000",
        kind: ConfigType::Long,
        min: Some(0),
        one_of: &[],
        doc: "Time to wait before deleting a file from the filesystem.",
    },
    TopicConfigDef {
        name: "flush.messages",
        synonyms: &[("log.flush.interval.messages", 1)],
        default: LONG_MAX,
        kind: ConfigType::Long,
        min: Some(1),
        one_of: &[],
        doc: "Messages appended before the log is fsynced.",
    },
    TopicConfigDef {
        name: "flush.ms",
        synonyms: &[("log.flush.interval.ms", 1)],
        default: LONG_MAX,
        kind: ConfigType::Long,
        min: Some(0),
        one_of: &[],
        doc: "Time after which the log is fsynced.",
    },
    TopicConfigDef {
        name: "index.interval.bytes",
        synonyms: &[("log.index.interval.bytes", 1)],
        default: "4096",
        kind: ConfigType::Int,
        min: Some(0),
        one_of: &[],
        doc: "Bytes between offset index entries.",
    },
    TopicConfigDef {
        name: "max.compaction.lag.ms",
        synonyms: &[("log.cleaner.max.compaction.lag.ms", 1)],
        default: LONG_MAX,
        kind: ConfigType::Long,
        min: Some(1),
        one_of: &[],
        doc: "Longest time a record stays ineligible for compaction.",
    },
    TopicConfigDef {
        name: "max.message.bytes",
        synonyms: &[("message.max.bytes", 1)],
        default: "1048588",
        kind: ConfigType::Int,
        min: Some(0),
        one_of: &[],
        doc: "Largest record batch size allowed.",
    },
    TopicConfigDef {
        name: "message.timestamp.after.max.ms",
        synonyms: &[("log.message.timestamp.after.max.ms", 1)],
        default: "3600000",
        kind: ConfigType::Long,
        min: Some(0),
        one_of: &[],
        doc: "How far a CreateTime timestamp may be ahead of the broker's clock.",
    },
    TopicConfigDef {
        name: "message.timestamp.before.max.ms",
        synonyms: &[("log.message.timestamp.before.max.ms", 1)],
        default: LONG_MAX,
        kind: ConfigType::Long,
        min: Some(0),
        one_of: &[],
        doc: "How far a CreateTime timestamp may be behind the broker's clock.",
    },
    TopicConfigDef {
        name: "message.timestamp.type",
        synonyms: &[("log.message.timestamp.type", 1)],
        default: "CreateTime",
        kind: ConfigType::String,
        min: None,
        one_of: &["CreateTime", "LogAppendTime"],
        doc: "Whether record timestamps are the producer's or the broker's append time.",
    },
    TopicConfigDef {
        name: "min.cleanable.dirty.ratio",
        synonyms: &[("log.cleaner.min.cleanable.ratio", 1)],
        default: "0.5",
        kind: ConfigType::Double,
        min: None,
        one_of: &[],
        doc: "Dirty ratio at which the log cleaner compacts.",
    },
    TopicConfigDef {
        name: "min.compaction.lag.ms",
        synonyms: &[("log.cleaner.min.compaction.lag.ms", 1)],
        default: "0",
        kind: ConfigType::Long,
        min: Some(0),
        one_of: &[],
        doc: "Shortest time a record stays uncompacted.",
    },
    TopicConfigDef {
        name: "min.insync.replicas",
        synonyms: &[("min.insync.replicas", 1)],
        default: "1",
        kind: ConfigType::Int,
        min: Some(1),
        one_of: &[],
        doc: "Replicas that must acknowledge an acks=all write.",
    },
    TopicConfigDef {
        name: "preallocate",
        synonyms: &[("log.preallocate", 1)],
        default: "false",
        kind: ConfigType::Boolean,
        min: None,
        one_of: &[],
        doc: "Whether segment files are preallocated.",
    },
    TopicConfigDef {
        name: "retention.bytes",
        synonyms: &[("log.retention.bytes", 1)],
        default: "-1",
        kind: ConfigType::Long,
        min: None,
        one_of: &[],
        doc: "Largest size of the log before old segments are deleted; -1 for no limit.",
    },
    TopicConfigDef {
        name: "retention.ms",
        synonyms: &[
            ("log.retention.ms", 1),
            ("log.retention.minutes", 60_000),
            ("log.retention.hours", 3_600_000),
        ],
        default: "604800000",
        kind: ConfigType::Long,
        min: Some(-1),
        one_of: &[],
        doc: "How long a segment is kept before it is deleted; -1 for no limit.",
    },
    TopicConfigDef {
        name: "segment.bytes",
        synonyms: &[("log.segment.bytes", 1)],
        default: "1073741824",
        kind: ConfigType::Int,
        min: Some(1_048_576),
        one_of: &[],
        doc: "Segment file size.",
    },
    TopicConfigDef {
        name: "segment.index.bytes",
        synonyms: &[("log.index.size.max.bytes", 1)],
        default: "10485760",
        kind: ConfigType::Int,
        min: Some(4),
        one_of: &[],
        doc: "Size of the offset index of a segment.",
    },
    TopicConfigDef {
        name: "segment.jitter.ms",
        synonyms: &[
            ("log.roll.jitter.ms", 1),
            ("log.roll.jitter.hours", 3_600_000),
        ],
        default: "0",
        kind: ConfigType::Long,
        min: Some(0),
        one_of: &[],
        doc: "Random jitter subtracted from segment.ms.",
    },
    TopicConfigDef {
        name: "segment.ms",
        synonyms: &[("log.roll.ms", 1), ("log.roll.hours", 3_600_000)],
        default: "604800000",
        kind: ConfigType::Long,
        min: Some(1),
        one_of: &[],
        doc: "Time after which a segment is rolled.",
    },
    TopicConfigDef {
        name: "unclean.leader.election.enable",
        synonyms: &[("unclean.leader.election.enable", 1)],
        default: "false",
        kind: ConfigType::Boolean,
        min: None,
        one_of: &[],
        doc: "Whether a replica outside the ISR may become leader, at the risk of data loss.",
    },
];

pub fn find(name: &str) -> Option<&'static TopicConfigDef> {
    TOPIC_CONFIGS.iter().find(|d| d.name == name)
}

/// Why a topic config value was refused; maps to INVALID_CONFIG.
#[derive(Debug, thiserror::Error)]
pub enum InvalidConfig {
    #[error("Unknown topic config name: {0}")]
    Unknown(String),
    #[error("Invalid value {value} for configuration {name}: {reason}")]
    Value {
        name: String,
        value: String,
        reason: String,
    },
}

/// Longest topic config value accepted, in bytes. Every legal value of every definition
/// is far shorter; the bound keeps a padded one ("0000…1", "delete,delete,…") from growing
/// the image, which every node holds in memory, by a request's size.
pub const CONFIG_VALUE_BYTES_MAX: usize = 32 * 1024;

/// Longest name or value quoted back in an error message.
const QUOTED_BYTES_MAX: usize = 256;

/// At most [`QUOTED_BYTES_MAX`] bytes of `text`, cut at a character boundary.
pub fn quoted(text: &str) -> String {
    if text.len() <= QUOTED_BYTES_MAX {
        return text.to_string();
    }
    let mut end = QUOTED_BYTES_MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

/// Checks a topic config value against its definition.
pub fn validate(name: &str, value: &str) -> Result<(), InvalidConfig> {
    let def = find(name).ok_or_else(|| InvalidConfig::Unknown(quoted(name)))?;
    let bad = |reason: String| InvalidConfig::Value {
        name: name.into(),
        value: quoted(value),
        reason,
    };
    if value.len() > CONFIG_VALUE_BYTES_MAX {
        return Err(bad(format!(
            "Value is {} bytes long, more than {CONFIG_VALUE_BYTES_MAX}",
            value.len()
        )));
    }
    let v = value.trim();
    match def.kind {
        ConfigType::Int | ConfigType::Long => {
            let n: i64 = v.parse().map_err(|_| bad("Not a number".into()))?;
            if def.kind == ConfigType::Int && i32::try_from(n).is_err() {
                return Err(bad("Not an int".into()));
            }
            if let Some(min) = def.min {
                if n < min {
                    return Err(bad(format!("Value must be at least {min}")));
                }
            }
        }
        ConfigType::Double => {
            v.parse::<f64>().map_err(|_| bad("Not a number".into()))?;
        }
        ConfigType::Boolean => {
            if !v.eq_ignore_ascii_case("true") && !v.eq_ignore_ascii_case("false") {
                return Err(bad("Expected value to be either true or false".into()));
            }
        }
        ConfigType::String | ConfigType::List => {
            if !def.one_of.is_empty() {
                let items: Vec<&str> = if def.kind == ConfigType::List {
                    v.split(',').map(str::trim).collect()
                } else {
                    vec![v]
                };
                if let Some(item) = items.iter().find(|i| !def.one_of.contains(i)) {
                    return Err(bad(format!(
                        "String must be one of: {} (got {item})",
                        def.one_of.join(", ")
                    )));
                }
            }
        }
    }
    Ok(())
}

/// A topic config's effective value and where it came from.
pub struct ResolvedConfig {
    pub def: &'static TopicConfigDef,
    pub value: String,
    pub source: ConfigSource,
    /// Every level that sets it, most specific first: (name, value, source).
    pub synonyms: Vec<(String, String, ConfigSource)>,
}

/// Resolves every known topic config for a topic with the given overrides.
pub fn resolve_all(
    broker: &BrokerConfig,
    overrides: Option<&BTreeMap<String, String>>,
) -> Vec<ResolvedConfig> {
    TOPIC_CONFIGS
        .iter()
        .map(|def| resolve(def, broker, overrides))
        .collect()
}

pub fn resolve(
    def: &'static TopicConfigDef,
    broker: &BrokerConfig,
    overrides: Option<&BTreeMap<String, String>>,
) -> ResolvedConfig {
    let mut synonyms = Vec::new();
    if let Some(v) = overrides.and_then(|o| o.get(def.name)) {
        synonyms.push((def.name.to_string(), v.clone(), ConfigSource::DynamicTopic));
    }
    for (key, factor) in def.synonyms {
        if let Some(v) = broker.prop(key) {
            let value = if *factor == 1 {
                v.to_string()
            } else {
                v.trim()
                    .parse::<i64>()
                    .map(|n| (n.saturating_mul(*factor)).to_string())
                    .unwrap_or_else(|_| v.to_string())
            };
            synonyms.push(((*key).to_string(), value, ConfigSource::StaticBroker));
        }
    }
    synonyms.push((
        def.synonyms
            .first()
            .map(|s| s.0)
            .unwrap_or(def.name)
            .to_string(),
        def.default.to_string(),
        ConfigSource::Default,
    ));
    let (_, value, source) = synonyms[0].clone();
    ResolvedConfig {
        def,
        value,
        source,
        synonyms,
    }
}

/// The effective value of one topic config.
pub fn value_of(
    name: &str,
    broker: &BrokerConfig,
    overrides: Option<&BTreeMap<String, String>>,
) -> String {
    match find(name) {
        Some(def) => resolve(def, broker, overrides).value,
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn broker(props: &str) -> BrokerConfig {
        BrokerConfig::from_props(BrokerConfig::parse_properties(props).unwrap()).unwrap()
    }

    #[test]
    fn long_values_are_refused_and_quoted_short() {
        let padded = format!("{}1", "0".repeat(CONFIG_VALUE_BYTES_MAX));
        let e = validate("retention.ms", &padded).unwrap_err().to_string();
        assert!(e.len() < 1024, "{e}");
        assert!(validate("cleanup.policy", &"delete,".repeat(10_000)).is_err());
        assert!(validate("retention.ms", &"0".repeat(100)).is_ok());
        let e = validate(&"é".repeat(100_000), "1").unwrap_err().to_string();
        assert!(e.len() < 1024);
    }

    #[test]
    fn resolves_topic_then_broker_then_default() {
        let b = broker("log.retention.hours=1\n");
        assert_eq!(value_of("retention.ms", &b, None), "3600000");
        let mut o = BTreeMap::new();
        o.insert("retention.ms".to_string(), "5".to_string());
        let r = resolve(find("retention.ms").unwrap(), &b, Some(&o));
        assert_eq!(r.value, "5");
        assert_eq!(r.source, ConfigSource::DynamicTopic);
        assert_eq!(r.synonyms.len(), 3);
        assert_eq!(value_of("segment.bytes", &b, None), "1073741824");
    }

    #[test]
    fn validates_values() {
        assert!(validate("retention.ms", "-1").is_ok());
        assert!(validate("retention.ms", "abc").is_err());
        assert!(validate("segment.bytes", "100").is_err());
        assert!(validate("cleanup.policy", "compact,delete").is_ok());
        assert!(validate("cleanup.policy", "nope").is_err());
        assert!(validate("no.such.config", "1").is_err());
        assert!(validate("preallocate", "maybe").is_err());
    }
}
