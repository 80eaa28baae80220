//! Replica placement: spreads replicas and preferred leaders round-robin over the brokers.

/// Assigns `partitions` partitions (numbered from `first_partition`) of `replication_factor`
/// replicas each over `brokers` (sorted ids, at least `replication_factor` of them).
///
/// Partition p's replicas are `brokers[(start + p + j) % n]` for j in 0..rf, so consecutive
/// partitions have consecutive preferred leaders and no broker carries all leaders. `start`
/// comes from the topic name, so topics do not all begin on the same broker.
pub fn assign_replicas(
    topic: &str,
    brokers: &[i32],
    first_partition: i32,
    partitions: i32,
    replication_factor: i16,
) -> Vec<Vec<i32>> {
    let n = brokers.len();
    let rf = replication_factor as usize;
    assert!(
        rf >= 1 && rf <= n,
        "replication factor {rf} with {n} brokers"
    );
    let start = topic
        .bytes()
        .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize))
        % n;
    (first_partition..first_partition + partitions)
        .map(|p| {
            (0..rf)
                .map(|j| brokers[(start + p as usize + j) % n])
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spreads_leaders_and_replicas() {
        let a = assign_replicas("orders", &[1, 2, 3], 0, 6, 3);
        assert_eq!(a.len(), 6);
        for replicas in &a {
            let mut r = replicas.clone();
            r.sort();
            assert_eq!(r, vec![1, 2, 3]);
        }
        let leaders: std::collections::BTreeSet<i32> = a.iter().map(|r| r[0]).collect();
        assert_eq!(leaders.len(), 3);
        assert_eq!(assign_replicas("t", &[7], 0, 2, 1), vec![vec![7], vec![7]]);
    }
}
