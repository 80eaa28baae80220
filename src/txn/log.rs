//! Transaction state as records of `__transaction_state`, in Kafka's byte layout
//! (`TransactionLogKey.json` / `TransactionLogValue.json`, Kafka's `TransactionLog`), so a
//! partition written by Kafka loads here and one written here loads in Kafka.
//!
//! - Key: the key version `0` (i16) then `TransactionLogKey` v0: the transactional id as a
//!   16-bit-length string.
//! - Value: the value version (i16) then `TransactionLogValue`. Version 0 is non-flexible;
//!   version 1 (what Kafka 4.x writes, and what Gregor writes) is flexible: compact strings
//!   and arrays, and tagged fields `PreviousProducerId` (0), `NextProducerId` (1) and
//!   `ClientTransactionVersion` (2), each written only when it differs from its default.
//! - A null value (tombstone) removes the transactional id (expiry).
//!
//! Replay is "last record wins per key", like the offsets topic: the log may be compacted.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::records::RecordBatchDecoder;

use super::state::{TransactionState, TxnRecord};

/// The only key version Kafka defines.
const KEY_VERSION: i16 = 0;
/// The value version Gregor writes (flexible, with the tagged fields of KIP-890).
const VALUE_VERSION: i16 = 1;
/// Kafka bounds a transaction's partitions only by the request size; a record claiming more
/// than this is corrupt, not big, and is refused before anything is allocated for it.
const PARTITIONS_MAX: usize = 1 << 20;

const TAG_PREVIOUS_PRODUCER_ID: u64 = 0;
const TAG_NEXT_PRODUCER_ID: u64 = 1;
const TAG_CLIENT_TRANSACTION_VERSION: u64 = 2;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("record has no key")]
    NoKey,
    #[error("record truncated")]
    Truncated,
    #[error("string is not UTF-8")]
    NotUtf8,
    #[error("unknown transaction log key version {0}")]
    UnknownKeyVersion(i16),
    #[error("unknown transaction log value version {0}")]
    UnknownValueVersion(i16),
    #[error("unknown transaction state {0}")]
    UnknownState(i8),
    #[error("bad length {0}")]
    BadLength(i64),
    #[error("record batch: {0}")]
    Batch(String),
}

/// One record of `__transaction_state`: a transactional id's state, or its removal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxnLogEntry {
    Put(String, TxnRecord),
    Remove(String),
}

impl TxnLogEntry {
    pub fn transactional_id(&self) -> &str {
        match self {
            TxnLogEntry::Put(id, _) | TxnLogEntry::Remove(id) => id,
        }
    }
}

pub fn encode_key(transactional_id: &str) -> Bytes {
    let mut buf = BytesMut::with_capacity(4 + transactional_id.len());
    buf.put_i16(KEY_VERSION);
    put_string(&mut buf, transactional_id);
    buf.freeze()
}

/// `TransactionLogValue` version 1, as Kafka's `TransactionLog.valueToBytes` writes it: the
/// partitions grouped by topic (topics and ids in ascending order, so the bytes are stable).
pub fn encode_value(r: &TxnRecord) -> Bytes {
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (topic, p) in &r.partitions {
        by_topic.entry(topic.as_str()).or_default().push(*p);
    }
    let mut buf = BytesMut::with_capacity(64 + r.partitions.len() * 8);
    buf.put_i16(VALUE_VERSION);
    buf.put_i64(r.producer_id);
    buf.put_i16(r.producer_epoch);
    buf.put_i32(r.txn_timeout_ms);
    buf.put_i8(r.state.id());
    put_uvarint(&mut buf, by_topic.len() as u64 + 1);
    for (topic, ids) in &by_topic {
        put_compact_string(&mut buf, topic);
        put_uvarint(&mut buf, ids.len() as u64 + 1);
        for id in ids {
            buf.put_i32(*id);
        }
        put_uvarint(&mut buf, 0); // no tagged fields in PartitionsSchema
    }
    buf.put_i64(r.txn_last_update_timestamp_ms);
    buf.put_i64(r.txn_start_timestamp_ms);
    let mut tags: Vec<(u64, Vec<u8>)> = Vec::new();
    if r.prev_producer_id != -1 {
        tags.push((
            TAG_PREVIOUS_PRODUCER_ID,
            r.prev_producer_id.to_be_bytes().to_vec(),
        ));
    }
    if r.next_producer_id != -1 {
        tags.push((
            TAG_NEXT_PRODUCER_ID,
            r.next_producer_id.to_be_bytes().to_vec(),
        ));
    }
    if r.client_transaction_version != 0 {
        tags.push((
            TAG_CLIENT_TRANSACTION_VERSION,
            r.client_transaction_version.to_be_bytes().to_vec(),
        ));
    }
    put_uvarint(&mut buf, tags.len() as u64);
    for (tag, data) in tags {
        put_uvarint(&mut buf, tag);
        put_uvarint(&mut buf, data.len() as u64);
        buf.put_slice(&data);
    }
    buf.freeze()
}

