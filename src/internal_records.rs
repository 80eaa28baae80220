//! The record batches the coordinators write to their internal topics (`__consumer_offsets`,
//! `__transaction_state`): uncompressed v2 batches of key/value records with no producer id
//! and CreateTime timestamps, as Kafka's coordinators write them. Offsets are assigned by the
//! log.

use bytes::{Bytes, BytesMut};
use indexmap::IndexMap;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

/// One batch of `(key, value)` records in order; a `None` value is a tombstone.
///
/// # Panics
/// If `records` is empty: a batch holds at least one record.
pub fn encode_batch(records: Vec<(Bytes, Option<Bytes>)>, timestamp_ms: i64) -> Bytes {
    assert!(!records.is_empty(), "a batch holds at least one record");
    let records: Vec<Record> = records
        .into_iter()
        .enumerate()
        .map(|(i, (key, value))| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // The encoder takes the batch's base sequence from the first record and keeps
            // offset - sequence constant within a batch: -1 at offset 0 means "no sequence".
            sequence: i as i32 - 1,
            timestamp: timestamp_ms,
            key: Some(key),
            value,
            headers: IndexMap::new(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .expect("encoding uncompressed records into memory cannot fail");
    buf.freeze()
}
