//! One client connection: reads frames, dispatches each request in arrival order, and
//! writes the responses in that same order (Kafka clients pipeline requests and match
//! responses by order as well as correlation id).
//!
//! Requests are *started* one at a time, in order, so appends from one connection land in
//! the log in the order they were sent. What a request then waits for (acks=all, a fetch's
//! long poll) runs concurrently, bounded by `queued.max.requests` in flight.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::frame::{read_frame, FrameError};
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

pub async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    broker: Arc<Broker>,
    listener: ListenerKind,
) {
    let _ = stream.set_nodelay(true);
    let (mut reader, writer) = stream.into_split();
    let max_request_bytes = broker.config.socket_request_max_bytes;
    let (tx, mut rx) = mpsc::channel::<PendingResponse>(broker.config.queued_max_requests.max(1));

    let write_loop = async move {
        let mut writer = BufWriter::with_capacity(64 * 1024, writer);
        while let Some(pending) = rx.recv().await {
            match pending.await {
                Reply::Frame(frame) => {
                    if writer.write_all(&frame).await.is_err() {
                        break;
                    }
                }
                Reply::Nothing => {}
                Reply::Close => break,
            }
            // Coalesce responses that are already queued into one write.
            if rx.is_empty() && writer.flush().await.is_err() {
                break;
            }
        }
        let _ = writer.flush().await;
        let _ = writer.shutdown().await;
    };

    let read_loop = async move {
        loop {
            let frame = match read_frame(&mut reader, max_request_bytes).await {
                Ok(f) => f,
                Err(FrameError::Closed) => break,
                Err(e) => {
                    tracing::info!(%peer, error = %e, "closing connection");
                    break;
                }
            };
            let pending = handlers::dispatch(&broker, frame, peer, listener).await;
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
