package main

// Reading a history.jsonl (format: ../HISTORY.md) and pairing each client
// invocation with its completion.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
)

// Event types.
const (
	typeInvoke = "invoke"
	typeOK     = "ok"
	typeFail   = "fail"
	typeInfo   = "info"
)

// event is one line of the history.
type event struct {
	Index   int64
	Time    int64
	Type    string
	Nemesis bool  // process "nemesis"
	Process int64 // client process, when !Nemesis
	F       string
	Value   json.RawMessage // nil when absent
	Error   string
}

// op is a client operation: an invoke paired with its completion.
type op struct {
	Process     int64
	F           string
	InvokeIndex int64
	// CompleteIndex is the index of the completion event, or -1 when the
	// invoke has no completion in the file (it then counts as info).
	CompleteIndex int64
	Type          string // ok, fail or info
	InvokeValue   json.RawMessage
	CompleteValue json.RawMessage // nil without a completion
	Error         string
}

// history is a parsed history file.
type history struct {
	Events  int
	Ops     []*op // in invocation order
	Nemesis []*event
}

// inputError is a malformed history: exit status 3.
type inputError struct{ msg string }

func (e *inputError) Error() string { return e.msg }

func badInput(format string, args ...any) error {
	return &inputError{fmt.Sprintf(format, args...)}
}

type rawEvent struct {
	Index   *int64          `json:"index"`
	Time    *int64          `json:"time"`
	Type    *string         `json:"type"`
	Process json.RawMessage `json:"process"`
	F       *string         `json:"f"`
	Value   json.RawMessage `json:"value"`
	Error   json.RawMessage `json:"error"`
}

func readHistoryFile(path string) (*history, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, badInput("%v", err)
	}
	defer f.Close()
	return readHistory(f)
}

// readHistory parses a JSONL history and pairs invocations with completions.
func readHistory(r io.Reader) (*history, error) {
	h := &history{}
	outstanding := map[int64]*op{} // process -> its open invocation
	retired := map[int64]int64{}   // process -> index of its info completion
	br := bufio.NewReaderSize(r, 1<<20)
	line := 0
	for {
		text, err := br.ReadBytes('\n')
		if len(text) > 0 {
			line++
			text = bytes.TrimSpace(text)
			if len(text) > 0 {
				ev, perr := parseEvent(text, int64(h.Events))
				if perr != nil {
					return nil, badInput("line %d: %v", line, perr)
				}
				h.Events++
				if perr := h.add(ev, outstanding, retired); perr != nil {
					return nil, badInput("line %d (index %d): %v", line, ev.Index, perr)
				}
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, badInput("reading history: %v", err)
		}
	}
	// An invoke without completion counts as info.
	for _, o := range outstanding {
		o.Type = typeInfo
		o.CompleteIndex = -1
	}
	return h, nil
}

func parseEvent(text []byte, position int64) (*event, error) {
	var raw rawEvent
	if err := json.Unmarshal(text, &raw); err != nil {
		return nil, fmt.Errorf("not a JSON event object: %v", err)
	}
	if raw.Index == nil {
		return nil, fmt.Errorf("missing \"index\"")
	}
	if *raw.Index != position {
		return nil, fmt.Errorf("\"index\" is %d, expected %d (position in the file)", *raw.Index, position)
	}
	ev := &event{Index: *raw.Index}
	if raw.Time != nil {
		ev.Time = *raw.Time
	}
	if raw.Type == nil {
		return nil, fmt.Errorf("missing \"type\"")
	}
	ev.Type = *raw.Type
	switch ev.Type {
	case typeInvoke, typeOK, typeFail, typeInfo:
	default:
		return nil, fmt.Errorf("unknown type %q", ev.Type)
	}
	if raw.F == nil {
		return nil, fmt.Errorf("missing \"f\"")
	}
	ev.F = *raw.F
	if len(raw.Process) == 0 {
		return nil, fmt.Errorf("missing \"process\"")
	}
	var name string
	if err := json.Unmarshal(raw.Process, &name); err == nil {
		if name != "nemesis" {
			return nil, fmt.Errorf("process %q: must be a non-negative integer or \"nemesis\"", name)
		}
		ev.Nemesis = true
	} else {
		p, err := strconv.ParseInt(string(raw.Process), 10, 64)
		if err != nil || p < 0 {
			return nil, fmt.Errorf("process %s: must be a non-negative integer or \"nemesis\"", raw.Process)
		}
		ev.Process = p
	}
	if len(raw.Value) > 0 {
		ev.Value = raw.Value
	}
	if len(raw.Error) > 0 && string(raw.Error) != "null" {
		var s string
		if err := json.Unmarshal(raw.Error, &s); err == nil {
			ev.Error = s
		} else {
			ev.Error = string(raw.Error)
		}
	}
	return ev, nil
}

func (h *history) add(ev *event, outstanding map[int64]*op, retired map[int64]int64) error {
	if ev.Nemesis {
		h.Nemesis = append(h.Nemesis, ev)
		return nil
	}
	p := ev.Process
	if ev.Type == typeInvoke {
		if prev, ok := outstanding[p]; ok {
			return fmt.Errorf("process %d invokes %s while its %s (index %d) is outstanding", p, ev.F, prev.F, prev.InvokeIndex)
		}
		if at, ok := retired[p]; ok {
			return fmt.Errorf("process %d invokes %s after its info completion at index %d", p, ev.F, at)
		}
		o := &op{Process: p, F: ev.F, InvokeIndex: ev.Index, CompleteIndex: -1, InvokeValue: ev.Value}
		outstanding[p] = o
		h.Ops = append(h.Ops, o)
		return nil
	}
	o, ok := outstanding[p]
	if !ok {
		return fmt.Errorf("%s %s of process %d without an outstanding invoke", ev.Type, ev.F, p)
	}
	if o.F != ev.F {
		return fmt.Errorf("%s %s of process %d completes its invoke of %s (index %d)", ev.Type, ev.F, p, o.F, o.InvokeIndex)
	}
	delete(outstanding, p)
	o.Type = ev.Type
	o.CompleteIndex = ev.Index
	o.CompleteValue = ev.Value
	o.Error = ev.Error
	if ev.Type == typeInfo {
		retired[p] = ev.Index
	}
	return nil
}
