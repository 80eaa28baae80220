//! The broker's session lease: how long this broker can be sure the controller still counts
//! it alive, and so has not moved its leaderships elsewhere.
//!
//! The controller fences a broker (and elects other leaders for its partitions) only when
//! `broker.session.timeout.ms` has passed since it last *received* a heartbeat, which is no
//! earlier than when the broker *sent* it. So a broker whose heartbeat sent at `t` was
//! answered "not fenced" still holds its leaderships until at least `t + session timeout`.
//! A leader cut off from the controller, or paused and resumed, keeps a stale view of its
//! partitions; answering ListOffsets from that view could show a high watermark older than
//! one a new leader already acknowledged. Leaders answer such reads only within the lease.
//!
//! Invariant: `valid_until` never exceeds (send time of an unfenced heartbeat) + session
//! timeout - margin, with the margin covering clock-rate differences between nodes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub struct SessionLease {
    base: Instant,
    /// Milliseconds since `base` until which the lease holds; 0: never held.
    valid_until_ms: AtomicU64,
    length: Duration,
}

impl SessionLease {
    /// A lease lasting nine tenths of the session timeout from each heartbeat's sending.
    pub fn new(session_timeout: Duration) -> SessionLease {
        SessionLease {
            base: Instant::now(),
            valid_until_ms: AtomicU64::new(0),
            length: session_timeout.mul_f64(0.9),
        }
    }

    /// A heartbeat sent at `sent_at` was answered: the controller counts this broker alive
    /// and unfenced.
    pub fn renew(&self, sent_at: Instant) {
        let until = sent_at.saturating_duration_since(self.base) + self.length;
        self.valid_until_ms
            .fetch_max(until.as_millis() as u64, Ordering::SeqCst);
    }

    /// The controller says this broker is fenced, or it registered anew: whatever it led is
    /// being moved.
    pub fn revoke(&self) {
        self.valid_until_ms.store(0, Ordering::SeqCst);
    }

    pub fn is_valid(&self) -> bool {
        self.is_valid_at(Instant::now())
    }

    fn is_valid_at(&self, now: Instant) -> bool {
        let now_ms = now.saturating_duration_since(self.base).as_millis() as u64;
        now_ms < self.valid_until_ms.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_runs_from_the_heartbeat_send_and_can_be_revoked() {
        let lease = SessionLease::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert!(
            !lease.is_valid_at(t0),
            "no lease before the first heartbeat"
        );
        lease.renew(t0);
        assert!(lease.is_valid_at(t0 + Duration::from_secs(8)));
        assert!(!lease.is_valid_at(t0 + Duration::from_secs(9) + Duration::from_millis(10)));
        // An older heartbeat's answer never shortens a newer one's lease.
        lease.renew(t0 + Duration::from_secs(5));
        lease.renew(t0);
        assert!(lease.is_valid_at(t0 + Duration::from_secs(13)));
        lease.revoke();
        assert!(!lease.is_valid_at(t0 + Duration::from_secs(6)));
    }
}
