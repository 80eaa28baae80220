//! Broker configuration: a Kafka-style properties file plus `--override key=value` flags.
//!
//! Keys use Apache Kafka's names. Unknown keys are kept (so topic-config defaults can be
//! looked up by their broker synonym) but only the ones below change behaviour.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use gregor_storage::{LogConfig, TimestampType};

/// A listener such as `PLAINTEXT://127.0.0.1:9092`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listener {
    /// The listener name (`PLAINTEXT`, `CONTROLLER`, ...).
    pub name: String,
    pub host: String,
    pub port: u16,
}

impl Listener {
    fn parse(spec: &str) -> Result<Listener, ConfigError> {
        let (name, rest) = spec.split_once("://").ok_or_else(|| {
            ConfigError::Invalid(format!("listener '{spec}' is not NAME://HOST:PORT"))
        })?;
        let (host, port) = rest
            .rsplit_once(':')
            .ok_or_else(|| ConfigError::Invalid(format!("listener '{spec}' has no port")))?;
        let port = port
            .parse()
            .map_err(|_| ConfigError::Invalid(format!("listener '{spec}' has a bad port")))?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        Ok(Listener {
            name: name.trim().to_string(),
            host,
            port,
        })
    }

    /// The address to bind; an empty host means every interface.
    pub fn bind_addr(&self) -> Result<SocketAddr, ConfigError> {
        let host = if self.host.is_empty() {
            "0.0.0.0"
        } else {
            &self.host
        };
        let host = if host == "localhost" {
            "127.0.0.1"
        } else {
            host
        };
        format!("{host}:{}", self.port)
            .parse()
            .or_else(|_| format!("[{host}]:{}", self.port).parse())
            .map_err(|_| ConfigError::Invalid(format!("cannot bind listener host '{}'", self.host)))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config: {0}")]
    Invalid(String),
}

/// Everything the node reads from its configuration.
#[derive(Clone, Debug)]
pub struct BrokerConfig {
    /// `node.id`: this node's broker id.
    pub node_id: i32,
    /// `listeners`: where the node accepts Kafka clients.
    pub listeners: Vec<Listener>,
    /// `advertised.listeners`: what Metadata tells clients (defaults to `listeners`).
    pub advertised_listeners: Vec<Listener>,
    /// `log.dirs` (or `log.dir`): the one directory that holds partition logs and node
    /// metadata (several are refused at start).
    pub log_dir: PathBuf,
    /// `num.partitions`: partitions of an auto-created topic or CreateTopics with -1.
    pub num_partitions: i32,
    /// `default.replication.factor`.
    pub default_replication_factor: i16,
    /// `auto.create.topics.enable`.
    pub auto_create_topics_enable: bool,
    /// `delete.topic.enable`.
    pub delete_topic_enable: bool,
    /// `socket.request.max.bytes`: larger frames close the connection.
    pub socket_request_max_bytes: usize,
    /// `max.connections`: accepted connections beyond this wait.
    pub max_connections: usize,
    /// `queued.max.requests`: in-flight requests per connection before reading pauses.
    pub queued_max_requests: usize,
    /// `queued.max.request.bytes`: bytes of requests being read or served at once, per
    /// listener, across its connections; reading pauses while they are spent. Kafka's
    /// default (-1) leaves it unbounded; here it must be at least `socket.request.max.bytes`.
    pub queued_max_request_bytes: usize,
    /// `connections.max.idle.ms`: a connection that stops sending in the middle of a
    /// request frame is closed after this long, giving back the frame's budget share.
    pub connections_max_idle_ms: u64,
    /// `log.retention.check.interval.ms`.
    pub log_retention_check_interval_ms: u64,
    /// `min.insync.replicas` (broker default for topics).
    pub min_insync_replicas: i32,
    /// `cluster.id`: fixed cluster id; otherwise one is generated on first start and kept.
    pub cluster_id: Option<String>,
    /// `rack` / `broker.rack`.
    pub rack: Option<String>,
    /// `controller.quorum.voters` (`id@host:port,...`): the metadata quorum's voters and
    /// their controller listeners. Unset: this node alone.
    pub quorum_voters: BTreeMap<i32, (String, u16)>,
    /// `controller.listener.names`: listeners that serve the controller (Raft RPCs,
    /// DescribeQuorum, broker registration and heartbeats, forwarded requests).
    pub controller_listener_names: Vec<String>,
    /// `broker.heartbeat.interval.ms`: how often a broker heartbeats the active controller.
    pub broker_heartbeat_interval_ms: u64,
    /// `broker.session.timeout.ms`: a broker silent this long is fenced.
    pub broker_session_timeout_ms: u64,
    /// `auto.leader.rebalance.enable`: the controller moves leadership back to preferred
    /// replicas.
    pub auto_leader_rebalance_enable: bool,
    /// `leader.imbalance.check.interval.seconds`, in ms.
    pub leader_imbalance_check_interval_ms: i64,
    /// `replica.lag.time.max.ms`: a follower not caught up for this long leaves the ISR.
    pub replica_lag_time_max_ms: i64,
    /// `fetch.max.bytes`: the most record bytes one consumer Fetch response carries, whatever
    /// the request asks (responses are built in memory, so this bounds a fetch's memory).
    pub fetch_max_bytes: usize,
    /// `replica.fetch.max.bytes`: the record bytes a follower asks for per partition.
    pub replica_fetch_max_bytes: i32,
    /// `replica.fetch.response.max.bytes`: the record bytes a follower asks for per fetch.
    pub replica_fetch_response_max_bytes: i32,
    /// `controller.quorum.election.timeout.ms`: Raft election timeout (randomised up to 2x).
    pub quorum_election_timeout_ms: u64,
    /// The group coordinator's settings (`group.*` and `offsets.*`).
    pub group: GroupCoordinatorConfig,
    /// Idempotent-producer state of every partition: `producer.id.expiration.ms`,
    /// `producer.id.expiration.check.interval.ms`, `producer.state.max.producers.per.partition`.
    pub producer_state: crate::replica::producer_state::ProducerStateConfig,
    /// All properties as given, for topic-config defaults through their broker synonyms.
    pub props: BTreeMap<String, String>,
}

/// Settings of the group coordinator and its `__consumer_offsets` topic (Kafka's names).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupCoordinatorConfig {
    /// `group.initial.rebalance.delay.ms`: a new group waits this long for more members.
    pub initial_rebalance_delay_ms: i64,
    /// `group.min.session.timeout.ms` and `group.max.session.timeout.ms`: a JoinGroup
    /// outside this range gets INVALID_SESSION_TIMEOUT (so no member is kept for ever).
    pub min_session_timeout_ms: i32,
    pub max_session_timeout_ms: i32,
    /// `offsets.topic.num.partitions`: partitions of `__consumer_offsets` when it is created.
    pub offsets_topic_num_partitions: i32,
    /// `offsets.topic.replication.factor`: its replication factor. The topic is created at
    /// exactly this factor, so not before that many brokers are alive (Kafka's rule).
    pub offsets_topic_replication_factor: i16,
    /// `offsets.topic.segment.bytes`: its segment size.
    pub offsets_topic_segment_bytes: i64,
    /// `offsets.retention.minutes`, in ms: offsets of an empty group older than this expire.
    pub offsets_retention_ms: i64,
    /// `offsets.retention.check.interval.ms`: how often expiry (and the size bound) run.
    pub offsets_retention_check_interval_ms: u64,
    /// `offsets.commit.timeout.ms`: how long an offset commit waits for the ISR.
    pub offsets_commit_timeout_ms: u64,
    /// `offsets.checkpoint.min.records` (Gregor's own): a `__consumer_offsets` partition is
    /// rewritten (see docs/consumer-groups.md) only once its log holds at least this many
    /// offsets and more than twice its live offsets.
    pub offsets_checkpoint_min_records: i64,
}

