//! Idempotent producers across kill -9 and restart: the producer state a leader rebuilds
//! from its producer snapshots and log deduplicates every retry within the window, also for
//! producers whose batches lie far before the last segments, and a follower that becomes
//! leader deduplicates the same way.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use indexmap::IndexMap;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{InitProducerIdRequest, ProduceRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use crate::client::Client;
use crate::cluster::{create_topic, leaders, wait_for};
use crate::harness::{kafka_ok, kafka_tool, Cluster, Node};

/// OUT_OF_ORDER_SEQUENCE_NUMBER.
const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
/// DUPLICATE_SEQUENCE_NUMBER.
const DUPLICATE_SEQUENCE_NUMBER: i16 = 46;

/// One acknowledged batch: its producer, first sequence, values and base offset.
#[derive(Clone, Debug)]
struct Sent {
    producer_id: i64,
    epoch: i16,
    base_sequence: i32,
    values: Vec<Bytes>,
    base_offset: i64,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// InitProducerId without a transactional id: a fresh (producer id, epoch).
fn init_producer_id(c: &mut Client) -> (i64, i16) {
    let req = InitProducerIdRequest::default()
        .with_transactional_id(None)
        .with_transaction_timeout_ms(60_000)
        .with_producer_id(kafka_protocol::messages::ProducerId(-1))
        .with_producer_epoch(-1);
    let resp = c.request(&req, 4).unwrap();
    assert_eq!(resp.error_code, 0, "InitProducerId");
    (resp.producer_id.0, resp.producer_epoch)
}

/// A v2 batch of `values` from an idempotent producer, sequences from `base_sequence`.
fn idempotent_batch(producer_id: i64, epoch: i16, base_sequence: i32, values: &[Bytes]) -> Bytes {
    let ts = now_ms();
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, v)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id,
            producer_epoch: epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: base_sequence + i as i32,
            timestamp: ts,
            key: None,
            value: Some(v.clone()),
            headers: IndexMap::new(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .unwrap();
    buf.freeze()
}

/// Produce v9 of one batch with acks=all; returns (error code, base offset).
fn produce(c: &mut Client, topic: &str, batch: Bytes) -> std::io::Result<(i16, i64)> {
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.into())))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(batch))])]);
    let resp = c.request(&req, 9)?;
    let p = &resp.responses[0].partition_responses[0];
    Ok((p.error_code, p.base_offset))
}

fn send(c: &mut Client, topic: &str, producer: (i64, i16), seq: i32, values: Vec<Bytes>) -> Sent {
    let batch = idempotent_batch(producer.0, producer.1, seq, &values);
    let (err, base_offset) = produce(c, topic, batch).unwrap();
    assert_eq!(err, 0, "produce of producer {} seq {seq}", producer.0);
    Sent {
        producer_id: producer.0,
        epoch: producer.1,
        base_sequence: seq,
        values,
        base_offset,
    }
}

/// ListOffsets(latest), once the leader exposes it (a new leader answers
/// OFFSET_NOT_AVAILABLE until its HW reaches its epoch's start).
fn latest_offset(c: &mut Client, topic: &str) -> i64 {
    wait_for("ListOffsets(latest)", Duration::from_secs(20), || {
        let (err, offset) = c.list_offset(topic, 0, -1);
        (err == 0).then_some(offset)
    })
}

