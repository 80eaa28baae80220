//! Followers whose high watermark is past an unclean leader's log end: after the election
//! the old replicas hold (and had committed) more than the new leader's whole log. They must
//! cut their logs to the new leader's, by its epochs, never to their own high watermark,
//! and end byte-identical with it, without crashing or fetching in a loop.

use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::create_topics_request::{
    CreatableReplicaAssignment, CreatableTopic, CreatableTopicConfig,
};
use kafka_protocol::messages::{BrokerId, CreateTopicsRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::Compression;

use crate::client::Client;
use crate::cluster::{leaders, wait_for};
use crate::harness::Cluster;

const TOPIC: &str = "unclean-oor";

fn segment_bytes(cluster: &Cluster, node: i32) -> Vec<u8> {
    let n = cluster.nodes.iter().find(|n| n.node_id == node).unwrap();
    std::fs::read(
        n.data_dir()
            .join(format!("{TOPIC}-0"))
            .join("00000000000000000000.log"),
    )
    .unwrap_or_default()
}

/// (leader, leader epoch, sorted ISR) of partition 0 as `node` sees it.
fn partition_state(cluster: &mut Cluster, node: i32) -> Option<(i32, i32, Vec<i32>)> {
    let (leader, epoch, mut isr) = leaders(cluster.node(node), TOPIC).get(&0).cloned()?;
    isr.sort();
    Some((leader, epoch, isr))
}

fn produce(c: &mut Client, value: String, acks: i16) -> Option<i64> {
    let (err, base) = c
        .produce(TOPIC, 0, &[Bytes::from(value)], acks, Compression::None)
        .ok()?;
    (err == 0).then_some(base)
}

#[test]
fn followers_past_an_unclean_leaders_log_end_truncate_to_it_and_converge() {
    // Five voters, so that the metadata quorum survives three of them (the topic's replicas
    // 1, 2 and 3) being stopped at various times; 4 and 5 only vote and watch.
    let mut cluster = Cluster::start(
        5,
        &[
            ("replica.lag.time.max.ms", "1500"),
            ("auto.leader.rebalance.enable", "false"),
        ],
    );
    let (a, b, c) = (1, 2, 3);
    let watcher = 4;
    let mut admin = Client::connect(&cluster.node(watcher).bootstrap());
    let req = CreateTopicsRequest::default()
        .with_timeout_ms(5_000)
        .with_topics(vec![CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
            .with_num_partitions(-1)
            .with_replication_factor(-1)
            .with_assignments(vec![CreatableReplicaAssignment::default()
                .with_partition_index(0)
                .with_broker_ids(vec![BrokerId(a), BrokerId(b), BrokerId(c)])])
            .with_configs(vec![CreatableTopicConfig::default()
                .with_name(StrBytes::from_static_str("unclean.leader.election.enable"))
                .with_value(Some(StrBytes::from_static_str("true")))])]);
    assert_eq!(admin.request(&req, 7).unwrap().topics[0].error_code, 0);
    let (_, first_epoch, _) = wait_for(
        "A to lead with all in sync",
        Duration::from_secs(15),
        || partition_state(&mut cluster, watcher).filter(|(l, _, isr)| *l == a && isr.len() == 3),
    );

    // Ten records every replica holds.
    let mut to_a = Client::connect(&cluster.node(a).bootstrap());
    wait_for("A to take writes", Duration::from_secs(10), || {
        produce(&mut to_a, "all-0".into(), -1)
    });
    for i in 1..10 {
        produce(&mut to_a, format!("all-{i}"), -1).expect("acks=all write");
    }
    // B stops and leaves the ISR; ten more records are committed by A and C alone.
    cluster.node(b).pause(true);
    wait_for(
        "the ISR to shrink to A and C",
        Duration::from_secs(20),
        || partition_state(&mut cluster, watcher).filter(|(_, _, isr)| *isr == vec![a, c]),
    );
    for i in 0..10 {
        let base = wait_for("an acks=all write", Duration::from_secs(10), || {
            produce(&mut to_a, format!("ac-{i}"), -1)
        });
        assert_eq!(base, 10 + i);
    }
    // C's next fetch after the last write carries the high watermark 20 to it.
    std::thread::sleep(Duration::from_secs(1));

    // A and C stop; B, holding only the first ten records, comes back and is the only live
    // replica: the controller elects it uncleanly once A and C are fenced.
    cluster.node(a).pause(true);
    cluster.node(c).pause(true);
    cluster.node(b).pause(false);
    let (_, unclean_epoch, _) =
        wait_for("B to be elected uncleanly", Duration::from_secs(30), || {
            partition_state(&mut cluster, watcher).filter(|(l, _, _)| *l == b)
        });
    assert!(unclean_epoch > first_epoch);
    let mut to_b = Client::connect(&cluster.node(b).bootstrap());
    let base = wait_for("B to take writes", Duration::from_secs(15), || {
        produce(&mut to_b, "b-0".into(), 1)
    });
    assert_eq!(base, 10, "B's log continues after the ten records it held");
    for i in 1..3 {
        assert_eq!(produce(&mut to_b, format!("b-{i}"), 1), Some(10 + i));
    }
    let (err, b_log_end) = to_b.list_offset(TOPIC, 0, -1);
    assert_eq!((err, b_log_end), (0, 13));

    // A and C return with logs (and high watermarks) at 20, above B's log end of 13: they
    // must drop offsets 10..19 and copy B's 10..12.
    cluster.node(a).pause(false);
    cluster.node(c).pause(false);
    wait_for(
        "A and C to converge on B's log byte for byte",
        Duration::from_secs(45),
        || {
            let reference = segment_bytes(&cluster, b);
            (segment_bytes(&cluster, a) == reference && segment_bytes(&cluster, c) == reference)
                .then_some(())
        },
    );
    wait_for("all three back in the ISR", Duration::from_secs(30), || {
        partition_state(&mut cluster, watcher)
            .filter(|(l, _, isr)| *l == b && *isr == vec![a, b, c])
    });
    let values: Vec<String> = to_b
        .read_all(TOPIC, 0, 0)
        .iter()
        .map(|(_, v)| String::from_utf8_lossy(v).to_string())
        .collect();
    let expected: Vec<String> = (0..10)
        .map(|i| format!("all-{i}"))
        .chain((0..3).map(|i| format!("b-{i}")))
        .collect();
    assert_eq!(values, expected, "the unclean leader's log is the truth");

    // The partition keeps working: an acks=all write reaches all three replicas.
    assert_eq!(produce(&mut to_b, "after".into(), -1), Some(13));
    wait_for("the new write everywhere", Duration::from_secs(20), || {
        let reference = segment_bytes(&cluster, b);
        (segment_bytes(&cluster, a) == reference && segment_bytes(&cluster, c) == reference)
            .then_some(())
    });
    // No crash, no fetch loop: each old replica truncated once and is quiet again.
    std::thread::sleep(Duration::from_secs(2));
    for id in [a, c] {
        let node = cluster.node(id);
        assert!(node.is_running(), "node {id} died");
        let log = node.log();
        let truncations = log.matches("truncating diverged log").count();
        let out_of_range = log.matches("follower fetch offset out of range").count();
        println!("node {id}: {truncations} truncation(s), {out_of_range} out-of-range fetch(es)");
        assert!(truncations >= 1, "node {id} truncated its log:\n{log}");
        assert!(
            truncations + out_of_range <= 4,
            "node {id} keeps truncating or hitting out-of-range fetches:\n{log}"
        );
    }
}
