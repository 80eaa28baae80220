package main

// A generator of large valid histories: a simulated linearizable cluster
// (one append-only log per queue key, one register per metadata key) driven
// by concurrent client processes, with failures, indeterminate (info)
// operations whose effects land late or never, nemesis events and final reads.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand"
	"strconv"
)

type genConfig struct {
	Seed         int64
	Ops          int // client operations to invoke (before the final reads)
	QueueKeys    int
	RegisterKeys int
	Workers      int     // concurrent client processes
	InfoRate     float64 // probability that an operation ends as info
	FailRate     float64 // probability that an operation fails
}

type genOp struct {
	f       string
	key     int64
	regKey  string
	value   int64
	applied bool
	result  any // completion value
	fails   bool
	info    bool
}

type genWorker struct {
	process   int64
	assigned  []int64
	positions map[int64]int64 // key -> next offset to poll
	pending   *genOp
}

type generator struct {
	cfg     genConfig
	rng     *rand.Rand
	buf     bytes.Buffer
	index   int64
	time    int64
	logs    [][]int64
	regs    []*int64
	next    int64
	late    []*genOp // info operations whose effect will still land
	workers []*genWorker
	// Stats.
	infos, fails int
}

func (g *generator) emit(typ string, process any, f string, value any, errText string) {
	g.time += 1 + g.rng.Int63n(50_000)
	ev := map[string]any{"index": g.index, "time": g.time, "type": typ, "process": process, "f": f, "value": value}
	if errText != "" {
		ev["error"] = errText
	}
	b, err := json.Marshal(ev)
	if err != nil {
		panic(err)
	}
	g.buf.Write(b)
	g.buf.WriteByte('\n')
	g.index++
}

func records(log []int64, from, to int64) [][2]int64 {
	out := make([][2]int64, 0, to-from)
	for o := from; o < to; o++ {
		out = append(out, [2]int64{o, log[o]})
	}
	return out
}

// apply performs an operation's effect on the simulated cluster and records
// its result.
func (g *generator) apply(w *genWorker, o *genOp) {
	o.applied = true
	switch o.f {
	case fSend:
		off := int64(len(g.logs[o.key]))
		g.logs[o.key] = append(g.logs[o.key], o.value)
		o.result = map[string]any{"key": o.key, "value": o.value, "offset": off}
	case fPoll:
		recs := map[string]any{}
		for _, k := range w.assigned {
			pos := w.positions[k]
			end := int64(len(g.logs[k]))
			if pos >= end {
				continue
			}
			if end-pos > 5 {
				end = pos + 1 + g.rng.Int63n(5)
			}
			recs[strconv.FormatInt(k, 10)] = records(g.logs[k], pos, end)
			w.positions[k] = end
		}
		o.result = map[string]any{"records": recs}
	case fAssign:
		w.positions = map[int64]int64{}
		for _, k := range w.assigned {
			// Seek anywhere: the first poll after an assign is unconstrained.
			w.positions[k] = g.rng.Int63n(int64(len(g.logs[k])) + 1)
		}
		o.result = map[string]any{"keys": w.assigned}
	case fListOffsets:
		o.result = map[string]any{"key": o.key, "offset": len(g.logs[o.key])}
	case fWrite:
		v := o.value
		g.regs[o.key] = &v
		o.result = map[string]any{"key": o.regKey, "value": o.value}
	case fRead:
		var v any
		if r := g.regs[o.key]; r != nil {
			v = *r
		}
		o.result = map[string]any{"key": o.regKey, "value": v}
	}
}