impl BrokerConfig {
    /// Parses a Java-properties text as `java.util.Properties.load` does (see
    /// `crate::properties`).
    pub fn parse_properties(text: &str) -> Result<BTreeMap<String, String>, ConfigError> {
        crate::properties::parse_properties(text).map_err(|e| ConfigError::Invalid(e.to_string()))
    }

    pub fn load(
        file: Option<&std::path::Path>,
        overrides: &[(String, String)],
    ) -> Result<Self, ConfigError> {
        let mut props = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                })?;
                crate::properties::parse_properties(&text)
                    .map_err(|e| ConfigError::Invalid(format!("{}: {e}", path.display())))?
            }
            None => BTreeMap::new(),
        };
        for (k, v) in overrides {
            props.insert(k.clone(), v.clone());
        }
        Self::from_props(props)
    }

    pub fn from_props(props: BTreeMap<String, String>) -> Result<Self, ConfigError> {
        let p = Props(&props);
        let listeners: Vec<Listener> = p
            .str("listeners")
            .unwrap_or("PLAINTEXT://127.0.0.1:9092")
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(|s| Listener::parse(s.trim()))
            .collect::<Result<_, _>>()?;
        if listeners.is_empty() {
            return Err(ConfigError::Invalid("listeners is empty".into()));
        }
        let controller_listener_names: Vec<String> = p
            .str("controller.listener.names")
            .unwrap_or("CONTROLLER")
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        let advertised_listeners = match p.str("advertised.listeners") {
            Some(s) => s
                .split(',')
                .filter(|s| !s.trim().is_empty())
                .map(|s| Listener::parse(s.trim()))
                .collect::<Result<_, _>>()?,
            None => listeners.clone(),
        };
        let protocols = security_protocol_map(&p, &listeners, &controller_listener_names)?;
        for (key, list) in [
            ("listeners", &listeners),
            ("advertised.listeners", &advertised_listeners),
        ] {
            for l in list.iter() {
                check_plaintext(key, l, &protocols)?;
            }
        }
        let log_dir = single_log_dir(&p)?;
        let config = BrokerConfig {
            node_id: p.int("node.id", 1)?,
            listeners,
            advertised_listeners,
            log_dir,
            num_partitions: p.int("num.partitions", 1)?,
            default_replication_factor: p.int("default.replication.factor", 1)?,
            auto_create_topics_enable: p.bool("auto.create.topics.enable", true)?,
            delete_topic_enable: p.bool("delete.topic.enable", true)?,
            socket_request_max_bytes: p.int("socket.request.max.bytes", 104_857_600)?,
            max_connections: p.int("max.connections", 10_000)?,
            queued_max_requests: p.int("queued.max.requests", 500)?,
            queued_max_request_bytes: p.int("queued.max.request.bytes", 268_435_456)?,
            connections_max_idle_ms: p.int("connections.max.idle.ms", 600_000)?,
            log_retention_check_interval_ms: p.int("log.retention.check.interval.ms", 300_000)?,
            min_insync_replicas: p.int("min.insync.replicas", 1)?,
            cluster_id: p.str("cluster.id").map(str::to_string),
            rack: p.str("broker.rack").or(p.str("rack")).map(str::to_string),
            quorum_voters: parse_voters(p.str("controller.quorum.voters").unwrap_or(""))?,
            controller_listener_names,
            broker_heartbeat_interval_ms: p.int("broker.heartbeat.interval.ms", 2_000)?,
            broker_session_timeout_ms: p.int("broker.session.timeout.ms", 9_000)?,
            quorum_election_timeout_ms: p.int("controller.quorum.election.timeout.ms", 1_000)?,
            replica_lag_time_max_ms: p.int("replica.lag.time.max.ms", 30_000)?,
            fetch_max_bytes: p.int("fetch.max.bytes", 4 << 20)?,
            replica_fetch_max_bytes: p.int("replica.fetch.max.bytes", 1 << 20)?,
            replica_fetch_response_max_bytes: p.int("replica.fetch.response.max.bytes", 4 << 20)?,
            auto_leader_rebalance_enable: p.bool("auto.leader.rebalance.enable", true)?,
            leader_imbalance_check_interval_ms: p
                .int::<i64>("leader.imbalance.check.interval.seconds", 300)?
                .saturating_mul(1000),
            group: GroupCoordinatorConfig {
                initial_rebalance_delay_ms: p.int("group.initial.rebalance.delay.ms", 3_000)?,
                min_session_timeout_ms: p.int("group.min.session.timeout.ms", 6_000)?,
                max_session_timeout_ms: p.int("group.max.session.timeout.ms", 1_800_000)?,
                offsets_topic_num_partitions: p.int("offsets.topic.num.partitions", 50)?,
                offsets_topic_replication_factor: p.int("offsets.topic.replication.factor", 3)?,
                offsets_topic_segment_bytes: p.int("offsets.topic.segment.bytes", 104_857_600)?,
                offsets_retention_ms: p
                    .int::<i64>("offsets.retention.minutes", 10_080)?
                    .saturating_mul(60_000),
                offsets_retention_check_interval_ms: p
                    .int("offsets.retention.check.interval.ms", 600_000)?,
                offsets_commit_timeout_ms: p.int("offsets.commit.timeout.ms", 5_000)?,
                offsets_checkpoint_min_records: p.int("offsets.checkpoint.min.records", 10_000)?,
            },
            producer_state: crate::replica::producer_state::ProducerStateConfig {
                expiration_ms: p.int("producer.id.expiration.ms", 86_400_000)?,
                expiration_check_interval_ms: p
                    .int("producer.id.expiration.check.interval.ms", 600_000)?,
                max_producers: p.int("producer.state.max.producers.per.partition", 10_000)?,
            },
            props: props.clone(),
        };
        if config.client_listener().is_none() {
            return Err(ConfigError::Invalid(
                "listeners has no listener for clients (only controller listeners)".into(),
            ));
        }
        if config.quorum_voters.len() > 1 {
            if !config.quorum_voters.contains_key(&config.node_id) {
                return Err(ConfigError::Invalid(format!(
                    "node.id {} is not among controller.quorum.voters",
                    config.node_id
                )));
            }
            if config.controller_listener().is_none() {
                return Err(ConfigError::Invalid(
                    "a voter of a multi-node quorum needs a controller listener (controller.listener.names)".into(),
                ));
            }
        }
        if config.num_partitions < 1 {
            return Err(ConfigError::Invalid(
                "num.partitions must be at least 1".into(),
            ));
        }
        if config.group.offsets_topic_num_partitions < 1 {
            return Err(ConfigError::Invalid(
                "offsets.topic.num.partitions must be at least 1".into(),
            ));
        }
        if config.group.offsets_topic_replication_factor < 1 {
            return Err(ConfigError::Invalid(
                "offsets.topic.replication.factor must be at least 1".into(),
            ));
        }
        if config.group.offsets_retention_ms < 1 {
            return Err(ConfigError::Invalid(
                "offsets.retention.minutes must be at least 1".into(),
            ));
        }
        // Kafka's bounds for the first two (atLeast(1)); a partition keeps at least one.
        if config.producer_state.expiration_ms < 1
            || config.producer_state.expiration_check_interval_ms < 1
            || config.producer_state.max_producers < 1
        {
            return Err(ConfigError::Invalid(
                "producer.id.expiration.ms, producer.id.expiration.check.interval.ms and producer.state.max.producers.per.partition must be at least 1".into(),
            ));
        }
        if config.fetch_max_bytes < 1024 {
            return Err(ConfigError::Invalid(
                "fetch.max.bytes must be at least 1024".into(),
            ));
        }
        if config.replica_fetch_max_bytes < 0 || config.replica_fetch_response_max_bytes < 0 {
            return Err(ConfigError::Invalid(
                "replica.fetch.max.bytes and replica.fetch.response.max.bytes must not be negative"
                    .into(),
            ));
        }
        if config.socket_request_max_bytes < 1024 {
            return Err(ConfigError::Invalid(
                "socket.request.max.bytes must be at least 1024".into(),
            ));
        }
        if config.queued_max_request_bytes < config.socket_request_max_bytes
            || config.queued_max_request_bytes > (1 << 40)
        {
            return Err(ConfigError::Invalid(format!(
                "queued.max.request.bytes must be between socket.request.max.bytes ({}) and 2^40",
                config.socket_request_max_bytes
            )));
        }
        if config.connections_max_idle_ms < 1 {
            return Err(ConfigError::Invalid(
                "connections.max.idle.ms must be at least 1".into(),
            ));
        }
        Ok(config)
    }

    fn is_controller_listener(&self, l: &Listener) -> bool {
        self.controller_listener_names.iter().any(|n| n == &l.name)
    }

    /// The listener clients reach this node on, as advertised (the first that is not a
    /// controller listener).
    pub fn advertised(&self) -> &Listener {
        self.advertised_listeners
            .iter()
            .find(|l| !self.is_controller_listener(l))
            .or_else(|| self.client_listener())
            .expect("validated: a client listener exists")
    }

    /// The first listener that serves clients.
    pub fn client_listener(&self) -> Option<&Listener> {
        self.listeners
            .iter()
            .find(|l| !self.is_controller_listener(l))
    }

    /// This node's controller listener, if it has one.
    pub fn controller_listener(&self) -> Option<&Listener> {
        self.listeners
            .iter()
            .find(|l| self.is_controller_listener(l))
    }

    /// Whether a listener serves controller traffic.
    pub fn serves_controller(&self, l: &Listener) -> bool {
        self.is_controller_listener(l)
    }

    /// A broker-level property as given, if set.
    pub fn prop(&self, key: &str) -> Option<&str> {
        self.props.get(key).map(String::as_str)
    }
}

