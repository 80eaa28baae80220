//! Workloads: client processes issuing operations against the cluster and recording each one,
//! invoke and completion, in the history.
//!
//! A process performs one operation at a time. When an operation ends `info` the process is
//! considered crashed, as in Jepsen: its operation may still take effect later, so the worker
//! carries on under a fresh process id with fresh clients.

pub mod metadata;
pub mod queue;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::client::kafka::Outcome;
use crate::history::{EventType, HistoryWriter, Process};

/// What every worker shares.
#[derive(Clone)]
pub struct WorkerContext {
    pub history: Arc<HistoryWriter>,
    /// The next unused process id.
    pub next_process: Arc<AtomicU64>,
    /// Set to end the workload early.
    pub stop: Arc<AtomicBool>,
    pub deadline: Instant,
    /// The pause between one worker's operations, so all workers together reach the rate.
    pub op_interval: Duration,
}

impl WorkerContext {
    pub fn new_process(&self) -> u64 {
        self.next_process.fetch_add(1, Ordering::SeqCst)
    }

    pub fn running(&self) -> bool {
        !self.stop.load(Ordering::Relaxed) && Instant::now() < self.deadline
    }

    pub fn invoke(&self, process: u64, f: &str, value: Value) {
        self.history
            .record(EventType::Invoke, Process::Client(process), f, value, None);
    }

    /// Records how an operation ended; returns whether the process crashed (`info`).
    pub fn complete<T>(&self, process: u64, f: &str, outcome: &Outcome<T>, value: Value) -> bool {
        let (kind, error) = match outcome {
            Outcome::Ok(_) => (EventType::Ok, None),
            Outcome::Fail(e) => (EventType::Fail, Some(e.clone())),
            Outcome::Info(e) => (EventType::Info, Some(e.clone())),
        };
        self.history
            .record(kind, Process::Client(process), f, value, error);
        matches!(outcome, Outcome::Info(_))
    }

    /// Waits out the rest of this operation's slot.
    pub fn pace(&self, started: Instant) {
        let elapsed = started.elapsed();
        if elapsed < self.op_interval {
            std::thread::sleep(self.op_interval - elapsed);
        }
    }
}
