//! One table per rule: each row a forged batch and the refusal Kafka gives it.

use std::io::Write;

use super::*;
use crate::batch::{verify_crc, LOG_OVERHEAD, MAGIC_V2};

const NOW: i64 = 1_700_000_000_000;

const NONE: u8 = 0;
const GZIP: u8 = 1;
const SNAPPY: u8 = 2;
const LZ4: u8 = 3;
const ZSTD: u8 = 4;
const CODECS: [u8; 5] = [NONE, GZIP, SNAPPY, LZ4, ZSTD];

fn put_varlong(out: &mut Vec<u8>, value: i64) {
    let mut v = ((value << 1) ^ (value >> 63)) as u64;
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// One record as a test writes it, fields free to lie.
#[derive(Clone, Debug)]
struct Rec {
    timestamp_delta: i64,
    offset_delta: i32,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

fn rec(i: i32) -> Rec {
    Rec {
        timestamp_delta: i as i64,
        offset_delta: i,
        key: Some(format!("key-{i}").into_bytes()),
        value: Some(vec![b'v'; 20]),
        headers: vec![(b"h".to_vec(), Some(b"x".to_vec()))],
    }
}

fn recs(n: i32) -> Vec<Rec> {
    (0..n).map(rec).collect()
}

fn encode_record(out: &mut Vec<u8>, r: &Rec) {
    let mut body = vec![0u8];
    put_varlong(&mut body, r.timestamp_delta);
    put_varlong(&mut body, r.offset_delta as i64);
    for field in [&r.key, &r.value] {
        match field {
            Some(bytes) => {
                put_varlong(&mut body, bytes.len() as i64);
                body.extend_from_slice(bytes);
            }
            None => put_varlong(&mut body, -1),
        }
    }
    put_varlong(&mut body, r.headers.len() as i64);
    for (k, v) in &r.headers {
        put_varlong(&mut body, k.len() as i64);
        body.extend_from_slice(k);
        match v {
            Some(v) => {
                put_varlong(&mut body, v.len() as i64);
                body.extend_from_slice(v);
            }
            None => put_varlong(&mut body, -1),
        }
    }
    put_varlong(out, body.len() as i64);
    out.extend_from_slice(&body);
}

fn encode_records(records: &[Rec]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in records {
        encode_record(&mut out, r);
    }
    out
}

fn compress(codec: u8, raw: &[u8]) -> Vec<u8> {
    match codec {
        NONE => raw.to_vec(),
        GZIP => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(raw).unwrap();
            e.finish().unwrap()
        }
        SNAPPY => {
            // xerial framing, as the Java producer writes it.
            let mut out = XERIAL_MAGIC.to_vec();
            out.extend_from_slice(&1i32.to_be_bytes());
            out.extend_from_slice(&1i32.to_be_bytes());
            for chunk in raw.chunks(32 * 1024) {
                let block = snap::raw::Encoder::new().compress_vec(chunk).unwrap();
                out.extend_from_slice(&(block.len() as u32).to_be_bytes());
                out.extend_from_slice(&block);
            }
            out
        }
        LZ4 => {
            let mut e = lz4::EncoderBuilder::new().build(Vec::new()).unwrap();
            e.write_all(raw).unwrap();
            let (out, result) = e.finish();
            result.unwrap();
            out
        }
        ZSTD => zstd::encode_all(raw, 3).unwrap(),
        other => panic!("codec {other}"),
    }
}

/// A batch as a test forges it: by default a valid one of `records`.
#[derive(Clone, Debug)]
struct Spec {
    records: Vec<Rec>,
    codec: u8,
    /// Attribute bits beyond the codec (timestamp type, transactional, control).
    flags: i16,
    base_offset: i64,
    base_timestamp: i64,
    /// Default: the largest record timestamp.
    max_timestamp: Option<i64>,
    /// Default: the number of records.
    count: Option<i32>,
    /// Default: count - 1.
    last_offset_delta: Option<i32>,
    producer_id: i64,
    base_sequence: i32,
    /// Replaces the (compressed) records section.
    body: Option<Vec<u8>>,
}

impl Spec {
    fn new(records: Vec<Rec>) -> Spec {
        Spec {
            records,
            codec: NONE,
            flags: 0,
            base_offset: 0,
            base_timestamp: NOW,
            max_timestamp: None,
            count: None,
            last_offset_delta: None,
            producer_id: -1,
            base_sequence: -1,
            body: None,
        }
    }

    fn codec(mut self, codec: u8) -> Spec {
        self.codec = codec;
        self
    }

    fn body_bytes(&self) -> Vec<u8> {
        self.body
            .clone()
            .unwrap_or_else(|| compress(self.codec, &encode_records(&self.records)))
    }

    fn build(&self) -> Vec<u8> {
        with_body(self, &self.body_bytes())
    }
}

/// The batch of `spec` around `body`, CRC computed.
fn with_body(spec: &Spec, body: &[u8]) -> Vec<u8> {
    let count = spec.count.unwrap_or(spec.records.len() as i32);
    let last_offset_delta = spec.last_offset_delta.unwrap_or(count - 1);
    let max_timestamp = spec.max_timestamp.unwrap_or_else(|| {
        spec.records
            .iter()
            .map(|r| spec.base_timestamp + r.timestamp_delta)
            .max()
            .unwrap_or(NO_TIMESTAMP)
    });
    let mut b = Vec::with_capacity(RECORD_BATCH_OVERHEAD + body.len());
    b.extend_from_slice(&spec.base_offset.to_be_bytes());
    b.extend_from_slice(
        &((RECORD_BATCH_OVERHEAD - LOG_OVERHEAD + body.len()) as i32).to_be_bytes(),
    );
    b.extend_from_slice(&(-1i32).to_be_bytes());
    b.push(MAGIC_V2 as u8);
    b.extend_from_slice(&[0; 4]);
    b.extend_from_slice(&(spec.flags | spec.codec as i16).to_be_bytes());
    b.extend_from_slice(&last_offset_delta.to_be_bytes());
    b.extend_from_slice(&spec.base_timestamp.to_be_bytes());
    b.extend_from_slice(&max_timestamp.to_be_bytes());
    b.extend_from_slice(&spec.producer_id.to_be_bytes());
    b.extend_from_slice(&(if spec.producer_id >= 0 { 0i16 } else { -1 }).to_be_bytes());
    b.extend_from_slice(&spec.base_sequence.to_be_bytes());
    b.extend_from_slice(&count.to_be_bytes());
    b.extend_from_slice(body);
    fix_crc(&mut b);
    b
}

fn fix_crc(b: &mut [u8]) {
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
}

fn config() -> ValidatorConfig {
    ValidatorConfig {
        max_message_bytes: 1_048_588,
        segment_bytes: 1 << 30,
        timestamp_type: TimestampType::CreateTime,
        timestamp_before_max_ms: i64::MAX,
        timestamp_after_max_ms: 3_600_000,
        compacted: false,
        origin: AppendOrigin::Client,
    }
}

fn run(spec: &Spec) -> Result<ValidatedBatch, ValidationError> {
    validate(&spec.build(), &config(), NOW)
}

/// What a test expects: the refusal's kind and a fragment of its message.
#[derive(Debug)]
enum Want {
    Ok,
    Invalid(&'static str),
    Corrupt(&'static str),
    TooLarge,
    Inflated,
    ListTooLarge,
    RecordErrors(RecordErrorsKind, &'static [i32]),
}

fn check(name: &str, got: Result<ValidatedBatch, ValidationError>, want: &Want) {
    match (want, &got) {
        (Want::Ok, Ok(_)) => {}
        (Want::Invalid(text), Err(ValidationError::Batch(StorageError::InvalidRecord(m))))
        | (Want::Corrupt(text), Err(ValidationError::Batch(StorageError::CorruptRecord(m)))) => {
            assert!(m.contains(text), "{name}: message {m:?} lacks {text:?}")
        }
        (Want::TooLarge, Err(ValidationError::Batch(StorageError::RecordTooLarge { .. })))
        | (Want::Inflated, Err(ValidationError::InflatedTooLarge { .. }))
        | (Want::ListTooLarge, Err(ValidationError::RecordListTooLarge { .. })) => {}
        (
            Want::RecordErrors(kind, indexes),
            Err(ValidationError::Records {
                kind: got_kind,
                record_errors,
                ..
            }),
        ) => {
            assert_eq!(kind, got_kind, "{name}");
            let got: Vec<i32> = record_errors.iter().map(|e| e.batch_index).collect();
            assert_eq!(&got, indexes, "{name}");
        }
        _ => panic!("{name}: wanted {want:?}, got {got:?}"),
    }
}

#[test]
fn valid_batches_pass_with_every_codec() {
    for codec in CODECS {
        let spec = Spec::new(recs(50)).codec(codec);
        let bytes = spec.build();
        let v = validate(&bytes, &config(), NOW).unwrap_or_else(|e| panic!("codec {codec}: {e}"));
        assert_eq!(v.header, BatchHeader::parse(&bytes).unwrap());
        assert_eq!(v.max_timestamp, NOW + 49);
        assert_eq!(v.offset_delta_of_max_timestamp, 49);
        assert!(!v.rewrites_header(), "codec {codec}");
        let raw = encode_records(&spec.records).len() as u64;
        let expected = if codec == NONE { 0 } else { raw };
        assert_eq!(v.stats.temporary_memory_bytes, expected, "codec {codec}");
        let mut copy = bytes.clone();
        v.apply(&mut copy);
        assert_eq!(copy, bytes, "a valid batch stays as sent");
    }
}

#[test]
fn snappy_without_xerial_framing_passes() {
    // librdkafka writes one raw snappy block.
    let raw = encode_records(&recs(10));
    let body = snap::raw::Encoder::new().compress_vec(&raw).unwrap();
    let mut spec = Spec::new(recs(10)).codec(SNAPPY);
    spec.body = Some(body);
    run(&spec).unwrap();
}

#[test]
fn batch_header_rules() {
    let control = 0x20;
    let transactional = 0x10;
    let cases: Vec<(&str, Spec, Want)> = vec![
        ("valid", Spec::new(recs(3)), Want::Ok),
        (
            "control batch",
            Spec {
                flags: control,
                ..Spec::new(recs(1))
            },
            Want::Invalid("Clients are not allowed to write control records"),
        ),
        (
            "last offset delta past the count",
            Spec {
                last_offset_delta: Some(5),
                ..Spec::new(recs(3))
            },
            Want::Invalid("Inconsistent batch offset range [0, 5] and count of records 3"),
        ),
        (
            "last offset delta short of the count",
            Spec {
                last_offset_delta: Some(1),
                ..Spec::new(recs(3))
            },
            Want::Invalid("Inconsistent batch offset range [0, 1] and count of records 3"),
        ),
        (
            "negative last offset delta",
            Spec {
                last_offset_delta: Some(-2),
                ..Spec::new(recs(1))
            },
            Want::Invalid("Batch has an invalid offset range"),
        ),
        (
            "zero records claimed",
            Spec {
                count: Some(0),
                last_offset_delta: Some(0),
                records: vec![],
                ..Spec::new(vec![])
            },
            Want::Invalid("Invalid reported count for record batch: 0"),
        ),
        (
            "negative count",
            Spec {
                count: Some(-3),
                last_offset_delta: Some(0),
                ..Spec::new(recs(1))
            },
            Want::Invalid("Invalid reported count for record batch: -3"),
        ),
        (
            "base offset other than 0",
            Spec {
                base_offset: 7,
                ..Spec::new(recs(1))
            },
            Want::Invalid("should be 0, but it is 7"),
        ),
        (
            "producer id without a sequence",
            Spec {
                producer_id: 42,
                ..Spec::new(recs(1))
            },
            Want::Invalid("Invalid sequence number -1 in record batch with producerId 42"),
        ),
        (
            "idempotent batch",
            Spec {
                producer_id: 42,
                base_sequence: 0,
                ..Spec::new(recs(2))
            },
            Want::Ok,
        ),
        (
            "transactional bit (refused later, by producer state)",
            Spec {
                flags: transactional,
                producer_id: 42,
                base_sequence: 0,
                ..Spec::new(recs(2))
            },
            Want::Ok,
        ),
        (
            "unknown codec 5",
            Spec {
                codec: 5,
                body: Some(vec![1, 2, 3]),
                ..Spec::new(recs(1))
            },
            Want::Invalid("Unknown compression type id 5"),
        ),
    ];
    for (name, spec, want) in &cases {
        check(name, run(spec), want);
    }
}

#[test]
fn the_61_byte_batch_claiming_i32_max_records() {
    // The header alone: 2^31-1 records claimed, control bit set, CRC valid.
    let spec = Spec {
        flags: 0x20,
        count: Some(i32::MAX),
        last_offset_delta: Some(i32::MAX - 1),
        body: Some(vec![]),
        ..Spec::new(vec![])
    };
    let bytes = spec.build();
    assert_eq!(bytes.len(), RECORD_BATCH_OVERHEAD);
    verify_crc(&bytes).unwrap();
    check(
        "control",
        validate(&bytes, &config(), NOW),
        &Want::Invalid("control records"),
    );
    // Without the control bit the walk finds no record where 2^31-1 were claimed.
    let plain = Spec { flags: 0, ..spec };
    check("plain", run(&plain), &Want::Invalid(PREMATURE_EOF));
    // Compressed: an empty zstd frame, the same answer without inflating anything.
    let zstd = Spec {
        codec: ZSTD,
        body: Some(compress(ZSTD, &[])),
        ..plain
    };
    check("zstd", run(&zstd), &Want::Invalid(PREMATURE_EOF));
}

#[test]
fn records_must_match_the_count_and_offset_deltas_with_every_codec() {
    for codec in CODECS {
        let more = Spec {
            count: Some(2),
            ..Spec::new(recs(3)).codec(codec)
        };
        let fewer = Spec {
            count: Some(4),
            ..Spec::new(recs(3)).codec(codec)
        };
        let mut swapped = recs(3);
        swapped[1].offset_delta = 2;
        swapped[2].offset_delta = 1;
        let mut gap = recs(3);
        gap[2].offset_delta = 5;
        let mut repeated = recs(3);
        repeated[1].offset_delta = 0;
        let cases: Vec<(&str, Spec, Want)> = vec![
            (
                "more records than claimed",
                more,
                Want::Invalid("records still remaining"),
            ),
            (
                "fewer records than claimed",
                fewer,
                Want::Invalid(PREMATURE_EOF),
            ),
            (
                "offset deltas out of order",
                Spec::new(swapped).codec(codec),
                Want::Invalid("Record 1 of the batch has offset delta 2"),
            ),
            (
                "offset delta past the last",
                Spec::new(gap).codec(codec),
                Want::Invalid("Record 2 of the batch has offset delta 5"),
            ),
            (
                "offset delta repeated",
                Spec::new(repeated).codec(codec),
                Want::Invalid("Record 1 of the batch has offset delta 0"),
            ),
        ];
        for (name, spec, want) in &cases {
            check(&format!("{name}, codec {codec}"), run(spec), want);
        }
    }
}

#[test]
fn malformed_records_are_invalid() {
    let raw = encode_records(&recs(1));
    // Length field one larger than the body, then one byte of padding.
    let mut longer = raw.clone();
    let mut len_field = Vec::new();
    put_varlong(&mut len_field, (raw.len() - 1) as i64 + 1);
    longer.splice(0..1, len_field);
    longer.push(0);
    // A header count that the record's bytes cannot hold.
    let mut headers = rec(0);
    headers.headers.clear();
    let mut many_headers = encode_records(&[headers]);
    let last = many_headers.len() - 1;
    many_headers[last] = 0x7e; // zigzag 63 headers
    let mut negative_headers = many_headers.clone();
    negative_headers[last] = 0x01; // zigzag -1
                                   // A key claiming more bytes than the record.
    let mut big_key = rec(0);
    big_key.key = Some(vec![b'k'; 3]);
    let mut big_key_bytes = encode_records(&[big_key]);
    let key_len_at = 1 + 1 + 1 + 1; // length, attributes, timestamp delta, offset delta
    big_key_bytes[key_len_at] = 0x7e;
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "record longer than its fields",
            longer,
            "Invalid record size",
        ),
        (
            "more headers than bytes",
            many_headers,
            "invalid number of record headers",
        ),
        (
            "negative header count",
            negative_headers,
            "Found invalid number of record headers -1",
        ),
        (
            "key longer than the record",
            big_key_bytes,
            "runs past the record",
        ),
        ("varint too long", vec![0xff; 12], "varint is too long"),
        (
            "negative record length",
            vec![0x01],
            "Invalid record size -1",
        ),
    ];
    for codec in CODECS {
        for (name, raw, text) in &cases {
            let mut spec = Spec::new(recs(1)).codec(codec);
            spec.body = Some(compress(codec, raw));
            check(
                &format!("{name}, codec {codec}"),
                run(&spec),
                &Want::Invalid(text),
            );
        }
    }
}

#[test]
fn compressed_payloads_cut_short_or_garbled_are_invalid() {
    for codec in [GZIP, SNAPPY, LZ4, ZSTD] {
        let body = compress(codec, &encode_records(&recs(200)));
        let spec = Spec::new(recs(200)).codec(codec);
        for cut in [1, 4, body.len() / 2, body.len() - 1] {
            let truncated = Spec {
                body: Some(body[..body.len() - cut].to_vec()),
                ..spec.clone()
            };
            match run(&truncated) {
                Err(ValidationError::Batch(StorageError::InvalidRecord(_))) => {}
                other => panic!("codec {codec}, cut {cut}: {other:?}"),
            }
        }
        let garbage = Spec {
            body: Some(vec![0x5a; 64]),
            ..spec.clone()
        };
        match run(&garbage) {
            Err(ValidationError::Batch(StorageError::InvalidRecord(_))) => {}
            other => panic!("codec {codec}, garbage: {other:?}"),
        }
        let empty = Spec {
            body: Some(vec![]),
            ..spec
        };
        check(
            &format!("codec {codec}, empty"),
            run(&empty),
            &Want::Invalid(""),
        );
    }
}

#[test]
fn compressed_payload_inflating_past_the_bound_is_refused() {
    // 200 KiB of records, mostly zeros: with max.message.bytes set to the compressed batch's
    // own size, the 64 x bound is passed for every codec whose ratio can pass it.
    let records: Vec<Rec> = (0..200)
        .map(|i| Rec {
            value: Some(vec![0; 1024]),
            ..rec(i)
        })
        .collect();
    let raw = encode_records(&records).len() as u64;
    for codec in [GZIP, LZ4, ZSTD] {
        let bytes = Spec::new(records.clone()).codec(codec).build();
        let tight = ValidatorConfig {
            max_message_bytes: bytes.len() as u32,
            ..config()
        };
        assert!(
            tight.inflated_bytes_max() < raw,
            "codec {codec}: {} bytes",
            bytes.len()
        );
        check(
            &format!("codec {codec}"),
            validate(&bytes, &tight, NOW),
            &Want::Inflated,
        );
        // Under the default 1 MiB the same batch passes.
        validate(&bytes, &config(), NOW).unwrap();
    }
    // Snappy cannot inflate 64-fold, but its blocks state their inflated size up front: a
    // block claiming 4 GiB is refused before anything is allocated, framed or not.
    let mut claim = Vec::new();
    let mut v = u32::MAX as u64;
    while v >= 0x80 {
        claim.push((v as u8) | 0x80);
        v >>= 7;
    }
    claim.push(v as u8);
    claim.extend_from_slice(&[0; 8]);
    let mut framed = XERIAL_MAGIC.to_vec();
    framed.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1]);
    framed.extend_from_slice(&(claim.len() as u32).to_be_bytes());
    framed.extend_from_slice(&claim);
    for body in [claim, framed] {
        let spec = Spec {
            body: Some(body),
            ..Spec::new(recs(1)).codec(SNAPPY)
        };
        check("snappy claim", run(&spec), &Want::Inflated);
    }
}

