//! Kafka requests from this node to another (Kafka's `NodeToControllerChannelManager` and
//! the replica fetcher's client): broker registration, heartbeats and forwarded controller
//! requests to the active controller's controller listener, and follower fetches to
//! partition leaders.
//!
//! # Invariants
//! - A pooled connection has no request in flight: it is taken out of the pool for exactly
//!   one request/response exchange and returned only after a complete response was read.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use kafka_protocol::messages::{RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Largest response accepted (a follower fetch may carry many partitions' records).
const RESPONSE_BYTES_MAX: usize = 64 << 20;
/// Idle connections kept per destination.
const POOL_SIZE_MAX: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("node {0} unreachable: {1}")]
    Io(SocketAddr, std::io::Error),
    #[error("node {0} did not answer within {1:?}")]
    Timeout(SocketAddr, Duration),
    #[error("bad response from node {0}: {1}")]
    Protocol(SocketAddr, String),
}

pub struct NodeChannel {
    client_id: StrBytes,
    /// Outgoing connections start from this address, so fault tests can cut node-to-node
    /// links by source address.
    source_addr: Option<IpAddr>,
    pool: Mutex<HashMap<SocketAddr, Vec<TcpStream>>>,
    next_correlation_id: std::sync::atomic::AtomicI32,
}

impl NodeChannel {
    pub fn new(node_id: i32, source_addr: Option<IpAddr>) -> Self {
        NodeChannel {
            client_id: StrBytes::from_string(format!("gregor-broker-{node_id}")),
            source_addr,
            pool: Mutex::new(HashMap::new()),
            next_correlation_id: std::sync::atomic::AtomicI32::new(1),
        }
    }

    async fn connect(&self, addr: SocketAddr) -> std::io::Result<TcpStream> {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        if let Some(ip) = self.source_addr {
            socket.bind(SocketAddr::new(ip, 0))?;
        }
        let stream = socket.connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(stream)
    }

    /// Sends one request and waits for its response.
    pub async fn send<R: Request>(
        &self,
        addr: SocketAddr,
        request: &R,
        version: i16,
        timeout: Duration,
    ) -> Result<R::Response, ChannelError> {
        let correlation_id = self
            .next_correlation_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(self.client_id.clone()));
        let mut frame = BytesMut::with_capacity(256);
        frame.put_i32(0);
        header
            .encode(&mut frame, R::header_version(version))
            .map_err(|e| ChannelError::Protocol(addr, e.to_string()))?;
        request
            .encode(&mut frame, version)
            .map_err(|e| ChannelError::Protocol(addr, e.to_string()))?;
        let size = (frame.len() - 4) as i32;
        frame[..4].copy_from_slice(&size.to_be_bytes());

        let pooled = self.pool.lock().get_mut(&addr).and_then(Vec::pop);
        let exchange = async {
            let mut stream = match pooled {
                Some(s) => s,
                None => self
                    .connect(addr)
                    .await
                    .map_err(|e| ChannelError::Io(addr, e))?,
            };
            stream
                .write_all(&frame)
                .await
                .map_err(|e| ChannelError::Io(addr, e))?;
            let mut size = [0u8; 4];
            stream
                .read_exact(&mut size)
                .await
                .map_err(|e| ChannelError::Io(addr, e))?;
            let size = i32::from_be_bytes(size);
            if size < 4 || size as usize > RESPONSE_BYTES_MAX {
                return Err(ChannelError::Protocol(
                    addr,
                    format!("response size {size}"),
                ));
            }
            let body = super::frame::read_body(&mut stream, size as usize)
                .await
                .map_err(|e| ChannelError::Io(addr, e))?;
            Ok((stream, body))
        };
        let (stream, mut body) = tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| ChannelError::Timeout(addr, timeout))??;
        let header = ResponseHeader::decode(&mut body, R::Response::header_version(version))
            .map_err(|e| ChannelError::Protocol(addr, e.to_string()))?;
        if header.correlation_id != correlation_id {
            return Err(ChannelError::Protocol(
                addr,
                format!(
                    "correlation id {} for request {correlation_id}",
                    header.correlation_id
                ),
            ));
        }
        let response = R::Response::decode(&mut body, version)
            .map_err(|e| ChannelError::Protocol(addr, e.to_string()))?;
        let mut pool = self.pool.lock();
        let idle = pool.entry(addr).or_default();
        if idle.len() < POOL_SIZE_MAX {
            idle.push(stream);
        }
        Ok(response)
    }
}
