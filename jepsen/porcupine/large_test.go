package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// fiveMinuteRun approximates a 5-minute queue run: ~30,000 operations over 8
// keys by 10 concurrent processes, a few hundred info operations.
var fiveMinuteRun = genConfig{Seed: 1, Ops: 30_000, QueueKeys: 8, Workers: 10, InfoRate: 0.01, FailRate: 0.02}

func checkGenerated(t testing.TB, cfg genConfig, timeout time.Duration) (*report, time.Duration) {
	data := generateHistory(cfg)
	start := time.Now()
	h, err := readHistory(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	p, err := prepare(h)
	if err != nil {
		t.Fatal(err)
	}
	runs := checkAll(p, timeout)
	rep := buildReport("generated", h, p, runs)
	return rep, time.Since(start)
}

// TestLargeHistory: a generated valid history of the size of a 5-minute run
// must check as linearizable well within 30 s.
func TestLargeHistory(t *testing.T) {
	if testing.Short() {
		t.Skip("large history")
	}
	for _, tc := range []struct {
		name string
		cfg  genConfig
	}{
		{"queue", fiveMinuteRun},
		{"queue-seed2", func() genConfig { c := fiveMinuteRun; c.Seed = 2; return c }()},
		{"mixed", genConfig{Seed: 3, Ops: 30_000, QueueKeys: 8, RegisterKeys: 4, Workers: 10, InfoRate: 0.005, FailRate: 0.02}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep, elapsed := checkGenerated(t, tc.cfg, 60*time.Second)
			st := rep.Preprocessing
			t.Logf("%s: %d events, %d client ops (%d fail, %d info reads, %d unread info sends, %d info sends kept, %d info writes): %v in %v",
				tc.name, rep.History.Events, rep.History.ClientOperations, st.Fail, st.InfoReads, st.InfoSendsUnread,
				st.InfoSendsKept, st.InfoWrites, rep.Valid, elapsed)
			if rep.Valid != verdictTrue {
				out, _ := rep.marshal()
				t.Fatalf("generated valid history judged %v\n%.4000s", rep.Valid, out)
			}
			if elapsed > 30*time.Second {
				t.Errorf("took %v, target 30s", elapsed)
			}
		})
	}
}

// TestLargeHistoryBroken: corrupting one read value of a large valid history
// must be caught.
func TestLargeHistoryBroken(t *testing.T) {
	if testing.Short() {
		t.Skip("large history")
	}
	data := generateHistory(fiveMinuteRun)
	// Change the value of the last record of key 3's final read.
	lines := bytes.Split(bytes.TrimSpace(data), []byte("\n"))
	var target int = -1
	for i := len(lines) - 1; i >= 0; i-- {
		if bytes.Contains(lines[i], []byte(`"f":"final-read"`)) && bytes.Contains(lines[i], []byte(`"type":"ok"`)) &&
			bytes.Contains(lines[i], []byte(`"key":3,`)) {
			target = i
			break
		}
	}
	if target < 0 {
		t.Fatal("no final read of key 3")
	}
	l := lines[target]
	j := bytes.LastIndexByte(l, ',') // ...,[offset,value]]
	k := bytes.IndexByte(l[j:], ']')
	lines[target] = append(append(append([]byte{}, l[:j+1]...), []byte("999999999")...), l[j+k:]...)
	path := filepath.Join(t.TempDir(), "broken.jsonl")
	if err := os.WriteFile(path, append(bytes.Join(lines, []byte("\n")), '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	rep, _, _, err := checkFile(path, 60*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("broken large history: %v in %v", rep.Valid, time.Since(start))
	if rep.Valid != verdictFalse || rep.Keys["3"] != verdictFalse {
		t.Errorf("verdict %v, keys %v", rep.Valid, rep.Keys)
	}
	for k, v := range rep.Keys {
		if k != "3" && v != verdictTrue {
			t.Errorf("key %s: %v", k, v)
		}
	}
}

func BenchmarkLargeHistory(b *testing.B) {
	data := generateHistory(fiveMinuteRun)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		h, err := readHistory(bytes.NewReader(data))
		if err != nil {
			b.Fatal(err)
		}
		p, err := prepare(h)
		if err != nil {
			b.Fatal(err)
		}
		runs := checkAll(p, 0)
		if rep := buildReport("generated", h, p, runs); rep.Valid != verdictTrue {
			b.Fatalf("verdict %v", rep.Valid)
		}
	}
}

// TestWriteGenerated writes generated histories for cross-checking other
// checkers (e.g. the Rust one) when PORCUPINE_GEN_OUT names a directory:
//
//	PORCUPINE_GEN_OUT=/tmp/gen go test -run TestWriteGenerated
//
// All of them are linearizable.
func TestWriteGenerated(t *testing.T) {
	dir := os.Getenv("PORCUPINE_GEN_OUT")
	if dir == "" {
		t.Skip("PORCUPINE_GEN_OUT not set")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, cfg := range map[string]genConfig{
		"gen-queue-30k.jsonl": fiveMinuteRun,
		"gen-mixed-30k.jsonl": {Seed: 3, Ops: 30_000, QueueKeys: 8, RegisterKeys: 4, Workers: 10, InfoRate: 0.005, FailRate: 0.02},
		"gen-small-1.jsonl":   {Seed: 11, Ops: 200, QueueKeys: 2, RegisterKeys: 1, Workers: 5, InfoRate: 0.05, FailRate: 0.05},
		"gen-small-2.jsonl":   {Seed: 12, Ops: 200, QueueKeys: 1, RegisterKeys: 2, Workers: 8, InfoRate: 0.1, FailRate: 0.05},
	} {
		if err := os.WriteFile(filepath.Join(dir, name), generateHistory(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
