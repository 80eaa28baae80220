//! Process wiring: one node's metadata quorum, controller, replica manager, group
//! coordinator and listeners, and the broker's lifecycle towards the active controller
//! (registration, then heartbeats).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use gregor_raft::{MetadataQuorum, QuorumConfig};
use kafka_protocol::messages::{
    AllocateProducerIdsRequest, BrokerHeartbeatRequest, BrokerId, BrokerRegistrationRequest,
};
use kafka_protocol::protocol::{Request, StrBytes};
use kafka_protocol::ResponseError;
use parking_lot::Mutex;
use tokio::net::TcpListener;
use uuid::Uuid;

use crate::config::BrokerConfig;
use crate::controller::{BrokerRegistrationInput, Controller};
use crate::error::ApiError;
use crate::group::GroupCoordinator;
use crate::handlers::ListenerKind;
use crate::lease::SessionLease;
use crate::metadata::state_machine::MetadataStateMachine;
use crate::metadata::{BrokerEndpoint, MetadataImage, MetadataPublisher};
use crate::net::node_channel::NodeChannel;
use crate::replica::ReplicaManager;

/// The directory, under `log.dirs`, of the metadata log (Kafka's name for it).
pub const METADATA_LOG_DIR: &str = "__cluster_metadata-0";

/// How long a request to the active controller may take. Short, because a controller that
/// does not answer (paused, cut off) must not hold heartbeats past the session timeout or
/// ISR changes past a failover: the caller retries against whoever leads by then.
const CONTROLLER_REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

