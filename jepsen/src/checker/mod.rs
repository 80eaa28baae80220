//! Checkers of a run's history (HISTORY.md): the Kafka queue anomalies, and linearizability of
//! each partition log (model `log`) and each metadata register (model `register`).

pub mod decode;
pub mod linear;
pub mod models;
pub mod queue;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{json, Value};

use crate::history::{pair, Event, Operation};
use linear::{Budget, LinOp, Model, Outcome};
use models::{LogModel, RegisterModel};
use queue::QueueReport;

/// A verdict: JSON `true`, `false` or `"unknown"` (a search ran out of budget, or the history was
/// malformed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validity {
    True,
    False,
    Unknown,
}

impl Validity {
    pub fn is_true(self) -> bool {
        self == Validity::True
    }

    /// Both: false wins over unknown, which wins over true.
    pub fn and(self, other: Validity) -> Validity {
        match (self, other) {
            (Validity::False, _) | (_, Validity::False) => Validity::False,
            (Validity::Unknown, _) | (_, Validity::Unknown) => Validity::Unknown,
            _ => Validity::True,
        }
    }
}

impl From<bool> for Validity {
    fn from(b: bool) -> Self {
        if b {
            Validity::True
        } else {
            Validity::False
        }
    }
}

impl Serialize for Validity {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Validity::True => s.serialize_bool(true),
            Validity::False => s.serialize_bool(false),
            Validity::Unknown => s.serialize_str("unknown"),
        }
    }
}

impl<'de> Deserialize<'de> for Validity {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Validity;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("true, false or \"unknown\"")
            }
            fn visit_bool<E: de::Error>(self, b: bool) -> Result<Validity, E> {
                Ok(b.into())
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Validity, E> {
                match s {
                    "unknown" => Ok(Validity::Unknown),
                    _ => Err(E::invalid_value(de::Unexpected::Str(s), &self)),
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// The linearizability verdict of one key.
#[derive(Debug, Clone, Serialize)]
pub struct KeyVerdict {
    pub valid: Validity,
    /// Model operations checked.
    pub operations: usize,
    /// Search steps taken.
    pub steps: u64,
    /// When not linearizable: the length of the longest linearizable prefix found...
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix_len: Option<usize>,
    /// ... the invoke indices of its operations, in linearization order...
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix: Option<Vec<u64>>,
    /// ... its last few operations in full...
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix_tail: Option<Vec<Value>>,
    /// ... the model state after it...
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<Value>,
    /// ... and the first operation that could not be linearized after it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed_op: Option<Value>,
}

/// Linearizability of every key under one model.
#[derive(Debug, Clone, Serialize)]
pub struct LinearReport {
    pub valid: Validity,
    /// `log` or `register`.
    pub model: String,
    pub keys: BTreeMap<String, KeyVerdict>,
}

/// Everything the checkers found in a history.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    pub valid: Validity,
    /// Client operations (paired invocations).
    pub operations: usize,
    /// Queue anomalies; absent without queue operations.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue: Option<QueueReport>,
    /// Linearizability of each partition log; absent without queue operations.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log: Option<LinearReport>,
    /// Linearizability of each metadata register; absent without metadata operations.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub register: Option<LinearReport>,
    /// Nemesis events by `f`.
    pub nemesis: BTreeMap<String, usize>,
    /// Departures from HISTORY.md; any make the verdict at best unknown.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub malformed: Vec<String>,
}

/// Limits of the linearizability searches.
#[derive(Debug, Clone, Copy)]
pub struct CheckOptions {
    /// For all searches together; keys still unchecked then are `unknown`.
    pub time_limit: Option<Duration>,
    pub max_steps_per_key: Option<u64>,
    /// Keys checked in parallel; `None`: the available parallelism.
    pub threads: Option<usize>,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            time_limit: Some(Duration::from_secs(120)),
            max_steps_per_key: None,
            threads: None,
        }
    }
}

/// Runs every checker with the default options.
pub fn check_history(events: &[Event]) -> CheckReport {
    check_history_with(events, &CheckOptions::default())
}

/// Runs the queue checker (if there are queue operations) and the `log` and `register`
/// linearizability checkers (per key).
pub fn check_history_with(events: &[Event], options: &CheckOptions) -> CheckReport {
    let pairing = pair(events);
    let ops = &pairing.operations;
    let (decoded, mut malformed) = decode::decode_all(ops);
    malformed.splice(0..0, pairing.problems);

    let mut nemesis = BTreeMap::new();
    for e in &pairing.nemesis {
        *nemesis.entry(e.f.clone()).or_insert(0) += 1;
    }

    let has_queue = decoded.iter().any(|(_, d)| d.is_queue());
    let has_register = decoded.iter().any(|(_, d)| d.is_register());
    let queue = has_queue.then(|| queue::check(ops, &decoded));
    let prepared = models::prepare(ops, &decoded);

    let budget = Budget {
        max_steps: options.max_steps_per_key,
        deadline: options.time_limit.map(|t| Instant::now() + t),
    };
    let threads = options
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let (log_keys, register_keys) = check_keys(ops, &prepared, &budget, threads);

    let linear_report = |model: &str, keys: BTreeMap<String, KeyVerdict>| LinearReport {
        valid: keys.values().fold(Validity::True, |v, k| v.and(k.valid)),
        model: model.to_string(),
        keys,
    };
    let log = has_queue.then(|| linear_report("log", log_keys));
    let register = has_register.then(|| linear_report("register", register_keys));

    let mut valid = if malformed.is_empty() {
        Validity::True
    } else {
        Validity::Unknown
    };
    if let Some(q) = &queue {
        valid = valid.and(q.valid.into());
    }
    for r in log.iter().chain(register.iter()) {
        valid = valid.and(r.valid);
    }
    CheckReport {
        valid,
        operations: ops.len(),
        queue,
        log,
        register,
        nemesis,
        malformed,
    }
}

