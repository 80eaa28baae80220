//! Which `__consumer_offsets` partition holds a group, as Kafka computes it, so a Kafka
//! client, a Kafka tool or a Kafka broker looking at the same topic agree with Gregor.
//!
//! The leader of that partition is the group's coordinator: it alone writes the group's
//! records, so the partition's replication is what carries the group across failovers.

/// The internal topic that stores committed offsets (Kafka's `Topic.GROUP_METADATA_TOPIC_NAME`).
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// Java's `String.hashCode`: `s[0]*31^(n-1) + ... + s[n-1]` with wrapping 32-bit arithmetic,
/// over UTF-16 code units (a character outside the BMP counts as its two surrogates).
pub fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, unit| h.wrapping_mul(31).wrapping_add(unit as i32))
}

/// Kafka's `Utils.abs`: the absolute value, except that `i32::MIN` (which has none) maps to 0.
pub fn kafka_abs(n: i32) -> i32 {
    if n == i32::MIN {
        0
    } else {
        n.abs()
    }
}

/// Kafka's `partitionFor(groupId)`: `Utils.abs(groupId.hashCode()) % partitions`.
pub fn partition_for(group_id: &str, partitions: i32) -> i32 {
    assert!(
        partitions > 0,
        "the offsets topic has at least one partition"
    );
    let p = kafka_abs(java_string_hash(group_id)) % partitions;
    debug_assert!((0..partitions).contains(&p));
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_hash_codes() {
        // Values Java's String.hashCode returns.
        assert_eq!(java_string_hash(""), 0);
        assert_eq!(java_string_hash("a"), 97);
        assert_eq!(java_string_hash("abc"), 96354);
        assert_eq!(java_string_hash("hello"), 99_162_322);
        assert_eq!(java_string_hash("Hello World"), -862_545_276);
        // The classic string whose hash is Integer.MIN_VALUE.
        assert_eq!(java_string_hash("polygenelubricants"), i32::MIN);
        // U+1F600 is the surrogate pair D83D DE00: 0xD83D * 31 + 0xDE00.
        assert_eq!(java_string_hash("\u{1F600}"), 1_772_899);
        // U+00E9 is one UTF-16 unit (233), not its two UTF-8 bytes.
        assert_eq!(java_string_hash("\u{e9}"), 233);
    }

    #[test]
    fn partitions_as_kafka_places_groups() {
        assert_eq!(partition_for("hello", 50), 99_162_322 % 50);
        assert_eq!(partition_for("Hello World", 50), 862_545_276 % 50);
        assert_eq!(partition_for("Hello World", 50), 26);
        // Utils.abs(Integer.MIN_VALUE) is 0, not a negative partition.
        assert_eq!(partition_for("polygenelubricants", 50), 0);
        assert_eq!(partition_for("polygenelubricants", 7), 0);
        assert_eq!(partition_for("", 50), 0);
        assert_eq!(partition_for("abc", 1), 0);
        for g in ["g", "billing", "console-consumer-12345", "\u{1F600}"] {
            assert!((0..6).contains(&partition_for(g, 6)));
        }
    }
}
