//! The queue workload (Jepsen's Kafka workload): processes send unique values to keys, each
//! key one partition of one topic, and poll partitions; some operations ask for a partition's
//! high watermark. After the faults are healed, every partition is read from the beginning
//! (`final-read`).
//!
//! Consumers run in one of two modes. *Assign*: a process picks the partitions it polls
//! (`assign` operations). *Subscribe*: every process's consumer is a member of one consumer
//! group, the group's coordinator hands out the partitions, and the consumer commits its
//! position after each poll; each new assignment from the group is recorded as an `assign`
//! operation of that process, so the checkers restart position tracking there.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use super::WorkerContext;
use crate::client::kafka::{Consumer, GroupConsumer, Outcome, Producer, ProducerSettings};

pub const TOPIC: &str = "jepsen-queue";
/// The consumer group of subscribe mode.
pub const GROUP: &str = "jepsen-queue-group";

/// How consumers get their partitions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ConsumeMode {
    Assign,
    Subscribe,
}

/// How many records one poll returns at most, and for how long it waits.
const POLL_RECORDS: usize = 200;
const POLL_WAIT: Duration = Duration::from_millis(300);

/// What queue workers share.
#[derive(Clone)]
pub struct QueueShared {
    pub producer: ProducerSettings,
    pub keys: i32,
    pub mode: ConsumeMode,
    /// The next value to send; values are unique within the run.
    pub next_value: Arc<AtomicU64>,
    /// Per key, the highest offset any process has seen acknowledged: where a new assignment
    /// starts reading (a little before it), so that polls follow the head of the log.
    pub recent: Arc<Vec<AtomicI64>>,
}

impl QueueShared {
    pub fn new(producer: ProducerSettings, keys: i32, mode: ConsumeMode) -> QueueShared {
        QueueShared {
            producer,
            keys,
            mode,
            next_value: Arc::new(AtomicU64::new(0)),
            recent: Arc::new((0..keys).map(|_| AtomicI64::new(-1)).collect()),
        }
    }
}

pub struct QueueWorker {
    pub ctx: WorkerContext,
    pub shared: QueueShared,
    pub seed: u64,
}

/// One process's clients and what it has seen.
struct ProcessState {
    id: u64,
    producer: Option<Producer>,
    consumer: Option<Consumer>,
    group: Option<GroupConsumer>,
    assigned: Vec<i32>,
    /// Per assigned key, the next offset this process expects to poll.
    positions: BTreeMap<i32, i64>,
}

impl ProcessState {
    fn new(id: u64) -> ProcessState {
        ProcessState {
            id,
            producer: None,
            consumer: None,
            group: None,
            assigned: vec![],
            positions: BTreeMap::new(),
        }
    }
}

impl QueueWorker {
    pub fn run(self) {
        let mut rng = StdRng::seed_from_u64(self.seed);
        let mut p = ProcessState::new(self.ctx.new_process());
        while self.ctx.running() {
            let started = Instant::now();
            let roll: f64 = rng.gen();
            let crashed = if roll < 0.5 {
                self.send(&mut p, &mut rng)
            } else if self.shared.mode == ConsumeMode::Subscribe {
                if roll < 0.85 {
                    self.poll_group(&mut p)
                } else {
                    self.list_offsets(&mut p, &mut rng)
                }
            } else if roll < 0.85 || p.assigned.is_empty() {
                if p.assigned.is_empty() || roll > 0.8 {
                    self.assign(&mut p, &mut rng)
                } else {
                    self.poll(&mut p)
                }
            } else {
                self.list_offsets(&mut p, &mut rng)
            };
            if crashed {
                retire(p);
                p = ProcessState::new(self.ctx.new_process());
            }
            self.ctx.pace(started);
        }
        retire(p);
    }

