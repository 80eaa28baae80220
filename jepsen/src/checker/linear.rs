//! A generic linearizability checker: Wing & Gong's search with Lowe's memoization, as in
//! porcupine's `checker.go`.
//!
//! Call and return entries of all operations are kept in one doubly linked list ordered by time.
//! The search walks it from the front: at a call entry it tries to linearize that operation next
//! (the model step is legal, and the pair (set of linearized operations, new state) was not met
//! before), lifting the operation's two entries out of the list and starting again from the front;
//! at a return entry some operation's return was reached before it could be linearized, so it
//! backtracks the last choice. The history is linearizable when the list empties.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::time::Instant;

use serde_json::Value;

/// A sequential specification.
pub trait Model {
    /// Hashing and cloning happen on every step: keep them cheap.
    type State: Clone + Eq + Hash;
    type Op;

    fn init(&self) -> Self::State;

    /// The state after `op`, or `None` when `op` is illegal in `state`.
    fn step(&self, state: &Self::State, op: &Self::Op) -> Option<Self::State>;

    /// Whether `op` never changes the state (when legal, `step` returns an equal state). Such an
    /// operation, once legal and callable, is linearized greedily: if any linearization exists from
    /// here, one exists that takes it now (nothing it follows in real time is left, and it changes
    /// nothing for the operations after it). This spares the search from trying every subset of
    /// concurrent reads.
    fn is_read_only(&self, _op: &Self::Op) -> bool {
        false
    }

    /// A JSON view of a state for reports.
    fn describe_state(&self, _state: &Self::State) -> Value {
        Value::Null
    }
}

/// Return time of an operation that may take effect at any time after its call (`info`).
pub const INFINITY: u64 = u64::MAX;

/// An operation as the search sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct LinOp<O> {
    pub call: u64,
    /// [`INFINITY`] for an operation that may take effect at any later time.
    pub ret: u64,
    pub op: O,
    /// Where the operation came from (opaque to the search; used by reports).
    pub origin: usize,
}

/// When to give up and answer [`Outcome::Unknown`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Budget {
    /// Search steps (one per list entry visited).
    pub max_steps: Option<u64>,
    pub deadline: Option<Instant>,
}

