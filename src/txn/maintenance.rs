//! The coordinator's timers (Kafka's `TransactionCoordinator` scheduled tasks):
//! - every `transaction.abort.timed.out.transaction.cleanup.interval.ms`, an Ongoing
//!   transaction past its `transaction.timeout.ms` is aborted by the coordinator with a
//!   fenced epoch (`abortTimedOutTransactions`), so a hung producer cannot hold the LSO;
//! - every `transaction.remove.expired.transaction.cleanup.interval.ms`, an id idle in
//!   Empty/CompleteCommit/CompleteAbort for `transactional.id.expiration.ms` is removed
//!   with a tombstone (`removeExpiredTransactionalIds`);
//! - on every tick, a prepared transaction without a marker task (after a load, or after a
//!   bounded run gave up) gets one, so markers are retried until acknowledged.

use std::sync::Arc;
use std::time::Duration;

use super::coordinator::TransactionCoordinator;
use super::state::{TransactionState, TxnRecord};
use crate::broker::Broker;
use crate::clock::now_ms;

const TICK: Duration = Duration::from_millis(500);

/// Kafka's `timedOutTransactions` predicate.
pub fn is_timed_out(r: &TxnRecord, pending: bool, now_ms: i64) -> bool {
    r.state == TransactionState::Ongoing
        && !pending
        && r.txn_start_timestamp_ms >= 0
        && r.txn_start_timestamp_ms
            .saturating_add(r.txn_timeout_ms as i64)
            < now_ms
}

/// Kafka's expiry predicate for an idle transactional id.
pub fn is_expired(r: &TxnRecord, pending: bool, now_ms: i64, expiration_ms: i64) -> bool {
    r.state.is_expiration_allowed()
        && !pending
        && r.txn_last_update_timestamp_ms.saturating_add(expiration_ms) <= now_ms
}

pub async fn run(coordinator: Arc<TransactionCoordinator>, broker: Arc<Broker>) {
    let config = coordinator.config().clone();
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut last_abort, mut last_expire) = (now_ms(), now_ms());
    loop {
        ticker.tick().await;
        let now = now_ms();
        let snapshot = coordinator.snapshot();
        for (id, r, pending) in &snapshot {
            if matches!(
                r.state,
                TransactionState::PrepareCommit | TransactionState::PrepareAbort
            ) && !pending
            {
                coordinator.start_markers(&broker, id);
            }
        }
        if now - last_abort >= config.abort_timed_out_interval_ms as i64 {
            last_abort = now;
            for (id, r, pending) in &snapshot {
                if !is_timed_out(r, *pending, now) {
                    continue;
                }
                tracing::info!(transactional_id = %id, producer_id = r.producer_id, timeout_ms = r.txn_timeout_ms, "aborting timed-out transaction");
                // Kafka bumps the epoch (prepareFenceProducerEpoch) so the hung producer is
                // fenced; the abort is then the coordinator's own (not from the client).
                let c = coordinator.clone();
                let b = broker.clone();
                let (id, pid, tv) = (id.clone(), r.producer_id, r.client_transaction_version);
                tokio::spawn(async move {
                    if let Err(e) = c.abort_timed_out(&b, &id, pid, tv).await {
                        tracing::info!(transactional_id = %id, error = %e, "cannot abort timed-out transaction");
                    }
                });
            }
        }
        if now - last_expire >= config.remove_expired_interval_ms as i64 {
            last_expire = now;
            for (id, r, pending) in &snapshot {
                if is_expired(r, *pending, now, config.id_expiration_ms) {
                    coordinator.expire(id, r.txn_last_update_timestamp_ms).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(state: TransactionState, start: i64, update: i64) -> TxnRecord {
        TxnRecord {
            producer_id: 1,
            prev_producer_id: -1,
            next_producer_id: -1,
            producer_epoch: 0,
            txn_timeout_ms: 100,
            state,
            partitions: Default::default(),
            txn_last_update_timestamp_ms: update,
            txn_start_timestamp_ms: start,
            client_transaction_version: 0,
        }
    }

    #[test]
    fn timeouts_and_expiry() {
        let o = rec(TransactionState::Ongoing, 1_000, 1_000);
        assert!(!is_timed_out(&o, false, 1_100));
        assert!(is_timed_out(&o, false, 1_101));
        assert!(
            !is_timed_out(&o, true, 5_000),
            "a transition in flight is left alone"
        );
        assert!(!is_timed_out(
            &rec(TransactionState::PrepareCommit, 0, 0),
            false,
            5_000
        ));
        let c = rec(TransactionState::CompleteCommit, 0, 1_000);
        assert!(!is_expired(&c, false, 1_999, 1_000));
        assert!(is_expired(&c, false, 2_000, 1_000));
        assert!(
            !is_expired(&o, false, 10_000, 1_000),
            "an ongoing transaction never expires"
        );
    }
}
