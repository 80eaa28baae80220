//! A run's history: the events of HISTORY.md, their JSON Lines form, recording them while the run
//! goes, and pairing each invocation with its completion into an operation.

use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use anyhow::Context;
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

/// The `type` of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventType {
    Invoke,
    /// It happened.
    Ok,
    /// It certainly did not happen.
    Fail,
    /// It may or may not have happened.
    Info,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Invoke => "invoke",
            EventType::Ok => "ok",
            EventType::Fail => "fail",
            EventType::Info => "info",
        }
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who performed an event: a client process (JSON integer) or the nemesis (JSON `"nemesis"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Process {
    Client(u64),
    Nemesis,
}

impl Serialize for Process {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Process::Client(p) => s.serialize_u64(*p),
            Process::Nemesis => s.serialize_str("nemesis"),
        }
    }
}

impl<'de> Deserialize<'de> for Process {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ProcessVisitor;
        impl Visitor<'_> for ProcessVisitor {
            type Value = Process;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a non-negative integer or \"nemesis\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Process, E> {
                Ok(Process::Client(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Process, E> {
                u64::try_from(v)
                    .map(Process::Client)
                    .map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Process, E> {
                if v == "nemesis" {
                    Ok(Process::Nemesis)
                } else {
                    Err(E::invalid_value(de::Unexpected::Str(v), &self))
                }
            }
        }
        d.deserialize_any(ProcessVisitor)
    }
}

impl fmt::Display for Process {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Process::Client(p) => write!(f, "{p}"),
            Process::Nemesis => f.write_str("nemesis"),
        }
    }
}

/// One line of `history.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Position in the file, from 0.
    pub index: u64,
    /// Nanoseconds since the run started (monotonic clock).
    pub time: i64,
    #[serde(rename = "type")]
    pub kind: EventType,
    pub process: Process,
    pub f: String,
    /// `null` when absent (a poll's invocation).
    #[serde(default)]
    pub value: Value,
    /// The client error, on `fail` and `info` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Parses a history in JSON Lines form; blank lines are skipped.
pub fn parse_jsonl(text: &str) -> anyhow::Result<Vec<Event>> {
    read_events(text.as_bytes())
}

/// Reads `history.jsonl`.
pub fn read_jsonl(path: impl AsRef<Path>) -> anyhow::Result<Vec<Event>> {
    let path = path.as_ref();
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    read_events(BufReader::new(file)).with_context(|| format!("reading {}", path.display()))
}

fn read_events(reader: impl BufRead) -> anyhow::Result<Vec<Event>> {
    let mut events = Vec::new();
    for (n, line) in reader.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let event: Event =
            serde_json::from_str(&line).with_context(|| format!("line {}", n + 1))?;
        events.push(event);
    }
    Ok(events)
}

/// Writes events as JSON Lines.
pub fn write_jsonl(path: impl AsRef<Path>, events: &[Event]) -> anyhow::Result<()> {
    let path = path.as_ref();
    let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut out = BufWriter::new(file);
    for event in events {
        write_event(&mut out, event)?;
    }
    out.flush()?;
    Ok(())
}

fn write_event(out: &mut impl Write, event: &Event) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, event)?;
    out.write_all(b"\n")
}

/// Records a run's events as they happen, numbering them and timing them from its creation; keeps
/// them in memory and, if created with [`HistoryWriter::create`], streams them to a file.
///
/// Index and time are taken under one lock, so time never decreases along the index.
pub struct HistoryWriter {
    start: Instant,
    inner: Mutex<WriterInner>,
}

struct WriterInner {
    events: Vec<Event>,
    sink: Option<BufWriter<File>>,
    /// The first write error; reported by `flush` and `finish` because `record` cannot fail.
    io_error: Option<std::io::Error>,
}

impl Default for HistoryWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl HistoryWriter {
    /// A writer keeping events in memory only.
    pub fn new() -> Self {
        Self::with_sink(None)
    }

