package main

// Running porcupine on the prepared operations and turning its answer into
// per-model and per-key verdicts.

import (
	"encoding/json"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"
)

// verdict is true, false or "unknown" in JSON.
type verdict int

const (
	verdictTrue verdict = iota
	verdictFalse
	verdictUnknown
)

func (v verdict) MarshalJSON() ([]byte, error) {
	switch v {
	case verdictTrue:
		return []byte("true"), nil
	case verdictFalse:
		return []byte("false"), nil
	}
	return []byte(`"unknown"`), nil
}

func (v verdict) String() string {
	switch v {
	case verdictTrue:
		return "linearizable"
	case verdictFalse:
		return "NOT linearizable"
	}
	return "unknown (timed out)"
}

// combine: false wins over unknown, unknown over true.
func combine(vs ...verdict) verdict {
	out := verdictTrue
	for _, v := range vs {
		if v == verdictFalse {
			return verdictFalse
		}
		if v == verdictUnknown {
			out = verdictUnknown
		}
	}
	return out
}

// opReport describes one model operation in the JSON verdict.
type opReport struct {
	Op            string `json:"op"`
	Process       int64  `json:"process"`
	Type          string `json:"type"`
	InvokeIndex   int64  `json:"invoke_index"`
	CompleteIndex *int64 `json:"complete_index,omitempty"`
	Error         string `json:"error,omitempty"`
}

// keyReport is the JSON verdict of one key.
type keyReport struct {
	Valid      verdict `json:"valid"`
	Operations int     `json:"operations"`
	// When not valid (or unknown): the longest linearizable prefix found,
	// as the invoke indices of its operations in linearization order, and
	// the first operation that could not be linearized after it (the one
	// not in the prefix with the earliest return).
	LongestPrefixLength *int      `json:"longest_prefix_length,omitempty"`
	LongestPrefix       []int64   `json:"longest_prefix,omitempty"`
	FirstUnlinearizable *opReport `json:"first_unlinearizable,omitempty"`
	// Ambiguous: the check hit its deadline after some key was found not
	// linearizable, and this key had no complete linearization by then.
	Note string `json:"note,omitempty"`
}

// modelReport is the JSON verdict of one model.
type modelReport struct {
	Valid      verdict               `json:"valid"`
	Result     string                `json:"result"` // porcupine's Ok / Illegal / Unknown
	Operations int                   `json:"operations"`
	ElapsedMS  int64                 `json:"elapsed_ms"`
	TimedOut   bool                  `json:"timed_out"`
	HTML       string                `json:"html,omitempty"`
	Keys       map[string]*keyReport `json:"keys"`
}

// modelRun is one porcupine check of one model.
type modelRun struct {
	Name     string
	Model    porcupine.Model
	Ops      []porcupine.Operation
	KeyNames []string // per partition, in partition order
	Result   porcupine.CheckResult
	Info     porcupine.LinearizationInfo
	Elapsed  time.Duration
	TimedOut bool
	Report   *modelReport
}

// clientRows maps process ids to dense visualisation rows (ascending id).
func clientRows(procs []int64) map[int64]int {
	sort.Slice(procs, func(i, j int) bool { return procs[i] < procs[j] })
	rows := map[int64]int{}
	for _, p := range procs {
		if _, ok := rows[p]; !ok {
			rows[p] = len(rows)
		}
	}
	return rows
}

func toOperations(inputs []any, metas []*opMeta) []porcupine.Operation {
	procs := make([]int64, len(metas))
	for i, m := range metas {
		procs[i] = m.Process
	}
	rows := clientRows(procs)
	ops := make([]porcupine.Operation, len(inputs))
	for i, in := range inputs {
		m := metas[i]
		ops[i] = porcupine.Operation{ClientId: rows[m.Process], Input: in, Call: m.call(), Return: m.ret(), Metadata: m}
	}
	return ops
}

func newLogRun(p *prepared) *modelRun {
	inputs := make([]any, len(p.Log))
	metas := make([]*opMeta, len(p.Log))
	for i, o := range p.Log {
		inputs[i], metas[i] = o, o.Meta
	}
	r := &modelRun{Name: "log", Model: logModel, Ops: toOperations(inputs, metas)}
	for _, part := range partitionLog(r.Ops) {
		r.KeyNames = append(r.KeyNames, strconv.FormatInt(logKeyOf(part[0]), 10))
	}
	return r
}

func newRegisterRun(p *prepared) *modelRun {
	inputs := make([]any, len(p.Register))
	metas := make([]*opMeta, len(p.Register))
	for i, o := range p.Register {
		inputs[i], metas[i] = o, o.Meta
	}
	r := &modelRun{Name: "register", Model: registerModel, Ops: toOperations(inputs, metas)}
	for _, part := range partitionRegister(r.Ops) {
		r.KeyNames = append(r.KeyNames, regKeyOf(part[0]))
	}
	return r
}

func metaOf(op porcupine.Operation) *opMeta { return op.Metadata.(*opMeta) }

func describeOp(model porcupine.Model, op porcupine.Operation) *opReport {
	m := metaOf(op)
	r := &opReport{Op: model.DescribeOperation(op.Input, op.Output), Process: m.Process, Type: m.Type,
		InvokeIndex: m.InvokeIndex, Error: m.Error}
	if m.CompleteIndex >= 0 {
		ci := m.CompleteIndex
		r.CompleteIndex = &ci
	}
	return r
}

