//! [`MetadataQuorum`]: the handle the broker holds on its metadata Raft group.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use openraft::error::{CheckIsLeaderError, ClientWriteError, InitializeError, RaftError};
use openraft::{BasicNode, Raft, RaftMetrics, ServerState};
use rocksdb::DB;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::QuorumConfig;
use crate::error::QuorumError;
use crate::log_store::LogStore;
use crate::network::{now_ms, AckTracker, NetworkFactory, Transport};
use crate::server;
use crate::state_machine::{StateMachine, StateMachineStore};
use crate::store;
use crate::types::{EntryBytes, NodeId, TypeConfig};
use crate::wire::ENTRY_BYTES_MAX;

/// How long `shutdown` waits for openraft's tasks to release the database before closing it.
const DB_RELEASE_WAIT: Duration = Duration::from_secs(10);

/// What DescribeQuorum reports, per voter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaProgress {
    pub node_id: NodeId,
    /// Log end offset as the leader knows it (last log index + 1), -1 when unknown.
    pub log_end_offset: i64,
    /// Milliseconds since the epoch of the last fetch/append ack seen by the leader, -1 unknown.
    pub last_fetch_timestamp_ms: i64,
    /// Milliseconds since the epoch of the last time the replica's log was seen to match the
    /// leader's, -1 unknown.
    pub last_caught_up_timestamp_ms: i64,
}

/// The state of the quorum as this node sees it (complete only on the leader).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuorumInfo {
    pub leader_id: Option<NodeId>,
    /// The current term (Kafka's leader epoch of the metadata partition).
    pub leader_epoch: u64,
    /// Committed index + 1 (Kafka's high watermark of __cluster_metadata).
    pub high_watermark: i64,
    pub voters: Vec<ReplicaProgress>,
    pub observers: Vec<ReplicaProgress>,
}

/// This node's own copy of the metadata log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalLogInfo {
    /// First index still in the log (everything before it is covered by the snapshot).
    pub log_start_offset: i64,
    /// Last log index + 1; 0 for an empty log.
    pub log_end_offset: i64,
    /// Committed index + 1 as this node knows it.
    pub high_watermark: i64,
    /// Last index applied to the state machine.
    pub last_applied_index: Option<u64>,
    /// Last index covered by the local snapshot.
    pub snapshot_index: Option<u64>,
}

/// One voter of the metadata quorum: openraft with RocksDB storage and the TCP transport.
///
/// # Invariants
/// - Only the smallest voter id ever calls openraft's `initialize`, only while its storage is
///   pristine, and always with the full static voter set: every node that initialises a
///   cluster proposes the same membership, so there is no split brain from bootstrapping.
/// - `propose` resolves successfully only after the entries are committed (on a quorum's
///   fsynced logs) and applied to the local state machine.
/// - Once `shutdown` has run, the Raft node is stopped and the RocksDB database is closed
///   (unless an openraft task failed to release it within `DB_RELEASE_WAIT`).
pub struct MetadataQuorum {
    config: QuorumConfig,
    raft: Raft<TypeConfig>,
    /// openraft's metrics: leader, term, log and replication progress.
    metrics: watch::Receiver<RaftMetrics<NodeId, BasicNode>>,
    /// (leader, term), updated by the metrics task on every change.
    leader_tx: Arc<watch::Sender<(Option<NodeId>, u64)>>,
    /// Ack times of followers, recorded by the transport.
    acks: Arc<AckTracker>,
    /// Committed index + 1, saved by the log store.
    committed_next_index: Arc<AtomicU64>,
    /// Turns true once on shutdown; listener loops and the metrics task stop on it.
    shutdown_tx: watch::Sender<bool>,
    /// Kept so `shutdown` can wait until openraft released the database, then close it.
    db: Mutex<Option<Arc<DB>>>,
    /// Follows openraft's metrics to publish leader changes and caught-up times.
    metrics_task: Mutex<Option<JoinHandle<()>>>,
}

fn fatal<E: std::fmt::Display>(context: &str) -> impl FnOnce(E) -> QuorumError + '_ {
    move |e| QuorumError::Unavailable(format!("{context}: {e}"))
}

