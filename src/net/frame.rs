//! Size-prefixed Kafka frames: reading requests within a memory budget, encoding responses.
//!
//! A frame's size prefix is only a claim: a client can announce `socket.request.max.bytes`
//! and send nothing. So the body is read into a buffer that grows with the bytes that really
//! arrive, never allocated at the announced size up front, and every frame being read or
//! served holds its size in bytes from the listener's [`RequestBudget`]
//! (`queued.max.request.bytes`), so the bytes of requests in memory stay bounded across all
//! connections. When the budget is spent, reading pauses until a request finishes.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ResponseHeader, ResponseKind};
use kafka_protocol::protocol::Encodable;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The first allocation for a frame body; it doubles from here as bytes arrive.
const READ_CHUNK_BYTES: usize = 64 * 1024;

/// Why a connection is closed while reading.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("connection closed")]
    Closed,
    #[error("frame of {size} bytes is outside 1..={max} (socket.request.max.bytes)")]
    BadSize { size: i64, max: usize },
    #[error("no bytes of a started frame for {0:?} (connections.max.idle.ms)")]
    Stalled(Duration),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// The bytes of requests a listener holds in memory at once (Kafka's
/// `queued.max.request.bytes`), shared by all its connections.
///
/// # Invariants
/// - The permits held by live [`Frame`]s never exceed `bytes_max`, so the request bytes
///   in memory never do either.
/// - A frame takes its whole size at once (never part of it and then waits for more), so
///   frames that are half read can never hold the budget between them and wait forever.
#[derive(Clone)]
pub struct RequestBudget {
    permits: Arc<Semaphore>,
    bytes_max: usize,
}

impl RequestBudget {
    /// A budget of `bytes_max` bytes; it must hold the largest frame the listener accepts.
    pub fn new(bytes_max: usize) -> RequestBudget {
        assert!(bytes_max >= 1, "a request budget of 0 bytes serves nothing");
        assert!(bytes_max <= Semaphore::MAX_PERMITS);
        RequestBudget {
            permits: Arc::new(Semaphore::new(bytes_max)),
            bytes_max,
        }
    }

    /// Bytes not held by any frame right now.
    pub fn available_bytes(&self) -> usize {
        self.permits.available_permits()
    }

    async fn acquire(&self, bytes: usize) -> OwnedSemaphorePermit {
        assert!(bytes <= self.bytes_max, "checked against the budget first");
        let n = u32::try_from(bytes).expect("frames are under 2 GiB");
        self.permits
            .clone()
            .acquire_many_owned(n)
            .await
            .expect("the budget's semaphore is never closed")
    }
}

/// One request frame (without its 4-byte size) and its share of the request budget, which
/// it gives back when dropped: keep it until the request has been served.
pub struct Frame {
    pub bytes: Bytes,
    budget_share: OwnedSemaphorePermit,
}

impl Frame {
    /// The bytes, and the budget share to keep while anything refers to them.
    pub fn into_parts(self) -> (Bytes, OwnedSemaphorePermit) {
        (self.bytes, self.budget_share)
    }
}

/// Reads one request frame. EOF before a frame starts is `Closed`; a size outside
/// `1..=max_bytes` closes the connection before anything is allocated for it.
///
/// Waits for the body's first byte before taking the frame's size from the budget, so a
/// connection that announces a frame and sends nothing holds neither memory nor budget.
/// Once a frame has started, a client that sends nothing for `idle` is dropped
/// (`FrameError::Stalled`), so a stalled frame cannot hold its budget share for ever.
pub async fn read_frame<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    max_bytes: usize,
    budget: &RequestBudget,
    idle: Duration,
) -> Result<Frame, FrameError> {
    let mut size_buf = [0u8; 4];
    match reader.read_exact(&mut size_buf).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(FrameError::Closed),
        Err(e) => return Err(e.into()),
    }
    let size = i32::from_be_bytes(size_buf) as i64;
    let max = max_bytes.min(budget.bytes_max);
    if size <= 0 || size as usize > max {
        return Err(FrameError::BadSize { size, max });
    }
    let size = size as usize;
    if within(idle, reader.fill_buf()).await??.is_empty() {
        return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
    }
    let permit = budget.acquire(size).await;
    let bytes = read_body_within(reader, size, Some(idle)).await?;
    Ok(Frame {
        bytes,
        budget_share: permit,
    })
}

