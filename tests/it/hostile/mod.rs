//! Hostile and careless input against a three-node cluster: every case gets Kafka's error
//! code (or, for a frame that cannot be parsed, a closed connection), and every node keeps
//! serving afterwards. One submodule per area:
//!
//! - `controller`: requests whose metadata records the controller must bound (CreateTopics,
//!   CreatePartitions, ElectLeaders, IncrementalAlterConfigs, AlterPartition, assignments);
//! - `wire`: malformed and oversized fields inside otherwise valid frames, absurd counts;
//! - `produce`: record batches that Kafka's LogValidator refuses;
//! - `config`: configurations a node must refuse at start.

mod config;
mod controller;
mod produce;
mod wire;

use std::time::Duration;

use bytes::{BufMut, BytesMut};
use kafka_protocol::messages::{ApiVersionsRequest, MetadataRequest};

use crate::client::Client;
use crate::harness::Cluster;

/// A size-prefixed frame around `body`.
#[allow(dead_code)] // used by the wire cases
pub fn frame(body: &[u8]) -> Vec<u8> {
    let mut v = (body.len() as i32).to_be_bytes().to_vec();
    v.extend_from_slice(body);
    v
}

/// A request header v1 (api key, version, correlation id 7, client id "t"), to which a test
/// appends a hand-made body.
#[allow(dead_code)] // used by the wire cases
pub fn header_v1(api_key: i16, version: i16) -> BytesMut {
    let mut b = BytesMut::new();
    b.put_i16(api_key);
    b.put_i16(version);
    b.put_i32(7);
    b.put_i16(1);
    b.put_u8(b't');
    b
}

/// A request header v2 (flexible versions): header v1 plus an empty tagged-field section.
#[allow(dead_code)] // used by the wire cases
pub fn header_v2(api_key: i16, version: i16) -> BytesMut {
    let mut b = header_v1(api_key, version);
    b.put_u8(0);
    b
}

/// Every node of the cluster is alive and answers ApiVersions and Metadata listing all the
/// cluster's brokers: the hostile input took no node down.
pub fn assert_cluster_serving(cluster: &mut Cluster) {
    let size = cluster.nodes.len();
    for node in cluster.nodes.iter_mut() {
        assert!(node.is_running(), "node {} died", node.node_id);
        let mut c = Client::connect(&node.bootstrap());
        let versions = c
            .request(&ApiVersionsRequest::default(), 3)
            .unwrap_or_else(|e| panic!("node {}: ApiVersions failed: {e}", node.node_id));
        assert_eq!(versions.error_code, 0);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let meta = c
                .request(&MetadataRequest::default().with_topics(None), 12)
                .unwrap_or_else(|e| panic!("node {}: Metadata failed: {e}", node.node_id));
            if meta.brokers.len() == size {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "node {} lists {} of {size} brokers",
                node.node_id,
                meta.brokers.len()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}
