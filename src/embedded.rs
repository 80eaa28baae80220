//! A single-node broker inside another process, for the fuzz targets: the same `Broker` the
//! `gregor` binary runs (its own metadata quorum, controller, replica manager and group
//! coordinator), on a data directory the caller owns, with listeners on loopback ephemeral
//! ports.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::broker::Broker;
use crate::config::BrokerConfig;

/// A started single-node broker.
///
/// # Invariants
/// - Once `start` returns, this node is the active controller and its broker is registered
///   and unfenced, so requests are served as they would be on a started `gregor`.
pub struct EmbeddedBroker {
    pub broker: Arc<Broker>,
    /// The bound listeners: the client listener first, then the controller listener.
    pub addrs: Vec<SocketAddr>,
}

impl EmbeddedBroker {
    /// Opens a single-node broker on `data_dir` and waits (up to `ready_within`) until it is
    /// serving. `overrides` are broker properties applied over the embedded defaults.
    pub async fn start(
        data_dir: &Path,
        overrides: &[(&str, &str)],
        ready_within: Duration,
    ) -> anyhow::Result<EmbeddedBroker> {
        let mut props = BrokerConfig::parse_properties(
            "node.id=1\n\
             listeners=PLAINTEXT://127.0.0.1:0,CONTROLLER://127.0.0.1:0\n\
             controller.listener.names=CONTROLLER\n\
             offsets.topic.replication.factor=1\n\
             offsets.topic.num.partitions=1\n\
             group.initial.rebalance.delay.ms=0\n\
             controller.quorum.election.timeout.ms=150\n\
             broker.heartbeat.interval.ms=100\n",
        )?;
        props.insert("log.dirs".into(), data_dir.display().to_string());
        for (k, v) in overrides {
            props.insert((*k).to_string(), (*v).to_string());
        }
        let config = BrokerConfig::from_props(props)?;
        let node_id = config.node_id;
        let broker = Broker::open(config).await?;
        let addrs = broker.start_serving().await?;
        let deadline = Instant::now() + ready_within;
        loop {
            let image = broker.image();
            let unfenced = image.brokers.get(&node_id).is_some_and(|b| !b.fenced);
            if unfenced && broker.controller.is_active() {
                break;
            }
            if Instant::now() >= deadline {
                anyhow::bail!("embedded broker not serving after {ready_within:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(EmbeddedBroker { broker, addrs })
    }
}
