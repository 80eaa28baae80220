//! The `log` and `register` models of HISTORY.md and the preprocessing that turns a history's
//! operations into per-key model operations (P-compositionality: each key is checked alone).
//!
//! Call and return times are event indices: the file is in the order events happened.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::rc::Rc;

use serde_json::{json, Value};

use super::decode::{Decoded, Record};
use super::linear::{LinOp, Model, INFINITY};
use crate::history::{EventType, Operation};

/// An operation on one partition log.
#[derive(Debug, Clone, PartialEq)]
pub enum LogOp {
    /// Legal iff the log's length is `offset`; appends `value`.
    Send { value: i64, offset: i64 },
    /// One key of an `ok` poll. Legal iff the records are non-empty, contiguous and ascending,
    /// start at `from` (when known), and are all in the log.
    Read {
        from: Option<i64>,
        records: Vec<Record>,
    },
    /// Legal iff the log's length is `end`.
    ListOffsets { end: i64 },
    /// Legal iff the log is exactly `records`, with offsets `0..end`.
    FinalRead { end: i64, records: Vec<Record> },
}

impl LogOp {
    /// A JSON view for reports.
    pub fn describe(&self) -> Value {
        match self {
            LogOp::Send { value, offset } => json!({"send": {"value": value, "offset": offset}}),
            LogOp::Read { from, records } => json!({"read": {"from": from, "records": records}}),
            LogOp::ListOffsets { end } => json!({"list-offsets": {"end": end}}),
            LogOp::FinalRead { end, records } => {
                json!({"final-read": {"end": end, "records": records}})
            }
        }
    }
}

/// An operation on one register.
#[derive(Debug, Clone, PartialEq)]
pub enum RegisterOp {
    Write(Option<i64>),
    Read(Option<i64>),
}

impl RegisterOp {
    /// A JSON view for reports.
    pub fn describe(&self) -> Value {
        match self {
            RegisterOp::Write(v) => json!({"write": v}),
            RegisterOp::Read(v) => json!({"read": v}),
        }
    }
}

/// A history's operations for the linearizability checkers, per key. `LinOp::origin` is the
/// operation's position in the slice given to [`prepare`].
#[derive(Debug, Clone, Default)]
pub struct Prepared {
    pub log: BTreeMap<i64, Vec<LinOp<LogOp>>>,
    pub register: BTreeMap<String, Vec<LinOp<RegisterOp>>>,
}

