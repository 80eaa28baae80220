//! Record batches that Kafka's LogValidator refuses, sent as raw Produce requests to the
//! leader of a replicated partition: each gets Kafka's error code (and `record_errors` where
//! Kafka names the records), the high watermark does not move, valid batches around them
//! still append at the next offsets, and the cluster keeps serving.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use indexmap::IndexMap;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::produce_response::PartitionProduceResponse;
use kafka_protocol::messages::{CreateTopicsRequest, ProduceRequest, TopicName, TransactionalId};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use crate::client::Client;
use crate::cluster::leaders;
use crate::harness::Cluster;

const NONE: i16 = 0;
const CORRUPT_MESSAGE: i16 = 2;
const MESSAGE_TOO_LARGE: i16 = 10;
const INVALID_TIMESTAMP: i16 = 32;
const INVALID_TXN_STATE: i16 = 48;
const TRANSACTIONAL_ID_AUTHORIZATION_FAILED: i16 = 53;
const UNSUPPORTED_COMPRESSION_TYPE: i16 = 76;
const INVALID_RECORD: i16 = 87;

// Byte offsets in the v2 batch header.
const BATCH_LENGTH: usize = 8;
const CRC: usize = 17;
const ATTRIBUTES: usize = 21;
const LAST_OFFSET_DELTA: usize = 23;
const BASE_TIMESTAMP: usize = 27;
const MAX_TIMESTAMP: usize = 35;
const RECORDS_COUNT: usize = 57;
const HEADER: usize = 61;

const CONTROL: i16 = 0x20;
const TRANSACTIONAL: i16 = 0x10;
const LOG_APPEND_TIME: i16 = 0x08;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A batch of records (offset delta, key, timestamp), encoded by kafka-protocol.
fn batch_of(
    records: &[(i64, Option<&str>, i64)],
    value: &Bytes,
    compression: Compression,
) -> Vec<u8> {
    let records: Vec<Record> = records
        .iter()
        .map(|(offset, key, timestamp)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: *offset,
            // offset - sequence constant keeps the records in one batch, with no sequence.
            sequence: *offset as i32 - 1,
            timestamp: *timestamp,
            key: key.map(|k| Bytes::copy_from_slice(k.as_bytes())),
            value: Some(value.clone()),
            headers: IndexMap::new(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .unwrap();
    buf.to_vec()
}

/// `n` keyed records timestamped now.
fn valid(n: i64, compression: Compression) -> Vec<u8> {
    let now = now_ms();
    let keys: Vec<String> = (0..n).map(|i| format!("key-{i}")).collect();
    let records: Vec<(i64, Option<&str>, i64)> = (0..n)
        .map(|i| (i, Some(keys[i as usize].as_str()), now))
        .collect();
    batch_of(&records, &Bytes::from_static(b"value"), compression)
}

fn put_i32(b: &mut [u8], at: usize, v: i32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

fn put_i64(b: &mut [u8], at: usize, v: i64) {
    b[at..at + 8].copy_from_slice(&v.to_be_bytes());
}

fn set_flags(b: &mut [u8], flags: i16) {
    let attributes = i16::from_be_bytes([b[ATTRIBUTES], b[ATTRIBUTES + 1]]) | flags;
    b[ATTRIBUTES..ATTRIBUTES + 2].copy_from_slice(&attributes.to_be_bytes());
}

/// Recomputes the CRC-32C over attributes..end, so only the forged fields are wrong.
fn fix_crc(mut b: Vec<u8>) -> Vec<u8> {
    let crc = crc32c::crc32c(&b[ATTRIBUTES..]);
    b[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
    b
}

/// `b` with its header fields changed by `edit`, CRC recomputed.
fn forged(mut b: Vec<u8>, edit: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    edit(&mut b);
    let length = (b.len() - 12) as i32;
    put_i32(&mut b, BATCH_LENGTH, length);
    fix_crc(b)
}

/// The 61-byte batch: a header alone claiming 2^31-1 records, control bit set, CRC valid.
fn header_only_control_batch() -> Vec<u8> {
    let mut b = vec![0u8; HEADER];
    put_i32(&mut b, BATCH_LENGTH, (HEADER - 12) as i32);
    put_i32(&mut b, 12, -1);
    b[16] = 2;
    b[ATTRIBUTES..ATTRIBUTES + 2].copy_from_slice(&CONTROL.to_be_bytes());
    put_i32(&mut b, LAST_OFFSET_DELTA, i32::MAX - 1);
    put_i64(&mut b, BASE_TIMESTAMP, now_ms());
    put_i64(&mut b, MAX_TIMESTAMP, now_ms());
    put_i64(&mut b, 43, -1);
    b[51..53].copy_from_slice(&(-1i16).to_be_bytes());
    put_i32(&mut b, 53, -1);
    put_i32(&mut b, RECORDS_COUNT, i32::MAX);
    fix_crc(b)
}

fn produce(
    c: &mut Client,
    topic: &str,
    records: Vec<u8>,
    version: i16,
    transactional_id: Option<&str>,
) -> PartitionProduceResponse {
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_transactional_id(
            transactional_id.map(|t| TransactionalId(StrBytes::from_string(t.into()))),
        )
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.into())))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(Bytes::from(records)))])]);
    let resp = c.request(&req, version).unwrap();
    resp.responses[0].partition_responses[0].clone()
}

