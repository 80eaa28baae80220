//! Consumer groups on a three-node cluster with the stock Kafka CLI: committed offsets live
//! in `__consumer_offsets` (RF 3), the leader of the group's partition coordinates it, and
//! the offsets survive kill -9 of that coordinator.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_delete_request::{
    OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::{
    DeleteGroupsRequest, FindCoordinatorRequest, GroupId, OffsetCommitRequest, OffsetDeleteRequest,
    OffsetFetchRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use crate::client::Client;
use crate::cluster::wait_for;
use crate::harness::{kafka_ok, kafka_tool, repo_root, Cluster, Node};

/// Small enough to create quickly on a test cluster; the default (50) is covered by cli.rs.
const CLUSTER_PROPS: &[(&str, &str)] = &[("offsets.topic.num.partitions", "6")];

fn str(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// The group's coordinator as `node` answers FindCoordinator (v3), once it has one.
fn find_coordinator(node: &Node, group: &str) -> Option<i32> {
    let mut c = Client::try_connect(&node.bootstrap()).ok()?;
    let req = FindCoordinatorRequest::default()
        .with_key(str(group))
        .with_key_type(0);
    let resp = c.request(&req, 3).ok()?;
    (resp.error_code == 0).then_some(resp.node_id.0)
}

fn produce_lines(bootstrap: &str, topic: &str, lines: &[String]) {
    let out = kafka_tool(
        "console-producer",
        &["--bootstrap-server", bootstrap, "--topic", topic],
        Some((lines.join("\n") + "\n").as_bytes()),
        Duration::from_secs(90),
    );
    assert!(
        out.status.success(),
        "console-producer failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Produces `key:value` lines with distinct keys, so every partition gets records (unkeyed
/// lines may all land in one partition with the sticky partitioner).
fn produce_keyed_lines(bootstrap: &str, topic: &str, lines: &[String]) {
    let keyed: Vec<String> = lines
        .iter()
        .enumerate()
        .map(|(i, l)| format!("key-{i}:{l}"))
        .collect();
    let out = kafka_tool(
        "console-producer",
        &[
            "--bootstrap-server",
            bootstrap,
            "--topic",
            topic,
            "--property",
            "parse.key=true",
            "--property",
            "key.separator=:",
        ],
        Some((keyed.join("\n") + "\n").as_bytes()),
        Duration::from_secs(90),
    );
    assert!(
        out.status.success(),
        "console-producer failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn consume(bootstrap: &str, topic: &str, group: &str, n: usize) -> Vec<String> {
    let mut got: Vec<String> = kafka_ok(
        "console-consumer",
        &[
            "--bootstrap-server",
            bootstrap,
            "--topic",
            topic,
            "--group",
            group,
            "--from-beginning",
            "--max-messages",
            &n.to_string(),
            "--timeout-ms",
            "60000",
        ],
    )
    .lines()
    .map(String::from)
    .collect();
    got.sort();
    got
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// `kafka-consumer-groups --describe` rows of a group: partition -> (current offset, lag,
/// consumer id).
fn describe_offsets(bootstrap: &str, group: &str) -> BTreeMap<i32, (i64, i64, String)> {
    crate::group_rebalance::describe_offsets(bootstrap, group)
        .into_iter()
        .map(|(p, r)| (p, (r.current, r.lag, r.consumer)))
        .collect()
}

fn create_topic(bootstrap: &str, topic: &str, partitions: &str) {
    kafka_ok(
        "topics",
        &[
            "--bootstrap-server",
            bootstrap,
            "--create",
            "--topic",
            topic,
            "--partitions",
            partitions,
            "--replication-factor",
            "3",
        ],
    );
}

/// A console consumer that stays in the group until stopped (SIGTERM: it leaves cleanly).
struct BackgroundConsumer(Child);

impl BackgroundConsumer {
    fn start(bootstrap: &str, topic: &str, group: &str) -> BackgroundConsumer {
        let child = Command::new(repo_root().join("bin/kafka"))
            .args([
                "console-consumer",
                "--bootstrap-server",
                bootstrap,
                "--topic",
                topic,
                "--group",
                group,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start console-consumer");
        BackgroundConsumer(child)
    }

    fn stop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.0.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.0.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for BackgroundConsumer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn console_consumer_group_resumes_after_committed_offsets_on_three_nodes() {
    let started = Instant::now();
    let cluster = Cluster::start(3, CLUSTER_PROPS);
    let bs = cluster.nodes[0].bootstrap();
    create_topic(&bs, "orders", "3");
    let first: Vec<String> = (0..100).map(|i| format!("first-{i}")).collect();
    produce_lines(&bs, "orders", &first);
    assert_eq!(consume(&bs, "orders", "g", 100), sorted(first));

    let second: Vec<String> = (0..50).map(|i| format!("second-{i}")).collect();
    produce_lines(&bs, "orders", &second);
    // Through another broker: the coordinator is found wherever the client starts.
    let bs2 = cluster.nodes[1].bootstrap();
    assert_eq!(
        consume(&bs2, "orders", "g", 50),
        sorted(second),
        "the group resumes where it committed"
    );
    let offsets = describe_offsets(&bs, "g");
    assert_eq!(offsets.values().map(|(o, _, _)| o).sum::<i64>(), 150);
    // The offsets topic was created as configured: 6 partitions, RF 3, compacted.
    let describe = kafka_ok(
        "topics",
        &[
            "--bootstrap-server",
            &bs,
            "--describe",
            "--topic",
            "__consumer_offsets",
        ],
    );
    assert!(describe.contains("PartitionCount: 6"), "{describe}");
    assert!(describe.contains("ReplicationFactor: 3"), "{describe}");
    assert!(describe.contains("cleanup.policy=compact"), "{describe}");
    eprintln!("three-node resume test took {:?}", started.elapsed());
}

#[test]
fn consumer_groups_describe_reset_and_delete() {
    let cluster = Cluster::start(3, CLUSTER_PROPS);
    let bs = cluster.nodes[0].bootstrap();
    create_topic(&bs, "events", "2");
    let lines: Vec<String> = (0..100).map(|i| format!("e-{i}")).collect();
    produce_keyed_lines(&bs, "events", &lines);
    assert_eq!(consume(&bs, "events", "billing", 100).len(), 100);

    // Committed offsets and no lag, with the group empty.
    let offsets = describe_offsets(&bs, "billing");
    assert_eq!(offsets.len(), 2, "{offsets:?}");
    assert_eq!(offsets.values().map(|(o, _, _)| o).sum::<i64>(), 100);
    assert!(offsets.values().all(|(_, lag, _)| *lag == 0), "{offsets:?}");

    // With a live member: describe shows it, and the broker refuses what Kafka refuses.
    let coordinator_id = wait_for("a coordinator", Duration::from_secs(30), || {
        find_coordinator(&cluster.nodes[0], "billing")
    });
    let coordinator = cluster
        .nodes
        .iter()
        .find(|n| n.node_id == coordinator_id)
        .unwrap();
    let mut member = BackgroundConsumer::start(&bs, "events", "billing");
    let offsets = wait_for("a member in describe", Duration::from_secs(60), || {
        let o = describe_offsets(&bs, "billing");
        o.values().all(|(_, _, id)| id != "-").then_some(o)
    });
    assert_eq!(offsets.len(), 2);
    let members = kafka_ok(
        "consumer-groups",
        &[
            "--bootstrap-server",
            &bs,
            "--describe",
            "--group",
            "billing",
            "--members",
        ],
    );
    assert!(
        members.lines().filter(|l| l.starts_with("billing")).count() == 1,
        "{members}"
    );
    let mut c = Client::connect(&coordinator.bootstrap());
    // The admin client's commit (generation -1, no member id) to an active group.
    let commit = OffsetCommitRequest::default()
        .with_group_id(GroupId(str("billing")))
        .with_generation_id_or_member_epoch(-1)
        .with_member_id(str(""))
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(TopicName(str("events")))
            .with_partitions(vec![OffsetCommitRequestPartition::default()
                .with_partition_index(0)
                .with_committed_offset(1)])]);
    let resp = c.request(&commit, 8).unwrap();
    assert_eq!(
        resp.topics[0].partitions[0].error_code,
        ResponseError::UnknownMemberId.code()
    );
    let resp = c
        .request(
            &DeleteGroupsRequest::default()
                .with_groups_names(vec![GroupId(str("billing")), GroupId(str("nobody"))]),
            2,
        )
        .unwrap();
    assert_eq!(
        resp.results[0].error_code,
        ResponseError::NonEmptyGroup.code()
    );
    assert_eq!(
        resp.results[1].error_code,
        ResponseError::GroupIdNotFound.code()
    );
    let resp = c
        .request(
            &OffsetDeleteRequest::default()
                .with_group_id(GroupId(str("billing")))
                .with_topics(vec![OffsetDeleteRequestTopic::default()
                    .with_name(TopicName(str("events")))
                    .with_partitions(vec![
                        OffsetDeleteRequestPartition::default().with_partition_index(0)
                    ])]),
            0,
        )
        .unwrap();
    assert_eq!(resp.error_code, 0);
    assert_eq!(
        resp.topics[0].partitions[0].error_code,
        ResponseError::GroupSubscribedToTopic.code()
    );
    // Every other broker is not the coordinator of this group.
    for n in cluster.nodes.iter().filter(|n| n.node_id != coordinator_id) {
        let mut other = Client::connect(&n.bootstrap());
        let fetch = OffsetFetchRequest::default()
            .with_group_id(GroupId(str("billing")))
            .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                .with_name(TopicName(str("events")))
                .with_partition_indexes(vec![0])]));
        let resp = other.request(&fetch, 7).unwrap();
        assert_eq!(resp.error_code, ResponseError::NotCoordinator.code());
        let resp = other.request(&commit, 8).unwrap();
        assert_eq!(
            resp.topics[0].partitions[0].error_code,
            ResponseError::NotCoordinator.code()
        );
    }
    member.stop();
    wait_for("the group to be empty", Duration::from_secs(60), || {
        let out = kafka_ok(
            "consumer-groups",
            &[
                "--bootstrap-server",
                &bs,
                "--describe",
                "--group",
                "billing",
                "--state",
            ],
        );
        out.contains("Empty").then_some(())
    });

    let reset = |spec: &[&str]| {
        let mut args = vec![
            "--bootstrap-server",
            bs.as_str(),
            "--reset-offsets",
            "--group",
            "billing",
            "--topic",
            "events",
            "--execute",
        ];
        args.extend_from_slice(spec);
        kafka_ok("consumer-groups", &args);
        describe_offsets(&bs, "billing")
    };
    let before: BTreeMap<i32, i64> = describe_offsets(&bs, "billing")
        .into_iter()
        .map(|(p, (o, _, _))| (p, o))
        .collect();
    let after = reset(&["--to-earliest"]);
    assert!(after.values().all(|(o, _, _)| *o == 0), "{after:?}");
    assert_eq!(after.values().map(|(_, lag, _)| lag).sum::<i64>(), 100);
    // The tool clamps targets to each partition's [log start, log end]; the producer may
    // have put every line in one partition.
    let after = reset(&["--to-offset", "10"]);
    for (p, end) in &before {
        assert_eq!(after[p].0, (*end).min(10), "{after:?}");
    }
    let after = reset(&["--shift-by", "-3"]);
    for (p, end) in &before {
        assert_eq!(after[p].0, ((*end).min(10) - 3).max(0), "{after:?}");
    }
    assert_eq!(before.values().sum::<i64>(), 100, "{before:?}");

    kafka_ok(
        "consumer-groups",
        &["--bootstrap-server", &bs, "--delete", "--group", "billing"],
    );
    let list = kafka_ok("consumer-groups", &["--bootstrap-server", &bs, "--list"]);
    assert!(!list.lines().any(|l| l.trim() == "billing"), "{list}");
    // Its offsets are gone too: a new consumer of the group starts from the beginning.
    assert_eq!(consume(&bs, "events", "billing", 100).len(), 100);
}

#[test]
fn offsets_survive_kill_9_of_the_coordinator() {
    let mut cluster = Cluster::start(3, CLUSTER_PROPS);
    let bs = cluster.nodes[0].bootstrap();
    create_topic(&bs, "payments", "3");
    let first: Vec<String> = (0..90).map(|i| format!("p-{i}")).collect();
    produce_lines(&bs, "payments", &first);
    assert_eq!(consume(&bs, "payments", "ledger", 90), sorted(first));
    let before = describe_offsets(&bs, "ledger");
    assert_eq!(before.values().map(|(o, _, _)| o).sum::<i64>(), 90);

    // `--describe --state` names the coordinator as "host:port (id)".
    let state = kafka_ok(
        "consumer-groups",
        &[
            "--bootstrap-server",
            &bs,
            "--describe",
            "--group",
            "ledger",
            "--state",
        ],
    );
    let coordinator: i32 = state
        .lines()
        .find(|l| l.starts_with("ledger"))
        .and_then(|l| l.split('(').nth(1))
        .and_then(|s| s.split(')').next())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| panic!("no coordinator in {state}"));
    assert_eq!(
        Some(coordinator),
        find_coordinator(&cluster.nodes[0], "ledger")
    );

    let killed_at = Instant::now();
    cluster.node(coordinator).kill();
    let survivor = cluster
        .nodes
        .iter()
        .find(|n| n.node_id != coordinator)
        .unwrap();
    let sbs = survivor.bootstrap();
    let new_coordinator = wait_for("a new coordinator", Duration::from_secs(60), || {
        find_coordinator(survivor, "ledger").filter(|c| *c != coordinator)
    });
    eprintln!(
        "coordinator moved from {coordinator} to {new_coordinator} in {:?}",
        killed_at.elapsed()
    );
    let after = describe_offsets(&sbs, "ledger");
    assert_eq!(
        after
            .iter()
            .map(|(p, (o, _, _))| (*p, *o))
            .collect::<Vec<_>>(),
        before
            .iter()
            .map(|(p, (o, _, _))| (*p, *o))
            .collect::<Vec<_>>(),
        "every committed offset survived"
    );

    let second: Vec<String> = (0..30).map(|i| format!("q-{i}")).collect();
    produce_lines(&sbs, "payments", &second);
    assert_eq!(
        consume(&sbs, "payments", "ledger", 30),
        sorted(second),
        "the consumer resumes from the surviving offsets"
    );
}

/// OffsetFetch v7 of one partition through `node`: (error, offset).
fn fetch_offset(node: &Node, group: &str, topic: &str, partition: i32) -> (i16, i64) {
    let Ok(mut c) = Client::try_connect(&node.bootstrap()) else {
        return (-1, -1);
    };
    let req = OffsetFetchRequest::default()
        .with_group_id(GroupId(str(group)))
        .with_topics(Some(vec![OffsetFetchRequestTopic::default()
            .with_name(TopicName(str(topic)))
            .with_partition_indexes(vec![partition])]));
    match c.request(&req, 7) {
        Ok(r) if r.error_code != 0 => (r.error_code, -1),
        Ok(r) => (0, r.topics[0].partitions[0].committed_offset),
        Err(_) => (-1, -1),
    }
}

#[test]
fn offsets_log_is_bounded_by_checkpoints_and_reloads_after_restart() {
    let mut node = Node::start(&[
        ("offsets.topic.num.partitions", "1"),
        ("offsets.checkpoint.min.records", "50"),
        ("offsets.retention.check.interval.ms", "200"),
    ]);
    Client::connect(&node.bootstrap()).create_topic("t", 1);
    wait_for("a coordinator", Duration::from_secs(30), || {
        find_coordinator(&node, "g")
    });
    let mut c = Client::connect(&node.bootstrap());
    for i in 0..300 {
        let commit = OffsetCommitRequest::default()
            .with_group_id(GroupId(str("g")))
            .with_generation_id_or_member_epoch(-1)
            .with_member_id(str(""))
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(TopicName(str("t")))
                .with_partitions(vec![OffsetCommitRequestPartition::default()
                    .with_partition_index(0)
                    .with_committed_offset(i)])]);
        let resp = c.request(&commit, 8).unwrap();
        assert_eq!(resp.topics[0].partitions[0].error_code, 0, "commit {i}");
    }
    // The checkpoint moved the log start: far fewer records than commits remain.
    let (start, end) = wait_for("a checkpoint", Duration::from_secs(30), || {
        let start = c.list_offset("__consumer_offsets", 0, -2).1;
        let end = c.list_offset("__consumer_offsets", 0, -1).1;
        (start > 0 && end - start <= 50).then_some((start, end))
    });
    // 300 commits plus one record per checkpoint (one live key).
    assert!(end > 300 && end < 320, "log end {end}");
    assert!(start > 0);
    assert_eq!(fetch_offset(&node, "g", "t", 0), (0, 299));
    // A restart replays only what the log still holds, and finds the same offset.
    node.stop();
    node.restart();
    let offset = wait_for("the reloaded offset", Duration::from_secs(30), || {
        let (err, o) = fetch_offset(&node, "g", "t", 0);
        (err == 0).then_some(o)
    });
    assert_eq!(
        offset, 299,
        "the last value of a live key survives the checkpoint"
    );
}
