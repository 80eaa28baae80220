//! A non-Java client: confluent-kafka (librdkafka) produces with every codec and reads back.

use std::process::Command;

use crate::harness::{python, repo_root, Node};

#[test]
fn confluent_kafka_round_trips_every_compression_codec() {
    let node = Node::start(&[]);
    let out = Command::new(python())
        .arg(repo_root().join("tests/python/compression_roundtrip.py"))
        .arg(node.bootstrap())
        .output()
        .expect("run python client");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "python client failed:\n{stdout}\n{stderr}"
    );
    for codec in ["gzip", "snappy", "lz4", "zstd"] {
        assert!(
            stdout.contains(&format!("{codec}: ok")),
            "{codec} missing:\n{stdout}\n{stderr}"
        );
    }
}
