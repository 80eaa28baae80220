// Command porcupine-check checks a gregor-jepsen history (history.jsonl) for
// linearizability with porcupine (github.com/anishathalye/porcupine),
// independently of the Rust checkers in ../src/checker. The history format,
// the preprocessing and the `log` and `register` models are those of
// ../HISTORY.md.
//
// Usage:
//
//	porcupine-check -history run/history.jsonl [-html out.html] [-json out.json] [-timeout 60s]
//
// Exit status: 0 linearizable, 1 not linearizable, 2 unknown (timeout),
// 3 bad input (or a usage / output error).
package main

import (
	"flag"
	"fmt"
	"html"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
)

const (
	exitBadInput = 3
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

type options struct {
	history string
	html    string
	json    string
	timeout time.Duration
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("porcupine-check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var opt options
	fs.StringVar(&opt.history, "history", "", "history file (JSONL, see HISTORY.md); required")
	fs.StringVar(&opt.html, "html", "", "write porcupine's HTML visualisation to this file")
	fs.StringVar(&opt.json, "json", "", "write the JSON verdict to this file")
	fs.DurationVar(&opt.timeout, "timeout", 60*time.Second, "search budget per model (0: unlimited); past it the verdict is unknown")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: porcupine-check -history run/history.jsonl [-html out.html] [-json out.json] [-timeout 60s]")
		fs.PrintDefaults()
		fmt.Fprintln(stderr, "exit status: 0 linearizable, 1 not linearizable, 2 unknown (timeout), 3 bad input")
	}
	if err := fs.Parse(args); err != nil {
		return exitBadInput
	}
	if opt.history == "" || fs.NArg() > 0 {
		fs.Usage()
		return exitBadInput
	}
	rep, runs, h, err := checkFile(opt.history, opt.timeout)
	if err != nil {
		fmt.Fprintf(stderr, "porcupine-check: %s: %v\n", opt.history, err)
		return exitBadInput
	}
	if opt.html != "" {
		if err := writeHTML(opt.html, runs, h); err != nil {
			fmt.Fprintf(stderr, "porcupine-check: writing HTML: %v\n", err)
			return exitBadInput
		}
		for _, r := range runs {
			rep.Models[r.Name].HTML = htmlPath(opt.html, r.Name, len(runs))
		}
	}
	if opt.json != "" {
		b, err := rep.marshal()
		if err == nil {
			err = os.WriteFile(opt.json, b, 0o644)
		}
		if err != nil {
			fmt.Fprintf(stderr, "porcupine-check: writing JSON: %v\n", err)
			return exitBadInput
		}
	}
	printSummary(stdout, rep, runs)
	return rep.Valid.exitCode()
}

// checkFile reads, preprocesses and checks one history.
func checkFile(path string, timeout time.Duration) (*report, []*modelRun, *history, error) {
	h, err := readHistoryFile(path)
	if err != nil {
		return nil, nil, nil, err
	}
	p, err := prepare(h)
	if err != nil {
		return nil, nil, nil, err
	}
	runs := checkAll(p, timeout)
	return buildReport(path, h, p, runs), runs, h, nil
}

// htmlPath: with one model (or none) the visualisation goes to the given
// path; with both, to <base>-log.html and <base>-register.html, and the given
// path gets a small index page linking to them.
func htmlPath(path, model string, models int) string {
	if models <= 1 {
		return path
	}
	return strings.TrimSuffix(path, filepath.Ext(path)) + "-" + model + ".html"
}

func writeHTML(path string, runs []*modelRun, h *history) error {
	if len(runs) == 0 {
		// Nothing to check: an empty visualisation.
		info := porcupine.LinearizationInfo{}
		info.AddAnnotations(nemesisAnnotations(h))
		return porcupine.VisualizePath(logModel, info, path)
	}
	for _, r := range runs {
		info := r.Info
		info.AddAnnotations(nemesisAnnotations(h))
		if err := porcupine.VisualizePath(r.Model, info, htmlPath(path, r.Name, len(runs))); err != nil {
			return err
		}
	}
	if len(runs) > 1 {
		var b strings.Builder
		b.WriteString("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>porcupine-check</title></head><body>\n<ul>\n")
		for _, r := range runs {
			name := filepath.Base(htmlPath(path, r.Name, len(runs)))
			fmt.Fprintf(&b, "<li><a href=\"%s\">%s</a>: %s</li>\n", html.EscapeString(name), r.Name, html.EscapeString(r.Report.Valid.String()))
		}
		b.WriteString("</ul>\n</body></html>\n")
		return os.WriteFile(path, []byte(b.String()), 0o644)
	}
	return nil
}

func printSummary(w io.Writer, rep *report, runs []*modelRun) {
	st := rep.Preprocessing
	fmt.Fprintf(w, "history %s: %d events, %d client operations, %d nemesis events\n",
		rep.History.File, rep.History.Events, rep.History.ClientOperations, rep.History.NemesisEvents)
	fmt.Fprintf(w, "dropped: %d fail, %d info reads, %d unread info sends, %d unread info writes; kept %d info sends (offset from a read), %d info writes\n",
		st.Fail, st.InfoReads, st.InfoSendsUnread, st.InfoWritesUnread, st.InfoSendsKept, st.InfoWrites)
	for _, r := range runs {
		m := r.Report
		fmt.Fprintf(w, "model %s: %s (%d operations, %d keys, %.2fs)\n", r.Name, m.Valid, m.Operations, len(m.Keys), r.Elapsed.Seconds())
		names := make([]string, 0, len(m.Keys))
		for name := range m.Keys {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			kr := m.Keys[name]
			if kr.Valid == verdictTrue {
				continue
			}
			fmt.Fprintf(w, "  key %s: %s (%d operations)", name, kr.Valid, kr.Operations)
			if kr.LongestPrefixLength != nil {
				fmt.Fprintf(w, "; longest linearizable prefix: %d operations", *kr.LongestPrefixLength)
			}
			fmt.Fprintln(w)
			if f := kr.FirstUnlinearizable; f != nil {
				fmt.Fprintf(w, "    first operation not linearized: %s (process %d, %s, invoke index %d)\n", f.Op, f.Process, f.Type, f.InvokeIndex)
			}
		}
		if m.HTML != "" {
			fmt.Fprintf(w, "  visualisation: %s\n", m.HTML)
		}
	}
	if len(runs) == 0 {
		fmt.Fprintln(w, "no operations to check")
	}
	fmt.Fprintf(w, "verdict: %s\n", rep.Valid)
}
