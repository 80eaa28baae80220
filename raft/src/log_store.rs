//! openraft's log storage on RocksDB: log entries, the vote, the committed log id and the
//! purged marker.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{
    Entry, ErrorSubject, ErrorVerb, LogId, OptionalSend, RaftLogReader, StorageError, Vote,
};
use rocksdb::{Direction, IteratorMode, WriteBatch, DB};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::codec;
use crate::store::{self, cf_logs, cf_meta, log_index_of_key, log_key, meta_key, StoreError};
use crate::types::{NodeId, TypeConfig};

type StorageResult<T> = Result<T, StorageError<NodeId>>;

/// The Raft log, vote and commit point of one voter, in RocksDB.
///
/// # Invariants
/// - Keys of the `logs` column family are exactly the indexes of the entries stored under them,
///   and the entries form one contiguous run `(last_purged, last_log]`: openraft appends at the
///   end, truncates a suffix and purges a prefix, and `append` asserts contiguity.
/// - An append is acknowledged (its `LogFlushed` callback called) only after the write-ahead log
///   holding it has been fsynced, so an acknowledged entry survives a crash. The vote is also
///   fsynced before `save_vote` returns, so a node never votes twice in one term across a crash.
/// - The purged marker is written in the same atomic batch that deletes the entries it covers,
///   and openraft purges only what a durable snapshot covers.
/// - `committed_next_index` mirrors the last committed log id saved (index + 1, 0 for none); it
///   is only reported, never used for a safety decision.
#[derive(Clone)]
pub(crate) struct LogStore {
    /// The database shared with the state machine store.
    db: Arc<DB>,
    /// Committed index + 1 as last saved by openraft: the quorum's high watermark.
    committed_next_index: Arc<AtomicU64>,
}

impl LogStore {
    pub(crate) fn new(db: Arc<DB>, committed_next_index: Arc<AtomicU64>) -> LogStore {
        LogStore {
            db,
            committed_next_index,
        }
    }

    fn get_meta<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, StoreError> {
        match self.db.get_cf(cf_meta(&self.db), key)? {
            None => Ok(None),
            Some(bytes) => Ok(Some(codec::decode(&bytes)?)),
        }
    }

    fn encode_meta<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
        Ok(codec::encode(value)?)
    }

    /// The entry with the highest index, if any.
    fn last_entry(&self) -> Result<Option<Entry<TypeConfig>>, StoreError> {
        let mut iter = self.db.iterator_cf(cf_logs(&self.db), IteratorMode::End);
        match iter.next() {
            None => Ok(None),
            Some(item) => {
                let (key, value) = item?;
                let entry: Entry<TypeConfig> = codec::decode(&value)?;
                check_key(&key, &entry)?;
                Ok(Some(entry))
            }
        }
    }
}

/// Checks that an entry is stored under its own index.
fn check_key(key: &[u8], entry: &Entry<TypeConfig>) -> Result<(), StoreError> {
    let index = log_index_of_key(key)?;
    if index != entry.log_id.index {
        return Err(StoreError::Corrupt(format!(
            "entry {} stored under index {index}",
            entry.log_id
        )));
    }
    Ok(())
}

fn read_logs_err(e: StoreError) -> StorageError<NodeId> {
    e.into_raft(ErrorSubject::Logs, ErrorVerb::Read)
}