func (g *generator) invoke(w *genWorker) {
	o := &genOp{}
	var value any
	if w.assigned == nil && g.cfg.QueueKeys > 0 {
		o.f = fAssign
	} else {
		r := g.rng.Float64()
		useRegister := g.cfg.RegisterKeys > 0 && (g.cfg.QueueKeys == 0 || g.rng.Float64() < 0.25)
		switch {
		case useRegister:
			o.key = g.rng.Int63n(int64(g.cfg.RegisterKeys))
			o.regKey = fmt.Sprintf("topic-%d", o.key)
			if r < 0.4 {
				o.f = fWrite
			} else {
				o.f = fRead
			}
		case r < 0.5:
			o.f = fSend
			o.key = g.rng.Int63n(int64(g.cfg.QueueKeys))
		case r < 0.85:
			o.f = fPoll
		case r < 0.95:
			o.f = fListOffsets
			o.key = g.rng.Int63n(int64(g.cfg.QueueKeys))
		default:
			o.f = fAssign
		}
	}
	switch o.f {
	case fSend:
		g.next++
		o.value = g.next
		value = map[string]any{"key": o.key, "value": o.value}
	case fPoll:
		value = nil
	case fAssign:
		w.assigned = nil
		for k := int64(0); k < int64(g.cfg.QueueKeys); k++ {
			if g.rng.Intn(2) == 0 {
				w.assigned = append(w.assigned, k)
			}
		}
		if len(w.assigned) == 0 {
			w.assigned = []int64{g.rng.Int63n(int64(g.cfg.QueueKeys))}
		}
		value = map[string]any{"keys": w.assigned}
	case fListOffsets:
		value = map[string]any{"key": o.key}
	case fWrite:
		g.next++
		o.value = g.next
		value = map[string]any{"key": o.regKey, "value": o.value}
	case fRead:
		value = map[string]any{"key": o.regKey}
	}
	r := g.rng.Float64()
	o.info = r < g.cfg.InfoRate
	// Assigns are local to the client: they do not fail.
	o.fails = !o.info && o.f != fAssign && r < g.cfg.InfoRate+g.cfg.FailRate
	w.pending = o
	g.emit(typeInvoke, w.process, o.f, value, "")
}

// advance moves a worker's pending operation one step: apply, or complete.
func (g *generator) advance(w *genWorker) {
	o := w.pending
	switch {
	case o.fails:
		g.fails++
		g.emit(typeFail, w.process, o.f, nil, "simulated failure")
		w.pending = nil
	case !o.applied && !o.info:
		g.apply(w, o)
	case o.info:
		if !o.applied && g.rng.Intn(3) == 0 {
			g.apply(w, o) // took effect before the client gave up
		}
		g.infos++
		g.emit(typeInfo, w.process, o.f, nil, "simulated timeout")
		if !o.applied && (o.f == fSend || o.f == fWrite) && g.rng.Intn(2) == 0 {
			g.late = append(g.late, o) // will take effect later
		}
		// The process is done; the worker continues as a new process.
		*w = genWorker{process: w.process + int64(g.cfg.Workers)}
	default:
		g.emit(typeOK, w.process, o.f, o.result, "")
		w.pending = nil
	}
}

func generateHistory(cfg genConfig) []byte {
	g := &generator{cfg: cfg, rng: rand.New(rand.NewSource(cfg.Seed))}
	g.logs = make([][]int64, cfg.QueueKeys)
	g.regs = make([]*int64, cfg.RegisterKeys)
	for i := 0; i < cfg.Workers; i++ {
		g.workers = append(g.workers, &genWorker{process: int64(i)})
	}
	invoked := 0
	nemesis := []string{"kill", "restart", "pause", "resume", "partition", "heal"}
	for invoked < cfg.Ops {
		if g.rng.Intn(2000) == 0 {
			g.emit(typeInfo, "nemesis", nemesis[g.rng.Intn(len(nemesis))], map[string]any{"node": g.rng.Intn(3)}, "")
		}
		if len(g.late) > 0 && g.rng.Intn(20) == 0 {
			i := g.rng.Intn(len(g.late))
			g.apply(&genWorker{}, g.late[i])
			g.late = append(g.late[:i], g.late[i+1:]...)
		}
		w := g.workers[g.rng.Intn(len(g.workers))]
		if w.pending == nil {
			g.invoke(w)
			invoked++
		} else {
			g.advance(w)
		}
	}
	// Quiesce: finish every pending operation, land late effects.
	for _, w := range g.workers {
		for w.pending != nil {
			g.advance(w)
		}
	}
	for _, o := range g.late {
		g.apply(&genWorker{}, o)
	}
	// Final reads by a fresh process.
	final := int64(1_000_000)
	for k := 0; k < cfg.QueueKeys; k++ {
		g.emit(typeInvoke, final, fFinalRead, map[string]any{"key": k}, "")
		log := g.logs[k]
		g.emit(typeOK, final, fFinalRead, map[string]any{"key": k, "end": len(log), "records": records(log, 0, int64(len(log)))}, "")
	}
	return g.buf.Bytes()
}
