//! One test run, start to verdict: start the cluster, create the workload's topics, run the
//! workload while the nemesis injects faults, heal, read everything back, stop the cluster,
//! check the history and write the report.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde_json::json;

use crate::client::kafka::{self, ProducerSettings};
use crate::db::{Cluster, ClusterSpec};
use crate::history::{EventType, HistoryWriter, Process};
use crate::nemesis::{Fault, LeaderLookup, Nemesis, NemesisStats};
use crate::report;
use crate::wire::Connection;
use crate::workload::metadata::{register_topic, MetadataWorker};
pub use crate::workload::queue::ConsumeMode;
use crate::workload::queue::{self, QueueShared, QueueWorker};
use crate::workload::WorkerContext;

/// Everything a run can be told.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RunOptions {
    /// Names the run directory.
    pub name: String,
    /// Run directories go under it.
    pub store: PathBuf,
    pub gregor: PathBuf,
    /// The porcupine checker binary; None skips it.
    pub porcupine: Option<PathBuf>,
    pub time_limit: Duration,
    /// Operations per second, over all client processes.
    pub rate: f64,
    /// Client processes per workload.
    pub concurrency: usize,
    #[serde(serialize_with = "fault_names")]
    pub faults: Vec<Fault>,
    /// Time from one fault to its heal, and from a heal to the next fault.
    pub interval: Duration,
    pub queue: bool,
    /// How the queue workload's consumers get partitions.
    pub consume: ConsumeMode,
    pub metadata: bool,
    /// Partitions of the queue topic (keys).
    pub keys: i32,
    /// Registers of the metadata workload.
    pub registers: usize,
    pub acks: String,
    pub idempotence: bool,
    pub min_insync_replicas: i32,
    pub unclean_leader_election: bool,
    pub seed: u64,
    /// Nodes listen on `{subnet}.11`, `.12`, `.13`.
    pub subnet: String,
    pub broker_port: u16,
    pub controller_port: u16,
}

fn fault_names<S: serde::Serializer>(faults: &[Fault], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(faults.iter().map(|f| f.name()))
}

impl RunOptions {
    /// The safe configuration: acks=all, idempotence, min.insync.replicas=2, no unclean
    /// election.
    pub fn safe(gregor: PathBuf, store: PathBuf) -> RunOptions {
        RunOptions {
            name: "gregor".into(),
            store,
            gregor,
            porcupine: None,
            time_limit: Duration::from_secs(60),
            rate: 100.0,
            concurrency: 5,
            faults: Fault::ALL.to_vec(),
            interval: Duration::from_secs(10),
            queue: true,
            consume: ConsumeMode::Assign,
            metadata: true,
            keys: 4,
            registers: 3,
            acks: "all".into(),
            idempotence: true,
            min_insync_replicas: 2,
            unclean_leader_election: false,
            seed: 0,
            subnet: "127.0.0".into(),
            broker_port: 19092,
            controller_port: 19192,
        }
    }
}

/// Partition leaders of the queue topic and the active controller, from any node that answers.
struct MetadataLeaders {
    broker_port: u16,
}

impl LeaderLookup for MetadataLeaders {
    fn leaders(&self, cluster: &Mutex<Cluster>) -> Vec<i32> {
        let addrs: Vec<String> = {
            let c = cluster.lock().unwrap();
            c.nodes
                .iter()
                .filter(|n| n.is_running() && !n.is_paused())
                .map(|n| n.bootstrap(self.broker_port))
                .collect()
        };
        for addr in addrs {
            let req = kafka_protocol::messages::MetadataRequest::default().with_topics(Some(vec![
                kafka_protocol::messages::metadata_request::MetadataRequestTopic::default()
                    .with_name(Some(kafka_protocol::messages::TopicName(
                        kafka_protocol::protocol::StrBytes::from_static_str(queue::TOPIC),
                    ))),
            ]));
            let Ok(meta) = Connection::connect(&addr, Duration::from_secs(1))
                .and_then(|mut c| c.request(&req, 12))
            else {
                continue;
            };
            let mut ids: Vec<i32> = meta
                .topics
                .iter()
                .flat_map(|t| t.partitions.iter().map(|p| p.leader_id.0))
                .filter(|id| *id >= 0)
                .collect();
            if meta.controller_id.0 >= 0 {
                ids.push(meta.controller_id.0);
            }
            if !ids.is_empty() {
                return ids;
            }
        }
        vec![]
    }
}

/// Restores the links between these hosts when dropped.
struct NetworkGuard(Vec<String>);

impl Drop for NetworkGuard {
    fn drop(&mut self) {
        if crate::net::available() {
            let _ = crate::net::heal(&self.0);
        }
    }
}

