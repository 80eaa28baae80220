//! Client side of the Raft RPC transport: openraft's `RaftNetworkFactory` / `RaftNetwork` over
//! one reused TCP connection per peer.

use std::collections::BTreeMap;
use std::error::Error;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use openraft::error::{
    Infallible, InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError,
    RemoteError, Timeout, Unreachable,
};
use openraft::network::{Backoff, RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, RPCTypes};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::net::{TcpSocket, TcpStream};

use crate::codec;
use crate::types::{NodeId, TypeConfig};
use crate::wire::{self, RpcKind, RpcStatus, WireError};

/// Milliseconds since the Unix epoch, for reporting only.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as i64)
}

/// When the leader last heard from each follower, for DescribeQuorum.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PeerAcks {
    /// Last AppendEntries response from the peer, ms since the epoch; -1 never.
    pub(crate) last_fetch_timestamp_ms: i64,
    /// Last time the peer's log was seen to match the leader's, ms since the epoch; -1 never.
    pub(crate) last_caught_up_timestamp_ms: i64,
}

impl Default for PeerAcks {
    fn default() -> PeerAcks {
        PeerAcks {
            last_fetch_timestamp_ms: -1,
            last_caught_up_timestamp_ms: -1,
        }
    }
}

/// Acknowledgement times per peer, shared by the transport (which sees the responses) and the
/// quorum (which reports them).
///
/// # Invariants
/// Holds entries only for nodes this node sent AppendEntries to (members of the cluster), so it
/// is bounded by the membership; timestamps only move forward.
#[derive(Debug, Default)]
pub(crate) struct AckTracker {
    peers: Mutex<BTreeMap<NodeId, PeerAcks>>,
}

impl AckTracker {
    pub(crate) fn get(&self, node_id: NodeId) -> PeerAcks {
        let peers = self.peers.lock().unwrap_or_else(PoisonError::into_inner);
        peers.get(&node_id).copied().unwrap_or_default()
    }

    pub(crate) fn record_fetch(&self, node_id: NodeId, timestamp_ms: i64) {
        let mut peers = self.peers.lock().unwrap_or_else(PoisonError::into_inner);
        let acks = peers.entry(node_id).or_default();
        acks.last_fetch_timestamp_ms = acks.last_fetch_timestamp_ms.max(timestamp_ms);
    }

    pub(crate) fn record_caught_up(&self, node_id: NodeId, timestamp_ms: i64) {
        let mut peers = self.peers.lock().unwrap_or_else(PoisonError::into_inner);
        let acks = peers.entry(node_id).or_default();
        acks.last_caught_up_timestamp_ms = acks.last_caught_up_timestamp_ms.max(timestamp_ms);
    }
}

/// What the transport needs, shared by every client it hands out.
///
/// # Invariants
/// `peers` holds at most one connection slot per node id, created on demand for nodes that
/// openraft asks to reach (members of the cluster), so the number of connections is bounded by
/// the membership.
pub(crate) struct Transport {
    /// This node, for error reports.
    node_id: NodeId,
    /// Addresses from the static configuration; they win over the address in the membership.
    voters: BTreeMap<NodeId, SocketAddr>,
    /// Local address for outgoing sockets (fault tests cut links by source address).
    source_addr: Option<IpAddr>,
    /// How long openraft waits before retrying an unreachable peer.
    backoff: Duration,
    /// One connection slot per peer.
    peers: Mutex<BTreeMap<NodeId, Arc<Peer>>>,
    /// Where successful AppendEntries round trips are recorded.
    acks: Arc<AckTracker>,
    /// Source of correlation ids, so a response can be matched to its request.
    next_correlation_id: AtomicI32,
}

impl Transport {
    pub(crate) fn new(
        node_id: NodeId,
        voters: BTreeMap<NodeId, SocketAddr>,
        source_addr: Option<IpAddr>,
        backoff: Duration,
        acks: Arc<AckTracker>,
    ) -> Arc<Transport> {
        Arc::new(Transport {
            node_id,
            voters,
            source_addr,
            backoff,
            peers: Mutex::new(BTreeMap::new()),
            acks,
            next_correlation_id: AtomicI32::new(0),
        })
    }

