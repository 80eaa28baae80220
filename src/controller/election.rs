//! Partition leader election, as Kafka's controller does it (`PartitionChangeBuilder`):
//! pure functions from a partition's registration and the set of live brokers to its next
//! registration.
//!
//! Rules (../shared/DESIGN.md, "Rules that keep data safe"):
//! - The leader is an ISR member that is alive, the first such one in replica order (so the
//!   preferred replica leads whenever it can).
//! - With `unclean.leader.election.enable=false`, no ISR member alive means no leader: the
//!   partition waits, offline, rather than lose acknowledged data.
//! - A fenced broker leaves the ISR, except that the ISR is never emptied: its last member
//!   stays so that it, and only it, can lead again without loss.
//! - Any change bumps the partition epoch; a change of leader also bumps the leader epoch.

use std::collections::BTreeSet;

use crate::metadata::PartitionRegistration;

/// Kafka's "no leader" id.
pub const NO_LEADER: i32 = -1;

/// The leader the partition should have given the live brokers.
pub fn choose_leader(
    reg: &PartitionRegistration,
    live: &BTreeSet<i32>,
    unclean_allowed: bool,
) -> i32 {
    // Keep a live current leader: moving leadership without need costs clients a round trip.
    if reg.leader != NO_LEADER && live.contains(&reg.leader) && reg.isr.contains(&reg.leader) {
        return reg.leader;
    }
    if let Some(r) = reg
        .replicas
        .iter()
        .find(|r| reg.isr.contains(r) && live.contains(r))
    {
        return *r;
    }
    if unclean_allowed {
        if let Some(r) = reg.replicas.iter().find(|r| live.contains(r)) {
            return *r;
        }
    }
    NO_LEADER
}

/// The next registration after `broker` is fenced, or None when the partition is unaffected.
pub fn after_broker_fenced(
    reg: &PartitionRegistration,
    broker: i32,
    live: &BTreeSet<i32>,
    unclean_allowed: bool,
) -> Option<PartitionRegistration> {
    if !reg.replicas.contains(&broker) {
        return None;
    }
    let mut next = reg.clone();
    if next.isr.len() > 1 {
        next.isr.retain(|r| *r != broker);
    }
    let mut live = live.clone();
    live.remove(&broker);
    let leader = choose_leader(&next, &live, unclean_allowed);
    if leader != NO_LEADER && !next.isr.contains(&leader) {
        // An unclean election: the new leader's log is the truth from now on.
        next.isr = vec![leader];
    }
    next.leader = leader;
    finish(reg, next)
}

/// The next registration after `broker` is unfenced (or any broker change): an offline
/// partition gets a leader if one is now possible.
pub fn after_broker_unfenced(
    reg: &PartitionRegistration,
    live: &BTreeSet<i32>,
    unclean_allowed: bool,
) -> Option<PartitionRegistration> {
    if reg.leader != NO_LEADER {
        return None;
    }
    let mut next = reg.clone();
    next.leader = choose_leader(reg, live, unclean_allowed);
    if next.leader != NO_LEADER && !next.isr.contains(&next.leader) {
        next.isr = vec![next.leader];
    }
    finish(reg, next)
}

/// Preferred leader election: the first replica leads again if it is live and in the ISR.
pub fn preferred(
    reg: &PartitionRegistration,
    live: &BTreeSet<i32>,
) -> Option<PartitionRegistration> {
    let preferred = *reg.replicas.first()?;
    if reg.leader == preferred || !live.contains(&preferred) || !reg.isr.contains(&preferred) {
        return None;
    }
    let mut next = reg.clone();
    next.leader = preferred;
    finish(reg, next)
}

