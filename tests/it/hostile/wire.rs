//! See `hostile/mod.rs`: malformed and oversized fields inside otherwise valid frames, absurd
//! counts, frames announced and never sent, and requests whose allocation the client picks.

use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::describe_topic_partitions_request::{Cursor, TopicRequest};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_delete_request::{
    OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::Compression;

use super::{assert_cluster_serving, frame, header_v1, header_v2};
use crate::client::Client;
use crate::harness::{kafka_tool, Cluster};

const INVALID_REQUEST: i16 = 42;
const NOT_COORDINATOR: i16 = 16;
const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
const COORDINATOR_NOT_AVAILABLE: i16 = 15;
const INVALID_SESSION_TIMEOUT: i16 = 26;
const MEMBER_ID_REQUIRED: i16 = 79;
const UNKNOWN_TOPIC_ID: i16 = 100;
const GROUP_SUBSCRIBED_TO_TOPIC: i16 = 86;

/// An unsigned varint as flexible versions encode compact lengths (length + 1).
fn put_uvarint(b: &mut BytesMut, mut v: u32) {
    while v >= 0x80 {
        b.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    b.put_u8(v as u8);
}

fn put_str(b: &mut BytesMut, s: &str) {
    b.put_i16(s.len() as i16);
    b.put_slice(s.as_bytes());
}

/// Sends one hand-made request and expects the node to close the connection (a frame that
/// cannot be parsed); the node must still answer other clients.
fn assert_closes(addr: &str, what: &str, body: &[u8]) {
    let mut c = Client::connect(addr);
    c.send_raw(&frame(body)).unwrap();
    assert!(
        c.is_closed_by_peer(),
        "{what}: the connection must be closed"
    );
    let mut other = Client::connect(addr);
    other
        .request(&ApiVersionsRequest::default(), 3)
        .unwrap_or_else(|e| panic!("{what}: node stopped answering: {e}"));
}

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

fn group(s: &str) -> GroupId {
    GroupId(StrBytes::from_string(s.to_string()))
}

#[test]
fn absurd_counts_and_lengths_close_only_their_connection() {
    let mut cluster = Cluster::start(3, &[]);
    let addr = cluster.nodes[0].bootstrap();
    let huge = u32::MAX; // compact length: 2^32 - 2 elements

    let mut b = header_v1(3, 4); // Metadata v4: topics [int32]
    b.put_i32(i32::MAX);
    assert_closes(&addr, "Metadata v4 topic count 2^31-1", &b);

    let mut b = header_v2(3, 12); // Metadata v12: compact topics
    put_uvarint(&mut b, huge);
    assert_closes(&addr, "Metadata v12 compact topic count", &b);

    let mut b = header_v1(1, 4); // Fetch v4
    b.put_i32(-1); // replica id
    b.put_i32(100); // max wait
    b.put_i32(1); // min bytes
    b.put_i32(i32::MAX); // max bytes
    b.put_i8(0); // isolation level
    b.put_i32(i32::MAX); // topics
    assert_closes(&addr, "Fetch v4 topic count", &b);

    let mut b = header_v2(1, 12); // Fetch v12
    b.put_i32(-1);
    b.put_i32(100);
    b.put_i32(1);
    b.put_i32(i32::MAX);
    b.put_i8(0);
    b.put_i32(0); // session id
    b.put_i32(-1); // session epoch
    put_uvarint(&mut b, 2); // one topic
    put_str_compact(&mut b, "t");
    put_uvarint(&mut b, huge); // its partitions
    assert_closes(&addr, "Fetch v12 compact partition count", &b);

    let mut b = header_v1(2, 1); // ListOffsets v1
    b.put_i32(-1);
    b.put_i32(i32::MAX);
    assert_closes(&addr, "ListOffsets v1 topic count", &b);

    let mut b = header_v1(8, 2); // OffsetCommit v2
    put_str(&mut b, "g");
    b.put_i32(-1);
    put_str(&mut b, "");
    b.put_i64(-1);
    b.put_i32(i32::MAX);
    assert_closes(&addr, "OffsetCommit v2 topic count", &b);

    let mut b = header_v1(11, 5); // JoinGroup v5
    put_str(&mut b, "g");
    b.put_i32(10_000);
    b.put_i32(10_000);
    put_str(&mut b, "");
    b.put_i16(-1); // group instance id: null
    put_str(&mut b, "consumer");
    b.put_i32(i32::MAX);
    assert_closes(&addr, "JoinGroup v5 protocol count", &b);

    let mut b = header_v1(11, 5); // JoinGroup v5 whose one protocol's metadata claims 2 GiB
    put_str(&mut b, "g");
    b.put_i32(10_000);
    b.put_i32(10_000);
    put_str(&mut b, "");
    b.put_i16(-1);
    put_str(&mut b, "consumer");
    b.put_i32(1);
    put_str(&mut b, "range");
    b.put_i32(i32::MAX);
    b.put_slice(&[0; 16]);
    assert_closes(&addr, "JoinGroup v5 metadata bytes length", &b);

    let mut b = header_v1(15, 0); // DescribeGroups v0
    b.put_i32(i32::MAX);
    assert_closes(&addr, "DescribeGroups v0 group count", &b);

    let mut b = header_v2(15, 5); // DescribeGroups v5
    put_uvarint(&mut b, huge);
    assert_closes(&addr, "DescribeGroups v5 compact group count", &b);

    let mut b = header_v1(42, 0); // DeleteGroups v0
    b.put_i32(i32::MAX);
    assert_closes(&addr, "DeleteGroups v0 group count", &b);

    let mut b = header_v2(9, 8); // OffsetFetch v8: batched groups
    put_uvarint(&mut b, huge);
    assert_closes(&addr, "OffsetFetch v8 compact group count", &b);

    let mut b = header_v2(10, 4); // FindCoordinator v4: key list
    b.put_i8(0);
    put_uvarint(&mut b, huge);
    assert_closes(&addr, "FindCoordinator v4 compact key count", &b);

    let mut b = header_v1(21, 0); // DeleteRecords v0
    b.put_i32(i32::MAX);
    assert_closes(&addr, "DeleteRecords v0 topic count", &b);

    let mut b = header_v1(23, 3); // OffsetForLeaderEpoch v3
    b.put_i32(-1);
    b.put_i32(i32::MAX);
    assert_closes(&addr, "OffsetForLeaderEpoch v3 topic count", &b);

    let mut b = header_v2(75, 0); // DescribeTopicPartitions v0
    put_uvarint(&mut b, huge);
    assert_closes(&addr, "DescribeTopicPartitions compact topic count", &b);

    // Length prefixes: strings longer than the frame, negative, and over Kafka's 0x7fff.
    let mut b = header_v1(3, 4);
    b.put_i32(1);
    b.put_i16(i16::MAX);
    b.put_slice(b"abc");
    assert_closes(&addr, "topic name length 32767 in a short frame", &b);

    let mut b = header_v1(3, 4);
    b.put_i32(1);
    b.put_i16(-5);
    assert_closes(&addr, "negative string length", &b);

    let mut b = header_v1(3, 4);
    b.put_i32(-2);
    assert_closes(&addr, "negative array length", &b);

    let mut b = header_v2(3, 12);
    put_uvarint(&mut b, 2);
    b.put_slice(&[0; 16]); // topic id
    put_uvarint(&mut b, huge); // name: 2^32 - 2 bytes
    assert_closes(&addr, "compact string length 2^32-2", &b);

    // A group id of 40,000 bytes, all present: no Kafka string is longer than 0x7fff (it
    // could not be written into __consumer_offsets), so like Kafka the frame is refused.
    let mut b = header_v2(11, 6); // JoinGroup v6 (flexible)
    put_str_compact(&mut b, &"g".repeat(40_000));
    b.put_i32(10_000);
    b.put_i32(10_000);
    put_str_compact(&mut b, "");
    put_uvarint(&mut b, 0); // group instance id: null
    put_str_compact(&mut b, "consumer");
    put_uvarint(&mut b, 1); // no protocols
    b.put_u8(0);
    assert_closes(&addr, "group id of 40000 bytes", &b);

    // A request header whose client id claims more than the frame holds.
    let mut b = BytesMut::new();
    b.put_i16(18);
    b.put_i16(3);
    b.put_i32(1);
    b.put_i16(i16::MAX);
    b.put_slice(b"x");
    assert_closes(&addr, "client id length", &b);

    // Tagged fields: a count of 2^32 - 1 in an otherwise valid Metadata v12.
    let mut b = header_v2(3, 12);
    put_uvarint(&mut b, 0); // topics: null (all)
    b.put_u8(1);
    b.put_u8(0);
    put_uvarint(&mut b, huge);
    assert_closes(&addr, "tagged field count", &b);

    // An unknown tag whose size claims 2^32 - 2 bytes.
    let mut b = header_v2(3, 12);
    put_uvarint(&mut b, 0);
    b.put_u8(1);
    b.put_u8(0);
    put_uvarint(&mut b, 1);
    put_uvarint(&mut b, 1000);
    put_uvarint(&mut b, huge);
    assert_closes(&addr, "tagged field size", &b);

    assert_cluster_serving(&mut cluster);
}

fn put_str_compact(b: &mut BytesMut, s: &str) {
    put_uvarint(b, s.len() as u32 + 1);
    b.put_slice(s.as_bytes());
}

/// The index of the node coordinating `group_id`, once `__consumer_offsets` has leaders.
fn coordinator(cluster: &Cluster, group_id: &str) -> usize {
    let mut c = Client::connect(&cluster.nodes[0].bootstrap());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let req = FindCoordinatorRequest::default()
            .with_key(StrBytes::from_string(group_id.to_string()))
            .with_key_type(0);
        let resp = c.request(&req, 3).unwrap();
        if resp.error_code == 0 {
            return cluster
                .nodes
                .iter()
                .position(|n| n.node_id == resp.node_id.0)
                .expect("the coordinator is a node of the cluster");
        }
        assert!(
            Instant::now() < deadline,
            "no coordinator for the group: {}",
            resp.error_code
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn join(
    c: &mut Client,
    group_id: &str,
    member_id: &str,
    session_timeout_ms: i32,
    metadata: Bytes,
) -> JoinGroupResponse {
    let req = JoinGroupRequest::default()
        .with_group_id(group(group_id))
        .with_session_timeout_ms(session_timeout_ms)
        .with_rebalance_timeout_ms(10_000)
        .with_member_id(StrBytes::from_string(member_id.to_string()))
        .with_protocol_type(StrBytes::from_static_str("consumer"))
        .with_protocols(vec![JoinGroupRequestProtocol::default()
            .with_name(StrBytes::from_static_str("range"))
            .with_metadata(metadata)]);
    c.request(&req, 5).unwrap()
}

#[test]
fn client_chosen_sizes_inside_valid_requests_get_kafka_errors() {
    let mut cluster = Cluster::start(3, &[]);
    let addr = cluster.nodes[0].bootstrap();
    let mut c = Client::connect(&addr);
    c.create_topic("w", 1);

    // Metadata v12 by an unknown topic id: UNKNOWN_TOPIC_ID, as Kafka's KafkaApis.
    let unknown = uuid::Uuid::new_v4();
    let req = MetadataRequest::default()
        .with_topics(Some(vec![MetadataRequestTopic::default()
            .with_topic_id(unknown)
            .with_name(None)]))
        .with_allow_auto_topic_creation(false);
    let resp = c.request(&req, 12).unwrap();
    assert_eq!(resp.topics.len(), 1);
    assert_eq!(resp.topics[0].error_code, UNKNOWN_TOPIC_ID);
    assert_eq!(resp.topics[0].topic_id, unknown);

    // The same topic named 5,000 times is answered once (Kafka takes a set of names).
    let req = MetadataRequest::default()
        .with_topics(Some(
            (0..5_000)
                .map(|_| MetadataRequestTopic::default().with_name(Some(name("w"))))
                .collect(),
        ))
        .with_allow_auto_topic_creation(false);
    let resp = c.request(&req, 12).unwrap();
    assert_eq!(resp.topics.len(), 1, "one entry per distinct topic");
    assert_eq!(resp.topics[0].error_code, 0);

    // ListOffsets naming a partition twice: INVALID_REQUEST for both occurrences.
    let leader = {
        let meta = c
            .request(
                &MetadataRequest::default().with_topics(Some(vec![MetadataRequestTopic::default(
                )
                .with_name(Some(name("w")))])),
                12,
            )
            .unwrap();
        let leader_id = meta.topics[0].partitions[0].leader_id.0;
        cluster
            .nodes
            .iter()
            .position(|n| n.node_id == leader_id)
            .unwrap()
    };
    let mut on_leader = Client::connect(&cluster.nodes[leader].bootstrap());
    let req = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(name("w"))
            .with_partitions(vec![
                ListOffsetsPartition::default()
                    .with_partition_index(0)
                    .with_timestamp(-1),
                ListOffsetsPartition::default()
                    .with_partition_index(0)
                    .with_timestamp(-2),
            ])]);
    let resp = on_leader.request(&req, 7).unwrap();
    let codes: Vec<i16> = resp.topics[0]
        .partitions
        .iter()
        .map(|p| p.error_code)
        .collect();
    assert_eq!(codes, vec![INVALID_REQUEST, INVALID_REQUEST]);

    // DescribeTopicPartitions with a negative cursor partition, or a cursor topic outside
    // the list: INVALID_REQUEST (Kafka's validateCursor).
    for cursor in [
        Cursor::default()
            .with_topic_name(name("w"))
            .with_partition_index(-1),
        Cursor::default()
            .with_topic_name(name("elsewhere"))
            .with_partition_index(0),
    ] {
        let req = DescribeTopicPartitionsRequest::default()
            .with_topics(vec![TopicRequest::default().with_name(name("w"))])
            .with_response_partition_limit(i32::MAX)
            .with_cursor(Some(cursor));
        let resp = c.request(&req, 0).unwrap();
        assert_eq!(resp.topics.len(), 1);
        assert_eq!(resp.topics[0].error_code, INVALID_REQUEST);
    }

    // Fetch asking for 2 GiB gets what the log holds, capped by fetch.max.bytes.
    let values: Vec<Bytes> = (0..100)
        .map(|i| Bytes::from(format!("value-{i}")))
        .collect();
    // Leadership may still settle after the topic's creation: retry on the current leader.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut on_leader = loop {
        let meta = c
            .request(
                &MetadataRequest::default().with_topics(Some(vec![MetadataRequestTopic::default(
                )
                .with_name(Some(name("w")))])),
                12,
            )
            .unwrap();
        let leader_id = meta.topics[0].partitions[0].leader_id.0;
        if let Some(i) = cluster.nodes.iter().position(|n| n.node_id == leader_id) {
            let mut l = Client::connect(&cluster.nodes[i].bootstrap());
            let (err, _) = l.produce("w", 0, &values, -1, Compression::None).unwrap();
            if err == 0 {
                break l;
            }
        }
        assert!(Instant::now() < deadline, "no leader accepts the produce");
        std::thread::sleep(Duration::from_millis(300));
    };
    for (max_bytes, partition_max_bytes) in [(i32::MAX, i32::MAX), (-1, -1), (i32::MIN, 0)] {
        let req = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(100)
            .with_min_bytes(i32::MAX)
            .with_max_bytes(max_bytes)
            .with_topics(vec![FetchTopic::default()
                .with_topic(name("w"))
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(0)
                    .with_fetch_offset(0)
                    .with_partition_max_bytes(partition_max_bytes)])]);
        let started = Instant::now();
        let resp = on_leader.request(&req, 12).unwrap();
        assert!(started.elapsed() < Duration::from_secs(10));
        let p = &resp.responses[0].partitions[0];
        assert_eq!(p.error_code, 0, "max_bytes {max_bytes}");
        let records = p.records.as_ref().map(|r| r.len()).unwrap_or(0);
        assert!(records > 0 && records < 64 * 1024, "{records} bytes");
    }
    // The stock console consumer asking for 2 GiB per fetch and per partition.
    let out = kafka_tool(
        "console-consumer",
        &[
            "--bootstrap-server",
            &addr,
            "--topic",
            "w",
            "--partition",
            "0",
            "--offset",
            "earliest",
            "--max-messages",
            "100",
            "--timeout-ms",
            "30000",
            "--consumer-property",
            "fetch.max.bytes=2147483647",
            "--consumer-property",
            "max.partition.fetch.bytes=2147483647",
        ],
        None,
        Duration::from_secs(120),
    );
    let consumed = String::from_utf8_lossy(&out.stdout);
    // Only the records count: the 4.4 tool also prints warnings (e.g. on deprecated options).
    assert_eq!(
        consumed.lines().filter(|l| l.starts_with("value-")).count(),
        100,
        "console consumer:\n{consumed}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // JoinGroup with a session timeout below group.min.session.timeout.ms (6 s) or above
    // group.max.session.timeout.ms (30 min): INVALID_SESSION_TIMEOUT on the coordinator.
    let gid = "hostile-group";
    let coord = coordinator(&cluster, gid);
    let mut gc = Client::connect(&cluster.nodes[coord].bootstrap());
    // The coordinator answers once it has loaded the group's partition.
    let deadline = Instant::now() + Duration::from_secs(30);
    while [NOT_COORDINATOR, COORDINATOR_LOAD_IN_PROGRESS]
        .contains(&join(&mut gc, gid, "", 1, Bytes::new()).error_code)
    {
        assert!(Instant::now() < deadline, "the coordinator never loads");
        std::thread::sleep(Duration::from_millis(300));
    }
    for timeout in [1, 5_999, 1_800_001, i32::MAX, -1] {
        let resp = join(&mut gc, gid, "", timeout, Bytes::new());
        assert_eq!(
            resp.error_code, INVALID_SESSION_TIMEOUT,
            "timeout {timeout}"
        );
    }
    let other = (coord + 1) % cluster.nodes.len();
    let mut oc = Client::connect(&cluster.nodes[other].bootstrap());
    let resp = join(&mut oc, gid, "", 1, Bytes::new());
    assert_eq!(
        resp.error_code, NOT_COORDINATOR,
        "coordinator checks come first"
    );

    // Member metadata whose subscription claims 2^31 - 1 topics: the coordinator keeps the
    // bytes as Kafka does, and reading them (OffsetDelete asks which topics the group is
    // subscribed to) refuses the count instead of allocating it.
    let mut absurd = BytesMut::new();
    absurd.put_i16(3);
    absurd.put_i32(i32::MAX);
    absurd.put_slice(b"short");
    let absurd = absurd.freeze();
    let first = join(&mut gc, gid, "", 10_000, absurd.clone());
    assert_eq!(first.error_code, MEMBER_ID_REQUIRED);
    let joined = join(&mut gc, gid, &first.member_id, 10_000, absurd.clone());
    assert_eq!(joined.error_code, 0);
    assert_eq!(joined.members.len(), 1);
    assert_eq!(joined.members[0].metadata, absurd);
    let req = OffsetDeleteRequest::default()
        .with_group_id(group(gid))
        .with_topics(
            [OffsetDeleteRequestTopic::default()
                .with_name(name("w"))
                .with_partitions(vec![
                    OffsetDeleteRequestPartition::default().with_partition_index(0)
                ])]
            .into_iter()
            .collect(),
        );
    let resp = gc.request(&req, 0).unwrap();
    assert_eq!(resp.error_code, 0);
    assert_eq!(
        resp.topics[0].partitions[0].error_code, GROUP_SUBSCRIBED_TO_TOPIC,
        "an unreadable subscription counts as subscribed to every topic (Kafka's ClassicGroup)"
    );

    // DescribeGroups naming the group 2,000 times describes it once.
    let req =
        DescribeGroupsRequest::default().with_groups((0..2_000).map(|_| group(gid)).collect());
    let resp = gc.request(&req, 5).unwrap();
    assert_eq!(resp.groups.len(), 1);
    assert_eq!(resp.groups[0].error_code, 0);
    assert_eq!(resp.groups[0].members.len(), 1);

    // The largest group id Kafka can carry (32,767 bytes) commits and reads back: its
    // __consumer_offsets key takes it with its int16 length.
    let giant = "G".repeat(i16::MAX as usize);
    let coord = coordinator(&cluster, &giant);
    let mut gc = Client::connect(&cluster.nodes[coord].bootstrap());
    let deadline = Instant::now() + Duration::from_secs(30);
    while [NOT_COORDINATOR, COORDINATOR_LOAD_IN_PROGRESS]
        .contains(&join(&mut gc, &giant, "", 1, Bytes::new()).error_code)
    {
        assert!(Instant::now() < deadline, "the coordinator never loads");
        std::thread::sleep(Duration::from_millis(300));
    }
    let req = OffsetCommitRequest::default()
        .with_group_id(group(&giant))
        .with_generation_id_or_member_epoch(-1)
        .with_member_id(StrBytes::from_static_str(""))
        .with_retention_time_ms(-1)
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(name("w"))
            .with_partitions(vec![OffsetCommitRequestPartition::default()
                .with_partition_index(0)
                .with_committed_offset(42)])]);
    let resp = gc.request(&req, 2).unwrap();
    assert_eq!(resp.topics[0].partitions[0].error_code, 0);
    let req = OffsetFetchRequest::default()
        .with_group_id(group(&giant))
        .with_topics(Some(vec![OffsetFetchRequestTopic::default()
            .with_name(name("w"))
            .with_partition_indexes(vec![0])]));
    let resp = gc.request(&req, 3).unwrap();
    assert_eq!(resp.error_code, 0);
    assert_eq!(resp.topics[0].partitions[0].committed_offset, 42);
    // Elsewhere: the coordinator errors Kafka defines.
    let mut oc = Client::connect(&cluster.nodes[(coord + 1) % 3].bootstrap());
    let resp = oc.request(&req, 3).unwrap();
    assert!(
        [
            NOT_COORDINATOR,
            COORDINATOR_LOAD_IN_PROGRESS,
            COORDINATOR_NOT_AVAILABLE
        ]
        .contains(&resp.error_code),
        "{}",
        resp.error_code
    );

    assert_cluster_serving(&mut cluster);
}