/// What a run found.
pub struct RunOutcome {
    pub dir: PathBuf,
    pub valid: bool,
    pub summary: String,
}

/// Runs one test; the verdict is in the returned outcome and in the run directory.
pub fn run(opts: &RunOptions) -> Result<RunOutcome> {
    let stamp = chrono_like_stamp();
    let dir = opts.store.join(format!("{}-{stamp}", opts.name));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(dir.join("options.json"), serde_json::to_vec_pretty(opts)?)?;
    let latest = opts.store.join("latest");
    let _ = std::fs::remove_file(&latest);
    let _ = std::os::unix::fs::symlink(dir.file_name().unwrap(), &latest);

    // Links cut by an earlier run that died are restored now, and ours when this run ends,
    // however it ends. A run without partitions leaves iptables alone.
    let partitions = opts.faults.iter().any(|f| f.cuts_links());
    let hosts = crate::db::node_hosts(&opts.subnet, 3);
    let _links = partitions.then(|| NetworkGuard(hosts.clone()));
    if partitions {
        if !crate::net::available() {
            bail!("partition faults need iptables (run as root)");
        }
        crate::net::heal(&hosts)?;
    }
    let history = Arc::new(HistoryWriter::create(dir.join("history.jsonl"))?);
    let started = history.start();
    let spec = ClusterSpec {
        gregor: opts.gregor.clone(),
        nodes: 3,
        subnet: opts.subnet.clone(),
        broker_port: opts.broker_port,
        controller_port: opts.controller_port,
        properties: broker_properties(opts),
    };
    let mut cluster = Cluster::start(spec, &dir)?;
    cluster.wait_until_serving(Duration::from_secs(60))?;
    let bootstrap = cluster.bootstrap_servers();
    let controllers = cluster.controller_addrs();
    setup_topics(opts, &bootstrap)?;
    tracing::info!(dir = %dir.display(), "cluster up, topics created; starting the workload");

    let cluster = Arc::new(Mutex::new(cluster));
    let stop = Arc::new(AtomicBool::new(false));
    let ctx = WorkerContext {
        history: history.clone(),
        next_process: Arc::new(AtomicU64::new(0)),
        stop: stop.clone(),
        deadline: Instant::now() + opts.time_limit,
        op_interval: Duration::from_secs_f64(
            (workers(opts) as f64 / opts.rate.max(0.001)).min(60.0),
        ),
    };
    let shared = QueueShared::new(
        ProducerSettings {
            bootstrap: bootstrap.clone(),
            acks: opts.acks.clone(),
            idempotence: opts.idempotence,
            message_timeout: Duration::from_secs(10),
        },
        opts.keys,
        opts.consume,
    );
    let mut threads = Vec::new();
    for w in 0..opts.concurrency {
        if opts.queue {
            let worker = QueueWorker {
                ctx: ctx.clone(),
                shared: shared.clone(),
                seed: opts.seed.wrapping_mul(1000).wrapping_add(w as u64),
            };
            threads.push(std::thread::spawn(move || worker.run()));
        }
        if opts.metadata {
            let worker = MetadataWorker {
                ctx: ctx.clone(),
                controllers: controllers.clone(),
                registers: opts.registers,
                seed: opts.seed.wrapping_mul(1000).wrapping_add(500 + w as u64),
                worker: w as u64,
            };
            threads.push(std::thread::spawn(move || worker.run()));
        }
    }

    let mut nemesis = Nemesis {
        cluster: cluster.clone(),
        history: history.clone(),
        faults: opts.faults.clone(),
        interval: opts.interval,
        rng: StdRng::seed_from_u64(opts.seed),
        leaders: Box::new(MetadataLeaders {
            broker_port: opts.broker_port,
        }),
    };
    let nemesis_stats: NemesisStats = nemesis.run(ctx.deadline, &stop);
    for t in threads {
        let _ = t.join();
    }
    // Everything healed before the final reads.
    nemesis.heal(partitions);
    let crashed = cluster.lock().unwrap().crashed();
    let recovered = wait_for_recovery(&cluster, opts);
    history.record(
        EventType::Info,
        Process::Nemesis,
        "recovered",
        json!({"ok": recovered.is_ok(), "error": recovered.as_ref().err().map(|e| format!("{e:#}"))}),
        None,
    );
    let final_reads = if opts.queue {
        queue::final_reads(
            &ctx_for_final_reads(&ctx),
            &bootstrap,
            opts.keys,
            Duration::from_secs(60),
        )
    } else {
        0
    };
    history.flush()?;
    cluster.lock().unwrap().stop();
    drop(cluster);

    let facts = report::RunFacts {
        options: opts.clone(),
        nemesis: nemesis_stats,
        final_reads,
        crashed_nodes: crashed
            .iter()
            .map(|(id, s)| format!("node {id} exited on its own: {s}"))
            .collect(),
        recovered: recovered.err().map(|e| format!("{e:#}")),
        duration: started.elapsed(),
    };
    let verdict = report::check_and_report(&dir, &facts, opts.porcupine.as_deref())?;
    Ok(RunOutcome {
        dir,
        valid: verdict.valid,
        summary: verdict.summary,
    })
}