/// Transactional ids are at most i16::MAX bytes (the request's string type bounds them).
fn put_string(buf: &mut BytesMut, s: &str) {
    assert!(
        s.len() <= i16::MAX as usize,
        "string too long for a Kafka record"
    );
    buf.put_i16(s.len() as i16);
    buf.put_slice(s.as_bytes());
}

fn put_compact_string(buf: &mut BytesMut, s: &str) {
    put_uvarint(buf, s.len() as u64 + 1);
    buf.put_slice(s.as_bytes());
}

fn put_uvarint(buf: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        buf.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    buf.put_u8(v as u8);
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
    fn i8(&mut self) -> Result<i8, DecodeError> {
        Ok(self.take(1)?[0] as i8)
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
    fn uvarint(&mut self) -> Result<u64, DecodeError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.take(1)?[0];
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(DecodeError::Truncated)
    }
    fn utf8(&mut self, len: usize) -> Result<String, DecodeError> {
        String::from_utf8(self.take(len)?.to_vec()).map_err(|_| DecodeError::NotUtf8)
    }
    fn string(&mut self) -> Result<String, DecodeError> {
        let len = self.i16()?;
        if len < 0 {
            return Err(DecodeError::BadLength(len.into()));
        }
        self.utf8(len as usize)
    }
    fn compact_string(&mut self) -> Result<String, DecodeError> {
        let len = self.uvarint()?;
        if len == 0 {
            return Err(DecodeError::BadLength(-1));
        }
        self.utf8((len - 1) as usize)
    }
    /// An array length (`None` for a null array), bounded by what the bytes can hold given
    /// `min_element_bytes`, so a corrupt length never allocates.
    fn array_len(
        &mut self,
        flexible: bool,
        min_element_bytes: usize,
    ) -> Result<Option<usize>, DecodeError> {
        let len: i64 = if flexible {
            self.uvarint()? as i64 - 1
        } else {
            self.i32()?.into()
        };
        if len < 0 {
            return Ok(None);
        }
        let len = len as usize;
        if len > PARTITIONS_MAX || len.saturating_mul(min_element_bytes) > self.0.len() {
            return Err(DecodeError::BadLength(len as i64));
        }
        Ok(Some(len))
    }
    fn skip_tagged_fields(&mut self) -> Result<(), DecodeError> {
        let n = self.uvarint()?;
        for _ in 0..n {
            self.uvarint()?;
            let size = self.uvarint()? as usize;
            self.take(size)?;
        }
        Ok(())
    }
}

pub fn decode_key(key: &[u8]) -> Result<String, DecodeError> {
    let mut r = Reader(key);
    let version = r.i16()?;
    if version != KEY_VERSION {
        return Err(DecodeError::UnknownKeyVersion(version));
    }
    r.string()
}

pub fn decode_value(value: &[u8]) -> Result<TxnRecord, DecodeError> {
    let mut r = Reader(value);
    let version = r.i16()?;
    if !(0..=1).contains(&version) {
        return Err(DecodeError::UnknownValueVersion(version));
    }
    let flexible = version >= 1;
    let producer_id = r.i64()?;
    let producer_epoch = r.i16()?;
    let txn_timeout_ms = r.i32()?;
    let status = r.i8()?;
    let state = TransactionState::from_id(status).ok_or(DecodeError::UnknownState(status))?;
    let mut partitions = BTreeSet::new();
    // A topic entry is at least a 1-byte name length and a 1-byte array length.
    if let Some(topics) = r.array_len(flexible, 2)? {
        for _ in 0..topics {
            let topic = if flexible {
                r.compact_string()?
            } else {
                r.string()?
            };
            let ids = r.array_len(flexible, 4)?.unwrap_or(0);
            for _ in 0..ids {
                partitions.insert((topic.clone(), r.i32()?));
            }
            if flexible {
                r.skip_tagged_fields()?;
            }
        }
    }
    let txn_last_update_timestamp_ms = r.i64()?;
    let txn_start_timestamp_ms = r.i64()?;
    let mut record = TxnRecord {
        producer_id,
        prev_producer_id: -1,
        next_producer_id: -1,
        producer_epoch,
        txn_timeout_ms,
        state,
        partitions,
        txn_last_update_timestamp_ms,
        txn_start_timestamp_ms,
        client_transaction_version: 0,
    };
    if flexible {
        let n = r.uvarint()?;
        for _ in 0..n {
            let tag = r.uvarint()?;
            let size = r.uvarint()? as usize;
            let data = r.take(size)?;
            let mut field = Reader(data);
            match tag {
                TAG_PREVIOUS_PRODUCER_ID => record.prev_producer_id = field.i64()?,
                TAG_NEXT_PRODUCER_ID => record.next_producer_id = field.i64()?,
                TAG_CLIENT_TRANSACTION_VERSION => {
                    record.client_transaction_version = field.i16()?
                }
                _ => {} // a tag from a newer Kafka: ignored, as Kafka's readers do
            }
        }
    }
    Ok(record)
}