impl MetadataQuorum {
    /// Opens storage, restores the state machine from the local snapshot (if any), starts
    /// Raft. On first start of a fresh voter set, the node with the smallest id initialises
    /// the membership with all `voters` (no manual format step); every node tolerates the
    /// others starting in any order and at any time.
    pub async fn start(
        config: QuorumConfig,
        state_machine: Arc<dyn StateMachine>,
    ) -> Result<MetadataQuorum, QuorumError> {
        let raft_config = Arc::new(config.raft_config()?);
        std::fs::create_dir_all(&config.data_dir)
            .map_err(fatal(&format!("creating {}", config.data_dir.display())))?;
        let db = store::open(&config.data_dir)
            .map_err(fatal(&format!("opening {}", config.data_dir.display())))?;
        let committed_next_index = Arc::new(AtomicU64::new(0));
        let log_store = LogStore::new(Arc::clone(&db), Arc::clone(&committed_next_index));
        let state_machine = StateMachineStore::open(Arc::clone(&db), state_machine)
            .map_err(fatal("restoring the state machine"))?;
        let acks = Arc::new(AckTracker::default());
        let transport = Transport::new(
            config.node_id,
            config.voters.clone(),
            config.source_addr,
            Duration::from_millis(config.election_timeout_min_ms / 2),
            Arc::clone(&acks),
        );
        let raft = Raft::new(
            config.node_id,
            raft_config,
            NetworkFactory::new(transport),
            log_store,
            state_machine,
        )
        .await
        .map_err(fatal("starting Raft"))?;

        Self::bootstrap(&config, &raft).await?;

        let metrics = raft.metrics();
        let leader_tx = Arc::new(watch::Sender::new((None, 0)));
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let metrics_task = tokio::spawn(follow_metrics(
            metrics.clone(),
            Arc::clone(&leader_tx),
            Arc::clone(&acks),
            shutdown_rx,
        ));
        tracing::info!(
            node_id = config.node_id,
            voters = ?config.voters,
            data_dir = %config.data_dir.display(),
            "metadata quorum started"
        );
        Ok(MetadataQuorum {
            config,
            raft,
            metrics,
            leader_tx,
            acks,
            committed_next_index,
            shutdown_tx,
            db: Mutex::new(Some(db)),
            metrics_task: Mutex::new(Some(metrics_task)),
        })
    }

    /// Initialises a pristine cluster from the smallest voter; see the type's invariants.
    async fn bootstrap(config: &QuorumConfig, raft: &Raft<TypeConfig>) -> Result<(), QuorumError> {
        let initialized = raft
            .is_initialized()
            .await
            .map_err(fatal("reading the Raft state"))?;
        if initialized {
            tracing::info!(node_id = config.node_id, "restarting an initialised voter");
            return Ok(());
        }
        let bootstrap_node = config.bootstrap_node();
        if config.node_id != bootstrap_node {
            tracing::info!(
                node_id = config.node_id,
                bootstrap_node,
                "empty storage: waiting to be contacted by the quorum"
            );
            return Ok(());
        }
        let members: BTreeMap<NodeId, BasicNode> = config
            .voters
            .iter()
            .map(|(id, addr)| (*id, BasicNode::new(addr.to_string())))
            .collect();
        match raft.initialize(members).await {
            Ok(()) => {
                tracing::info!(node_id = config.node_id, voters = ?config.voters, "initialised a new metadata quorum");
                Ok(())
            }
            Err(RaftError::APIError(InitializeError::NotAllowed(e))) => {
                tracing::info!(node_id = config.node_id, reason = %e, "metadata quorum already initialised");
                Ok(())
            }
            Err(e) => Err(QuorumError::Unavailable(format!(
                "initialising the metadata quorum: {e}"
            ))),
        }
    }

    /// Appends entries through Raft, in order, one log entry each; resolves once they are
    /// committed AND applied to the local state machine (returns the index of the last one).
    /// NotLeader on a follower (carrying the leader hint).
    ///
    /// The entries are submitted back to back, so they get consecutive indexes unless
    /// leadership changes in between; they are not atomic: if leadership is lost midway, a
    /// prefix may commit. After `Unavailable` (timeout) the entries may still commit later.
    /// Bounded by `request_timeout_ms`.
    ///
    /// # Panics
    /// If `entries` is empty.
    pub async fn propose(&self, entries: Vec<Vec<u8>>) -> Result<u64, QuorumError> {
        let timeout = Duration::from_millis(self.config.request_timeout_ms);
        tokio::time::timeout(timeout, self.write_entries(entries))
            .await
            .map_err(|_| {
                QuorumError::Unavailable(format!(
                    "entries not committed within {} ms",
                    self.config.request_timeout_ms
                ))
            })?
    }

