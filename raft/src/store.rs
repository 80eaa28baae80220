//! The RocksDB database shared by the log store and the state machine store.
//!
//! Two column families:
//! - `logs`: log index (u64, big-endian so that byte order is index order) -> postcard-encoded
//!   `openraft::Entry`.
//! - `meta`: a few named records: the vote, the committed log id, the last purged log id and
//!   the current snapshot (metadata and state machine bytes).
//!
//! Writes that openraft relies on being durable (log appends, truncation, the vote, snapshots)
//! are written with `sync = true`, which fsyncs RocksDB's write-ahead log before returning. They
//! run on tokio's blocking pool so that an fsync never stalls the async workers.

use std::path::Path;
use std::sync::Arc;

use openraft::{AnyError, ErrorSubject, ErrorVerb, StorageError, StorageIOError};
use rocksdb::{ColumnFamily, ColumnFamilyDescriptor, Options, WriteBatch, WriteOptions, DB};

use crate::codec::CodecError;
use crate::types::NodeId;

pub(crate) const CF_LOGS: &str = "logs";
pub(crate) const CF_META: &str = "meta";

/// Keys of the records in the `meta` column family.
pub(crate) mod meta_key {
    pub(crate) const VOTE: &[u8] = b"vote";
    pub(crate) const COMMITTED: &[u8] = b"committed";
    pub(crate) const LAST_PURGED: &[u8] = b"last_purged";
    pub(crate) const SNAPSHOT: &[u8] = b"snapshot";
}

/// Opens (creating if missing) the database under `path`.
pub(crate) fn open(path: &Path) -> Result<Arc<DB>, rocksdb::Error> {
    let mut options = Options::default();
    options.create_if_missing(true);
    options.create_missing_column_families(true);
    // The metadata log is small: keep RocksDB's own bookkeeping small too.
    options.set_keep_log_file_num(4);
    options.set_max_background_jobs(1);
    let column_families = [CF_LOGS, CF_META]
        .into_iter()
        .map(|name| ColumnFamilyDescriptor::new(name, Options::default()));
    let db = DB::open_cf_descriptors(&options, path, column_families)?;
    Ok(Arc::new(db))
}

pub(crate) fn cf_logs(db: &DB) -> &ColumnFamily {
    db.cf_handle(CF_LOGS)
        .expect("column family `logs` is created when the database is opened")
}

pub(crate) fn cf_meta(db: &DB) -> &ColumnFamily {
    db.cf_handle(CF_META)
        .expect("column family `meta` is created when the database is opened")
}

/// The key of log index `index`: big-endian, so that RocksDB's byte order is index order.
pub(crate) fn log_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

/// The index a `logs` key encodes.
pub(crate) fn log_index_of_key(key: &[u8]) -> Result<u64, StoreError> {
    let bytes: [u8; 8] = key
        .try_into()
        .map_err(|_| StoreError::Corrupt(format!("log key of {} bytes", key.len())))?;
    Ok(u64::from_be_bytes(bytes))
}

/// Writes `batch` and fsyncs the write-ahead log before returning, on the blocking pool.
pub(crate) async fn write_synced(db: &Arc<DB>, batch: WriteBatch) -> Result<(), StoreError> {
    let db = Arc::clone(db);
    tokio::task::spawn_blocking(move || {
        let mut options = WriteOptions::default();
        options.set_sync(true);
        db.write_opt(batch, &options)
    })
    .await
    .map_err(|e| StoreError::Task(e.to_string()))??;
    Ok(())
}

/// A failure of the local store.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreError {
    #[error("rocksdb: {0}")]
    Rocks(#[from] rocksdb::Error),
    #[error("{0}")]
    Codec(#[from] CodecError),
    #[error("corrupt store: {0}")]
    Corrupt(String),
    #[error("storage task failed: {0}")]
    Task(String),
}

impl StoreError {
    /// Wraps the error into openraft's storage error for `subject` and `verb`.
    pub(crate) fn into_raft(
        self,
        subject: ErrorSubject<NodeId>,
        verb: ErrorVerb,
    ) -> StorageError<NodeId> {
        StorageIOError::new(subject, verb, AnyError::new(&self)).into()
    }
}