/// `log.dirs` (else `log.dir`): Gregor keeps partition logs and node metadata in one
/// directory, so a list of several is refused rather than silently using the first (Kafka's
/// JBOD spreads partitions over them; Gregor does not).
fn single_log_dir(p: &Props) -> Result<PathBuf, ConfigError> {
    let (key, value) = match (p.str("log.dirs"), p.str("log.dir")) {
        (Some(v), _) => ("log.dirs", v),
        (None, Some(v)) => ("log.dir", v),
        (None, None) => return Ok(PathBuf::from("/tmp/gregor-logs")),
    };
    let dirs: Vec<&str> = value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    match dirs.as_slice() {
        [] => Err(ConfigError::Invalid(format!(
            "{key} is empty: at least one log directory must be defined via log.dirs or log.dir"
        ))),
        [dir] => Ok(PathBuf::from(dir)),
        _ => Err(ConfigError::Invalid(format!(
            "{key} lists {} directories ({}): Gregor supports a single log directory (JBOD is not implemented)",
            dirs.len(),
            dirs.join(", ")
        ))),
    }
}

/// The security protocols Kafka defines (`SecurityProtocol`); Gregor serves PLAINTEXT only.
const SECURITY_PROTOCOLS: [&str; 4] = ["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"];
const PLAINTEXT: &str = "PLAINTEXT";

