//! Record batches as a producer or a leader sends them: split and checked by the storage
//! crate (header, framing, CRC, record counts), appended to a real partition log as leader and
//! as follower, and decoded record by record (with decompression) by kafka-protocol.
//! Refusals are errors; a panic, an abort or an unbounded allocation is a bug.

#![no_main]

use std::sync::{Mutex, OnceLock};

use bytes::Bytes;
use gregor_storage::{batches, verify_crc, Log, LogConfig};
use kafka_protocol::records::RecordBatchDecoder;
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOC: gregor_fuzz::BoundedAlloc = gregor_fuzz::BoundedAlloc;

struct Logs {
    leader: Log,
    follower: Log,
    _dir: tempfile::TempDir,
}

fn logs() -> &'static Mutex<Logs> {
    static LOGS: OnceLock<Mutex<Logs>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temporary directory");
        let config = LogConfig {
            segment_bytes: 1 << 20,
            ..LogConfig::default()
        };
        let leader = Log::open(&dir.path().join("leader-0"), config.clone(), 0).expect("log");
        let follower = Log::open(&dir.path().join("follower-0"), config, 0).expect("log");
        Mutex::new(Logs {
            leader,
            follower,
            _dir: dir,
        })
    })
}

fuzz_target!(|data: &[u8]| {
    for item in batches(data) {
        let Ok((header, range)) = item else { break };
        let _ = verify_crc(&data[range]);
        // last_sequence is defined for validated batches only (last_offset_delta >= 0): a
        // negative delta overflows in increment_sequence.
        if header.last_offset_delta >= 0 {
            let _ = header.last_sequence();
        }
        let _ = (header.compression(), header.is_control());
    }

    let mut guard = logs().lock().unwrap_or_else(|e| e.into_inner());
    let logs = &mut *guard;
    // Each input starts from empty logs, so a crash reproduces from its input alone.
    for log in [&mut logs.leader, &mut logs.follower] {
        if log.log_end_offset() != 0 || log.log_start_offset() != 0 {
            log.truncate_fully_and_start_at(0).expect("log reset");
        }
    }
    let now_ms = 1_700_000_000_000;
    let mut records = data.to_vec();
    let _ = logs.leader.append_as_leader(&mut records, 3, now_ms);
    let _ = logs.follower.append_as_follower(data, now_ms);
    drop(guard);

    let mut bytes = Bytes::copy_from_slice(data);
    let _ = RecordBatchDecoder::decode_all(&mut bytes);
});