fn workers(opts: &RunOptions) -> usize {
    opts.concurrency * (opts.queue as usize + opts.metadata as usize)
}

/// Final reads run after the workload's deadline: a context without one.
fn ctx_for_final_reads(ctx: &WorkerContext) -> WorkerContext {
    let mut c = ctx.clone();
    c.deadline = Instant::now() + Duration::from_secs(3600);
    c.stop = Arc::new(AtomicBool::new(false));
    c
}

fn broker_properties(opts: &RunOptions) -> Vec<(String, String)> {
    let props = [
        ("num.partitions", "1".to_string()),
        ("default.replication.factor", "3".to_string()),
        ("min.insync.replicas", opts.min_insync_replicas.to_string()),
        (
            "unclean.leader.election.enable",
            opts.unclean_leader_election.to_string(),
        ),
        // Faults last `interval`; detection must be quicker than that to matter.
        ("broker.heartbeat.interval.ms", "500".to_string()),
        ("broker.session.timeout.ms", "3000".to_string()),
        ("replica.lag.time.max.ms", "3000".to_string()),
        ("group.initial.rebalance.delay.ms", "0".to_string()),
    ];
    props.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

fn setup_topics(opts: &RunOptions, bootstrap: &str) -> Result<()> {
    let configs = vec![
        (
            "min.insync.replicas".to_string(),
            opts.min_insync_replicas.to_string(),
        ),
        (
            "unclean.leader.election.enable".to_string(),
            opts.unclean_leader_election.to_string(),
        ),
    ];
    if opts.queue {
        kafka::create_topics(
            bootstrap,
            &[(queue::TOPIC.to_string(), opts.keys)],
            3,
            &configs,
        )?;
    }
    if opts.metadata {
        let topics: Vec<(String, i32)> = (0..opts.registers)
            .map(|i| (register_topic(i), 1))
            .collect();
        kafka::create_topics(bootstrap, &topics, 3, &[])?;
    }
    Ok(())
}

/// After the heal: every node serving, and every queue partition led with its full ISR.
fn wait_for_recovery(cluster: &Mutex<Cluster>, opts: &RunOptions) -> Result<()> {
    cluster
        .lock()
        .unwrap()
        .wait_until_serving(Duration::from_secs(120))?;
    if !opts.queue {
        return Ok(());
    }
    let addr = cluster.lock().unwrap().nodes[0].bootstrap(opts.broker_port);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let req = kafka_protocol::messages::MetadataRequest::default().with_topics(None);
        let full = Connection::connect(&addr, Duration::from_secs(2))
            .and_then(|mut c| c.request(&req, 12))
            .map(|m| {
                m.topics
                    .iter()
                    .filter(|t| t.name.as_ref().map(|n| n.0.as_str()) == Some(queue::TOPIC))
                    .flat_map(|t| t.partitions.iter())
                    .all(|p| p.leader_id.0 >= 0 && p.isr_nodes.len() == 3)
            })
            .unwrap_or(false);
        if full {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("queue partitions did not regain a full ISR within 120 s");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// `YYYYMMDDTHHMMSS` in UTC, for run directory names.
fn chrono_like_stamp() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The repository root, for finding the porcupine program's sources.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("jepsen/ is inside the repository")
        .to_path_buf()
}

/// Builds the porcupine checker (`jepsen/porcupine`, Go) into `out_dir`; None without Go.
pub fn build_porcupine(out_dir: &Path) -> Result<Option<PathBuf>> {
    let go = ["go", "/usr/local/go/bin/go"].into_iter().find(|g| {
        std::process::Command::new(g)
            .arg("version")
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    });
    let Some(go) = go else {
        return Ok(None);
    };
    std::fs::create_dir_all(out_dir)?;
    // Absolute: go build runs in the program's own directory.
    let out = std::path::absolute(out_dir)?.join("porcupine-check");
    let status = std::process::Command::new(go)
        .args(["build", "-o"])
        .arg(&out)
        .arg(".")
        .current_dir(repo_root().join("jepsen/porcupine"))
        .status()
        .context("running go build")?;
    if !status.success() {
        bail!("go build of jepsen/porcupine failed ({status})");
    }
    Ok(Some(out))
}