/// `listener.security.protocol.map` as Kafka's `effectiveListenerSecurityProtocolMap`
/// builds it: listener name (upper case) -> security protocol. Unset, each protocol's own
/// name maps to it, and the controller listeners map to PLAINTEXT unless some listener or
/// controller listener name is SSL or SASL_*.
fn security_protocol_map(
    p: &Props,
    listeners: &[Listener],
    controller_listener_names: &[String],
) -> Result<BTreeMap<String, &'static str>, ConfigError> {
    const KEY: &str = "listener.security.protocol.map";
    let protocol = |name: &str| {
        SECURITY_PROTOCOLS
            .iter()
            .find(|sp| sp.eq_ignore_ascii_case(name))
            .copied()
            .ok_or_else(|| {
                ConfigError::Invalid(format!(
                    "Invalid security protocol `{name}` defined in {KEY}"
                ))
            })
    };
    let mut map = BTreeMap::new();
    match p.str(KEY) {
        Some(spec) => {
            for entry in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                let (name, sp) = entry.rsplit_once(':').ok_or_else(|| {
                    ConfigError::Invalid(format!(
                        "{KEY} entry `{entry}` is not in the LISTENER_NAME:SECURITY_PROTOCOL format"
                    ))
                })?;
                map.insert(name.trim().to_ascii_uppercase(), protocol(sp.trim())?);
            }
        }
        None => {
            for sp in SECURITY_PROTOCOLS {
                map.insert(sp.to_string(), sp);
            }
            let secure = |name: &str| SECURITY_PROTOCOLS[1..].contains(&name);
            let uses_secure = controller_listener_names.iter().any(|n| secure(n))
                || listeners
                    .iter()
                    .any(|l| secure(&l.name.to_ascii_uppercase()));
            if !uses_secure {
                for name in controller_listener_names {
                    map.entry(name.to_ascii_uppercase()).or_insert(PLAINTEXT);
                }
            }
        }
    }
    Ok(map)
}

