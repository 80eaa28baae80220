//! Typed views of the operations of the queue and metadata workloads (HISTORY.md tables), shared by
//! the queue checker and the linearizability preprocessing. Only what an operation's type makes
//! meaningful is decoded: outputs of `ok` operations, inputs of all.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::history::{EventType, Operation};

/// A record of a partition: `(offset, value)`.
pub type Record = (i64, i64);

/// What an operation did, decoded.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    /// `offset` is known for `ok` sends only.
    Send {
        key: i64,
        value: i64,
        offset: Option<i64>,
    },
    Assign {
        keys: Vec<i64>,
    },
    /// Records per key, as returned (empty unless `ok`; keys with no records left out).
    Poll {
        records: BTreeMap<i64, Vec<Record>>,
    },
    /// `offset` (the high watermark) is known for `ok` only.
    ListOffsets {
        key: i64,
        offset: Option<i64>,
    },
    /// `end` and `records` are known for `ok` only.
    FinalRead {
        key: i64,
        end: Option<i64>,
        records: Vec<Record>,
    },
    Write {
        key: String,
        value: Option<i64>,
    },
    /// `value` is known for `ok` only.
    Read {
        key: String,
        value: Option<i64>,
    },
}

impl Decoded {
    pub fn is_queue(&self) -> bool {
        matches!(
            self,
            Decoded::Send { .. }
                | Decoded::Assign { .. }
                | Decoded::Poll { .. }
                | Decoded::ListOffsets { .. }
                | Decoded::FinalRead { .. }
        )
    }

    pub fn is_register(&self) -> bool {
        matches!(self, Decoded::Write { .. } | Decoded::Read { .. })
    }
}

/// Decodes every operation; those that do not fit the contract are reported and left out.
pub fn decode_all(ops: &[Operation]) -> (Vec<(usize, Decoded)>, Vec<String>) {
    let mut decoded = Vec::with_capacity(ops.len());
    let mut problems = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        match decode(op) {
            Ok(d) => decoded.push((i, d)),
            Err(e) => problems.push(format!(
                "{} {} of process {} at index {}: {e}",
                op.kind, op.f, op.process, op.invoke_index
            )),
        }
    }
    (decoded, problems)
}

/// Decodes one operation.
pub fn decode(op: &Operation) -> Result<Decoded, String> {
    let ok = op.kind == EventType::Ok;
    let input = &op.input;
    let output = &op.output;
    Ok(match op.f.as_str() {
        "send" => {
            let key = int(input, "key")?;
            let value = int(input, "value")?;
            let offset = if ok {
                same_int(output, "key", key)?;
                same_int(output, "value", value)?;
                Some(int(output, "offset")?)
            } else {
                None
            };
            Decoded::Send { key, value, offset }
        }
        "assign" => {
            let keys = field(input, "keys")?
                .as_array()
                .ok_or("\"keys\" is not an array")?
                .iter()
                .map(|k| {
                    k.as_i64()
                        .ok_or_else(|| format!("key {k} is not an integer"))
                })
                .collect::<Result<_, _>>()?;
            Decoded::Assign { keys }
        }
        "poll" => {
            let mut records = BTreeMap::new();
            if ok {
                let by_key = field(output, "records")?
                    .as_object()
                    .ok_or("\"records\" is not an object")?;
                for (k, rs) in by_key {
                    let key: i64 = k
                        .parse()
                        .map_err(|_| format!("records key {k:?} is not a decimal integer"))?;
                    let rs = records_of(rs)?;
                    if !rs.is_empty() {
                        records.insert(key, rs);
                    }
                }
            }
            Decoded::Poll { records }
        }
        "list-offsets" => {
            let key = int(input, "key")?;
            let offset = if ok {
                same_int(output, "key", key)?;
                Some(int(output, "offset")?)
            } else {
                None
            };
            Decoded::ListOffsets { key, offset }
        }
        "final-read" => {
            let key = int(input, "key")?;
            let (end, records) = if ok {
                same_int(output, "key", key)?;
                (
                    Some(int(output, "end")?),
                    records_of(field(output, "records")?)?,
                )
            } else {
                (None, Vec::new())
            };
            Decoded::FinalRead { key, end, records }
        }
        "write" => Decoded::Write {
            key: string(input, "key")?,
            value: opt_int(input, "value")?,
        },
        "read" => {
            let key = string(input, "key")?;
            let value = if ok {
                if output.get("key").is_some_and(|k| k.as_str() != Some(&key)) {
                    return Err("the completion's key differs from the invocation's".into());
                }
                opt_int(output, "value")?
            } else {
                None
            };
            Decoded::Read { key, value }
        }
        f => return Err(format!("unknown f {f:?}")),
    })
}

