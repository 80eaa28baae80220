//! The database under test (Jepsen's "db"): a cluster of real `gregor` processes, each on its
//! own loopback address (127.0.0.11, .12, ...) so that the network between two nodes can be cut
//! with iptables (see `net`). Node-to-node traffic is sent from the node's own address.
//!
//! Every process started here is killed when the `Cluster` drops, even on a panic.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// Where and how to run the cluster.
#[derive(Clone, Debug)]
pub struct ClusterSpec {
    /// The `gregor` binary.
    pub gregor: PathBuf,
    pub nodes: usize,
    /// Node i (from 1) listens on `{subnet}.{10 + i}:{broker_port}` for clients and on
    /// `controller_port` for the metadata quorum.
    pub subnet: String,
    pub broker_port: u16,
    pub controller_port: u16,
    /// Extra `key=value` broker properties (Kafka's names).
    pub properties: Vec<(String, String)>,
}

/// One node: its process (if running), its data directory and its log.
pub struct Node {
    pub id: i32,
    pub host: String,
    pub dir: PathBuf,
    child: Option<Child>,
    paused: bool,
    gregor: PathBuf,
}

impl Node {
    pub fn bootstrap(&self, port: u16) -> String {
        format!("{}:{port}", self.host)
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    pub fn is_paused(&self) -> bool {
        self.paused
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("gregor.log")
    }

    fn start(&mut self) -> Result<()> {
        if self.child.is_some() {
            return Ok(());
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())?;
        let mut cmd = Command::new(&self.gregor);
        cmd.arg("--config")
            .arg(self.dir.join("node.properties"))
            .env("GREGOR_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        // The node dies with the harness, even when the harness is killed outright. (The
        // signal follows the spawning thread: nodes are started and restarted by the thread
        // that runs the test, which outlives them.)
        // Safety: prctl is async-signal-safe and touches nothing of the parent's.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", self.gregor.display()))?;
        self.child = Some(child);
        self.paused = false;
        Ok(())
    }

    /// kill -9; the node's data stays for its restart.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.paused = false;
    }

    fn signal(&mut self, sig: &str) {
        if let Some(c) = self.child.as_ref() {
            let _ = Command::new("kill")
                .arg(sig)
                .arg(c.id().to_string())
                .status();
        }
    }

    /// Whether the process died on its own (a crash is a finding, not a fault we injected).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }
}

/// The loopback addresses of a cluster's nodes: `{subnet}.11`, `.12`, ...
pub fn node_hosts(subnet: &str, nodes: usize) -> Vec<String> {
    (1..=nodes)
        .map(|i| format!("{subnet}.{}", 10 + i))
        .collect()
}

pub struct Cluster {
    pub spec: ClusterSpec,
    pub nodes: Vec<Node>,
}

impl Cluster {
    /// Writes each node's properties under `dir/n{id}/` and starts every node.
    pub fn start(spec: ClusterSpec, dir: &Path) -> Result<Cluster> {
        let hosts = node_hosts(&spec.subnet, spec.nodes);
        let voters: Vec<String> = hosts
            .iter()
            .enumerate()
            .map(|(i, h)| format!("{}@{h}:{}", i + 1, spec.controller_port))
            .collect();
        let mut nodes = Vec::new();
        for (i, host) in hosts.iter().enumerate() {
            let id = i as i32 + 1;
            let node_dir = dir.join(format!("n{id}"));
            std::fs::create_dir_all(&node_dir)?;
            let (bp, cp) = (spec.broker_port, spec.controller_port);
            let mut props = format!(
                "node.id={id}\n\
                 listeners=PLAINTEXT://{host}:{bp},CONTROLLER://{host}:{cp}\n\
                 advertised.listeners=PLAINTEXT://{host}:{bp}\n\
                 controller.listener.names=CONTROLLER\n\
                 controller.quorum.voters={}\n\
                 log.dirs={}\n",
                voters.join(","),
                node_dir.join("data").display()
            );
            for (k, v) in &spec.properties {
                props.push_str(&format!("{k}={v}\n"));
            }
            std::fs::write(node_dir.join("node.properties"), props)?;
            nodes.push(Node {
                id,
                host: host.clone(),
                dir: node_dir,
                child: None,
                paused: false,
                gregor: spec.gregor.clone(),
            });
        }
        let mut cluster = Cluster { spec, nodes };
        for n in cluster.nodes.iter_mut() {
            n.start()?;
        }
        Ok(cluster)
    }

