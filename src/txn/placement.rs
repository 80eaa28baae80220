//! Which `__transaction_state` partition holds a transactional id: Kafka's
//! `partitionFor(transactionalId)` = `Utils.abs(transactionalId.hashCode) % partitions`, the
//! same hash that places groups (so it is shared, not copied).

/// The internal topic of transaction state (Kafka's `Topic.TRANSACTION_STATE_TOPIC_NAME`).
pub const TRANSACTION_STATE_TOPIC: &str = "__transaction_state";

pub fn partition_for(transactional_id: &str, partitions: i32) -> i32 {
    crate::group::placement::partition_for(transactional_id, partitions)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_as_kafka() {
        // "Hello World".hashCode() = -862545276; abs % 50 = 26.
        assert_eq!(partition_for("Hello World", 50), 26);
        assert_eq!(partition_for("polygenelubricants", 50), 0);
    }
}