fn field<'a>(v: &'a Value, name: &str) -> Result<&'a Value, String> {
    v.get(name)
        .ok_or_else(|| format!("missing \"{name}\" in {v}"))
}

fn int(v: &Value, name: &str) -> Result<i64, String> {
    let f = field(v, name)?;
    f.as_i64()
        .ok_or_else(|| format!("\"{name}\" is not an integer: {f}"))
}

/// An integer or `null` (a register value); a missing field is an error.
fn opt_int(v: &Value, name: &str) -> Result<Option<i64>, String> {
    match field(v, name)? {
        Value::Null => Ok(None),
        f => f
            .as_i64()
            .map(Some)
            .ok_or_else(|| format!("\"{name}\" is not an integer or null: {f}")),
    }
}

fn string(v: &Value, name: &str) -> Result<String, String> {
    let f = field(v, name)?;
    f.as_str()
        .map(str::to_string)
        .ok_or_else(|| format!("\"{name}\" is not a string: {f}"))
}

/// A completion may repeat an input field; if it does, it must agree.
fn same_int(output: &Value, name: &str, expected: i64) -> Result<(), String> {
    match output.get(name) {
        Some(v) if v.as_i64() != Some(expected) => Err(format!(
            "the completion's \"{name}\" {v} differs from the invocation's {expected}"
        )),
        _ => Ok(()),
    }
}

fn records_of(v: &Value) -> Result<Vec<Record>, String> {
    let list = v
        .as_array()
        .ok_or_else(|| format!("records {v} are not an array"))?;
    list.iter()
        .map(|r| match r.as_array().map(Vec::as_slice) {
            Some([o, v]) => match (o.as_i64(), v.as_i64()) {
                (Some(o), Some(v)) => Ok((o, v)),
                _ => Err(format!("record {r} is not [offset, value]")),
            },
            _ => Err(format!("record {r} is not [offset, value]")),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn op(kind: EventType, f: &str, input: Value, output: Value) -> Operation {
        Operation {
            process: 0,
            f: f.into(),
            kind,
            invoke_index: 0,
            complete_index: Some(1),
            call: 0,
            ret: Some(1),
            input,
            output,
            error: None,
        }
    }

    #[test]
    fn decodes_queue_ops() {
        let send = op(
            EventType::Ok,
            "send",
            json!({"key": 2, "value": 17}),
            json!({"key": 2, "value": 17, "offset": 5}),
        );
        assert_eq!(
            decode(&send),
            Ok(Decoded::Send {
                key: 2,
                value: 17,
                offset: Some(5)
            })
        );
        let info = op(
            EventType::Info,
            "send",
            json!({"key": 2, "value": 17}),
            json!(null),
        );
        assert_eq!(
            decode(&info),
            Ok(Decoded::Send {
                key: 2,
                value: 17,
                offset: None
            })
        );
        let poll = op(
            EventType::Ok,
            "poll",
            Value::Null,
            json!({"records": {"1": [[0, 3], [1, 4]], "2": []}}),
        );
        let Decoded::Poll { records } = decode(&poll).unwrap() else {
            panic!()
        };
        assert_eq!(records, BTreeMap::from([(1, vec![(0, 3), (1, 4)])]));
        let bad = op(
            EventType::Ok,
            "send",
            json!({"key": 2, "value": 17}),
            json!({"key": 2}),
        );
        assert!(decode(&bad).is_err());
        let bad = op(
            EventType::Ok,
            "poll",
            Value::Null,
            json!({"records": {"x": []}}),
        );
        assert!(decode(&bad).is_err());
        let bad = op(EventType::Ok, "subscribe", json!([1]), json!([1]));
        assert!(decode(&bad).is_err());
    }

    #[test]
    fn decodes_register_ops() {
        let read = op(
            EventType::Ok,
            "read",
            json!({"key": "t"}),
            json!({"key": "t", "value": null}),
        );
        assert_eq!(
            decode(&read),
            Ok(Decoded::Read {
                key: "t".into(),
                value: None
            })
        );
        let write = op(
            EventType::Info,
            "write",
            json!({"key": "t", "value": 3}),
            Value::Null,
        );
        assert_eq!(
            decode(&write),
            Ok(Decoded::Write {
                key: "t".into(),
                value: Some(3)
            })
        );
    }
}
