//! kill -9 while a client produces with acks=1: after restart every acknowledged record is
//! at its acknowledged offset, and new offsets continue from the end.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::records::Compression;

use crate::client::Client;
use crate::harness::Node;

#[test]
fn acknowledged_records_survive_kill_9() {
    let mut node = Node::start(&[]);
    let addr = node.bootstrap();
    Client::connect(&addr).create_topic("crash", 1);

    // offset -> value of every acknowledged record.
    let acked: Arc<Mutex<BTreeMap<i64, Bytes>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let producer = {
        let (acked, stop, addr) = (acked.clone(), stop.clone(), addr.clone());
        std::thread::spawn(move || {
            let mut c = Client::connect(&addr);
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let values: Vec<Bytes> = (0..10)
                    .map(|i| Bytes::from(format!("v-{n}-{i}-{}", "p".repeat(200))))
                    .collect();
                n += 1;
                match c.produce("crash", 0, &values, 1, Compression::None) {
                    Ok((0, base)) => {
                        let mut a = acked.lock().unwrap();
                        for (i, v) in values.into_iter().enumerate() {
                            a.insert(base + i as i64, v);
                        }
                    }
                    Ok((err, _)) => panic!("produce error {err}"),
                    Err(_) => return, // the node died mid-request: not acknowledged
                }
            }
        })
    };
    // Let it produce, then kill the node hard while requests are in flight.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while acked.lock().unwrap().len() < 5_000 {
        assert!(!producer.is_finished(), "producer stopped early");
        assert!(std::time::Instant::now() < deadline, "producer too slow");
        std::thread::sleep(Duration::from_millis(10));
    }
    node.kill();
    stop.store(true, Ordering::Relaxed);
    producer.join().unwrap();
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 5_000);

    node.restart();
    let mut c = Client::connect(&addr);
    let log: BTreeMap<i64, Bytes> = c.read_all("crash", 0, 0).into_iter().collect();
    for (offset, value) in &acked {
        assert_eq!(
            log.get(offset),
            Some(value),
            "acknowledged record at offset {offset} lost or changed"
        );
    }
    // Offsets are dense from 0, and new appends continue from the end.
    let end = *log.keys().last().unwrap() + 1;
    assert_eq!(log.len() as i64, end, "holes in the recovered log");
    let (err, base) = c
        .produce(
            "crash",
            0,
            &[Bytes::from_static(b"after")],
            1,
            Compression::None,
        )
        .unwrap();
    assert_eq!((err, base), (0, end));
}

#[test]
fn torn_tail_after_crash_is_truncated_and_offsets_continue() {
    let mut node = Node::start(&[]);
    let addr = node.bootstrap();
    let mut c = Client::connect(&addr);
    c.create_topic("torn", 1);
    for i in 0..20 {
        let (err, base) = c
            .produce(
                "torn",
                0,
                &[Bytes::from(format!("r{i}"))],
                1,
                Compression::None,
            )
            .unwrap();
        assert_eq!((err, base), (0, i));
    }
    drop(c);
    node.kill();
    // Cut the last batch in half, as a crash in the middle of a write would.
    let seg = node
        .data_dir()
        .join("torn-0")
        .join("00000000000000000000.log");
    let len = std::fs::metadata(&seg).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
    f.set_len(len - 20).unwrap();
    drop(f);
    node.restart();
    let mut c = Client::connect(&addr);
    let log = c.read_all("torn", 0, 0);
    assert_eq!(
        log.len(),
        19,
        "the torn last batch is dropped, the rest kept"
    );
    for (i, (offset, value)) in log.iter().enumerate() {
        assert_eq!(
            (*offset, value.as_ref()),
            (i as i64, format!("r{i}").as_bytes())
        );
    }
    let (err, base) = c
        .produce(
            "torn",
            0,
            &[Bytes::from_static(b"next")],
            1,
            Compression::None,
        )
        .unwrap();
    assert_eq!((err, base), (0, 19));
}