impl Budget {
    pub fn unlimited() -> Self {
        Budget::default()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Linearizable,
    NotLinearizable(Counterexample),
    /// The budget ran out.
    Unknown,
}

/// The deepest point the search reached in a non-linearizable history.
#[derive(Debug, Clone, PartialEq)]
pub struct Counterexample {
    /// The longest linearizable prefix found: positions in the input slice, in linearization order.
    pub prefix: Vec<usize>,
    /// The operation whose return came before it could be linearized after that prefix.
    pub blocked: usize,
    /// The model state after the prefix.
    pub state: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SearchResult {
    pub outcome: Outcome,
    pub steps: u64,
    /// Memoized (linearized set, state) pairs.
    pub cache_entries: usize,
}

const NIL: u32 = u32::MAX;

/// Checks whether `ops` are linearizable with respect to `model`.
pub fn check<M: Model>(model: &M, ops: &[LinOp<M::Op>], budget: &Budget) -> SearchResult {
    let n = ops.len();
    if n == 0 {
        return SearchResult {
            outcome: Outcome::Linearizable,
            steps: 0,
            cache_entries: 0,
        };
    }
    assert!(n < (NIL as usize) / 2, "too many operations for one search");

    // Ids in call order, so the linearized set is mostly a dense prefix (cheap to memoize).
    let mut by_call: Vec<usize> = (0..n).collect();
    by_call.sort_by_key(|&i| (ops[i].call, i));

    // Entries sorted by time; on equal times calls come first (concurrent), as porcupine does.
    let mut entries: Vec<(u64, bool, u32)> = Vec::with_capacity(2 * n);
    for (id, &i) in by_call.iter().enumerate() {
        entries.push((ops[i].call, false, id as u32));
        entries.push((ops[i].ret.max(ops[i].call), true, id as u32));
    }
    entries.sort_unstable();

    let mut list = EntryList::new(&entries, n);
    let mut bits = Bits::new(n);
    let mut cache: HashMap<u64, Vec<(Snapshot, M::State)>, BuildHasherDefault<IdHasher>> =
        HashMap::default();
    let mut cache_entries = 0usize;
    let mut calls: Vec<(u32, M::State)> = Vec::new();
    let mut state = model.init();
    // Deepest backtrack: (linearized ids, blocked id, state).
    let mut deepest: Option<(Vec<u32>, u32, M::State)> = None;
    let mut steps = 0u64;
    let mut entry = list.next[list.head];

    while list.next[list.head] != NIL {
        steps += 1;
        if budget.max_steps.is_some_and(|max| steps > max)
            || (steps.is_multiple_of(4096) && budget.deadline.is_some_and(|d| Instant::now() >= d))
        {
            return SearchResult {
                outcome: Outcome::Unknown,
                steps,
                cache_entries,
            };
        }
        debug_assert!(entry != NIL, "the list always ends with a return entry");
        let e = entry as usize;
        let id = list.id[e];
        let mut backtrack = false;
        if list.is_call(e) {
            let op = &ops[by_call[id as usize]].op;
            if let Some(next_state) = model.step(&state, op) {
                bits.set(id as usize);
                if memoize(&mut cache, &bits, &next_state) {
                    cache_entries += 1;
                    calls.push((entry, std::mem::replace(&mut state, next_state)));
                    list.lift(e);
                    entry = list.next[list.head];
                } else {
                    // Seen and failed. For a read-only operation, so does every alternative here.
                    bits.clear(id as usize);
                    backtrack = model.is_read_only(op);
                    entry = list.next[e];
                }
            } else {
                entry = list.next[e];
            }
        } else {
            // `id` returned before being linearized: undo the last choice.
            if deepest
                .as_ref()
                .is_none_or(|(prefix, _, _)| calls.len() > prefix.len())
            {
                let prefix = calls.iter().map(|&(c, _)| list.id[c as usize]).collect();
                deepest = Some((prefix, id, state.clone()));
            }
            backtrack = true;
        }
        while backtrack {
            let Some((call, previous)) = calls.pop() else {
                let (prefix, blocked, at) = deepest.unwrap_or((Vec::new(), id, state));
                let counterexample = Counterexample {
                    prefix: prefix.iter().map(|&id| by_call[id as usize]).collect(),
                    blocked: by_call[blocked as usize],
                    state: model.describe_state(&at),
                };
                return SearchResult {
                    outcome: Outcome::NotLinearizable(counterexample),
                    steps,
                    cache_entries,
                };
            };
            state = previous;
            let popped = list.id[call as usize];
            bits.clear(popped as usize);
            list.unlift(call as usize);
            entry = list.next[call as usize];
            // A read-only operation was a forced move: no alternative to try at its level.
            backtrack = model.is_read_only(&ops[by_call[popped as usize]].op);
        }
    }
    SearchResult {
        outcome: Outcome::Linearizable,
        steps,
        cache_entries,
    }
}

/// Whether `ops` are linearizable, by trying every order that respects real time: no memoization,
/// no reduction. Exponential; for cross-checking [`check`] in tests.
#[cfg(test)]
pub(crate) fn brute_force<M: Model>(model: &M, ops: &[LinOp<M::Op>]) -> bool {
    fn go<M: Model>(model: &M, ops: &[LinOp<M::Op>], done: &mut [bool], state: &M::State) -> bool {
        let pending = || {
            ops.iter()
                .zip(done.iter())
                .filter(|(_, d)| !**d)
                .map(|(o, _)| o)
        };
        let Some(first_return) = pending().map(|o| o.ret).min() else {
            return true;
        };
        for i in 0..ops.len() {
            // An operation can go next iff no pending operation returned before its call.
            if done[i] || ops[i].call > first_return {
                continue;
            }
            if let Some(next) = model.step(state, &ops[i].op) {
                done[i] = true;
                if go(model, ops, done, &next) {
                    return true;
                }
                done[i] = false;
            }
        }
        false
    }
    go(model, ops, &mut vec![false; ops.len()], &model.init())
}

/// Records (linearized set, state); false if it was already there.
fn memoize<S: Eq + Hash + Clone>(
    cache: &mut HashMap<u64, Vec<(Snapshot, S)>, BuildHasherDefault<IdHasher>>,
    bits: &Bits,
    state: &S,
) -> bool {
    let mut h = FxHasher::default();
    state.hash(&mut h);
    let key = bits.hash ^ h.finish();
    let bucket = cache.entry(key).or_default();
    if bucket
        .iter()
        .any(|(snap, s)| bits.matches(snap) && s == state)
    {
        return false;
    }
    bucket.push((bits.snapshot(), state.clone()));
    true
}

/// The entries as a doubly linked list over array slots; slot `2n` is the head sentinel.
struct EntryList {
    head: usize,
    next: Vec<u32>,
    prev: Vec<u32>,
    /// Operation id of each slot.
    id: Vec<u32>,
    /// For a call slot, its return slot; `NIL` for return slots and the head.
    matching: Vec<u32>,
}

impl EntryList {
    fn new(entries: &[(u64, bool, u32)], n: usize) -> Self {
        let head = 2 * n;
        let mut list = EntryList {
            head,
            next: vec![NIL; 2 * n + 1],
            prev: vec![NIL; 2 * n + 1],
            id: vec![NIL; 2 * n + 1],
            matching: vec![NIL; 2 * n + 1],
        };
        let mut ret_slot = vec![NIL; n];
        for (slot, &(_, is_return, id)) in entries.iter().enumerate() {
            list.id[slot] = id;
            if is_return {
                ret_slot[id as usize] = slot as u32;
            }
        }
        for (slot, &(_, is_return, id)) in entries.iter().enumerate() {
            if !is_return {
                list.matching[slot] = ret_slot[id as usize];
            }
        }
        let mut previous = head;
        for slot in 0..2 * n {
            list.next[previous] = slot as u32;
            list.prev[slot] = previous as u32;
            previous = slot;
        }
        list
    }