#[test]
fn decompression_bomb_is_cut_off_at_the_bound() {
    // 200 records of 1 MiB of zeros claimed as 2^31-1 records: a few KiB of zstd that inflate
    // to 200 MiB. The walk stops at 64 x max.message.bytes (64 MiB), streaming: no buffer of
    // the inflated size is ever allocated.
    let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
    let zeros = vec![0u8; 1 << 20];
    for i in 0..200 {
        let r = Rec {
            value: Some(zeros.clone()),
            ..rec(i)
        };
        encoder.write_all(&encode_records(&[r])).unwrap();
    }
    let body = encoder.finish().unwrap();
    assert!(body.len() < 64 * 1024, "bomb of {} bytes", body.len());
    let spec = Spec {
        codec: ZSTD,
        body: Some(body),
        count: Some(i32::MAX),
        last_offset_delta: Some(i32::MAX - 1),
        ..Spec::new(vec![])
    };
    let started = std::time::Instant::now();
    match run(&spec) {
        Err(ValidationError::InflatedTooLarge { max }) => assert_eq!(max, 64 * 1_048_588),
        other => panic!("{other:?}"),
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}

#[test]
fn timestamps_follow_the_topic_timestamp_type_and_bounds() {
    let bounded = ValidatorConfig {
        timestamp_before_max_ms: 1_000,
        timestamp_after_max_ms: 1_000,
        ..config()
    };
    let log_append = ValidatorConfig {
        timestamp_type: TimestampType::LogAppendTime,
        ..bounded.clone()
    };
    let spread = |deltas: &[i64], base: i64| {
        let records = deltas
            .iter()
            .enumerate()
            .map(|(i, d)| Rec {
                timestamp_delta: *d,
                ..rec(i as i32)
            })
            .collect();
        Spec {
            base_timestamp: base,
            ..Spec::new(records)
        }
    };
    use RecordErrorsKind::*;
    let cases: Vec<(&str, ValidatorConfig, Spec, Want)> = vec![
        (
            "within bounds",
            bounded.clone(),
            spread(&[0, 500, -500], NOW),
            Want::Ok,
        ),
        (
            "too old",
            bounded.clone(),
            spread(&[0, -1_001, 0, -5_000], NOW),
            Want::RecordErrors(InvalidTimestamp, &[1, 3]),
        ),
        (
            "too new",
            bounded.clone(),
            spread(&[1_001, 0], NOW),
            Want::RecordErrors(InvalidTimestamp, &[0]),
        ),
        (
            "no timestamp is not checked",
            bounded.clone(),
            spread(&[0, 0], -1),
            Want::Ok,
        ),
        (
            "far past, unbounded by default",
            config(),
            spread(&[0], 0),
            Want::Ok,
        ),
        (
            "far future, one hour by default",
            config(),
            spread(&[3_600_001], NOW),
            Want::RecordErrors(InvalidTimestamp, &[0]),
        ),
        (
            "i64 extremes do not wrap",
            bounded.clone(),
            spread(&[0], i64::MIN),
            Want::RecordErrors(InvalidTimestamp, &[0]),
        ),
        (
            "LogAppendTime ignores the bounds",
            log_append.clone(),
            spread(&[0, -1_000_000], NOW),
            Want::Ok,
        ),
        (
            "a producer must not set LogAppendTime",
            log_append.clone(),
            Spec {
                flags: 0x08,
                ..spread(&[0, 1], NOW)
            },
            Want::RecordErrors(InvalidTimestamp, &[0, 1]),
        ),
        (
            "LogAppendTime flag on a CreateTime topic is checked as the batch's max timestamp",
            bounded.clone(),
            Spec {
                flags: 0x08,
                max_timestamp: Some(NOW - 5_000),
                ..spread(&[0], NOW)
            },
            Want::RecordErrors(InvalidTimestamp, &[0]),
        ),
    ];
    for (name, config, spec, want) in &cases {
        check(name, validate(&spec.build(), config, NOW), want);
    }
    // Compressed batches are checked record by record too.
    let spec = Spec {
        codec: LZ4,
        ..spread(&[0, -1_001, 0], NOW)
    };
    check(
        "lz4",
        validate(&spec.build(), &bounded, NOW),
        &Want::RecordErrors(InvalidTimestamp, &[1]),
    );
}

#[test]
fn a_header_that_misstates_its_max_timestamp_is_corrected_as_kafka_does() {
    for codec in CODECS {
        let spec = Spec {
            max_timestamp: Some(NOW + 99_999),
            ..Spec::new(recs(3)).codec(codec)
        };
        let mut bytes = spec.build();
        let v = validate(&bytes, &config(), NOW).unwrap();
        assert!(v.rewrites_header());
        v.apply(&mut bytes);
        verify_crc(&bytes).unwrap();
        let header = BatchHeader::parse(&bytes).unwrap();
        assert_eq!(header.max_timestamp, NOW + 2);
        assert!(!header.is_log_append_time());
        // The records' bytes are as sent.
        assert_eq!(bytes[RECORD_BATCH_OVERHEAD..], spec.body_bytes()[..]);
    }
    // The LogAppendTime flag on a CreateTime topic is cleared, the max timestamp kept.
    let spec = Spec {
        flags: 0x08,
        max_timestamp: Some(NOW),
        ..Spec::new(recs(2))
    };
    let mut bytes = spec.build();
    let v = validate(&bytes, &config(), NOW).unwrap();
    v.apply(&mut bytes);
    let header = BatchHeader::parse(&bytes).unwrap();
    assert!(!header.is_log_append_time());
    assert_eq!(header.max_timestamp, NOW);
    verify_crc(&bytes).unwrap();
}

#[test]
fn compacted_topics_need_keys() {
    let compacted = ValidatorConfig {
        compacted: true,
        ..config()
    };
    for codec in CODECS {
        let mut records = recs(4);
        records[1].key = None;
        records[3].key = None;
        let spec = Spec::new(records).codec(codec);
        match validate(&spec.build(), &compacted, NOW) {
            Err(ValidationError::Records {
                kind,
                message,
                record_errors,
            }) => {
                assert_eq!(kind, RecordErrorsKind::InvalidRecord);
                assert!(message.contains("2 record errors"), "{message}");
                let indexes: Vec<i32> = record_errors.iter().map(|e| e.batch_index).collect();
                assert_eq!(indexes, [1, 3]);
                assert!(record_errors[0]
                    .message
                    .contains("Compacted topic cannot accept message without key"));
            }
            other => panic!("codec {codec}: {other:?}"),
        }
        // An empty key is a key.
        let mut records = recs(2);
        records[0].key = Some(vec![]);
        validate(
            &Spec::new(records.clone()).codec(codec).build(),
            &compacted,
            NOW,
        )
        .unwrap();
        // Not compacted: keyless records are fine.
        records[1].key = None;
        validate(&Spec::new(records).codec(codec).build(), &config(), NOW).unwrap();
    }
}

#[test]
fn record_errors_are_capped_but_counted() {
    let compacted = ValidatorConfig {
        compacted: true,
        ..config()
    };
    let records: Vec<Rec> = (0..3_000)
        .map(|i| Rec {
            key: None,
            headers: vec![],
            ..rec(i)
        })
        .collect();
    match validate(&Spec::new(records).codec(ZSTD).build(), &compacted, NOW) {
        Err(ValidationError::Records {
            message,
            record_errors,
            ..
        }) => {
            assert_eq!(record_errors.len(), RECORD_ERRORS_MAX);
            assert!(message.contains("3000 record errors"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn size_crc_and_segment_limits() {
    let bytes = Spec::new(recs(10)).build();
    let small = ValidatorConfig {
        max_message_bytes: bytes.len() as u32 - 1,
        ..config()
    };
    check(
        "max.message.bytes",
        validate(&bytes, &small, NOW),
        &Want::TooLarge,
    );
    let exact = ValidatorConfig {
        max_message_bytes: bytes.len() as u32,
        ..config()
    };
    validate(&bytes, &exact, NOW).unwrap();
    let segment = ValidatorConfig {
        segment_bytes: bytes.len() as u64 - 1,
        ..config()
    };
    check(
        "segment.bytes",
        validate(&bytes, &segment, NOW),
        &Want::ListTooLarge,
    );
    let mut flipped = bytes.clone();
    flipped[RECORD_BATCH_OVERHEAD + 3] ^= 1;
    check(
        "crc",
        validate(&flipped, &config(), NOW),
        &Want::Corrupt("CRC"),
    );
    check(
        "partial",
        validate(&bytes[..bytes.len() - 1], &config(), NOW),
        &Want::Corrupt("claims"),
    );
    // The size check comes before the CRC, as in Kafka.
    check(
        "size before crc",
        validate(&flipped, &small, NOW),
        &Want::TooLarge,
    );
}

#[test]
fn coordinator_batches_skip_the_client_rules() {
    let coordinator = ValidatorConfig {
        origin: AppendOrigin::Coordinator,
        ..config()
    };
    let spec = Spec {
        base_offset: 12,
        ..Spec::new(recs(2))
    };
    validate(&spec.build(), &coordinator, NOW).unwrap();
    // The records must still be there.
    let fewer = Spec {
        count: Some(3),
        ..Spec::new(recs(2))
    };
    check(
        "fewer",
        validate(&fewer.build(), &coordinator, NOW),
        &Want::Invalid(PREMATURE_EOF),
    );
}

#[test]
fn transactional_batches_need_an_ongoing_transaction() {
    let header = |flags: i16| {
        let spec = Spec {
            flags,
            producer_id: 5,
            base_sequence: 0,
            ..Spec::new(recs(1))
        };
        BatchHeader::parse(&spec.build()).unwrap()
    };
    let cases = [
        (0x10, AppendOrigin::Client, false, false),
        (0x10, AppendOrigin::Client, true, true),
        (0x00, AppendOrigin::Client, false, true),
        (0x10, AppendOrigin::Coordinator, false, true),
    ];
    for (flags, origin, ongoing, ok) in cases {
        let got = verify_transaction_state(&header(flags), origin, ongoing);
        match (ok, got) {
            (true, Ok(())) | (false, Err(ValidationError::InvalidTxnState)) => {}
            (_, got) => panic!("flags {flags:#x} {origin:?} ongoing {ongoing}: {got:?}"),
        }
    }
}
