package main

// Turning paired client operations into porcupine operations for the `log`
// and `register` models (HISTORY.md, "Linearizability of a partition log" and
// "Metadata workload"):
//
//   - fail operations are dropped;
//   - info operations get return time +infinity; an info send whose value
//     appears in some read of its key gets the offset of its lowest
//     appearance as output, an info send never read is dropped; info polls,
//     list-offsets, final-reads and register reads are dropped;
//   - an ok poll becomes one read per key it returned records for, with
//     `from` = the end of the process's previous poll of that key + 1, or
//     none at its first poll of that key since its latest assign.
//
// Call and return times are event indices: the file is in the order events
// happened, so an operation that completed at a smaller index than another's
// invocation precedes it in real time.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
)

// infinity is the return time of info operations.
const infinity = math.MaxInt64

// Queue and metadata workload functions.
const (
	fSend        = "send"
	fPoll        = "poll"
	fAssign      = "assign"
	fListOffsets = "list-offsets"
	fFinalRead   = "final-read"
	fWrite       = "write"
	fRead        = "read"
)

// prepared is a history turned into model operations.
type prepared struct {
	Log      []*logOp
	Register []*regOp
	Stats    prepStats
}

type prepStats struct {
	ClientOps        int `json:"client_operations"`          // paired client operations
	Fail             int `json:"dropped_fail"`               // dropped: fail
	InfoReads        int `json:"dropped_info_reads"`         // dropped: info poll/list-offsets/final-read/read
	InfoSendsUnread  int `json:"dropped_unread_info_sends"`  // dropped: info send never read
	InfoSendsKept    int `json:"info_sends_kept"`            // info sends kept with an offset from a read
	InfoWrites       int `json:"info_writes_kept"`           // info register writes (kept)
	InfoWritesUnread int `json:"dropped_unread_info_writes"` // dropped: info write never read
	Assigns          int `json:"assigns"`                    // ok assigns (no model operation)
	EmptyPollRecords int `json:"empty_poll_record_lists"`    // keys of ok polls with an empty record list (no read)
}

// opMeta is the provenance of a model operation.
type opMeta struct {
	Key           string // the key, for descriptions
	Process       int64
	F             string
	Type          string // ok or info
	InvokeIndex   int64
	CompleteIndex int64 // -1: no completion
	Error         string
}

func (m *opMeta) describe() string {
	s := fmt.Sprintf("key %s, process %d, %s %s, invoke index %d", m.Key, m.Process, m.Type, m.F, m.InvokeIndex)
	if m.CompleteIndex >= 0 {
		s += fmt.Sprintf(", completion index %d", m.CompleteIndex)
	} else {
		s += ", never completed"
	}
	if m.Error != "" {
		s += ", error: " + m.Error
	}
	return s
}

// withKey returns a copy of m naming the key (an int64 or a string).
func (m *opMeta) withKey(key any) *opMeta {
	c := *m
	c.Key = fmt.Sprint(key)
	return &c
}

// call and ret are the porcupine call and return times.
func (m *opMeta) call() int64 { return m.InvokeIndex }

func (m *opMeta) ret() int64 {
	if m.Type == typeInfo {
		return infinity
	}
	return m.CompleteIndex
}

// Value shapes.

type keyValue struct {
	Key    *int64 `json:"key"`
	Value  *int64 `json:"value"`
	Offset *int64 `json:"offset"`
}

type keyOnly struct {
	Key *int64 `json:"key"`
}

type listOffsetsOK struct {
	Key    *int64 `json:"key"`
	Offset *int64 `json:"offset"`
}

type finalReadOK struct {
	Key     *int64    `json:"key"`
	End     *int64    `json:"end"`
	Records [][]int64 `json:"records"`
}

type pollOK struct {
	Records map[string]json.RawMessage `json:"records"`
}

type assignValue struct {
	Keys []int64 `json:"keys"`
}

type regValue struct {
	Key   *string         `json:"key"`
	Value json.RawMessage `json:"value"`
}