    fn is_call(&self, slot: usize) -> bool {
        self.matching[slot] != NIL
    }

    /// Unlinks a call slot and its return slot (which is always after it).
    fn lift(&mut self, call: usize) {
        let (p, n) = (self.prev[call], self.next[call]);
        self.next[p as usize] = n;
        self.prev[n as usize] = p;
        let ret = self.matching[call] as usize;
        let (p, n) = (self.prev[ret], self.next[ret]);
        self.next[p as usize] = n;
        if n != NIL {
            self.prev[n as usize] = p;
        }
    }

    /// Undoes `lift`; the lifted slots kept their links.
    fn unlift(&mut self, call: usize) {
        let ret = self.matching[call];
        let (p, n) = (self.prev[ret as usize], self.next[ret as usize]);
        self.next[p as usize] = ret;
        if n != NIL {
            self.prev[n as usize] = ret;
        }
        let (p, n) = (self.prev[call], self.next[call]);
        self.next[p as usize] = call as u32;
        self.prev[n as usize] = call as u32;
    }
}

/// The set of linearized operations, with an incrementally maintained hash and bounds of its
/// interesting part: words before `full` are all ones, words from `end` on are all zeros.
struct Bits {
    words: Vec<u64>,
    hash: u64,
    full: usize,
    end: usize,
}

/// A memoized `Bits`: the number of leading all-ones words and the words up to the last non-zero.
struct Snapshot {
    full: u32,
    tail: Box<[u64]>,
}

impl Bits {
    fn new(n: usize) -> Self {
        Bits {
            words: vec![0; n.div_ceil(64)],
            hash: 0,
            full: 0,
            end: 0,
        }
    }

    fn set(&mut self, i: usize) {
        let w = i / 64;
        self.words[w] |= 1 << (i % 64);
        self.hash ^= mix(i as u64);
        self.end = self.end.max(w + 1);
        while self.full < self.words.len() && self.words[self.full] == u64::MAX {
            self.full += 1;
        }
    }

    fn clear(&mut self, i: usize) {
        let w = i / 64;
        self.words[w] &= !(1 << (i % 64));
        self.hash ^= mix(i as u64);
        self.full = self.full.min(w);
        while self.end > 0 && self.words[self.end - 1] == 0 {
            self.end -= 1;
        }
    }

    fn tail(&self) -> &[u64] {
        &self.words[self.full..self.end.max(self.full)]
    }

    fn snapshot(&self) -> Snapshot {
        Snapshot {
            full: self.full as u32,
            tail: self.tail().into(),
        }
    }

