package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

type expectation struct {
	Linearizable bool     `json:"linearizable"`
	Anomalies    []string `json:"anomalies"`
}

// checkDir checks every *.jsonl in dir against dir/expected.json (only the
// `linearizable` field).
func checkDir(t *testing.T, dir string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "expected.json"))
	if err != nil {
		t.Fatalf("reading expected verdicts: %v", err)
	}
	var expected map[string]expectation
	if err := json.Unmarshal(b, &expected); err != nil {
		t.Fatalf("parsing %s/expected.json: %v", dir, err)
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no histories in %s", dir)
	}
	seen := map[string]bool{}
	for _, file := range files {
		name := filepath.Base(file)
		seen[name] = true
		t.Run(strings.TrimSuffix(name, ".jsonl"), func(t *testing.T) {
			exp, ok := expected[name]
			if !ok {
				t.Fatalf("%s has no entry in expected.json", name)
			}
			rep, _, _, err := checkFile(file, time.Minute)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			want := verdictFalse
			if exp.Linearizable {
				want = verdictTrue
			}
			if rep.Valid != want {
				out, _ := rep.marshal()
				t.Errorf("%s: verdict %v, expected.json says linearizable=%v\n%s", name, rep.Valid, exp.Linearizable, out)
			}
			t.Logf("%s: %v", name, rep.Valid)
		})
	}
	var missing []string
	for name := range expected {
		if !seen[name] {
			missing = append(missing, name)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("expected.json lists histories that do not exist: %v", missing)
	}
}

// TestHistories checks the shared histories of ../histories, also checked by
// the Rust checker.
func TestHistories(t *testing.T) { checkDir(t, filepath.Join("..", "histories")) }

// TestTestdata checks this program's own small histories.
func TestTestdata(t *testing.T) { checkDir(t, "testdata") }

