package main

import (
	"bytes"
	"encoding/json"
	"math/rand"
	"reflect"
	"strings"
	"testing"

	"github.com/anishathalye/porcupine"
)

func logOf(vs ...int64) *logNode {
	l := emptyLog
	for _, v := range vs {
		l = l.append(v)
	}
	return l
}

func TestLogNode(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	var vs []int64
	l := emptyLog
	for i := 0; i < 2000; i++ {
		v := rng.Int63n(5)
		vs = append(vs, v)
		l = l.append(v)
		if l.len != int64(len(vs)) {
			t.Fatalf("len %d, want %d", l.len, len(vs))
		}
	}
	for o := range vs {
		if got := l.at(int64(o)).value; got != vs[o] {
			t.Fatalf("at(%d) = %d, want %d", o, got, vs[o])
		}
	}
	if !reflect.DeepEqual(l.values(), vs) {
		t.Fatal("values() differ")
	}
	// Equal logs built along different paths; different logs.
	a, b := logOf(1, 2, 3), logOf(1, 2, 3)
	if a == b || !a.equal(b) || a.hash != b.hash {
		t.Error("equal content must be equal")
	}
	for _, c := range []*logNode{logOf(1, 2), logOf(1, 2, 4), logOf(3, 2, 1), logOf(0, 2, 3), emptyLog} {
		if a.equal(c) || c.equal(a) {
			t.Errorf("%v equal to %v", a.values(), c.values())
		}
	}
	if !emptyLog.equal(logOf()) {
		t.Error("empty logs differ")
	}
	// Equality is exact even if hashes collide.
	forged := logOf(1, 2, 4)
	forged.hash = a.hash
	if a.equal(forged) {
		t.Error("equal must compare content on hash match")
	}
}

func rd(from *int64, rs ...record) *logOp {
	o := &logOp{Kind: logRead, Records: rs}
	if from != nil {
		o.HasFrom, o.From = true, *from
	}
	o.checkShape()
	return o
}

func final(end int64, rs ...record) *logOp {
	o := &logOp{Kind: logFinalRead, End: end, Records: rs}
	o.checkShape()
	return o
}

func i64(v int64) *int64 { return &v }

func TestLogStep(t *testing.T) {
	s := logOf(10, 11, 12) // offsets 0, 1, 2
	cases := []struct {
		name string
		op   *logOp
		ok   bool
	}{
		{"send at len", &logOp{Kind: logSend, Value: 13, Offset: 3}, true},
		{"send below len", &logOp{Kind: logSend, Value: 13, Offset: 2}, false},
		{"send above len", &logOp{Kind: logSend, Value: 13, Offset: 4}, false},
		{"read all", rd(nil, record{0, 10}, record{1, 11}, record{2, 12}), true},
		{"read tail, from none", rd(nil, record{2, 12}), true},
		{"read with from", rd(i64(1), record{1, 11}, record{2, 12}), true},
		{"read from mismatch", rd(i64(0), record{1, 11}), false},
		{"read wrong value", rd(nil, record{1, 12}), false},
		{"read beyond len", rd(nil, record{2, 12}, record{3, 13}), false},
		{"read gap", rd(nil, record{0, 10}, record{2, 12}), false},
		{"read step back", rd(nil, record{1, 11}, record{0, 10}), false},
		{"read empty", rd(nil), false},
		{"read negative offset", rd(nil, record{-1, 9}, record{0, 10}), false},
		{"list-offsets len", &logOp{Kind: logListOffsets, Offset: 3}, true},
		{"list-offsets other", &logOp{Kind: logListOffsets, Offset: 2}, false},
		{"final read exact", final(3, record{0, 10}, record{1, 11}, record{2, 12}), true},
		{"final read short end", final(2, record{0, 10}, record{1, 11}), false},
		{"final read missing record", final(3, record{0, 10}, record{2, 12}), false},
		{"final read wrong value", final(3, record{0, 10}, record{1, 99}, record{2, 12}), false},
		{"final read not from 0", final(3, record{1, 11}, record{2, 12}, record{3, 13}), false},
	}
	for _, c := range cases {
		ok, next := logStep(s, c.op, nil)
		if ok != c.ok {
			t.Errorf("%s: legal=%v, want %v", c.name, ok, c.ok)
		}
		if ok && c.op.Kind == logSend {
			if !reflect.DeepEqual(next.(*logNode).values(), []int64{10, 11, 12, 13}) {
				t.Errorf("%s: state %v", c.name, next.(*logNode).values())
			}
		} else if next.(*logNode) != s {
			t.Errorf("%s: state changed", c.name)
		}
	}
	if ok, _ := logStep(emptyLog, final(0), nil); !ok {
		t.Error("empty final read of the empty log")
	}
	if ok, _ := logStep(emptyLog, &logOp{Kind: logListOffsets, Offset: 0}, nil); !ok {
		t.Error("list-offsets 0 of the empty log")
	}
}

