//! The stock Apache Kafka 4.x command-line tools against a single Gregor node: the current
//! release (4.4.0) everywhere, and the older 4.1.1 CLI too for the topic and config commands,
//! whose requests differ between the two.

use std::time::Duration;

use crate::harness::{
    kafka_ok, kafka_ok_at, kafka_tool, kafka_tool_at, Node, CURRENT_CLI, OLDER_CLI,
};

fn describe(cli: &str, node: &Node, topic: &str) -> String {
    kafka_ok_at(
        cli,
        "topics",
        &[
            "--bootstrap-server",
            &node.bootstrap(),
            "--describe",
            "--topic",
            topic,
        ],
    )
}

#[test]
fn topics_create_list_describe_alter_delete() {
    topics_lifecycle(CURRENT_CLI);
}

#[test]
fn topics_create_list_describe_alter_delete_older_cli() {
    topics_lifecycle(OLDER_CLI);
}

fn topics_lifecycle(cli: &str) {
    let kafka_ok = |name: &str, args: &[&str]| kafka_ok_at(cli, name, args);
    let kafka_tool = |name: &str, args: &[&str], stdin: Option<&[u8]>, timeout: Duration| {
        kafka_tool_at(cli, name, args, stdin, timeout)
    };
    let node = Node::start(&[]);
    let bs = node.bootstrap();
    let out = kafka_ok(
        "topics",
        &[
            "--bootstrap-server",
            &bs,
            "--create",
            "--topic",
            "orders",
            "--partitions",
            "3",
            "--replication-factor",
            "1",
            "--config",
            "retention.ms=3600000",
        ],
    );
    assert!(out.contains("Created topic orders."), "{out}");
    // Creating it again fails with TopicExistsException.
    let again = kafka_tool(
        "topics",
        &[
            "--bootstrap-server",
            &bs,
            "--create",
            "--topic",
            "orders",
            "--partitions",
            "3",
        ],
        None,
        Duration::from_secs(60),
    );
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already exists")
            || String::from_utf8_lossy(&again.stdout).contains("already exists")
    );

    kafka_ok(
        "topics",
        &["--bootstrap-server", &bs, "--create", "--topic", "payments"],
    );
    let list = kafka_ok("topics", &["--bootstrap-server", &bs, "--list"]);
    let names: Vec<&str> = list.lines().collect();
    assert_eq!(names, vec!["orders", "payments"], "{list}");

    let d = describe(cli, &node, "orders");
    assert!(d.contains("PartitionCount: 3"), "{d}");
    assert!(d.contains("ReplicationFactor: 1"), "{d}");
    assert!(d.contains("retention.ms=3600000"), "{d}");
    for p in 0..3 {
        assert!(
            d.contains(&format!("Partition: {p}\tLeader: 1\tReplicas: 1\tIsr: 1")),
            "{d}"
        );
    }

    kafka_ok(
        "topics",
        &[
            "--bootstrap-server",
            &bs,
            "--alter",
            "--topic",
            "orders",
            "--partitions",
            "5",
        ],
    );
    assert!(describe(cli, &node, "orders").contains("PartitionCount: 5"));
    // Shrinking is refused.
    let shrink = kafka_tool(
        "topics",
        &[
            "--bootstrap-server",
            &bs,
            "--alter",
            "--topic",
            "orders",
            "--partitions",
            "2",
        ],
        None,
        Duration::from_secs(60),
    );
    assert!(!shrink.status.success());

    kafka_ok(
        "topics",
        &["--bootstrap-server", &bs, "--delete", "--topic", "payments"],
    );
    let list = kafka_ok("topics", &["--bootstrap-server", &bs, "--list"]);
    assert_eq!(list.trim(), "orders");
    assert!(
        !node.data_dir().join("payments-0").exists(),
        "deleted topic's log directory is removed"
    );
}

