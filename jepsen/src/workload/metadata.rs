//! The metadata workload: registers kept in the metadata log, written with
//! IncrementalAlterConfigs and read with DescribeConfigs on the controller listener, where the
//! active controller answers after a Raft read barrier. Checked against the `register` model.

use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::json;

use super::WorkerContext;
use crate::client::configs::ConfigClient;

/// The topic holding register `i`.
pub fn register_topic(i: usize) -> String {
    format!("jepsen-register-{i}")
}

pub struct MetadataWorker {
    pub ctx: WorkerContext,
    pub controllers: Vec<String>,
    pub registers: usize,
    pub seed: u64,
    /// Values are unique per worker: worker index in the high bits.
    pub worker: u64,
}

impl MetadataWorker {
    pub fn run(self) {
        let mut rng = StdRng::seed_from_u64(self.seed);
        let client = ConfigClient::new(Duration::from_secs(5));
        let mut process = self.ctx.new_process();
        let mut next_value: i64 = 0;
        while self.ctx.running() {
            let started = Instant::now();
            let reg = rng.gen_range(0..self.registers);
            let key = register_topic(reg);
            let controller = self.controllers.choose(&mut rng).expect("controllers");
            let crashed = if rng.gen_bool(0.5) {
                next_value += 1;
                // A valid retention.ms, unique within the run.
                let value = 3_600_000 + (self.worker as i64) * 1_000_000_000 + next_value;
                let v = json!({"key": key, "value": value});
                self.ctx.invoke(process, "write", v.clone());
                let outcome = client.write(controller, &key, value);
                self.ctx.complete(process, "write", &outcome, v)
            } else {
                self.ctx.invoke(process, "read", json!({"key": key}));
                let outcome = client.read(controller, &key);
                let value = match &outcome {
                    crate::client::kafka::Outcome::Ok(v) => json!({"key": key, "value": v}),
                    _ => json!({"key": key}),
                };
                self.ctx.complete(process, "read", &outcome, value)
            };
            if crashed {
                process = self.ctx.new_process();
            }
            self.ctx.pace(started);
        }
    }
}
