//! Control batches that end a transaction: COMMIT and ABORT markers, in Kafka's binary format
//! (`EndTransactionMarker`, `ControlRecordType`). A marker is one uncompressed v2 batch with
//! the transactional and control attributes set and one record whose
//! key is `version i16 (0), type i16 (0 abort, 1 commit)` and whose
//! value is `version i16 (0), coordinator epoch i32`.

use crate::batch::{self, BatchHeader, LOG_OVERHEAD, MAGIC_V2, RECORD_BATCH_OVERHEAD};
use crate::error::StorageError;

/// Attributes of a marker batch: transactional (0x10) and control (0x20), no compression.
pub const MARKER_ATTRIBUTES: i16 = 0x10 | 0x20;
/// `ControlRecordType` version of the key (Kafka's `ControlRecordType.CURRENT_CONTROL_RECORD_KEY_VERSION`).
const CONTROL_KEY_VERSION: i16 = 0;
/// `EndTransactionMarker` value version.
const END_TXN_MARKER_VERSION: i16 = 0;

/// Which way a transaction ended (Kafka's `ControlRecordType` ABORT = 0, COMMIT = 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ControlRecordType {
    Abort,
    Commit,
}

impl ControlRecordType {
    pub fn id(self) -> i16 {
        match self {
            ControlRecordType::Abort => 0,
            ControlRecordType::Commit => 1,
        }
    }
}

/// A COMMIT or ABORT marker (Kafka's `EndTransactionMarker`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EndTxnMarker {
    pub control_type: ControlRecordType,
    pub coordinator_epoch: i32,
}

