//! One client connection: reads frames, dispatches each request in arrival order, and
//! writes the responses in that same order (Kafka clients pipeline requests and match
//! responses by order as well as correlation id).
//!
//! Requests are *started* one at a time, in order, so appends from one connection land in
//! the log in the order they were sent. What a request then waits for (acks=all, a fetch's
//! long poll) runs concurrently, bounded by `queued.max.requests` in flight.
//!
//! Every request keeps its frame's share of the listener's [`RequestBudget`]
//! (`queued.max.request.bytes`) until its response is done, since the decoded request
//! refers to the frame's bytes (record data is a slice of it) until then.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncWriteExt, BufReader, BufWriter};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::frame::{read_frame, FrameError, RequestBudget};
use crate::broker::Broker;
use crate::handlers::{self, ListenerKind};

/// What a request ends in.
pub enum Reply {
    /// A response frame to write.
    Frame(Bytes),
    /// No response (Produce with acks=0).
    Nothing,
    /// Close the connection (malformed or unsupported request).
    Close,
}

/// A response still being computed.
pub type PendingResponse = Pin<Box<dyn Future<Output = Reply> + Send>>;

/// Read-ahead per connection: small, since it is allocated for every connection.
const READ_BUFFER_BYTES: usize = 8 * 1024;

pub async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    broker: Arc<Broker>,
    listener: ListenerKind,
    budget: RequestBudget,
) {
    let _ = stream.set_nodelay(true);
    let (reader, writer) = stream.into_split();
    let mut reader = BufReader::with_capacity(READ_BUFFER_BYTES, reader);
    let max_request_bytes = broker.config.socket_request_max_bytes;
    let idle = Duration::from_millis(broker.config.connections_max_idle_ms);
    let (tx, mut rx) = mpsc::channel::<PendingResponse>(broker.config.queued_max_requests.max(1));

    // A client that stops reading its responses would keep its requests' budget shares
    // for ever: a response not written within connections.max.idle.ms closes it.
    let write_loop = async move {
        let mut writer = BufWriter::with_capacity(64 * 1024, writer);
        while let Some(pending) = rx.recv().await {
            match pending.await {
                Reply::Frame(frame) => {
                    if !written(idle, writer.write_all(&frame)).await {
                        tracing::info!(%peer, "client does not read its responses; closing");
                        break;
                    }
                }
                Reply::Nothing => {}
                Reply::Close => break,
            }
            // Coalesce responses that are already queued into one write.
            if rx.is_empty() && !written(idle, writer.flush()).await {
                break;
            }
        }
        let _ = writer.flush().await;
        let _ = writer.shutdown().await;
    };

    let read_loop = async move {
        loop {
            let frame = match read_frame(&mut reader, max_request_bytes, &budget, idle).await {
                Ok(f) => f,
                Err(FrameError::Closed) => break,
                Err(e) => {
                    tracing::info!(%peer, error = %e, "closing connection");
                    break;
                }
            };
            let (bytes, budget_share) = frame.into_parts();
            let pending = handlers::dispatch(&broker, bytes, peer, listener).await;
            let pending: PendingResponse = Box::pin(async move {
                let reply = pending.await;
                drop(budget_share);
                reply
            });
            if tx.send(pending).await.is_err() {
                break;
            }
        }
    };

    // When the client stops sending, the writer still answers what was queued; when the
    // writer stops (a request asked to close, or the socket broke), reading stops too.
    tokio::pin!(read_loop);
    tokio::pin!(write_loop);
    tokio::select! {
        _ = &mut read_loop => write_loop.await,
        _ = &mut write_loop => {}
    }
}

/// Whether a write finished, and within `idle`.
async fn written(idle: Duration, write: impl Future<Output = std::io::Result<()>>) -> bool {
    matches!(tokio::time::timeout(idle, write).await, Ok(Ok(())))
}
