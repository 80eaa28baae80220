//! Decoding entry points for the fuzz targets (`fuzz/` at the repository root): every way bytes
//! from a peer or from disk are decoded, without a running Raft node. Not part of the API the
//! broker uses.

use openraft::error::{Fatal, InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{Entry, LogId, Vote};

use crate::codec;
use crate::types::{NodeId, TypeConfig};
use crate::wire::{self, RpcKind, RpcStatus};

/// Decodes a request frame body (the bytes after the 4-byte size) as the server does before
/// it hands the request to openraft; the error says why it was refused.
pub fn decode_request_frame(body: &[u8]) -> Result<(), String> {
    let (header, payload) = wire::decode_request(body).map_err(|e| e.to_string())?;
    let decoded = match header.kind {
        RpcKind::AppendEntries => {
            codec::decode::<AppendEntriesRequest<TypeConfig>>(payload).map(drop)
        }
        RpcKind::Vote => codec::decode::<VoteRequest<NodeId>>(payload).map(drop),
        RpcKind::InstallSnapshot => {
            codec::decode::<InstallSnapshotRequest<TypeConfig>>(payload).map(drop)
        }
    };
    decoded.map_err(|e| e.to_string())
}

/// Decodes a response frame body as the client side does for each kind of RPC: the answer
/// with status Ok, the Raft error with status RaftError. Returns how many of the three
/// readings succeeded.
pub fn decode_response_frame(body: &[u8]) -> Result<usize, String> {
    let (_, status, payload) = wire::decode_response(body).map_err(|e| e.to_string())?;
    let readings = match status {
        RpcStatus::Ok => [
            codec::decode::<AppendEntriesResponse<NodeId>>(payload).is_ok(),
            codec::decode::<VoteResponse<NodeId>>(payload).is_ok(),
            codec::decode::<InstallSnapshotResponse<NodeId>>(payload).is_ok(),
        ],
        RpcStatus::RaftError => [
            codec::decode::<Fatal<NodeId>>(payload).is_ok(),
            codec::decode::<RaftError<NodeId, InstallSnapshotError>>(payload).is_ok(),
            false,
        ],
        RpcStatus::Error => [std::str::from_utf8(payload).is_ok(); 3],
    };
    Ok(readings.iter().filter(|ok| **ok).count())
}

/// Decodes the values the log store reads back from RocksDB: a log entry, the vote, a log id
/// (committed index, last purged). Returns how many of the readings succeeded.
pub fn decode_stored(bytes: &[u8]) -> usize {
    [
        codec::decode::<Entry<TypeConfig>>(bytes).is_ok(),
        codec::decode::<Vote<NodeId>>(bytes).is_ok(),
        codec::decode::<Option<LogId<NodeId>>>(bytes).is_ok(),
    ]
    .iter()
    .filter(|ok| **ok)
    .count()
}