    fn matches(&self, snap: &Snapshot) -> bool {
        snap.full as usize == self.full && *snap.tail == *self.tail()
    }
}

/// splitmix64's finalizer: a per-operation random-looking word for the set hash.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A fast non-cryptographic hasher for model states (FxHash's mixing).
#[derive(Default)]
struct FxHasher(u64);

impl Hasher for FxHasher {
    fn finish(&self) -> u64 {
        mix(self.0)
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }

    fn write_u64(&mut self, x: u64) {
        self.0 = (self.0.rotate_left(5) ^ x).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

/// The cache's keys are already hashes.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }

    fn write_u64(&mut self, x: u64) {
        self.0 = x;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A register of integers, 0 initially.
    struct Reg;

    #[derive(Debug, Clone)]
    enum RegOp {
        W(i64),
        R(i64),
    }

    impl Model for Reg {
        type State = i64;
        type Op = RegOp;
        fn init(&self) -> i64 {
            0
        }
        fn step(&self, s: &i64, op: &RegOp) -> Option<i64> {
            match *op {
                RegOp::W(v) => Some(v),
                RegOp::R(v) => (v == *s).then_some(*s),
            }
        }
        fn describe_state(&self, s: &i64) -> Value {
            Value::from(*s)
        }
    }

    fn op(call: u64, ret: u64, op: RegOp) -> LinOp<RegOp> {
        LinOp {
            call,
            ret,
            op,
            origin: 0,
        }
    }

    fn run(ops: &[LinOp<RegOp>]) -> Outcome {
        check(&Reg, ops, &Budget::unlimited()).outcome
    }

    #[test]
    fn empty_history_is_linearizable() {
        assert_eq!(run(&[]), Outcome::Linearizable);
    }

    #[test]
    fn concurrent_read_may_see_either_value() {
        // W(1) over [0, 10]; reads inside see 0 and 1 in real-time order.
        let ops = [
            op(0, 10, RegOp::W(1)),
            op(1, 2, RegOp::R(0)),
            op(3, 4, RegOp::R(1)),
        ];
        assert_eq!(run(&ops), Outcome::Linearizable);
        // ... but not 1 then 0.
        let ops = [
            op(0, 10, RegOp::W(1)),
            op(1, 2, RegOp::R(1)),
            op(3, 4, RegOp::R(0)),
        ];
        let Outcome::NotLinearizable(c) = run(&ops) else {
            panic!("linearizable?")
        };
        assert_eq!(c.blocked, 2);
        assert_eq!(c.prefix, vec![0, 1]);
        assert_eq!(c.state, Value::from(1));
    }

    #[test]
    fn equal_times_are_concurrent() {
        let ops = [op(0, 5, RegOp::R(1)), op(5, 6, RegOp::W(1))];
        assert_eq!(run(&ops), Outcome::Linearizable);
    }

    #[test]
    fn infinite_return_may_take_effect_late() {
        let ops = [
            op(0, INFINITY, RegOp::W(1)),
            op(1, 2, RegOp::R(0)),
            op(3, 4, RegOp::R(1)),
            op(5, 6, RegOp::R(1)),
        ];
        assert_eq!(run(&ops), Outcome::Linearizable);
        let ops = [
            op(0, INFINITY, RegOp::W(1)),
            op(3, 4, RegOp::R(1)),
            op(5, 6, RegOp::R(0)),
        ];
        assert!(matches!(run(&ops), Outcome::NotLinearizable(_)));
    }

    #[test]
    fn budget_gives_unknown() {
        // Many concurrent writes and a read nobody wrote: exhaustive search.
        let mut ops: Vec<_> = (0..16).map(|i| op(0, 100, RegOp::W(i + 1))).collect();
        ops.push(op(101, 102, RegOp::R(99)));
        let r = check(
            &Reg,
            &ops,
            &Budget {
                max_steps: Some(1000),
                deadline: None,
            },
        );
        assert_eq!(r.outcome, Outcome::Unknown);
    }

    #[test]
    fn bits_track_their_bounds() {
        let mut b = Bits::new(200);
        for i in 0..130 {
            b.set(i);
        }
        assert_eq!((b.full, b.end), (2, 3));
        let s = b.snapshot();
        b.clear(5);
        assert_eq!((b.full, b.end), (0, 3));
        assert!(!b.matches(&s));
        b.set(5);
        assert!(b.matches(&s));
        for i in 0..130 {
            b.clear(i);
        }
        assert_eq!((b.full, b.end, b.hash), (0, 0, 0));
    }
}
