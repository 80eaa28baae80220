//! Test harness: real `gregor` processes on loopback, and the stock Kafka CLI.
//!
//! Every process a test starts is killed when its handle drops, so a failing test leaves
//! nothing running.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The repository root (where `bin/kafka` lives).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A free loopback port (bound then released; good enough for tests that start at once).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One `gregor` node process with its own data directory.
pub struct Node {
    pub node_id: i32,
    /// The loopback address it listens on (and sends node-to-node traffic from).
    pub host: String,
    pub port: u16,
    /// Its controller listener's port (multi-node clusters only).
    pub controller_port: Option<u16>,
    /// Live brokers its Metadata must list before it counts as serving.
    expected_brokers: usize,
    pub dir: PathBuf,
    config_path: PathBuf,
    child: Option<Child>,
    _tmp: Option<tempfile::TempDir>,
}

impl Node {
    /// Starts a node with extra `key=value` properties and waits until it answers.
    pub fn start(extra: &[(&str, &str)]) -> Node {
        let tmp = tempfile::Builder::new()
            .prefix("gregor-it-")
            .tempdir()
            .unwrap();
        let dir = tmp.path().to_path_buf();
        let mut node = Node::configure(&dir, free_port(), extra);
        node._tmp = Some(tmp);
        node.restart();
        node
    }

    fn configure(dir: &Path, port: u16, extra: &[(&str, &str)]) -> Node {
        let mut props = format!(
            "node.id=1\nlisteners=PLAINTEXT://127.0.0.1:{port}\nadvertised.listeners=PLAINTEXT://127.0.0.1:{port}\nlog.dirs={}\nnum.partitions=1\noffsets.topic.replication.factor=1\n",
            dir.join("data").display()
        );
        for (k, v) in extra {
            props.push_str(&format!("{k}={v}\n"));
        }
        let config_path = dir.join("node.properties");
        std::fs::write(&config_path, props).unwrap();
        Node {
            node_id: 1,
            host: "127.0.0.1".into(),
            port,
            controller_port: None,
            expected_brokers: 1,
            dir: dir.to_path_buf(),
            config_path,
            child: None,
            _tmp: None,
        }
    }

    pub fn bootstrap(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    pub fn bootstrap_controller(&self) -> String {
        format!(
            "{}:{}",
            self.host,
            self.controller_port.expect("a cluster node")
        )
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// (Re)starts the process on the same config and data, and waits for its port.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "node already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("gregor.log"))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_gregor"))
            .arg("--config")
            .arg(&self.config_path)
            .env("GREGOR_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start gregor");
        self.child = Some(child);
        if self.expected_brokers == 1 {
            self.wait_until_serving(1, Duration::from_secs(30));
        }
    }

    /// Waits until the node answers Metadata listing at least `brokers` live brokers (it
    /// elected or found a controller, registered, and was unfenced).
    pub fn wait_until_serving(&mut self, brokers: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "gregor exited during start-up with {status}; log:\n{}",
                    self.log()
                );
            }
            if let Ok(mut c) = crate::client::Client::try_connect(&self.bootstrap()) {
                let req =
                    kafka_protocol::messages::MetadataRequest::default().with_topics(Some(vec![]));
                if let Ok(meta) = c.request(&req, 12) {
                    if meta.brokers.len() >= brokers && meta.controller_id.0 >= 0 {
                        return;
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "gregor did not start serving; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGSTOP (`true`) or SIGCONT (`false`).
    pub fn pause(&self, stop: bool) {
        if let Some(c) = self.child.as_ref() {
            let sig = if stop { "-STOP" } else { "-CONT" };
            let _ = Command::new("kill")
                .arg(sig)
                .arg(c.id().to_string())
                .status();
        }
    }

    /// kill -9.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if c.try_wait().unwrap().is_some() {
                    break;
                }
                if Instant::now() > deadline {
                    let _ = c.kill();
                    let _ = c.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// The node's process id while it runs (tests read its `/proc/<pid>/status`).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Whether the process was started and not stopped or killed by the test.
    pub fn is_alive(&self) -> bool {
        self.child.is_some()
    }

    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => c.try_wait().unwrap().is_none(),
            None => false,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("gregor.log")).unwrap_or_default()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            let log = self.log();
            let tail: String = log
                .lines()
                .rev()
                .take(40)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n");
            eprintln!("--- gregor log tail ({}) ---\n{tail}", self.dir.display());
        }
    }
}

/// The Kafka release whose CLI the tests use by default (bin/kafka's default).
pub const CURRENT_CLI: &str = "4.4.0";
/// The older 4.x CLI, run where its behaviour differs from the current one's.
pub const OLDER_CLI: &str = "4.1.1";

/// Runs a stock Kafka tool (`bin/kafka NAME ARGS...`) of the current release with a timeout.
pub fn kafka_tool(name: &str, args: &[&str], stdin: Option<&[u8]>, timeout: Duration) -> Output {
    kafka_tool_at(CURRENT_CLI, name, args, stdin, timeout)
}