/// Refuses a listener whose security protocol is not PLAINTEXT: serving an SSL or SASL
/// listener as plaintext would hand clients an unencrypted, unauthenticated port they
/// believe is secured.
fn check_plaintext(
    key: &str,
    l: &Listener,
    protocols: &BTreeMap<String, &'static str>,
) -> Result<(), ConfigError> {
    let name = l.name.to_ascii_uppercase();
    match protocols.get(&name) {
        None => Err(ConfigError::Invalid(format!(
            "No security protocol defined for listener {name} in {key} (listener.security.protocol.map)"
        ))),
        Some(&PLAINTEXT) => Ok(()),
        Some(sp) => Err(ConfigError::Invalid(format!(
            "{key}: listener {name}://{}:{} uses security protocol {sp}, which Gregor does not implement; only PLAINTEXT listeners are supported",
            l.host, l.port
        ))),
    }
}

/// Parses `controller.quorum.voters`: `1@host1:9093,2@host2:9093`.
fn parse_voters(spec: &str) -> Result<BTreeMap<i32, (String, u16)>, ConfigError> {
    let mut voters = BTreeMap::new();
    for entry in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let bad = || {
            ConfigError::Invalid(format!(
                "controller.quorum.voters entry '{entry}' is not ID@HOST:PORT"
            ))
        };
        let (id, addr) = entry.split_once('@').ok_or_else(bad)?;
        let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
        let id: i32 = id.trim().parse().map_err(|_| bad())?;
        let port: u16 = port.trim().parse().map_err(|_| bad())?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        if voters.insert(id, (host, port)).is_some() {
            return Err(ConfigError::Invalid(format!(
                "voter {id} listed twice in controller.quorum.voters"
            )));
        }
    }
    Ok(voters)
}