func decodeStrict(raw json.RawMessage, into any) error {
	if len(raw) == 0 || string(raw) == "null" {
		return fmt.Errorf("missing value")
	}
	d := json.NewDecoder(bytes.NewReader(raw))
	return d.Decode(into)
}

func decodeRecords(raw [][]int64) ([]record, error) {
	rs := make([]record, len(raw))
	for i, r := range raw {
		if len(r) != 2 {
			return nil, fmt.Errorf("record %v is not [offset, value]", r)
		}
		rs[i] = record{Offset: r[0], Value: r[1]}
	}
	return rs, nil
}

// decodeOptionalInt decodes an integer or null.
func decodeOptionalInt(raw json.RawMessage) (regValueState, error) {
	if len(raw) == 0 {
		return regValueState{}, fmt.Errorf("missing \"value\"")
	}
	if string(raw) == "null" {
		return regValueState{}, nil
	}
	v, err := strconv.ParseInt(string(bytes.TrimSpace(raw)), 10, 64)
	if err != nil {
		return regValueState{}, fmt.Errorf("value %s is not an integer or null", raw)
	}
	return regValueState{Set: true, V: v}, nil
}

type pollRead struct {
	key     int64
	records []record
}

// decodePoll returns an ok poll's non-empty per-key record lists, sorted by
// key, and the number of keys with an empty list.
func decodePoll(raw json.RawMessage) ([]pollRead, int, error) {
	var v pollOK
	if err := decodeStrict(raw, &v); err != nil {
		return nil, 0, err
	}
	if v.Records == nil {
		return nil, 0, fmt.Errorf("missing \"records\"")
	}
	var out []pollRead
	empty := 0
	for ks, rr := range v.Records {
		k, err := strconv.ParseInt(ks, 10, 64)
		if err != nil {
			return nil, 0, fmt.Errorf("records key %q is not a decimal integer", ks)
		}
		var raw [][]int64
		if err := json.Unmarshal(rr, &raw); err != nil {
			return nil, 0, fmt.Errorf("records of key %s: %v", ks, err)
		}
		rs, err := decodeRecords(raw)
		if err != nil {
			return nil, 0, fmt.Errorf("records of key %s: %v", ks, err)
		}
		if len(rs) == 0 {
			empty++
			continue
		}
		out = append(out, pollRead{key: k, records: rs})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].key < out[j].key })
	return out, empty, nil
}

