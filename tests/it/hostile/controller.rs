//! Requests whose metadata records the controller must bound: each gets Kafka's error code,
//! from the stock tools where a tool can send it and from raw frames otherwise, and the
//! cluster keeps serving. See `hostile/mod.rs`.

use std::time::{Duration, Instant};

use kafka_protocol::messages::alter_partition_request::{
    BrokerState, PartitionData as AlterPartitionData, TopicData as AlterPartitionTopic,
};
use kafka_protocol::messages::create_partitions_request::{
    CreatePartitionsAssignment, CreatePartitionsTopic,
};
use kafka_protocol::messages::create_topics_request::{CreatableReplicaAssignment, CreatableTopic};
use kafka_protocol::messages::elect_leaders_request::TopicPartitions;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::assert_cluster_serving;
use crate::client::Client;
use crate::harness::{kafka_ok, kafka_tool, Cluster};

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

/// Runs a tool expected to fail and returns its stdout and stderr together.
fn tool_fails(tool: &str, args: &[&str]) -> String {
    let out = kafka_tool(tool, args, None, Duration::from_secs(120));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !out.status.success(),
        "kafka {tool} {args:?} succeeded:\n{text}"
    );
    text
}

fn topic(n: &str, partitions: i32, rf: i16) -> CreatableTopic {
    CreatableTopic::default()
        .with_name(name(n))
        .with_num_partitions(partitions)
        .with_replication_factor(rf)
}

fn assigned(n: &str, assignments: &[&[i32]]) -> CreatableTopic {
    topic(n, -1, -1).with_assignments(
        assignments
            .iter()
            .enumerate()
            .map(|(i, replicas)| {
                CreatableReplicaAssignment::default()
                    .with_partition_index(i as i32)
                    .with_broker_ids(replicas.iter().map(|b| BrokerId(*b)).collect())
            })
            .collect(),
    )
}

fn create(c: &mut Client, topics: Vec<CreatableTopic>) -> Vec<(i16, String)> {
    let resp = c
        .request(
            &CreateTopicsRequest::default()
                .with_topics(topics)
                .with_timeout_ms(30_000),
            7,
        )
        .unwrap();
    resp.topics
        .iter()
        .map(|t| {
            (
                t.error_code,
                t.error_message
                    .as_ref()
                    .map(|m| m.to_string())
                    .unwrap_or_default(),
            )
        })
        .collect()
}

fn grow(c: &mut Client, topic: &str, count: i32, assignments: Option<Vec<Vec<i32>>>) -> i16 {
    let resp = c
        .request(
            &CreatePartitionsRequest::default()
                .with_topics(vec![CreatePartitionsTopic::default()
                    .with_name(name(topic))
                    .with_count(count)
                    .with_assignments(assignments.map(|a| {
                        a.into_iter()
                            .map(|r| {
                                CreatePartitionsAssignment::default()
                                    .with_broker_ids(r.into_iter().map(BrokerId).collect())
                            })
                            .collect()
                    }))])
                .with_timeout_ms(30_000),
            3,
        )
        .unwrap();
    resp.results[0].error_code
}

fn alter_configs(c: &mut Client, topic: &str, configs: Vec<(String, String)>) -> i16 {
    try_alter_configs(c, topic, configs).unwrap()
}

/// IncrementalAlterConfigs v1; Err when the node closed the connection instead of answering.
fn try_alter_configs(
    c: &mut Client,
    topic: &str,
    configs: Vec<(String, String)>,
) -> std::io::Result<i16> {
    let resp = c.request(
        &IncrementalAlterConfigsRequest::default().with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(StrBytes::from_string(topic.into()))
                .with_configs(
                    configs
                        .into_iter()
                        .map(|(k, v)| {
                            AlterableConfig::default()
                                .with_name(StrBytes::from_string(k))
                                .with_config_operation(0)
                                .with_value(Some(StrBytes::from_string(v)))
                        })
                        .collect(),
                ),
        ]),
        1,
    )?;
    Ok(resp.responses[0].error_code)
}

/// The broker epoch the controller gave `broker` last, from the controllers' logs.
fn broker_epoch(cluster: &Cluster, broker: i32) -> i64 {
    let needle = format!("broker registered broker={broker} broker_epoch=");
    cluster
        .nodes
        .iter()
        .flat_map(|n| {
            n.log()
                .lines()
                .filter_map(|l| {
                    let at = l.find(&needle)? + needle.len();
                    l[at..]
                        .split(|c: char| !c.is_ascii_digit())
                        .next()?
                        .parse()
                        .ok()
                })
                .collect::<Vec<i64>>()
        })
        .max()
        .expect("a registration in the logs")
}

