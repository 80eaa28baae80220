//! The Kafka queue anomalies of HISTORY.md, after Jepsen's `jepsen.tests.kafka` checker, for a
//! log with dense offsets and single-record sends (no transactions).
//!
//! Reads are the records of `ok` polls and `ok` final reads; writes are sends (`ok` and `info`).
//! Each anomaly lists JSON objects naming the key, the values and offsets involved and the
//! offending operations (`{process, f, type, index, completion}`: look them up in the history).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use serde::Serialize;
use serde_json::{json, Value};

use super::decode::Decoded;
use super::op_ref;
use crate::history::{EventType, Operation};

pub const LOST_WRITE: &str = "lost-write";
pub const UNSEEN: &str = "unseen";
pub const DUPLICATE: &str = "duplicate";
pub const INCONSISTENT_OFFSETS: &str = "inconsistent-offsets";
pub const NONMONOTONIC_SEND: &str = "nonmonotonic-send";
pub const POLL_SKIP: &str = "poll-skip";
pub const NONMONOTONIC_POLL: &str = "nonmonotonic-poll";
pub const G1A: &str = "G1a";
pub const PHANTOM_READ: &str = "phantom-read";

/// At most this many skipped offsets are spelled out in a `poll-skip`.
const MAX_SKIPPED_LISTED: i64 = 32;

#[derive(Debug, Clone, Serialize)]
pub struct QueueReport {
    pub valid: bool,
    /// The anomaly names found, sorted.
    pub anomaly_types: Vec<String>,
    pub anomalies: BTreeMap<String, Vec<Value>>,
    pub stats: QueueStats,
}

/// How many operations completed each way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Outcomes {
    pub ok: usize,
    pub info: usize,
    pub fail: usize,
}

