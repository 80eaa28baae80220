//! Static configuration of one voter, and its translation into openraft's [`openraft::Config`].

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use crate::error::QuorumError;
use crate::types::NodeId;
use crate::wire::{APPEND_ENTRIES_MAX, RPC_FRAME_BYTES_MAX};

/// Static configuration of one voter.
///
/// # Invariants
/// Checked by [`QuorumConfig::validate`] before anything starts:
/// - `voters` is not empty and contains `node_id`.
/// - `0 < heartbeat_interval_ms < election_timeout_min_ms < election_timeout_max_ms`, so a
///   follower hears from a live leader several times before it would start an election.
/// - `snapshot_after_entries > 0` and `request_timeout_ms > 0`.
#[derive(Clone, Debug)]
pub struct QuorumConfig {
    pub node_id: NodeId,
    /// Directory for RocksDB (log, vote, committed index, snapshots).
    pub data_dir: PathBuf,
    /// Every voter (including this one): id -> address of its controller listener.
    /// Fixed at start (KRaft's static `controller.quorum.voters`).
    pub voters: BTreeMap<NodeId, SocketAddr>,
    /// Local address to bind outgoing connections to (fault tests cut links by source
    /// address with iptables); None = let the OS choose.
    pub source_addr: Option<IpAddr>,
    /// Lower bound of the randomised election timeout.
    pub election_timeout_min_ms: u64,
    /// Upper bound of the randomised election timeout.
    pub election_timeout_max_ms: u64,
    /// How often the leader sends heartbeats; also the timeout of one AppendEntries RPC.
    pub heartbeat_interval_ms: u64,
    /// Build a snapshot after this many applied entries since the last one (openraft's
    /// SnapshotPolicy::LogsSinceLast), and purge the log behind it.
    pub snapshot_after_entries: u64,
    /// Bound on how long `propose` and `read_barrier` wait for a quorum before answering
    /// [`QuorumError::Unavailable`]; also the timeout of one snapshot chunk RPC.
    pub request_timeout_ms: u64,
}

impl QuorumConfig {
    pub const ELECTION_TIMEOUT_MIN_MS_DEFAULT: u64 = 1000;
    pub const ELECTION_TIMEOUT_MAX_MS_DEFAULT: u64 = 2000;
    pub const HEARTBEAT_INTERVAL_MS_DEFAULT: u64 = 250;
    pub const SNAPSHOT_AFTER_ENTRIES_DEFAULT: u64 = 10_000;
    pub const REQUEST_TIMEOUT_MS_DEFAULT: u64 = 5000;

    /// A configuration with every tunable at its default.
    pub fn new(
        node_id: NodeId,
        data_dir: impl Into<PathBuf>,
        voters: BTreeMap<NodeId, SocketAddr>,
    ) -> QuorumConfig {
        QuorumConfig {
            node_id,
            data_dir: data_dir.into(),
            voters,
            source_addr: None,
            election_timeout_min_ms: Self::ELECTION_TIMEOUT_MIN_MS_DEFAULT,
            election_timeout_max_ms: Self::ELECTION_TIMEOUT_MAX_MS_DEFAULT,
            heartbeat_interval_ms: Self::HEARTBEAT_INTERVAL_MS_DEFAULT,
            snapshot_after_entries: Self::SNAPSHOT_AFTER_ENTRIES_DEFAULT,
            request_timeout_ms: Self::REQUEST_TIMEOUT_MS_DEFAULT,
        }
    }

    /// Checks the invariants listed on the type.
    pub fn validate(&self) -> Result<(), QuorumError> {
        let invalid = |msg: String| Err(QuorumError::InvalidConfig(msg));
        if self.voters.is_empty() {
            return invalid("no voters".to_string());
        }
        if !self.voters.contains_key(&self.node_id) {
            return invalid(format!(
                "node {} is not among the voters {:?}",
                self.node_id, self.voters
            ));
        }
        if self.heartbeat_interval_ms == 0 {
            return invalid("heartbeat_interval_ms must be positive".to_string());
        }
        if self.heartbeat_interval_ms >= self.election_timeout_min_ms {
            return invalid(format!(
                "heartbeat_interval_ms ({}) must be below election_timeout_min_ms ({})",
                self.heartbeat_interval_ms, self.election_timeout_min_ms
            ));
        }
        if self.election_timeout_min_ms >= self.election_timeout_max_ms {
            return invalid(format!(
                "election_timeout_min_ms ({}) must be below election_timeout_max_ms ({})",
                self.election_timeout_min_ms, self.election_timeout_max_ms
            ));
        }
        if self.snapshot_after_entries == 0 {
            return invalid("snapshot_after_entries must be positive".to_string());
        }
        if self.request_timeout_ms == 0 {
            return invalid("request_timeout_ms must be positive".to_string());
        }
        Ok(())
    }

    /// openraft's configuration for this voter.
    pub(crate) fn raft_config(&self) -> Result<openraft::Config, QuorumError> {
        self.validate()?;
        let config = openraft::Config {
            cluster_name: "gregor-metadata".to_string(),
            election_timeout_min: self.election_timeout_min_ms,
            election_timeout_max: self.election_timeout_max_ms,
            heartbeat_interval: self.heartbeat_interval_ms,
            install_snapshot_timeout: self.request_timeout_ms,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(self.snapshot_after_entries),
            // Purge everything a snapshot covers: a follower that lags behind the snapshot gets
            // the snapshot, which is what `snapshot_after_entries` is for.
            max_in_snapshot_log_to_keep: 0,
            // Chunks well under the frame bound.
            snapshot_max_chunk_size: (RPC_FRAME_BYTES_MAX / 16) as u64,
            // Any AppendEntries, even of the largest entries, fits one frame.
            max_payload_entries: APPEND_ENTRIES_MAX,
            ..Default::default()
        };
        config
            .validate()
            .map_err(|e| QuorumError::InvalidConfig(e.to_string()))
    }

    /// The smallest voter id: the one node that initialises a fresh quorum.
    pub(crate) fn bootstrap_node(&self) -> NodeId {
        *self
            .voters
            .keys()
            .next()
            .expect("validated config has at least one voter")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> QuorumConfig {
        let voters = (1..=3)
            .map(|id| (id, SocketAddr::from(([127, 0, 0, 1], 9000 + id as u16))))
            .collect();
        QuorumConfig::new(2, "/tmp/unused", voters)
    }

    #[test]
    fn defaults_are_valid() {
        let config = config();
        config.validate().unwrap();
        let raft = config.raft_config().unwrap();
        assert_eq!(raft.heartbeat_interval, 250);
        assert_eq!(raft.max_in_snapshot_log_to_keep, 0);
        assert_eq!(config.bootstrap_node(), 1);
    }

    #[test]
    fn inconsistent_configs_are_rejected() {
        let broken: [fn(&mut QuorumConfig); 6] = [
            |c| c.node_id = 4,
            |c| c.voters.clear(),
            |c| c.heartbeat_interval_ms = c.election_timeout_min_ms,
            |c| c.election_timeout_max_ms = c.election_timeout_min_ms,
            |c| c.snapshot_after_entries = 0,
            |c| c.request_timeout_ms = 0,
        ];
        for breakage in broken {
            let mut config = config();
            breakage(&mut config);
            assert!(matches!(
                config.validate(),
                Err(QuorumError::InvalidConfig(_))
            ));
        }
    }
}