/// Typed accessors over the raw properties.
struct Props<'a>(&'a BTreeMap<String, String>);

impl Props<'_> {
    fn str(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }
    fn int<T: std::str::FromStr>(&self, key: &str, default: T) -> Result<T, ConfigError> {
        match self.0.get(key) {
            None => Ok(default),
            Some(v) => v
                .trim()
                .parse()
                .map_err(|_| ConfigError::Invalid(format!("{key}={v} is not a number"))),
        }
    }
    fn bool(&self, key: &str, default: bool) -> Result<bool, ConfigError> {
        match self.0.get(key).map(|v| v.trim().to_ascii_lowercase()) {
            None => Ok(default),
            Some(v) if v == "true" => Ok(true),
            Some(v) if v == "false" => Ok(false),
            Some(v) => Err(ConfigError::Invalid(format!("{key}={v} is not true/false"))),
        }
    }
}

/// Builds a partition's `LogConfig` from resolved topic-config values (see `topic_config`).
pub fn log_config_from(values: &impl Fn(&str) -> String) -> LogConfig {
    let num = |k: &str, d: i64| values(k).trim().parse::<i64>().unwrap_or(d);
    let defaults = LogConfig::default();
    LogConfig {
        segment_bytes: num("segment.bytes", defaults.segment_bytes as i64).max(1) as u64,
        segment_ms: num("segment.ms", defaults.segment_ms),
        retention_ms: num("retention.ms", defaults.retention_ms),
        retention_bytes: num("retention.bytes", defaults.retention_bytes),
        index_interval_bytes: num("index.interval.bytes", defaults.index_interval_bytes as i64)
            .clamp(0, u32::MAX as i64) as u32,
        segment_index_bytes: num("segment.index.bytes", defaults.segment_index_bytes as i64)
            .clamp(0, u32::MAX as i64) as u32,
        max_message_bytes: num("max.message.bytes", defaults.max_message_bytes as i64)
            .clamp(0, u32::MAX as i64) as u32,
        timestamp_type: if values("message.timestamp.type") == "LogAppendTime" {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        },
        flush_messages: num("flush.messages", defaults.flush_messages),
        flush_ms: num("flush.ms", defaults.flush_ms),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> BTreeMap<String, String> {
        BrokerConfig::parse_properties(text).unwrap()
    }

    fn config(text: &str) -> Result<BrokerConfig, ConfigError> {
        BrokerConfig::from_props(parse(text))
    }

    fn refusal(text: &str) -> String {
        match config(text) {
            Ok(_) => panic!("{text:?} was accepted"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn parses_properties_and_listeners() {
        let props = parse(
            "# comment\nnode.id=3\nlisteners=PLAINTEXT://127.0.0.1:9095,CONTROLLER://127.0.0.1:9195\nlog.dirs = /d1\nnum.partitions: 4\n",
        );
        let c = BrokerConfig::from_props(props).unwrap();
        assert_eq!(c.node_id, 3);
        assert_eq!(c.listeners.len(), 2);
        assert_eq!(
            c.listeners[1],
            Listener {
                name: "CONTROLLER".into(),
                host: "127.0.0.1".into(),
                port: 9195
            }
        );
        assert_eq!(c.advertised().port, 9095);
        assert_eq!(c.log_dir, PathBuf::from("/d1"));
        assert_eq!(c.num_partitions, 4);
    }

    #[test]
    fn parses_quorum_voters_and_controller_listener() {
        let props = parse(
            "node.id=2\nlisteners=PLAINTEXT://127.0.0.1:9093,CONTROLLER://127.0.0.1:9193\ncontroller.quorum.voters=1@127.0.0.1:9192,2@127.0.0.1:9193,3@127.0.0.1:9194\n",
        );
        let c = BrokerConfig::from_props(props).unwrap();
        assert_eq!(c.quorum_voters.len(), 3);
        assert_eq!(c.quorum_voters[&3], ("127.0.0.1".to_string(), 9194));
        assert_eq!(c.controller_listener().unwrap().port, 9193);
        assert_eq!(c.advertised().port, 9093);
        // A voter of a multi-node quorum must have a controller listener and be a voter.
        let props = parse("node.id=2\ncontroller.quorum.voters=1@h:1,2@h:2\n");
        assert!(BrokerConfig::from_props(props).is_err());
        let props = parse(
            "node.id=9\nlisteners=PLAINTEXT://h:1,CONTROLLER://h:2\ncontroller.quorum.voters=1@h:1,2@h:2\n",
        );
        assert!(BrokerConfig::from_props(props).is_err());
        let props = parse("controller.quorum.voters=1@nohost\n");
        assert!(BrokerConfig::from_props(props).is_err());
    }

    #[test]
    fn rejects_bad_values() {
        let props = parse("node.id=x\n");
        assert!(BrokerConfig::from_props(props).is_err());
        let props = parse("listeners=nonsense\n");
        assert!(BrokerConfig::from_props(props).is_err());
    }

    #[test]
    fn listeners_that_are_not_plaintext_are_refused() {
        // By name, with Kafka's default listener.security.protocol.map.
        for sp in ["SSL", "SASL_PLAINTEXT", "SASL_SSL", "ssl"] {
            let e = refusal(&format!("listeners=PLAINTEXT://h:1,{sp}://h:2\n"));
            assert!(
                e.contains(&format!("uses security protocol {}", sp.to_uppercase()))
                    && e.contains("only PLAINTEXT"),
                "{e}"
            );
        }
        // Through the map: a name mapped to SSL is refused, one mapped to PLAINTEXT served.
        let e = refusal(
            "listeners=PLAINTEXT://h:1,SECURE://h:2\nlistener.security.protocol.map=PLAINTEXT:PLAINTEXT,SECURE:SSL\n",
        );
        assert!(
            e.contains("listener SECURE://h:2 uses security protocol SSL"),
            "{e}"
        );
        let c = config(
            "listeners=INTERNAL://h:1,CTL://h:2\ncontroller.listener.names=CTL\nlistener.security.protocol.map=INTERNAL:PLAINTEXT,CTL:plaintext\n",
        )
        .unwrap();
        assert_eq!(c.client_listener().unwrap().name, "INTERNAL");
        // An advertised listener is held to the same rule.
        let e = refusal("listeners=PLAINTEXT://h:1\nadvertised.listeners=SSL://h:1\n");
        assert!(e.contains("advertised.listeners"), "{e}");
        // A name the map does not know, and a protocol Kafka does not define.
        let e = refusal("listeners=FOO://h:1\n");
        assert!(
            e.contains("No security protocol defined for listener FOO"),
            "{e}"
        );
        let e = refusal("listeners=A://h:1\nlistener.security.protocol.map=A:TLS\n");
        assert!(e.contains("Invalid security protocol `TLS`"), "{e}");
        let e = refusal("listeners=A://h:1\nlistener.security.protocol.map=A\n");
        assert!(
            e.contains("not in the LISTENER_NAME:SECURITY_PROTOCOL format"),
            "{e}"
        );
    }

    #[test]
    fn controller_listeners_default_to_plaintext_as_in_kafka() {
        // Unset map: the controller listener names map to PLAINTEXT...
        let c = config("listeners=PLAINTEXT://h:1,CONTROLLER://h:2\n").unwrap();
        assert_eq!(c.controller_listener().unwrap().port, 2);
        // ...unless an SSL or SASL listener is in use; then SSL is refused anyway.
        assert!(refusal("listeners=SSL://h:1,CONTROLLER://h:2\n").contains("SSL"));
        // An explicit map must name the controller listener.
        let e = refusal(
            "listeners=PLAINTEXT://h:1,CONTROLLER://h:2\nlistener.security.protocol.map=PLAINTEXT:PLAINTEXT\n",
        );
        assert!(
            e.contains("No security protocol defined for listener CONTROLLER"),
            "{e}"
        );
    }

    #[test]
    fn one_log_directory_only() {
        let e = refusal("log.dirs=/d1,/d2\n");
        assert!(
            e.contains("log.dirs lists 2 directories (/d1, /d2)") && e.contains("JBOD"),
            "{e}"
        );
        assert!(refusal("log.dir=/a, /b\n").contains("log.dir lists 2"));
        assert!(refusal("log.dirs= , \n").contains("log.dirs is empty"));
        // log.dirs wins over log.dir, as in Kafka; a trailing comma is no second entry.
        let c = config("log.dirs=/x,\nlog.dir=/a,/b\n").unwrap();
        assert_eq!(c.log_dir, PathBuf::from("/x"));
        assert_eq!(
            config("").unwrap().log_dir,
            PathBuf::from("/tmp/gregor-logs")
        );
    }

    #[test]
    fn properties_files_are_read_as_java_reads_them() {
        let c = config(
            "node.id : 7\nlisteners PLAINTEXT://127.0.0.1:9\\\n    095\nnum.partitions\t=\t5\nbroker.rack=r\\u00e9\\\\1\n",
        )
        .unwrap();
        assert_eq!(c.node_id, 7);
        assert_eq!(c.client_listener().unwrap().port, 9095);
        assert_eq!(c.num_partitions, 5);
        assert_eq!(c.rack.as_deref(), Some("ré\\1"));
        assert!(BrokerConfig::parse_properties("a=\\u00zz").is_err());
    }
}
