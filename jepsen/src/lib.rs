//! gregor-jepsen: fault-injection tests of a Gregor cluster with linearizability checking,
//! after Jepsen's Kafka test (`jepsen.tests.kafka`).
//!
//! - `db`, `net`: the cluster under test and the network between its nodes.
//! - `nemesis`: the faults, scheduled and healed.
//! - `client`, `workload`: real Kafka clients issuing operations, recorded in the `history`.
//! - `checker`: the queue anomalies and linearizability (see HISTORY.md).
//! - `runner`, `report`: one run from start to verdict.

pub mod checker;
pub mod client;
pub mod db;
pub mod history;
pub mod nemesis;
pub mod net;
pub mod report;
pub mod runner;
pub mod wire;
pub mod workload;
