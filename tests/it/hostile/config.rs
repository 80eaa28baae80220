//! See `hostile/mod.rs`. Configurations a node must refuse at start with a clear message
//! and a non-zero exit (listeners whose security protocol Gregor does not implement, several
//! log directories), a properties file read exactly as Java's `Properties.load` reads it,
//! and `offsets.topic.replication.factor` honoured rather than silently lowered.

use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::{
    CreateTopicsRequest, DescribeConfigsRequest, FindCoordinatorRequest, MetadataRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use crate::client::Client;
use crate::cluster::wait_for;
use crate::harness::{free_port, Cluster, Node};

/// A `gregor` process on a config file the test wrote; killed on drop.
struct Process {
    child: Child,
    log: std::path::PathBuf,
}

impl Process {
    fn start(dir: &Path, props: &str) -> Process {
        let config = dir.join("node.properties");
        std::fs::write(&config, props).unwrap();
        let log = dir.join("gregor.log");
        let child = Command::new(env!("CARGO_BIN_EXE_gregor"))
            .arg("--config")
            .arg(&config)
            .env("GREGOR_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start gregor");
        Process { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for the process to exit on its own.
    fn exit_status(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "gregor kept running; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a node on `props` (a full config file) and asserts that it refuses to start:
/// a non-zero exit, and `message` in its log.
fn assert_refused(props: &str, message: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let props = props.replace("{dir}", &tmp.path().join("data").display().to_string());
    let mut p = Process::start(tmp.path(), &props);
    let status = p.exit_status(Duration::from_secs(20));
    let log = p.log();
    assert!(!status.success(), "exit status {status}; log:\n{log}");
    assert!(
        log.contains(message),
        "the log does not say {message:?}:\n{log}"
    );
    assert!(
        !tmp.path().join("data").join("meta.properties").exists(),
        "refused before touching the log directory"
    );
}

#[test]
fn listeners_with_unimplemented_security_protocols_are_refused_at_start() {
    let (p1, p2) = (free_port(), free_port());
    for protocol in ["SSL", "SASL_PLAINTEXT", "SASL_SSL"] {
        assert_refused(
            &format!(
                "node.id=1\nlisteners=PLAINTEXT://127.0.0.1:{p1},{protocol}://127.0.0.1:{p2}\nlog.dirs={{dir}}\n"
            ),
            &format!(
                "listener {protocol}://127.0.0.1:{p2} uses security protocol {protocol}, which Gregor does not implement; only PLAINTEXT listeners are supported"
            ),
        );
    }
    // A listener name mapped to SSL by listener.security.protocol.map.
    assert_refused(
        &format!(
            "node.id=1\nlisteners=INTERNAL://127.0.0.1:{p1},SECURE://127.0.0.1:{p2}\nlistener.security.protocol.map=INTERNAL:PLAINTEXT,SECURE:SSL\nlog.dirs={{dir}}\n"
        ),
        &format!("listener SECURE://127.0.0.1:{p2} uses security protocol SSL"),
    );
    // A listener name the map does not define, as Kafka refuses it.
    assert_refused(
        &format!("node.id=1\nlisteners=INTERNAL://127.0.0.1:{p1}\nlog.dirs={{dir}}\n"),
        "No security protocol defined for listener INTERNAL",
    );
}

#[test]
fn several_log_dirs_are_refused_at_start() {
    let port = free_port();
    assert_refused(
        &format!(
            "node.id=1\nlisteners=PLAINTEXT://127.0.0.1:{port}\nlog.dirs={{dir}}/a,{{dir}}/b\n"
        ),
        "Gregor supports a single log directory (JBOD is not implemented)",
    );
}

#[test]
fn properties_file_is_read_as_java_reads_it() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let data = tmp.path().join("data");
    // Comments with # and !, `:` and whitespace separators, a listener split over a
    // continuation line with escaped colons, \uXXXX and \t escapes, an escaped key.
    let props = format!(
        "# Java's Properties.load rules\n\
         ! a comment too\n\
         node.id : 1\n\
         listeners PLAINTEXT\\://127.0.0.1\\:\\\n        {port}\n\
         \x20 advertised.listeners=PLAINTEXT://127.0.0.1:{port}\n\
         log.dirs = {}\n\
         num.partitions\t\t4\n\
         broker.rack = r\\u00e4ck\\t1\n\
         message\\u002Emax\\u002Ebytes: 2000000\n\
         offsets.topic.replication.factor=1\n",
        data.display()
    );
    let mut p = Process::start(tmp.path(), &props);
    let bootstrap = format!("127.0.0.1:{port}");
    let meta = wait_for("the node to serve", Duration::from_secs(30), || {
        if let Some(status) = p.child.try_wait().unwrap() {
            panic!("gregor exited with {status}; log:\n{}", p.log());
        }
        let mut c = Client::try_connect(&bootstrap).ok()?;
        let meta = c
            .request(&MetadataRequest::default().with_topics(Some(vec![])), 12)
            .ok()?;
        (!meta.brokers.is_empty()).then_some(meta)
    });
    // The listener (continued line, escaped colons) is where the node serves; the rack
    // value has its escapes resolved.
    assert_eq!(meta.brokers[0].port, port as i32);
    assert_eq!(
        meta.brokers[0].rack.as_ref().map(|r| r.to_string()),
        Some("räck\t1".to_string())
    );
    // `num.partitions<TAB><TAB>4`: CreateTopics with the default count gets 4.
    let mut c = Client::connect(&bootstrap);
    let req = CreateTopicsRequest::default()
        .with_timeout_ms(5_000)
        .with_topics(vec![CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_static_str("java-props")))
            .with_num_partitions(-1)
            .with_replication_factor(-1)]);
    assert_eq!(c.request(&req, 7).unwrap().topics[0].error_code, 0);
    let partitions = wait_for("the topic", Duration::from_secs(10), || {
        let meta = c
            .request(
                &MetadataRequest::default().with_topics(Some(vec![
                    kafka_protocol::messages::metadata_request::MetadataRequestTopic::default()
                        .with_name(Some(TopicName(StrBytes::from_static_str("java-props")))),
                ])),
                12,
            )
            .ok()?;
        let n = meta.topics.first()?.partitions.len();
        (n > 0).then_some(n)
    });
    assert_eq!(partitions, 4);
    // The escaped key is `message.max.bytes`, as DescribeConfigs of the broker reports it.
    let req =
        DescribeConfigsRequest::default().with_resources(vec![DescribeConfigsResource::default()
            .with_resource_type(4)
            .with_resource_name(StrBytes::from_static_str("1"))
            .with_configuration_keys(None)]);
    let resp = c.request(&req, 4).unwrap();
    let value = |name: &str| {
        resp.results[0]
            .configs
            .iter()
            .find(|e| e.name.as_str() == name)
            .and_then(|e| e.value.as_ref().map(|v| v.to_string()))
    };
    assert_eq!(value("message.max.bytes").as_deref(), Some("2000000"));
    assert_eq!(value("node.id").as_deref(), Some("1"));
    assert_eq!(value("num.partitions").as_deref(), Some("4"));
}

/// FindCoordinator (v3) for `group` through `node`: (error code, coordinator id).
fn find_coordinator(node: &Node, group: &str) -> Option<(i16, i32)> {
    let mut c = Client::try_connect(&node.bootstrap()).ok()?;
    let req = FindCoordinatorRequest::default()
        .with_key(StrBytes::from_string(group.to_string()))
        .with_key_type(0);
    let resp = c.request(&req, 3).ok()?;
    Some((resp.error_code, resp.node_id.0))
}

/// Replica counts of `topic`'s partitions as `node`'s Metadata lists them (None: no topic).
fn replica_counts(node: &Node, topic: &str) -> Option<Vec<usize>> {
    let mut c = Client::try_connect(&node.bootstrap()).ok()?;
    let meta = c
        .request(&MetadataRequest::default().with_topics(None), 12)
        .ok()?;
    let t = meta
        .topics
        .iter()
        .find(|t| t.name.as_ref().map(|n| n.as_str()) == Some(topic))?;
    Some(t.partitions.iter().map(|p| p.replica_nodes.len()).collect())
}

#[test]
fn offsets_topic_is_created_at_its_replication_factor_or_not_at_all() {
    const COORDINATOR_NOT_AVAILABLE: i16 = 15;
    let mut cluster = Cluster::start(3, &[("offsets.topic.num.partitions", "3")]);
    // One broker of three is gone before any group is used; offsets.topic.replication.factor
    // is 3 (the default).
    cluster.node(3).kill();
    wait_for("node 3 to be fenced", Duration::from_secs(20), || {
        let mut c = Client::try_connect(&cluster.nodes[0].bootstrap()).ok()?;
        let meta = c
            .request(&MetadataRequest::default().with_topics(Some(vec![])), 12)
            .ok()?;
        (meta.brokers.len() == 2).then_some(())
    });
    // Every FindCoordinator, through either live broker, says COORDINATOR_NOT_AVAILABLE,
    // and the topic is not created at a lower factor meanwhile.
    let until = Instant::now() + Duration::from_secs(4);
    let mut answers = 0;
    while Instant::now() < until {
        for id in [1, 2] {
            let (err, _) = find_coordinator(cluster.node(id), "g").expect("an answer");
            assert_eq!(err, COORDINATOR_NOT_AVAILABLE, "node {id}");
            answers += 1;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(answers >= 10);
    assert_eq!(
        replica_counts(cluster.node(1), "__consumer_offsets"),
        None,
        "no __consumer_offsets below its replication factor"
    );
    // The third broker returns: the next FindCoordinator creates it at RF 3 and finds a
    // coordinator.
    cluster.node(3).restart();
    cluster.wait_until_serving(3, Duration::from_secs(30));
    let coordinator = wait_for("a coordinator", Duration::from_secs(30), || {
        let (err, id) = find_coordinator(cluster.node(1), "g")?;
        (err == 0).then_some(id)
    });
    assert!((1..=3).contains(&coordinator));
    assert_eq!(
        replica_counts(cluster.node(2), "__consumer_offsets"),
        Some(vec![3, 3, 3]),
        "every partition of __consumer_offsets has 3 replicas"
    );
}
