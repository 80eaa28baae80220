//! Committed offsets as records of `__consumer_offsets`, in Kafka's own byte layout, and
//! their replay.
//!
//! A record's key is `OffsetCommitKey` prefixed by its type/version `1` (group, topic,
//! partition); its value is `OffsetCommitValue` version 3 (offset, leader epoch, metadata,
//! commit timestamp), which is what Kafka 4.x writes; a null value (tombstone) deletes the
//! key. Both are version-prefixed, non-flexible Kafka messages: big-endian integers, strings
//! as a 16-bit length and UTF-8 bytes. Key type 2 is Kafka's `GroupMetadataKey`; Gregor does
//! not write it and replay ignores it, as it ignores the record types of Kafka's newer group
//! protocols, so a partition written by Kafka loads its offsets here too.
//!
//! Replay is "last record wins per key, a tombstone deletes": the state after replaying a
//! log is the same whatever prefix of superseded records was removed from it, which is what
//! lets the coordinator bound the log (see `checkpoint_due`).

use std::collections::{BTreeMap, HashMap};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::records::RecordBatchDecoder;

/// Key type of an offset commit (Kafka's `OffsetCommitKey`, "version 1"; 0 is the legacy one).
const KEY_OFFSET_COMMIT: i16 = 1;
const KEY_OFFSET_COMMIT_LEGACY: i16 = 0;
/// Key type of Kafka's `GroupMetadataKey`.
const KEY_GROUP_METADATA: i16 = 2;
/// The value version Gregor writes (Kafka 4.x's `offsetCommitValueVersion(false)`).
const VALUE_VERSION: i16 = 3;

/// One partition's committed position, as stored and as OffsetFetch reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommittedOffset {
    pub offset: i64,
    /// -1 when the committer did not say.
    pub leader_epoch: i32,
    /// Kafka stores a missing metadata string as "".
    pub metadata: String,
    pub commit_timestamp_ms: i64,
}

/// The key of an offset record.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OffsetKey {
    pub group: String,
    pub topic: String,
    pub partition: i32,
}

/// A change to committed offsets: what one record in `__consumer_offsets` says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OffsetOp {
    Commit(OffsetKey, CommittedOffset),
    /// A tombstone: the key has no committed offset any more.
    Delete(OffsetKey),
}

impl OffsetOp {
    pub fn key(&self) -> &OffsetKey {
        match self {
            OffsetOp::Commit(k, _) | OffsetOp::Delete(k) => k,
        }
    }
}

/// What a record of `__consumer_offsets` is, for replay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CoordinatorRecord {
    Offset(OffsetOp),
    /// Any other record type (group metadata, newer protocols): not needed for offsets.
    Other {
        key_type: i16,
    },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("record has no key")]
    NoKey,
    #[error("record truncated")]
    Truncated,
    #[error("string is not UTF-8")]
    NotUtf8,
    #[error("unknown offset commit value version {0}")]
    UnknownValueVersion(i16),
    #[error("record batch: {0}")]
    Batch(String),
}

/// Kafka's committed offsets, by group, then by (topic, partition).
pub type OffsetsByGroup = HashMap<String, BTreeMap<(String, i32), CommittedOffset>>;

pub fn encode_key(key: &OffsetKey) -> Bytes {
    let mut buf = BytesMut::with_capacity(2 + 2 + key.group.len() + 2 + key.topic.len() + 4);
    buf.put_i16(KEY_OFFSET_COMMIT);
    put_string(&mut buf, &key.group);
    put_string(&mut buf, &key.topic);
    buf.put_i32(key.partition);
    buf.freeze()
}

pub fn encode_value(value: &CommittedOffset) -> Bytes {
    let mut buf = BytesMut::with_capacity(2 + 8 + 4 + 2 + value.metadata.len() + 8);
    buf.put_i16(VALUE_VERSION);
    buf.put_i64(value.offset);
    buf.put_i32(value.leader_epoch);
    put_string(&mut buf, &value.metadata);
    buf.put_i64(value.commit_timestamp_ms);
    buf.freeze()
}