// run checks the model's operations with the given timeout (0: none) and
// derives the verdicts.
func (r *modelRun) run(timeout time.Duration) {
	start := time.Now()
	r.Result, r.Info = porcupine.CheckOperationsVerbose(r.Model, r.Ops, timeout)
	r.Elapsed = time.Since(start)
	// porcupine's deadline starts after this clock's: if this clock has
	// not reached the timeout, the deadline did not fire.
	r.TimedOut = timeout > 0 && r.Elapsed >= timeout

	rep := &modelReport{Operations: len(r.Ops), ElapsedMS: r.Elapsed.Milliseconds(), Result: string(r.Result),
		Keys: map[string]*keyReport{}}
	switch r.Result {
	case porcupine.Ok:
		rep.Valid = verdictTrue
	case porcupine.Illegal:
		rep.Valid = verdictFalse
	default:
		rep.Valid = verdictUnknown
	}
	rep.TimedOut = r.Result == porcupine.Unknown || (r.Result == porcupine.Illegal && r.TimedOut)

	parts := r.Model.Partition(r.Ops)
	var partials [][][]porcupine.Operation
	if len(r.Ops) > 0 {
		partials = r.Info.PartialLinearizationsOperations()
	}
	for i, part := range parts {
		kr := &keyReport{Operations: len(part)}
		rep.Keys[r.KeyNames[i]] = kr
		var longest []porcupine.Operation
		for _, seq := range partials[i] {
			if len(seq) > len(longest) {
				longest = seq
			}
		}
		switch {
		case len(longest) == len(part):
			kr.Valid = verdictTrue
			continue
		case r.Result == porcupine.Illegal && !r.TimedOut:
			kr.Valid = verdictFalse
		case r.Result == porcupine.Illegal:
			kr.Valid = verdictUnknown
			kr.Note = "the search hit its deadline: this key is either not linearizable or unknown"
		default:
			kr.Valid = verdictUnknown
		}
		n := len(longest)
		kr.LongestPrefixLength = &n
		in := map[any]bool{}
		kr.LongestPrefix = make([]int64, 0, n)
		for _, op := range longest {
			in[op.Input] = true
			kr.LongestPrefix = append(kr.LongestPrefix, metaOf(op).InvokeIndex)
		}
		var first *porcupine.Operation
		for j := range part {
			op := &part[j]
			if in[op.Input] {
				continue
			}
			if first == nil || op.Return < first.Return || (op.Return == first.Return && op.Call < first.Call) {
				first = op
			}
		}
		if first != nil {
			kr.FirstUnlinearizable = describeOp(r.Model, *first)
		}
	}
	r.Report = rep
}

// checkAll runs the models that have operations concurrently.
func checkAll(p *prepared, timeout time.Duration) []*modelRun {
	var runs []*modelRun
	if len(p.Log) > 0 {
		runs = append(runs, newLogRun(p))
	}
	if len(p.Register) > 0 {
		runs = append(runs, newRegisterRun(p))
	}
	var wg sync.WaitGroup
	for _, r := range runs {
		wg.Add(1)
		go func(r *modelRun) {
			defer wg.Done()
			r.run(timeout)
		}(r)
	}
	wg.Wait()
	return runs
}

// nemesisAnnotations shows nemesis events in the visualisation.
func nemesisAnnotations(h *history) []porcupine.Annotation {
	var out []porcupine.Annotation
	for _, ev := range h.Nemesis {
		details := ""
		if len(ev.Value) > 0 && string(ev.Value) != "null" {
			details = string(ev.Value)
		}
		out = append(out, porcupine.Annotation{Tag: "nemesis", Start: ev.Index, End: ev.Index,
			Description: ev.F, Details: details, BackgroundColor: "#fde2e2"})
	}
	return out
}

// report is the JSON verdict file.
type report struct {
	Valid         verdict                 `json:"valid"`
	History       historyReport           `json:"history"`
	Preprocessing prepStats               `json:"preprocessing"`
	Models        map[string]*modelReport `json:"models"`
	Keys          map[string]verdict      `json:"keys"`
}

type historyReport struct {
	File             string `json:"file"`
	Events           int    `json:"events"`
	ClientOperations int    `json:"client_operations"`
	NemesisEvents    int    `json:"nemesis_events"`
}

func buildReport(file string, h *history, p *prepared, runs []*modelRun) *report {
	rep := &report{
		History:       historyReport{File: file, Events: h.Events, ClientOperations: len(h.Ops), NemesisEvents: len(h.Nemesis)},
		Preprocessing: p.Stats,
		Models:        map[string]*modelReport{},
		Keys:          map[string]verdict{},
	}
	// Top-level key names are the keys themselves; if a queue key and a
	// metadata key print the same, both are qualified as "<model>:<key>".
	seen := map[string]int{}
	for _, r := range runs {
		for name := range r.Report.Keys {
			seen[name]++
		}
	}
	var all []verdict
	for _, r := range runs {
		rep.Models[r.Name] = r.Report
		all = append(all, r.Report.Valid)
		for name, kr := range r.Report.Keys {
			if seen[name] > 1 {
				name = r.Name + ":" + name
			}
			rep.Keys[name] = kr.Valid
		}
	}
	rep.Valid = combine(all...)
	return rep
}

func (r *report) marshal() ([]byte, error) {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// exitCode: 0 linearizable, 1 not, 2 unknown.
func (v verdict) exitCode() int {
	switch v {
	case verdictTrue:
		return 0
	case verdictFalse:
		return 1
	}
	return 2
}
