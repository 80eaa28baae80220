//! Server side of the Raft RPC transport: decoding request frames, handing them to openraft,
//! encoding the answers, and a listener loop for a dedicated port.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use openraft::error::RaftError;
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use openraft::Raft;
use serde::Serialize;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};

use crate::codec;
use crate::quorum::MetadataQuorum;
use crate::types::{NodeId, TypeConfig};
use crate::wire::{self, RpcKind, RpcStatus, WireError};

/// Most concurrent connections `serve_rpc` serves; each peer needs one, a handful more cover
/// reconnections whose old connection the listener has not noticed closing yet.
pub(crate) const RPC_CONNECTIONS_MAX: usize = 16;

/// Longest pause between failed accepts.
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Answers one request frame body (the bytes after the 4-byte size) with a response frame body.
/// Never panics on malformed input: a frame that cannot be decoded gets an error status.
pub(crate) async fn handle_frame(raft: &Raft<TypeConfig>, frame: &[u8]) -> Bytes {
    let (header, payload) = match wire::decode_request(frame) {
        Ok(decoded) => decoded,
        Err(e) => {
            tracing::warn!(error = %e, "malformed Raft RPC frame");
            let correlation_id = wire::peek_correlation_id(frame).unwrap_or(-1);
            return error_response(correlation_id, &e);
        }
    };
    let correlation_id = header.correlation_id;
    let answered = match header.kind {
        RpcKind::AppendEntries => {
            match codec::decode::<AppendEntriesRequest<TypeConfig>>(payload) {
                Ok(request) => encode_answer(raft.append_entries(request).await),
                Err(e) => Err(e.into()),
            }
        }
        RpcKind::Vote => match codec::decode::<VoteRequest<NodeId>>(payload) {
            Ok(request) => encode_answer(raft.vote(request).await),
            Err(e) => Err(e.into()),
        },
        RpcKind::InstallSnapshot => {
            match codec::decode::<InstallSnapshotRequest<TypeConfig>>(payload) {
                Ok(request) => encode_answer(raft.install_snapshot(request).await),
                Err(e) => Err(e.into()),
            }
        }
    };
    match answered {
        Ok((status, body)) => wire::encode_response(correlation_id, status, &body),
        Err(e) => {
            tracing::warn!(kind = ?header.kind, error = %e, "undecodable Raft RPC");
            error_response(correlation_id, &e)
        }
    }
}

fn error_response(correlation_id: i32, error: &WireError) -> Bytes {
    wire::encode_response(
        correlation_id,
        RpcStatus::Error,
        error.to_string().as_bytes(),
    )
}

/// Serialises openraft's answer: the response with status Ok, or the Raft error with status
/// RaftError (the caller's openraft decides what a remote error means).
fn encode_answer<Resp, E>(
    answer: Result<Resp, RaftError<NodeId, E>>,
) -> Result<(RpcStatus, Vec<u8>), WireError>
where
    Resp: Serialize,
    E: std::error::Error + Serialize,
{
    Ok(match answer {
        Ok(response) => (RpcStatus::Ok, codec::encode(&response)?),
        Err(error) => (RpcStatus::RaftError, codec::encode(&error)?),
    })
}

/// Serves Raft RPCs on a dedicated listener until the quorum shuts down: reads size-prefixed
/// frames, answers each through [`MetadataQuorum::handle_rpc_frame`], in order per connection.
///
/// At most 16 connections (`RPC_CONNECTIONS_MAX`) are served at once (further ones wait in the
/// listen backlog); a connection that sends a malformed size prefix is closed.
pub async fn serve_rpc(listener: TcpListener, quorum: Arc<MetadataQuorum>) {
    let mut shutdown = quorum.shutdown_signal();
    let permits = Arc::new(Semaphore::new(RPC_CONNECTIONS_MAX));
    let mut backoff = Duration::from_millis(10);
    tracing::info!(
        node_id = quorum.node_id(),
        addr = ?listener.local_addr().ok(),
        "serving Raft RPCs"
    );
    loop {
        let permit = tokio::select! {
            _ = wait_for_shutdown(&mut shutdown) => break,
            permit = Arc::clone(&permits).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let accepted = tokio::select! {
            _ = wait_for_shutdown(&mut shutdown) => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer_addr) = match accepted {
            Ok(accepted) => {
                backoff = Duration::from_millis(10);
                accepted
            }
            Err(e) => {
                tracing::warn!(error = %e, ?backoff, "accepting a Raft RPC connection failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                continue;
            }
        };
        let quorum = Arc::clone(&quorum);
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            match serve_connection(stream, &quorum, shutdown).await {
                Ok(()) => {}
                Err(WireError::Io(e)) => {
                    tracing::debug!(%peer_addr, error = %e, "Raft RPC connection closed");
                }
                Err(e) => {
                    tracing::warn!(%peer_addr, error = %e, "closing a Raft RPC connection");
                }
            }
            drop(permit);
        });
    }
    tracing::info!(node_id = quorum.node_id(), "stopped serving Raft RPCs");
}

/// Resolves once the quorum is shutting down (or its signal is gone).
async fn wait_for_shutdown(shutdown: &mut watch::Receiver<bool>) {
    // An error means the sender is gone, which also means shutdown.
    let _ = shutdown.wait_for(|stopped| *stopped).await;
}

async fn serve_connection(
    mut stream: TcpStream,
    quorum: &MetadataQuorum,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), WireError> {
    stream.set_nodelay(true)?;
    loop {
        let frame = tokio::select! {
            _ = wait_for_shutdown(&mut shutdown) => return Ok(()),
            frame = wire::read_frame(&mut stream) => frame?,
        };
        let Some(frame) = frame else {
            return Ok(());
        };
        let response = quorum.handle_rpc_frame(Bytes::from(frame)).await;
        wire::write_frame(&mut stream, &response).await?;
    }
}
