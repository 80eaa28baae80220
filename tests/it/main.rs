//! Gregor's integration tests: one test binary (see docs/testing.md), real `gregor`
//! processes on loopback, driven by the stock Apache Kafka 4.x CLI, librdkafka and raw
//! protocol clients.

mod api_coverage;
mod bad_input;
mod cli;
mod client;
mod cluster;
mod controller_retry;
mod crash;
mod fence_scale;
mod follower_out_of_range;
mod group_rebalance;
mod groups;
mod harness;
mod hostile;
mod idempotent_restart;
mod jepsen;
mod librdkafka;
mod replication;
mod resources;
mod retention;
mod txn_coordinator;