    fn send(&self, p: &mut ProcessState, rng: &mut StdRng) -> bool {
        let key = rng.gen_range(0..self.shared.keys);
        let value = self.shared.next_value.fetch_add(1, Ordering::SeqCst);
        let input = json!({"key": key, "value": value});
        self.ctx.invoke(p.id, "send", input.clone());
        if p.producer.is_none() {
            match Producer::new(&self.shared.producer) {
                Ok(prod) => p.producer = Some(prod),
                Err(e) => {
                    let outcome: Outcome<i64> = Outcome::Fail(format!("{e:#}"));
                    return self.ctx.complete(p.id, "send", &outcome, input);
                }
            }
        }
        let producer = p.producer.as_ref().unwrap();
        let outcome = producer.send(TOPIC, key, value);
        let out = match &outcome {
            Outcome::Ok(offset) => {
                self.shared.recent[key as usize].fetch_max(*offset, Ordering::Relaxed);
                json!({"key": key, "value": value, "offset": offset})
            }
            _ => input,
        };
        let crashed = self.ctx.complete(p.id, "send", &outcome, out);
        // A producer with a fatal error cannot send again: that process is done.
        crashed || producer.is_fatal()
    }

    fn consumer<'a>(&self, p: &'a mut ProcessState) -> anyhow::Result<&'a Consumer> {
        if p.consumer.is_none() {
            p.consumer = Some(Consumer::new(&self.shared.producer.bootstrap, TOPIC)?);
        }
        Ok(p.consumer.as_ref().unwrap())
    }

    /// Assigns a random set of keys. Keys the process already polls keep their position; new
    /// ones start a little before the head of the log.
    fn assign(&self, p: &mut ProcessState, rng: &mut StdRng) -> bool {
        let mut keys: Vec<i32> = (0..self.shared.keys).collect();
        keys.shuffle(rng);
        let n = rng.gen_range(1..=self.shared.keys.min(3) as usize);
        let mut keys: Vec<i32> = keys.into_iter().take(n).collect();
        keys.sort();
        let input = json!({"keys": keys});
        self.ctx.invoke(p.id, "assign", input.clone());
        let from: Vec<(i32, Option<i64>)> = keys
            .iter()
            .map(|k| {
                let start = p.positions.get(k).copied().or_else(|| {
                    let head = self.shared.recent[*k as usize].load(Ordering::Relaxed);
                    (head >= 0).then(|| (head - 20).max(0))
                });
                (*k, start)
            })
            .collect();
        let outcome = match self.consumer(p).and_then(|c| c.assign(&from)) {
            Ok(()) => Outcome::Ok(()),
            Err(e) => Outcome::Fail(format!("{e:#}")),
        };
        if outcome == Outcome::Ok(()) {
            p.assigned = keys;
            p.positions.retain(|k, _| p.assigned.contains(k));
        }
        self.ctx.complete(p.id, "assign", &outcome, input)
    }

    fn poll(&self, p: &mut ProcessState) -> bool {
        self.ctx.invoke(p.id, "poll", Value::Null);
        let records = match self.consumer(p) {
            Ok(c) => c.poll(POLL_WAIT, POLL_RECORDS),
            Err(e) => {
                let outcome: Outcome<()> = Outcome::Fail(format!("{e:#}"));
                return self.ctx.complete(p.id, "poll", &outcome, Value::Null);
            }
        };
        for (k, rs) in &records {
            if let Some((last, _)) = rs.last() {
                p.positions.insert(*k, last + 1);
            }
        }
        self.complete_poll(p.id, &records);
        false
    }

    /// Subscribe mode: polls through the group and commits what it got. A rebalance during
    /// the poll ends the poll there; the new assignment is recorded, and polling goes on as a
    /// new poll operation.
    fn poll_group(&self, p: &mut ProcessState) -> bool {
        if p.group.is_none() {
            self.ctx.invoke(p.id, "assign", json!({"keys": []}));
            let outcome =
                match GroupConsumer::subscribe(&self.shared.producer.bootstrap, TOPIC, GROUP) {
                    Ok(g) => {
                        p.group = Some(g);
                        Outcome::Ok(())
                    }
                    Err(e) => Outcome::Fail(format!("{e:#}")),
                };
            return self
                .ctx
                .complete(p.id, "assign", &outcome, json!({"keys": []}));
        }
        let group = p.group.as_ref().unwrap();
        self.ctx.invoke(p.id, "poll", Value::Null);
        let deadline = Instant::now() + POLL_WAIT;
        let mut records: BTreeMap<i32, Vec<(i64, u64)>> = BTreeMap::new();
        let mut count = 0;
        while count < POLL_RECORDS {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            let (record, rebalanced) = group.poll_one(deadline - now);
            if rebalanced {
                self.complete_poll(p.id, &std::mem::take(&mut records));
                let keys = group.assigned_partitions();
                let v = json!({"keys": keys});
                self.ctx.invoke(p.id, "assign", v.clone());
                self.ctx.complete(p.id, "assign", &Outcome::Ok(()), v);
                self.ctx.invoke(p.id, "poll", Value::Null);
            }
            match record {
                Some((k, offset, value)) => {
                    records.entry(k).or_default().push((offset, value));
                    count += 1;
                }
                None => break,
            }
        }
        self.complete_poll(p.id, &records);
        // At-least-once: the position is committed after the records were recorded. A commit
        // that fails (a rebalance under way) only means the next owner re-reads them.
        if let Err(e) = group.commit() {
            tracing::debug!(error = %e, "commit failed");
        }
        false
    }

    fn complete_poll(&self, process: u64, records: &BTreeMap<i32, Vec<(i64, u64)>>) {
        let by_key: serde_json::Map<String, Value> = records
            .iter()
            .map(|(k, rs)| (k.to_string(), json!(rs)))
            .collect();
        self.ctx.complete(
            process,
            "poll",
            &Outcome::Ok(()),
            json!({"records": by_key}),
        );
    }

    fn list_offsets(&self, p: &mut ProcessState, rng: &mut StdRng) -> bool {
        let key = rng.gen_range(0..self.shared.keys);
        let input = json!({"key": key});
        self.ctx.invoke(p.id, "list-offsets", input.clone());
        let outcome = match self
            .consumer(p)
            .and_then(|c| c.high_watermark(key, Duration::from_secs(5)))
        {
            Ok(n) => Outcome::Ok(n),
            Err(e) => Outcome::Fail(format!("{e:#}")),
        };
        let out = match &outcome {
            Outcome::Ok(n) => json!({"key": key, "offset": n}),
            _ => input,
        };
        self.ctx.complete(p.id, "list-offsets", &outcome, out)
    }
}

