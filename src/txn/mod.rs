//! The transaction coordinator's core (Kafka's `transaction-coordinator` module): a
//! transactional id's state machine (`state.rs`), its records in `__transaction_state`
//! (`log.rs`), where an id lives (`placement.rs`) and the request logic
//! (`decisions.rs`). See docs/transaction-coordinator.md.

pub mod decisions;
pub mod log;
pub mod placement;
pub mod state;
