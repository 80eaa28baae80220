package main

// The two porcupine models of HISTORY.md: `log` (one Kafka partition: the
// sequence of committed values) and `register` (one config value, initially
// null). Both are partitioned by key (P-compositionality).

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/anishathalye/porcupine"
)

// ---------------------------------------------------------------------------
// Persistent log state.
//
// A log is an immutable node of a singly linked list from the newest value
// back to a shared root (the empty log), so appending is O(1) and states share
// their prefixes. Each node also has a Myers-style jump pointer, which makes
// finding the node of any offset O(log n). Each node carries a hash of its
// whole content for porcupine's cache; equality compares lengths and hashes
// first and then the values themselves, so it is exact.

type logNode struct {
	parent *logNode
	jump   *logNode
	value  int64
	len    int64 // number of values in the log ending at this node
	hash   uint64
}

// emptyLog is the root of every log: shared, so that equality walks stop at
// the first common ancestor at the latest.
var emptyLog = func() *logNode {
	n := &logNode{hash: 0x9e3779b97f4a7c15}
	n.jump = n
	return n
}()

func mix64(x uint64) uint64 {
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	x ^= x >> 33
	return x
}

func (l *logNode) append(v int64) *logNode {
	n := &logNode{parent: l, value: v, len: l.len + 1}
	if j := l.jump; l.len-j.len == j.len-j.jump.len {
		n.jump = j.jump
	} else {
		n.jump = l
	}
	n.hash = mix64(l.hash*0x100000001b3 ^ uint64(v) ^ uint64(n.len)<<48)
	return n
}

// at returns the node holding offset o (0 <= o < l.len).
func (l *logNode) at(o int64) *logNode {
	target := o + 1
	n := l
	for n.len != target {
		if n.jump.len >= target {
			n = n.jump
		} else {
			n = n.parent
		}
	}
	return n
}

func (l *logNode) equal(m *logNode) bool {
	if l.len != m.len || l.hash != m.hash {
		return false
	}
	for l != m {
		if l.value != m.value {
			return false
		}
		l, m = l.parent, m.parent
	}
	return true
}

// values returns the log as a slice (for tests and descriptions).
func (l *logNode) values() []int64 {
	out := make([]int64, l.len)
	for n := l; n.len > 0; n = n.parent {
		out[n.len-1] = n.value
	}
	return out
}

// ---------------------------------------------------------------------------
// Log model operations.

type logKind int

const (
	logSend logKind = iota
	logRead
	logListOffsets
	logFinalRead
)

type record struct {
	Offset int64
	Value  int64
}

// logOp is the input of a log model step (the output is carried in it too:
// porcupine's output argument is unused).
type logOp struct {
	Kind   logKind
	Key    int64
	Value  int64 // send: the value
	Offset int64 // send: its offset (ok output, or from a read for info); list-offsets: the output
	// read: from (when HasFrom) and records; final-read: end and records.
	HasFrom bool
	From    int64
	End     int64
	Records []record
	// shapeOK: the state-independent legality conditions of a read or
	// final-read hold (see checkShape).
	shapeOK bool
	Meta    *opMeta
}

// checkShape evaluates the conditions of a read / final-read that do not
// depend on the state:
//   - read: records non-empty, offsets contiguous and ascending (and >= 0),
//     and from is none or the first record's offset;
//   - final-read: records have exactly the offsets 0..end-1, in order.
func (o *logOp) checkShape() {
	rs := o.Records
	switch o.Kind {
	case logRead:
		ok := len(rs) > 0 && rs[0].Offset >= 0
		for i := 1; ok && i < len(rs); i++ {
			ok = rs[i].Offset == rs[i-1].Offset+1
		}
		if ok && o.HasFrom {
			ok = rs[0].Offset == o.From
		}
		o.shapeOK = ok
	case logFinalRead:
		ok := int64(len(rs)) == o.End
		for i := 0; ok && i < len(rs); i++ {
			ok = rs[i].Offset == int64(i)
		}
		o.shapeOK = ok
	}
}

func logStep(state, input, _ any) (bool, any) {
	s := state.(*logNode)
	o := input.(*logOp)
	switch o.Kind {
	case logSend:
		if s.len == o.Offset {
			return true, s.append(o.Value)
		}
		return false, s
	case logRead:
		if !o.shapeOK {
			return false, s
		}
		last := o.Records[len(o.Records)-1].Offset
		if last >= s.len {
			return false, s
		}
		// Records are contiguous: walk back from the last one.
		n := s.at(last)
		for i := len(o.Records) - 1; i >= 0; i-- {
			if n.value != o.Records[i].Value {
				return false, s
			}
			n = n.parent
		}
		return true, s
	case logListOffsets:
		return s.len == o.Offset, s
	case logFinalRead:
		if !o.shapeOK || s.len != o.End {
			return false, s
		}
		n := s
		for i := len(o.Records) - 1; i >= 0; i-- {
			if n.value != o.Records[i].Value {
				return false, s
			}
			n = n.parent
		}
		return true, s
	}
	panic("unknown log operation")
}

func describeRecords(rs []record) string {
	const edge = 3
	var parts []string
	for i, r := range rs {
		if len(rs) > 2*edge+1 && i == edge {
			parts = append(parts, fmt.Sprintf("… %d more …", len(rs)-2*edge))
		}
		if len(rs) > 2*edge+1 && i >= edge && i < len(rs)-edge {
			continue
		}
		parts = append(parts, fmt.Sprintf("%d:%d", r.Offset, r.Value))
	}
	return "[" + strings.Join(parts, " ") + "]"
}

