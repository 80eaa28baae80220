//! The broker's [`StateMachine`] and openraft's `RaftStateMachine` around it.

use std::io::Cursor;
use std::sync::Arc;

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    BasicNode, Entry, EntryPayload, ErrorSubject, ErrorVerb, LogId, OptionalSend,
    RaftSnapshotBuilder, SnapshotMeta, StorageError, StoredMembership,
};
use rocksdb::{WriteBatch, DB};
use serde::{Deserialize, Serialize};

use crate::codec;
use crate::store::{self, cf_meta, meta_key, StoreError};
use crate::types::{AppliedIndex, NodeId, TypeConfig};

type StorageResult<T> = Result<T, StorageError<NodeId>>;

/// The application state machine, implemented by the broker.
pub trait StateMachine: Send + Sync + 'static {
    /// Applies one committed entry. Called in log order, exactly once per index per
    /// process lifetime (after `restore`, only entries past the snapshot).
    ///
    /// Only entries the broker proposed are passed here: the indexes of Raft's own entries
    /// (the leader's blank entry at the start of each term, membership changes) are skipped,
    /// so indexes are increasing but not necessarily contiguous.
    fn apply(&self, index: u64, entry: &[u8]);
    /// Serialises the state as of the last applied index; returns (last applied index, bytes).
    fn snapshot(&self) -> (u64, Vec<u8>);
    /// Replaces the whole state with a snapshot's bytes (at start-up from the local snapshot,
    /// or when the leader sends one). `last_index` is the last Raft log index the snapshot
    /// covers, which may be past the last index `apply` saw.
    fn restore(&self, last_index: u64, data: &[u8]);
}

/// A snapshot as stored under `meta_key::SNAPSHOT`.
#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, BasicNode>,
    data: Vec<u8>,
}

/// openraft's state machine: the broker's [`StateMachine`] plus what Raft needs to know about
/// it (last applied log id, last applied membership) and the current snapshot in RocksDB.
///
/// # Invariants
/// - The broker's state machine reflects exactly the entries up to `last_applied`: it starts
///   from the stored snapshot (restored in [`StateMachineStore::open`]), which is what
///   `last_applied` starts at, and every later entry goes through `apply` once, in order.
///   `last_applied` is therefore deliberately not persisted beyond the snapshot: the broker's
///   state lives in memory, and after a restart openraft re-applies the entries between the
///   snapshot and the persisted committed index.
/// - The stored snapshot is durable (fsynced) before `build_snapshot` or `install_snapshot`
///   returns, so openraft never purges log entries that no durable snapshot covers.
/// - `last_membership` is the membership of the last membership entry at or before
///   `last_applied`.
pub(crate) struct StateMachineStore {
    /// The database shared with the log store; holds the current snapshot.
    db: Arc<DB>,
    /// The broker's state machine.
    app: Arc<dyn StateMachine>,
    /// The log id of the last entry applied (of any kind).
    last_applied: Option<LogId<NodeId>>,
    /// The membership as of `last_applied`.
    last_membership: StoredMembership<NodeId, BasicNode>,
    /// Distinguishes snapshots built at the same log id within one process lifetime.
    snapshot_sequence: u64,
}

fn read_snapshot_err(e: StoreError) -> StorageError<NodeId> {
    e.into_raft(ErrorSubject::Snapshot(None), ErrorVerb::Read)
}

fn write_snapshot_err(e: StoreError) -> StorageError<NodeId> {
    e.into_raft(ErrorSubject::Snapshot(None), ErrorVerb::Write)
}

fn load_snapshot(db: &DB) -> Result<Option<StoredSnapshot>, StoreError> {
    match db.get_cf(cf_meta(db), meta_key::SNAPSHOT)? {
        None => Ok(None),
        Some(bytes) => Ok(Some(codec::decode(&bytes)?)),
    }
}

async fn save_snapshot(db: &Arc<DB>, snapshot: &StoredSnapshot) -> Result<(), StoreError> {
    let mut batch = WriteBatch::default();
    batch.put_cf(cf_meta(db), meta_key::SNAPSHOT, codec::encode(snapshot)?);
    store::write_synced(db, batch).await
}