#[test]
fn console_producer_and_consumer_round_trip_10000_lines() {
    let node = Node::start(&[]);
    let bs = node.bootstrap();
    kafka_ok(
        "topics",
        &[
            "--bootstrap-server",
            &bs,
            "--create",
            "--topic",
            "lines",
            "--partitions",
            "1",
        ],
    );
    let lines: Vec<String> = (0..10_000)
        .map(|i| format!("line-{i:05}-{}", "x".repeat(i % 50)))
        .collect();
    let input = lines.join("\n") + "\n";
    // Defaults: the 4.x console producer is idempotent with acks=all.
    let out = kafka_tool(
        "console-producer",
        &["--bootstrap-server", &bs, "--topic", "lines"],
        Some(input.as_bytes()),
        Duration::from_secs(120),
    );
    assert!(
        out.status.success(),
        "producer failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let consumed = kafka_ok(
        "console-consumer",
        &[
            "--bootstrap-server",
            &bs,
            "--topic",
            "lines",
            "--partition",
            "0",
            "--offset",
            "earliest",
            "--max-messages",
            "10000",
            "--timeout-ms",
            "30000",
        ],
    );
    let got: Vec<&str> = consumed.lines().collect();
    assert_eq!(got.len(), 10_000, "consumed {} lines", got.len());
    for (i, (a, b)) in got.iter().zip(lines.iter()).enumerate() {
        assert_eq!(a, b, "line {i} differs");
    }

    let offsets = kafka_ok(
        "get-offsets",
        &["--bootstrap-server", &bs, "--topic", "lines"],
    );
    assert_eq!(offsets.trim(), "lines:0:10000");
    let earliest = kafka_ok(
        "get-offsets",
        &[
            "--bootstrap-server",
            &bs,
            "--topic",
            "lines",
            "--time",
            "earliest",
        ],
    );
    assert_eq!(earliest.trim(), "lines:0:0");
    let max_ts = kafka_ok(
        "get-offsets",
        &[
            "--bootstrap-server",
            &bs,
            "--topic",
            "lines",
            "--time",
            "max-timestamp",
        ],
    );
    assert!(max_ts.trim().starts_with("lines:0:"), "{max_ts}");

    // DeleteRecords moves the log start offset; consumers then start there.
    let json = node.dir.join("delete.json");
    std::fs::write(
        &json,
        r#"{"version":1,"partitions":[{"topic":"lines","partition":0,"offset":4000}]}"#,
    )
    .unwrap();
    let del = kafka_ok(
        "delete-records",
        &[
            "--bootstrap-server",
            &bs,
            "--offset-json-file",
            json.to_str().unwrap(),
        ],
    );
    assert!(del.contains("low_watermark: 4000"), "{del}");
    let earliest = kafka_ok(
        "get-offsets",
        &[
            "--bootstrap-server",
            &bs,
            "--topic",
            "lines",
            "--time",
            "earliest",
        ],
    );
    assert_eq!(earliest.trim(), "lines:0:4000");
    let consumed = kafka_ok(
        "console-consumer",
        &[
            "--bootstrap-server",
            &bs,
            "--topic",
            "lines",
            "--partition",
            "0",
            "--offset",
            "earliest",
            "--max-messages",
            "1",
            "--timeout-ms",
            "30000",
        ],
    );
    assert_eq!(consumed.trim(), lines[4000]);
}

#[test]
fn configs_alter_and_describe_topic_retention() {
    configs_alter_and_describe(CURRENT_CLI);
}

#[test]
fn configs_alter_and_describe_topic_retention_older_cli() {
    configs_alter_and_describe(OLDER_CLI);
}

fn configs_alter_and_describe(cli: &str) {
    let kafka_ok = |name: &str, args: &[&str]| kafka_ok_at(cli, name, args);
    let kafka_tool = |name: &str, args: &[&str], stdin: Option<&[u8]>, timeout: Duration| {
        kafka_tool_at(cli, name, args, stdin, timeout)
    };
    let node = Node::start(&[]);
    let bs = node.bootstrap();
    kafka_ok(
        "topics",
        &["--bootstrap-server", &bs, "--create", "--topic", "cfg"],
    );
    let before = kafka_ok(
        "configs",
        &[
            "--bootstrap-server",
            &bs,
            "--entity-type",
            "topics",
            "--entity-name",
            "cfg",
            "--describe",
            "--all",
        ],
    );
    assert!(before.contains("retention.ms=604800000"), "{before}");
    kafka_ok(
        "configs",
        &[
            "--bootstrap-server",
            &bs,
            "--entity-type",
            "topics",
            "--entity-name",
            "cfg",
            "--alter",
            "--add-config",
            "retention.ms=86400000",
        ],
    );
    let after = kafka_ok(
        "configs",
        &[
            "--bootstrap-server",
            &bs,
            "--entity-type",
            "topics",
            "--entity-name",
            "cfg",
            "--describe",
        ],
    );
    assert!(after.contains("retention.ms=86400000"), "{after}");
    // Invalid values are refused with InvalidConfigException.
    let bad = kafka_tool(
        "configs",
        &[
            "--bootstrap-server",
            &bs,
            "--entity-type",
            "topics",
            "--entity-name",
            "cfg",
            "--alter",
            "--add-config",
            "retention.ms=soon",
        ],
        None,
        Duration::from_secs(60),
    );
    assert!(!bad.status.success());
    kafka_ok(
        "configs",
        &[
            "--bootstrap-server",
            &bs,
            "--entity-type",
            "topics",
            "--entity-name",
            "cfg",
            "--alter",
            "--delete-config",
            "retention.ms",
        ],
    );
    let reset = kafka_ok(
        "configs",
        &[
            "--bootstrap-server",
            &bs,
            "--entity-type",
            "topics",
            "--entity-name",
            "cfg",
            "--describe",
            "--all",
        ],
    );
    assert!(reset.contains("retention.ms=604800000"), "{reset}");
}

