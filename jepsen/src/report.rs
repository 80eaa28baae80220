//! The verdict of a run: the Rust checkers' results (`results.json`), porcupine's
//! (`porcupine.json`, `porcupine*.html`), and a one-screen summary (`summary.txt`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::Value;

use crate::checker;
use crate::history::{self, Event};
use crate::nemesis::NemesisStats;
use crate::runner::RunOptions;

/// What the runner knows besides the history.
pub struct RunFacts {
    pub options: RunOptions,
    pub nemesis: NemesisStats,
    pub final_reads: usize,
    /// Nodes that died without being killed: always a failure.
    pub crashed_nodes: Vec<String>,
    /// Why the cluster did not recover after the heal, if it did not.
    pub recovered: Option<String>,
    pub duration: Duration,
}

pub struct Verdict {
    pub valid: bool,
    pub summary: String,
}

/// Checks a run's history and writes its report into `dir`.
pub fn check_and_report(dir: &Path, facts: &RunFacts, porcupine: Option<&Path>) -> Result<Verdict> {
    let history_path = dir.join("history.jsonl");
    let events = history::read_jsonl(&history_path)?;
    let mut summary = String::new();
    let o = &facts.options;
    let _ = writeln!(summary, "Gregor Jepsen run: {}", dir.display());
    let queue = match o.consume {
        crate::runner::ConsumeMode::Assign => "queue (assign)",
        crate::runner::ConsumeMode::Subscribe => "queue (subscribe)",
    };
    let workloads: Vec<&str> = [(queue, o.queue), ("metadata", o.metadata)]
        .iter()
        .filter(|(_, on)| *on)
        .map(|(n, _)| *n)
        .collect();
    let _ = writeln!(
        summary,
        "workload {} for {} s at {} ops/s, {} processes each; acks={} idempotence={} min.insync.replicas={} unclean.leader.election.enable={} seed={}",
        workloads.join("+"),
        o.time_limit.as_secs(),
        o.rate,
        o.concurrency,
        o.acks,
        o.idempotence,
        o.min_insync_replicas,
        o.unclean_leader_election,
        o.seed
    );
    let kinds: Vec<String> = facts
        .nemesis
        .by_kind
        .iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    let _ = writeln!(
        summary,
        "faults: {} every {} s ({})",
        facts.nemesis.faults,
        o.interval.as_secs(),
        if kinds.is_empty() {
            "none".to_string()
        } else {
            kinds.join(", ")
        }
    );
    if o.queue {
        let records: usize = events
            .iter()
            .filter_map(|e| {
                let v = serde_json::to_value(e).ok()?;
                (v["f"] == "final-read" && v["type"] == "ok")
                    .then(|| v["value"]["records"].as_array().map(|a| a.len()))
                    .flatten()
            })
            .sum();
        let _ = writeln!(
            summary,
            "final reads: {} of {} keys, {} records",
            facts.final_reads, o.keys, records
        );
    }
    let mut failures: Vec<String> = Vec::new();
    failures.extend(facts.crashed_nodes.iter().cloned());
    if let Some(why) = &facts.recovered {
        failures.push(format!("no recovery after the heal: {why}"));
    }
    let checked = check_events(dir, &history_path, &events, porcupine, &mut summary)?;
    failures.extend(checked);
    for f in &facts.crashed_nodes {
        let _ = writeln!(summary, "node crash: {f}");
    }
    let _ = writeln!(summary, "run time {:.0} s", facts.duration.as_secs_f64());
    finish(dir, summary, failures)
}

/// Checks a history file on its own (`gregor-jepsen check`), writing results next to `dir`.
pub fn check_history_file(path: &Path, dir: &Path, porcupine: Option<&Path>) -> Result<Verdict> {
    let events = history::read_jsonl(path)?;
    let mut summary = format!("history {}\n", path.display());
    let failures = check_events(dir, path, &events, porcupine, &mut summary)?;
    finish(dir, summary, failures)
}

fn finish(dir: &Path, mut summary: String, failures: Vec<String>) -> Result<Verdict> {
    let valid = failures.is_empty();
    if valid {
        let _ = writeln!(summary, "VERDICT: valid");
    } else {
        let _ = writeln!(summary, "VERDICT: INVALID");
        for f in &failures {
            let _ = writeln!(summary, "  - {f}");
        }
    }
    std::fs::write(dir.join("summary.txt"), &summary)?;
    Ok(Verdict { valid, summary })
}

/// Runs every checker; appends their lines to the summary and returns what failed.
fn check_events(
    dir: &Path,
    history: &Path,
    events: &[Event],
    porcupine: Option<&Path>,
    summary: &mut String,
) -> Result<Vec<String>> {
    let mut failures = Vec::new();
    let _ = writeln!(summary, "operations: {}", operation_counts(events));

    let report = checker::check_history(events);
    let results = serde_json::to_value(&report)?;
    std::fs::write(
        dir.join("results.json"),
        serde_json::to_vec_pretty(&results)?,
    )?;
    let ours = checker_lines(&results, summary, &mut failures);

    if let Some(bin) = porcupine {
        let theirs = run_porcupine(bin, history, dir, summary, &mut failures)?;
        if let (Some(a), Some(b)) = (ours, theirs) {
            if a != b {
                failures.push(format!(
                    "the checkers disagree: ours says {a}, porcupine says {b}"
                ));
            } else {
                let _ = writeln!(summary, "porcupine and the Rust checker agree: {a}");
            }
        }
    }
    Ok(failures)
}