/// Everything a request handler can reach.
pub struct Broker {
    pub config: Arc<BrokerConfig>,
    pub metadata: Arc<MetadataPublisher>,
    pub quorum: Arc<MetadataQuorum>,
    pub controller: Arc<Controller>,
    pub replica_manager: Arc<ReplicaManager>,
    pub group_coordinator: Arc<GroupCoordinator>,
    pub txn_coordinator: Arc<crate::txn::TransactionCoordinator>,
    /// Requests to the active controller when it is another node.
    node_channel: NodeChannel,
    /// Controller listeners of the voters, by node id.
    voter_addrs: BTreeMap<i32, SocketAddr>,
    /// This process's identity towards the controller; a restart gets a new one.
    incarnation_id: Uuid,
    /// This broker's epoch once registered (0 before).
    broker_epoch: AtomicI64,
    /// How long the controller certainly counts this broker alive; leaders answer
    /// ListOffsets only within it.
    pub lease: SessionLease,
    /// Whether stray partition logs were cleaned after the first catch-up.
    caught_up_once: AtomicBool,
    /// Becomes true once this broker is registered, caught up and unfenced; client
    /// listeners accept connections only from then on (Kafka's broker does the same), so no
    /// client sees a broker whose metadata is still behind.
    serving: tokio::sync::watch::Sender<bool>,
    /// The producer-id block this broker hands out from: `[next, end)`.
    producer_ids: tokio::sync::Mutex<(i64, i64)>,
    /// Background tasks, aborted at shutdown.
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Broker {
    /// Recovers local state and joins the metadata quorum; does not listen yet.
    pub async fn open(config: BrokerConfig) -> anyhow::Result<Arc<Broker>> {
        let config = Arc::new(config);
        let lease = SessionLease::new(Duration::from_millis(config.broker_session_timeout_ms));
        std::fs::create_dir_all(&config.log_dir)?;
        check_meta_properties(&config)?;
        let replica_manager = Arc::new(ReplicaManager::new(config.clone())?);
        let metadata = Arc::new(MetadataPublisher::new());
        // The replica manager follows every image from the first one on.
        metadata.register(replica_manager.clone());
        // The group coordinator follows offsets-partition leadership; registered after the
        // replica manager, so the partitions it loads already have their new role.
        let group_coordinator = Arc::new(GroupCoordinator::new(
            config.group.clone(),
            config.node_id,
            replica_manager.clone(),
            metadata.clone(),
        ));
        metadata.register(group_coordinator.clone());
        let txn_config = crate::txn::TransactionCoordinatorConfig::from_props(&config.props)
            .map_err(|e| anyhow::anyhow!("config: {e}"))?;
        let txn_coordinator = Arc::new(crate::txn::TransactionCoordinator::new(
            txn_config,
            config.node_id,
            replica_manager.clone(),
            metadata.clone(),
        ));
        metadata.register(txn_coordinator.clone());

        let voter_addrs = resolve_voters(&config)?;
        let source_addr = config
            .client_listener()
            .and_then(|l| l.host.parse::<IpAddr>().ok())
            .filter(|ip| !ip.is_unspecified());
        let election_ms = config.quorum_election_timeout_ms.max(100);
        let quorum_config = QuorumConfig {
            node_id: config.node_id as u64,
            data_dir: config.log_dir.join(METADATA_LOG_DIR),
            voters: voter_addrs.iter().map(|(id, a)| (*id as u64, *a)).collect(),
            source_addr,
            election_timeout_min_ms: election_ms,
            election_timeout_max_ms: election_ms * 2,
            heartbeat_interval_ms: (election_ms / 4).max(20),
            request_timeout_ms: config
                .prop("controller.quorum.request.timeout.ms")
                .and_then(|v| v.parse().ok())
                .unwrap_or(2_000),
            snapshot_after_entries: config
                .prop("metadata.log.max.snapshot.interval.entries")
                .and_then(|v| v.parse().ok())
                .unwrap_or(10_000),
        };
        let quorum = Arc::new(
            MetadataQuorum::start(
                quorum_config,
                Arc::new(MetadataStateMachine::new(metadata.clone())),
            )
            .await
            .map_err(|e| anyhow::anyhow!("metadata quorum: {e}"))?,
        );
        let controller = Arc::new(Controller::new(
            config.clone(),
            metadata.clone(),
            quorum.clone(),
        ));
        tracing::info!(
            node_id = config.node_id,
            voters = voter_addrs.len(),
            "node started"
        );
        Ok(Arc::new(Broker {
            node_channel: NodeChannel::new(config.node_id, source_addr),
            config,
            metadata,
            quorum,
            controller,
            replica_manager,
            group_coordinator,
            txn_coordinator,
            voter_addrs,
            incarnation_id: Uuid::new_v4(),
            broker_epoch: AtomicI64::new(0),
            lease,
            caught_up_once: AtomicBool::new(false),
            serving: tokio::sync::watch::channel(false).0,
            producer_ids: tokio::sync::Mutex::new((0, 0)),
            tasks: Mutex::new(Vec::new()),
        }))
    }

    /// Binds every listener and starts serving, plus the background work.
    pub async fn start_serving(self: &Arc<Self>) -> anyhow::Result<Vec<SocketAddr>> {
        let mut addrs = Vec::new();
        let mut tasks = Vec::new();
        for l in &self.config.listeners {
            let kind = if self.config.serves_controller(l) {
                ListenerKind::Controller
            } else {
                ListenerKind::Broker
            };
            let listener = TcpListener::bind(l.bind_addr()?).await.map_err(|e| {
                anyhow::anyhow!(
                    "cannot bind listener {}://{}:{}: {e}",
                    l.name,
                    l.host,
                    l.port
                )
            })?;
            let addr = listener.local_addr()?;
            tracing::info!(listener = %l.name, %addr, ?kind, "listening");
            addrs.push(addr);
            let broker = self.clone();
            let mut serving = self.serving.subscribe();
            tasks.push(tokio::spawn(async move {
                if kind == ListenerKind::Broker && serving.wait_for(|s| *s).await.is_err() {
                    return;
                }
                crate::net::run_listener(listener, broker, kind).await
            }));
        }
        tasks.push(tokio::spawn(
            self.replica_manager.clone().run_log_maintenance(),
        ));
        tasks.push(tokio::spawn(self.group_coordinator.clone().run_timers()));
        tasks.push(tokio::spawn(self.group_coordinator.clone().run_loader()));
        tasks.push(tokio::spawn(
            self.group_coordinator.clone().run_maintenance(),
        ));
        tasks.push(tokio::spawn(self.txn_coordinator.clone().run_loader()));
        tasks.push(tokio::spawn(crate::txn::maintenance::run(
            self.txn_coordinator.clone(),
            self.clone(),
        )));
        tasks.push(tokio::spawn(self.controller.clone().run_liveness_checks()));
        tasks.push(tokio::spawn(crate::replica::fetcher::run(self.clone())));
        tasks.push(tokio::spawn(crate::replica::alter_partition::run(
            self.clone(),
        )));
        tasks.push(tokio::spawn(self.clone().run_lifecycle()));
        self.tasks.lock().extend(tasks);
        Ok(addrs)
    }

    pub fn image(&self) -> Arc<MetadataImage> {
        self.metadata.image()
    }

    /// This broker's epoch (0 until registered).
    pub fn broker_epoch(&self) -> i64 {
        self.broker_epoch.load(Ordering::SeqCst)
    }

    /// Requests to other nodes (the active controller, partition leaders).
    pub fn node_channel(&self) -> &NodeChannel {
        &self.node_channel
    }

    /// The controller listener of a voter.
    pub fn controller_addr(&self, node_id: i32) -> Option<SocketAddr> {
        self.voter_addrs.get(&node_id).copied()
    }

    /// Voters and their controller listeners (DescribeCluster with EndpointType=2).
    pub fn voters(&self) -> &BTreeMap<i32, SocketAddr> {
        &self.voter_addrs
    }

    /// Sends a request to the active controller (which is another node).
    pub async fn send_to_controller<R: Request>(
        &self,
        request: &R,
        version: i16,
    ) -> Result<R::Response, ApiError> {
        let leader = self.controller.active_controller_id();
        let Some(addr) = self.controller_addr(leader) else {
            return Err(ApiError::with_message(
                ResponseError::NotController,
                "No active controller is known",
            ));
        };
        self.node_channel
            .send(addr, request, version, CONTROLLER_REQUEST_TIMEOUT)
            .await
            .map_err(|e| {
                tracing::debug!(error = %e, "request to the active controller failed");
                ApiError::with_message(ResponseError::NotController, e.to_string())
            })
    }

    /// Registration with the active controller, then a heartbeat every
    /// `broker.heartbeat.interval.ms`, for the life of the process.
    async fn run_lifecycle(self: Arc<Self>) {
        let interval = Duration::from_millis(self.config.broker_heartbeat_interval_ms.max(10));
        let retry = Duration::from_millis(200);
        loop {
            match self.register().await {
                Ok(epoch) => {
                    self.broker_epoch.store(epoch, Ordering::SeqCst);
                    tracing::info!(broker_epoch = epoch, "registered with the controller");
                    break;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "registration failed; retrying");
                    tokio::time::sleep(retry).await;
                }
            }
        }
        loop {
            let sent_at = std::time::Instant::now();
            match self.heartbeat().await {
                Ok((caught_up, fenced)) => {
                    if fenced {
                        self.lease.revoke();
                    } else {
                        self.lease.renew(sent_at);
                    }
                    if caught_up && !fenced && !self.caught_up_once.swap(true, Ordering::SeqCst) {
                        let image = self.image();
                        self.replica_manager.delete_stray_logs(&image);
                        if let Err(e) = write_meta_properties(
                            &self.config,
                            image.cluster_id.as_deref().unwrap_or_default(),
                        ) {
                            tracing::warn!(error = %e, "cannot write meta.properties");
                        }
                        self.serving.send_replace(true);
                        tracing::info!(
                            cluster_id = image.cluster_id.as_deref().unwrap_or_default(),
                            "broker unfenced and serving"
                        );
                    }
                    tokio::time::sleep(interval).await;
                }
                Err(e)
                    if e.code == ResponseError::StaleBrokerEpoch
                        || e.code == ResponseError::BrokerIdNotRegistered =>
                {
                    // The controller no longer knows this incarnation: register again.
                    tracing::warn!(error = %e, "heartbeat refused; registering again");
                    self.lease.revoke();
                    match self.register().await {
                        Ok(epoch) => self.broker_epoch.store(epoch, Ordering::SeqCst),
                        Err(_) => tokio::time::sleep(retry).await,
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "heartbeat failed");
                    tokio::time::sleep(retry.min(interval)).await;
                }
            }
        }
    }