// prepare validates the operations' values and builds the model operations.
func prepare(h *history) (*prepared, error) {
	p := &prepared{}
	p.Stats.ClientOps = len(h.Ops)

	// Pass 1: values returned by reads (ok polls and ok final-reads), per
	// key, at their lowest offset.
	type kv struct{ key, value int64 }
	readAt := map[kv]int64{}
	noteRead := func(key int64, rs []record) {
		for _, r := range rs {
			if o, ok := readAt[kv{key, r.Value}]; !ok || r.Offset < o {
				readAt[kv{key, r.Value}] = r.Offset
			}
		}
	}
	// Decoded ok results of polls and final reads, reused in pass 2.
	polls := map[*op][]pollRead{}
	finals := map[*op]*finalReadOK{}
	for _, o := range h.Ops {
		if o.Type != typeOK {
			continue
		}
		switch o.F {
		case fPoll:
			reads, empty, err := decodePoll(o.CompleteValue)
			if err != nil {
				return nil, opError(o, err)
			}
			p.Stats.EmptyPollRecords += empty
			polls[o] = reads
			for _, r := range reads {
				noteRead(r.key, r.records)
			}
		case fFinalRead:
			var v finalReadOK
			if err := decodeStrict(o.CompleteValue, &v); err != nil {
				return nil, opError(o, err)
			}
			if v.Key == nil || v.End == nil || v.Records == nil {
				return nil, opError(o, fmt.Errorf("ok final-read needs \"key\", \"end\" and \"records\""))
			}
			finals[o] = &v
			rs, err := decodeRecords(v.Records)
			if err != nil {
				return nil, opError(o, err)
			}
			noteRead(*v.Key, rs)
		}
	}

	// Pass 2: model operations, tracking each process's poll positions.
	positions := map[int64]map[int64]int64{} // process -> key -> offset its last poll of key ended at
	for _, o := range h.Ops {
		meta := &opMeta{Process: o.Process, F: o.F, Type: o.Type, InvokeIndex: o.InvokeIndex,
			CompleteIndex: o.CompleteIndex, Error: o.Error}
		switch o.F {
		case fSend:
			var in keyValue
			if err := decodeStrict(o.InvokeValue, &in); err != nil {
				return nil, opError(o, err)
			}
			if in.Key == nil || in.Value == nil {
				return nil, opError(o, fmt.Errorf("send needs \"key\" and \"value\""))
			}
			switch o.Type {
			case typeFail:
				p.Stats.Fail++
			case typeOK:
				var out keyValue
				if err := decodeStrict(o.CompleteValue, &out); err != nil {
					return nil, opError(o, err)
				}
				if out.Offset == nil {
					return nil, opError(o, fmt.Errorf("ok send needs \"offset\""))
				}
				if (out.Key != nil && *out.Key != *in.Key) || (out.Value != nil && *out.Value != *in.Value) {
					return nil, opError(o, fmt.Errorf("ok send's key/value differ from its invoke's"))
				}
				p.Log = append(p.Log, &logOp{Kind: logSend, Key: *in.Key, Value: *in.Value, Offset: *out.Offset, Meta: meta.withKey(*in.Key)})
			case typeInfo:
				off, read := readAt[kv{*in.Key, *in.Value}]
				if !read {
					p.Stats.InfoSendsUnread++
					continue
				}
				p.Stats.InfoSendsKept++
				p.Log = append(p.Log, &logOp{Kind: logSend, Key: *in.Key, Value: *in.Value, Offset: off, Meta: meta.withKey(*in.Key)})
			}
		case fPoll:
			switch o.Type {
			case typeFail:
				p.Stats.Fail++
			case typeInfo:
				p.Stats.InfoReads++
			case typeOK:
				pos := positions[o.Process]
				if pos == nil {
					pos = map[int64]int64{}
					positions[o.Process] = pos
				}
				for _, r := range polls[o] {
					rd := &logOp{Kind: logRead, Key: r.key, Records: r.records, Meta: meta.withKey(r.key)}
					if last, ok := pos[r.key]; ok {
						rd.HasFrom = true
						rd.From = last + 1
					}
					pos[r.key] = r.records[len(r.records)-1].Offset
					rd.checkShape()
					p.Log = append(p.Log, rd)
				}
			}
		case fAssign:
			var in assignValue
			if err := decodeStrict(o.InvokeValue, &in); err != nil {
				return nil, opError(o, err)
			}
			switch o.Type {
			case typeFail:
				p.Stats.Fail++
			case typeOK:
				p.Stats.Assigns++
				positions[o.Process] = map[int64]int64{}
			}
		case fListOffsets:
			var in keyOnly
			if err := decodeStrict(o.InvokeValue, &in); err != nil {
				return nil, opError(o, err)
			}
			if in.Key == nil {
				return nil, opError(o, fmt.Errorf("list-offsets needs \"key\""))
			}
			switch o.Type {
			case typeFail:
				p.Stats.Fail++
			case typeInfo:
				p.Stats.InfoReads++
			case typeOK:
				var out listOffsetsOK
				if err := decodeStrict(o.CompleteValue, &out); err != nil {
					return nil, opError(o, err)
				}
				if out.Offset == nil {
					return nil, opError(o, fmt.Errorf("ok list-offsets needs \"offset\""))
				}
				if out.Key != nil && *out.Key != *in.Key {
					return nil, opError(o, fmt.Errorf("ok list-offsets' key differs from its invoke's"))
				}
				p.Log = append(p.Log, &logOp{Kind: logListOffsets, Key: *in.Key, Offset: *out.Offset, Meta: meta.withKey(*in.Key)})
			}
		case fFinalRead:
			var in keyOnly
			if err := decodeStrict(o.InvokeValue, &in); err != nil {
				return nil, opError(o, err)
			}
			if in.Key == nil {
				return nil, opError(o, fmt.Errorf("final-read needs \"key\""))
			}
			switch o.Type {
			case typeFail:
				p.Stats.Fail++
			case typeInfo:
				p.Stats.InfoReads++
			case typeOK:
				v := finals[o]
				if *v.Key != *in.Key {
					return nil, opError(o, fmt.Errorf("ok final-read's key differs from its invoke's"))
				}
				rs, _ := decodeRecords(v.Records)
				fr := &logOp{Kind: logFinalRead, Key: *in.Key, End: *v.End, Records: rs, Meta: meta.withKey(*in.Key)}
				fr.checkShape()
				p.Log = append(p.Log, fr)
			}
		case fWrite:
			var in regValue
			if err := decodeStrict(o.InvokeValue, &in); err != nil {
				return nil, opError(o, err)
			}
			if in.Key == nil {
				return nil, opError(o, fmt.Errorf("write needs \"key\""))
			}
			v, err := decodeOptionalInt(in.Value)
			if err != nil {
				return nil, opError(o, err)
			}
			switch o.Type {
			case typeFail:
				p.Stats.Fail++
			case typeOK, typeInfo:
				if o.Type == typeInfo {
					p.Stats.InfoWrites++
				}
				p.Register = append(p.Register, &regOp{Kind: regWrite, Key: *in.Key, Value: v, Meta: meta.withKey(*in.Key)})
			}
		case fRead:
			var in regValue
			if err := decodeStrict(o.InvokeValue, &in); err != nil {
				return nil, opError(o, err)
			}
			if in.Key == nil {
				return nil, opError(o, fmt.Errorf("read needs \"key\""))
			}
			switch o.Type {
			case typeFail:
				p.Stats.Fail++
			case typeInfo:
				p.Stats.InfoReads++
			case typeOK:
				var out regValue
				if err := decodeStrict(o.CompleteValue, &out); err != nil {
					return nil, opError(o, err)
				}
				if out.Key != nil && *out.Key != *in.Key {
					return nil, opError(o, fmt.Errorf("ok read's key differs from its invoke's"))
				}
				v, err := decodeOptionalInt(out.Value)
				if err != nil {
					return nil, opError(o, err)
				}
				p.Register = append(p.Register, &regOp{Kind: regRead, Key: *in.Key, Value: v, Meta: meta.withKey(*in.Key)})
			}
		default:
			return nil, opError(o, fmt.Errorf("unknown f %q", o.F))
		}
	}
	dropUnreadInfoWrites(p)
	return p, nil
}

// dropUnreadInfoWrites removes info register writes whose value no ok read returned.
// Such a write can always be linearized after every other operation (its return time is
// infinite and nothing observed it), so dropping it keeps the verdict; keeping it makes the
// search try it at every point, which times out with a few dozen of them.
func dropUnreadInfoWrites(p *prepared) {
	type kv struct {
		key   string
		value string
	}
	read := map[kv]bool{}
	for _, r := range p.Register {
		if r.Kind == regRead {
			read[kv{r.Key, fmt.Sprint(r.Value)}] = true
		}
	}
	kept := p.Register[:0]
	for _, r := range p.Register {
		if r.Kind == regWrite && r.Meta.Type == typeInfo && !read[kv{r.Key, fmt.Sprint(r.Value)}] {
			p.Stats.InfoWrites--
			p.Stats.InfoWritesUnread++
			continue
		}
		kept = append(kept, r)
	}
	p.Register = kept
}

func opError(o *op, err error) error {
	return badInput("%s %s of process %d (invoke index %d): %v", o.Type, o.F, o.Process, o.InvokeIndex, err)
}