func TestRegisterStep(t *testing.T) {
	null := regValueState{}
	one := regValueState{Set: true, V: 1}
	if ok, s := regStep(null, &regOp{Kind: regRead, Value: null}, nil); !ok || s != null {
		t.Error("initial read of null")
	}
	if ok, _ := regStep(null, &regOp{Kind: regRead, Value: one}, nil); ok {
		t.Error("read 1 of null")
	}
	if ok, s := regStep(null, &regOp{Kind: regWrite, Value: one}, nil); !ok || s != one {
		t.Error("write")
	}
	if ok, _ := regStep(one, &regOp{Kind: regRead, Value: regValueState{Set: true, V: 2}}, nil); ok {
		t.Error("read 2 of 1")
	}
	if registerModel.Hash(null) == registerModel.Hash(regValueState{Set: true, V: 0}) {
		t.Error("null and 0 hash alike (allowed, but suspicious)")
	}
}

func prepareString(t *testing.T, s string) *prepared {
	t.Helper()
	h, err := readHistory(strings.NewReader(s))
	if err != nil {
		t.Fatal(err)
	}
	p, err := prepare(h)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// lines builds a history: each element is type, process, f, value.
func lines(evs ...[]any) string {
	var b strings.Builder
	for i, e := range evs {
		m := map[string]any{"index": i, "time": i * 10, "type": e[0], "process": e[1], "f": e[2], "value": e[3]}
		j, _ := json.Marshal(m)
		b.Write(j)
		b.WriteByte('\n')
	}
	return b.String()
}

func TestPreparePolls(t *testing.T) {
	recs := func(k string, rs ...[2]int64) map[string]any {
		return map[string]any{"records": map[string]any{k: rs}}
	}
	p := prepareString(t, lines(
		[]any{"invoke", 1, "assign", map[string]any{"keys": []int{0, 1}}},
		[]any{"ok", 1, "assign", map[string]any{"keys": []int{0, 1}}},
		[]any{"invoke", 1, "poll", nil},
		[]any{"ok", 1, "poll", recs("0", [2]int64{3, 30}, [2]int64{4, 40})}, // first poll: from none
		[]any{"invoke", 1, "poll", nil},
		[]any{"ok", 1, "poll", map[string]any{"records": map[string]any{"0": [][2]int64{{5, 50}}, "1": [][2]int64{}}}}, // from 5; key 1 empty: no read
		[]any{"invoke", 1, "poll", nil},
		[]any{"fail", 1, "poll", nil},
		[]any{"invoke", 1, "poll", nil},
		[]any{"ok", 1, "poll", recs("1", [2]int64{0, 7})}, // key 1: from none
		[]any{"invoke", 1, "assign", map[string]any{"keys": []int{0}}},
		[]any{"fail", 1, "assign", nil}, // failed assign: positions kept
		[]any{"invoke", 1, "poll", nil},
		[]any{"ok", 1, "poll", recs("0", [2]int64{6, 60})}, // from 6
		[]any{"invoke", 1, "assign", map[string]any{"keys": []int{0}}},
		[]any{"ok", 1, "assign", map[string]any{"keys": []int{0}}},
		[]any{"invoke", 1, "poll", nil},
		[]any{"ok", 1, "poll", recs("0", [2]int64{0, 0})}, // after assign: from none
		[]any{"invoke", 2, "poll", nil},
		[]any{"ok", 2, "poll", recs("0", [2]int64{6, 60})}, // another process: from none
		[]any{"invoke", 1, "poll", nil},
		[]any{"info", 1, "poll", nil}, // dropped
	))
	type got struct {
		key     int64
		hasFrom bool
		from    int64
		first   int64
	}
	var reads []got
	for _, o := range p.Log {
		if o.Kind != logRead {
			t.Fatalf("unexpected op %v", describeLogOp(o, nil))
		}
		reads = append(reads, got{o.Key, o.HasFrom, o.From, o.Records[0].Offset})
	}
	want := []got{{0, false, 0, 3}, {0, true, 5, 5}, {1, false, 0, 0}, {0, true, 6, 6}, {0, false, 0, 0}, {0, false, 0, 6}}
	if !reflect.DeepEqual(reads, want) {
		t.Errorf("reads %+v\nwant %+v", reads, want)
	}
	if p.Stats.EmptyPollRecords != 1 || p.Stats.Fail != 2 || p.Stats.InfoReads != 1 || p.Stats.Assigns != 2 {
		t.Errorf("stats %+v", p.Stats)
	}
}

func TestPrepareInfo(t *testing.T) {
	p := prepareString(t, lines(
		[]any{"invoke", 0, "send", map[string]any{"key": 0, "value": 1}},
		[]any{"info", 0, "send", nil}, // read at offsets 4 and 2: gets 2
		[]any{"invoke", 1, "send", map[string]any{"key": 0, "value": 2}},
		[]any{"info", 1, "send", nil}, // never read: dropped
		[]any{"invoke", 2, "send", map[string]any{"key": 1, "value": 3}},
		[]any{"info", 2, "send", nil}, // read only in key 0: dropped
		[]any{"invoke", 3, "send", map[string]any{"key": 0, "value": 4}},
		[]any{"fail", 3, "send", nil}, // dropped
		[]any{"invoke", 4, "poll", nil},
		[]any{"ok", 4, "poll", map[string]any{"records": map[string]any{"0": [][2]int64{{4, 1}, {5, 3}}}}},
		[]any{"invoke", 5, "final-read", map[string]any{"key": 0}},
		[]any{"ok", 5, "final-read", map[string]any{"key": 0, "end": 3, "records": [][2]int64{{0, 9}, {1, 8}, {2, 1}}}},
		[]any{"invoke", 6, "list-offsets", map[string]any{"key": 0}},
		[]any{"info", 6, "list-offsets", nil}, // dropped
		[]any{"invoke", 7, "write", map[string]any{"key": "a", "value": 1}},
		[]any{"info", 7, "write", nil}, // kept, return +inf
		[]any{"invoke", 8, "read", map[string]any{"key": "a"}},
		[]any{"info", 8, "read", nil}, // dropped
		[]any{"invoke", 9, "write", map[string]any{"key": "a", "value": 2}},
		[]any{"fail", 9, "write", nil},                                       // dropped
		[]any{"invoke", 10, "send", map[string]any{"key": 0, "value": 5}},    // never completes: info, never read
		[]any{"invoke", 11, "write", map[string]any{"key": "a", "value": 3}}, // never completes: info write, read below
		[]any{"invoke", 12, "read", map[string]any{"key": "a"}},
		[]any{"ok", 12, "read", map[string]any{"key": "a", "value": 3}},
	))
	var sends []*logOp
	for _, o := range p.Log {
		if o.Kind == logSend {
			sends = append(sends, o)
		}
	}
	if len(sends) != 1 || sends[0].Value != 1 || sends[0].Offset != 2 || sends[0].Meta.ret() != infinity {
		t.Fatalf("sends: %+v", sends)
	}
	// The info write of 1 was never read: dropped. The info write of 3 was read: kept.
	if len(p.Register) != 2 || p.Register[0].Meta.ret() != infinity || p.Register[0].Value.V != 3 ||
		p.Register[0].Meta.CompleteIndex != -1 || p.Register[1].Kind != regRead {
		t.Fatalf("register ops: %+v", p.Register)
	}
	st := p.Stats
	if st.InfoSendsKept != 1 || st.InfoSendsUnread != 3 || st.Fail != 2 || st.InfoReads != 2 || st.InfoWrites != 1 || st.InfoWritesUnread != 1 {
		t.Errorf("stats %+v", st)
	}
}

// bruteForce decides linearizability of one partition by trying every order
// consistent with real time.
func bruteForce(model porcupine.Model, ops []porcupine.Operation) bool {
	used := make([]bool, len(ops))
	var search func(state any, done int) bool
	search = func(state any, done int) bool {
		if done == len(ops) {
			return true
		}
		for i, o := range ops {
			if used[i] {
				continue
			}
			// o can go next only if no pending op returned before o was called.
			blocked := false
			for j, p := range ops {
				if !used[j] && j != i && p.Return < o.Call {
					blocked = true
					break
				}
			}
			if blocked {
				continue
			}
			if ok, next := model.Step(state, o.Input, o.Output); ok {
				used[i] = true
				if search(next, done+1) {
					return true
				}
				used[i] = false
			}
		}
		return false
	}
	return search(model.Init(), 0)
}

// TestAgainstBruteForce: porcupine with these models agrees with an
// exhaustive search on small random histories, valid and corrupted.
func TestAgainstBruteForce(t *testing.T) {
	rng := rand.New(rand.NewSource(42))
	counts := map[bool]int{}
	for iter := 0; iter < 1500; iter++ {
		cfg := genConfig{Seed: int64(iter), Ops: 4 + rng.Intn(5), QueueKeys: 1, RegisterKeys: 1, Workers: 2 + rng.Intn(3),
			InfoRate: 0.15, FailRate: 0.1}
		data := generateHistory(cfg)
		// Corrupt one integer in half of the histories.
		if rng.Intn(2) == 0 {
			data = corrupt(rng, data)
		}
		h, err := readHistory(bytes.NewReader(data))
		if err != nil {
			continue
		}
		p, err := prepare(h)
		if err != nil {
			continue
		}
		for _, r := range []*modelRun{newLogRun(p), newRegisterRun(p)} {
			for _, part := range r.Model.Partition(r.Ops) {
				if len(part) > 9 {
					continue
				}
				want := bruteForce(r.Model, part)
				got := porcupine.CheckOperations(r.Model, part)
				counts[want]++
				if got != want {
					t.Fatalf("history %d, model %s: porcupine %v, brute force %v\n%s", iter, r.Name, got, want, data)
				}
			}
		}
	}
	t.Logf("partitions: %d linearizable, %d not", counts[true], counts[false])
	if counts[true] == 0 || counts[false] == 0 {
		t.Error("want both outcomes")
	}
}

// corrupt changes one small integer in a random line's value.
func corrupt(rng *rand.Rand, data []byte) []byte {
	ls := bytes.Split(bytes.TrimSpace(data), []byte("\n"))
	i := rng.Intn(len(ls))
	l := ls[i]
	v := bytes.Index(l, []byte(`"value":`))
	if v < 0 {
		return data
	}
	var digits []int
	for j := v; j < len(l); j++ {
		if l[j] >= '0' && l[j] <= '9' && (l[j-1] < '0' || l[j-1] > '9') {
			digits = append(digits, j)
		}
	}
	if len(digits) == 0 {
		return data
	}
	j := digits[rng.Intn(len(digits))]
	nl := append([]byte{}, l[:j]...)
	nl = append(nl, byte('0'+rng.Intn(4)))
	k := j
	for k < len(l) && l[k] >= '0' && l[k] <= '9' {
		k++
	}
	nl = append(nl, l[k:]...)
	ls[i] = nl
	return append(bytes.Join(ls, []byte("\n")), '\n')
}
