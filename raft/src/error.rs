//! The errors the quorum reports to the broker.

use crate::types::NodeId;

/// Why a quorum operation did not succeed. Every variant is an operating condition the broker
/// maps to a Kafka error code; none of them means a broken invariant.
#[derive(Debug, thiserror::Error)]
pub enum QuorumError {
    /// This node is not the leader; the leader's id if known.
    #[error("not the leader (leader: {leader:?})")]
    NotLeader { leader: Option<NodeId> },
    /// No quorum answered in time / shutting down / storage failure.
    #[error("quorum unavailable: {0}")]
    Unavailable(String),
    /// A proposed entry is larger than [`crate::ENTRY_BYTES_MAX`]: it could never be
    /// replicated inside one RPC frame.
    #[error("entry of {size_bytes} bytes exceeds the limit of {max_bytes} bytes")]
    EntryTooLarge { size_bytes: usize, max_bytes: usize },
    /// The [`crate::QuorumConfig`] handed to `start` is inconsistent.
    #[error("invalid quorum configuration: {0}")]
    InvalidConfig(String),
}
