//! The consumer protocol's subscription (Kafka's `ConsumerProtocolSubscription`), which
//! consumers put in their JoinGroup metadata. The coordinator reads only the topic list, to
//! tell OffsetDelete which topics a group is still subscribed to.

/// The topics of a serialized subscription (`version: int16`, then `topics: [string]`, the
/// same in every version), or `None` when the bytes are not a subscription.
pub fn subscribed_topics(metadata: &[u8]) -> Option<Vec<String>> {
    let mut buf = metadata;
    let version = take_i16(&mut buf)?;
    if version < 0 {
        return None;
    }
    let count = take_i32(&mut buf)?;
    // Each topic takes at least two bytes, which bounds a hostile count.
    if count < 0 || count as usize > buf.len() / 2 {
        return None;
    }
    let mut topics = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let len = take_i16(&mut buf)?;
        if len < 0 || buf.len() < len as usize {
            return None;
        }
        let (name, rest) = buf.split_at(len as usize);
        topics.push(String::from_utf8(name.to_vec()).ok()?);
        buf = rest;
    }
    Some(topics)
}

fn take_i16(buf: &mut &[u8]) -> Option<i16> {
    let (head, rest) = buf.split_first_chunk::<2>()?;
    *buf = rest;
    Some(i16::from_be_bytes(*head))
}

fn take_i32(buf: &mut &[u8]) -> Option<i32> {
    let (head, rest) = buf.split_first_chunk::<4>()?;
    *buf = rest;
    Some(i32::from_be_bytes(*head))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_a_java_consumer_subscription() {
        // Version 3 as the Java consumer sends it: topics, user data (null), owned
        // partitions (none), generation id, rack id (null).
        let mut b = vec![0, 3, 0, 0, 0, 2, 0, 1, b'a', 0, 3, b'b', b'c', b'd'];
        b.extend_from_slice(&[0xff, 0xff, 0xff, 0xff]); // user data: null
        b.extend_from_slice(&[0, 0, 0, 0]); // owned partitions: none
        b.extend_from_slice(&[0, 0, 0, 4]); // generation
        b.extend_from_slice(&[0xff, 0xff]); // rack: null
        assert_eq!(subscribed_topics(&b), Some(vec!["a".into(), "bcd".into()]));
    }

    #[test]
    fn absurd_counts_and_lengths_are_refused_before_allocating() {
        // Counts larger than the bytes left could hold, at every scale, and negative ones.
        for count in [i32::MAX, 1 << 20, 3, -1, i32::MIN] {
            let mut b = vec![0, 1];
            b.extend_from_slice(&count.to_be_bytes());
            b.extend_from_slice(&[0, 0, 0, 0]); // room for two empty names at most
            assert_eq!(subscribed_topics(&b), None, "count {count}");
        }
        // Two empty names fit in four bytes.
        let mut b = vec![0, 1, 0, 0, 0, 2];
        b.extend_from_slice(&[0, 0, 0, 0]);
        assert_eq!(
            subscribed_topics(&b),
            Some(vec![String::new(), String::new()])
        );
        // A name length past the end, a negative one, a negative version, invalid UTF-8.
        assert_eq!(
            subscribed_topics(&[0, 1, 0, 0, 0, 1, 0x7f, 0xff, b'a']),
            None
        );
        assert_eq!(subscribed_topics(&[0, 1, 0, 0, 0, 1, 0xff, 0xff]), None);
        assert_eq!(subscribed_topics(&[0xff, 0xff, 0, 0, 0, 0]), None);
        assert_eq!(subscribed_topics(&[0, 1, 0, 0, 0, 1, 0, 1, 0xc3]), None);
        // Version 0 with no topics is an empty subscription.
        assert_eq!(subscribed_topics(&[0, 0, 0, 0, 0, 0]), Some(vec![]));
    }

    #[test]
    fn garbage_is_none() {
        assert_eq!(subscribed_topics(&[]), None);
        assert_eq!(subscribed_topics(&[0, 1, 0x7f, 0xff, 0xff, 0xff]), None);
        assert_eq!(subscribed_topics(&[0, 1, 0, 0, 0, 1, 0, 9, b'x']), None);
        assert_eq!(subscribed_topics(&[0, 1, 0, 0, 0, 1, 0, 1, 0xff]), None);
    }
}
