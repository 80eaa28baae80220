//! The checkers against the hand-written histories of `histories/` (`expected.json` says what each
//! must yield) and against large generated histories (performance).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use gregor_jepsen::checker::{check_history, CheckReport, Validity};
use gregor_jepsen::history::{read_jsonl, Event, EventType, HistoryWriter, Process};
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Deserialize)]
struct Expected {
    linearizable: bool,
    anomalies: Vec<String>,
}

fn histories_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("histories")
}

fn expected() -> BTreeMap<String, Expected> {
    let text = std::fs::read_to_string(histories_dir().join("expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Linearizability of both models together (the queue anomalies aside).
fn linearizable(r: &CheckReport) -> Validity {
    r.log
        .iter()
        .chain(r.register.iter())
        .fold(Validity::True, |v, l| v.and(l.valid))
}

fn anomaly_types(r: &CheckReport) -> Vec<String> {
    r.queue
        .as_ref()
        .map(|q| q.anomaly_types.clone())
        .unwrap_or_default()
}

#[test]
fn every_history_is_in_expected_json() {
    let expected = expected();
    let files: BTreeSet<String> = std::fs::read_dir(histories_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".jsonl"))
        .collect();
    let listed: BTreeSet<String> = expected.keys().cloned().collect();
    assert_eq!(files, listed);
}

#[test]
fn histories_match_expected() {
    let mut failures = Vec::new();
    for (name, want) in expected() {
        let events = read_jsonl(histories_dir().join(&name)).unwrap();
        let report = check_history(&events);
        assert!(
            report.malformed.is_empty(),
            "{name}: {:?}",
            report.malformed
        );
        let mut want_anomalies = want.anomalies.clone();
        want_anomalies.sort();
        let lin = linearizable(&report);
        let got_anomalies = anomaly_types(&report);
        if lin != want.linearizable.into() || got_anomalies != want_anomalies {
            failures.push(format!(
                "{name}: linearizable {lin:?} (want {}), anomalies {got_anomalies:?} (want {want_anomalies:?})\n{}",
                want.linearizable,
                serde_json::to_string_pretty(&report).unwrap()
            ));
        }
        // The overall verdict is the conjunction.
        let all_good = want.linearizable && want_anomalies.is_empty();
        assert_eq!(report.valid, all_good.into(), "{name}");
        // A non-linearizable key explains itself.
        for l in report.log.iter().chain(report.register.iter()) {
            for (key, v) in &l.keys {
                if v.valid == Validity::False {
                    assert!(
                        v.failed_op.is_some() && v.prefix_len.is_some(),
                        "{name} {key}"
                    );
                    assert_eq!(v.prefix.as_ref().map(Vec::len), v.prefix_len);
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Spot checks of the details reported for the ported Jepsen cases.
#[test]
fn anomaly_details() {
    let check = |name: &str| check_history(&read_jsonl(histories_dir().join(name)).unwrap());
    let anomalies = |r: &CheckReport, a: &str| r.queue.as_ref().unwrap().anomalies[a].clone();

    let r = check("lost-write.jsonl");
    let lost = anomalies(&r, "lost-write");
    let lost: Vec<_> = lost
        .iter()
        .map(|l| (l["value"].clone(), l["offset"].clone()))
        .collect();
    assert_eq!(lost, vec![(json!(1), json!(0)), (json!(2), json!(1))]);
    assert_eq!(r.queue.as_ref().unwrap().stats.unseen["0"], 1);

    let r = check("duplicate.jsonl");
    let dup = &anomalies(&r, "duplicate")[0];
    assert_eq!(
        (dup["value"].clone(), dup["offsets"].clone()),
        (json!(1), json!([1, 3]))
    );

    let r = check("nonmonotonic-send.jsonl");
    let nm = &anomalies(&r, "nonmonotonic-send")[0];
    assert_eq!(
        (nm["values"].clone(), nm["delta"].clone()),
        (json!([4, 1]), json!(-3))
    );

    let r = check("poll-skip.jsonl");
    let skip = &anomalies(&r, "poll-skip")[0];
    assert_eq!(
        (skip["skipped"].clone(), skip["delta"].clone()),
        (json!([3]), json!(2))
    );

    let r = check("nonmonotonic-poll.jsonl");
    let nm = &anomalies(&r, "nonmonotonic-poll")[0];
    assert_eq!(
        (nm["values"].clone(), nm["delta"].clone()),
        (json!([3, 2]), json!(-1))
    );

    let r = check("G1a.jsonl");
    let g = &anomalies(&r, "G1a")[0];
    assert_eq!(
        (g["value"].clone(), g["writer"]["type"].clone()),
        (json!(2), json!("fail"))
    );

    let r = check("inconsistent-offsets.jsonl");
    let i = &anomalies(&r, "inconsistent-offsets")[0];
    assert_eq!(
        (i["key"].clone(), i["values"].clone()),
        (json!(11), json!([641, 645]))
    );

    // The stale read is the operation that could not be linearized.
    let r = check("lin-register-stale-read.jsonl");
    let key = &r.register.as_ref().unwrap().keys["t0"];
    assert_eq!(
        key.failed_op.as_ref().unwrap()["op"]["invoke_index"],
        json!(4)
    );
    assert_eq!(key.prefix_len, Some(2));
}

/// A deterministic pseudo-random generator (splitmix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// How an operation in flight will end.
#[derive(Clone, Copy, PartialEq)]
enum Fate {
    Ok,
    Fail,
    /// Info, having taken effect or not.
    Info(bool),
}

struct InFlight {
    f: &'static str,
    input: Value,
    fate: Fate,
    /// The completion's value once the operation took effect.
    output: Option<Value>,
}

/// A client slot: the process currently using it, its consumer and its operation in flight.
struct Slot {
    process: u64,
    assigned: Vec<i64>,
    position: HashMap<i64, usize>,
    op: Option<InFlight>,
}

/// Simulates a correct Kafka-like system: each operation takes effect atomically at a random point
/// between its invocation and completion, so the history is linearizable and anomaly-free.
struct Sim {
    rng: Rng,
    w: HistoryWriter,
    logs: Vec<Vec<i64>>,
    registers: BTreeMap<String, Option<i64>>,
    slots: Vec<Slot>,
    next_value: i64,
    next_process: u64,
    completed: usize,
    infos: usize,
}

impl Sim {
    fn new(seed: u64, keys: usize, registers: usize, concurrency: usize) -> Sim {
        let slots = (0..concurrency as u64)
            .map(|p| Slot {
                process: p,
                assigned: Vec::new(),
                position: HashMap::new(),
                op: None,
            })
            .collect();
        Sim {
            rng: Rng(seed),
            w: HistoryWriter::new(),
            logs: vec![Vec::new(); keys],
            registers: (0..registers)
                .map(|i| (format!("topic-{i}"), None))
                .collect(),
            slots,
            next_value: 1,
            next_process: concurrency as u64,
            completed: 0,
            infos: 0,
        }
    }

    fn run(mut self, ops: usize) -> Vec<Event> {
        while self.completed < ops {
            if self.rng.below(2000) == 0 {
                let f = if self.rng.chance(50) {
                    "partition"
                } else {
                    "heal"
                };
                self.w.nemesis(f, json!({"nodes": [self.rng.below(3)]}));
            }
            let s = self.rng.below(self.slots.len() as u64) as usize;
            self.advance(s);
        }
        // Let everything in flight finish, then read every partition back.
        while self.slots.iter().any(|s| s.op.is_some()) {
            let s = self.rng.below(self.slots.len() as u64) as usize;
            if self.slots[s].op.is_some() {
                self.advance(s);
            }
        }
        let p = self.next_process;
        for key in 0..self.logs.len() {
            let records: Vec<[i64; 2]> = self.logs[key]
                .iter()
                .enumerate()
                .map(|(o, &v)| [o as i64, v])
                .collect();
            self.w.invoke(p, "final-read", json!({"key": key}));
            let out = json!({"key": key, "end": records.len(), "records": records});
            self.w.complete(EventType::Ok, p, "final-read", out, None);
        }
        self.w.finish().unwrap()
    }

    /// Invokes, applies or completes the operation of slot `s`.
    fn advance(&mut self, s: usize) {
        match self.slots[s].op.take() {
            None => self.invoke(s),
            Some(mut op) if op.output.is_none() && op.fate != Fate::Fail => {
                op.output = Some(if op.fate == Fate::Info(false) {
                    Value::Null
                } else {
                    self.apply(s, op.f, &op.input)
                });
                self.slots[s].op = Some(op);
            }
            Some(op) => self.complete(s, op),
        }
    }

    fn invoke(&mut self, s: usize) {
        let r = self.rng.below(100);
        let (f, input) = if r < 45 {
            let key = self.rng.below(self.logs.len() as u64);
            let value = self.next_value;
            self.next_value += 1;
            ("send", json!({"key": key, "value": value}))
        } else if r < 80 {
            ("poll", Value::Null)
        } else if r < 84 || self.slots[s].assigned.is_empty() {
            let n = 1 + self.rng.below(3);
            let keys: BTreeSet<u64> = (0..n)
                .map(|_| self.rng.below(self.logs.len() as u64))
                .collect();
            ("assign", json!({"keys": keys}))
        } else if r < 88 {
            (
                "list-offsets",
                json!({"key": self.rng.below(self.logs.len() as u64)}),
            )
        } else {
            let key = format!("topic-{}", self.rng.below(self.registers.len() as u64));
            if r < 94 {
                let value = self.next_value;
                self.next_value += 1;
                ("write", json!({"key": key, "value": value}))
            } else {
                ("read", json!({"key": key}))
            }
        };
        let fate = match self.rng.below(1000) {
            0..=9 => Fate::Fail,
            10..=19 => Fate::Info(self.rng.chance(50)),
            _ => Fate::Ok,
        };
        self.w.invoke(self.slots[s].process, f, input.clone());
        self.slots[s].op = Some(InFlight {
            f,
            input,
            fate,
            output: None,
        });
    }

    /// The operation takes effect; returns its completion value.
    fn apply(&mut self, s: usize, f: &str, input: &Value) -> Value {
        let key = input["key"].as_i64().unwrap_or(0);
        let rng = &mut self.rng;
        let slot = &mut self.slots[s];
        match f {
            "send" => {
                let log = &mut self.logs[key as usize];
                log.push(input["value"].as_i64().unwrap());
                json!({"key": key, "value": input["value"], "offset": log.len() - 1})
            }
            "poll" => {
                let mut records = serde_json::Map::new();
                for &k in &slot.assigned {
                    let log = &self.logs[k as usize];
                    let pos = slot.position.entry(k).or_insert(0);
                    let end = log.len().min(*pos + 1 + rng.below(12) as usize);
                    let rs: Vec<[i64; 2]> = (*pos..end).map(|o| [o as i64, log[o]]).collect();
                    *pos = end;
                    if !rs.is_empty() || rng.chance(20) {
                        records.insert(k.to_string(), json!(rs));
                    }
                }
                json!({ "records": records })
            }
            "assign" => {
                slot.assigned = input["keys"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|k| k.as_i64().unwrap())
                    .collect();
                // A new assignment starts somewhere near the end of each partition.
                slot.position = slot
                    .assigned
                    .iter()
                    .map(|&k| {
                        let len = self.logs[k as usize].len();
                        (k, len.saturating_sub(rng.below(20) as usize))
                    })
                    .collect();
                input.clone()
            }
            "list-offsets" => json!({"key": key, "offset": self.logs[key as usize].len()}),
            "write" => {
                let k = input["key"].as_str().unwrap().to_string();
                self.registers.insert(k, input["value"].as_i64());
                input.clone()
            }
            "read" => {
                let k = input["key"].as_str().unwrap();
                json!({"key": k, "value": self.registers[k]})
            }
            _ => unreachable!(),
        }
    }

    fn complete(&mut self, s: usize, op: InFlight) {
        let process = self.slots[s].process;
        self.completed += 1;
        match op.fate {
            Fate::Ok => {
                self.w
                    .complete(EventType::Ok, process, op.f, op.output.unwrap(), None);
            }
            Fate::Fail => {
                self.w.complete(
                    EventType::Fail,
                    process,
                    op.f,
                    op.input,
                    Some("NOT_LEADER".into()),
                );
            }
            Fate::Info(_) => {
                self.w.complete(
                    EventType::Info,
                    process,
                    op.f,
                    op.input,
                    Some("timed out".into()),
                );
                self.infos += 1;
                // The process may still be doing it: the slot continues as a new process.
                let slot = &mut self.slots[s];
                slot.process = self.next_process;
                self.next_process += 1;
                slot.assigned.clear();
                slot.position.clear();
            }
        }
    }
}

/// What the bound on checking time is: the target is release mode.
fn time_bound() -> Duration {
    if cfg!(debug_assertions) {
        Duration::from_secs(300)
    } else {
        Duration::from_secs(30)
    }
}

fn generated(seed: u64) -> Vec<Event> {
    Sim::new(seed, 8, 2, 10).run(30_000)
}

#[test]
fn large_valid_history_checks_quickly() {
    let events = generated(7);
    let infos = events
        .iter()
        .filter(|e| e.kind == EventType::Info && e.process != Process::Nemesis)
        .count();
    let started = Instant::now();
    let report = check_history(&events);
    let took = started.elapsed();
    println!(
        "large valid history: {} events, {} operations, {} info, checked in {took:?}",
        events.len(),
        report.operations,
        infos
    );
    let log = report.log.as_ref().unwrap();
    for (key, v) in log
        .keys
        .iter()
        .chain(report.register.as_ref().unwrap().keys.iter())
    {
        println!(
            "  key {key}: {} operations, {} steps",
            v.operations, v.steps
        );
    }
    assert!(report.malformed.is_empty(), "{:?}", report.malformed);
    assert_eq!(
        report.valid,
        Validity::True,
        "{}",
        serde_json::to_string_pretty(&report).unwrap()
    );
    assert_eq!(log.keys.len(), 8);
    assert!(
        report.operations >= 30_000 && infos >= 100,
        "{} {infos}",
        report.operations
    );
    assert!(took < time_bound(), "took {took:?}");
}

#[test]
fn large_history_with_a_bad_read_fails_quickly() {
    let mut events = generated(11);
    // Corrupt one record of a poll in the middle of the run: it now shows the value of the next
    // offset, a duplicate and an inconsistent offset, and not linearizable.
    let at = events
        .iter()
        .enumerate()
        .skip(events.len() / 2)
        .find(|(_, e)| {
            e.f == "poll"
                && e.kind == EventType::Ok
                && e.value["records"]
                    .as_object()
                    .unwrap()
                    .values()
                    .any(|rs| rs.as_array().unwrap().len() >= 2)
        })
        .map(|(i, _)| i)
        .unwrap();
    let records = events[at].value["records"].as_object_mut().unwrap();
    let rs = records
        .values_mut()
        .find(|rs| rs.as_array().unwrap().len() >= 2)
        .unwrap();
    rs[0][1] = rs[1][1].clone();

    let started = Instant::now();
    let report = check_history(&events);
    let took = started.elapsed();
    println!("large history with a bad read at index {at}: checked in {took:?}");
    assert_eq!(report.valid, Validity::False);
    assert_eq!(report.log.as_ref().unwrap().valid, Validity::False);
    let types = anomaly_types(&report);
    assert!(types.contains(&"duplicate".to_string()), "{types:?}");
    assert!(
        types.contains(&"inconsistent-offsets".to_string()),
        "{types:?}"
    );
    let bad: Vec<_> = report
        .log
        .as_ref()
        .unwrap()
        .keys
        .values()
        .filter(|v| v.valid == Validity::False)
        .collect();
    assert_eq!(bad.len(), 1);
    assert_eq!(
        bad[0].failed_op.as_ref().unwrap()["op"]["complete_index"],
        json!(at)
    );
    assert!(took < time_bound(), "took {took:?}");
}