/// Reads a frame body of `size` bytes into a buffer that grows with the bytes that arrive
/// (see [`grown_len`]), so an announced size costs nothing until its bytes come.
pub async fn read_body<R: AsyncRead + Unpin>(
    reader: &mut R,
    size: usize,
) -> std::io::Result<Bytes> {
    match read_body_within(reader, size, None).await {
        Ok(bytes) => Ok(bytes),
        Err(FrameError::Io(e)) => Err(e),
        Err(e) => Err(std::io::Error::other(e)),
    }
}

/// `f`, failing with `Stalled` if it takes longer than `idle`.
async fn within<T>(idle: Duration, f: impl Future<Output = T>) -> Result<T, FrameError> {
    tokio::time::timeout(idle, f)
        .await
        .map_err(|_| FrameError::Stalled(idle))
}

async fn read_body_within<R: AsyncRead + Unpin>(
    reader: &mut R,
    size: usize,
    idle: Option<Duration>,
) -> Result<Bytes, FrameError> {
    let mut buf: Vec<u8> = Vec::new();
    let mut filled = 0usize;
    while filled < size {
        if filled == buf.len() {
            let new_len = grown_len(buf.len(), size);
            buf.reserve_exact(new_len - buf.len());
            buf.resize(new_len, 0);
        }
        let n = match idle {
            Some(idle) => within(idle, reader.read(&mut buf[filled..])).await??,
            None => reader.read(&mut buf[filled..]).await?,
        };
        if n == 0 {
            return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
        }
        filled += n;
    }
    debug_assert_eq!(buf.len(), size);
    Ok(Bytes::from(buf))
}