/// Resends the last five acknowledged batches of every producer: each must succeed with its
/// original offset (Kafka answers a duplicate with the first batch's offset and no error),
/// and the log must not grow. The sixth-last is outside the window: OUT_OF_ORDER.
fn resend_window(c: &mut Client, topic: &str, sent: &[Sent]) -> usize {
    let end_before = latest_offset(c, topic);
    let mut by_producer: BTreeMap<i64, Vec<&Sent>> = BTreeMap::new();
    for s in sent {
        by_producer.entry(s.producer_id).or_default().push(s);
    }
    let mut resent = 0;
    for batches in by_producer.values() {
        for s in batches.iter().rev().take(5) {
            let batch = idempotent_batch(s.producer_id, s.epoch, s.base_sequence, &s.values);
            let (err, base_offset) = produce(c, topic, batch).unwrap();
            assert_ne!(err, DUPLICATE_SEQUENCE_NUMBER);
            assert_eq!(
                (err, base_offset),
                (0, s.base_offset),
                "retry of producer {} seq {}",
                s.producer_id,
                s.base_sequence
            );
            resent += 1;
        }
        if let Some(s) = batches.iter().rev().nth(5) {
            let batch = idempotent_batch(s.producer_id, s.epoch, s.base_sequence, &s.values);
            let (err, _) = produce(c, topic, batch).unwrap();
            assert_eq!(
                err, OUT_OF_ORDER_SEQUENCE_NUMBER,
                "a batch older than the last five of producer {}",
                s.producer_id
            );
        }
    }
    let end_after = latest_offset(c, topic);
    assert_eq!(end_after, end_before, "no retry was appended");
    resent
}

/// Every acknowledged value is in the log exactly once, at its acknowledged offset.
fn assert_exactly_once(c: &mut Client, topic: &str, sent: &[Sent]) {
    let log = c.read_all(topic, 0, 0);
    let mut seen: HashMap<Bytes, i64> = HashMap::new();
    for (offset, value) in &log {
        if let Some(first) = seen.insert(value.clone(), *offset) {
            panic!("{value:?} appears twice, at {first} and {offset}");
        }
    }
    let mut acked = 0;
    for s in sent {
        for (i, v) in s.values.iter().enumerate() {
            assert_eq!(seen.get(v), Some(&(s.base_offset + i as i64)), "{v:?}");
            acked += 1;
        }
    }
    assert_eq!(
        log.len(),
        acked,
        "the log holds exactly the acknowledged records"
    );
}

/// Base offsets of the segment files of `topic`-0 in a node's data directory.
fn segment_bases(data_dir: &Path, topic: &str) -> Vec<i64> {
    let mut bases: Vec<i64> = std::fs::read_dir(data_dir.join(format!("{topic}-0")))
        .unwrap()
        .filter_map(|e| {
            let name = e.ok()?.file_name().to_string_lossy().to_string();
            name.strip_suffix(".log")?.parse().ok()
        })
        .collect();
    bases.sort_unstable();
    bases
}

fn leader_of(node: &Node, topic: &str) -> Option<i32> {
    leaders(node, topic)
        .get(&0)
        .map(|(l, _, _)| *l)
        .filter(|l| *l > 0)
}