    /// The connection slot for `target`, created on first use or when its address changed.
    fn peer(&self, target: NodeId, node: &BasicNode) -> Arc<Peer> {
        let addr = self
            .voters
            .get(&target)
            .copied()
            .or_else(|| node.addr.parse().ok());
        let mut peers = self.peers.lock().unwrap_or_else(PoisonError::into_inner);
        match peers.get(&target) {
            Some(peer) if peer.addr == addr => Arc::clone(peer),
            _ => {
                let peer = Arc::new(Peer {
                    addr,
                    connection: tokio::sync::Mutex::new(None),
                });
                peers.insert(target, Arc::clone(&peer));
                peer
            }
        }
    }
}

/// The connection to one peer, shared by every client openraft makes for that peer
/// (replication, elections, leadership checks). RPCs on it take turns: the slot is locked for
/// one request-response round trip.
///
/// # Invariants
/// A connection in the slot has no request in flight. A round trip takes the connection out of
/// the slot and puts it back only after reading the matching response, so a round trip that
/// fails or is cancelled by a timeout drops its connection and the next RPC reconnects.
struct Peer {
    /// Where the peer listens; None if its address could not be parsed.
    addr: Option<SocketAddr>,
    connection: tokio::sync::Mutex<Option<TcpStream>>,
}

pub(crate) struct NetworkFactory {
    transport: Arc<Transport>,
}

impl NetworkFactory {
    pub(crate) fn new(transport: Arc<Transport>) -> NetworkFactory {
        NetworkFactory { transport }
    }
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerClient {
        PeerClient {
            transport: Arc::clone(&self.transport),
            peer: self.transport.peer(target, node),
            target,
        }
    }
}

/// openraft's network client for one peer.
pub(crate) struct PeerClient {
    transport: Arc<Transport>,
    peer: Arc<Peer>,
    target: NodeId,
}

/// How one round trip failed, before it is mapped to openraft's `RPCError`.
#[derive(Debug, thiserror::Error)]
enum CallError {
    #[error("cannot connect: {0}")]
    Unreachable(std::io::Error),
    #[error("{0}")]
    Network(WireError),
    #[error("peer rejected the request: {0}")]
    Rejected(String),
    #[error("timed out")]
    Timeout,
    #[error("request does not fit in a frame: {0}")]
    TooLarge(WireError),
    #[error("response to correlation id {got} while waiting for {expected}")]
    Correlation { expected: i32, got: i32 },
}

/// The decoded answer of a round trip.
enum Answer<Resp, E: Error> {
    Ok(Resp),
    Raft(Box<RaftError<NodeId, E>>),
}