func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func TestExitCodesAndOutputs(t *testing.T) {
	dir := t.TempDir()
	htmlOut := filepath.Join(dir, "out.html")
	jsonOut := filepath.Join(dir, "out.json")

	code, stdout, stderr := runCLI(t, "-history", "testdata/queue-valid.jsonl", "-html", htmlOut, "-json", jsonOut)
	if code != 0 {
		t.Fatalf("valid history: exit %d\n%s%s", code, stdout, stderr)
	}
	if !strings.Contains(stdout, "verdict: linearizable") {
		t.Errorf("summary: %s", stdout)
	}
	var rep map[string]any
	b, err := os.ReadFile(jsonOut)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	if rep["valid"] != true {
		t.Errorf("json valid = %v", rep["valid"])
	}
	if keys := rep["keys"].(map[string]any); keys["1"] != true || keys["2"] != true || len(keys) != 2 {
		t.Errorf("json keys = %v", keys)
	}
	if fi, err := os.Stat(htmlOut); err != nil || fi.Size() < 1000 {
		t.Errorf("html: %v", err)
	}

	// Both models: one page per model plus an index at the given path.
	code, stdout, _ = runCLI(t, "-history", "testdata/mixed-register-broken.jsonl", "-html", htmlOut, "-json", jsonOut)
	if code != 1 {
		t.Fatalf("broken history: exit %d\n%s", code, stdout)
	}
	for _, p := range []string{htmlOut, filepath.Join(dir, "out-log.html"), filepath.Join(dir, "out-register.html")} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("html: %v", err)
		}
	}
	b, _ = os.ReadFile(jsonOut)
	rep = nil
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	keys := rep["keys"].(map[string]any)
	if rep["valid"] != false || keys["0"] != true || keys["cfg"] != false {
		t.Errorf("json: %s", b)
	}
	cfg := rep["models"].(map[string]any)["register"].(map[string]any)["keys"].(map[string]any)["cfg"].(map[string]any)
	if first := cfg["first_unlinearizable"].(map[string]any); first["invoke_index"] != 4.0 {
		t.Errorf("first unlinearizable: %v", first)
	}

	// Bad input and usage errors.
	bad := filepath.Join(dir, "bad.jsonl")
	for _, content := range []string{
		"{not json}\n",
		`{"index": 1, "type": "invoke", "process": 0, "f": "send", "value": {"key": 0, "value": 1}}` + "\n",
		`{"index": 0, "type": "ok", "process": 0, "f": "send", "value": {"key": 0, "value": 1, "offset": 0}}` + "\n",
		`{"index": 0, "type": "invoke", "process": 0, "f": "frobnicate", "value": null}` + "\n",
		`{"index": 0, "type": "invoke", "process": "client", "f": "send", "value": {"key": 0, "value": 1}}` + "\n",
		`{"index": 0, "type": "invoke", "process": 0, "f": "send", "value": {"key": 0, "value": 1.5}}` + "\n",
		`{"index": 0, "type": "invoke", "process": 0, "f": "send", "value": {"key": 0, "value": 1}}` + "\n" +
			`{"index": 1, "type": "ok", "process": 0, "f": "send", "value": {"key": 0, "value": 1}}` + "\n",
		`{"index": 0, "type": "invoke", "process": 0, "f": "send", "value": {"key": 0, "value": 1}}` + "\n" +
			`{"index": 1, "type": "info", "process": 0, "f": "send", "value": {"key": 0, "value": 1}}` + "\n" +
			`{"index": 2, "type": "invoke", "process": 0, "f": "send", "value": {"key": 0, "value": 2}}` + "\n",
	} {
		if err := os.WriteFile(bad, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if code, _, stderr := runCLI(t, "-history", bad); code != 3 {
			t.Errorf("bad input %q: exit %d, want 3 (%s)", content, code, stderr)
		}
	}
	if code, _, _ := runCLI(t, "-history", filepath.Join(dir, "missing.jsonl")); code != 3 {
		t.Errorf("missing file: exit %d", code)
	}
	if code, _, _ := runCLI(t); code != 3 {
		t.Errorf("no arguments: exit %d", code)
	}

	// Empty history: nothing to check.
	if err := os.WriteFile(bad, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out, _ := runCLI(t, "-history", bad, "-html", htmlOut); code != 0 {
		t.Errorf("empty history: exit %d %s", code, out)
	}
}

// hardRegisterHistory: many concurrent info writes (pending forever), each
// value read once, then a read of a value never written: porcupine must try
// exponentially many orders of the writes before concluding.
func hardRegisterHistory(writes int) []byte {
	var b bytes.Buffer
	i := 0
	ev := func(typ string, p int, f string, v any) {
		e, _ := json.Marshal(map[string]any{"index": i, "time": i, "type": typ, "process": p, "f": f, "value": v})
		b.Write(e)
		b.WriteByte('\n')
		i++
	}
	for w := 0; w < writes; w++ {
		ev("invoke", w, "write", map[string]any{"key": "k", "value": w})
	}
	for w := 0; w < writes; w++ {
		ev("info", w, "write", map[string]any{"key": "k", "value": w})
	}
	for w := 0; w < writes; w++ {
		ev("invoke", 1000, "read", map[string]any{"key": "k"})
		ev("ok", 1000, "read", map[string]any{"key": "k", "value": w})
	}
	ev("invoke", 1000, "read", map[string]any{"key": "k"})
	ev("ok", 1000, "read", map[string]any{"key": "k", "value": -1})
	return b.Bytes()
}

func TestTimeoutIsUnknown(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hard.jsonl")
	if err := os.WriteFile(path, hardRegisterHistory(40), 0o644); err != nil {
		t.Fatal(err)
	}
	jsonOut := filepath.Join(t.TempDir(), "out.json")
	code, stdout, stderr := runCLI(t, "-history", path, "-timeout", "200ms", "-json", jsonOut)
	if code != 2 {
		t.Fatalf("exit %d, want 2 (unknown)\n%s%s", code, stdout, stderr)
	}
	b, _ := os.ReadFile(jsonOut)
	var rep map[string]any
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	if rep["valid"] != "unknown" || rep["keys"].(map[string]any)["k"] != "unknown" {
		t.Errorf("json: %s", b)
	}
}