/// Runs a stock Kafka tool of the given Kafka release (`KAFKA_VERSION=version bin/kafka ...`).
pub fn kafka_tool_at(
    version: &str,
    name: &str,
    args: &[&str],
    stdin: Option<&[u8]>,
    timeout: Duration,
) -> Output {
    let mut cmd = Command::new(repo_root().join("bin/kafka"));
    cmd.env("KAFKA_VERSION", version)
        .arg(name)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    let mut child = cmd.spawn().expect("run bin/kafka");
    if let Some(input) = stdin {
        use std::io::Write;
        let mut pipe = child.stdin.take().unwrap();
        let input = input.to_vec();
        std::thread::spawn(move || {
            let _ = pipe.write_all(&input);
        });
    }
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(timeout) {
        Ok(out) => out.expect("kafka tool output"),
        Err(_) => {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
            panic!("kafka {name} {args:?} timed out after {timeout:?}");
        }
    }
}

/// Runs a Kafka tool and asserts it succeeded; returns stdout.
pub fn kafka_ok(name: &str, args: &[&str]) -> String {
    kafka_ok_at(CURRENT_CLI, name, args)
}

/// Runs a Kafka tool of the given release and asserts it succeeded; returns stdout.
pub fn kafka_ok_at(version: &str, name: &str, args: &[&str]) -> String {
    let out = kafka_tool_at(version, name, args, None, Duration::from_secs(120));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        out.status.success(),
        "kafka {version} {name} {args:?} failed ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    stdout
}

/// The Python interpreter of the client venv (scripts/python-env.sh creates it).
pub fn python() -> PathBuf {
    let out = Command::new(repo_root().join("scripts/python-env.sh"))
        .stderr(Stdio::inherit())
        .output()
        .expect("python-env.sh");
    assert!(out.status.success(), "python-env.sh failed");
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// A cluster of `gregor` nodes, each a voter of the metadata quorum and a broker, on its own
/// loopback address (127.0.0.11, .12, ...) so links between nodes can be cut with iptables.
pub struct Cluster {
    pub nodes: Vec<Node>,
    _tmp: tempfile::TempDir,
}

impl Cluster {
    pub fn start(size: usize, extra: &[(&str, &str)]) -> Cluster {
        let tmp = tempfile::Builder::new()
            .prefix("gregor-cluster-")
            .tempdir()
            .unwrap();
        // Each cluster gets its own /24 inside 127/8, so one test's iptables rules never touch
        // another test's cluster.
        static NEXT_SUBNET: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);
        let subnet = NEXT_SUBNET.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 250 + 1;
        let hosts: Vec<String> = (0..size)
            .map(|i| format!("127.0.{subnet}.{}", 11 + i))
            .collect();
        let ports: Vec<(u16, u16)> = (0..size).map(|_| (free_port(), free_port())).collect();
        let voters: Vec<String> = (0..size)
            .map(|i| format!("{}@{}:{}", i + 1, hosts[i], ports[i].1))
            .collect();
        let mut nodes = Vec::new();
        for i in 0..size {
            let dir = tmp.path().join(format!("node-{}", i + 1));
            std::fs::create_dir_all(&dir).unwrap();
            let (port, cport) = ports[i];
            let host = &hosts[i];
            let mut props = format!(
                "node.id={}\nlisteners=PLAINTEXT://{host}:{port},CONTROLLER://{host}:{cport}\nadvertised.listeners=PLAINTEXT://{host}:{port}\ncontroller.listener.names=CONTROLLER\ncontroller.quorum.voters={}\nlog.dirs={}\nnum.partitions=1\nbroker.heartbeat.interval.ms=500\nbroker.session.timeout.ms=3000\ngroup.initial.rebalance.delay.ms=0\n",
                i + 1,
                voters.join(","),
                dir.join("data").display()
            );
            for (k, v) in extra {
                props.push_str(&format!("{k}={v}\n"));
            }
            let config_path = dir.join("node.properties");
            std::fs::write(&config_path, props).unwrap();
            nodes.push(Node {
                node_id: i as i32 + 1,
                host: host.clone(),
                port,
                controller_port: Some(cport),
                expected_brokers: size,
                dir,
                config_path,
                child: None,
                _tmp: None,
            });
        }
        for n in nodes.iter_mut() {
            n.restart();
        }
        let mut cluster = Cluster { nodes, _tmp: tmp };
        cluster.wait_until_serving(size, Duration::from_secs(60));
        cluster
    }

    pub fn node(&mut self, id: i32) -> &mut Node {
        self.nodes
            .iter_mut()
            .find(|n| n.node_id == id)
            .expect("node id")
    }

    /// Waits until every running node lists `brokers` live brokers.
    pub fn wait_until_serving(&mut self, brokers: usize, timeout: Duration) {
        for n in self.nodes.iter_mut() {
            if n.is_running() {
                n.wait_until_serving(brokers, timeout);
            }
        }
    }
}