fn put_varint(out: &mut Vec<u8>, value: i64) {
    let mut v = ((value << 1) ^ (value >> 63)) as u64;
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads one zigzag varint of at most 10 bytes.
fn get_varint(buf: &[u8], at: &mut usize) -> Result<i64, StorageError> {
    let mut v: u64 = 0;
    for shift in 0..10 {
        let byte = *buf
            .get(*at)
            .ok_or_else(|| StorageError::corrupt("control record cut short"))?;
        *at += 1;
        v |= u64::from(byte & 0x7f) << (7 * shift);
        if byte & 0x80 == 0 {
            return Ok(((v >> 1) as i64) ^ -((v & 1) as i64));
        }
    }
    Err(StorageError::corrupt("control record varint too long"))
}

/// Encodes the marker batch a leader appends (base offset 0 and no leader epoch: the log
/// assigns both).
pub fn encode_end_txn_marker(
    producer_id: i64,
    producer_epoch: i16,
    marker: EndTxnMarker,
    timestamp: i64,
) -> Vec<u8> {
    let mut key = Vec::with_capacity(4);
    key.extend_from_slice(&CONTROL_KEY_VERSION.to_be_bytes());
    key.extend_from_slice(&marker.control_type.id().to_be_bytes());
    let mut value = Vec::with_capacity(6);
    value.extend_from_slice(&END_TXN_MARKER_VERSION.to_be_bytes());
    value.extend_from_slice(&marker.coordinator_epoch.to_be_bytes());
    let mut body = vec![0u8]; // record attributes
    put_varint(&mut body, 0); // timestamp delta
    put_varint(&mut body, 0); // offset delta
    put_varint(&mut body, key.len() as i64);
    body.extend_from_slice(&key);
    put_varint(&mut body, value.len() as i64);
    body.extend_from_slice(&value);
    put_varint(&mut body, 0); // headers
    let mut record = Vec::with_capacity(body.len() + 1);
    put_varint(&mut record, body.len() as i64);
    record.extend_from_slice(&body);

    let mut out = Vec::with_capacity(RECORD_BATCH_OVERHEAD + record.len());
    out.extend_from_slice(&0i64.to_be_bytes());
    let batch_length = (RECORD_BATCH_OVERHEAD - LOG_OVERHEAD + record.len()) as i32;
    out.extend_from_slice(&batch_length.to_be_bytes());
    out.extend_from_slice(&batch::NO_PARTITION_LEADER_EPOCH.to_be_bytes());
    out.push(MAGIC_V2 as u8);
    out.extend_from_slice(&[0; 4]); // crc, below
    out.extend_from_slice(&MARKER_ATTRIBUTES.to_be_bytes());
    out.extend_from_slice(&0i32.to_be_bytes()); // last offset delta
    out.extend_from_slice(&timestamp.to_be_bytes());
    out.extend_from_slice(&timestamp.to_be_bytes());
    out.extend_from_slice(&producer_id.to_be_bytes());
    out.extend_from_slice(&producer_epoch.to_be_bytes());
    out.extend_from_slice(&batch::NO_SEQUENCE.to_be_bytes());
    out.extend_from_slice(&1i32.to_be_bytes());
    out.extend_from_slice(&record);
    let crc = crc32c::crc32c(&out[batch::ATTRIBUTES_OFFSET..]);
    out[batch::CRC_OFFSET..batch::CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
    out
}

/// The marker a control batch carries; `None` for a control batch of another type (Kafka
/// skips unknown control types). Errors on a batch that is not an uncompressed control batch
/// or whose first record does not parse.
pub fn parse_end_txn_marker(batch: &[u8]) -> Result<Option<EndTxnMarker>, StorageError> {
    let header = BatchHeader::parse(batch)?;
    if !header.is_control() || header.compression() != 0 || batch.len() < header.total_size() {
        return Err(StorageError::corrupt(
            "not a whole uncompressed control batch",
        ));
    }
    let records = &batch[RECORD_BATCH_OVERHEAD..header.total_size()];
    let mut at = 0;
    let _length = get_varint(records, &mut at)?;
    at += 1; // record attributes
    let _timestamp_delta = get_varint(records, &mut at)?;
    let _offset_delta = get_varint(records, &mut at)?;
    let key_len = get_varint(records, &mut at)?;
    let field = |at: usize, len: i64| -> Result<&[u8], StorageError> {
        usize::try_from(len)
            .ok()
            .and_then(|len| records.get(at..at.checked_add(len)?))
            .ok_or_else(|| StorageError::corrupt("control record field out of bounds"))
    };
    let key = field(at, key_len)?;
    at += key.len();
    if key.len() < 4 {
        return Err(StorageError::corrupt(
            "control record key shorter than 4 bytes",
        ));
    }
    let control_type = match i16::from_be_bytes([key[2], key[3]]) {
        0 => ControlRecordType::Abort,
        1 => ControlRecordType::Commit,
        _ => return Ok(None),
    };
    let value_len = get_varint(records, &mut at)?;
    let value = field(at, value_len)?;
    if value.len() < 6 {
        return Err(StorageError::corrupt(
            "end transaction marker value shorter than 6 bytes",
        ));
    }
    let version = i16::from_be_bytes([value[0], value[1]]);
    if version < 0 {
        return Err(StorageError::corrupt(format!(
            "invalid end transaction marker version {version}"
        )));
    }
    Ok(Some(EndTxnMarker {
        control_type,
        coordinator_epoch: i32::from_be_bytes(value[2..6].try_into().expect("4 bytes")),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_round_trips_and_is_a_valid_control_batch() {
        for control_type in [ControlRecordType::Abort, ControlRecordType::Commit] {
            let marker = EndTxnMarker {
                control_type,
                coordinator_epoch: 7,
            };
            let bytes = encode_end_txn_marker(42, 3, marker, 1_000);
            batch::verify_crc(&bytes).unwrap();
            let header = BatchHeader::parse(&bytes).unwrap();
            assert!(header.is_control() && header.is_transactional());
            assert_eq!(header.total_size(), bytes.len());
            assert_eq!((header.producer_id, header.producer_epoch), (42, 3));
            assert_eq!(header.records_count, 1);
            assert_eq!(parse_end_txn_marker(&bytes).unwrap(), Some(marker));
        }
    }

    /// The record layout is Kafka's: key 00 00 00 01 for COMMIT, value 00 00 + epoch.
    #[test]
    fn record_bytes_are_kafkas() {
        let bytes = encode_end_txn_marker(
            1,
            0,
            EndTxnMarker {
                control_type: ControlRecordType::Commit,
                coordinator_epoch: 0x0102_0304,
            },
            0,
        );
        let tail = &bytes[RECORD_BATCH_OVERHEAD..];
        // length, attributes, ts delta, offset delta, key length 4 (zigzag 8)
        assert_eq!(tail[4], 8);
        assert_eq!(&tail[5..9], &[0, 0, 0, 1]);
        assert_eq!(tail[9], 12, "value length 6");
        assert_eq!(&tail[10..16], &[0, 0, 1, 2, 3, 4]);
    }

    /// A marker passes Kafka's validation for a coordinator's append and is refused from a
    /// client ("Clients are not allowed to write control records").
    #[test]
    fn markers_validate_for_the_coordinator_only() {
        use crate::validator::{validate, AppendOrigin, ValidatorConfig};
        let bytes = encode_end_txn_marker(
            5,
            1,
            EndTxnMarker {
                control_type: ControlRecordType::Abort,
                coordinator_epoch: 2,
            },
            1_000,
        );
        let mut config = ValidatorConfig {
            max_message_bytes: 1 << 20,
            segment_bytes: 1 << 30,
            timestamp_type: crate::TimestampType::CreateTime,
            timestamp_before_max_ms: i64::MAX,
            timestamp_after_max_ms: i64::MAX,
            compacted: true,
            origin: AppendOrigin::Coordinator,
        };
        let validated = validate(&bytes, &config, 1_000).unwrap();
        assert!(!validated.rewrites_header());
        config.origin = AppendOrigin::Client;
        assert!(validate(&bytes, &config, 1_000).is_err());
    }

    #[test]
    fn malformed_control_batches_are_errors() {
        let bytes = encode_end_txn_marker(
            1,
            0,
            EndTxnMarker {
                control_type: ControlRecordType::Abort,
                coordinator_epoch: 0,
            },
            0,
        );
        assert!(parse_end_txn_marker(&bytes[..bytes.len() - 3]).is_err());
        let data = crate::batch::testing::batch(1, 0);
        assert!(parse_end_txn_marker(&data).is_err(), "not a control batch");
    }
}