/// RF 3, 16 KiB segments (the first leader of a new topic is its preferred replica): 30 producers send six batches each, then a busy producer rolls many
/// segments, so the early producers' batches lie before the last two segments. The leader is
/// killed with kill -9; the follower that takes over deduplicates every retry (follower
/// appends keep producer state); the killed node restarts, leads again after a preferred
/// election, and deduplicates every retry from its snapshots and log. The whole log then
/// holds each acknowledged record exactly once.
#[test]
fn retries_after_kill_and_restart_are_deduplicated_for_every_producer() {
    let mut cluster = Cluster::start(
        3,
        &[
            ("log.segment.bytes", "16384"),
            ("min.insync.replicas", "2"),
            ("auto.leader.rebalance.enable", "false"),
            ("replica.lag.time.max.ms", "2000"),
        ],
    );
    let topic = "idempotent";
    assert_eq!(create_topic(&cluster.nodes[0], topic, 1, 3), 0);
    let (leader, replicas) = wait_for("a leader with a full ISR", Duration::from_secs(20), || {
        leaders(&cluster.nodes[0], topic)
            .get(&0)
            .cloned()
            .filter(|(l, _, isr)| *l > 0 && isr.len() == 3)
            .map(|(l, _, isr)| (l, isr))
    });
    let mut c = Client::connect(&cluster.node(leader).bootstrap());
    wait_for("the leader to take writes", Duration::from_secs(10), || {
        let (err, _, _) = c.fetch(topic, 0, 0, 0).ok()?;
        (err == 0).then_some(())
    });

    let producers: Vec<(i64, i16)> = (0..30).map(|_| init_producer_id(&mut c)).collect();
    let mut sent = Vec::new();
    for round in 0..6 {
        for (p, producer) in producers.iter().enumerate() {
            let values = (0..3)
                .map(|i| Bytes::from(format!("p{p}-r{round}-{i}")))
                .collect();
            sent.push(send(&mut c, topic, *producer, round * 3, values));
        }
    }
    let busy = init_producer_id(&mut c);
    let padding = "x".repeat(400);
    for seq in 0..400 {
        let values = vec![Bytes::from(format!("busy-{seq}-{padding}"))];
        sent.push(send(&mut c, topic, busy, seq, values));
    }
    let bases = segment_bases(&cluster.node(leader).data_dir(), topic);
    assert!(bases.len() >= 8, "segments {bases:?}");
    let last_two = bases[bases.len() - 2];
    let early_end = sent
        .iter()
        .filter(|s| s.producer_id != busy.0)
        .map(|s| s.base_offset + s.values.len() as i64)
        .max()
        .unwrap();
    assert!(
        early_end <= last_two,
        "the early producers' batches end at {early_end}, before the last two segments from {last_two}"
    );
    let snapshots = std::fs::read_dir(cluster.node(leader).data_dir().join(format!("{topic}-0")))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".snapshot")
        })
        .count();
    assert!(
        snapshots >= bases.len() - 1,
        "{snapshots} snapshots for {bases:?}"
    );
    eprintln!(
        "{} batches acknowledged, {} segments, {snapshots} producer snapshots on the leader",
        sent.len(),
        bases.len()
    );

    // kill -9 the leader; a follower takes over and dedups from its own producer state.
    cluster.node(leader).kill();
    let observer = *replicas.iter().find(|r| **r != leader).unwrap();
    let interim = wait_for("a new leader", Duration::from_secs(30), || {
        leader_of(cluster.node(observer), topic).filter(|l| *l != leader)
    });
    let mut c = Client::connect(&cluster.node(interim).bootstrap());
    wait_for(
        "the new leader to take writes",
        Duration::from_secs(20),
        || {
            let (err, hw, _) = c.fetch(topic, 0, 0, 0).ok()?;
            (err == 0 && hw >= early_end).then_some(())
        },
    );
    let resent = resend_window(&mut c, topic, &sent);
    eprintln!("follower turned leader {interim}: {resent} retries deduplicated");

    // Restart the killed node; once back in the ISR it leads again (preferred election).
    cluster.node(leader).restart();
    cluster
        .node(leader)
        .wait_until_serving(3, Duration::from_secs(30));
    wait_for(
        "the restarted node to rejoin the ISR",
        Duration::from_secs(60),
        || {
            let (_, _, isr) = leaders(cluster.node(observer), topic).get(&0).cloned()?;
            isr.contains(&leader).then_some(())
        },
    );
    let out = kafka_ok(
        "leader-election",
        &[
            "--bootstrap-server",
            &cluster.node(observer).bootstrap(),
            "--election-type",
            "PREFERRED",
            "--all-topic-partitions",
        ],
    );
    assert!(out.contains("Successfully completed"), "{out}");
    wait_for(
        "the restarted node to lead",
        Duration::from_secs(20),
        || (leader_of(cluster.node(observer), topic) == Some(leader)).then_some(()),
    );
    let mut c = Client::connect(&cluster.node(leader).bootstrap());
    wait_for(
        "the restarted leader to take writes",
        Duration::from_secs(20),
        || {
            let (err, hw, _) = c.fetch(topic, 0, 0, 0).ok()?;
            (err == 0 && hw >= early_end).then_some(())
        },
    );
    let resent = resend_window(&mut c, topic, &sent);
    eprintln!("restarted leader {leader}: {resent} retries deduplicated");

    // New batches continue each producer's sequence on the restarted leader.
    for (p, producer) in producers.iter().enumerate() {
        let values = vec![Bytes::from(format!("p{p}-after"))];
        sent.push(send(&mut c, topic, *producer, 18, values));
    }
    assert_exactly_once(&mut c, topic, &sent);
}

