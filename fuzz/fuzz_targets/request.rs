//! A request frame (the bytes after the 4-byte size) decoded and served by a real single-node
//! broker inside this process, on the client listener and then on the controller listener.
//! No input may panic or abort the process, or make it allocate without bound.

#![no_main]

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use gregor::broker::Broker;
use gregor::embedded::EmbeddedBroker;
use gregor::handlers::{dispatch, ListenerKind};
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOC: gregor_fuzz::BoundedAlloc = gregor_fuzz::BoundedAlloc;

/// How long one response may take before it is dropped, as a closed connection would drop
/// it: long polls (Fetch max_wait_ms, Produce acks=all timeout_ms) come from the input.
const RESPONSE_BOUND: Duration = Duration::from_millis(200);

struct Harness {
    runtime: tokio::runtime::Runtime,
    broker: Arc<Broker>,
    _data_dir: tempfile::TempDir,
}

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let data_dir = tempfile::tempdir().expect("temporary data directory");
        let embedded = runtime
            .block_on(EmbeddedBroker::start(
                data_dir.path(),
                &[],
                Duration::from_secs(60),
            ))
            .expect("embedded broker");
        Harness {
            runtime,
            broker: embedded.broker,
            _data_dir: data_dir,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    // A Raft RPC frame comes from a voter, which Raft trusts to replicate the log: fed to the
    // live quorum, the fuzzer would act as a rival leader and rewrite the metadata the other
    // inputs run against. Its decoding is the raft_wire target's.
    if data.starts_with(&gregor_raft::RAFT_RPC_API_KEY.to_be_bytes()) {
        return;
    }
    let h = harness();
    let peer: SocketAddr = "127.0.0.1:40000".parse().expect("address");
    for listener in [ListenerKind::Broker, ListenerKind::Controller] {
        let frame = Bytes::copy_from_slice(data);
        h.runtime.block_on(async {
            let served = async { dispatch(&h.broker, frame, peer, listener).await.await };
            let _ = tokio::time::timeout(RESPONSE_BOUND, served).await;
        });
    }
});
