//! Gregor's partition log: segments, indexes, recovery, the leader epoch cache and retention.
//!
//! A [`Log`] is one partition's directory of segments. Record batches stay the bytes a client
//! sent: appends check the CRC-32C once and patch only the fields outside it (base offset,
//! partition leader epoch); reads return whole batches cut from file ranges. The public
//! contract with the broker is written down in `storage/API.md`.
//!
//! Modules, one responsibility each:
//! - [`batch`]: the v2 batch header, CRC checks, in-place patches.
//! - [`config`]: the per-partition log configs.
//! - [`error`]: operating errors.
//! - `segment`: one `.log` file with its indexes; `index` / `time_index`: those indexes.
//! - [`epoch`]: the durable leader epoch cache.
//! - [`log`]: appends, reads, rolls, truncation, flush; `recovery`: opening and crash
//!   recovery; `retention`: deleting old segments and moving the log start offset.
//! - `checkpoint`: atomic small files; [`open_files`]: the bound on open segment files.
//! - [`producer_snapshot`]: Kafka's producer-state snapshot files.
//! - [`control`]: COMMIT/ABORT marker batches; [`txn_index`]: the `.txnindex` format.
//! - [`validator`]: Kafka's LogValidator for leader appends, compressed batches included.

pub mod batch;
mod checkpoint;
pub mod config;
pub mod control;
pub mod epoch;
pub mod error;
mod index;
pub mod log;
pub mod open_files;
pub mod producer_snapshot;
mod recovery;
mod retention;
mod segment;
mod time_index;
pub mod txn_index;
pub mod validator;

#[cfg(test)]
mod test_util;

pub use batch::{batches, verify_crc, BatchHeader, RECORD_BATCH_OVERHEAD};
pub use config::{LogConfig, TimestampType};
pub use epoch::{EpochEntry, LeaderEpochCache};
pub use error::StorageError;
pub use log::{FetchDataInfo, Log, LogAppendInfo};
pub use producer_snapshot::ProducerSnapshotEntry;
pub use validator::{AppendOrigin, ValidatedBatch, ValidationError, ValidatorConfig};
