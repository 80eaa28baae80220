//! Size-prefixed Kafka frames: reading requests and encoding responses.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ResponseHeader, ResponseKind};
use kafka_protocol::protocol::Encodable;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Why a connection is closed while reading.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("connection closed")]
    Closed,
    #[error("frame of {size} bytes is outside 1..={max} (socket.request.max.bytes)")]
    BadSize { size: i64, max: usize },
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Reads one request frame (without its 4-byte size). EOF before a frame starts is `Closed`.
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    max_bytes: usize,
) -> Result<Bytes, FrameError> {
    let mut size_buf = [0u8; 4];
    match reader.read_exact(&mut size_buf).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(FrameError::Closed),
        Err(e) => return Err(e.into()),
    }
    let size = i32::from_be_bytes(size_buf) as i64;
    if size <= 0 || size as usize > max_bytes {
        return Err(FrameError::BadSize {
            size,
            max: max_bytes,
        });
    }
    let mut buf = BytesMut::zeroed(size as usize);
    reader.read_exact(&mut buf).await?;
    Ok(buf.freeze())
}

/// Encodes a response frame: size, header (v0 or v1 per the API version), body.
pub fn encode_response(
    correlation_id: i32,
    api_version: i16,
    header_version: i16,
    body: &ResponseKind,
) -> anyhow::Result<Bytes> {
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let mut buf = BytesMut::with_capacity(64);
    buf.put_i32(0);
    header.encode(&mut buf, header_version)?;
    body.encode(&mut buf, api_version)?;
    let size = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&size.to_be_bytes());
    Ok(buf.freeze())
}
