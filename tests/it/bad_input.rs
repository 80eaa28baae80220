//! Bad input gets Kafka's answer or a closed connection, never a crash, and the node keeps
//! serving other clients.

use bytes::{BufMut, BytesMut};
use kafka_protocol::messages::{
    ApiVersionsRequest, ApiVersionsResponse, MetadataRequest, ResponseHeader,
};
use kafka_protocol::protocol::Decodable;

use crate::client::Client;
use crate::harness::Node;

fn frame(body: &[u8]) -> Vec<u8> {
    let mut v = (body.len() as i32).to_be_bytes().to_vec();
    v.extend_from_slice(body);
    v
}

/// A request header v1: api key, version, correlation id, client id "t".
fn header(api_key: i16, version: i16) -> BytesMut {
    let mut b = BytesMut::new();
    b.put_i16(api_key);
    b.put_i16(version);
    b.put_i32(7);
    b.put_i16(1);
    b.put_u8(b't');
    b
}

fn assert_still_serving(node: &mut Node) {
    assert!(node.is_running(), "node died");
    let mut c = Client::connect(&node.bootstrap());
    let resp = c
        .request(&ApiVersionsRequest::default(), 3)
        .expect("ApiVersions after bad input");
    assert_eq!(resp.error_code, 0);
    let meta = c
        .request(&MetadataRequest::default().with_topics(None), 12)
        .expect("Metadata after bad input");
    assert_eq!(meta.brokers.len(), 1);
}

#[test]
fn bad_frames_close_only_their_connection() {
    let mut node = Node::start(&[("socket.request.max.bytes", "1048576")]);
    let addr = node.bootstrap();

    // Garbage bytes: a size followed by noise that is no request header.
    let mut c = Client::connect(&addr);
    c.send_raw(&frame(&[
        0xde, 0xad, 0xbe, 0xef, 0x00, 0x01, 0x02, 0x03, 0xff, 0xff,
    ]))
    .unwrap();
    assert!(c.is_closed_by_peer(), "garbage must close the connection");
    assert_still_serving(&mut node);

    // Pure noise, including a negative size.
    let mut c = Client::connect(&addr);
    c.send_raw(&[0xff, 0xff, 0xff, 0xf0, 1, 2, 3]).unwrap();
    assert!(c.is_closed_by_peer());
    assert_still_serving(&mut node);

    // A truncated frame: the size promises more than ever arrives, then the client hangs up.
    let mut c = Client::connect(&addr);
    let mut partial = frame(&header(18, 3));
    partial[3] += 20;
    c.send_raw(&partial).unwrap();
    drop(c);
    assert_still_serving(&mut node);

    // An oversized frame (over socket.request.max.bytes) is refused before it is read.
    let mut c = Client::connect(&addr);
    c.send_raw(&(64 * 1024 * 1024i32).to_be_bytes()).unwrap();
    assert!(
        c.is_closed_by_peer(),
        "oversized frame must close the connection"
    );
    assert_still_serving(&mut node);

    // An unknown API key.
    let mut c = Client::connect(&addr);
    c.send_raw(&frame(&header(9999, 0))).unwrap();
    assert!(c.is_closed_by_peer());
    assert_still_serving(&mut node);

    // A known API this broker does not serve.
    let mut c = Client::connect(&addr);
    c.send_raw(&frame(&header(7, 3))).unwrap(); // ControlledShutdown
    assert!(c.is_closed_by_peer());
    assert_still_serving(&mut node);

    // A malformed body: Metadata v4 whose topic array claims a million entries.
    let mut c = Client::connect(&addr);
    let mut b = header(3, 4);
    b.put_i32(1_000_000);
    b.put_i16(5);
    c.send_raw(&frame(&b)).unwrap();
    assert!(c.is_closed_by_peer());
    assert_still_serving(&mut node);

    // Produce v2 (removed by Kafka 4.x, KIP-896) and Metadata v99 are closed.
    for (key, version) in [(0i16, 2i16), (3, 99)] {
        let mut c = Client::connect(&addr);
        c.send_raw(&frame(&header(key, version))).unwrap();
        assert!(c.is_closed_by_peer(), "api {key} v{version}");
        assert_still_serving(&mut node);
    }
}