impl Outcomes {
    fn count(&mut self, kind: EventType) {
        match kind {
            EventType::Ok => self.ok += 1,
            EventType::Fail => self.fail += 1,
            EventType::Info | EventType::Invoke => self.info += 1,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct QueueStats {
    /// Keys any queue operation named.
    pub keys: usize,
    pub sends: Outcomes,
    pub polls: Outcomes,
    pub assigns: Outcomes,
    pub list_offsets: Outcomes,
    pub final_reads: Outcomes,
    /// Records returned by `ok` polls.
    pub records_polled: usize,
    /// Per key: `ok` sends never read, beyond the last offset read (anomalies only with a final read).
    pub unseen: BTreeMap<String, usize>,
    /// Per key: the highest offset read.
    pub max_read_offset: BTreeMap<String, i64>,
}

/// Where a key's value was seen: an `ok` send or a read.
#[derive(Clone, Copy)]
struct Sighting {
    offset: i64,
    value: i64,
    op: usize,
}

/// A send of a value to a key.
#[derive(Clone, Copy)]
struct Writer {
    kind: EventType,
    op: usize,
}

/// Runs the queue checker over decoded operations (`(position in ops, decoded)`).
pub fn check(ops: &[Operation], decoded: &[(usize, Decoded)]) -> QueueReport {
    let mut stats = QueueStats::default();
    let mut keys = BTreeSet::new();
    let mut writers: HashMap<(i64, i64), Writer> = HashMap::new();
    let mut sightings: BTreeMap<i64, Vec<Sighting>> = BTreeMap::new();
    let mut reads: Vec<(i64, Sighting)> = Vec::new();
    let mut final_read_keys = BTreeSet::new();
    let mut anomalies: BTreeMap<String, Vec<Value>> = BTreeMap::new();

    // Pass 1: writers, sightings, counts.
    for (i, d) in decoded {
        let op = &ops[*i];
        let ok = op.kind == EventType::Ok;
        match d {
            Decoded::Send { key, value, offset } => {
                stats.sends.count(op.kind);
                keys.insert(*key);
                let w = Writer {
                    kind: op.kind,
                    op: *i,
                };
                writers.entry((*key, *value)).or_insert(w);
                if let (true, Some(offset)) = (ok, offset) {
                    let s = Sighting {
                        offset: *offset,
                        value: *value,
                        op: *i,
                    };
                    sightings.entry(*key).or_default().push(s);
                }
            }
            Decoded::Assign { keys: ks } => {
                stats.assigns.count(op.kind);
                keys.extend(ks);
            }
            Decoded::Poll { records } => {
                stats.polls.count(op.kind);
                for (key, rs) in records {
                    keys.insert(*key);
                    stats.records_polled += rs.len();
                    for &(offset, value) in rs {
                        let s = Sighting {
                            offset,
                            value,
                            op: *i,
                        };
                        sightings.entry(*key).or_default().push(s);
                        reads.push((*key, s));
                    }
                }
            }
            Decoded::ListOffsets { key, .. } => {
                stats.list_offsets.count(op.kind);
                keys.insert(*key);
            }
            Decoded::FinalRead { key, records, .. } => {
                stats.final_reads.count(op.kind);
                keys.insert(*key);
                if ok {
                    final_read_keys.insert(*key);
                    for &(offset, value) in records {
                        let s = Sighting {
                            offset,
                            value,
                            op: *i,
                        };
                        sightings.entry(*key).or_default().push(s);
                        reads.push((*key, s));
                    }
                }
            }
            _ => {}
        }
    }
    stats.keys = keys.len();

    // Each key's version log: offset -> value -> first operation that put or saw it there.
    let mut by_offset: BTreeMap<i64, BTreeMap<i64, BTreeMap<i64, usize>>> = BTreeMap::new();
    let mut by_value: BTreeMap<i64, BTreeMap<i64, BTreeMap<i64, usize>>> = BTreeMap::new();
    for (key, ss) in &sightings {
        let offsets = by_offset.entry(*key).or_default();
        let values = by_value.entry(*key).or_default();
        for s in ss {
            offsets
                .entry(s.offset)
                .or_default()
                .entry(s.value)
                .or_insert(s.op);
            values
                .entry(s.value)
                .or_default()
                .entry(s.offset)
                .or_insert(s.op);
        }
    }

    // inconsistent-offsets: one offset, several values.
    for (key, offsets) in &by_offset {
        for (offset, values) in offsets.iter().filter(|(_, vs)| vs.len() > 1) {
            let sources: Vec<Value> = values
                .iter()
                .map(|(v, op)| json!({"value": v, "op": op_ref(&ops[*op])}))
                .collect();
            report(
                &mut anomalies,
                INCONSISTENT_OFFSETS,
                json!({"key": key, "offset": offset, "values": values.keys().collect::<Vec<_>>(),
                       "sources": sources}),
            );
        }
    }

    // duplicate: one value, several offsets.
    for (key, values) in &by_value {
        for (value, offsets) in values.iter().filter(|(_, os)| os.len() > 1) {
            let sources: Vec<Value> = offsets
                .iter()
                .map(|(o, op)| json!({"offset": o, "op": op_ref(&ops[*op])}))
                .collect();
            report(
                &mut anomalies,
                DUPLICATE,
                json!({"key": key, "value": value, "offsets": offsets.keys().collect::<Vec<_>>(),
                       "sources": sources}),
            );
        }
    }

    // G1a (a read of a failed send) and phantom reads (a read of a value never sent), once per
    // reading operation.
    let mut reported = BTreeSet::new();
    for (key, s) in &reads {
        let writer = writers.get(&(*key, s.value));
        let name = match writer {
            Some(w) if w.kind == EventType::Fail => G1A,
            None => PHANTOM_READ,
            _ => continue,
        };
        if !reported.insert((s.op, *key, s.value)) {
            continue;
        }
        let mut v = json!({"key": key, "value": s.value, "offset": s.offset,
                           "reader": op_ref(&ops[s.op])});
        if let Some(w) = writer {
            v["writer"] = op_ref(&ops[w.op]);
        }
        report(&mut anomalies, name, v);
    }

    // lost-write and unseen: ok sends never read, below or above the highest offset read.
    let mut max_read: BTreeMap<i64, Sighting> = BTreeMap::new();
    let mut read_values: HashSet<(i64, i64)> = HashSet::new();
    for (key, s) in &reads {
        read_values.insert((*key, s.value));
        let m = max_read.entry(*key).or_insert(*s);
        if s.offset > m.offset {
            *m = *s;
        }
    }
    for (key, m) in &max_read {
        stats.max_read_offset.insert(key.to_string(), m.offset);
    }
    for (i, d) in decoded {
        let (
            Decoded::Send {
                key,
                value,
                offset: Some(offset),
            },
            EventType::Ok,
        ) = (d, ops[*i].kind)
        else {
            continue;
        };
        if read_values.contains(&(*key, *value)) {
            continue;
        }
        match max_read.get(key) {
            Some(m) if *offset <= m.offset => report(
                &mut anomalies,
                LOST_WRITE,
                json!({"key": key, "value": value, "offset": offset,
                       "max_read_offset": m.offset, "writer": op_ref(&ops[*i]),
                       "max_read": op_ref(&ops[m.op])}),
            ),
            m => {
                *stats.unseen.entry(key.to_string()).or_default() += 1;
                if final_read_keys.contains(key) {
                    report(
                        &mut anomalies,
                        UNSEEN,
                        json!({"key": key, "value": value, "offset": offset,
                               "max_read_offset": m.map(|m| m.offset), "writer": op_ref(&ops[*i])}),
                    );
                }
            }
        }
    }

    // Per process, in order: nonmonotonic-send, poll-skip, nonmonotonic-poll.
    let mut last_send: HashMap<(u64, i64), Sighting> = HashMap::new();
    let mut position: HashMap<u64, HashMap<i64, Sighting>> = HashMap::new();
    let steps = Steps {
        ops,
        by_offset: &by_offset,
    };
    for (i, d) in decoded {
        let op = &ops[*i];
        if op.kind != EventType::Ok {
            continue;
        }
        match d {
            Decoded::Send {
                key,
                value,
                offset: Some(offset),
            } => {
                let s = Sighting {
                    offset: *offset,
                    value: *value,
                    op: *i,
                };
                if let Some(p) = last_send.insert((op.process, *key), s) {
                    if s.offset <= p.offset {
                        report(
                            &mut anomalies,
                            NONMONOTONIC_SEND,
                            json!({"key": key, "process": op.process,
                                   "offsets": [p.offset, s.offset], "values": [p.value, s.value],
                                   "delta": s.offset - p.offset,
                                   "ops": [op_ref(&ops[p.op]), op_ref(op)]}),
                        );
                    }
                }
            }
            Decoded::Assign { .. } => {
                position.remove(&op.process);
            }
            Decoded::Poll { records } => {
                let at = position.entry(op.process).or_default();
                for (key, rs) in records {
                    let mut prev = at.get(key).copied();
                    for &(offset, value) in rs {
                        let next = Sighting {
                            offset,
                            value,
                            op: *i,
                        };
                        if prev.is_some() {
                            steps.check(&mut anomalies, *key, op.process, prev, next);
                        }
                        prev = Some(next);
                    }
                    at.insert(*key, prev.expect("polls list keys with records only"));
                }
            }
            Decoded::FinalRead {
                key,
                end: Some(end),
                records,
            } => {
                // A final read returns exactly offsets 0..end: checked like one poll from 0.
                let mut prev = None;
                for &(offset, value) in records {
                    let next = Sighting {
                        offset,
                        value,
                        op: *i,
                    };
                    steps.check(&mut anomalies, *key, op.process, prev, next);
                    prev = Some(next);
                }
                let last = prev.map_or(-1, |p| p.offset);
                if last + 1 < *end {
                    report(
                        &mut anomalies,
                        POLL_SKIP,
                        json!({"key": key, "process": op.process, "offsets": [prev.map(|p| p.offset), end],
                               "delta": end - last, "skipped": steps.known(*key, last + 1, *end),
                               "ops": [op_ref(op)], "end": end}),
                    );
                }
            }
            _ => {}
        }
    }

    let anomaly_types: Vec<String> = anomalies.keys().cloned().collect();
    QueueReport {
        valid: anomaly_types.is_empty(),
        anomaly_types,
        anomalies,
        stats,
    }
}

fn report(anomalies: &mut BTreeMap<String, Vec<Value>>, name: &str, v: Value) {
    anomalies.entry(name.to_string()).or_default().push(v);
}

/// Checks successive records a process read from one key.
struct Steps<'a> {
    ops: &'a [Operation],
    by_offset: &'a BTreeMap<i64, BTreeMap<i64, BTreeMap<i64, usize>>>,
}

impl Steps<'_> {
    /// Values known at offsets `from..to` (at most `MAX_SKIPPED_LISTED` offsets).
    fn known(&self, key: i64, from: i64, to: i64) -> Vec<i64> {
        let Some(offsets) = self.by_offset.get(&key) else {
            return Vec::new();
        };
        let to = to.min(from.saturating_add(MAX_SKIPPED_LISTED));
        if from >= to {
            return Vec::new();
        }
        offsets
            .range(from..to)
            .flat_map(|(_, vs)| vs.keys().copied())
            .collect()
    }

    /// `next` must come right after `prev` (or be offset 0 when `prev` is `None`).
    fn check(
        &self,
        anomalies: &mut BTreeMap<String, Vec<Value>>,
        key: i64,
        process: u64,
        prev: Option<Sighting>,
        next: Sighting,
    ) {
        let delta = match prev {
            Some(p) => next.offset - p.offset,
            None => next.offset + 1,
        };
        if delta == 1 {
            return;
        }
        let last_offset = prev.map(|p| p.offset);
        let mut ops_involved = vec![op_ref(&self.ops[next.op])];
        if let Some(p) = prev.filter(|p| p.op != next.op) {
            ops_involved.insert(0, op_ref(&self.ops[p.op]));
        }
        if delta > 1 {
            let from = last_offset.map_or(0, |o| o + 1);
            report(
                anomalies,
                POLL_SKIP,
                json!({"key": key, "process": process, "offsets": [last_offset, next.offset],
                       "delta": delta, "skipped": self.known(key, from, next.offset),
                       "ops": ops_involved}),
            );
        } else {
            report(
                anomalies,
                NONMONOTONIC_POLL,
                json!({"key": key, "process": process, "offsets": [last_offset, next.offset],
                       "values": [prev.map(|p| p.value), next.value], "delta": delta,
                       "ops": ops_involved}),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::decode::decode_all;
    use crate::history::{pair_operations, parse_jsonl};

    fn run(text: &str) -> QueueReport {
        let ops = pair_operations(&parse_jsonl(text).unwrap());
        let (decoded, problems) = decode_all(&ops);
        assert!(problems.is_empty(), "{problems:?}");
        check(&ops, &decoded)
    }

    /// A tiny history builder: each line `process f input output` with `-` for none.
    fn history(lines: &[(u64, &str, &str, &str, &str)]) -> String {
        let mut out = String::new();
        let mut i = 0;
        for &(p, f, kind, input, output) in lines {
            out += &format!(
                "{{\"index\":{i},\"time\":{i},\"type\":\"invoke\",\"process\":{p},\"f\":\"{f}\",\"value\":{input}}}\n"
            );
            i += 1;
            if kind != "-" {
                out += &format!(
                    "{{\"index\":{i},\"time\":{i},\"type\":\"{kind}\",\"process\":{p},\"f\":\"{f}\",\"value\":{output}}}\n"
                );
                i += 1;
            }
        }
        out
    }

    #[test]
    fn lost_write_reports_writer_and_reader() {
        let r = run(&history(&[
            (
                0,
                "send",
                "ok",
                r#"{"key":0,"value":1}"#,
                r#"{"key":0,"value":1,"offset":0}"#,
            ),
            (
                0,
                "send",
                "ok",
                r#"{"key":0,"value":2}"#,
                r#"{"key":0,"value":2,"offset":1}"#,
            ),
            (1, "poll", "ok", "null", r#"{"records":{"0":[[1,2]]}}"#),
            (
                0,
                "send",
                "ok",
                r#"{"key":0,"value":3}"#,
                r#"{"key":0,"value":3,"offset":2}"#,
            ),
        ]));
        assert_eq!(r.anomaly_types, vec![LOST_WRITE]);
        let lost = &r.anomalies[LOST_WRITE][0];
        assert_eq!(lost["value"], json!(1));
        assert_eq!(lost["writer"]["index"], json!(0));
        assert_eq!(lost["max_read"]["index"], json!(4));
        assert_eq!(r.stats.unseen["0"], 1);
        assert_eq!(
            r.stats.sends,
            Outcomes {
                ok: 3,
                info: 0,
                fail: 0
            }
        );
    }

    #[test]
    fn final_read_gaps_are_skips() {
        let r = run(&history(&[
            (
                0,
                "send",
                "ok",
                r#"{"key":0,"value":1}"#,
                r#"{"key":0,"value":1,"offset":0}"#,
            ),
            (
                0,
                "send",
                "ok",
                r#"{"key":0,"value":2}"#,
                r#"{"key":0,"value":2,"offset":1}"#,
            ),
            (
                1,
                "final-read",
                "ok",
                r#"{"key":0}"#,
                r#"{"key":0,"end":3,"records":[[1,2]]}"#,
            ),
        ]));
        assert_eq!(r.anomaly_types, vec![LOST_WRITE, POLL_SKIP]);
        let skips = &r.anomalies[POLL_SKIP];
        assert_eq!(skips.len(), 2);
        assert_eq!(skips[0]["skipped"], json!([1]));
        assert_eq!(skips[1]["offsets"], json!([1, 3]));
    }

    #[test]
    fn phantom_read() {
        let r = run(&history(&[(
            1,
            "poll",
            "ok",
            "null",
            r#"{"records":{"0":[[0,9]]}}"#,
        )]));
        assert_eq!(r.anomaly_types, vec![PHANTOM_READ]);
    }

    #[test]
    fn failed_poll_does_not_move_the_position() {
        let r = run(&history(&[
            (
                0,
                "send",
                "ok",
                r#"{"key":0,"value":1}"#,
                r#"{"key":0,"value":1,"offset":0}"#,
            ),
            (
                0,
                "send",
                "ok",
                r#"{"key":0,"value":2}"#,
                r#"{"key":0,"value":2,"offset":1}"#,
            ),
            (1, "poll", "ok", "null", r#"{"records":{"0":[[0,1]]}}"#),
            (1, "poll", "fail", "null", "null"),
            (1, "poll", "ok", "null", r#"{"records":{"0":[[1,2]]}}"#),
        ]));
        assert!(r.valid, "{:?}", r.anomalies);
        assert_eq!(
            r.stats.polls,
            Outcomes {
                ok: 2,
                info: 0,
                fail: 1
            }
        );
    }
}
