//! Consumer groups of a non-Java client (confluent-kafka / librdkafka, classic protocol) on a
//! three-node cluster: three members share six partitions, a member killed with kill -9 is
//! expired after its session timeout and its partitions move to the others without a record
//! being skipped (commit after processing: at-least-once), and a group resumes after its
//! committed offsets. Every consumer is a real Python process (tests/python/group_consumer.py).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::cluster::{create_topic, leaders, wait_for};
use crate::harness::{kafka_ok, python, repo_root, Cluster};

const SESSION_TIMEOUT_MS: u64 = 6_000;

/// (partition, offset, value) of one record.
type Rec = (i32, i64, String);

fn script() -> PathBuf {
    repo_root().join("tests/python/group_consumer.py")
}

fn cluster_props() -> Vec<(&'static str, &'static str)> {
    vec![
        ("offsets.topic.num.partitions", "6"),
        ("min.insync.replicas", "2"),
        ("group.initial.rebalance.delay.ms", "500"),
    ]
}

fn parse_records(text: &str) -> Vec<Rec> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some((
                f.next()?.parse().ok()?,
                f.next()?.parse().ok()?,
                f.next()?.to_string(),
            ))
        })
        .collect()
}

/// Produces values `v-START..v-(START+COUNT)` (record i to partition i % partitions) with
/// acks=all; returns every acknowledged record.
fn produce(bootstrap: &str, topic: &str, partitions: i32, start: usize, count: usize) -> Vec<Rec> {
    let out = Command::new(python())
        .arg(script())
        .args(["produce", bootstrap, topic])
        .arg(partitions.to_string())
        .arg(start.to_string())
        .arg(count.to_string())
        .output()
        .expect("run the python producer");
    assert!(
        out.status.success(),
        "producer failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let recs = parse_records(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(recs.len(), count);
    recs
}

/// One `group_consumer.py consume` process; killed (and waited for) when dropped.
struct PyConsumer {
    name: String,
    child: Option<Child>,
    out: PathBuf,
    assign: PathBuf,
    log: PathBuf,
}

impl PyConsumer {
    fn start(
        dir: &Path,
        name: &str,
        bootstrap: &str,
        topic: &str,
        group: &str,
        extra: &[&str],
    ) -> PyConsumer {
        let out = dir.join(format!("{name}.records"));
        let assign = dir.join(format!("{name}.assignments"));
        let log = dir.join(format!("{name}.log"));
        let child = Command::new(python())
            .arg(script())
            .args(["consume", bootstrap, topic, group])
            .arg(&out)
            .arg(&assign)
            .args(["--session-timeout-ms", &SESSION_TIMEOUT_MS.to_string()])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start group_consumer.py");
        PyConsumer {
            name: name.into(),
            child: Some(child),
            out,
            assign,
            log,
        }
    }

    /// Every record it processed (written before it committed), duplicates included.
    fn records(&self) -> Vec<Rec> {
        parse_records(&std::fs::read_to_string(&self.out).unwrap_or_default())
    }

    /// Its current assignment: the last line it wrote to its assignments file.
    fn assignment(&self) -> BTreeSet<i32> {
        let text = std::fs::read_to_string(&self.assign).unwrap_or_default();
        let Some(last) = text.lines().last() else {
            return BTreeSet::new();
        };
        let f: Vec<&str> = last.split_whitespace().collect();
        f.get(2)
            .map(|ps| ps.split(',').filter_map(|p| p.parse().ok()).collect())
            .unwrap_or_default()
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Waits for it to exit by itself (`--expect`, stop file); asserts it succeeded.
    fn wait_exit(&mut self, timeout: Duration) {
        let mut c = self.child.take().expect("running");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = c.try_wait().unwrap() {
                assert!(status.success(), "{} exited with {status}", self.name);
                return;
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                panic!("{} did not exit within {timeout:?}", self.name);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for PyConsumer {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let assign = std::fs::read_to_string(&self.assign).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            eprintln!(
                "--- {} assignments ---\n{assign}--- {} stderr tail ---\n{}",
                self.name,
                self.name,
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
    }
}

/// One `kafka-consumer-groups --describe` row.
#[derive(Debug)]
pub struct OffsetRow {
    pub current: i64,
    pub log_end: i64,
    pub lag: i64,
    pub consumer: String,
}

/// `kafka-consumer-groups --describe --group` rows: partition -> row.
pub fn describe_offsets(bootstrap: &str, group: &str) -> BTreeMap<i32, OffsetRow> {
    let out = kafka_ok(
        "consumer-groups",
        &[
            "--bootstrap-server",
            bootstrap,
            "--describe",
            "--group",
            group,
        ],
    );
    out.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|c| c.len() >= 7 && c[0] == group)
        .map(|c| {
            (
                c[2].parse().unwrap(),
                OffsetRow {
                    current: c[3].parse().unwrap_or(-1),
                    log_end: c[4].parse().unwrap_or(-1),
                    lag: c[5].parse().unwrap_or(-1),
                    consumer: c[6].to_string(),
                },
            )
        })
        .collect()
}

/// `kafka-consumer-groups --describe --members --verbose`: (client id, #partitions,
/// assignment) per member.
fn describe_members(bootstrap: &str, group: &str) -> Vec<(String, usize, String)> {
    let out = kafka_ok(
        "consumer-groups",
        &[
            "--bootstrap-server",
            bootstrap,
            "--describe",
            "--group",
            group,
            "--members",
            "--verbose",
        ],
    );
    let rows: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    let header = rows
        .iter()
        .find(|r| r.first() == Some(&"GROUP"))
        .unwrap_or_else(|| panic!("no header in:\n{out}"));
    let col = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .unwrap_or_else(|| panic!("no {name} column in:\n{out}"))
    };
    let (client, count, assignment) = (
        col("CLIENT-ID"),
        col("#PARTITIONS"),
        col("CURRENT-ASSIGNMENT"),
    );
    rows.iter()
        .filter(|r| r.first() == Some(&group) && r.len() > count)
        .map(|r| {
            (
                r[client].to_string(),
                r[count].parse().unwrap(),
                r.get(assignment).unwrap_or(&"-").to_string(),
            )
        })
        .collect()
}

/// Partitions of a CURRENT-ASSIGNMENT cell such as `orders:0,1`.
fn assigned_partitions(cell: &str) -> BTreeSet<i32> {
    cell.split(':')
        .nth(1)
        .map(|ps| ps.split(',').filter_map(|p| p.parse().ok()).collect())
        .unwrap_or_default()
}

/// Log end offset per partition after `produced` (offsets are dense: one producer, no
/// transactions).
fn log_ends(produced: &[Rec]) -> BTreeMap<i32, i64> {
    let mut ends = BTreeMap::new();
    for (p, o, _) in produced {
        let e = ends.entry(*p).or_insert(0);
        *e = (*e).max(o + 1);
    }
    ends
}

fn create_replicated_topic(cluster: &Cluster, topic: &str, partitions: i32) {
    assert_eq!(create_topic(&cluster.nodes[0], topic, partitions, 3), 0);
    wait_for("leaders with a full ISR", Duration::from_secs(30), || {
        let l = leaders(&cluster.nodes[0], topic);
        (l.len() == partitions as usize && l.values().all(|(id, _, isr)| *id > 0 && isr.len() == 3))
            .then_some(())
    });
}

#[test]
fn three_consumers_share_six_partitions_and_survive_a_kill() {
    let started = Instant::now();
    let props = cluster_props();
    let cluster = Cluster::start(3, &props);
    let bs = cluster.nodes[0].bootstrap();
    let tmp = tempfile::Builder::new()
        .prefix("gregor-group-rebalance-")
        .tempdir()
        .unwrap();
    let (topic, group) = ("orders", "shipping");
    create_replicated_topic(&cluster, topic, 6);
    let stop_file = tmp.path().join("stop");

    // Three members (each through a different broker); "processing" a record takes 2 ms so
    // the stream is still flowing when one of them dies.
    let mut consumers: Vec<PyConsumer> = (0..3)
        .map(|i| {
            PyConsumer::start(
                tmp.path(),
                &format!("c{i}"),
                &cluster.nodes[i].bootstrap(),
                topic,
                group,
                &[
                    "--delay-ms",
                    "2",
                    "--stop-file",
                    stop_file.to_str().unwrap(),
                ],
            )
        })
        .collect();
    let assignments = wait_for("a stable 2/2/2 assignment", Duration::from_secs(45), || {
        let a: Vec<BTreeSet<i32>> = consumers.iter().map(|c| c.assignment()).collect();
        let union: BTreeSet<i32> = a.iter().flatten().copied().collect();
        (a.iter().all(|s| s.len() == 2) && union.len() == 6).then_some(a)
    });
    eprintln!("stable after {:?}: {assignments:?}", started.elapsed());
    // The coordinator's view (kafka-consumer-groups) is the same: three members, two each.
    let members = describe_members(&bs, group);
    assert_eq!(members.len(), 3, "{members:?}");
    assert!(members.iter().all(|(_, n, _)| *n == 2), "{members:?}");
    let described: BTreeSet<BTreeSet<i32>> = members
        .iter()
        .map(|(_, _, a)| assigned_partitions(a))
        .collect();
    assert_eq!(
        described,
        assignments.iter().cloned().collect::<BTreeSet<_>>(),
        "{members:?}"
    );

    let mut produced = produce(&bs, topic, 6, 0, 6000);
    // Kill one member while it is part-way through its partitions.
    let victim = 1;
    let victim_parts = assignments[victim].clone();
    wait_for(
        "the victim to process records",
        Duration::from_secs(30),
        || (consumers[victim].records().len() >= 250).then_some(()),
    );
    let killed_at = Instant::now();
    consumers[victim].kill9();
    let done_by_victim = consumers[victim].records().len();
    eprintln!(
        "killed c{victim} (partitions {victim_parts:?}) after it processed {done_by_victim} of its ~2000 records"
    );
    // Its partitions go to the two others once the coordinator expires it.
    let survivors = [0usize, 2];
    let after = wait_for(
        "the victim's partitions to be reassigned",
        Duration::from_millis(3 * SESSION_TIMEOUT_MS),
        || {
            let a: Vec<BTreeSet<i32>> = survivors
                .iter()
                .map(|i| consumers[*i].assignment())
                .collect();
            let union: BTreeSet<i32> = a.iter().flatten().copied().collect();
            (union.len() == 6 && a.iter().all(|s| s.len() == 3)).then_some(a)
        },
    );
    let reassigned_in = killed_at.elapsed();
    eprintln!(
        "partitions reassigned {after:?} {reassigned_in:?} after the kill (session timeout {SESSION_TIMEOUT_MS} ms)"
    );

    produced.extend(produce(&bs, topic, 6, 6000, 3000));
    let expected: BTreeMap<(i32, i64), String> = produced
        .iter()
        .map(|(p, o, v)| ((*p, *o), v.clone()))
        .collect();
    assert_eq!(expected.len(), 9000, "acknowledged offsets are distinct");

    // Every acknowledged record is processed by somebody: nothing skipped by the rebalance.
    let all = wait_for("every record consumed", Duration::from_secs(60), || {
        let all: Vec<Rec> = consumers.iter().flat_map(|c| c.records()).collect();
        let seen: BTreeSet<(i32, i64)> = all.iter().map(|(p, o, _)| (*p, *o)).collect();
        expected.keys().all(|k| seen.contains(k)).then_some(all)
    });
    for (p, o, v) in &all {
        assert_eq!(
            expected.get(&(*p, *o)),
            Some(v),
            "record at {p}/{o} has the acknowledged value"
        );
    }
    let distinct: BTreeSet<(i32, i64)> = all.iter().map(|(p, o, _)| (*p, *o)).collect();
    eprintln!(
        "{} records processed for {} produced: {} duplicates (at-least-once)",
        all.len(),
        expected.len(),
        all.len() - distinct.len()
    );

    // The committed offsets reach the log ends: lag 0, the two survivors own everything.
    let ends = log_ends(&produced);
    let rows = wait_for("lag 0 on every partition", Duration::from_secs(30), || {
        let rows = describe_offsets(&bs, group);
        (rows.len() == 6 && rows.iter().all(|(p, r)| r.current == ends[p] && r.lag == 0))
            .then_some(rows)
    });
    for (p, r) in &rows {
        assert_eq!(r.log_end, ends[p], "{rows:?}");
        assert_ne!(r.consumer, "-", "partition {p} is owned: {rows:?}");
    }
    let members = describe_members(&bs, group);
    assert_eq!(members.len(), 2, "{members:?}");
    assert!(members.iter().all(|(_, n, _)| *n == 3), "{members:?}");

    // Survivors leave cleanly (stop file); the group ends Empty with the same offsets.
    std::fs::write(&stop_file, b"").unwrap();
    for i in survivors {
        consumers[i].wait_exit(Duration::from_secs(30));
    }
    let rows = describe_offsets(&bs, group);
    assert!(
        rows.len() == 6
            && rows
                .iter()
                .all(|(p, r)| r.current == ends[p] && r.consumer == "-"),
        "{rows:?}"
    );
    eprintln!("three-consumer rebalance test took {:?}", started.elapsed());
}

#[test]
fn librdkafka_group_joins_consumes_and_commits() {
    let started = Instant::now();
    let props = cluster_props();
    let cluster = Cluster::start(3, &props);
    let bs = cluster.nodes[0].bootstrap();
    let tmp = tempfile::Builder::new()
        .prefix("gregor-librdkafka-group-")
        .tempdir()
        .unwrap();
    let (topic, group) = ("invoices", "accounting");
    create_replicated_topic(&cluster, topic, 3);
    let first = produce(&bs, topic, 3, 0, 300);

    // The first member reads everything, commits after processing, and leaves. (Both members
    // use the cooperative-sticky assignor, the other test the eager range assignor.)
    let mut a = PyConsumer::start(
        tmp.path(),
        "first",
        &cluster.nodes[1].bootstrap(),
        topic,
        group,
        &["--expect", "300", "--strategy", "cooperative-sticky"],
    );
    a.wait_exit(Duration::from_secs(45));
    let got: BTreeSet<Rec> = a.records().into_iter().collect();
    assert_eq!(got, first.iter().cloned().collect::<BTreeSet<_>>());
    assert_eq!(a.assignment().len(), 0, "it revoked on close");

    let ends = log_ends(&first);
    let rows = describe_offsets(&bs, group);
    assert_eq!(rows.len(), 3, "{rows:?}");
    for (p, r) in &rows {
        assert_eq!(
            (r.current, r.log_end, r.lag),
            (ends[p], ends[p], 0),
            "{rows:?}"
        );
        assert_eq!(r.consumer, "-", "the group is empty: {rows:?}");
    }

    // A second member of the same group resumes after the commits: nothing old, then
    // exactly the records produced after it joined.
    let mut b = PyConsumer::start(
        tmp.path(),
        "second",
        &cluster.nodes[2].bootstrap(),
        topic,
        group,
        &["--expect", "100", "--strategy", "cooperative-sticky"],
    );
    wait_for(
        "the second member's assignment",
        Duration::from_secs(30),
        || (b.assignment().len() == 3).then_some(()),
    );
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        b.records().is_empty(),
        "old records re-read: {:?}",
        b.records()
    );
    let second = produce(&bs, topic, 3, 300, 100);
    b.wait_exit(Duration::from_secs(45));
    let got: BTreeSet<Rec> = b.records().into_iter().collect();
    assert_eq!(got, second.iter().cloned().collect::<BTreeSet<_>>());

    let mut all = first;
    all.extend(second);
    let ends = log_ends(&all);
    let rows = describe_offsets(&bs, group);
    assert!(
        rows.len() == 3 && rows.iter().all(|(p, r)| r.current == ends[p] && r.lag == 0),
        "{rows:?}"
    );
    eprintln!("librdkafka group test took {:?}", started.elapsed());
}
