//! The Kafka wire server: listener, connections, frames.

pub mod connection;
pub mod frame;
pub mod node_channel;

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::broker::Broker;
use crate::handlers::ListenerKind;

/// Accepts connections, at most `max.connections` at once, backing off when accept fails
/// (e.g. out of file descriptors) instead of spinning.
///
/// Each listener has its own request budget (`queued.max.request.bytes`), so clients
/// filling theirs never stall the controller listener's Raft traffic.
pub async fn run_listener(listener: TcpListener, broker: Arc<Broker>, kind: ListenerKind) {
    let limit = Arc::new(Semaphore::new(broker.config.max_connections.max(1)));
    let budget = frame::RequestBudget::new(broker.config.queued_max_request_bytes);
    let mut backoff_ms = 1u64;
    loop {
        let permit = limit
            .clone()
            .acquire_owned()
            .await
            .expect("semaphore never closed");
        match listener.accept().await {
            Ok((stream, peer)) => {
                backoff_ms = 1;
                let broker = broker.clone();
                let budget = budget.clone();
                tokio::spawn(async move {
                    connection::serve(stream, peer, broker, kind, budget).await;
                    drop(permit);
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, backoff_ms, "accept failed");
                tokio::time::sleep(Duration::from_millis(backoff_ms)).await;
                backoff_ms = (backoff_ms * 2).min(1000);
            }
        }
    }
}
