//! Log divergence between a follower and its leader (KIP-101, KIP-279, KIP-320), as pure
//! functions so every case can be tabled in tests.
//!
//! A follower never truncates blindly to its high watermark after a restart or a leader
//! change: it sends the epoch of its last fetched batch; the leader answers with the end of
//! that epoch in its own log when the follower's log goes past it; the follower truncates
//! to where both logs agree and fetches again, repeating until no divergence is reported.

/// Leader side: the (epoch, end offset) a follower must truncate to, or None when its log
/// is a prefix of the leader's. `leader_end_for_epoch` is the leader's answer to
/// OffsetForLeaderEpoch(`last_fetched_epoch`): the largest epoch <= it and where it ends.
/// When the leader has no epoch that early, its history starts at `leader_history_start`
/// (its first epoch's start offset): the answer is epoch -1 with that offset, because
/// (-1, -1) on the wire means "no divergence".
pub fn diverging_epoch(
    leader_end_for_epoch: Option<(i32, i64)>,
    leader_history_start: i64,
    last_fetched_epoch: i32,
    fetch_offset: i64,
) -> Option<(i32, i64)> {
    if last_fetched_epoch < 0 {
        return None;
    }
    match leader_end_for_epoch {
        Some((epoch, end)) if epoch == last_fetched_epoch && end >= fetch_offset => None,
        Some((epoch, end)) => Some((epoch, end)),
        None => Some((-1, leader_history_start.max(0))),
    }
}

/// Follower side (Kafka's `getOffsetTruncationState`): the offset to truncate to, given the
/// leader's diverging (epoch, end offset), the follower's own end for that epoch, its log end
/// and its high watermark.
pub fn truncation_offset(
    diverging: (i32, i64),
    follower_end_for_epoch: Option<(i32, i64)>,
    follower_log_end: i64,
    follower_high_watermark: i64,
) -> i64 {
    let (leader_epoch, leader_end) = diverging;
    if leader_end < 0 {
        // The leader knows no epoch this early: only what was committed is certainly shared.
        return follower_high_watermark.min(follower_log_end);
    }
    if leader_epoch < 0 {
        return leader_end.min(follower_log_end);
    }
    match follower_end_for_epoch {
        None => leader_end.min(follower_log_end),
        // The follower never had the leader's epoch: cut at its own end of the largest epoch
        // below it; the next fetch checks again from there.
        Some((epoch, end)) if epoch != leader_epoch => end.min(follower_log_end),
        Some((_, end)) => end.min(leader_end).min(follower_log_end),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leader_reports_divergence() {
        // (leader's end for the epoch, follower's last fetched epoch, fetch offset) -> answer
        let cases = [
            (Some((3, 100)), 3, 100, None), // caught up in the same epoch
            (Some((3, 100)), 3, 50, None),  // behind in the same epoch
            (Some((3, 100)), 3, 120, Some((3, 100))), // ahead in an epoch the leader ended at 100
            (Some((2, 80)), 3, 90, Some((2, 80))), // the leader never had epoch 3
            (None, 1, 10, Some((-1, 5))),   // the leader's history starts at 5
            (Some((3, 100)), -1, 0, None),  // an empty follower log cannot diverge
        ];
        for (leader, last_epoch, offset, want) in cases {
            assert_eq!(
                diverging_epoch(leader, 5, last_epoch, offset),
                want,
                "{leader:?} {last_epoch} {offset}"
            );
        }
    }

    #[test]
    fn follower_truncates_where_logs_agree() {
        // (diverging, follower's end for that epoch, follower log end, follower HW) -> offset
        let cases = [
            // Follower ahead with an old epoch: it wrote 100..120 in epoch 3, which ended at
            // 100 on the leader (the leader moved on to epoch 4 at 100).
            ((3, 100), Some((3, 120)), 120, 90, 100),
            // Follower missing whole epochs: its epoch 2 ends at 60, the leader's epoch 2 at 80.
            ((2, 80), Some((2, 60)), 60, 60, 60),
            // The follower has no epoch 3 at all (its largest below is 2, ending at 70): cut
            // there and ask again.
            ((3, 100), Some((2, 70)), 90, 50, 70),
            // Leader restarted mid-epoch and lost an unflushed tail of epoch 5 (ends at 40 now),
            // the follower holds 5 up to 55.
            ((5, 40), Some((5, 55)), 55, 30, 40),
            // The leader knows no epoch that early: keep what was committed.
            ((-1, -1), Some((1, 10)), 10, 7, 7),
            // The leader has no epochs below the follower's: its end offset bounds the cut.
            ((-1, 25), None, 30, 20, 25),
            // The follower knows nothing of the epoch: the leader's end bounds it.
            ((4, 33), None, 50, 20, 33),
        ];
        for (diverging, follower_end, leo, hw, want) in cases {
            assert_eq!(
                truncation_offset(diverging, follower_end, leo, hw),
                want,
                "{diverging:?} {follower_end:?} {leo} {hw}"
            );
        }
    }
}