/// Resident memory of a process, from /proc/<pid>/status, in bytes.
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .expect("VmRSS in /proc status");
    let kb: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("VmRSS in kB");
    kb * 1024
}

#[test]
fn announced_frames_hold_no_memory_and_stalled_frames_are_dropped() {
    // A short idle time so stalled frames give their budget back within the test.
    let mut cluster = Cluster::start(3, &[("connections.max.idle.ms", "5000")]);
    let addr = cluster.nodes[0].bootstrap();
    let pid = cluster.nodes[0].pid().expect("node 0 runs");
    let announce = (100i32 << 20).to_be_bytes(); // socket.request.max.bytes: 100 MiB
    let before = rss_bytes(pid);

    // 2,000 connections each announce a 100 MiB frame and send nothing.
    let mut idle: Vec<Client> = (0..2_000)
        .map(|_| {
            let mut c = Client::connect(&addr);
            c.send_raw(&announce).unwrap();
            c
        })
        .collect();
    std::thread::sleep(Duration::from_secs(1));
    let grown = rss_bytes(pid).saturating_sub(before);
    assert!(
        grown < 96 << 20,
        "2000 announced 100 MiB frames grew the node by {} MiB",
        grown >> 20
    );
    // Nothing of the request budget is held: the node serves everyone meanwhile.
    assert_cluster_serving(&mut cluster);

    // 40 connections announce 100 MiB and send 4 MiB of it, then stall. At most
    // queued.max.request.bytes (256 MiB) of frames is taken at once: the rest wait unread.
    let chunk = vec![0u8; 4 << 20];
    let mut stalled: Vec<Client> = (0..40)
        .map(|_| {
            let mut c = Client::connect(&addr);
            c.set_write_timeout(Some(Duration::from_millis(200)));
            c.send_raw(&announce).unwrap();
            let _ = c.send_raw(&chunk); // may block once unread: the node is not reading
            c
        })
        .collect();
    std::thread::sleep(Duration::from_secs(1));
    let grown = rss_bytes(pid).saturating_sub(before);
    assert!(
        grown < 96 << 20,
        "40 partly sent 100 MiB frames grew the node by {} MiB",
        grown >> 20
    );
    // After connections.max.idle.ms without bytes, the stalled frames' connections are
    // closed (the first two held the budget; the others follow as they get it).
    // (The read waits up to 30 s, so a prompt end is the node closing, not the timeout.)
    let started = Instant::now();
    assert!(stalled[0].is_closed_by_peer());
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "a stalled frame's connection stays open"
    );
    stalled.clear();
    idle.clear();
    assert_cluster_serving(&mut cluster);
    assert!(cluster.nodes.iter_mut().all(|n| n.is_running()));
}