/// Applies HISTORY.md's preprocessing to decoded operations (`(position in ops, decoded)`).
pub fn prepare(ops: &[Operation], decoded: &[(usize, Decoded)]) -> Prepared {
    // Reads (ok polls and ok final reads), per key: the lowest offset each value was read at;
    // and the values ok register reads returned.
    let mut read_at: HashMap<(i64, i64), i64> = HashMap::new();
    let mut register_reads: HashSet<(&str, Option<i64>)> = HashSet::new();
    for (i, d) in decoded {
        if ops[*i].kind != EventType::Ok {
            continue;
        }
        let mut note = |key: i64, records: &[Record]| {
            for &(offset, value) in records {
                read_at
                    .entry((key, value))
                    .and_modify(|o| *o = (*o).min(offset))
                    .or_insert(offset);
            }
        };
        match d {
            Decoded::Poll { records } => records.iter().for_each(|(k, rs)| note(*k, rs)),
            Decoded::FinalRead { key, records, .. } => note(*key, records),
            Decoded::Read { key, value } => {
                register_reads.insert((key, *value));
            }
            _ => {}
        }
    }

    let mut out = Prepared::default();
    // Process -> key -> offset its previous poll of the key ended at (since its latest assign).
    let mut positions: HashMap<u64, HashMap<i64, i64>> = HashMap::new();
    for (i, d) in decoded {
        let op = &ops[*i];
        let call = op.invoke_index;
        let ret = match (op.kind, op.complete_index) {
            (EventType::Ok, Some(r)) => r,
            (EventType::Info, _) => INFINITY,
            // `fail` did not happen.
            _ => continue,
        };
        let lin = |op: LogOp| LinOp {
            call,
            ret,
            op,
            origin: *i,
        };
        match d {
            Decoded::Send { key, value, offset } => {
                // An info send takes the offset it was read at; one never read is dropped
                // (it could always be placed after everything else).
                let offset = match offset {
                    Some(o) if op.kind == EventType::Ok => Some(*o),
                    _ => read_at.get(&(*key, *value)).copied(),
                };
                if let Some(offset) = offset {
                    out.log.entry(*key).or_default().push(lin(LogOp::Send {
                        value: *value,
                        offset,
                    }));
                }
            }
            // Reads of an info operation constrain nothing.
            _ if op.kind != EventType::Ok => {
                if let Decoded::Write { key, value } = d {
                    // An info write nobody read is dropped too, for the same reason.
                    if register_reads.contains(&(key.as_str(), *value)) {
                        let w = LinOp {
                            call,
                            ret,
                            op: RegisterOp::Write(*value),
                            origin: *i,
                        };
                        out.register.entry(key.clone()).or_default().push(w);
                    }
                }
            }
            Decoded::Assign { .. } => {
                positions.remove(&op.process);
            }
            Decoded::Poll { records } => {
                let position = positions.entry(op.process).or_default();
                for (key, rs) in records {
                    let Some(&(last, _)) = rs.last() else {
                        continue;
                    };
                    let from = position.insert(*key, last).map(|previous| previous + 1);
                    out.log.entry(*key).or_default().push(lin(LogOp::Read {
                        from,
                        records: rs.clone(),
                    }));
                }
            }
            Decoded::ListOffsets {
                key,
                offset: Some(end),
            } => {
                out.log
                    .entry(*key)
                    .or_default()
                    .push(lin(LogOp::ListOffsets { end: *end }));
            }
            Decoded::FinalRead {
                key,
                end: Some(end),
                records,
            } => {
                let read = LogOp::FinalRead {
                    end: *end,
                    records: records.clone(),
                };
                out.log.entry(*key).or_default().push(lin(read));
            }
            Decoded::Write { key, value } => {
                let w = LinOp {
                    call,
                    ret,
                    op: RegisterOp::Write(*value),
                    origin: *i,
                };
                out.register.entry(key.clone()).or_default().push(w);
            }
            Decoded::Read { key, value } => {
                let r = LinOp {
                    call,
                    ret,
                    op: RegisterOp::Read(*value),
                    origin: *i,
                };
                out.register.entry(key.clone()).or_default().push(r);
            }
            _ => {}
        }
    }
    out
}

/// The committed values of a partition: a persistent list, newest first, so that a send is O(1)
/// and states of different branches share their common past.
#[derive(Clone, Default)]
pub struct LogState {
    len: i64,
    /// A rolling hash of the values, oldest first.
    hash: u64,
    head: Option<Rc<Node>>,
}

struct Node {
    value: i64,
    older: Option<Rc<Node>>,
}

impl Drop for Node {
    // Iterative, so dropping a long list does not overflow the stack.
    fn drop(&mut self) {
        let mut next = self.older.take();
        while let Some(node) = next {
            match Rc::try_unwrap(node) {
                Ok(mut node) => next = node.older.take(),
                Err(_) => break,
            }
        }
    }
}

impl LogState {
    pub fn len(&self) -> i64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn push(&self, value: i64) -> LogState {
        LogState {
            len: self.len + 1,
            hash: (self.hash.rotate_left(7) ^ value as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
            head: Some(Rc::new(Node {
                value,
                older: self.head.clone(),
            })),
        }
    }

    /// Values from the newest to the oldest.
    fn newest_first(&self) -> impl Iterator<Item = i64> + '_ {
        std::iter::successors(self.head.as_deref(), |n| n.older.as_deref()).map(|n| n.value)
    }

