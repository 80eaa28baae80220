//! The openraft type configuration of the metadata quorum.

use std::fmt;
use std::io::Cursor;

use serde::{Deserialize, Serialize};

/// Identifies a voter (Kafka's `node.id` of a controller).
pub type NodeId = u64;

/// The application payload of one Raft log entry: one metadata record, opaque to this crate.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryBytes(pub Vec<u8>);

impl fmt::Debug for EntryBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EntryBytes({} bytes)", self.0.len())
    }
}

/// What applying one entry returns: the log index it was applied at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedIndex(pub u64);

openraft::declare_raft_types!(
    /// openraft's type configuration for the metadata quorum: opaque byte entries, `u64` node
    /// ids, [`openraft::BasicNode`] (the address) as node data, snapshots held in memory.
    pub TypeConfig:
        D = EntryBytes,
        R = AppliedIndex,
        NodeId = NodeId,
        Node = openraft::BasicNode,
        SnapshotData = Cursor<Vec<u8>>,
);