    /// Like [`propose`](Self::propose), but without a time bound: resolves only once the
    /// entries' fate is known to this node. Ok once all are committed and applied here;
    /// NotLeader as soon as this node steps down (then a prefix may still commit under the
    /// next leader, which applies it before its read barrier returns). A writer that must
    /// not overlap an unresolved proposal (the active controller) holds its lock across
    /// this call.
    ///
    /// # Panics
    /// If `entries` is empty.
    pub async fn propose_until_resolved(&self, entries: Vec<Vec<u8>>) -> Result<u64, QuorumError> {
        let mut metrics = self.metrics.clone();
        let me = self.config.node_id;
        {
            let now = metrics.borrow_and_update();
            if now.state != ServerState::Leader || now.current_leader != Some(me) {
                return Err(QuorumError::NotLeader {
                    leader: now.current_leader,
                });
            }
        }
        // Only a step-down ends the wait early: re-elected in a later term, this node still
        // commits (or learns the fate of) what it proposed. Once it is a follower, whatever
        // of it commits is applied by the next leader before that leader's first write.
        let deposed = async {
            match metrics.wait_for(|m| m.state != ServerState::Leader).await {
                Ok(now) => now.current_leader.filter(|leader| *leader != me),
                Err(_) => None,
            }
        };
        tokio::select! {
            result = self.write_entries(entries) => result,
            leader = deposed => Err(QuorumError::NotLeader { leader }),
        }
    }

    /// Submits `entries` and waits until each is committed and applied, without a bound.
    async fn write_entries(&self, entries: Vec<Vec<u8>>) -> Result<u64, QuorumError> {
        assert!(!entries.is_empty(), "propose needs at least one entry");
        if let Some(entry) = entries.iter().find(|entry| entry.len() > ENTRY_BYTES_MAX) {
            return Err(QuorumError::EntryTooLarge {
                size_bytes: entry.len(),
                max_bytes: ENTRY_BYTES_MAX,
            });
        }
        let mut receivers = Vec::with_capacity(entries.len());
        for entry in entries {
            let receiver = self
                .raft
                .client_write_ff(EntryBytes(entry))
                .await
                .map_err(fatal("Raft stopped"))?;
            receivers.push(receiver);
        }
        let mut last_index = 0;
        for receiver in receivers {
            match receiver.await {
                Ok(Ok(response)) => last_index = response.log_id.index,
                Ok(Err(ClientWriteError::ForwardToLeader(forward))) => {
                    return Err(QuorumError::NotLeader {
                        leader: forward.leader_id,
                    })
                }
                Ok(Err(e)) => return Err(QuorumError::Unavailable(e.to_string())),
                Err(_) => {
                    return Err(QuorumError::Unavailable(
                        "Raft stopped before the entry committed".to_string(),
                    ))
                }
            }
        }
        Ok(last_index)
    }