#[test]
fn topics_and_configs_survive_restart() {
    let mut node = Node::start(&[]);
    let bs = node.bootstrap();
    kafka_ok(
        "topics",
        &[
            "--bootstrap-server",
            &bs,
            "--create",
            "--topic",
            "durable",
            "--partitions",
            "2",
            "--config",
            "segment.bytes=2000000",
        ],
    );
    kafka_tool(
        "console-producer",
        &["--bootstrap-server", &bs, "--topic", "durable"],
        Some(b"a\nb\nc\n"),
        Duration::from_secs(60),
    );
    node.stop();
    node.restart();
    let d = describe(CURRENT_CLI, &node, "durable");
    assert!(
        d.contains("PartitionCount: 2") && d.contains("segment.bytes=2000000"),
        "{d}"
    );
    let offsets = kafka_ok(
        "get-offsets",
        &["--bootstrap-server", &bs, "--topic", "durable"],
    );
    let total: i64 = offsets
        .lines()
        .map(|l| l.rsplit(':').next().unwrap().parse::<i64>().unwrap())
        .sum();
    assert_eq!(total, 3, "{offsets}");
}

#[test]
fn producer_perf_test_one_million_records() {
    let node = Node::start(&[]);
    let bs = node.bootstrap();
    kafka_ok(
        "topics",
        &[
            "--bootstrap-server",
            &bs,
            "--create",
            "--topic",
            "perf",
            "--partitions",
            "2",
        ],
    );
    let out = kafka_tool(
        "producer-perf-test",
        &[
            "--topic",
            "perf",
            "--num-records",
            "1000000",
            "--record-size",
            "100",
            "--throughput",
            "-1",
            "--producer-props",
            &format!("bootstrap.servers={bs}"),
        ],
        None,
        Duration::from_secs(300),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "perf test failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("1000000 records sent"), "{stdout}");
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("Exception"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let offsets = kafka_ok(
        "get-offsets",
        &["--bootstrap-server", &bs, "--topic", "perf"],
    );
    let total: i64 = offsets
        .lines()
        .map(|l| l.rsplit(':').next().unwrap().parse::<i64>().unwrap())
        .sum();
    assert_eq!(total, 1_000_000, "{offsets}");
}

#[test]
fn console_consumer_group_reads_then_resumes_after_committed_offsets() {
    let node = Node::start(&[("group.initial.rebalance.delay.ms", "0")]);
    let bs = node.bootstrap();
    kafka_ok(
        "topics",
        &[
            "--bootstrap-server",
            &bs,
            "--create",
            "--topic",
            "grouped",
            "--partitions",
            "2",
        ],
    );
    let first: Vec<String> = (0..100).map(|i| format!("first-{i}")).collect();
    let out = kafka_tool(
        "console-producer",
        &["--bootstrap-server", &bs, "--topic", "grouped"],
        Some((first.join("\n") + "\n").as_bytes()),
        Duration::from_secs(60),
    );
    assert!(out.status.success());
    let consume = |n: &str| {
        kafka_ok(
            "console-consumer",
            &[
                "--bootstrap-server",
                &bs,
                "--topic",
                "grouped",
                "--group",
                "billing",
                "--from-beginning",
                "--max-messages",
                n,
                "--timeout-ms",
                "30000",
            ],
        )
    };
    let mut got: Vec<String> = consume("100").lines().map(String::from).collect();
    got.sort();
    let mut want = first.clone();
    want.sort();
    assert_eq!(got, want);

    // A second run of the same group starts after the committed offsets.
    let second: Vec<String> = (0..50).map(|i| format!("second-{i}")).collect();
    kafka_tool(
        "console-producer",
        &["--bootstrap-server", &bs, "--topic", "grouped"],
        Some((second.join("\n") + "\n").as_bytes()),
        Duration::from_secs(60),
    );
    let mut got: Vec<String> = consume("50").lines().map(String::from).collect();
    got.sort();
    let mut want = second.clone();
    want.sort();
    assert_eq!(got, want, "the group resumes where it committed");

    let list = kafka_ok("consumer-groups", &["--bootstrap-server", &bs, "--list"]);
    assert_eq!(list.trim(), "billing");
    let describe = kafka_ok(
        "consumer-groups",
        &[
            "--bootstrap-server",
            &bs,
            "--describe",
            "--group",
            "billing",
        ],
    );
    let rows: Vec<Vec<&str>> = describe
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|c| c.len() >= 6 && c[0] == "billing")
        .collect();
    assert_eq!(rows.len(), 2, "{describe}");
    let committed: i64 = rows.iter().map(|c| c[3].parse::<i64>().unwrap()).sum();
    assert_eq!(committed, 150, "{describe}");
    assert!(rows.iter().all(|c| c[5] == "0"), "no lag: {describe}");
}
