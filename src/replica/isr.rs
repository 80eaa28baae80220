//! In-sync replica tracking on the leader (Kafka's `Replica.updateFetchState`,
//! `Partition.maybeShrinkIsr` and `maybeExpandIsr`), as pure functions of follower progress
//! and the clock.
//!
//! A follower is caught up at time t if at t its fetch offset reached the leader's log end
//! offset as of its previous fetch. A follower in the ISR that has not been caught up for
//! `replica.lag.time.max.ms` leaves it; a replica outside the ISR that holds everything up to
//! the high watermark (and has reached the current leader epoch's start) joins it.

use std::collections::HashMap;

/// What the leader knows of one follower.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FollowerProgress {
    /// The follower's log end offset: its last fetch offset (-1 before its first fetch).
    pub log_end_offset: i64,
    /// Last time the follower was caught up with the leader.
    pub last_caught_up_ms: i64,
    /// The leader's log end offset at the follower's previous fetch.
    last_fetch_leader_log_end_offset: i64,
    last_fetch_ms: i64,
}

impl FollowerProgress {
    /// A follower the leader has not heard from yet gets a full lag period (Kafka resets
    /// followers' caught-up time when it becomes leader).
    pub fn new(now_ms: i64) -> Self {
        FollowerProgress {
            log_end_offset: -1,
            last_caught_up_ms: now_ms,
            last_fetch_leader_log_end_offset: -1,
            last_fetch_ms: now_ms,
        }
    }

    pub fn on_fetch(&mut self, fetch_offset: i64, leader_log_end_offset: i64, now_ms: i64) {
        if fetch_offset >= leader_log_end_offset {
            self.last_caught_up_ms = now_ms;
        } else if fetch_offset >= self.last_fetch_leader_log_end_offset {
            self.last_caught_up_ms = self.last_caught_up_ms.max(self.last_fetch_ms);
        }
        self.log_end_offset = fetch_offset;
        self.last_fetch_leader_log_end_offset = leader_log_end_offset;
        self.last_fetch_ms = now_ms;
    }
}

/// The ISR the leader should propose, or None when it should stay as it is.
///
/// The leader never leaves its own ISR; replica order is kept so the preferred replica
/// stays first.
#[allow(clippy::too_many_arguments)]
pub fn next_isr(
    leader: i32,
    replicas: &[i32],
    isr: &[i32],
    followers: &HashMap<i32, FollowerProgress>,
    high_watermark: i64,
    leader_epoch_start_offset: i64,
    now_ms: i64,
    replica_lag_time_max_ms: i64,
) -> Option<Vec<i32>> {
    let in_sync = |r: &i32| -> bool {
        if *r == leader {
            return true;
        }
        let Some(p) = followers.get(r) else {
            return false;
        };
        let recently_caught_up = now_ms - p.last_caught_up_ms <= replica_lag_time_max_ms;
        if isr.contains(r) {
            recently_caught_up
        } else {
            // Kafka expands on a follower's fetch; checked periodically here, so the follower
            // must also be fetching still: a stopped one whose last position happened to
            // reach the HW must not flap back in.
            recently_caught_up
                && p.log_end_offset >= high_watermark
                && p.log_end_offset >= leader_epoch_start_offset
        }
    };
    let next: Vec<i32> = replicas.iter().copied().filter(|r| in_sync(r)).collect();
    let mut current: Vec<i32> = isr.to_vec();
    current.sort();
    let mut sorted = next.clone();
    sorted.sort();
    (sorted != current).then_some(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(leo: i64, caught_up_ms: i64) -> FollowerProgress {
        FollowerProgress {
            log_end_offset: leo,
            last_caught_up_ms: caught_up_ms,
            last_fetch_leader_log_end_offset: leo,
            last_fetch_ms: caught_up_ms,
        }
    }

    #[test]
    fn caught_up_time_follows_kafkas_rule() {
        let mut p = FollowerProgress::new(0);
        p.on_fetch(0, 10, 100); // behind: not caught up now
        assert_eq!(p.last_caught_up_ms, 0);
        p.on_fetch(10, 20, 200); // reached the leader's end as of the previous fetch (10)
        assert_eq!(p.last_caught_up_ms, 100);
        p.on_fetch(20, 20, 300); // fully caught up
        assert_eq!(p.last_caught_up_ms, 300);
    }

    #[test]
    fn lagging_follower_leaves_and_caught_up_replica_joins() {
        let followers = HashMap::from([(2, progress(100, 0)), (3, progress(100, 9_000))]);
        // Follower 2 has not caught up for 10 s > 5 s: it leaves.
        assert_eq!(
            next_isr(1, &[1, 2, 3], &[1, 2, 3], &followers, 100, 0, 10_000, 5_000),
            Some(vec![1, 3])
        );
        // Nothing to change while both are within the lag.
        assert_eq!(
            next_isr(1, &[1, 2, 3], &[1, 2, 3], &followers, 100, 0, 4_000, 5_000),
            None
        );
        // An out-of-ISR replica at the HW joins; one below it does not.
        let followers = HashMap::from([(2, progress(100, 0)), (3, progress(99, 0))]);
        assert_eq!(
            next_isr(1, &[1, 2, 3], &[1], &followers, 100, 0, 1, 5_000),
            Some(vec![1, 2])
        );
        // ... nor one that has not reached the current epoch's start.
        assert_eq!(
            next_isr(1, &[1, 2, 3], &[1], &followers, 50, 101, 1, 5_000),
            None
        );
        // A replica at the HW that stopped fetching long ago is not added.
        let stale = HashMap::from([(2, progress(100, 0))]);
        assert_eq!(
            next_isr(1, &[1, 2, 3], &[1], &stale, 100, 0, 10_000, 5_000),
            None
        );
        // A replica never heard from is not added.
        assert_eq!(
            next_isr(1, &[1, 2, 3], &[1], &HashMap::new(), 0, 0, 1, 5_000),
            None
        );
    }
}