    /// Whether the log holds `records` (ascending, contiguous, non-empty) at their offsets.
    fn holds(&self, records: &[Record]) -> bool {
        let (Some(&(first, _)), Some(&(last, _))) = (records.first(), records.last()) else {
            return false;
        };
        if first < 0 || last >= self.len {
            return false;
        }
        let skip = (self.len - 1 - last) as usize;
        self.newest_first()
            .skip(skip)
            .zip(records.iter().rev())
            .all(|(v, &(_, r))| v == r)
    }

    /// The values, oldest first (for reports).
    pub fn values(&self) -> Vec<i64> {
        let mut v: Vec<i64> = self.newest_first().collect();
        v.reverse();
        v
    }
}

impl PartialEq for LogState {
    fn eq(&self, other: &Self) -> bool {
        if self.len != other.len || self.hash != other.hash {
            return false;
        }
        let (mut a, mut b) = (self.head.as_ref(), other.head.as_ref());
        loop {
            match (a, b) {
                (Some(x), Some(y)) if Rc::ptr_eq(x, y) => return true,
                (Some(x), Some(y)) if x.value == y.value => {
                    a = x.older.as_ref();
                    b = y.older.as_ref();
                }
                (None, None) => return true,
                _ => return false,
            }
        }
    }
}

impl Eq for LogState {}

impl Hash for LogState {
    fn hash<H: Hasher>(&self, h: &mut H) {
        h.write_u64(self.hash ^ self.len as u64);
    }
}

impl std::fmt::Debug for LogState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.values()).finish()
    }
}

/// Contiguous and ascending by offset.
fn contiguous(records: &[Record]) -> bool {
    records.windows(2).all(|w| w[1].0 == w[0].0 + 1)
}

/// A partition log (HISTORY.md, "Linearizability of a partition log").
pub struct LogModel;

impl Model for LogModel {
    type State = LogState;
    type Op = LogOp;

    fn init(&self) -> LogState {
        LogState::default()
    }

    fn step(&self, log: &LogState, op: &LogOp) -> Option<LogState> {
        let legal = match op {
            LogOp::Send { value, offset } => return (log.len == *offset).then(|| log.push(*value)),
            LogOp::Read { from, records } => {
                !records.is_empty()
                    && contiguous(records)
                    && from.is_none_or(|f| records[0].0 == f)
                    && log.holds(records)
            }
            LogOp::ListOffsets { end } => log.len == *end,
            LogOp::FinalRead { end, records } => {
                log.len == *end
                    && records.len() as i64 == *end
                    && records.first().is_none_or(|r| r.0 == 0)
                    && contiguous(records)
                    && (records.is_empty() || log.holds(records))
            }
        };
        legal.then(|| log.clone())
    }

    fn is_read_only(&self, op: &LogOp) -> bool {
        !matches!(op, LogOp::Send { .. })
    }

    fn describe_state(&self, log: &LogState) -> Value {
        // The length and the newest values: enough to see why the next operation was illegal.
        let mut newest: Vec<i64> = log.newest_first().take(16).collect();
        newest.reverse();
        json!({"len": log.len, "last": newest})
    }
}

/// A register whose initial value is `null` (HISTORY.md, "Metadata workload").
pub struct RegisterModel;

impl Model for RegisterModel {
    type State = Option<i64>;
    type Op = RegisterOp;

    fn init(&self) -> Option<i64> {
        None
    }

    fn step(&self, state: &Option<i64>, op: &RegisterOp) -> Option<Option<i64>> {
        match op {
            RegisterOp::Write(v) => Some(*v),
            RegisterOp::Read(v) => (v == state).then_some(*state),
        }
    }

    fn is_read_only(&self, op: &RegisterOp) -> bool {
        matches!(op, RegisterOp::Read(_))
    }