/// The stock tools and raw frames against one 3-node cluster: requests sized to make the
/// controller allocate without bound, assignments naming brokers that do not exist, config
/// changes with too many or too long entries, absurd ISR changes. Every one gets Kafka's
/// error and nothing is written.
#[test]
fn oversized_and_invalid_metadata_requests_get_kafkas_errors() {
    let mut cluster = Cluster::start(3, &[]);
    let bs = cluster.nodes[0].bootstrap();
    let policy = ResponseError::PolicyViolation.code();

    // The report: 2^31 - 1 partitions, from the stock tool.
    let started = Instant::now();
    let out = tool_fails(
        "topics",
        &[
            "--bootstrap-server",
            &bs,
            "--create",
            "--topic",
            "t",
            "--partitions",
            "2147483647",
            "--replication-factor",
            "3",
        ],
    );
    assert!(
        out.contains("Excessively large number of partitions per request"),
        "{out}"
    );
    eprintln!(
        "create with 2^31-1 partitions refused in {:?}",
        started.elapsed()
    );

    kafka_ok(
        "topics",
        &[
            "--bootstrap-server",
            &bs,
            "--create",
            "--topic",
            "t",
            "--partitions",
            "1",
            "--replication-factor",
            "3",
        ],
    );
    let out = tool_fails(
        "topics",
        &[
            "--bootstrap-server",
            &bs,
            "--alter",
            "--topic",
            "t",
            "--partitions",
            "2147483647",
        ],
    );
    assert!(out.contains("PolicyViolationException"), "{out}");

    // Manual assignments naming an unregistered broker.
    let out = tool_fails(
        "topics",
        &[
            "--bootstrap-server",
            &bs,
            "--create",
            "--topic",
            "m",
            "--replica-assignment",
            "1:2:99,2:3:1",
        ],
    );
    assert!(out.contains("InvalidReplicaAssignmentException"), "{out}");
    let out = tool_fails(
        "topics",
        &[
            "--bootstrap-server",
            &bs,
            "--alter",
            "--topic",
            "t",
            "--partitions",
            "2",
            "--replica-assignment",
            "1:2:3,1:2:42",
        ],
    );
    assert!(out.contains("InvalidReplicaAssignmentException"), "{out}");

    // Config changes with too many or too long entries.
    let many: Vec<String> = (0..10_001).map(|i| format!("k{i}=1")).collect();
    let many = many.join(",");
    let out = tool_fails(
        "configs",
        &[
            "--bootstrap-server",
            &bs,
            "--alter",
            "--entity-type",
            "topics",
            "--entity-name",
            "t",
            "--add-config",
            &many,
        ],
    );
    assert!(
        out.contains("PolicyViolationException"),
        "{}",
        &out[..out.len().min(4000)]
    );
    // A value longer than the limit cannot come from the stock tool: the Java client refuses
    // to serialise a string over 32,767 bytes. The raw frame below sends one.

    // Elect-all over the cluster: only elections that are needed are made (here none).
    let out = kafka_tool(
        "leader-election",
        &[
            "--bootstrap-server",
            &bs,
            "--election-type",
            "preferred",
            "--all-topic-partitions",
        ],
        None,
        Duration::from_secs(120),
    );
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(!text.contains("Exception"), "{text}");

    // Raw frames for what the tools check themselves or cannot send.
    let mut c = Client::connect(&bs);
    // The total over a request counts, before any topic is looked at; nothing is created.
    let both = create(&mut c, vec![topic("a", 5_000, 3), topic("b", 5_001, 3)]);
    assert!(both.iter().all(|(code, _)| *code == policy), "{both:?}");
    let both = create(
        &mut c,
        vec![topic("a", i32::MAX, -1), topic("b", i32::MAX, -1)],
    );
    assert!(both.iter().all(|(code, _)| *code == policy), "{both:?}");
    let assignments: Vec<&[i32]> = vec![&[1, 2]; 10_001];
    let many = create(&mut c, vec![assigned("a", &assignments)]);
    assert_eq!(many[0].0, policy, "{many:?}");
    for (t, expected) in [
        (topic("a", 0, 3), ResponseError::InvalidPartitions),
        (topic("a", -5, 3), ResponseError::InvalidPartitions),
        (topic("a", 1, 4), ResponseError::InvalidReplicationFactor),
        (
            topic("a", 1, i16::MAX),
            ResponseError::InvalidReplicationFactor,
        ),
        (topic("a", 1, -2), ResponseError::InvalidReplicationFactor),
        (
            assigned("a", &[&[1, 1]]),
            ResponseError::InvalidReplicaAssignment,
        ),
        (
            assigned("a", &[&[1, 2], &[3]]),
            ResponseError::InvalidReplicaAssignment,
        ),
        (
            assigned("a", &[&[]]),
            ResponseError::InvalidReplicaAssignment,
        ),
        (
            assigned("a", &[&[1, 2, 3, 1, 2, 3, 1, 2, 3]]),
            ResponseError::InvalidReplicaAssignment,
        ),
        (
            assigned("a", &[&[-1]]),
            ResponseError::InvalidReplicaAssignment,
        ),
        (
            topic("a", -1, -1).with_assignments(vec![CreatableReplicaAssignment::default()
                .with_partition_index(i32::MAX)
                .with_broker_ids(vec![BrokerId(1)])]),
            ResponseError::InvalidReplicaAssignment,
        ),
        (
            assigned("a", &[&[1]]).with_num_partitions(3),
            ResponseError::InvalidRequest,
        ),
    ] {
        let shown = format!("{:?}", t.name);
        let got = create(&mut c, vec![t]);
        assert_eq!(got[0].0, expected.code(), "{shown}: {got:?}");
    }
    for (count, assignments, expected) in [
        (i32::MAX, None, ResponseError::PolicyViolation),
        (10_002, None, ResponseError::PolicyViolation),
        (i32::MIN, None, ResponseError::InvalidPartitions),
        (1, None, ResponseError::InvalidPartitions),
        (
            3,
            Some(vec![vec![1, 2, 3]]),
            ResponseError::InvalidReplicaAssignment,
        ),
        (
            2,
            Some(vec![vec![1, 2, 2]]),
            ResponseError::InvalidReplicaAssignment,
        ),
        (
            2,
            Some(vec![vec![1, 2]]),
            ResponseError::InvalidReplicaAssignment,
        ),
        (
            2,
            Some(vec![vec![1, 2, 3]; 3]),
            ResponseError::InvalidReplicaAssignment,
        ),
    ] {
        assert_eq!(
            grow(&mut c, "t", count, assignments.clone()),
            expected.code(),
            "{count} {assignments:?}"
        );
    }
    let many: Vec<(String, String)> = (0..10_001).map(|i| (format!("k{i}"), "1".into())).collect();
    assert_eq!(alter_configs(&mut c, "t", many), policy);
    // A 4 MiB value cannot be a compact string of a valid request (Kafka's readers refuse
    // strings over 32,767 bytes): only this connection closes.
    let long = vec![("retention.ms".to_string(), "0".repeat(4 << 20))];
    assert!(try_alter_configs(&mut c, "t", long).is_err());
    let mut c = Client::connect(&bs);

    // ElectLeaders naming many partitions (duplicates among them) answers each distinct one.
    let resp = c
        .request(
            &ElectLeadersRequest::default()
                .with_election_type(0)
                .with_topic_partitions(Some(vec![
                    TopicPartitions::default()
                        .with_topic(name("t"))
                        .with_partitions(vec![0; 50_000]),
                    TopicPartitions::default()
                        .with_topic(name("nope"))
                        .with_partitions((0..20_000).collect()),
                ]))
                .with_timeout_ms(30_000),
            2,
        )
        .unwrap();
    let answered: usize = resp
        .replica_election_results
        .iter()
        .map(|t| t.partition_result.len())
        .sum();
    assert_eq!(answered, 20_001);

    // AlterPartition from the partition's leader with an ISR far longer than its replicas.
    let meta = c
        .request(&MetadataRequest::default().with_topics(None), 12)
        .unwrap();
    let t = meta
        .topics
        .iter()
        .find(|t| t.name.as_ref().map(|n| n.as_str()) == Some("t"))
        .unwrap();
    let leader = t.partitions[0].leader_id.0;
    let controller = meta.controller_id.0;
    let epoch = broker_epoch(&cluster, leader);
    let controller_addr = cluster.node(controller).bootstrap_controller();
    let mut cc = Client::connect(&controller_addr);
    let isr_change = |isr: Vec<i32>| {
        AlterPartitionRequest::default()
            .with_broker_id(BrokerId(leader))
            .with_broker_epoch(epoch)
            .with_topics(vec![AlterPartitionTopic::default()
                .with_topic_id(t.topic_id)
                .with_partitions(vec![AlterPartitionData::default()
                    .with_partition_index(0)
                    .with_leader_epoch(t.partitions[0].leader_epoch)
                    .with_partition_epoch(0)
                    .with_new_isr_with_epochs(
                        isr.into_iter()
                            .map(|b| BrokerState::default().with_broker_id(BrokerId(b)))
                            .collect(),
                    )])])
    };
    let resp = cc.request(&isr_change(vec![leader; 100_000]), 3).unwrap();
    assert_eq!(resp.error_code, 0);
    assert_eq!(
        resp.topics[0].partitions[0].error_code,
        ResponseError::InvalidRequest.code()
    );
    let resp = cc.request(&isr_change(vec![leader, 77]), 3).unwrap();
    assert_eq!(
        resp.topics[0].partitions[0].error_code,
        ResponseError::InvalidRequest.code()
    );

    // Nothing of it was written: the topics are as before.
    let meta = c
        .request(&MetadataRequest::default().with_topics(None), 12)
        .unwrap();
    let names: Vec<String> = meta
        .topics
        .iter()
        .filter_map(|t| t.name.as_ref().map(|n| n.to_string()))
        .filter(|n| !n.starts_with("__"))
        .collect();
    assert_eq!(names, vec!["t".to_string()]);
    let t = meta
        .topics
        .iter()
        .find(|t| t.name.as_ref().map(|n| n.as_str()) == Some("t"))
        .unwrap();
    assert_eq!(t.partitions.len(), 1);
    assert_eq!(t.partitions[0].isr_nodes.len(), 3);
    assert_cluster_serving(&mut cluster);
}