/// A compact reference to an operation for reports: find it in the history by `index`.
pub fn op_ref(op: &Operation) -> Value {
    json!({"process": op.process, "f": op.f, "type": op.kind, "index": op.invoke_index,
           "completion": op.complete_index})
}

/// One key's search.
enum Job<'a> {
    Log(&'a str, &'a [LinOp<models::LogOp>]),
    Register(&'a str, &'a [LinOp<models::RegisterOp>]),
}

type Verdicts = BTreeMap<String, KeyVerdict>;

/// Checks every key, the biggest first, on up to `threads` threads.
fn check_keys(
    ops: &[Operation],
    prepared: &models::Prepared,
    budget: &Budget,
    threads: usize,
) -> (Verdicts, Verdicts) {
    let log_names: Vec<String> = prepared.log.keys().map(|k| k.to_string()).collect();
    let mut jobs: Vec<Job> = log_names
        .iter()
        .zip(prepared.log.values())
        .map(|(k, v)| Job::Log(k, v))
        .chain(prepared.register.iter().map(|(k, v)| Job::Register(k, v)))
        .collect();
    jobs.sort_by_key(|j| {
        std::cmp::Reverse(match j {
            Job::Log(_, v) => v.len(),
            Job::Register(_, v) => v.len(),
        })
    });

    let next = AtomicUsize::new(0);
    let results = Mutex::new((Verdicts::new(), Verdicts::new()));
    let run = || {
        while let Some(job) = jobs.get(next.fetch_add(1, Ordering::Relaxed)) {
            let record = |log: bool, key: &str, v: KeyVerdict| {
                let mut r = results.lock().unwrap_or_else(|e| e.into_inner());
                let verdicts = if log { &mut r.0 } else { &mut r.1 };
                verdicts.insert(key.to_string(), v);
            };
            match job {
                Job::Log(k, lin) => {
                    let describe = models::LogOp::describe;
                    let v = verdict(&LogModel, ops, lin, budget, describe);
                    record(true, k, v);
                }
                Job::Register(k, lin) => {
                    let describe = models::RegisterOp::describe;
                    let v = verdict(&RegisterModel, ops, lin, budget, describe);
                    record(false, k, v);
                }
            }
        }
    };
    let threads = threads.clamp(1, jobs.len().max(1));
    if threads == 1 {
        run();
    } else {
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(run);
            }
        });
    }
    results.into_inner().unwrap_or_else(|e| e.into_inner())
}

/// How many of the prefix's last operations a failing verdict shows in full.
const PREFIX_TAIL: usize = 8;

fn verdict<M: Model>(
    model: &M,
    ops: &[Operation],
    lin: &[LinOp<M::Op>],
    budget: &Budget,
    describe: fn(&M::Op) -> Value,
) -> KeyVerdict {
    let result = linear::check(model, lin, budget);
    let full = |pos: usize| {
        let l = &lin[pos];
        json!({"op": ops[l.origin], "model": describe(&l.op)})
    };
    let mut v = KeyVerdict {
        valid: Validity::True,
        operations: lin.len(),
        steps: result.steps,
        prefix_len: None,
        prefix: None,
        prefix_tail: None,
        state: None,
        failed_op: None,
    };
    match result.outcome {
        Outcome::Linearizable => {}
        Outcome::Unknown => v.valid = Validity::Unknown,
        Outcome::NotLinearizable(c) => {
            v.valid = Validity::False;
            v.prefix_len = Some(c.prefix.len());
            v.prefix = Some(
                c.prefix
                    .iter()
                    .map(|&p| ops[lin[p].origin].invoke_index)
                    .collect(),
            );
            let tail = c.prefix.len().saturating_sub(PREFIX_TAIL);
            v.prefix_tail = Some(c.prefix[tail..].iter().map(|&p| full(p)).collect());
            v.state = Some(c.state);
            v.failed_op = Some(full(c.blocked));
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validity_json() {
        for (v, s) in [
            (Validity::True, "true"),
            (Validity::False, "false"),
            (Validity::Unknown, "\"unknown\""),
        ] {
            assert_eq!(serde_json::to_string(&v).unwrap(), s);
            assert_eq!(serde_json::from_str::<Validity>(s).unwrap(), v);
        }
        assert_eq!(Validity::True.and(Validity::Unknown), Validity::Unknown);
        assert_eq!(Validity::Unknown.and(Validity::False), Validity::False);
    }

    #[test]
    fn empty_history_is_valid() {
        let r = check_history(&[]);
        assert_eq!(r.valid, Validity::True);
        assert!(r.queue.is_none() && r.log.is_none() && r.register.is_none());
    }

    #[test]
    fn malformed_history_is_unknown() {
        let events = crate::history::parse_jsonl(
            r#"{"index":0,"time":0,"type":"ok","process":0,"f":"send","value":null}"#,
        )
        .unwrap();
        let r = check_history(&events);
        assert_eq!(r.valid, Validity::Unknown);
        assert_eq!(r.malformed.len(), 1);
    }
}