pub fn decode_record(key: &[u8], value: Option<&[u8]>) -> Result<TxnLogEntry, DecodeError> {
    let id = decode_key(key)?;
    Ok(match value {
        None => TxnLogEntry::Remove(id),
        Some(v) => TxnLogEntry::Put(id, decode_value(v)?),
    })
}

/// One uncompressed v2 batch of `entries`, as Kafka's coordinator writes them (no producer
/// id, CreateTime `timestamp_ms`).
pub fn encode_batch(entries: &[TxnLogEntry], timestamp_ms: i64) -> Bytes {
    crate::internal_records::encode_batch(
        entries
            .iter()
            .map(|e| {
                let value = match e {
                    TxnLogEntry::Put(_, r) => Some(encode_value(r)),
                    TxnLogEntry::Remove(_) => None,
                };
                (encode_key(e.transactional_id()), value)
            })
            .collect(),
        timestamp_ms,
    )
}

/// Decodes whole batches read from the log. An undecodable record is skipped with a warning:
/// one bad record must not make every transactional id of the partition unavailable.
pub fn decode_batches(mut bytes: Bytes) -> Result<Vec<TxnLogEntry>, DecodeError> {
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
                    "record without a key in the transaction log; skipped"
                );
                continue;
            };
            match decode_record(key, r.value.as_deref()) {
                Ok(e) => out.push(e),
                Err(e) => {
                    tracing::warn!(offset = r.offset, error = %e, "undecodable record in the transaction log; skipped")
                }
            }
        }
    }
    Ok(out)
}