    /// A writer that also appends each event to `path` (created or truncated).
    pub fn create(path: impl AsRef<Path>) -> anyhow::Result<Self> {
        let path = path.as_ref();
        let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Self::with_sink(Some(BufWriter::new(file))))
    }

    fn with_sink(sink: Option<BufWriter<File>>) -> Self {
        HistoryWriter {
            start: Instant::now(),
            inner: Mutex::new(WriterInner {
                events: Vec::new(),
                sink,
                io_error: None,
            }),
        }
    }

    /// When the run started: event times are nanoseconds since then.
    pub fn start(&self) -> Instant {
        self.start
    }

    /// Appends an event and returns it.
    pub fn record(
        &self,
        kind: EventType,
        process: Process,
        f: &str,
        value: Value,
        error: Option<String>,
    ) -> Event {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let event = Event {
            index: inner.events.len() as u64,
            time: i64::try_from(self.start.elapsed().as_nanos()).unwrap_or(i64::MAX),
            kind,
            process,
            f: f.to_string(),
            value,
            error,
        };
        let WriterInner { sink, io_error, .. } = &mut *inner;
        if let (Some(sink), None) = (sink.as_mut(), io_error.as_ref()) {
            if let Err(e) = write_event(sink, &event) {
                *io_error = Some(e);
            }
        }
        inner.events.push(event.clone());
        event
    }

    /// Records a client invocation.
    pub fn invoke(&self, process: u64, f: &str, value: Value) -> Event {
        self.record(EventType::Invoke, Process::Client(process), f, value, None)
    }

    /// Records a client completion (`ok`, `fail` or `info`).
    pub fn complete(
        &self,
        kind: EventType,
        process: u64,
        f: &str,
        value: Value,
        error: Option<String>,
    ) -> Event {
        debug_assert!(
            kind != EventType::Invoke,
            "a completion cannot be an invoke"
        );
        self.record(kind, Process::Client(process), f, value, error)
    }

    /// Records a nemesis event (a single `info` event).
    pub fn nemesis(&self, f: &str, value: Value) -> Event {
        self.record(EventType::Info, Process::Nemesis, f, value, None)
    }

    /// The events recorded so far.
    pub fn events(&self) -> Vec<Event> {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .events
            .clone()
    }

    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .events
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Flushes the file, reporting any earlier write error.
    pub fn flush(&self) -> anyhow::Result<()> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = inner.io_error.take() {
            return Err(anyhow::Error::new(e).context("writing the history"));
        }
        if let Some(sink) = inner.sink.as_mut() {
            sink.flush().context("flushing the history")?;
        }
        Ok(())
    }

    /// Flushes and returns every recorded event.
    pub fn finish(self) -> anyhow::Result<Vec<Event>> {
        self.flush()?;
        let inner = self.inner.into_inner().unwrap_or_else(|e| e.into_inner());
        Ok(inner.events)
    }
}

/// A client operation: an invocation paired with its completion.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Operation {
    pub process: u64,
    pub f: String,
    /// `ok`, `fail` or `info`; `info` also when the invocation never completed.
    #[serde(rename = "type")]
    pub kind: EventType,
    pub invoke_index: u64,
    /// `None` when the invocation never completed.
    pub complete_index: Option<u64>,
    /// Invocation time (ns).
    pub call: i64,
    /// Completion time (ns); `None` (infinity) when the invocation never completed.
    pub ret: Option<i64>,
    /// The invocation's value.
    pub input: Value,
    /// The completion's value; `null` when it never completed.
    pub output: Value,
    pub error: Option<String>,
}

impl Operation {
    pub fn is_ok(&self) -> bool {
        self.kind == EventType::Ok
    }
}

/// Operations paired from a history, with what did not fit the contract.
#[derive(Debug, Clone, Default)]
pub struct Pairing {
    /// In invocation order.
    pub operations: Vec<Operation>,
    /// Nemesis events, in order.
    pub nemesis: Vec<Event>,
    /// Violations of the history contract (for example a completion without an invocation).
    pub problems: Vec<String>,
}

/// Pairs each invocation with the next completion of the same process; an invocation never
/// completed becomes `info` with no return time. Nemesis events are left out.
pub fn pair_operations(events: &[Event]) -> Vec<Operation> {
    pair(events).operations
}