/// Drops a process's clients off the worker's thread: closing a client can wait for
/// unreachable brokers.
fn retire(p: ProcessState) {
    std::thread::spawn(move || drop(p));
}

/// Reads every key from the beginning to its high watermark, one fresh consumer per key.
/// Returns how many final reads succeeded.
pub fn final_reads(ctx: &WorkerContext, bootstrap: &str, keys: i32, timeout: Duration) -> usize {
    let mut ok = 0;
    for key in 0..keys {
        let process = ctx.new_process();
        let input = json!({"key": key});
        ctx.invoke(process, "final-read", input.clone());
        let outcome = final_read(bootstrap, key, timeout);
        let value = match &outcome {
            Outcome::Ok((end, records)) => json!({"key": key, "end": end, "records": records}),
            _ => input,
        };
        if matches!(outcome, Outcome::Ok(_)) {
            ok += 1;
        }
        ctx.complete(process, "final-read", &outcome, value);
    }
    ok
}

type FinalRead = (i64, Vec<(i64, u64)>);

fn final_read(bootstrap: &str, key: i32, timeout: Duration) -> Outcome<FinalRead> {
    let deadline = Instant::now() + timeout;
    let consumer = match Consumer::new(bootstrap, TOPIC) {
        Ok(c) => c,
        Err(e) => return Outcome::Fail(format!("{e:#}")),
    };
    // The end is the high watermark when the read starts; retried while leadership settles.
    let end = loop {
        match consumer.high_watermark(key, Duration::from_secs(5)) {
            Ok(n) => break n,
            Err(e) if Instant::now() > deadline => return Outcome::Fail(format!("{e:#}")),
            Err(_) => std::thread::sleep(Duration::from_millis(500)),
        }
    };
    if let Err(e) = consumer.assign(&[(key, None)]) {
        return Outcome::Fail(format!("{e:#}"));
    }
    let mut records: Vec<(i64, u64)> = Vec::new();
    while records.last().map(|(o, _)| o + 1).unwrap_or(0) < end {
        if Instant::now() > deadline {
            let got = records.len();
            drop(consumer);
            return Outcome::Fail(format!("read {got} records of {end} before the deadline"));
        }
        let mut polled = consumer.poll(Duration::from_millis(500), 10_000);
        records.extend(polled.remove(&key).unwrap_or_default());
    }
    records.retain(|(o, _)| *o < end);
    Outcome::Ok((end, records))
}
