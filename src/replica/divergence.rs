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
/// leader's diverging (epoch, end offset), the follower's own end for that epoch and its log
/// end. Never the follower's high watermark: after an unclean election the leader's log may
/// end below it, and only the leader's epochs say where the two logs agree.
pub fn truncation_offset(
    diverging: (i32, i64),
    follower_end_for_epoch: Option<(i32, i64)>,
    follower_log_end: i64,
) -> i64 {
    let (leader_epoch, leader_end) = diverging;
    if leader_end < 0 {
        // The leader could not say (no epoch that early): nothing to cut by the epochs;
        // Kafka keeps the fetch offset, and an out-of-range fetch then bounds the log by the
        // leader's log end (`out_of_range`).
        return follower_log_end;
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

/// What a follower does when its leader answers OFFSET_OUT_OF_RANGE (Kafka's
/// `AbstractFetcherThread.fetchOffsetAndTruncate`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutOfRange {
    /// Cut the log to this offset and fetch from there.
    TruncateTo(i64),
    /// Drop the whole log and start it, empty, at this offset (the leader's log start).
    TruncateFullyAndStartAt(i64),
    /// Keep the log and fetch again: the fetch offset is within the leader's log by now (it
    /// grew, or its log start was not known), or the leader's answer was incomplete.
    Refetch,
}

/// The follower's move after OFFSET_OUT_OF_RANGE, from its log end (its fetch offset) and
/// what the leader reports: its log end, its log start (None when the leader did not say),
/// and where the two logs agree by the leader epochs (`truncation_offset` on the leader's
/// OffsetForLeaderEpoch answer), when the follower has epochs to ask about.
///
/// - The leader's log ends below the follower's (an unclean election made a shorter log
///   the leader's): truncate to where the logs agree, at most the leader's log end. Kafka
///   truncates to the leader's log end alone; the epochs can only cut earlier, where the
///   logs really diverge, so the follower never keeps records the leader does not have.
/// - The leader's log starts above the follower's log end (it deleted what the follower
///   still needs): truncate fully and start at the leader's log start.
/// - Otherwise the fetch offset is in range now: fetch again from the same offset.
pub fn out_of_range(
    follower_log_end: i64,
    leader_log_end: i64,
    leader_log_start: Option<i64>,
    epoch_agreement: Option<i64>,
) -> OutOfRange {
    if leader_log_end >= 0 && leader_log_end < follower_log_end {
        let target = epoch_agreement.map_or(leader_log_end, |o| o.min(leader_log_end));
        return match leader_log_start {
            // Even the agreed prefix is gone from the leader: nothing of it can be fetched.
            Some(start) if start > target => OutOfRange::TruncateFullyAndStartAt(start),
            _ => OutOfRange::TruncateTo(target),
        };
    }
    match leader_log_start {
        Some(start) if start > follower_log_end => OutOfRange::TruncateFullyAndStartAt(start),
        _ => OutOfRange::Refetch,
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
        // (diverging, follower's end for that epoch, follower log end) -> offset
        let cases = [
            // Follower ahead with an old epoch: it wrote 100..120 in epoch 3, which ended at
            // 100 on the leader (the leader moved on to epoch 4 at 100).
            ((3, 100), Some((3, 120)), 120, 100),
            // Follower missing whole epochs: its epoch 2 ends at 60, the leader's epoch 2 at 80.
            ((2, 80), Some((2, 60)), 60, 60),
            // The follower has no epoch 3 at all (its largest below is 2, ending at 70): cut
            // there and ask again.
            ((3, 100), Some((2, 70)), 90, 70),
            // Leader restarted mid-epoch and lost an unflushed tail of epoch 5 (ends at 40 now),
            // the follower holds 5 up to 55.
            ((5, 40), Some((5, 55)), 55, 40),
            // The leader knows no epoch that early and says no offset: nothing to cut by the
            // epochs (never the follower's HW); OFFSET_OUT_OF_RANGE bounds it if needed.
            ((-1, -1), Some((1, 10)), 10, 10),
            // The leader has no epochs below the follower's: its end offset bounds the cut.
            ((-1, 25), None, 30, 25),
            // The follower knows nothing of the epoch: the leader's end bounds it.
            ((4, 33), None, 50, 33),
        ];
        for (diverging, follower_end, leo, want) in cases {
            assert_eq!(
                truncation_offset(diverging, follower_end, leo),
                want,
                "{diverging:?} {follower_end:?} {leo}"
            );
        }
    }

    #[test]
    fn out_of_range_follows_the_leaders_log() {
        use OutOfRange::*;
        // (follower log end, leader log end, leader log start, epoch agreement) -> action
        let cases = [
            // Unclean election: the new leader's log ends at 60, the follower's (with a high
            // watermark of 100) at 100. By the epochs they agree up to 50: cut there.
            (100, 60, Some(0), Some(50), TruncateTo(50)),
            // The same without epochs to ask about: the leader's log end bounds it (Kafka).
            (100, 60, Some(0), None, TruncateTo(60)),
            // The epochs never cut above the leader's log end.
            (100, 60, Some(0), Some(80), TruncateTo(60)),
            // The leader's log start is unknown: still truncate to its log end.
            (100, 60, None, None, TruncateTo(60)),
            // Even the agreed prefix is below the leader's log start: start over there.
            (100, 60, Some(55), Some(50), TruncateFullyAndStartAt(55)),
            // The follower is behind the leader's log start (it deleted old segments).
            (10, 500, Some(200), None, TruncateFullyAndStartAt(200)),
            (10, 500, Some(200), Some(10), TruncateFullyAndStartAt(200)),
            // In range by now (the leader grew past the follower meanwhile): fetch again.
            (100, 150, Some(0), None, Refetch),
            (100, 100, Some(100), None, Refetch),
            // Nothing known: fetch again rather than guess.
            (100, -1, None, None, Refetch),
            (100, 150, None, None, Refetch),
        ];
        for (leo, leader_end, leader_start, agreed, want) in cases {
            assert_eq!(
                out_of_range(leo, leader_end, leader_start, agreed),
                want,
                "{leo} {leader_end} {leader_start:?} {agreed:?}"
            );
        }
    }
}
