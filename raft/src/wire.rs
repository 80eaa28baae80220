//! Wire format of a Raft RPC frame.
//!
//! Size-prefixed like every Kafka frame, so Raft RPCs can share the controller listener with
//! Kafka requests:
//!
//! ```text
//! request:  i32 size | i16 RAFT_RPC_API_KEY | i16 version (0) | i32 correlation id | u8 kind | payload
//! response: i32 size | i32 correlation id | u8 status | payload
//! ```
//!
//! All integers are big-endian; `size` counts the bytes after itself. `kind` is 0
//! (AppendEntries), 1 (Vote) or 2 (InstallSnapshot); the request payload is the openraft
//! request serialised with postcard (see `codec`). `status` 0 carries the serialised openraft
//! response, 1 a UTF-8 error string (the frame could not be decoded), 2 the serialised
//! `openraft::error::RaftError` the receiving Raft node answered with.

use bytes::{BufMut, Bytes, BytesMut};
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::codec::{self, CodecError};

/// Api key that marks Raft RPC frames on the controller listener. Kafka's own keys are small
/// non-negative numbers, so this never collides with a Kafka request.
pub const RAFT_RPC_API_KEY: i16 = 0x7fff;

/// The only frame version so far.
pub(crate) const RPC_VERSION: i16 = 0;

/// Largest frame (bytes after the 4-byte size) either side sends or accepts. A peer that
/// announces a larger frame is disconnected without reading it.
pub const RPC_FRAME_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Largest entry `propose` accepts: Kafka's metadata log takes batches of up to 8 MiB
/// (`KafkaRaftClient.MAX_BATCH_SIZE_BYTES`), so one controller decision of
/// `max.records.per.user.op` records fits in one entry. AppendEntries carries at most
/// [`APPEND_ENTRIES_MAX`] entries, so any request fits in one frame; a batch that still does
/// not fit (a frame's own overhead) is halved by the replication stream.
pub const ENTRY_BYTES_MAX: usize = 8 * 1024 * 1024;

/// Most entries one AppendEntries request carries (openraft's `max_payload_entries`): the
/// largest entries, this many, with room for the request's own fields, fit one frame.
pub const APPEND_ENTRIES_MAX: u64 = (RPC_FRAME_BYTES_MAX / ENTRY_BYTES_MAX - 1) as u64;

const _: () = assert!(APPEND_ENTRIES_MAX >= 1);
const _: () = assert!((APPEND_ENTRIES_MAX as usize + 1) * ENTRY_BYTES_MAX <= RPC_FRAME_BYTES_MAX);

/// api key (2) + version (2) + correlation id (4) + kind (1).
pub(crate) const REQUEST_HEADER_BYTES: usize = 9;

/// correlation id (4) + status (1).
pub(crate) const RESPONSE_HEADER_BYTES: usize = 5;

/// Which openraft RPC a request frame carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RpcKind {
    AppendEntries = 0,
    Vote = 1,
    InstallSnapshot = 2,
}

impl RpcKind {
    fn from_u8(kind: u8) -> Result<RpcKind, WireError> {
        match kind {
            0 => Ok(RpcKind::AppendEntries),
            1 => Ok(RpcKind::Vote),
            2 => Ok(RpcKind::InstallSnapshot),
            other => Err(WireError::UnknownKind(other)),
        }
    }
}

/// How to read a response payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RpcStatus {
    /// The serialised openraft response.
    Ok = 0,
    /// A UTF-8 message: the request frame was malformed.
    Error = 1,
    /// The serialised `RaftError` the receiving node answered with.
    RaftError = 2,
}

