//! The transaction coordinator (Kafka's `transaction-coordinator` module and
//! `kafka.coordinator.transaction`). See docs/transaction-coordinator.md.
//!
//! - `state.rs`: a transactional id's state machine (`TransactionMetadata`), no I/O.
//! - `log.rs`: its records in `__transaction_state`, in Kafka's byte layout.
//! - `placement.rs`: which partition holds an id (Kafka's hash, shared with groups).
//! - `decisions.rs`: the request logic of InitProducerId, AddPartitionsToTxn, EndTxn.
//! - `coordinator.rs`: the service: shards, loading on leadership change, logged writes.
//! - `markers.rs`: WriteTxnMarkers to partition leaders, retried until acknowledged.
//! - `maintenance.rs`: timed-out transactions, expired ids, marker retries.
//! - `verification.rs`: the KIP-890 check the produce path calls.

pub mod config;
pub mod coordinator;
pub mod decisions;
pub mod log;
pub mod maintenance;
pub mod markers;
pub mod placement;
pub mod state;
pub mod verification;

pub use config::TransactionCoordinatorConfig;
pub use coordinator::TransactionCoordinator;
pub use placement::TRANSACTION_STATE_TOPIC;