    async fn register(&self) -> Result<i64, ApiError> {
        let endpoints: Vec<BrokerEndpoint> = self
            .config
            .advertised_listeners
            .iter()
            .filter(|l| !self.config.serves_controller(l))
            .map(|l| BrokerEndpoint {
                listener: l.name.clone(),
                host: l.host.clone(),
                port: l.port,
            })
            .collect();
        if self.controller.is_active() {
            return self
                .controller
                .register_broker(BrokerRegistrationInput {
                    broker_id: self.config.node_id,
                    incarnation_id: self.incarnation_id,
                    endpoints,
                    rack: self.config.rack.clone(),
                })
                .await;
        }
        let request = BrokerRegistrationRequest::default()
            .with_broker_id(BrokerId(self.config.node_id))
            .with_cluster_id(StrBytes::from_string(
                self.image().cluster_id.clone().unwrap_or_default(),
            ))
            .with_incarnation_id(self.incarnation_id)
            .with_rack(
                self.config
                    .rack
                    .as_deref()
                    .map(|r| StrBytes::from_string(r.to_string())),
            )
            .with_listeners(
                endpoints
                    .iter()
                    .map(|e| {
                        kafka_protocol::messages::broker_registration_request::Listener::default()
                            .with_name(StrBytes::from_string(e.listener.clone()))
                            .with_host(StrBytes::from_string(e.host.clone()))
                            .with_port(e.port)
                    })
                    .collect(),
            );
        let response = self.send_to_controller(&request, 0).await?;
        match ResponseError::try_from_code(response.error_code) {
            None => Ok(response.broker_epoch),
            Some(code) => Err(ApiError::new(code)),
        }
    }