fn create_topic(c: &mut Client, name: &str, configs: &[(&str, &str)]) {
    let topic = CreatableTopic::default()
        .with_name(TopicName(StrBytes::from_string(name.into())))
        .with_num_partitions(1)
        .with_replication_factor(3)
        .with_configs(
            configs
                .iter()
                .map(|(k, v)| {
                    CreatableTopicConfig::default()
                        .with_name(StrBytes::from_string(k.to_string()))
                        .with_value(Some(StrBytes::from_string(v.to_string())))
                })
                .collect(),
        );
    let req = CreateTopicsRequest::default()
        .with_timeout_ms(10_000)
        .with_topics(vec![topic]);
    let resp = c.request(&req, 7).unwrap();
    assert_eq!(
        resp.topics[0].error_code, 0,
        "{name}: {:?}",
        resp.topics[0].error_message
    );
}

/// The leader of partition 0 once all three replicas are in the ISR.
fn wait_for_leader(cluster: &Cluster, topic: &str) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some((leader, _, isr)) = leaders(&cluster.nodes[0], topic).get(&0) {
            if *leader > 0 && isr.len() == 3 {
                return *leader;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{topic} has no leader with a full ISR"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One hostile batch and what Kafka answers it.
struct Case {
    name: String,
    topic: &'static str,
    records: Vec<u8>,
    version: i16,
    transactional_id: Option<&'static str>,
    code: i16,
    /// `record_errors` batch indexes Kafka names.
    record_errors: Vec<i32>,
}

fn case(name: &str, topic: &'static str, records: Vec<u8>, code: i16) -> Case {
    Case {
        name: name.to_string(),
        topic,
        records,
        version: 9,
        transactional_id: None,
        code,
        record_errors: vec![],
    }
}

/// The records section of `b` cut short by `cut` bytes, framing and CRC fixed.
fn truncated(b: Vec<u8>, cut: usize) -> Vec<u8> {
    forged(b, |b| {
        let len = b.len();
        b.truncate(len - cut);
    })
}

/// The records section of `b` replaced by `garbage`, framing and CRC fixed.
fn garbled(b: Vec<u8>, garbage: &[u8]) -> Vec<u8> {
    forged(b, |b| {
        b.truncate(HEADER);
        b.extend_from_slice(garbage);
    })
}

#[test]
fn log_validator_refusals_get_kafkas_errors_and_leave_the_log_alone() {
    let mut cluster = Cluster::start(3, &[]);
    let mut admin = Client::connect(&cluster.nodes[0].bootstrap());
    create_topic(&mut admin, "plain", &[]);
    create_topic(&mut admin, "compacted", &[("cleanup.policy", "compact")]);
    create_topic(
        &mut admin,
        "append-time",
        &[("message.timestamp.type", "LogAppendTime")],
    );
    create_topic(
        &mut admin,
        "recent",
        &[("message.timestamp.before.max.ms", "60000")],
    );

    let now = now_ms();
    let value = Bytes::from_static(b"value");
    let keyless = batch_of(
        &[(0, None, now), (1, Some("k"), now), (2, None, now)],
        &value,
        Compression::None,
    );
    // A decompression bomb: 100 records of 1 MiB of zeros, claimed as 2^31-1 records, a few
    // KiB of zstd.
    let zeros = Bytes::from(vec![0u8; 1 << 20]);
    let bomb_records: Vec<(i64, Option<&str>, i64)> = (0..100).map(|i| (i, None, now)).collect();
    let bomb = forged(batch_of(&bomb_records, &zeros, Compression::Zstd), |b| {
        put_i32(b, LAST_OFFSET_DELTA, i32::MAX - 1);
        put_i32(b, RECORDS_COUNT, i32::MAX);
    });
    assert!(bomb.len() < 64 * 1024, "bomb of {} bytes", bomb.len());

    let mut cases = vec![
        case(
            "61-byte batch claiming 2^31-1 control records",
            "plain",
            header_only_control_batch(),
            INVALID_RECORD,
        ),
        case(
            "header claiming 2^31-1 records, no control bit",
            "plain",
            forged(header_only_control_batch(), |b| b[ATTRIBUTES + 1] = 0),
            INVALID_RECORD,
        ),
        case(
            "more records than claimed",
            "plain",
            forged(valid(3, Compression::None), |b| {
                put_i32(b, LAST_OFFSET_DELTA, 1);
                put_i32(b, RECORDS_COUNT, 2);
            }),
            INVALID_RECORD,
        ),
        case(
            "fewer records than claimed",
            "plain",
            forged(valid(3, Compression::None), |b| {
                put_i32(b, LAST_OFFSET_DELTA, 4);
                put_i32(b, RECORDS_COUNT, 5);
            }),
            INVALID_RECORD,
        ),
        case(
            "last offset delta disagrees with the count",
            "plain",
            forged(valid(3, Compression::None), |b| {
                put_i32(b, LAST_OFFSET_DELTA, 7)
            }),
            INVALID_RECORD,
        ),
        case(
            "offset deltas out of order",
            "plain",
            batch_of(
                &[
                    (0, Some("a"), now),
                    (2, Some("b"), now),
                    (1, Some("c"), now),
                ],
                &value,
                Compression::None,
            ),
            INVALID_RECORD,
        ),
        case(
            "offset deltas with a gap, count matching",
            "plain",
            forged(
                batch_of(
                    &[
                        (0, Some("a"), now),
                        (1, Some("b"), now),
                        (5, Some("c"), now),
                    ],
                    &value,
                    Compression::Lz4,
                ),
                |b| put_i32(b, LAST_OFFSET_DELTA, 2),
            ),
            INVALID_RECORD,
        ),
        case(
            "control bit",
            "plain",
            forged(valid(2, Compression::None), |b| set_flags(b, CONTROL)),
            INVALID_RECORD,
        ),
        case(
            "transactional bit without a transactional id",
            "plain",
            forged(valid(2, Compression::None), |b| set_flags(b, TRANSACTIONAL)),
            TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
        ),
        Case {
            transactional_id: Some("txn"),
            ..case(
                "transactional bit outside a transaction",
                "plain",
                forged(valid(2, Compression::None), |b| set_flags(b, TRANSACTIONAL)),
                INVALID_TXN_STATE,
            )
        },
        case(
            "bad CRC",
            "plain",
            {
                let mut b = valid(2, Compression::None);
                let last = b.len() - 1;
                b[last] ^= 0xff;
                b
            },
            CORRUPT_MESSAGE,
        ),
        case(
            "base offset other than 0",
            "plain",
            forged(valid(2, Compression::None), |b| b[7] = 9),
            INVALID_RECORD,
        ),
        Case {
            version: 6,
            ..case(
                "zstd before Produce v7",
                "plain",
                valid(2, Compression::Zstd),
                UNSUPPORTED_COMPRESSION_TYPE,
            )
        },
        case("decompression bomb", "plain", bomb, MESSAGE_TOO_LARGE),
        Case {
            record_errors: vec![0, 2],
            ..case(
                "keyless records on a compacted topic",
                "compacted",
                keyless,
                INVALID_RECORD,
            )
        },
        Case {
            record_errors: vec![1],
            ..case(
                "a timestamp older than message.timestamp.before.max.ms",
                "recent",
                batch_of(
                    &[(0, Some("a"), now), (1, Some("b"), now - 3_600_000)],
                    &value,
                    Compression::Gzip,
                ),
                INVALID_TIMESTAMP,
            )
        },
        Case {
            record_errors: vec![0],
            ..case(
                "a timestamp past message.timestamp.after.max.ms (1 hour)",
                "plain",
                batch_of(
                    &[(0, Some("a"), now + 7_200_000)],
                    &value,
                    Compression::None,
                ),
                INVALID_TIMESTAMP,
            )
        },
        Case {
            record_errors: vec![0, 1],
            ..case(
                "a producer setting LogAppendTime",
                "append-time",
                forged(valid(2, Compression::None), |b| {
                    set_flags(b, LOG_APPEND_TIME)
                }),
                INVALID_TIMESTAMP,
            )
        },
    ];
    for (codec, compression) in [
        ("gzip", Compression::Gzip),
        ("snappy", Compression::Snappy),
        ("lz4", Compression::Lz4),
        ("zstd", Compression::Zstd),
    ] {
        cases.push(case(
            &format!("{codec}: payload cut short"),
            "plain",
            truncated(valid(50, compression), 3),
            INVALID_RECORD,
        ));
        cases.push(case(
            &format!("{codec}: garbled payload"),
            "plain",
            garbled(valid(50, compression), &[0x5a; 40]),
            INVALID_RECORD,
        ));
        cases.push(case(
            &format!("{codec}: more records inside than claimed"),
            "plain",
            forged(valid(4, compression), |b| {
                put_i32(b, LAST_OFFSET_DELTA, 2);
                put_i32(b, RECORDS_COUNT, 3);
            }),
            INVALID_RECORD,
        ));
    }

    let mut expected_end = std::collections::BTreeMap::new();
    let mut clients = std::collections::BTreeMap::new();
    for topic in ["plain", "compacted", "append-time", "recent"] {
        let leader = wait_for_leader(&cluster, topic);
        let mut c = Client::connect(&cluster.node(leader).bootstrap());
        // A valid batch before the hostile ones.
        let r = produce(&mut c, topic, valid(3, Compression::None), 9, None);
        assert_eq!(
            (r.error_code, r.base_offset),
            (NONE, 0),
            "{topic}: {:?}",
            r.error_message
        );
        if topic == "append-time" {
            assert!(
                r.log_append_time_ms >= now,
                "LogAppendTime reported: {}",
                r.log_append_time_ms
            );
        }
        expected_end.insert(topic, 3i64);
        clients.insert(topic, c);
    }

    for case in cases {
        let c = clients.get_mut(case.topic).unwrap();
        let r = produce(
            c,
            case.topic,
            case.records,
            case.version,
            case.transactional_id,
        );
        assert_eq!(
            r.error_code, case.code,
            "{}: {:?}",
            case.name, r.error_message
        );
        assert_eq!(r.base_offset, -1, "{}", case.name);
        let indexes: Vec<i32> = r.record_errors.iter().map(|e| e.batch_index).collect();
        assert_eq!(indexes, case.record_errors, "{}: record_errors", case.name);
        if !case.record_errors.is_empty() {
            assert!(r.error_message.is_some(), "{}: error_message", case.name);
            assert!(r
                .record_errors
                .iter()
                .all(|e| e.batch_index_error_message.is_some()));
        }
        let end = expected_end[case.topic];
        let (err, hw) = c.list_offset(case.topic, 0, -1);
        assert_eq!(
            (err, hw),
            (NONE, end),
            "{}: the high watermark moved",
            case.name
        );
        // A valid batch right after each refusal appends at the next offset.
        let compression = if case.topic == "recent" {
            Compression::Snappy
        } else {
            Compression::Lz4
        };
        let r = produce(c, case.topic, valid(2, compression), 9, None);
        assert_eq!(
            (r.error_code, r.base_offset),
            (NONE, end),
            "{}: next batch: {:?}",
            case.name,
            r.error_message
        );
        expected_end.insert(case.topic, end + 2);
    }

    // Every codec still appends, and the log holds exactly the valid records.
    let c = clients.get_mut("plain").unwrap();
    for compression in [
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        let end = expected_end["plain"];
        let r = produce(c, "plain", valid(10, compression), 9, None);
        assert_eq!(
            (r.error_code, r.base_offset),
            (NONE, end),
            "{compression:?}: {:?}",
            r.error_message
        );
        expected_end.insert("plain", end + 10);
    }
    let records = c.read_all("plain", 0, 0);
    let offsets: Vec<i64> = records.iter().map(|(o, _)| *o).collect();
    assert_eq!(offsets, (0..expected_end["plain"]).collect::<Vec<_>>());
    assert!(records.iter().all(|(_, v)| v.as_ref() == b"value"));
    for topic in ["compacted", "append-time", "recent"] {
        let c = clients.get_mut(topic).unwrap();
        assert_eq!(
            c.read_all(topic, 0, 0).len() as i64,
            expected_end[topic],
            "{topic}"
        );
    }

    super::assert_cluster_serving(&mut cluster);
}

/// The stock Java producer's compressed batches (xerial-framed snappy, its lz4 frames, gzip,
/// zstd) pass the record-by-record validation, idempotent and acks=all, to RF 3.
#[test]
fn java_producer_compressed_batches_pass_validation() {
    let mut cluster = Cluster::start(3, &[]);
    let mut admin = Client::connect(&cluster.nodes[0].bootstrap());
    let bootstrap = cluster.nodes[0].bootstrap();
    for codec in ["gzip", "snappy", "lz4", "zstd"] {
        let topic = format!("java-{codec}");
        create_topic(&mut admin, &topic, &[]);
        let leader = wait_for_leader(&cluster, &topic);
        let out = crate::harness::kafka_tool(
            "producer-perf-test",
            &[
                "--topic",
                &topic,
                "--num-records",
                "20000",
                "--record-size",
                "200",
                "--throughput",
                "-1",
                "--producer-props",
                &format!("bootstrap.servers={bootstrap}"),
                "acks=all",
                &format!("compression.type={codec}"),
            ],
            None,
            Duration::from_secs(120),
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{codec}: {stdout}\n{stderr}");
        assert!(stdout.contains("20000 records sent"), "{codec}: {stdout}");
        assert!(!stderr.contains("Exception"), "{codec}: {stderr}");
        let mut c = Client::connect(&cluster.node(leader).bootstrap());
        assert_eq!(c.list_offset(&topic, 0, -1), (NONE, 20_000), "{codec}");
    }
    super::assert_cluster_serving(&mut cluster);
}