/// [`pair_operations`], also returning nemesis events and contract violations.
pub fn pair(events: &[Event]) -> Pairing {
    use std::collections::HashMap;

    let mut out = Pairing::default();
    // Process -> position of its outstanding operation in `out.operations`.
    let mut open: HashMap<u64, usize> = HashMap::new();
    // Processes that completed with `info`: they must never invoke again.
    let mut retired: HashMap<u64, u64> = HashMap::new();
    for (position, event) in events.iter().enumerate() {
        if event.index != position as u64 {
            out.problems.push(format!(
                "event at position {position} has index {}",
                event.index
            ));
        }
        let process = match event.process {
            Process::Nemesis => {
                out.nemesis.push(event.clone());
                continue;
            }
            Process::Client(p) => p,
        };
        if event.kind == EventType::Invoke {
            if let Some(&info_at) = retired.get(&process) {
                out.problems.push(format!(
                    "process {process} invokes at index {} after its info at index {info_at}",
                    event.index
                ));
            }
            if let Some(previous) = open.remove(&process) {
                out.problems.push(format!(
                    "process {process} invokes at index {} while its invocation at index {} is \
                     outstanding; that one counts as never completed",
                    event.index, out.operations[previous].invoke_index
                ));
            }
            open.insert(process, out.operations.len());
            out.operations.push(Operation {
                process,
                f: event.f.clone(),
                kind: EventType::Info,
                invoke_index: event.index,
                complete_index: None,
                call: event.time,
                ret: None,
                input: event.value.clone(),
                output: Value::Null,
                error: None,
            });
            continue;
        }
        let Some(at) = open.remove(&process) else {
            out.problems.push(format!(
                "{} at index {} of process {process} completes no invocation",
                event.kind, event.index
            ));
            continue;
        };
        let op = &mut out.operations[at];
        if op.f != event.f {
            out.problems.push(format!(
                "{} {} at index {} completes the invocation of {} at index {}",
                event.kind, event.f, event.index, op.f, op.invoke_index
            ));
        }
        op.kind = event.kind;
        op.complete_index = Some(event.index);
        op.ret = Some(event.time);
        op.output = event.value.clone();
        op.error = event.error.clone();
        if event.kind == EventType::Info {
            retired.insert(process, event.index);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn event_json_matches_the_contract() {
        let line = r#"{"index":0,"time":1234567,"type":"invoke","process":3,"f":"send","value":{"key":2,"value":17}}"#;
        let e: Event = serde_json::from_str(line).unwrap();
        assert_eq!(e.kind, EventType::Invoke);
        assert_eq!(e.process, Process::Client(3));
        assert_eq!(e.error, None);
        assert_eq!(serde_json::to_string(&e).unwrap(), line);

        let nemesis = r#"{"index":4,"time":9,"type":"info","process":"nemesis","f":"kill","value":{"node":1}}"#;
        let e: Event = serde_json::from_str(nemesis).unwrap();
        assert_eq!(e.process, Process::Nemesis);
        assert_eq!(serde_json::to_string(&e).unwrap(), nemesis);

        let fail = r#"{"index":5,"time":10,"type":"fail","process":0,"f":"send","value":null,"error":"boom"}"#;
        let e: Event = serde_json::from_str(fail).unwrap();
        assert_eq!(e.error.as_deref(), Some("boom"));
        assert_eq!(serde_json::to_string(&e).unwrap(), fail);

        assert!(serde_json::from_str::<Event>(&fail.replace("\"fail\"", "\"FAIL\"")).is_err());
        assert!(serde_json::from_str::<Process>("-1").is_err());
        assert!(serde_json::from_str::<Process>("\"client\"").is_err());
    }

    #[test]
    fn writer_numbers_times_and_streams_events() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.jsonl");
        let w = HistoryWriter::create(&path).unwrap();
        w.invoke(0, "send", json!({"key": 1, "value": 2}));
        w.nemesis("kill", json!({"node": 1}));
        w.complete(
            EventType::Ok,
            0,
            "send",
            json!({"key": 1, "value": 2, "offset": 0}),
            None,
        );
        let events = w.finish().unwrap();
        assert_eq!(
            events.iter().map(|e| e.index).collect::<Vec<_>>(),
            vec![0, 1, 2]
        );
        assert!(events.windows(2).all(|p| p[0].time <= p[1].time));
        assert_eq!(read_jsonl(&path).unwrap(), events);
    }

    #[test]
    fn writer_is_shared_between_threads() {
        let w = HistoryWriter::new();
        std::thread::scope(|s| {
            for p in 0..4 {
                let w = &w;
                s.spawn(move || {
                    for _ in 0..100 {
                        w.invoke(p, "poll", Value::Null);
                        w.complete(EventType::Ok, p, "poll", json!({"records": {}}), None);
                    }
                });
            }
        });
        let events = w.events();
        assert_eq!(events.len(), 800);
        assert!(events.iter().enumerate().all(|(i, e)| e.index == i as u64));
        let pairing = pair(&events);
        assert!(pairing.problems.is_empty());
        assert_eq!(pairing.operations.len(), 400);
    }

    #[test]
    fn pairing() {
        let text = r#"
{"index":0,"time":0,"type":"invoke","process":0,"f":"send","value":{"key":0,"value":1}}
{"index":1,"time":1,"type":"invoke","process":1,"f":"poll","value":null}
{"index":2,"time":2,"type":"info","process":"nemesis","f":"kill","value":null}
{"index":3,"time":3,"type":"ok","process":0,"f":"send","value":{"key":0,"value":1,"offset":0}}
{"index":4,"time":4,"type":"info","process":1,"f":"poll","value":null,"error":"timeout"}
{"index":5,"time":5,"type":"invoke","process":2,"f":"send","value":{"key":0,"value":2}}
"#;
        let events = parse_jsonl(text).unwrap();
        let p = pair(&events);
        assert!(p.problems.is_empty(), "{:?}", p.problems);
        assert_eq!(p.nemesis.len(), 1);
        let ops = p.operations;
        assert_eq!(ops.len(), 3);
        assert_eq!(
            (ops[0].kind, ops[0].complete_index, ops[0].ret),
            (EventType::Ok, Some(3), Some(3))
        );
        assert_eq!(ops[0].output["offset"], json!(0));
        assert_eq!(
            (ops[1].kind, ops[1].error.as_deref()),
            (EventType::Info, Some("timeout"))
        );
        assert_eq!(
            (ops[2].kind, ops[2].complete_index, ops[2].ret),
            (EventType::Info, None, None)
        );
    }

    #[test]
    fn pairing_reports_contract_violations() {
        let text = r#"
{"index":0,"time":0,"type":"ok","process":0,"f":"send","value":null}
{"index":1,"time":1,"type":"invoke","process":1,"f":"poll","value":null}
{"index":2,"time":2,"type":"info","process":1,"f":"poll","value":null}
{"index":3,"time":3,"type":"invoke","process":1,"f":"poll","value":null}
"#;
        let p = pair(&parse_jsonl(text).unwrap());
        assert_eq!(p.problems.len(), 2, "{:?}", p.problems);
    }
}
