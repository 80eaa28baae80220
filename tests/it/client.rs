//! A minimal blocking Kafka client over raw sockets, built on the kafka-protocol crate, for
//! tests that need exact control: acknowledged offsets, malformed frames, exact versions.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use indexmap::IndexMap;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

pub struct Client {
    stream: TcpStream,
    correlation_id: i32,
}

impl Client {
    pub fn connect(addr: &str) -> Client {
        let stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        stream.set_nodelay(true).unwrap();
        Client {
            stream,
            correlation_id: 0,
        }
    }

    pub fn try_connect(addr: &str) -> std::io::Result<Client> {
        let stream = TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(2)))?;
        stream.set_nodelay(true)?;
        Ok(Client {
            stream,
            correlation_id: 0,
        })
    }

    /// Bounds how long `send_raw` may block on a peer that does not read.
    pub fn set_write_timeout(&mut self, timeout: Option<Duration>) {
        self.stream.set_write_timeout(timeout).unwrap();
    }

    /// Sends raw bytes as they are (no size prefix added).
    pub fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Reads one response frame; Err when the broker closed the connection.
    pub fn read_frame(&mut self) -> std::io::Result<Bytes> {
        let mut size = [0u8; 4];
        self.stream.read_exact(&mut size)?;
        let mut buf = vec![0u8; i32::from_be_bytes(size) as usize];
        self.stream.read_exact(&mut buf)?;
        Ok(Bytes::from(buf))
    }

    /// True when the broker has closed the connection (EOF or reset).
    pub fn is_closed_by_peer(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.stream.read(&mut b), Ok(0) | Err(_))
    }

    pub fn request<R: Request>(&mut self, req: &R, version: i16) -> std::io::Result<R::Response> {
        self.correlation_id += 1;
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("gregor-it")));
        let mut buf = BytesMut::new();
        buf.put_i32(0);
        header.encode(&mut buf, R::header_version(version)).unwrap();
        req.encode(&mut buf, version).unwrap();
        let len = (buf.len() - 4) as i32;
        buf[..4].copy_from_slice(&len.to_be_bytes());
        self.stream.write_all(&buf)?;
        let mut frame = self.read_frame()?;
        let _ = ResponseHeader::decode(&mut frame, R::Response::header_version(version)).unwrap();
        Ok(R::Response::decode(&mut frame, version).expect("decode response"))
    }

    pub fn create_topic(&mut self, name: &str, partitions: i32) {
        let req = CreateTopicsRequest::default()
            .with_topics(vec![CreatableTopic::default()
                .with_name(TopicName(StrBytes::from_string(name.into())))
                .with_num_partitions(partitions)
                .with_replication_factor(-1)])
            .with_timeout_ms(10_000);
        let resp = self.request(&req, 7).unwrap();
        assert_eq!(
            resp.topics[0].error_code, 0,
            "create topic {name}: {:?}",
            resp.topics[0].error_message
        );
    }

    /// Produces one batch; returns (error code, base offset).
    pub fn produce(
        &mut self,
        topic: &str,
        partition: i32,
        values: &[Bytes],
        acks: i16,
        compression: Compression,
    ) -> std::io::Result<(i16, i64)> {
        let batch = encode_batch(values, compression);
        let req = ProduceRequest::default()
            .with_acks(acks)
            .with_timeout_ms(10_000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_string(topic.into())))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(partition)
                    .with_records(Some(batch))])]);
        let resp = self.request(&req, 9)?;
        let p = &resp.responses[0].partition_responses[0];
        Ok((p.error_code, p.base_offset))
    }

    /// Fetches from `offset`; returns (error code, high watermark, records as (offset, value)).
    pub fn fetch(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_wait_ms: i32,
    ) -> std::io::Result<(i16, i64, Vec<(i64, Bytes)>)> {
        let req = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(max_wait_ms)
            .with_min_bytes(1)
            .with_max_bytes(50 << 20)
            .with_topics(vec![FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_string(topic.into())))
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(partition)
                    .with_fetch_offset(offset)
                    .with_partition_max_bytes(10 << 20)])]);
        let resp = self.request(&req, 12)?;
        let p = &resp.responses[0].partitions[0];
        let mut out = Vec::new();
        if let Some(records) = &p.records {
            let mut buf = records.clone();
            while buf.remaining() > 0 {
                let set = RecordBatchDecoder::decode(&mut buf).expect("decode fetched batch");
                for r in set.records {
                    out.push((r.offset, r.value.unwrap_or_default()));
                }
            }
        }
        Ok((p.error_code, p.high_watermark, out))
    }

    /// ListOffsets for one partition: -1 latest, -2 earliest, or a timestamp.
    pub fn list_offset(&mut self, topic: &str, partition: i32, timestamp: i64) -> (i16, i64) {
        use kafka_protocol::messages::list_offsets_request::{
            ListOffsetsPartition, ListOffsetsTopic,
        };
        let req = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![ListOffsetsTopic::default()
                .with_name(TopicName(StrBytes::from_string(topic.into())))
                .with_partitions(vec![ListOffsetsPartition::default()
                    .with_partition_index(partition)
                    .with_timestamp(timestamp)])]);
        let resp = self.request(&req, 7).unwrap();
        let p = &resp.topics[0].partitions[0];
        (p.error_code, p.offset)
    }

    /// Reads a whole partition from `from` to its high watermark.
    pub fn read_all(&mut self, topic: &str, partition: i32, from: i64) -> Vec<(i64, Bytes)> {
        let mut out: Vec<(i64, Bytes)> = Vec::new();
        let mut offset = from;
        loop {
            let (err, hw, records) = self.fetch(topic, partition, offset, 100).unwrap();
            assert_eq!(err, 0, "fetch error at offset {offset}");
            for (o, v) in records {
                if o >= offset {
                    out.push((o, v));
                    offset = o + 1;
                }
            }
            if offset >= hw {
                return out;
            }
        }
    }
}

/// A v2 record batch of `values`, offsets from 0, no producer id, timestamped now.
pub fn encode_batch(values: &[Bytes], compression: Compression) -> Bytes {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    encode_batch_at(values, compression, now)
}

/// A v2 record batch of `values` with every record timestamped `timestamp_ms`.
pub fn encode_batch_at(values: &[Bytes], compression: Compression, timestamp_ms: i64) -> Bytes {
    let now = timestamp_ms;
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, v)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // The encoder groups records whose offset - sequence is constant into one batch,
            // and takes the batch's base sequence from the first: -1 means "no sequence".
            sequence: i as i32 - 1,
            timestamp: now,
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
            compression,
        },
    )
    .unwrap();
    buf.freeze()
}