#[test]
fn unsupported_api_versions_version_gets_the_key_list() {
    let node = Node::start(&[]);
    let mut c = Client::connect(&node.bootstrap());
    // ApiVersions v99: header v2 (flexible), empty tagged fields, empty body.
    let mut b = BytesMut::new();
    b.put_i16(18);
    b.put_i16(99);
    b.put_i32(42);
    b.put_i16(-1);
    b.put_u8(0);
    c.send_raw(&frame(&b)).unwrap();
    let mut resp = c.read_frame().expect("a response, not a closed connection");
    let header = ResponseHeader::decode(&mut resp, 0).unwrap();
    assert_eq!(header.correlation_id, 42);
    let body = ApiVersionsResponse::decode(&mut resp, 0).unwrap();
    assert_eq!(body.error_code, 35, "UNSUPPORTED_VERSION");
    let av = body
        .api_keys
        .iter()
        .find(|k| k.api_key == 18)
        .expect("ApiVersions listed");
    assert_eq!((av.min_version, av.max_version), (0, 4));
    let produce = body
        .api_keys
        .iter()
        .find(|k| k.api_key == 0)
        .expect("Produce listed");
    assert_eq!((produce.min_version, produce.max_version), (0, 12));
}

#[test]
fn unknown_topic_and_partition_get_kafka_errors() {
    let node = Node::start(&[("auto.create.topics.enable", "false")]);
    let mut c = Client::connect(&node.bootstrap());
    let (err, _) = c
        .produce(
            "nope",
            0,
            &[bytes::Bytes::from_static(b"x")],
            1,
            kafka_protocol::records::Compression::None,
        )
        .unwrap();
    assert_eq!(err, 3, "UNKNOWN_TOPIC_OR_PARTITION");
    c.create_topic("one", 1);
    let (err, _) = c
        .produce(
            "one",
            5,
            &[bytes::Bytes::from_static(b"x")],
            1,
            kafka_protocol::records::Compression::None,
        )
        .unwrap();
    assert_eq!(err, 3);
    let (err, _, _) = c.fetch("one", 0, 100, 0).unwrap();
    assert_eq!(err, 1, "OFFSET_OUT_OF_RANGE");
    // A batch with a bad CRC is refused as CORRUPT_MESSAGE and nothing is appended.
    let mut batch = crate::client::encode_batch(
        &[bytes::Bytes::from_static(b"payload")],
        kafka_protocol::records::Compression::None,
    )
    .to_vec();
    let last = batch.len() - 1;
    batch[last] ^= 0xff;
    let req = kafka_protocol::messages::ProduceRequest::default()
        .with_acks(1)
        .with_timeout_ms(1000)
        .with_topic_data(vec![
            kafka_protocol::messages::produce_request::TopicProduceData::default()
                .with_name(kafka_protocol::messages::TopicName(
                    kafka_protocol::protocol::StrBytes::from_static_str("one"),
                ))
                .with_partition_data(vec![
                    kafka_protocol::messages::produce_request::PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(batch.into())),
                ]),
        ]);
    let resp = c.request(&req, 9).unwrap();
    assert_eq!(
        resp.responses[0].partition_responses[0].error_code, 2,
        "CORRUPT_MESSAGE"
    );
    let (err, hw, records) = c.fetch("one", 0, 0, 0).unwrap();
    assert_eq!((err, hw, records.len()), (0, 0, 0));

    // A CreateTime two hours ahead is past message.timestamp.after.max.ms (1 hour).
    let future = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
        + 2 * 3_600_000;
    let batch = crate::client::encode_batch_at(
        &[bytes::Bytes::from_static(b"later")],
        kafka_protocol::records::Compression::None,
        future,
    );
    let req = kafka_protocol::messages::ProduceRequest::default()
        .with_acks(1)
        .with_timeout_ms(1000)
        .with_topic_data(vec![
            kafka_protocol::messages::produce_request::TopicProduceData::default()
                .with_name(kafka_protocol::messages::TopicName(
                    kafka_protocol::protocol::StrBytes::from_static_str("one"),
                ))
                .with_partition_data(vec![
                    kafka_protocol::messages::produce_request::PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(batch)),
                ]),
        ]);
    let resp = c.request(&req, 9).unwrap();
    assert_eq!(
        resp.responses[0].partition_responses[0].error_code, 32,
        "INVALID_TIMESTAMP"
    );
}