/// `send 1200 (ok 1100, info 20, fail 80); poll ...`
fn operation_counts(events: &[Event]) -> String {
    let mut counts: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    let mut total = 0;
    for e in events {
        let Ok(v) = serde_json::to_value(e) else {
            continue;
        };
        if v["process"] == "nemesis" || v["type"] == "invoke" {
            continue;
        }
        let f = v["f"].as_str().unwrap_or("?").to_string();
        let t = v["type"].as_str().unwrap_or("?").to_string();
        *counts.entry(f).or_default().entry(t).or_default() += 1;
        total += 1;
    }
    let parts: Vec<String> = counts
        .iter()
        .map(|(f, by)| {
            let n: usize = by.values().sum();
            let detail: Vec<String> = by.iter().map(|(t, c)| format!("{t} {c}")).collect();
            format!("{f} {n} ({})", detail.join(", "))
        })
        .collect();
    format!("{total} completed; {}", parts.join("; "))
}

/// Summary lines for the Rust checkers; returns the linearizability verdict
/// (`valid`/`invalid`/`unknown`) when there was anything to check.
fn checker_lines(
    results: &Value,
    summary: &mut String,
    failures: &mut Vec<String>,
) -> Option<String> {
    if let Some(queue) = results.get("queue").filter(|q| !q.is_null()) {
        let anomalies: Vec<String> = queue["anomalies"]
            .as_object()
            .map(|m| {
                m.iter()
                    .filter(|(_, v)| v.as_array().map(|a| !a.is_empty()).unwrap_or(false))
                    .map(|(k, v)| format!("{k} {}", v.as_array().unwrap().len()))
                    .collect()
            })
            .unwrap_or_default();
        if anomalies.is_empty() {
            let _ = writeln!(summary, "queue anomalies: none");
        } else {
            let _ = writeln!(summary, "queue anomalies: {}", anomalies.join(", "));
        }
        // The first case of each anomaly, so the summary points at the history.
        if let Some(m) = queue["anomalies"].as_object() {
            for (name, cases) in m {
                if let Some(first) = cases.as_array().and_then(|a| a.first()) {
                    let mut text = first.to_string();
                    if text.len() > 200 {
                        text.truncate(200);
                        text.push_str("...");
                    }
                    let _ = writeln!(summary, "  e.g. {name}: {text}");
                }
            }
        }
        if queue["valid"] != Value::Bool(true) {
            failures.push(format!("queue anomalies: {}", anomalies.join(", ")));
        }
    }
    if let Some(bad) = results["malformed"].as_array().filter(|a| !a.is_empty()) {
        let _ = writeln!(summary, "malformed operations: {}", bad.len());
        failures.push(format!("{} malformed operations in the history", bad.len()));
    }
    let mut verdict: Option<String> = None;
    for model in ["log", "register"] {
        let Some(lin) = results.get(model).filter(|v| !v.is_null()) else {
            continue;
        };
        let v = validity(&lin["valid"]);
        let keys = lin["keys"].as_object().map(|m| m.len()).unwrap_or(0);
        let bad: Vec<String> = lin["keys"]
            .as_object()
            .map(|m| {
                m.iter()
                    .filter(|(_, kv)| validity(&kv["valid"]) != "valid")
                    .map(|(k, _)| k.clone())
                    .collect()
            })
            .unwrap_or_default();
        let _ = writeln!(
            summary,
            "linearizability ({model} model, Rust checker): {v} over {keys} keys{}",
            if bad.is_empty() {
                String::new()
            } else {
                format!("; not linearizable: {}", bad.join(", "))
            }
        );
        if v != "valid" {
            failures.push(format!("{model} model: {v} (keys {})", bad.join(", ")));
        }
        verdict = Some(combine(verdict, v));
    }
    verdict
}

fn validity(v: &Value) -> String {
    match v {
        Value::Bool(true) => "valid".into(),
        Value::Bool(false) => "invalid".into(),
        _ => "unknown".into(),
    }
}

/// Invalid beats unknown beats valid.
fn combine(a: Option<String>, b: String) -> String {
    match (a.as_deref(), b.as_str()) {
        (Some("invalid"), _) | (_, "invalid") => "invalid".into(),
        (Some("unknown"), _) | (_, "unknown") => "unknown".into(),
        _ => "valid".into(),
    }
}

fn run_porcupine(
    bin: &Path,
    history: &Path,
    dir: &Path,
    summary: &mut String,
    failures: &mut Vec<String>,
) -> Result<Option<String>> {
    let out = std::process::Command::new(bin)
        .arg("-history")
        .arg(history)
        .arg("-html")
        .arg(dir.join("porcupine.html"))
        .arg("-json")
        .arg(dir.join("porcupine.json"))
        .arg("-timeout")
        .arg("300s")
        .output()
        .with_context(|| format!("running {}", bin.display()))?;
    std::fs::write(dir.join("porcupine.txt"), &out.stdout)?;
    let verdict = match out.status.code() {
        Some(0) => "valid",
        Some(1) => "invalid",
        Some(2) => "unknown",
        _ => {
            failures.push(format!(
                "porcupine failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
            return Ok(None);
        }
    };
    let _ = writeln!(summary, "linearizability (porcupine): {verdict}");
    if verdict != "valid" {
        failures.push(format!("porcupine: {verdict}"));
    }
    Ok(Some(verdict.to_string()))
}