/// The stock Java producer (kafka-verifiable-producer, enable.idempotence=true, acks=all) on
/// one node that is killed with kill -9 mid-stream and restarted: the producer's retries of
/// in-flight batches are deduplicated, so no value appears twice in the log.
#[test]
fn java_idempotent_producer_across_kill_and_restart_writes_each_value_once() {
    let mut node = Node::start(&[("log.segment.bytes", "65536")]);
    let topic = "verifiable";
    let mut c = Client::connect(&node.bootstrap());
    c.create_topic(topic, 1);
    let config = node.dir.join("producer.properties");
    std::fs::write(
        &config,
        "enable.idempotence=true\nacks=all\nretries=2147483647\nlinger.ms=5\nbatch.size=4096\nmax.in.flight.requests.per.connection=5\ndelivery.timeout.ms=120000\nrequest.timeout.ms=3000\nretry.backoff.ms=100\nreconnect.backoff.max.ms=500\n",
    )
    .unwrap();
    let bootstrap = node.bootstrap();
    let config_path = config.display().to_string();
    let producer = std::thread::spawn(move || {
        kafka_tool(
            "verifiable-producer",
            &[
                "--bootstrap-server",
                &bootstrap,
                "--topic",
                topic,
                "--max-messages",
                "40000",
                "--throughput",
                "4000",
                "--producer.config",
                &config_path,
            ],
            None,
            Duration::from_secs(240),
        )
    });
    // Kill the node while the producer is mid-stream, then bring it back.
    wait_for("the producer to get going", Duration::from_secs(60), || {
        let (err, end) = Client::try_connect(&node.bootstrap())
            .ok()?
            .list_offset(topic, 0, -1);
        (err == 0 && end >= 8_000).then_some(())
    });
    node.kill();
    std::thread::sleep(Duration::from_millis(500));
    node.restart();
    let out = producer.join().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "verifiable-producer failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let acked: Vec<String> = stdout
        .lines()
        .filter(|l| l.contains("\"name\":\"producer_send_success\""))
        .filter_map(|l| {
            let start = l.find("\"value\":\"")? + 9;
            let len = l[start..].find('"')?;
            Some(l[start..start + len].to_string())
        })
        .collect();
    assert!(acked.len() >= 30_000, "only {} acknowledged", acked.len());

    let mut c = Client::connect(&node.bootstrap());
    let log = c.read_all(topic, 0, 0);
    let mut count: HashMap<String, usize> = HashMap::new();
    for (_, v) in &log {
        *count
            .entry(String::from_utf8_lossy(v).to_string())
            .or_default() += 1;
    }
    let twice: Vec<_> = count.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "values written more than once: {twice:?}");
    for v in &acked {
        assert!(count.contains_key(v), "acknowledged value {v} is missing");
    }
    let segments = segment_bases(&node.data_dir(), topic).len();
    eprintln!(
        "{} values acknowledged, {} records in the log, none twice, {segments} segments",
        acked.len(),
        log.len()
    );

    // The snapshots are Kafka's files: Kafka's own DumpLogSegments reads them.
    let dir = node.data_dir().join(format!("{topic}-0"));
    let snapshot = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "snapshot"))
        .max()
        .expect("a producer snapshot");
    let dump = kafka_ok("dump-log", &["--files", &snapshot.display().to_string()]);
    assert!(dump.contains("producerId:"), "{dump}");
}