fn write_logs_err(e: StoreError) -> StorageError<NodeId> {
    e.into_raft(ErrorSubject::Logs, ErrorVerb::Write)
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> StorageResult<Vec<Entry<TypeConfig>>> {
        let start = match range.start_bound() {
            Bound::Included(&index) => index,
            Bound::Excluded(&index) => index.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let from = log_key(start);
        let iter = self.db.iterator_cf(
            cf_logs(&self.db),
            IteratorMode::From(&from, Direction::Forward),
        );
        let mut entries = Vec::new();
        for item in iter {
            let (key, value) = item.map_err(|e| read_logs_err(e.into()))?;
            let index = log_index_of_key(&key).map_err(read_logs_err)?;
            if !range.contains(&index) {
                break;
            }
            let entry: Entry<TypeConfig> =
                codec::decode(&value).map_err(|e| read_logs_err(e.into()))?;
            check_key(&key, &entry).map_err(read_logs_err)?;
            entries.push(entry);
        }
        Ok(entries)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> StorageResult<LogState<TypeConfig>> {
        let last_purged_log_id: Option<LogId<NodeId>> = self
            .get_meta(meta_key::LAST_PURGED)
            .map_err(|e| e.into_raft(ErrorSubject::Store, ErrorVerb::Read))?;
        let last_log_id = self
            .last_entry()
            .map_err(read_logs_err)?
            .map(|entry| entry.log_id)
            .or(last_purged_log_id);
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> StorageResult<()> {
        let write_vote_err = |e: StoreError| e.into_raft(ErrorSubject::Vote, ErrorVerb::Write);
        let mut batch = WriteBatch::default();
        batch.put_cf(
            cf_meta(&self.db),
            meta_key::VOTE,
            Self::encode_meta(vote).map_err(write_vote_err)?,
        );
        // Durable before returning: a vote granted and then forgotten in a crash could let this
        // node vote twice in one term.
        store::write_synced(&self.db, batch)
            .await
            .map_err(write_vote_err)
    }

    async fn read_vote(&mut self) -> StorageResult<Option<Vote<NodeId>>> {
        self.get_meta(meta_key::VOTE)
            .map_err(|e| e.into_raft(ErrorSubject::Vote, ErrorVerb::Read))
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> StorageResult<()> {
        let write_err = |e: StoreError| e.into_raft(ErrorSubject::Store, ErrorVerb::Write);
        let value = Self::encode_meta(&committed).map_err(write_err)?;
        // Not fsynced: the record lets a restarted process re-apply the entries it knew to be
        // committed before hearing from a leader; losing it in a machine crash only delays
        // that until the leader's next heartbeat. It still goes through the write-ahead log,
        // so it survives a process crash.
        self.db
            .put_cf(cf_meta(&self.db), meta_key::COMMITTED, value)
            .map_err(|e| write_err(e.into()))?;
        let next_index = committed.map_or(0, |log_id| log_id.index + 1);
        self.committed_next_index
            .fetch_max(next_index, Ordering::Relaxed);
        Ok(())
    }

    async fn read_committed(&mut self) -> StorageResult<Option<LogId<NodeId>>> {
        let committed: Option<Option<LogId<NodeId>>> = self
            .get_meta(meta_key::COMMITTED)
            .map_err(|e| e.into_raft(ErrorSubject::Store, ErrorVerb::Read))?;
        let committed = committed.flatten();
        let next_index = committed.map_or(0, |log_id| log_id.index + 1);
        self.committed_next_index
            .fetch_max(next_index, Ordering::Relaxed);
        Ok(committed)
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> StorageResult<()>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut batch = WriteBatch::default();
        let mut previous_index: Option<u64> = None;
        for entry in entries {
            let index = entry.log_id.index;
            if let Some(previous) = previous_index {
                assert_eq!(index, previous + 1, "openraft appends contiguous entries");
            }
            previous_index = Some(index);
            let value = codec::encode(&entry).map_err(|e| write_logs_err(e.into()))?;
            batch.put_cf(cf_logs(&self.db), log_key(index), value);
        }
        // The callback acknowledges the entries to openraft, which may then count them towards
        // a quorum: it runs only after `write_synced` has fsynced the WAL that holds them.
        // On error the callback is dropped, which openraft treats as a failed write.
        store::write_synced(&self.db, batch)
            .await
            .map_err(write_logs_err)?;
        callback.log_io_completed(Ok(()));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> StorageResult<()> {
        tracing::debug!(from = %log_id, "truncating the metadata log");
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(cf_logs(&self.db), log_key(log_id.index), log_key(u64::MAX));
        // Durable before returning: openraft appends the leader's entries in place of the
        // truncated ones next, and the two must not be mixed up after a crash.
        store::write_synced(&self.db, batch)
            .await
            .map_err(write_logs_err)
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> StorageResult<()> {
        tracing::debug!(upto = %log_id, "purging the metadata log");
        let mut batch = WriteBatch::default();
        batch.put_cf(
            cf_meta(&self.db),
            meta_key::LAST_PURGED,
            Self::encode_meta(&log_id).map_err(write_logs_err)?,
        );
        batch.delete_range_cf(cf_logs(&self.db), log_key(0), log_key(log_id.index + 1));
        // Not fsynced: the snapshot covering these entries is already durable, and a purge
        // lost in a crash only leaves entries behind that the next purge removes.
        self.db.write(batch).map_err(|e| write_logs_err(e.into()))
    }
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, EntryPayload};

    use super::*;
    use crate::types::EntryBytes;

    fn entry(term: u64, index: u64) -> Entry<TypeConfig> {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(term, 1), index),
            payload: EntryPayload::Normal(EntryBytes(index.to_be_bytes().to_vec())),
        }
    }

    /// Appends through the raw database (the `LogFlushed` callback has no public constructor).
    fn put(store: &LogStore, entries: &[Entry<TypeConfig>]) {
        for entry in entries {
            store
                .db
                .put_cf(
                    cf_logs(&store.db),
                    log_key(entry.log_id.index),
                    codec::encode(entry).unwrap(),
                )
                .unwrap();
        }
    }

    #[tokio::test]
    async fn vote_committed_and_entries_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let committed = Arc::new(AtomicU64::new(0));
        {
            let mut store = LogStore::new(store::open(dir.path()).unwrap(), committed.clone());
            assert_eq!(store.read_vote().await.unwrap(), None);
            assert_eq!(store.read_committed().await.unwrap(), None);
            let state = store.get_log_state().await.unwrap();
            assert_eq!((state.last_purged_log_id, state.last_log_id), (None, None));

            store.save_vote(&Vote::new(3, 2)).await.unwrap();
            put(&store, &(0..10).map(|i| entry(1, i)).collect::<Vec<_>>());
            store
                .save_committed(Some(entry(1, 6).log_id))
                .await
                .unwrap();
            assert_eq!(committed.load(Ordering::Relaxed), 7);
            store.truncate(entry(1, 8).log_id).await.unwrap();
            store.purge(entry(1, 2).log_id).await.unwrap();
        }
        let mut store = LogStore::new(store::open(dir.path()).unwrap(), committed.clone());
        assert_eq!(store.read_vote().await.unwrap(), Some(Vote::new(3, 2)));
        assert_eq!(
            store.read_committed().await.unwrap(),
            Some(entry(1, 6).log_id)
        );
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id, Some(entry(1, 2).log_id));
        assert_eq!(state.last_log_id, Some(entry(1, 7).log_id));
        let entries = store.try_get_log_entries(0..100).await.unwrap();
        let indexes: Vec<u64> = entries.iter().map(|e| e.log_id.index).collect();
        assert_eq!(indexes, vec![3, 4, 5, 6, 7]);
        let entries = store.try_get_log_entries(4..=5).await.unwrap();
        assert_eq!(entries, vec![entry(1, 4), entry(1, 5)]);
    }

    #[tokio::test]
    async fn purging_everything_keeps_the_last_log_id() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = LogStore::new(store::open(dir.path()).unwrap(), Default::default());
        put(&store, &(0..5).map(|i| entry(2, i)).collect::<Vec<_>>());
        store.purge(entry(2, 4).log_id).await.unwrap();
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id, Some(entry(2, 4).log_id));
        assert_eq!(state.last_log_id, Some(entry(2, 4).log_id));
        assert!(store.try_get_log_entries(0..).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_corrupt_entry_is_a_storage_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = LogStore::new(store::open(dir.path()).unwrap(), Default::default());
        store
            .db
            .put_cf(cf_logs(&store.db), log_key(1), b"\xff\xff\xff")
            .unwrap();
        assert!(store.try_get_log_entries(0..).await.is_err());
        assert!(store.get_log_state().await.is_err());
    }
}
