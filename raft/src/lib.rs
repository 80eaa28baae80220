//! Gregor's metadata quorum: an [openraft] 0.9 group whose log, vote and snapshots live in
//! RocksDB, whose RPCs travel over TCP, and whose state machine is supplied by the broker.
//!
//! The crate knows nothing of Kafka or of metadata record types: an entry is opaque bytes, and
//! the broker's [`StateMachine`] gives them meaning. `API.md` beside this crate is the contract
//! the broker codes against.
//!
//! Module map:
//! - `config`: [`QuorumConfig`] and its translation into openraft's `Config`.
//! - `types`: the openraft type configuration ([`TypeConfig`], [`EntryBytes`], [`AppliedIndex`]).
//! - `store`: the RocksDB database shared by the log store and the state machine store.
//! - `log_store`: openraft's `RaftLogStorage` on RocksDB (log, vote, committed, purged marker).
//! - `state_machine`: the [`StateMachine`] trait and openraft's `RaftStateMachine` around it
//!   (applied state, snapshots).
//! - `wire`: the Raft RPC frame format.
//! - `network`: the client side of the transport (one reused connection per peer).
//! - `server`: the server side of the transport ([`serve_rpc`], frame dispatch).
//! - `quorum`: [`MetadataQuorum`], the handle the broker holds.
//! - `fuzzing`: the decoders of `wire` and `codec` for the fuzz targets (`fuzz/`).

mod codec;
mod config;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod log_store;
mod network;
mod quorum;
mod server;
mod state_machine;
mod store;
mod types;
mod wire;

pub use config::QuorumConfig;
pub use error::QuorumError;
pub use quorum::{LocalLogInfo, MetadataQuorum, QuorumInfo, ReplicaProgress};
pub use server::serve_rpc;
pub use state_machine::StateMachine;
pub use types::{AppliedIndex, EntryBytes, NodeId, TypeConfig};
pub use wire::{APPEND_ENTRIES_MAX, ENTRY_BYTES_MAX, RAFT_RPC_API_KEY, RPC_FRAME_BYTES_MAX};
