//! Retention on a running node: whole old segments go by retention.bytes and retention.ms,
//! the log start offset follows, and the active segment always stays.

use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::records::Compression;

use crate::client::Client;
use crate::harness::{kafka_ok, Node};

fn segment_files(node: &Node, dir: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(node.data_dir().join(dir))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.ends_with(".log"))
        .collect();
    names.sort();
    names
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn retention_deletes_old_segments_but_never_the_active_one() {
    let node = Node::start(&[("log.retention.check.interval.ms", "100")]);
    let bs = node.bootstrap();
    kafka_ok(
        "topics",
        &[
            "--bootstrap-server",
            &bs,
            "--create",
            "--topic",
            "ret",
            "--config",
            "segment.bytes=1048576",
            "--config",
            "retention.bytes=1048576",
        ],
    );
    let mut c = Client::connect(&bs);
    let value = Bytes::from(vec![b'r'; 1000]);
    for _ in 0..40 {
        let values: Vec<Bytes> = (0..100).map(|_| value.clone()).collect();
        let (err, _) = c.produce("ret", 0, &values, 1, Compression::None).unwrap();
        assert_eq!(err, 0);
    }
    let (_, end) = c.list_offset("ret", 0, -1);
    assert_eq!(end, 4000);
    // retention.bytes: the oldest segments go while the log exceeds 1 MiB by a whole segment.
    wait_for("size-based retention", || c.list_offset("ret", 0, -2).1 > 0);
    let files = segment_files(&node, "ret-0");
    assert!(files.len() >= 2, "{files:?}");
    let (_, start) = c.list_offset("ret", 0, -2);
    assert_eq!(
        format!("{start:020}.log"),
        files[0],
        "the log start offset is the first remaining segment"
    );
    let records = c.read_all("ret", 0, start);
    assert_eq!(
        records.len() as i64,
        end - start,
        "everything from the new start is readable"
    );

    // retention.ms: every non-active segment is past 1 s; only the active one remains.
    kafka_ok(
        "configs",
        &[
            "--bootstrap-server",
            &bs,
            "--entity-type",
            "topics",
            "--entity-name",
            "ret",
            "--alter",
            "--add-config",
            "retention.ms=1000",
        ],
    );
    wait_for("time-based retention", || {
        segment_files(&node, "ret-0").len() == 1
    });
    let files = segment_files(&node, "ret-0");
    let (_, start) = c.list_offset("ret", 0, -2);
    assert_eq!(format!("{start:020}.log"), files[0]);
    assert!(
        start > 0 && start < end,
        "the active segment keeps its records: start {start}, end {end}"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        segment_files(&node, "ret-0").len(),
        1,
        "the active segment is never deleted"
    );
    let (err, base) = c.produce("ret", 0, &[value], 1, Compression::None).unwrap();
    assert_eq!((err, base), (0, end));
}