/// The next buffer length for a body of `size` bytes whose `len` bytes are all filled:
/// doubling (so copying stays linear in the frame size), never past the frame, so the
/// buffer is never more than twice the bytes that really arrived (or one chunk).
fn grown_len(len: usize, size: usize) -> usize {
    debug_assert!(len < size);
    (len * 2).max(READ_CHUNK_BYTES).min(size)
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
    let size = i32::try_from(buf.len() - 4)
        .map_err(|_| anyhow::anyhow!("response of {} bytes is over 2 GiB", buf.len() - 4))?;
    buf[..4].copy_from_slice(&size.to_be_bytes());
    Ok(buf.freeze())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncWriteExt, BufReader};

    use super::*;

    const IDLE: Duration = Duration::from_secs(60);

    fn sized(body: &[u8]) -> Vec<u8> {
        let mut v = (body.len() as i32).to_be_bytes().to_vec();
        v.extend_from_slice(body);
        v
    }

    #[tokio::test]
    async fn reads_frames_in_order_and_returns_the_budget() {
        let budget = RequestBudget::new(1024);
        let mut wire = sized(b"first");
        wire.extend(sized(b"second"));
        let mut reader = BufReader::new(&wire[..]);
        let a = read_frame(&mut reader, 1024, &budget, IDLE).await.unwrap();
        assert_eq!(&a.bytes[..], b"first");
        assert_eq!(budget.available_bytes(), 1024 - 5);
        let b = read_frame(&mut reader, 1024, &budget, IDLE).await.unwrap();
        assert_eq!(&b.bytes[..], b"second");
        assert_eq!(budget.available_bytes(), 1024 - 11);
        drop((a, b));
        assert_eq!(budget.available_bytes(), 1024);
        assert!(matches!(
            read_frame(&mut reader, 1024, &budget, IDLE).await,
            Err(FrameError::Closed)
        ));
    }

    #[tokio::test]
    async fn bad_sizes_close_before_allocating() {
        let budget = RequestBudget::new(1 << 20);
        for size in [0i32, -1, i32::MIN, 1025, i32::MAX] {
            let wire = size.to_be_bytes();
            let r = read_frame(&mut BufReader::new(&wire[..]), 1024, &budget, IDLE).await;
            assert!(matches!(r, Err(FrameError::BadSize { .. })), "size {size}");
        }
        // A frame over the budget is refused even under socket.request.max.bytes.
        let small = RequestBudget::new(100);
        let wire = sized(&[0u8; 200]);
        let r = read_frame(&mut BufReader::new(&wire[..]), 1024, &small, IDLE).await;
        assert!(matches!(r, Err(FrameError::BadSize { max: 100, .. })));
        assert_eq!(budget.available_bytes(), 1 << 20);
    }

    #[tokio::test]
    async fn a_truncated_frame_is_an_error_and_holds_nothing() {
        let budget = RequestBudget::new(1 << 20);
        let mut wire = 1000i32.to_be_bytes().to_vec();
        wire.extend_from_slice(&[1; 10]);
        let r = read_frame(&mut BufReader::new(&wire[..]), 1 << 20, &budget, IDLE).await;
        assert!(matches!(r, Err(FrameError::Io(_))));
        assert_eq!(budget.available_bytes(), 1 << 20);
    }

    #[tokio::test]
    async fn an_announced_frame_without_bytes_takes_no_budget() {
        let budget = RequestBudget::new(1 << 20);
        let (mut client, server) = tokio::io::duplex(64);
        client.write_all(&(1i32 << 20).to_be_bytes()).await.unwrap();
        let mut reader = BufReader::new(server);
        let read = read_frame(&mut reader, 1 << 20, &budget, IDLE);
        tokio::pin!(read);
        assert!(tokio::time::timeout(Duration::from_millis(50), &mut read)
            .await
            .is_err());
        assert_eq!(
            budget.available_bytes(),
            1 << 20,
            "nothing arrived, nothing held"
        );
        // Once bytes flow, the frame takes its whole size and completes.
        let writer = tokio::spawn(async move {
            client.write_all(&vec![7u8; 1 << 20]).await.unwrap();
            client
        });
        let frame = read.await.unwrap();
        assert_eq!(frame.bytes.len(), 1 << 20);
        assert!(frame.bytes.iter().all(|b| *b == 7));
        assert_eq!(budget.available_bytes(), 0);
        drop(frame);
        assert_eq!(budget.available_bytes(), 1 << 20);
        drop(writer.await.unwrap());
    }

    #[tokio::test]
    async fn reading_pauses_while_the_budget_is_spent() {
        let budget = RequestBudget::new(100);
        let wire = sized(&[1u8; 60]);
        let held = read_frame(&mut BufReader::new(&wire[..]), 100, &budget, IDLE)
            .await
            .unwrap();
        let wire2 = sized(&[2u8; 60]);
        let mut reader2 = BufReader::new(&wire2[..]);
        let second = read_frame(&mut reader2, 100, &budget, IDLE);
        tokio::pin!(second);
        assert!(
            tokio::time::timeout(Duration::from_millis(50), &mut second)
                .await
                .is_err(),
            "60 + 60 bytes exceed a budget of 100: the second frame waits"
        );
        drop(held);
        let second = second.await.unwrap();
        assert_eq!(&second.bytes[..], &[2u8; 60][..]);
    }

    #[tokio::test]
    async fn a_stalled_frame_is_dropped_and_gives_its_budget_back() {
        let budget = RequestBudget::new(1 << 20);
        let (mut client, server) = tokio::io::duplex(64);
        client.write_all(&1000i32.to_be_bytes()).await.unwrap();
        client.write_all(&[1; 10]).await.unwrap();
        let mut reader = BufReader::new(server);
        let r = read_frame(&mut reader, 1 << 20, &budget, Duration::from_millis(200)).await;
        assert!(matches!(r, Err(FrameError::Stalled(_))));
        assert_eq!(budget.available_bytes(), 1 << 20);
        drop(client);
    }

    #[test]
    fn the_buffer_grows_geometrically_up_to_the_frame() {
        let size = 100 << 20;
        let mut len = 0;
        let mut steps = vec![];
        while len < size {
            let next = grown_len(len, size);
            assert!(next > len && next <= size);
            assert!(next <= (2 * len).max(READ_CHUNK_BYTES));
            steps.push(next);
            len = next;
        }
        assert_eq!(steps[0], READ_CHUNK_BYTES);
        assert_eq!(*steps.last().unwrap(), size);
        assert!(steps.len() < 15, "{} reallocations", steps.len());
        assert_eq!(grown_len(0, 10), 10);
    }

    #[tokio::test]
    async fn a_body_arriving_in_pieces_is_read_whole() {
        let size = 3 << 20;
        let (mut client, mut server) = tokio::io::duplex(4096);
        let writer = tokio::spawn(async move {
            let chunk: Vec<u8> = (0..=255u8).cycle().take(1 << 20).collect();
            for _ in 0..3 {
                client.write_all(&chunk).await.unwrap();
            }
        });
        let body = read_body(&mut server, size).await.unwrap();
        writer.await.unwrap();
        assert_eq!(body.len(), size);
        assert!(body.iter().enumerate().all(|(i, b)| *b == (i % 256) as u8));
    }
}