/// Replays entries in log order: last record wins, a tombstone removes.
pub fn replay(
    state: &mut HashMap<String, TxnRecord>,
    entries: impl IntoIterator<Item = TxnLogEntry>,
) {
    for e in entries {
        match e {
            TxnLogEntry::Put(id, r) => {
                state.insert(id, r);
            }
            TxnLogEntry::Remove(id) => {
                state.remove(&id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> TxnRecord {
        TxnRecord {
            producer_id: 1000,
            prev_producer_id: -1,
            next_producer_id: -1,
            producer_epoch: 3,
            txn_timeout_ms: 60_000,
            state: TransactionState::Ongoing,
            partitions: [
                ("b".to_string(), 2),
                ("a".to_string(), 1),
                ("a".to_string(), 0),
            ]
            .into_iter()
            .collect(),
            txn_last_update_timestamp_ms: 1_700_000_000_123,
            txn_start_timestamp_ms: 1_700_000_000_000,
            client_transaction_version: 0,
        }
    }

    #[test]
    fn key_bytes_are_kafkas() {
        // version 0, then the string "tx" as INT16 length + bytes.
        assert_eq!(&encode_key("tx")[..], &[0, 0, 0, 2, b't', b'x']);
        assert_eq!(decode_key(&[0, 0, 0, 2, b't', b'x']).unwrap(), "tx");
        assert_eq!(
            decode_key(&[0, 1, 0, 0]),
            Err(DecodeError::UnknownKeyVersion(1))
        );
    }

    /// Bytes laid out by hand from TransactionLogValue.json, version 1 (flexible).
    #[test]
    fn value_v1_bytes_are_kafkas() {
        let mut want: Vec<u8> = vec![0, 1]; // version 1
        want.extend(1000i64.to_be_bytes()); // ProducerId
        want.extend(3i16.to_be_bytes()); // ProducerEpoch
        want.extend(60_000i32.to_be_bytes()); // TransactionTimeoutMs
        want.push(1); // TransactionStatus = Ongoing
        want.push(3); // compact array of 2 topics
        want.extend([2, b'a', 3]); // "a", 2 partition ids
        want.extend(0i32.to_be_bytes());
        want.extend(1i32.to_be_bytes());
        want.push(0); // no tags
        want.extend([2, b'b', 2]); // "b", 1 partition id
        want.extend(2i32.to_be_bytes());
        want.push(0);
        want.extend(1_700_000_000_123i64.to_be_bytes());
        want.extend(1_700_000_000_000i64.to_be_bytes());
        want.push(0); // no tagged fields at their defaults
        assert_eq!(&encode_value(&record())[..], &want[..]);
        assert_eq!(decode_value(&want).unwrap(), record());

        // With the KIP-890 tagged fields set.
        let mut r = record();
        r.prev_producer_id = 7;
        r.next_producer_id = 1001;
        r.client_transaction_version = 2;
        let bytes = encode_value(&r);
        let mut tail = vec![3u8, 0, 8];
        tail.extend(7i64.to_be_bytes());
        tail.extend([1, 8]);
        tail.extend(1001i64.to_be_bytes());
        tail.extend([2, 2, 0, 2]);
        assert!(bytes.ends_with(&tail), "{bytes:?}");
        assert_eq!(decode_value(&bytes).unwrap(), r);
    }

    /// Version 0, as Kafka before 4.0 (and 4.x with TV0) writes it.
    #[test]
    fn value_v0_decodes() {
        let mut v: Vec<u8> = vec![0, 0];
        v.extend(5i64.to_be_bytes());
        v.extend(0i16.to_be_bytes());
        v.extend(1000i32.to_be_bytes());
        v.push(4); // CompleteCommit
        v.extend(1i32.to_be_bytes()); // one topic
        v.extend([0, 1, b't']);
        v.extend(1i32.to_be_bytes()); // one id
        v.extend(9i32.to_be_bytes());
        v.extend(20i64.to_be_bytes());
        v.extend(10i64.to_be_bytes());
        let r = decode_value(&v).unwrap();
        assert_eq!(r.producer_id, 5);
        assert_eq!(r.state, TransactionState::CompleteCommit);
        assert_eq!(r.partitions, [("t".to_string(), 9)].into_iter().collect());
        assert_eq!(
            (r.txn_last_update_timestamp_ms, r.txn_start_timestamp_ms),
            (20, 10)
        );
        assert_eq!(
            (
                r.prev_producer_id,
                r.next_producer_id,
                r.client_transaction_version
            ),
            (-1, -1, 0)
        );
        // A null partition array (-1) is an empty set.
        let mut n: Vec<u8> = vec![0, 0];
        n.extend(5i64.to_be_bytes());
        n.extend(0i16.to_be_bytes());
        n.extend(1000i32.to_be_bytes());
        n.push(0);
        n.extend((-1i32).to_be_bytes());
        n.extend(0i64.to_be_bytes());
        n.extend((-1i64).to_be_bytes());
        assert!(decode_value(&n).unwrap().partitions.is_empty());
    }

    #[test]
    fn bad_bytes_are_errors_not_panics() {
        let good = encode_value(&record());
        for cut in 0..good.len() {
            assert!(decode_value(&good[..cut]).is_err(), "cut at {cut}");
        }
        let mut bad_state = good.to_vec();
        bad_state[2 + 8 + 2 + 4] = 9;
        assert_eq!(decode_value(&bad_state), Err(DecodeError::UnknownState(9)));
        // A huge partition count is refused before allocating.
        let mut huge: Vec<u8> = vec![0, 0];
        huge.extend(5i64.to_be_bytes());
        huge.extend(0i16.to_be_bytes());
        huge.extend(1000i32.to_be_bytes());
        huge.push(1);
        huge.extend(i32::MAX.to_be_bytes());
        assert!(matches!(
            decode_value(&huge),
            Err(DecodeError::BadLength(_))
        ));
        assert_eq!(
            decode_value(&[0, 7]),
            Err(DecodeError::UnknownValueVersion(7))
        );
    }

    #[test]
    fn batch_round_trip_and_replay() {
        let mut done = record();
        done.state = TransactionState::CompleteCommit;
        done.partitions.clear();
        let entries = vec![
            TxnLogEntry::Put("a".into(), record()),
            TxnLogEntry::Put("b".into(), record()),
            TxnLogEntry::Put("a".into(), done.clone()),
            TxnLogEntry::Remove("b".into()),
        ];
        let decoded = decode_batches(encode_batch(&entries, 5)).unwrap();
        assert_eq!(decoded, entries);
        let mut state = HashMap::new();
        replay(&mut state, decoded);
        assert_eq!(state.len(), 1);
        assert_eq!(state["a"], done);
    }
}