    /// One heartbeat: (caught up, fenced).
    async fn heartbeat(&self) -> Result<(bool, bool), ApiError> {
        let epoch = self.broker_epoch.load(Ordering::SeqCst);
        let offset = self.image().last_offset as i64;
        if self.controller.is_active() {
            let outcome = self
                .controller
                .broker_heartbeat(self.config.node_id, epoch, offset, false)
                .await?;
            return Ok((outcome.is_caught_up, outcome.is_fenced));
        }
        let request = BrokerHeartbeatRequest::default()
            .with_broker_id(BrokerId(self.config.node_id))
            .with_broker_epoch(epoch)
            .with_current_metadata_offset(offset);
        let response = self.send_to_controller(&request, 0).await?;
        match ResponseError::try_from_code(response.error_code) {
            None => Ok((response.is_caught_up, response.is_fenced)),
            Some(code) => Err(ApiError::new(code)),
        }
    }

    /// Hands out a producer id for an idempotent producer, taking a new block from the
    /// active controller when the current one is used up.
    pub async fn next_producer_id(&self) -> Result<i64, ApiError> {
        let mut block = self.producer_ids.lock().await;
        if block.0 >= block.1 {
            let (first, size) = if self.controller.is_active() {
                self.controller
                    .allocate_producer_ids(self.config.node_id, self.broker_epoch())
                    .await?
            } else {
                let request = AllocateProducerIdsRequest::default()
                    .with_broker_id(BrokerId(self.config.node_id))
                    .with_broker_epoch(self.broker_epoch.load(Ordering::SeqCst));
                let response = self.send_to_controller(&request, 0).await?;
                if let Some(code) = ResponseError::try_from_code(response.error_code) {
                    return Err(ApiError::new(code));
                }
                (response.producer_id_start.0, response.producer_id_len)
            };
            *block = (first, first + size as i64);
        }
        let id = block.0;
        block.0 += 1;
        Ok(id)
    }

    /// Stops serving and closes every log cleanly.
    pub async fn shutdown(&self) {
        for t in self.tasks.lock().drain(..) {
            t.abort();
        }
        self.replica_manager.shutdown();
        tracing::info!("broker stopped");
    }
}

/// The voters' controller listeners. Without `controller.quorum.voters` this node is the
/// only voter (a single-node cluster needs no Raft traffic).
fn resolve_voters(config: &BrokerConfig) -> anyhow::Result<BTreeMap<i32, SocketAddr>> {
    let mut out = BTreeMap::new();
    if config.quorum_voters.is_empty() {
        let l = config
            .controller_listener()
            .or(config.client_listener())
            .expect("a listener exists");
        let host = if l.host.is_empty() {
            "127.0.0.1"
        } else {
            &l.host
        };
        let addr = (host, l.port)
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| anyhow::anyhow!("cannot resolve {host}"))?;
        out.insert(config.node_id, addr);
        return Ok(out);
    }
    for (id, (host, port)) in &config.quorum_voters {
        let addr = (host.as_str(), *port)
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| anyhow::anyhow!("cannot resolve voter {id} at {host}:{port}"))?;
        out.insert(*id, addr);
    }
    Ok(out)
}

/// `meta.properties` ties a log directory to one node (and, once known, one cluster), as in
/// Kafka; starting a different node id on it is refused rather than mixing data.
fn check_meta_properties(config: &BrokerConfig) -> anyhow::Result<()> {
    let path = config.log_dir.join("meta.properties");
    if let Ok(text) = std::fs::read_to_string(&path) {
        let props = BrokerConfig::parse_properties(&text)?;
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
