//! A blocking Kafka protocol connection (the kafka-protocol crate's encoding over a socket),
//! for what librdkafka cannot do: talking to the controller listener, as Kafka's
//! `--bootstrap-controller` tools do.
//!
//! Errors say whether the request could have reached the server, which is what tells a
//! failed operation from an indeterminate one.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// Nothing was sent: the operation certainly did not happen.
    #[error("not sent: {0}")]
    NotSent(String),
    /// Sent, but no readable answer came back: it may or may not have happened.
    #[error("no answer: {0}")]
    NoAnswer(String),
}

pub struct Connection {
    stream: TcpStream,
    correlation_id: i32,
}

impl Connection {
    /// Connects with `timeout` for the connection and for each answer.
    pub fn connect(addr: &str, timeout: Duration) -> Result<Connection, WireError> {
        let sock = addr
            .to_socket_addrs()
            .map_err(|e| WireError::NotSent(e.to_string()))?
            .next()
            .ok_or_else(|| WireError::NotSent(format!("no address for {addr}")))?;
        let stream = TcpStream::connect_timeout(&sock, timeout)
            .map_err(|e| WireError::NotSent(format!("connect {addr}: {e}")))?;
        let _ = stream.set_nodelay(true);
        stream
            .set_read_timeout(Some(timeout))
            .and_then(|_| stream.set_write_timeout(Some(timeout)))
            .map_err(|e| WireError::NotSent(e.to_string()))?;
        Ok(Connection {
            stream,
            correlation_id: 0,
        })
    }

    pub fn request<R: Request>(&mut self, req: &R, version: i16) -> Result<R::Response, WireError> {
        self.correlation_id += 1;
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("gregor-jepsen")));
        let mut buf = BytesMut::new();
        buf.put_i32(0);
        header
            .encode(&mut buf, R::header_version(version))
            .and_then(|_| req.encode(&mut buf, version))
            .map_err(|e| WireError::NotSent(format!("encode: {e}")))?;
        let len = (buf.len() - 4) as i32;
        buf[..4].copy_from_slice(&len.to_be_bytes());
        // A partial write may still have delivered the whole request: indeterminate.
        self.stream
            .write_all(&buf)
            .map_err(|e| WireError::NoAnswer(format!("write: {e}")))?;
        let mut frame = self.read_frame()?;
        ResponseHeader::decode(&mut frame, R::Response::header_version(version))
            .map_err(|e| WireError::NoAnswer(format!("response header: {e}")))?;
        R::Response::decode(&mut frame, version)
            .map_err(|e| WireError::NoAnswer(format!("response body: {e}")))
    }

    fn read_frame(&mut self) -> Result<Bytes, WireError> {
        let mut size = [0u8; 4];
        self.stream
            .read_exact(&mut size)
            .map_err(|e| WireError::NoAnswer(format!("read: {e}")))?;
        let size = i32::from_be_bytes(size);
        if !(0..=64 << 20).contains(&size) {
            return Err(WireError::NoAnswer(format!("bad frame size {size}")));
        }
        let mut buf = vec![0u8; size as usize];
        self.stream
            .read_exact(&mut buf)
            .map_err(|e| WireError::NoAnswer(format!("read: {e}")))?;
        Ok(Bytes::from(buf))
    }
}