    fn describe_state(&self, state: &Option<i64>) -> Value {
        json!(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::decode::decode_all;
    use crate::checker::linear::{check, Budget, Outcome};
    use crate::history::{pair_operations, parse_jsonl};

    fn log_of(values: &[i64]) -> LogState {
        values.iter().fold(LogState::default(), |l, &v| l.push(v))
    }

    #[test]
    fn log_steps() {
        let m = LogModel;
        let log = log_of(&[10, 11, 12]);
        assert_eq!(
            m.step(
                &log,
                &LogOp::Send {
                    value: 13,
                    offset: 3
                }
            )
            .unwrap()
            .values(),
            vec![10, 11, 12, 13]
        );
        assert!(m
            .step(
                &log,
                &LogOp::Send {
                    value: 13,
                    offset: 2
                }
            )
            .is_none());
        let read = |from, records: &[Record]| LogOp::Read {
            from,
            records: records.to_vec(),
        };
        assert!(m.step(&log, &read(None, &[(1, 11), (2, 12)])).is_some());
        assert!(m.step(&log, &read(Some(1), &[(1, 11)])).is_some());
        assert!(m.step(&log, &read(Some(2), &[(1, 11)])).is_none());
        assert!(m.step(&log, &read(None, &[(0, 10), (2, 12)])).is_none());
        assert!(m.step(&log, &read(None, &[(2, 12), (3, 13)])).is_none());
        assert!(m.step(&log, &read(None, &[(1, 12)])).is_none());
        assert!(m.step(&log, &read(None, &[])).is_none());
        assert!(m.step(&log, &LogOp::ListOffsets { end: 3 }).is_some());
        assert!(m.step(&log, &LogOp::ListOffsets { end: 2 }).is_none());
        let fin = |end, records: &[Record]| LogOp::FinalRead {
            end,
            records: records.to_vec(),
        };
        assert!(m
            .step(&log, &fin(3, &[(0, 10), (1, 11), (2, 12)]))
            .is_some());
        assert!(m.step(&log, &fin(3, &[(0, 10), (1, 11)])).is_none());
        assert!(m.step(&log, &fin(2, &[(0, 10), (1, 11)])).is_none());
        assert!(m.step(&LogState::default(), &fin(0, &[])).is_some());
    }

    #[test]
    fn log_states_compare_by_content() {
        let a = log_of(&[1, 2, 3]);
        let b = log_of(&[1, 2, 3]);
        let c = log_of(&[1, 3, 2]);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.push(4), a.push(4));
        // A long list drops without recursion.
        drop(log_of(&(0..1_000_000).collect::<Vec<_>>()));
    }

    #[test]
    fn register_steps() {
        let m = RegisterModel;
        assert_eq!(m.step(&None, &RegisterOp::Read(None)), Some(None));
        assert_eq!(m.step(&None, &RegisterOp::Read(Some(1))), None);
        assert_eq!(m.step(&None, &RegisterOp::Write(Some(1))), Some(Some(1)));
    }

    /// splitmix64, for reproducible random histories.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            (z ^ (z >> 31)) % n
        }
    }

    /// Call and return times around a linearization point `at`; sometimes an infinite return.
    fn interval(rng: &mut Rng, at: u64) -> (u64, u64) {
        let call = at.saturating_sub(rng.below(30));
        let ret = if rng.below(10) == 0 {
            INFINITY
        } else {
            at + rng.below(30)
        };
        (call, ret)
    }

    /// A random small log history: a correct execution, then, half the time, one field changed.
    fn random_log_history(rng: &mut Rng) -> Vec<LinOp<LogOp>> {
        let mut log: Vec<i64> = Vec::new();
        let mut ops = Vec::new();
        for k in 0..1 + rng.below(7) {
            let (call, ret) = interval(rng, 10 * k + 10);
            let op = match rng.below(6) {
                0..=2 => {
                    log.push(k as i64);
                    LogOp::Send {
                        value: k as i64,
                        offset: log.len() as i64 - 1,
                    }
                }
                3 if !log.is_empty() => {
                    let start = rng.below(log.len() as u64) as usize;
                    let end = (start + 1 + rng.below(2) as usize).min(log.len());
                    let records = (start..end).map(|o| (o as i64, log[o])).collect();
                    let from = (rng.below(2) == 0).then_some(start as i64);
                    LogOp::Read { from, records }
                }
                4 => LogOp::ListOffsets {
                    end: log.len() as i64,
                },
                _ => {
                    let records = log
                        .iter()
                        .enumerate()
                        .map(|(o, &v)| (o as i64, v))
                        .collect();
                    LogOp::FinalRead {
                        end: log.len() as i64,
                        records,
                    }
                }
            };
            ops.push(LinOp {
                call,
                ret,
                op,
                origin: 0,
            });
        }
        if rng.below(2) == 0 {
            let i = rng.below(ops.len() as u64) as usize;
            let d = if rng.below(2) == 0 { 1 } else { -1 };
            match &mut ops[i].op {
                LogOp::Send { offset, .. } => *offset += d,
                LogOp::Read { records, .. } | LogOp::FinalRead { records, .. }
                    if !records.is_empty() =>
                {
                    records[0].1 += d
                }
                LogOp::ListOffsets { end } | LogOp::FinalRead { end, .. } => *end += d,
                LogOp::Read { .. } => {}
            }
        }
        ops
    }

    /// A random small register history (values from a small range, so often illegal).
    fn random_register_history(rng: &mut Rng) -> Vec<LinOp<RegisterOp>> {
        (0..1 + rng.below(7))
            .map(|k| {
                let (call, ret) = interval(rng, 10 * k + 10);
                let v = (rng.below(4) > 0).then(|| rng.below(3) as i64);
                let op = if rng.below(2) == 0 {
                    RegisterOp::Write(v)
                } else {
                    RegisterOp::Read(v)
                };
                LinOp {
                    call,
                    ret,
                    op,
                    origin: 0,
                }
            })
            .collect()
    }

    /// The search (memoization, greedy reads) agrees with exhaustive search.
    #[test]
    fn search_agrees_with_brute_force() {
        use crate::checker::linear::brute_force;
        let mut rng = Rng(42);
        let mut verdicts = [0usize; 2];
        for _ in 0..4000 {
            let ops = random_log_history(&mut rng);
            let want = brute_force(&LogModel, &ops);
            let got = check(&LogModel, &ops, &Budget::unlimited()).outcome;
            assert_eq!(got == Outcome::Linearizable, want, "{ops:?}");
            verdicts[want as usize] += 1;

            let ops = random_register_history(&mut rng);
            let want = brute_force(&RegisterModel, &ops);
            let got = check(&RegisterModel, &ops, &Budget::unlimited()).outcome;
            assert_eq!(got == Outcome::Linearizable, want, "{ops:?}");
            verdicts[want as usize] += 1;
        }
        // Both verdicts are well represented.
        assert!(verdicts.iter().all(|&n| n > 1000), "{verdicts:?}");
    }

    const HISTORY: &str = r#"
{"index":0,"time":0,"type":"invoke","process":0,"f":"assign","value":{"keys":[0]}}
{"index":1,"time":1,"type":"ok","process":0,"f":"assign","value":{"keys":[0]}}
{"index":2,"time":2,"type":"invoke","process":1,"f":"send","value":{"key":0,"value":1}}
{"index":3,"time":3,"type":"ok","process":1,"f":"send","value":{"key":0,"value":1,"offset":0}}
{"index":4,"time":4,"type":"invoke","process":2,"f":"send","value":{"key":0,"value":2}}
{"index":5,"time":5,"type":"info","process":2,"f":"send","value":{"key":0,"value":2}}
{"index":6,"time":6,"type":"invoke","process":3,"f":"send","value":{"key":0,"value":3}}
{"index":7,"time":7,"type":"info","process":3,"f":"send","value":{"key":0,"value":3}}
{"index":8,"time":8,"type":"invoke","process":0,"f":"poll","value":null}
{"index":9,"time":9,"type":"ok","process":0,"f":"poll","value":{"records":{"0":[[0,1]]}}}
{"index":10,"time":10,"type":"invoke","process":0,"f":"poll","value":null}
{"index":11,"time":11,"type":"ok","process":0,"f":"poll","value":{"records":{"0":[[1,2]]}}}
{"index":12,"time":12,"type":"invoke","process":4,"f":"send","value":{"key":0,"value":4}}
{"index":13,"time":13,"type":"fail","process":4,"f":"send","value":{"key":0,"value":4}}
{"index":14,"time":14,"type":"invoke","process":0,"f":"assign","value":{"keys":[0]}}
{"index":15,"time":15,"type":"ok","process":0,"f":"assign","value":{"keys":[0]}}
{"index":16,"time":16,"type":"invoke","process":0,"f":"poll","value":null}
{"index":17,"time":17,"type":"ok","process":0,"f":"poll","value":{"records":{"0":[[1,2]]}}}
{"index":18,"time":18,"type":"invoke","process":5,"f":"write","value":{"key":"t","value":1}}
{"index":19,"time":19,"type":"info","process":5,"f":"write","value":{"key":"t","value":1}}
{"index":20,"time":20,"type":"invoke","process":6,"f":"write","value":{"key":"t","value":2}}
{"index":21,"time":21,"type":"info","process":6,"f":"write","value":{"key":"t","value":2}}
{"index":22,"time":22,"type":"invoke","process":7,"f":"read","value":{"key":"t"}}
{"index":23,"time":23,"type":"ok","process":7,"f":"read","value":{"key":"t","value":2}}
"#;

    #[test]
    fn preprocessing() {
        let ops = pair_operations(&parse_jsonl(HISTORY).unwrap());
        let (decoded, problems) = decode_all(&ops);
        assert!(problems.is_empty());
        let p = prepare(&ops, &decoded);
        let log: Vec<_> = p.log[&0]
            .iter()
            .map(|o| (o.call, o.ret, o.op.clone()))
            .collect();
        assert_eq!(
            log,
            vec![
                (
                    2,
                    3,
                    LogOp::Send {
                        value: 1,
                        offset: 0
                    }
                ),
                // Read at offset 1: kept with that offset. Value 3 was never read: dropped.
                (
                    4,
                    INFINITY,
                    LogOp::Send {
                        value: 2,
                        offset: 1
                    }
                ),
                (
                    8,
                    9,
                    LogOp::Read {
                        from: None,
                        records: vec![(0, 1)]
                    }
                ),
                (
                    10,
                    11,
                    LogOp::Read {
                        from: Some(1),
                        records: vec![(1, 2)]
                    }
                ),
                // After the assign, no `from`.
                (
                    16,
                    17,
                    LogOp::Read {
                        from: None,
                        records: vec![(1, 2)]
                    }
                ),
            ]
        );
        let reg: Vec<_> = p.register["t"]
            .iter()
            .map(|o| (o.call, o.ret, o.op.clone()))
            .collect();
        assert_eq!(
            reg,
            vec![
                (20, INFINITY, RegisterOp::Write(Some(2))),
                (22, 23, RegisterOp::Read(Some(2))),
            ]
        );
        let budget = Budget::unlimited();
        assert_eq!(
            check(&LogModel, &p.log[&0], &budget).outcome,
            Outcome::Linearizable
        );
        assert_eq!(
            check(&RegisterModel, &p.register["t"], &budget).outcome,
            Outcome::Linearizable
        );
    }
}
