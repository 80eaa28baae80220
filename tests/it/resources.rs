//! What a node spends per partition: the files a replica keeps open, and the record bytes one
//! consumer Fetch over many partitions may pull into memory (`fetch.max.bytes`).

use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{BrokerId, FetchRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{Compression, RecordBatchDecoder};

use crate::client::Client;
use crate::harness::Node;

fn open_files(node: &Node) -> usize {
    let pid = node.pid().expect("node running");
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// Produces `values` to a partition of a topic just created, retrying while the node has not
/// made itself leader yet.
fn produce_when_ready(client: &mut Client, topic: &str, partition: i32, values: &[Bytes]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (code, _) = client
            .produce(topic, partition, values, 1, Compression::None)
            .unwrap();
        if code == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "produce to {topic}-{partition}: error {code}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_replica_keeps_one_file_open() {
    const PARTITIONS: i32 = 300;
    let node = Node::start(&[]);
    let mut client = Client::connect(&node.bootstrap());
    client.create_topic("settle", 1);
    produce_when_ready(&mut client, "settle", 0, &[Bytes::from_static(b"x")]);
    let before = open_files(&node);

    client.create_topic("many", PARTITIONS);
    // Enough data per partition for several index entries.
    let values: Vec<Bytes> = (0..20).map(|_| Bytes::from(vec![7u8; 1024])).collect();
    for _ in 0..3 {
        for partition in 0..PARTITIONS {
            produce_when_ready(&mut client, "many", partition, &values);
        }
    }
    let after = open_files(&node);
    let per_replica = (after as f64 - before as f64) / PARTITIONS as f64;
    println!("open files: {before} before, {after} with {PARTITIONS} more replicas ({per_replica:.2} per replica)");
    assert!(
        after <= before + PARTITIONS as usize + 5,
        "{after} open files with {PARTITIONS} replicas, {before} before: more than one per replica"
    );
    for partition in [0, PARTITIONS / 2, PARTITIONS - 1] {
        let (code, high_watermark, records) = client.fetch("many", partition, 0, 0).unwrap();
        assert_eq!((code, high_watermark, records.len()), (0, 60, 60));
    }
}

#[test]
fn fetch_max_bytes_bounds_a_fetch_over_many_partitions() {
    const PARTITIONS: i32 = 8;
    const FETCH_MAX_BYTES: usize = 256 * 1024;
    let node = Node::start(&[("fetch.max.bytes", "262144")]);
    let mut client = Client::connect(&node.bootstrap());
    client.create_topic("wide", PARTITIONS);
    // Three batches of 50 KiB per partition: 1.2 MiB over the topic.
    let values: Vec<Bytes> = (0..50).map(|i| Bytes::from(vec![i as u8; 1024])).collect();
    for partition in 0..PARTITIONS {
        for _ in 0..3 {
            produce_when_ready(&mut client, "wide", partition, &values);
        }
    }

    let mut offsets = vec![0i64; PARTITIONS as usize];
    let mut fetches = 0;
    while offsets.iter().any(|&o| o < 150) {
        fetches += 1;
        assert!(fetches < 100, "fetches do not progress: {offsets:?}");
        // A client asking for 50 MiB, 10 MiB per partition, as the Java consumer's defaults do.
        let req = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(0)
            .with_min_bytes(1)
            .with_max_bytes(50 << 20)
            .with_topics(vec![FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_static_str("wide")))
                .with_partitions(
                    (0..PARTITIONS)
                        .map(|p| {
                            FetchPartition::default()
                                .with_partition(p)
                                .with_fetch_offset(offsets[p as usize])
                                .with_partition_max_bytes(10 << 20)
                        })
                        .collect(),
                )]);
        let resp = client.request(&req, 12).unwrap();
        let mut bytes = 0;
        for p in &resp.responses[0].partitions {
            assert_eq!(p.error_code, 0);
            let records = p.records.clone().unwrap_or_default();
            bytes += records.len();
            let mut buf = records;
            while buf.remaining() > 0 {
                let set = RecordBatchDecoder::decode(&mut buf).unwrap();
                for r in set.records {
                    assert_eq!(r.offset, offsets[p.partition_index as usize]);
                    offsets[p.partition_index as usize] += 1;
                }
            }
        }
        assert!(bytes > 0, "every fetch returns something until all is read");
        assert!(
            bytes <= FETCH_MAX_BYTES,
            "a fetch returned {bytes} record bytes, fetch.max.bytes is {FETCH_MAX_BYTES}"
        );
    }
    println!("read 8 x 150 records of 1 KiB in {fetches} fetches of at most 256 KiB");
    assert!(
        fetches >= 5,
        "1.2 MiB cannot come in fewer than 5 fetches of 256 KiB"
    );
}
