//! The one serialisation format of the crate, used both on disk (log entries, vote, snapshot
//! metadata) and on the wire (Raft RPC payloads): postcard, a compact, non-self-describing serde
//! format whose 1.x wire format is stable.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Serialises `value`.
pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
    postcard::to_allocvec(value).map_err(CodecError::Encode)
}

/// Deserialises a `T` that must span all of `bytes`: trailing bytes mean a framing bug or
/// corruption, never something to ignore.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let (value, rest) = postcard::take_from_bytes(bytes).map_err(CodecError::Decode)?;
    if !rest.is_empty() {
        return Err(CodecError::TrailingBytes {
            trailing_bytes: rest.len(),
        });
    }
    Ok(value)
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum CodecError {
    #[error("encode: {0}")]
    Encode(postcard::Error),
    #[error("decode: {0}")]
    Decode(postcard::Error),
    #[error("decode: {trailing_bytes} trailing bytes")]
    TrailingBytes { trailing_bytes: usize },
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use openraft::error::{Fatal, InstallSnapshotError, RaftError, SnapshotMismatch};
    use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest};
    use openraft::{
        BasicNode, CommittedLeaderId, Entry, EntryPayload, LogId, Membership, SnapshotMeta,
        SnapshotSegmentId, StoredMembership, Vote,
    };

    use super::*;
    use crate::types::{EntryBytes, NodeId, TypeConfig};

    fn log_id(term: u64, index: u64) -> LogId<NodeId> {
        LogId::new(CommittedLeaderId::new(term, 1), index)
    }

    fn membership() -> Membership<NodeId, BasicNode> {
        let nodes: BTreeMap<NodeId, BasicNode> = (1..=3)
            .map(|id| (id, BasicNode::new(format!("127.0.0.1:{}", 9000 + id))))
            .collect();
        Membership::new(vec![BTreeSet::from([1, 2, 3])], nodes)
    }

    #[test]
    fn openraft_messages_round_trip() {
        let request = AppendEntriesRequest::<TypeConfig> {
            vote: Vote::new_committed(4, 1),
            prev_log_id: Some(log_id(3, 9)),
            entries: vec![
                Entry {
                    log_id: log_id(4, 10),
                    payload: EntryPayload::Blank,
                },
                Entry {
                    log_id: log_id(4, 11),
                    payload: EntryPayload::Normal(EntryBytes(vec![0, 1, 255])),
                },
                Entry {
                    log_id: log_id(4, 12),
                    payload: EntryPayload::Membership(membership()),
                },
            ],
            leader_commit: Some(log_id(3, 9)),
        };
        let decoded: AppendEntriesRequest<TypeConfig> = decode(&encode(&request).unwrap()).unwrap();
        assert_eq!(format!("{decoded:?}"), format!("{request:?}"));

        let response = AppendEntriesResponse::<NodeId>::HigherVote(Vote::new(7, 2));
        assert_eq!(
            decode::<AppendEntriesResponse<NodeId>>(&encode(&response).unwrap()).unwrap(),
            response
        );

        let snapshot = InstallSnapshotRequest::<TypeConfig> {
            vote: Vote::new_committed(4, 1),
            meta: SnapshotMeta {
                last_log_id: Some(log_id(4, 12)),
                last_membership: StoredMembership::new(Some(log_id(4, 12)), membership()),
                snapshot_id: "4-1-12-1".to_string(),
            },
            offset: 0,
            data: vec![7; 1000],
            done: true,
        };
        let decoded: InstallSnapshotRequest<TypeConfig> =
            decode(&encode(&snapshot).unwrap()).unwrap();
        assert_eq!(decoded, snapshot);
    }

    #[test]
    fn raft_errors_round_trip() {
        let stopped = RaftError::<NodeId, InstallSnapshotError>::Fatal(Fatal::Stopped);
        let decoded: RaftError<NodeId, InstallSnapshotError> =
            decode(&encode(&stopped).unwrap()).unwrap();
        assert_eq!(decoded, stopped);

        let mismatch = RaftError::<NodeId, InstallSnapshotError>::APIError(
            InstallSnapshotError::SnapshotMismatch(SnapshotMismatch {
                expect: SnapshotSegmentId {
                    id: "a".to_string(),
                    offset: 0,
                },
                got: SnapshotSegmentId {
                    id: "b".to_string(),
                    offset: 10,
                },
            }),
        );
        let decoded: RaftError<NodeId, InstallSnapshotError> =
            decode(&encode(&mismatch).unwrap()).unwrap();
        assert_eq!(decoded, mismatch);
    }

    #[test]
    fn truncated_and_padded_input_is_rejected() {
        let bytes = encode(&(1u64, "abc".to_string())).unwrap();
        assert!(decode::<(u64, String)>(&bytes[..bytes.len() - 1]).is_err());
        let mut padded = bytes.clone();
        padded.push(0);
        assert!(matches!(
            decode::<(u64, String)>(&padded),
            Err(CodecError::TrailingBytes { trailing_bytes: 1 })
        ));
    }
}
