//! Process wiring: one node's metadata, controller, replica manager and listeners.

use std::sync::Arc;

use parking_lot::Mutex;
use tokio::net::TcpListener;

use crate::config::BrokerConfig;
use crate::controller::Controller;
use crate::error::ApiError;
use crate::group::GroupCoordinator;
use crate::metadata::{MetadataImage, MetadataPublisher};
use crate::replica::ReplicaManager;

/// The directory, under `log.dirs`, of the metadata log (Kafka's name for it).
pub const METADATA_LOG_DIR: &str = "__cluster_metadata-0";

/// Everything a request handler can reach.
pub struct Broker {
    pub config: Arc<BrokerConfig>,
    pub metadata: Arc<MetadataPublisher>,
    pub controller: Controller,
    pub replica_manager: Arc<ReplicaManager>,
    pub group_coordinator: Arc<GroupCoordinator>,
    /// The producer-id block this broker hands out from: `[next, end)`.
    producer_ids: tokio::sync::Mutex<(i64, i64)>,
    /// Listener tasks, aborted at shutdown.
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Broker {
    /// Recovers state from disk and registers this node; does not listen yet.
    pub async fn open(config: BrokerConfig) -> anyhow::Result<Arc<Broker>> {
        let config = Arc::new(config);
        std::fs::create_dir_all(&config.log_dir)?;
        check_meta_properties(&config)?;
        let replica_manager = Arc::new(ReplicaManager::new(config.clone())?);
        let metadata = Arc::new(MetadataPublisher::new());
        let controller = Controller::open(
            config.clone(),
            metadata.clone(),
            &config.log_dir.join(METADATA_LOG_DIR),
        )?;
        replica_manager.startup(&metadata.image());
        metadata.register(replica_manager.clone());
        controller
            .register_local_broker()
            .await
            .map_err(|e| anyhow::anyhow!("broker registration failed: {e}"))?;
        write_meta_properties(
            &config,
            metadata.image().cluster_id.as_deref().unwrap_or_default(),
        )?;
        tracing::info!(
            node_id = config.node_id,
            cluster_id = metadata.image().cluster_id.as_deref().unwrap_or_default(),
            partitions = replica_manager.partition_count(),
            "broker started"
        );
        let initial_rebalance_delay_ms = config
            .prop("group.initial.rebalance.delay.ms")
            .and_then(|v| v.parse().ok())
            .unwrap_or(3000);
        let group_coordinator = Arc::new(GroupCoordinator::new(initial_rebalance_delay_ms));
        Ok(Arc::new(Broker {
            config,
            metadata,
            controller,
            replica_manager,
            group_coordinator,
            producer_ids: tokio::sync::Mutex::new((0, 0)),
            tasks: Mutex::new(Vec::new()),
        }))
    }

    /// Binds every listener and starts serving, plus background log maintenance.
    pub async fn start_serving(self: &Arc<Self>) -> anyhow::Result<Vec<std::net::SocketAddr>> {
        let mut addrs = Vec::new();
        let mut tasks = Vec::new();
        for l in &self.config.listeners {
            let listener = TcpListener::bind(l.bind_addr()?).await.map_err(|e| {
                anyhow::anyhow!(
                    "cannot bind listener {}://{}:{}: {e}",
                    l.name,
                    l.host,
                    l.port
                )
            })?;
            let addr = listener.local_addr()?;
            tracing::info!(listener = %l.name, %addr, "listening");
            addrs.push(addr);
            tasks.push(tokio::spawn(crate::net::run_listener(
                listener,
                self.clone(),
            )));
        }
        tasks.push(tokio::spawn(
            self.replica_manager.clone().run_log_maintenance(),
        ));
        tasks.push(tokio::spawn(self.group_coordinator.clone().run_timers()));
        self.tasks.lock().extend(tasks);
        Ok(addrs)
    }

    pub fn image(&self) -> Arc<MetadataImage> {
        self.metadata.image()
    }

    /// Hands out a producer id for an idempotent producer, taking a new block from the
    /// controller when the current one is used up.
    pub async fn next_producer_id(&self) -> Result<i64, ApiError> {
        let mut block = self.producer_ids.lock().await;
        if block.0 >= block.1 {
            let (first, size) = self
                .controller
                .allocate_producer_ids(self.config.node_id)
                .await?;
            *block = (first, first + size as i64);
        }
        let id = block.0;
        block.0 += 1;
        Ok(id)
    }

    /// Stops listening and closes every log cleanly.
    pub fn shutdown(&self) {
        for t in self.tasks.lock().drain(..) {
            t.abort();
        }
        self.replica_manager.shutdown();
        tracing::info!("broker stopped");
    }
}

/// `meta.properties` ties a log directory to one node (and, once known, one cluster), as in
/// Kafka; starting a different node id on it is refused rather than mixing data.
fn check_meta_properties(config: &BrokerConfig) -> anyhow::Result<()> {
    let path = config.log_dir.join("meta.properties");
    if let Ok(text) = std::fs::read_to_string(&path) {
        let props = BrokerConfig::parse_properties(&text);
        if let Some(id) = props.get("node.id") {
            if id.parse::<i32>().ok() != Some(config.node_id) {
                anyhow::bail!(
                    "{} belongs to node.id={id}, not {}",
                    path.display(),
                    config.node_id
                );
            }
        }
    }
    Ok(())
}

fn write_meta_properties(config: &BrokerConfig, cluster_id: &str) -> anyhow::Result<()> {
    let path = config.log_dir.join("meta.properties");
    let tmp = config.log_dir.join("meta.properties.tmp");
    std::fs::write(
        &tmp,
        format!(
            "version=1\nnode.id={}\ncluster.id={cluster_id}\n",
            config.node_id
        ),
    )?;
    std::fs::rename(&tmp, &path)?;
    Ok(())
}