impl PeerClient {
    async fn connect(&self) -> Result<TcpStream, std::io::Error> {
        let addr = self.peer.addr.ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::AddrNotAvailable,
                format!("no address for node {}", self.target),
            )
        })?;
        let socket = match addr {
            SocketAddr::V4(_) => TcpSocket::new_v4()?,
            SocketAddr::V6(_) => TcpSocket::new_v6()?,
        };
        if let Some(ip) = self.transport.source_addr {
            socket.bind(SocketAddr::new(ip, 0))?;
        }
        let stream = socket.connect(addr).await?;
        stream.set_nodelay(true)?;
        tracing::debug!(target = self.target, %addr, "connected to Raft peer");
        Ok(stream)
    }

    /// Sends `frame` and reads the response body on `stream`.
    async fn round_trip(stream: &mut TcpStream, frame: &[u8]) -> Result<Vec<u8>, WireError> {
        use tokio::io::AsyncWriteExt;
        stream.write_all(frame).await?;
        stream.flush().await?;
        match wire::read_frame(stream).await? {
            Some(body) => Ok(body),
            None => Err(WireError::Io(std::io::ErrorKind::UnexpectedEof.into())),
        }
    }

    /// One request-response exchange, bounded by `ttl`. A cached connection that fails is
    /// replaced by a fresh one once (the peer may have restarted); Raft RPCs are safe to resend.
    async fn call<Req, Resp, E>(
        &self,
        kind: RpcKind,
        request: &Req,
        ttl: Duration,
    ) -> Result<Answer<Resp, E>, CallError>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: Error + DeserializeOwned,
    {
        let correlation_id = self
            .transport
            .next_correlation_id
            .fetch_add(1, Ordering::Relaxed);
        let frame =
            wire::encode_request(correlation_id, kind, request).map_err(CallError::TooLarge)?;
        let exchange = async {
            let mut slot = self.peer.connection.lock().await;
            let (mut stream, reused) = match slot.take() {
                Some(stream) => (stream, true),
                None => (self.connect().await.map_err(CallError::Unreachable)?, false),
            };
            let body = match Self::round_trip(&mut stream, &frame).await {
                Ok(body) => body,
                Err(e) if reused => {
                    tracing::debug!(target = self.target, error = %e, "reconnecting to Raft peer");
                    stream = self.connect().await.map_err(CallError::Unreachable)?;
                    Self::round_trip(&mut stream, &frame)
                        .await
                        .map_err(CallError::Network)?
                }
                Err(e) => return Err(CallError::Network(e)),
            };
            let (got, status, payload) =
                wire::decode_response(&body).map_err(CallError::Network)?;
            if got != correlation_id {
                return Err(CallError::Correlation {
                    expected: correlation_id,
                    got,
                });
            }
            let answer = match status {
                RpcStatus::Ok => {
                    Answer::Ok(codec::decode(payload).map_err(|e| CallError::Network(e.into()))?)
                }
                RpcStatus::RaftError => Answer::Raft(Box::new(
                    codec::decode(payload).map_err(|e| CallError::Network(e.into()))?,
                )),
                RpcStatus::Error => {
                    return Err(CallError::Rejected(
                        String::from_utf8_lossy(payload).into_owned(),
                    ))
                }
            };
            // The exchange completed: the connection is idle again and can be reused.
            *slot = Some(stream);
            Ok(answer)
        };
        tokio::time::timeout(ttl, exchange)
            .await
            .map_err(|_| CallError::Timeout)?
    }

    /// Maps a failed round trip to openraft's error, which decides how replication retries.
    fn rpc_error<E: Error>(
        &self,
        error: CallError,
        action: RPCTypes,
        ttl: Duration,
        entries: usize,
    ) -> RPCError<NodeId, BasicNode, RaftError<NodeId, E>> {
        tracing::debug!(target = self.target, ?action, %error, "Raft RPC failed");
        match error {
            CallError::Timeout => RPCError::Timeout(Timeout {
                action,
                id: self.transport.node_id,
                target: self.target,
                timeout: ttl,
            }),
            CallError::Unreachable(e) => RPCError::Unreachable(Unreachable::new(&e)),
            CallError::TooLarge(e) if entries > 1 => RPCError::PayloadTooLarge(
                PayloadTooLarge::new_entries_hint((entries / 2) as u64).with_source_error(&e),
            ),
            other => RPCError::Network(NetworkError::new(&other)),
        }
    }

    // The error type is the one openraft's `RaftNetwork` methods return.
    #[allow(clippy::result_large_err)]
    fn answer<Resp, E: Error>(
        &self,
        answer: Answer<Resp, E>,
    ) -> Result<Resp, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>> {
        match answer {
            Answer::Ok(response) => Ok(response),
            Answer::Raft(error) => {
                Err(RPCError::RemoteError(RemoteError::new(self.target, *error)))
            }
        }
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        let ttl = option.hard_ttl();
        let entries = rpc.entries.len();
        match self
            .call::<_, _, Infallible>(RpcKind::AppendEntries, &rpc, ttl)
            .await
        {
            Ok(answer) => {
                self.transport.acks.record_fetch(self.target, now_ms());
                self.answer(answer)
            }
            Err(e) => Err(self.rpc_error(e, RPCTypes::AppendEntries, ttl, entries)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        let ttl = option.hard_ttl();
        match self
            .call::<_, _, InstallSnapshotError>(RpcKind::InstallSnapshot, &rpc, ttl)
            .await
        {
            Ok(answer) => self.answer(answer),
            Err(e) => Err(self.rpc_error(e, RPCTypes::InstallSnapshot, ttl, 0)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        let ttl = option.hard_ttl();
        match self
            .call::<_, _, Infallible>(RpcKind::Vote, &rpc, ttl)
            .await
        {
            Ok(answer) => self.answer(answer),
            Err(e) => Err(self.rpc_error(e, RPCTypes::Vote, ttl, 0)),
        }
    }

    fn backoff(&self) -> Backoff {
        Backoff::new(std::iter::repeat(self.transport.backoff))
    }
}