    pub fn bootstrap_servers(&self) -> String {
        self.nodes
            .iter()
            .map(|n| n.bootstrap(self.spec.broker_port))
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn controller_addrs(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| n.bootstrap(self.spec.controller_port))
            .collect()
    }

    pub fn hosts(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.host.clone()).collect()
    }

    pub fn node(&mut self, id: i32) -> &mut Node {
        self.nodes
            .iter_mut()
            .find(|n| n.id == id)
            .expect("a node of this cluster")
    }

    pub fn kill(&mut self, id: i32) {
        self.node(id).kill();
    }

    pub fn restart(&mut self, id: i32) -> Result<()> {
        self.node(id).start()
    }

    /// SIGSTOP: the process keeps its sockets but answers nothing.
    pub fn pause(&mut self, id: i32) {
        let n = self.node(id);
        if n.is_running() {
            n.signal("-STOP");
            n.paused = true;
        }
    }

    pub fn resume(&mut self, id: i32) {
        let n = self.node(id);
        if n.paused {
            n.signal("-CONT");
            n.paused = false;
        }
    }

    /// Resumes every paused node and starts every stopped one.
    pub fn heal_processes(&mut self) -> Result<()> {
        for n in self.nodes.iter_mut() {
            if n.paused {
                n.signal("-CONT");
                n.paused = false;
            }
            if !n.is_running() {
                n.start()?;
            }
        }
        Ok(())
    }

    /// Nodes whose process exited although nothing here killed it.
    pub fn crashed(&mut self) -> Vec<(i32, std::process::ExitStatus)> {
        self.nodes
            .iter_mut()
            .filter_map(|n| n.exited().map(|s| (n.id, s)))
            .collect()
    }

    /// Waits until every node answers Metadata listing all brokers with a known controller.
    pub fn wait_until_serving(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let want = self.nodes.len();
        for i in 0..self.nodes.len() {
            let addr = self.nodes[i].bootstrap(self.spec.broker_port);
            loop {
                if let Some(status) = self.nodes[i].exited() {
                    bail!("node {} exited with {status}", self.nodes[i].id);
                }
                let ok = crate::wire::Connection::connect(&addr, Duration::from_secs(2))
                    .and_then(|mut c| {
                        c.request(
                            &kafka_protocol::messages::MetadataRequest::default()
                                .with_topics(Some(vec![])),
                            12,
                        )
                    })
                    .map(|m| m.brokers.len() >= want && m.controller_id.0 >= 0)
                    .unwrap_or(false);
                if ok {
                    break;
                }
                if Instant::now() > deadline {
                    bail!("node at {addr} did not serve within {timeout:?}");
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        Ok(())
    }

    /// SIGTERM every node and wait for a clean exit (kill -9 after 10 s).
    pub fn stop(&mut self) {
        for n in self.nodes.iter_mut() {
            if n.paused {
                n.signal("-CONT");
                n.paused = false;
            }
            n.signal("-TERM");
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        for n in self.nodes.iter_mut() {
            if let Some(mut c) = n.child.take() {
                loop {
                    if c.try_wait().ok().flatten().is_some() {
                        break;
                    }
                    if Instant::now() > deadline {
                        let _ = c.kill();
                        let _ = c.wait();
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in self.nodes.iter_mut() {
            n.kill();
        }
    }
}