impl RpcStatus {
    fn from_u8(status: u8) -> Result<RpcStatus, WireError> {
        match status {
            0 => Ok(RpcStatus::Ok),
            1 => Ok(RpcStatus::Error),
            2 => Ok(RpcStatus::RaftError),
            other => Err(WireError::UnknownStatus(other)),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum WireError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("frame of {size_bytes} bytes is outside 0..={max_bytes}", max_bytes = RPC_FRAME_BYTES_MAX)]
    FrameSize { size_bytes: i64 },
    #[error("frame of {size_bytes} bytes is shorter than its {header_bytes}-byte header")]
    Truncated {
        size_bytes: usize,
        header_bytes: usize,
    },
    #[error("api key {0} is not the Raft RPC api key")]
    ApiKey(i16),
    #[error("unsupported Raft RPC version {0}")]
    Version(i16),
    #[error("unknown Raft RPC kind {0}")]
    UnknownKind(u8),
    #[error("unknown Raft RPC response status {0}")]
    UnknownStatus(u8),
    #[error("payload: {0}")]
    Codec(#[from] CodecError),
}

/// The fixed part of a request frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RequestHeader {
    pub(crate) correlation_id: i32,
    pub(crate) kind: RpcKind,
}

/// Encodes a whole request frame, size prefix included, ready to be written to a socket.
pub(crate) fn encode_request<T: Serialize>(
    correlation_id: i32,
    kind: RpcKind,
    payload: &T,
) -> Result<Vec<u8>, WireError> {
    let payload = codec::encode(payload)?;
    let size_bytes = REQUEST_HEADER_BYTES + payload.len();
    if size_bytes > RPC_FRAME_BYTES_MAX {
        return Err(WireError::FrameSize {
            size_bytes: size_bytes as i64,
        });
    }
    let mut frame = Vec::with_capacity(4 + size_bytes);
    frame.put_i32(size_bytes as i32);
    frame.put_i16(RAFT_RPC_API_KEY);
    frame.put_i16(RPC_VERSION);
    frame.put_i32(correlation_id);
    frame.put_u8(kind as u8);
    frame.extend_from_slice(&payload);
    Ok(frame)
}

/// Reads just the correlation id of a request frame body, if it is long enough to have one;
/// used to address the error reply to a frame whose header is otherwise malformed.
pub(crate) fn peek_correlation_id(body: &[u8]) -> Option<i32> {
    let bytes = body.get(4..8)?;
    Some(i32::from_be_bytes(bytes.try_into().ok()?))
}

/// Splits a request frame body (the bytes after the size) into its header and payload.
pub(crate) fn decode_request(body: &[u8]) -> Result<(RequestHeader, &[u8]), WireError> {
    if body.len() < REQUEST_HEADER_BYTES {
        return Err(WireError::Truncated {
            size_bytes: body.len(),
            header_bytes: REQUEST_HEADER_BYTES,
        });
    }
    let api_key = i16::from_be_bytes([body[0], body[1]]);
    if api_key != RAFT_RPC_API_KEY {
        return Err(WireError::ApiKey(api_key));
    }
    let version = i16::from_be_bytes([body[2], body[3]]);
    if version != RPC_VERSION {
        return Err(WireError::Version(version));
    }
    let correlation_id = i32::from_be_bytes([body[4], body[5], body[6], body[7]]);
    let kind = RpcKind::from_u8(body[8])?;
    Ok((
        RequestHeader {
            correlation_id,
            kind,
        },
        &body[REQUEST_HEADER_BYTES..],
    ))
}

/// Encodes a response frame body (without the size prefix, which the listener adds).
pub(crate) fn encode_response(correlation_id: i32, status: RpcStatus, payload: &[u8]) -> Bytes {
    let mut body = BytesMut::with_capacity(RESPONSE_HEADER_BYTES + payload.len());
    body.put_i32(correlation_id);
    body.put_u8(status as u8);
    body.extend_from_slice(payload);
    body.freeze()
}

/// Splits a response frame body into correlation id, status and payload.
pub(crate) fn decode_response(body: &[u8]) -> Result<(i32, RpcStatus, &[u8]), WireError> {
    if body.len() < RESPONSE_HEADER_BYTES {
        return Err(WireError::Truncated {
            size_bytes: body.len(),
            header_bytes: RESPONSE_HEADER_BYTES,
        });
    }
    let correlation_id = i32::from_be_bytes([body[0], body[1], body[2], body[3]]);
    let status = RpcStatus::from_u8(body[4])?;
    Ok((correlation_id, status, &body[RESPONSE_HEADER_BYTES..]))
}

/// Reads one size-prefixed frame and returns its body. `Ok(None)` when the peer closed the
/// connection cleanly between frames. A size outside `0..=RPC_FRAME_BYTES_MAX` is an error
/// raised before anything is allocated for it.
pub(crate) async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
) -> Result<Option<Vec<u8>>, WireError> {
    let mut size = [0u8; 4];
    let mut filled = 0;
    while filled < size.len() {
        let n = reader.read(&mut size[filled..]).await?;
        if n == 0 {
            if filled == 0 {
                return Ok(None);
            }
            return Err(WireError::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
        filled += n;
    }
    let size_bytes = i32::from_be_bytes(size);
    if size_bytes < 0 || size_bytes as usize > RPC_FRAME_BYTES_MAX {
        return Err(WireError::FrameSize {
            size_bytes: i64::from(size_bytes),
        });
    }
    let mut body = vec![0u8; size_bytes as usize];
    reader.read_exact(&mut body).await?;
    Ok(Some(body))
}

/// Writes `body` as one size-prefixed frame.
///
/// # Panics
/// If `body` is larger than [`RPC_FRAME_BYTES_MAX`]: every frame this crate builds is checked
/// against the bound when it is encoded.
pub(crate) async fn write_frame<W: AsyncWrite + Unpin>(
    writer: &mut W,
    body: &[u8],
) -> std::io::Result<()> {
    assert!(
        body.len() <= RPC_FRAME_BYTES_MAX,
        "frame of {} bytes exceeds the frame bound",
        body.len()
    );
    writer.write_all(&(body.len() as i32).to_be_bytes()).await?;
    writer.write_all(body).await?;
    writer.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_round_trip() {
        let frame = encode_request(7, RpcKind::Vote, &(1u64, "x".to_string())).unwrap();
        let size = i32::from_be_bytes(frame[..4].try_into().unwrap()) as usize;
        assert_eq!(size, frame.len() - 4);
        let (header, payload) = decode_request(&frame[4..]).unwrap();
        assert_eq!(
            header,
            RequestHeader {
                correlation_id: 7,
                kind: RpcKind::Vote
            }
        );
        let decoded: (u64, String) = codec::decode(payload).unwrap();
        assert_eq!(decoded, (1, "x".to_string()));
    }

    #[test]
    fn malformed_requests_are_errors() {
        assert!(matches!(
            decode_request(&[]),
            Err(WireError::Truncated { .. })
        ));
        assert!(matches!(
            decode_request(&[0, 3, 0, 0, 0, 0, 0, 1, 0]),
            Err(WireError::ApiKey(3))
        ));
        assert!(matches!(
            decode_request(&[0x7f, 0xff, 0, 9, 0, 0, 0, 1, 0]),
            Err(WireError::Version(9))
        ));
        assert!(matches!(
            decode_request(&[0x7f, 0xff, 0, 0, 0, 0, 0, 1, 42]),
            Err(WireError::UnknownKind(42))
        ));
        assert_eq!(
            peek_correlation_id(&[0x7f, 0xff, 0, 0, 0, 0, 0, 5]),
            Some(5)
        );
        assert_eq!(peek_correlation_id(&[0x7f]), None);
    }

    #[test]
    fn response_round_trip() {
        let body = encode_response(-3, RpcStatus::RaftError, b"abc");
        let (correlation_id, status, payload) = decode_response(&body).unwrap();
        assert_eq!(
            (correlation_id, status, payload),
            (-3, RpcStatus::RaftError, &b"abc"[..])
        );
        assert!(decode_response(&[0, 0, 0, 1, 9]).is_err());
        assert!(decode_response(&[0, 0]).is_err());
    }

    #[tokio::test]
    async fn frame_sizes_are_bounded() {
        let mut negative: &[u8] = &(-1i32).to_be_bytes();
        assert!(matches!(
            read_frame(&mut negative).await,
            Err(WireError::FrameSize { .. })
        ));
        let huge = (RPC_FRAME_BYTES_MAX as i32 + 1).to_be_bytes();
        assert!(matches!(
            read_frame(&mut &huge[..]).await,
            Err(WireError::FrameSize { .. })
        ));
        let mut empty: &[u8] = &[];
        assert!(read_frame(&mut empty).await.unwrap().is_none());
        let mut partial_size: &[u8] = &[0, 0];
        assert!(read_frame(&mut partial_size).await.is_err());
        let mut short_body: &[u8] = &[0, 0, 0, 4, 1, 2];
        assert!(read_frame(&mut short_body).await.is_err());
        let mut ok: &[u8] = &[0, 0, 0, 2, 1, 2];
        assert_eq!(read_frame(&mut ok).await.unwrap(), Some(vec![1, 2]));
    }
}