/// Bumps epochs for a real change; None when nothing changed.
fn finish(
    old: &PartitionRegistration,
    mut next: PartitionRegistration,
) -> Option<PartitionRegistration> {
    if next == *old {
        return None;
    }
    if next.leader != old.leader {
        next.leader_epoch = old.leader_epoch + 1;
    }
    next.partition_epoch = old.partition_epoch + 1;
    Some(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(replicas: &[i32], isr: &[i32], leader: i32) -> PartitionRegistration {
        PartitionRegistration {
            replicas: replicas.to_vec(),
            isr: isr.to_vec(),
            leader,
            leader_epoch: 5,
            partition_epoch: 9,
        }
    }

    fn live(ids: &[i32]) -> BTreeSet<i32> {
        ids.iter().copied().collect()
    }

    #[test]
    fn fenced_leader_moves_to_next_live_isr_replica() {
        let next =
            after_broker_fenced(&reg(&[1, 2, 3], &[1, 2, 3], 1), 1, &live(&[1, 2, 3]), false)
                .unwrap();
        assert_eq!(
            (
                next.leader,
                next.isr.clone(),
                next.leader_epoch,
                next.partition_epoch
            ),
            (2, vec![2, 3], 6, 10)
        );
    }

    #[test]
    fn fenced_follower_leaves_isr_without_leader_change() {
        let next =
            after_broker_fenced(&reg(&[1, 2, 3], &[1, 2, 3], 1), 3, &live(&[1, 2, 3]), false)
                .unwrap();
        assert_eq!(
            (
                next.leader,
                next.isr.clone(),
                next.leader_epoch,
                next.partition_epoch
            ),
            (1, vec![1, 2], 5, 10)
        );
        assert!(
            after_broker_fenced(&reg(&[1, 2], &[1, 2], 1), 3, &live(&[1, 2, 3]), false).is_none(),
            "not a replica"
        );
    }

    #[test]
    fn last_isr_member_stays_and_partition_goes_offline_without_unclean() {
        let next =
            after_broker_fenced(&reg(&[1, 2, 3], &[1], 1), 1, &live(&[2, 3]), false).unwrap();
        assert_eq!((next.leader, next.isr.clone()), (NO_LEADER, vec![1]));
        // When it returns it leads again; nobody else could without losing data.
        let back = after_broker_unfenced(&next, &live(&[1, 2, 3]), false).unwrap();
        assert_eq!(
            (back.leader, back.isr, back.leader_epoch),
            (1, vec![1], next.leader_epoch + 1)
        );
        assert!(after_broker_unfenced(&next, &live(&[2, 3]), false).is_none());
    }

    #[test]
    fn unclean_election_takes_any_live_replica() {
        let next = after_broker_fenced(&reg(&[1, 2, 3], &[1], 1), 1, &live(&[2, 3]), true).unwrap();
        assert_eq!((next.leader, next.isr), (2, vec![2]));
    }

    #[test]
    fn preferred_election_needs_a_live_in_sync_preferred_replica() {
        let next = preferred(&reg(&[1, 2, 3], &[1, 2, 3], 2), &live(&[1, 2, 3])).unwrap();
        assert_eq!(
            (next.leader, next.leader_epoch, next.partition_epoch),
            (1, 6, 10)
        );
        assert!(
            preferred(&reg(&[1, 2, 3], &[1, 2, 3], 1), &live(&[1, 2, 3])).is_none(),
            "already leads"
        );
        assert!(
            preferred(&reg(&[1, 2, 3], &[2, 3], 2), &live(&[1, 2, 3])).is_none(),
            "not in sync"
        );
        assert!(
            preferred(&reg(&[1, 2, 3], &[1, 2, 3], 2), &live(&[2, 3])).is_none(),
            "not live"
        );
    }

    #[test]
    fn preferred_replica_first() {
        assert_eq!(
            choose_leader(
                &reg(&[3, 1, 2], &[1, 2, 3], NO_LEADER),
                &live(&[1, 2, 3]),
                false
            ),
            3
        );
        assert_eq!(
            choose_leader(&reg(&[3, 1, 2], &[1, 2, 3], 2), &live(&[1, 2, 3]), false),
            2,
            "a live leader stays"
        );
    }
}
