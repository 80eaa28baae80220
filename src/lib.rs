//! Gregor: a Kafka-compatible streaming broker.
//!
//! `docs/architecture.md` is the map of these modules.

pub mod broker;
pub mod clock;
pub mod config;
pub mod controller;
pub mod embedded;
pub mod error;
pub mod group;
pub mod handlers;
pub mod internal_records;
pub mod lease;
pub mod metadata;
pub mod net;
pub mod properties;
pub mod replica;
pub mod txn;