func describeLogOp(input, _ any) string {
	o := input.(*logOp)
	switch o.Kind {
	case logSend:
		s := fmt.Sprintf("send(%d) → @%d", o.Value, o.Offset)
		if o.Meta != nil && o.Meta.Type == typeInfo {
			s += " (info; offset from a read)"
		}
		return s
	case logRead:
		from := "any"
		if o.HasFrom {
			from = strconv.FormatInt(o.From, 10)
		}
		return fmt.Sprintf("poll(from %s) → %s", from, describeRecords(o.Records))
	case logListOffsets:
		return fmt.Sprintf("list-offsets → %d", o.Offset)
	case logFinalRead:
		return fmt.Sprintf("final-read → end %d %s", o.End, describeRecords(o.Records))
	}
	return "?"
}

func describeLogState(state any) string {
	s := state.(*logNode)
	const tail = 4
	var parts []string
	n := s
	for i := 0; i < tail && n.len > 0; i++ {
		parts = append(parts, fmt.Sprintf("%d:%d", n.len-1, n.value))
		n = n.parent
	}
	if n.len > 0 {
		parts = append(parts, "…")
	}
	for i, j := 0, len(parts)-1; i < j; i, j = i+1, j-1 {
		parts[i], parts[j] = parts[j], parts[i]
	}
	return fmt.Sprintf("len %d [%s]", s.len, strings.Join(parts, " "))
}

func logKeyOf(op porcupine.Operation) int64 { return op.Input.(*logOp).Key }

// partitionLog splits operations by key, in ascending key order.
func partitionLog(history []porcupine.Operation) [][]porcupine.Operation {
	return partitionBy(history, func(a, b porcupine.Operation) bool { return logKeyOf(a) < logKeyOf(b) },
		func(a, b porcupine.Operation) bool { return logKeyOf(a) == logKeyOf(b) })
}

var logModel = porcupine.Model{
	Partition:         partitionLog,
	Init:              func() any { return emptyLog },
	Step:              logStep,
	Equal:             func(a, b any) bool { return a.(*logNode).equal(b.(*logNode)) },
	Hash:              func(s any) uint64 { return s.(*logNode).hash },
	DescribeOperation: describeLogOp,
	DescribeState:     describeLogState,
	DescribeOperationMetadata: func(m any) string {
		if m == nil {
			return ""
		}
		return m.(*opMeta).describe()
	},
}

// ---------------------------------------------------------------------------
// Register model.

// regValueState is a register value: an integer, or null when !Set.
type regValueState struct {
	Set bool
	V   int64
}

func (v regValueState) String() string {
	if !v.Set {
		return "null"
	}
	return strconv.FormatInt(v.V, 10)
}

type regKind int

const (
	regWrite regKind = iota
	regRead
)

type regOp struct {
	Kind  regKind
	Key   string
	Value regValueState // write: the value written; read: the value read
	Meta  *opMeta
}

func regStep(state, input, _ any) (bool, any) {
	s := state.(regValueState)
	o := input.(*regOp)
	switch o.Kind {
	case regWrite:
		return true, o.Value
	case regRead:
		return s == o.Value, s
	}
	panic("unknown register operation")
}

func describeRegOp(input, _ any) string {
	o := input.(*regOp)
	if o.Kind == regWrite {
		s := fmt.Sprintf("write(%s)", o.Value)
		if o.Meta != nil && o.Meta.Type == typeInfo {
			s += " (info)"
		}
		return s
	}
	return fmt.Sprintf("read → %s", o.Value)
}

func regKeyOf(op porcupine.Operation) string { return op.Input.(*regOp).Key }

// partitionRegister splits operations by key, in ascending key order.
func partitionRegister(history []porcupine.Operation) [][]porcupine.Operation {
	return partitionBy(history, func(a, b porcupine.Operation) bool { return regKeyOf(a) < regKeyOf(b) },
		func(a, b porcupine.Operation) bool { return regKeyOf(a) == regKeyOf(b) })
}

var registerModel = porcupine.Model{
	Partition: partitionRegister,
	Init:      func() any { return regValueState{} },
	Step:      regStep,
	Equal:     func(a, b any) bool { return a.(regValueState) == b.(regValueState) },
	Hash: func(s any) uint64 {
		v := s.(regValueState)
		if !v.Set {
			return 0x5bd1e995
		}
		return mix64(uint64(v.V))
	},
	DescribeOperation: describeRegOp,
	DescribeState:     func(s any) string { return s.(regValueState).String() },
	DescribeOperationMetadata: func(m any) string {
		if m == nil {
			return ""
		}
		return m.(*opMeta).describe()
	},
}

// partitionBy groups operations by key, keys in ascending order, keeping the
// operations' order within a key.
func partitionBy(history []porcupine.Operation, less, same func(a, b porcupine.Operation) bool) [][]porcupine.Operation {
	sorted := make([]porcupine.Operation, len(history))
	copy(sorted, history)
	sort.SliceStable(sorted, func(i, j int) bool { return less(sorted[i], sorted[j]) })
	var out [][]porcupine.Operation
	for i := 0; i < len(sorted); {
		j := i + 1
		for j < len(sorted) && same(sorted[i], sorted[j]) {
			j++
		}
		out = append(out, sorted[i:j:j])
		i = j
	}
	return out
}
