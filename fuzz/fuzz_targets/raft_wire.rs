//! Raft RPC frames and stored Raft values: the decoders of raft/src/wire.rs and codec.rs, on
//! the server side (request frames), the client side (response frames) and the log store's
//! reads (entries, vote, log ids). Errors are answers; a panic or an unbounded allocation is a
//! bug.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOC: gregor_fuzz::BoundedAlloc = gregor_fuzz::BoundedAlloc;

fuzz_target!(|data: &[u8]| {
    let _ = gregor_raft::fuzzing::decode_request_frame(data);
    let _ = gregor_raft::fuzzing::decode_response_frame(data);
    // Stored values have no frame header; an input past a request header is also read as one.
    let _ = gregor_raft::fuzzing::decode_stored(data);
    if let Some(payload) = data.get(9..) {
        let _ = gregor_raft::fuzzing::decode_stored(payload);
    }
});