    /// Linearizable read barrier on the leader (openraft `ensure_linearizable`): on return,
    /// the local state machine reflects every entry committed before the call. Bounded by
    /// `request_timeout_ms`.
    pub async fn read_barrier(&self) -> Result<(), QuorumError> {
        let timeout = Duration::from_millis(self.config.request_timeout_ms);
        match tokio::time::timeout(timeout, self.raft.ensure_linearizable()).await {
            Err(_) => Err(QuorumError::Unavailable(format!(
                "leadership not confirmed within {} ms",
                self.config.request_timeout_ms
            ))),
            Ok(Ok(_)) => Ok(()),
            Ok(Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(forward)))) => {
                Err(QuorumError::NotLeader {
                    leader: forward.leader_id,
                })
            }
            Ok(Err(e)) => Err(QuorumError::Unavailable(e.to_string())),
        }
    }

    pub fn node_id(&self) -> NodeId {
        self.config.node_id
    }

    /// The bound of `propose` and `read_barrier` (`request_timeout_ms`).
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.config.request_timeout_ms)
    }

    pub fn leader(&self) -> Option<NodeId> {
        self.metrics.borrow().current_leader
    }

    pub fn is_leader(&self) -> bool {
        let metrics = self.metrics.borrow();
        metrics.state == ServerState::Leader && metrics.current_leader == Some(self.config.node_id)
    }

    /// Changes of leader (and term): (leader, term).
    pub fn subscribe_leader(&self) -> watch::Receiver<(Option<NodeId>, u64)> {
        self.leader_tx.subscribe()
    }

    fn high_watermark(&self, metrics: &RaftMetrics<NodeId, BasicNode>) -> i64 {
        let committed_next = self.committed_next_index.load(Ordering::Relaxed);
        let applied_next = metrics.last_applied.map_or(0, |log_id| log_id.index + 1);
        committed_next.max(applied_next) as i64
    }

    pub fn quorum_info(&self) -> QuorumInfo {
        let metrics = self.metrics.borrow();
        let now = now_ms();
        let leading = metrics.state == ServerState::Leader;
        let log_end_offset = metrics.last_log_index.map_or(0, |index| index as i64 + 1);
        let progress = |node_id: NodeId| -> ReplicaProgress {
            if node_id == self.config.node_id {
                let timestamp_ms = if leading { now } else { -1 };
                return ReplicaProgress {
                    node_id,
                    log_end_offset,
                    last_fetch_timestamp_ms: timestamp_ms,
                    last_caught_up_timestamp_ms: timestamp_ms,
                };
            }
            let matched = metrics
                .replication
                .as_ref()
                .and_then(|replication| replication.get(&node_id));
            let acks = self.acks.get(node_id);
            match matched {
                Some(matched) => {
                    let matched_end = matched.map_or(0, |log_id| log_id.index as i64 + 1);
                    let last_caught_up_timestamp_ms = if matched_end == log_end_offset {
                        acks.last_caught_up_timestamp_ms
                            .max(acks.last_fetch_timestamp_ms)
                    } else {
                        acks.last_caught_up_timestamp_ms
                    };
                    ReplicaProgress {
                        node_id,
                        log_end_offset: matched.map_or(-1, |log_id| log_id.index as i64 + 1),
                        last_fetch_timestamp_ms: acks.last_fetch_timestamp_ms,
                        last_caught_up_timestamp_ms,
                    }
                }
                None => ReplicaProgress {
                    node_id,
                    log_end_offset: -1,
                    last_fetch_timestamp_ms: -1,
                    last_caught_up_timestamp_ms: -1,
                },
            }
        };
        let membership = metrics.membership_config.membership();
        let voters = membership.voter_ids().map(progress).collect();
        let observers = membership.learner_ids().map(progress).collect();
        QuorumInfo {
            leader_id: metrics.current_leader,
            leader_epoch: metrics.current_term,
            high_watermark: self.high_watermark(&metrics),
            voters,
            observers,
        }
    }

    /// This node's own copy of the log: where it starts and ends, what is applied and what
    /// the local snapshot covers.
    pub fn local_log(&self) -> LocalLogInfo {
        let metrics = self.metrics.borrow();
        LocalLogInfo {
            log_start_offset: metrics.purged.map_or(0, |log_id| log_id.index as i64 + 1),
            log_end_offset: metrics.last_log_index.map_or(0, |index| index as i64 + 1),
            high_watermark: self.high_watermark(&metrics),
            last_applied_index: metrics.last_applied.map(|log_id| log_id.index),
            snapshot_index: metrics.snapshot.map(|log_id| log_id.index),
        }
    }

    /// Server side of the Raft RPC transport: the broker's controller listener hands every
    /// frame whose api key is `RAFT_RPC_API_KEY` here (the whole frame body after the 4-byte
    /// size) and writes back the returned frame body (the crate prefixes nothing; the broker
    /// adds the 4-byte size).
    pub async fn handle_rpc_frame(&self, frame: Bytes) -> Bytes {
        server::handle_frame(&self.raft, &frame).await
    }

    /// A receiver that turns true when the quorum shuts down.
    pub(crate) fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown_tx.subscribe()
    }

    /// Stops Raft, the metrics task and every `serve_rpc` loop of this quorum, and closes the
    /// database. Takes `&self` so that a quorum shared in an `Arc` (as `serve_rpc` needs it)
    /// can be shut down; calling it again is harmless.
    pub async fn shutdown(&self) -> Result<(), QuorumError> {
        self.shutdown_tx.send_replace(true);
        let stopped = self.raft.shutdown().await.map_err(fatal("stopping Raft"));
        let metrics_task = self
            .metrics_task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(task) = metrics_task {
            if let Err(e) = task.await {
                tracing::warn!(error = %e, "metrics task failed");
            }
        }
        let db = self
            .db
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(db) = db {
            let deadline = Instant::now() + DB_RELEASE_WAIT;
            while Arc::strong_count(&db) > 1 && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            if Arc::strong_count(&db) > 1 {
                tracing::warn!(
                    node_id = self.config.node_id,
                    "Raft tasks still hold the database; it closes when they end"
                );
            }
        }
        tracing::info!(node_id = self.config.node_id, "metadata quorum stopped");
        stopped
    }
}

/// Publishes (leader, term) changes and records when followers were caught up, until shutdown.
async fn follow_metrics(
    mut metrics: watch::Receiver<RaftMetrics<NodeId, BasicNode>>,
    leader_tx: Arc<watch::Sender<(Option<NodeId>, u64)>>,
    acks: Arc<AckTracker>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        {
            let current = metrics.borrow_and_update();
            let leader = (current.current_leader, current.current_term);
            leader_tx.send_if_modified(|published| {
                if *published == leader {
                    return false;
                }
                tracing::info!(leader = ?leader.0, term = leader.1, "metadata quorum leader changed");
                *published = leader;
                true
            });
            if current.state == ServerState::Leader {
                if let Some(replication) = &current.replication {
                    let now = now_ms();
                    for (node_id, matched) in replication.iter() {
                        if matched.map(|log_id| log_id.index) == current.last_log_index {
                            acks.record_caught_up(*node_id, now);
                        }
                    }
                }
            }
        }
        tokio::select! {
            changed = metrics.changed() => if changed.is_err() { break },
            _ = shutdown.wait_for(|stopped| *stopped) => break,
        }
    }
}