/// Kafka strings are at most i16::MAX bytes; group ids, topic names (249) and metadata
/// (capped at 4096 by the OffsetCommit handler) stay far below, so a longer one is a bug.
fn put_string(buf: &mut BytesMut, s: &str) {
    assert!(
        s.len() <= i16::MAX as usize,
        "string too long for a Kafka record"
    );
    buf.put_i16(s.len() as i16);
    buf.put_slice(s.as_bytes());
}

/// A cursor over a record's bytes that never reads past the end.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], DecodeError> {
        if self.0.len() < n {
            return Err(DecodeError::Truncated);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn i16(&mut self) -> Result<i16, DecodeError> {
        Ok(i16::from_be_bytes(
            self.take(2)?.try_into().expect("2 bytes"),
        ))
    }
    fn i32(&mut self) -> Result<i32, DecodeError> {
        Ok(i32::from_be_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    fn i64(&mut self) -> Result<i64, DecodeError> {
        Ok(i64::from_be_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
    fn string(&mut self) -> Result<String, DecodeError> {
        let len = self.i16()?;
        if len < 0 {
            return Err(DecodeError::Truncated);
        }
        let bytes = self.take(len as usize)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| DecodeError::NotUtf8)
    }
    fn uvarint(&mut self) -> Result<u64, DecodeError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.take(1)?[0];
            value |= ((b & 0x7f) as u64) << shift;
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(DecodeError::Truncated)
    }
    /// A flexible-version (compact) string: length + 1 as an unsigned varint.
    fn compact_string(&mut self) -> Result<String, DecodeError> {
        let len = self.uvarint()?;
        if len == 0 {
            return Err(DecodeError::Truncated);
        }
        let n = usize::try_from(len - 1).map_err(|_| DecodeError::Truncated)?;
        let bytes = self.take(n)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| DecodeError::NotUtf8)
    }
    fn skip_tagged_fields(&mut self) -> Result<(), DecodeError> {
        let count = self.uvarint()?;
        for _ in 0..count {
            self.uvarint()?;
            let size = usize::try_from(self.uvarint()?).map_err(|_| DecodeError::Truncated)?;
            self.take(size)?;
        }
        Ok(())
    }
}

/// Decodes one record of `__consumer_offsets` from its key and value.
pub fn decode_record(key: &[u8], value: Option<&[u8]>) -> Result<CoordinatorRecord, DecodeError> {
    let mut k = Reader(key);
    let key_type = k.i16()?;
    if key_type == KEY_GROUP_METADATA {
        // Kafka's member/assignment snapshot of a classic group; offsets do not need it.
        return Ok(CoordinatorRecord::Other { key_type });
    }
    if key_type != KEY_OFFSET_COMMIT && key_type != KEY_OFFSET_COMMIT_LEGACY {
        return Ok(CoordinatorRecord::Other { key_type });
    }
    let key = OffsetKey {
        group: k.string()?,
        topic: k.string()?,
        partition: k.i32()?,
    };
    let Some(value) = value else {
        return Ok(CoordinatorRecord::Offset(OffsetOp::Delete(key)));
    };
    let mut v = Reader(value);
    let version = v.i16()?;
    let committed = match version {
        // v0 and v2: offset, metadata, commit timestamp; v1 adds an expire timestamp, which
        // Kafka 4.x no longer honours either.
        0..=2 => {
            let offset = v.i64()?;
            let metadata = v.string()?;
            let commit_timestamp_ms = v.i64()?;
            if version == 1 {
                v.i64()?;
            }
            CommittedOffset {
                offset,
                leader_epoch: -1,
                metadata,
                commit_timestamp_ms,
            }
        }
        3 => CommittedOffset {
            offset: v.i64()?,
            leader_epoch: v.i32()?,
            metadata: v.string()?,
            commit_timestamp_ms: v.i64()?,
        },
        // v4 is v3 in the flexible encoding (compact strings, tagged fields such as a topic id).
        4 => {
            let c = CommittedOffset {
                offset: v.i64()?,
                leader_epoch: v.i32()?,
                metadata: v.compact_string()?,
                commit_timestamp_ms: v.i64()?,
            };
            v.skip_tagged_fields()?;
            c
        }
        other => return Err(DecodeError::UnknownValueVersion(other)),
    };
    Ok(CoordinatorRecord::Offset(OffsetOp::Commit(key, committed)))
}

/// One uncompressed v2 batch holding `ops` in order (offsets are assigned by the log), as
/// Kafka's coordinator writes them: no producer id, CreateTime `timestamp_ms`.
pub fn encode_batch(ops: &[OffsetOp], timestamp_ms: i64) -> Bytes {
    crate::internal_records::encode_batch(
        ops.iter()
            .map(|op| {
                let value = match op {
                    OffsetOp::Commit(_, v) => Some(encode_value(v)),
                    OffsetOp::Delete(_) => None,
                };
                (encode_key(op.key()), value)
            })
            .collect(),
        timestamp_ms,
    )
}

/// Decodes whole batches read from the log into (offset, record). Records that are not
/// Kafka coordinator records are skipped with a warning rather than failing the load: one bad
/// record must not make every group of the partition unavailable.
pub fn decode_batches(mut bytes: Bytes) -> Result<Vec<(i64, CoordinatorRecord)>, DecodeError> {
    let sets = RecordBatchDecoder::decode_all(&mut bytes)
        .map_err(|e| DecodeError::Batch(e.to_string()))?;
    let mut out = Vec::new();
    for set in sets {
        for r in set.records {
            if r.control {
                continue;
            }
            let Some(key) = r.key.as_ref() else {
                tracing::warn!(
                    offset = r.offset,
                    "record without a key in the offsets topic; skipped"
                );
                continue;
            };
            match decode_record(key, r.value.as_deref()) {
                Ok(rec) => out.push((r.offset, rec)),
                Err(e) => {
                    tracing::warn!(offset = r.offset, error = %e, "undecodable record in the offsets topic; skipped")
                }
            }
        }
    }
    Ok(out)
}

/// Applies one change: last record wins, a tombstone deletes. Groups left with no offsets
/// are removed, so the map holds only live keys.
pub fn apply(state: &mut OffsetsByGroup, op: OffsetOp) {
    match op {
        OffsetOp::Commit(k, v) => {
            state
                .entry(k.group)
                .or_default()
                .insert((k.topic, k.partition), v);
        }
        OffsetOp::Delete(k) => {
            if let Some(offsets) = state.get_mut(&k.group) {
                offsets.remove(&(k.topic, k.partition));
                if offsets.is_empty() {
                    state.remove(&k.group);
                }
            }
        }
    }
}

/// Replays records in log order into the committed offsets they leave.
pub fn replay(records: impl IntoIterator<Item = CoordinatorRecord>) -> OffsetsByGroup {
    let mut state = OffsetsByGroup::new();
    for r in records {
        if let CoordinatorRecord::Offset(op) = r {
            apply(&mut state, op);
        }
    }
    state
}

/// The ops that write every live offset again: a checkpoint. Sorted, so a checkpoint of the
/// same state is always the same bytes.
pub fn checkpoint_ops(state: &OffsetsByGroup) -> Vec<OffsetOp> {
    let mut groups: Vec<&String> = state.keys().collect();
    groups.sort();
    groups
        .into_iter()
        .flat_map(|g| {
            state[g].iter().map(move |((t, p), v)| {
                OffsetOp::Commit(
                    OffsetKey {
                        group: g.clone(),
                        topic: t.clone(),
                        partition: *p,
                    },
                    v.clone(),
                )
            })
        })
        .collect()
}

/// Whether a partition whose log spans `log_offsets` offsets (log end - log start) while
/// `live` keys are live should be checkpointed: once superseded records outnumber the live
/// ones and the log is past `min_records`. After a checkpoint the log holds about `live`
/// records, so the log stays within max(min_records, 2 x live + writes since) offsets.
pub fn checkpoint_due(log_offsets: i64, live: usize, min_records: i64) -> bool {
    log_offsets >= min_records.max(1) && log_offsets > 2 * live as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(g: &str, t: &str, p: i32) -> OffsetKey {
        OffsetKey {
            group: g.into(),
            topic: t.into(),
            partition: p,
        }
    }

    fn value(offset: i64) -> CommittedOffset {
        CommittedOffset {
            offset,
            leader_epoch: 5,
            metadata: "m".into(),
            commit_timestamp_ms: 1_700_000_000_000,
        }
    }

    #[test]
    fn key_and_value_bytes_are_kafkas() {
        // OffsetCommitKey, version-prefixed as Kafka's MessageUtil.toVersionPrefixedBytes.
        let k = encode_key(&key("g", "tp", 7));
        assert_eq!(
            &k[..],
            &[0, 1, 0, 1, b'g', 0, 2, b't', b'p', 0, 0, 0, 7][..]
        );
        // OffsetCommitValue v3: offset, leaderEpoch, metadata, commitTimestamp.
        let v = encode_value(&CommittedOffset {
            offset: 258,
            leader_epoch: -1,
            metadata: String::new(),
            commit_timestamp_ms: 1,
        });
        assert_eq!(
            &v[..],
            &[
                0, 3, // version
                0, 0, 0, 0, 0, 0, 1, 2, // offset 258
                0xff, 0xff, 0xff, 0xff, // leader epoch -1
                0, 0, // metadata ""
                0, 0, 0, 0, 0, 0, 0, 1, // commit timestamp
            ][..]
        );
    }

    #[test]
    fn round_trips_and_older_versions() {
        let k = key("group-\u{e9}", "orders", 3);
        let v = value(42);
        assert_eq!(
            decode_record(&encode_key(&k), Some(&encode_value(&v))).unwrap(),
            CoordinatorRecord::Offset(OffsetOp::Commit(k.clone(), v.clone()))
        );
        assert_eq!(
            decode_record(&encode_key(&k), None).unwrap(),
            CoordinatorRecord::Offset(OffsetOp::Delete(k.clone()))
        );
        // Version 1 (with an expire timestamp), as Kafka 2.0 wrote it.
        let mut v1 = vec![0, 1];
        v1.extend_from_slice(&42i64.to_be_bytes());
        v1.extend_from_slice(&[0, 1, b'm']);
        v1.extend_from_slice(&1_700_000_000_000i64.to_be_bytes());
        v1.extend_from_slice(&(-1i64).to_be_bytes());
        let CoordinatorRecord::Offset(OffsetOp::Commit(_, got)) =
            decode_record(&encode_key(&k), Some(&v1)).unwrap()
        else {
            panic!("an offset commit");
        };
        assert_eq!(
            (got.offset, got.leader_epoch, got.metadata.as_str()),
            (42, -1, "m")
        );
        // Version 4: flexible, compact metadata and a tagged field (e.g. a topic id).
        let mut v4 = vec![0, 4];
        v4.extend_from_slice(&42i64.to_be_bytes());
        v4.extend_from_slice(&5i32.to_be_bytes());
        v4.extend_from_slice(&[2, b'm']);
        v4.extend_from_slice(&1_700_000_000_000i64.to_be_bytes());
        v4.extend_from_slice(&[1, 0, 16]);
        v4.extend_from_slice(&[9u8; 16]);
        assert_eq!(
            decode_record(&encode_key(&k), Some(&v4)).unwrap(),
            CoordinatorRecord::Offset(OffsetOp::Commit(k.clone(), value(42)))
        );
        // Group metadata and unknown types are recognised and left alone.
        assert_eq!(
            decode_record(&[0, 2, 0, 1, b'g'], Some(&[0, 3])).unwrap(),
            CoordinatorRecord::Other {
                key_type: KEY_GROUP_METADATA
            }
        );
    }

    #[test]
    fn bad_bytes_are_errors_not_panics() {
        let k = encode_key(&key("g", "t", 0));
        for cut in 0..k.len() {
            assert!(decode_record(&k[..cut], None).is_err());
        }
        assert_eq!(decode_record(&k[..5], None), Err(DecodeError::Truncated));
        let v = encode_value(&value(1));
        for cut in 0..v.len() {
            assert!(decode_record(&k, Some(&v[..cut])).is_err());
        }
        assert_eq!(
            decode_record(&k, Some(&[0, 9])),
            Err(DecodeError::UnknownValueVersion(9))
        );
        assert_eq!(
            decode_record(&[0, 1, 0xff, 0xff], None),
            Err(DecodeError::Truncated)
        );
        assert!(decode_batches(Bytes::from_static(b"garbage")).is_err());
    }

    #[test]
    fn batch_round_trip_and_replay_with_tombstones() {
        let ops = vec![
            OffsetOp::Commit(key("a", "t", 0), value(1)),
            OffsetOp::Commit(key("a", "t", 1), value(2)),
            OffsetOp::Commit(key("b", "t", 0), value(3)),
            OffsetOp::Commit(key("a", "t", 0), value(10)),
            OffsetOp::Delete(key("a", "t", 1)),
            OffsetOp::Delete(key("b", "t", 0)),
            OffsetOp::Delete(key("c", "t", 0)),
        ];
        let batch = encode_batch(&ops, 1_700_000_000_000);
        let header = gregor_storage::BatchHeader::parse(&batch).unwrap();
        assert_eq!(header.records_count, ops.len() as i32);
        assert_eq!(header.producer_id, -1);
        gregor_storage::verify_crc(&batch).unwrap();
        let decoded = decode_batches(batch).unwrap();
        assert_eq!(
            decoded.iter().map(|(o, _)| *o).collect::<Vec<_>>(),
            (0..ops.len() as i64).collect::<Vec<_>>()
        );
        let state = replay(decoded.into_iter().map(|(_, r)| r));
        assert_eq!(state.len(), 1, "b lost its only offset");
        assert_eq!(state["a"].len(), 1);
        assert_eq!(state["a"][&("t".to_string(), 0)].offset, 10);
    }

    #[test]
    fn checkpoint_keeps_every_live_value() {
        // A long history of commits and deletions; after the checkpoint, replaying only the
        // checkpoint (the log start moved to its first offset) gives the same state.
        let mut log = Vec::new();
        for round in 0..50i64 {
            for p in 0..4 {
                log.push(OffsetOp::Commit(
                    key("g", "t", p),
                    value(round * 10 + p as i64),
                ));
            }
            if round % 7 == 0 {
                log.push(OffsetOp::Delete(key("g", "t", 3)));
            }
        }
        log.push(OffsetOp::Delete(key("g", "t", 2)));
        let full = replay(log.iter().cloned().map(CoordinatorRecord::Offset));
        let live: usize = full.values().map(|o| o.len()).sum();
        assert_eq!(live, 2, "round 49 deleted p3, then p2 went");
        assert!(checkpoint_due(log.len() as i64, live, 100));
        let checkpoint = checkpoint_ops(&full);
        assert_eq!(checkpoint.len(), live);
        let mut after = log.clone();
        after.extend(checkpoint.iter().cloned());
        let start = log.len();
        let compacted = replay(
            after[start..]
                .iter()
                .cloned()
                .map(CoordinatorRecord::Offset),
        );
        assert_eq!(compacted, full);
        // Later writes on top of the checkpoint still win.
        after.push(OffsetOp::Commit(key("g", "t", 0), value(999)));
        let later = replay(
            after[start..]
                .iter()
                .cloned()
                .map(CoordinatorRecord::Offset),
        );
        assert_eq!(later["g"][&("t".to_string(), 0)].offset, 999);
    }

    #[test]
    fn checkpoint_decision() {
        assert!(!checkpoint_due(99, 0, 100), "below the minimum");
        assert!(checkpoint_due(100, 0, 100));
        assert!(
            !checkpoint_due(1000, 500, 100),
            "live offsets are half the log"
        );
        assert!(checkpoint_due(1001, 500, 100));
        assert!(!checkpoint_due(0, 0, 0));
    }
}
