//! Clients of the system under test, one per workload.

pub mod configs;
pub mod kafka;