impl StateMachineStore {
    /// Opens the state machine store: restores the broker's state machine from the stored
    /// snapshot, if there is one.
    pub(crate) fn open(
        db: Arc<DB>,
        app: Arc<dyn StateMachine>,
    ) -> Result<StateMachineStore, StoreError> {
        let mut store = StateMachineStore {
            db,
            app,
            last_applied: None,
            last_membership: StoredMembership::default(),
            snapshot_sequence: 0,
        };
        if let Some(snapshot) = load_snapshot(&store.db)? {
            let last_index = snapshot.meta.last_log_id.map_or(0, |log_id| log_id.index);
            tracing::info!(
                last_log_id = ?snapshot.meta.last_log_id,
                snapshot_bytes = snapshot.data.len(),
                "restoring the state machine from the local snapshot"
            );
            store.app.restore(last_index, &snapshot.data);
            store.last_applied = snapshot.meta.last_log_id;
            store.last_membership = snapshot.meta.last_membership;
        }
        Ok(store)
    }
}

/// Builds one snapshot from state captured when the builder was made.
pub(crate) struct SnapshotBuilder {
    db: Arc<DB>,
    meta: SnapshotMeta<NodeId, BasicNode>,
    data: Vec<u8>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> StorageResult<Snapshot<TypeConfig>> {
        let stored = StoredSnapshot {
            meta: self.meta.clone(),
            data: std::mem::take(&mut self.data),
        };
        save_snapshot(&self.db, &stored)
            .await
            .map_err(write_snapshot_err)?;
        tracing::info!(
            last_log_id = ?stored.meta.last_log_id,
            snapshot_bytes = stored.data.len(),
            "built a snapshot of the metadata state machine"
        );
        Ok(Snapshot {
            meta: stored.meta,
            snapshot: Box::new(Cursor::new(stored.data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> StorageResult<(Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>)> {
        Ok((self.last_applied, self.last_membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> StorageResult<Vec<AppliedIndex>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries = entries.into_iter();
        let mut responses = Vec::with_capacity(entries.size_hint().0);
        for entry in entries {
            let log_id = entry.log_id;
            assert!(
                Some(log_id) > self.last_applied,
                "entry {log_id} applied after {:?}",
                self.last_applied
            );
            match entry.payload {
                EntryPayload::Blank => {}
                EntryPayload::Normal(data) => self.app.apply(log_id.index, &data.0),
                EntryPayload::Membership(membership) => {
                    self.last_membership = StoredMembership::new(Some(log_id), membership);
                }
            }
            self.last_applied = Some(log_id);
            responses.push(AppliedIndex(log_id.index));
        }
        Ok(responses)
    }

    /// Captures the snapshot now, between two `apply` calls, so that its bytes, its last log id
    /// and its membership agree; the builder only persists it.
    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        let (app_index, data) = self.app.snapshot();
        let last_index = self.last_applied.map_or(0, |log_id| log_id.index);
        assert!(
            app_index <= last_index,
            "state machine snapshot at index {app_index} is past the last applied index {last_index}"
        );
        self.snapshot_sequence += 1;
        let snapshot_id = match self.last_applied {
            Some(log_id) => format!(
                "{}-{}-{}",
                log_id.leader_id, log_id.index, self.snapshot_sequence
            ),
            None => format!("none-{}", self.snapshot_sequence),
        };
        SnapshotBuilder {
            db: Arc::clone(&self.db),
            meta: SnapshotMeta {
                last_log_id: self.last_applied,
                last_membership: self.last_membership.clone(),
                snapshot_id,
            },
            data,
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> StorageResult<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> StorageResult<()> {
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data: snapshot.into_inner(),
        };
        // Durable first: once the state machine moves past the log, the snapshot is the only
        // record of what it holds.
        save_snapshot(&self.db, &stored)
            .await
            .map_err(write_snapshot_err)?;
        let last_index = meta.last_log_id.map_or(0, |log_id| log_id.index);
        tracing::info!(
            last_log_id = ?meta.last_log_id,
            snapshot_bytes = stored.data.len(),
            "installing a snapshot sent by the leader"
        );
        self.app.restore(last_index, &stored.data);
        self.last_applied = meta.last_log_id;
        self.last_membership = meta.last_membership.clone();
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> StorageResult<Option<Snapshot<TypeConfig>>> {
        let stored = load_snapshot(&self.db).map_err(read_snapshot_err)?;
        Ok(stored.map(|stored| Snapshot {
            meta: stored.meta,
            snapshot: Box::new(Cursor::new(stored.data)),
        }))
    }
}
