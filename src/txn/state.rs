//! A transactional id's state and its transitions (Kafka's `TransactionState`,
//! `TransactionMetadata` and `TxnTransitMetadata`), with no I/O and no clock: the caller
//! passes the time, and the coordinator appends what a `prepare_*` returns before calling
//! `complete_transition`.
//!
//! # Invariants
//! - At most one transition is in flight (`pending_state`): a second one is refused with
//!   CONCURRENT_TRANSACTIONS until the first is completed (its record is below the high
//!   watermark) or aborted (its append failed).
//! - Every state change goes through `prepare_transition`, which only allows Kafka's
//!   `validPreviousStates`; the in-memory state is always a replay of the log plus, at most,
//!   the pending transition.
//! - A producer epoch handed to a client is below `i16::MAX`: the coordinator keeps one epoch
//!   in reserve so it can always fence (`is_epoch_exhausted`).

use std::collections::BTreeSet;

use kafka_protocol::ResponseError;

/// Kafka's `RecordBatch.NO_PRODUCER_ID` / `NO_PRODUCER_EPOCH`.
pub const NO_PRODUCER_ID: i64 = -1;
pub const NO_PRODUCER_EPOCH: i16 = -1;

/// Kafka's `TransactionState`, with its on-disk ids and the names DescribeTransactions and
/// ListTransactions report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TransactionState {
    Empty,
    Ongoing,
    PrepareCommit,
    PrepareAbort,
    CompleteCommit,
    CompleteAbort,
    Dead,
    PrepareEpochFence,
}

impl TransactionState {
    pub const ALL: [TransactionState; 8] = [
        TransactionState::Empty,
        TransactionState::Ongoing,
        TransactionState::PrepareCommit,
        TransactionState::PrepareAbort,
        TransactionState::CompleteCommit,
        TransactionState::CompleteAbort,
        TransactionState::Dead,
        TransactionState::PrepareEpochFence,
    ];

    pub fn id(self) -> i8 {
        self as i8
    }

    pub fn from_id(id: i8) -> Option<TransactionState> {
        Self::ALL.get(usize::try_from(id).ok()?).copied()
    }

    pub fn name(self) -> &'static str {
        match self {
            TransactionState::Empty => "Empty",
            TransactionState::Ongoing => "Ongoing",
            TransactionState::PrepareCommit => "PrepareCommit",
            TransactionState::PrepareAbort => "PrepareAbort",
            TransactionState::CompleteCommit => "CompleteCommit",
            TransactionState::CompleteAbort => "CompleteAbort",
            TransactionState::Dead => "Dead",
            TransactionState::PrepareEpochFence => "PrepareEpochFence",
        }
    }

    pub fn from_name(name: &str) -> Option<TransactionState> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Kafka's `validPreviousStates`.
    pub fn valid_previous(self) -> &'static [TransactionState] {
        use TransactionState::*;
        match self {
            Empty => &[Empty, CompleteCommit, CompleteAbort],
            Ongoing => &[Ongoing, Empty, CompleteCommit, CompleteAbort],
            PrepareCommit => &[Ongoing],
            // TV2 lets a client abort from a state it is unsure of (Empty, Complete*).
            PrepareAbort => &[
                Ongoing,
                PrepareEpochFence,
                Empty,
                CompleteCommit,
                CompleteAbort,
            ],
            CompleteCommit => &[PrepareCommit],
            CompleteAbort => &[PrepareAbort],
            Dead => &[Empty, CompleteAbort, CompleteCommit],
            PrepareEpochFence => &[Ongoing],
        }
    }

    /// Whether an idle transactional id in this state may expire.
    pub fn is_expiration_allowed(self) -> bool {
        matches!(
            self,
            TransactionState::Empty
                | TransactionState::CompleteCommit
                | TransactionState::CompleteAbort
        )
    }
}

/// Kafka's `isEpochExhausted`: an epoch of `i16::MAX - 1` or more leaves none to fence with.
pub fn is_epoch_exhausted(epoch: i16) -> bool {
    epoch >= i16::MAX - 1
}

/// What one record of `__transaction_state` holds (Kafka's `TxnTransitMetadata`, the fields
/// of `TransactionLogValue`). `TransactionMetadata` is this plus what is not logged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxnRecord {
    pub producer_id: i64,
    pub prev_producer_id: i64,
    pub next_producer_id: i64,
    pub producer_epoch: i16,
    pub txn_timeout_ms: i32,
    pub state: TransactionState,
    pub partitions: BTreeSet<(String, i32)>,
    pub txn_last_update_timestamp_ms: i64,
    pub txn_start_timestamp_ms: i64,
    /// 0, 1 or 2: the `transaction.version` the client used (2 = KIP-890 epoch bumps).
    pub client_transaction_version: i16,
}

impl TxnRecord {
    pub fn supports_epoch_bump(&self) -> bool {
        self.client_transaction_version >= 2
    }
}

/// A transition the coordinator has prepared and must log before it takes effect (Kafka's
/// `TxnTransitMetadata`): the record to append, and the last epoch that is not logged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxnTransit {
    pub record: TxnRecord,
    pub last_producer_epoch: i16,
}

/// Kafka's `TransactionMetadata`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransactionMetadata {
    pub transactional_id: String,
    pub current: TxnRecord,
    /// The epoch before the last bump, so a retried InitProducerId (KIP-360) or EndTxn
    /// (TV2) whose answer was lost is recognised. Not logged: -1 after a load, as in Kafka.
    pub last_producer_epoch: i16,
    pub pending_state: Option<TransactionState>,
    /// A fence whose append failed does not bump the epoch again on retry.
    pub has_failed_epoch_fence: bool,
}

/// Kafka throws IllegalStateException here, which its handlers turn into an unknown server
/// error: the coordinator's own sequencing is wrong, not the client.
fn illegal(msg: String) -> ResponseError {
    tracing::error!("{msg}");
    ResponseError::UnknownServerError
}

impl TransactionMetadata {
    /// A transactional id seen for the first time: producer id allocated, no epoch yet.
    pub fn new(transactional_id: &str, producer_id: i64, txn_timeout_ms: i32, now_ms: i64) -> Self {
        TransactionMetadata {
            transactional_id: transactional_id.to_string(),
            current: TxnRecord {
                producer_id,
                prev_producer_id: NO_PRODUCER_ID,
                next_producer_id: NO_PRODUCER_ID,
                producer_epoch: NO_PRODUCER_EPOCH,
                txn_timeout_ms,
                state: TransactionState::Empty,
                partitions: BTreeSet::new(),
                txn_last_update_timestamp_ms: now_ms,
                txn_start_timestamp_ms: -1,
                client_transaction_version: 0,
            },
            last_producer_epoch: NO_PRODUCER_EPOCH,
            pending_state: None,
            has_failed_epoch_fence: false,
        }
    }

    /// Loaded from the log (Kafka's loader leaves the last epoch unknown).
    pub fn loaded(transactional_id: &str, record: TxnRecord) -> Self {
        TransactionMetadata {
            transactional_id: transactional_id.to_string(),
            current: record,
            last_producer_epoch: NO_PRODUCER_EPOCH,
            pending_state: None,
            has_failed_epoch_fence: false,
        }
    }

    pub fn state(&self) -> TransactionState {
        self.current.state
    }

    pub fn producer_id(&self) -> i64 {
        self.current.producer_id
    }

    pub fn producer_epoch(&self) -> i16 {
        self.current.producer_epoch
    }

    pub fn is_producer_epoch_exhausted(&self) -> bool {
        is_epoch_exhausted(self.current.producer_epoch)
    }

    fn has_pending_transaction(&self) -> bool {
        matches!(
            self.current.state,
            TransactionState::Ongoing
                | TransactionState::PrepareAbort
                | TransactionState::PrepareCommit
        )
    }

    fn target(&self, state: TransactionState) -> TxnRecord {
        TxnRecord {
            state,
            ..self.current.clone()
        }
    }

    /// Kafka's `prepareTransitionTo`: checks the transition and marks it pending.
    fn prepare_transition(
        &mut self,
        mut record: TxnRecord,
        last_producer_epoch: i16,
    ) -> Result<TxnTransit, ResponseError> {
        if let Some(p) = self.pending_state {
            return Err(illegal(format!(
                "transactional id {}: transition to {:?} while {p:?} is pending",
                self.transactional_id, record.state
            )));
        }
        if record.producer_id < 0 {
            return Err(illegal(format!(
                "illegal new producer id {}",
                record.producer_id
            )));
        }
        if record.state != TransactionState::Dead && record.producer_epoch < 0 {
            return Err(illegal(format!(
                "illegal new producer epoch {}",
                record.producer_epoch
            )));
        }
        if !record.state.valid_previous().contains(&self.current.state) {
            return Err(illegal(format!(
                "transactional id {}: {:?} is not a valid previous state of {:?}",
                self.transactional_id, self.current.state, record.state
            )));
        }
        record.prev_producer_id = self.current.producer_id;
        self.pending_state = Some(record.state);
        Ok(TxnTransit {
            record,
            last_producer_epoch,
        })
    }

    /// Kafka's `prepareFenceProducerEpoch`: InitProducerId found a transaction ongoing; the
    /// bumped epoch (never returned to a client) aborts it.
    pub fn prepare_fence_producer_epoch(&mut self) -> Result<TxnTransit, ResponseError> {
        let epoch = self.current.producer_epoch;
        if epoch == i16::MAX {
            tracing::error!(transactional_id = %self.transactional_id, "fencing a producer at epoch i16::MAX");
        }
        let mut r = self.target(TransactionState::PrepareEpochFence);
        r.producer_epoch = if self.has_failed_epoch_fence || epoch == i16::MAX {
            epoch
        } else {
            epoch + 1
        };
        self.prepare_transition(r, self.last_producer_epoch)
    }

    /// Kafka's `prepareIncrementProducerEpoch` (InitProducerId, KIP-360 when
    /// `expected_epoch` is given).
    pub fn prepare_increment_producer_epoch(
        &mut self,
        txn_timeout_ms: i32,
        expected_epoch: Option<i16>,
        now_ms: i64,
    ) -> Result<TxnTransit, ResponseError> {
        if self.is_producer_epoch_exhausted() {
            return Err(illegal(format!(
                "no epochs left for producer id {}",
                self.current.producer_id
            )));
        }
        let epoch = self.current.producer_epoch;
        let (new_epoch, last_epoch) = match expected_epoch {
            // A new producer: bump, and forget the previous epoch (it is fenced now).
            None => (epoch + 1, NO_PRODUCER_EPOCH),
            // The same producer recovering from an error: bump, remembering the epoch.
            Some(e) if epoch == NO_PRODUCER_EPOCH || e == epoch => (epoch + 1, epoch),
            // A retry of a bump whose answer was lost: answer the current epoch again.
            Some(e) if e == self.last_producer_epoch => (epoch, self.last_producer_epoch),
            Some(e) => {
                tracing::info!(
                    transactional_id = %self.transactional_id,
                    expected = e, current = epoch, last = self.last_producer_epoch,
                    "expected producer epoch matches neither the current nor the last epoch"
                );
                return Err(ResponseError::ProducerFenced);
            }
        };
        let mut r = self.target(TransactionState::Empty);
        r.producer_epoch = new_epoch;
        r.txn_timeout_ms = txn_timeout_ms;
        r.partitions.clear();
        r.txn_start_timestamp_ms = -1;
        r.txn_last_update_timestamp_ms = now_ms;
        self.prepare_transition(r, last_epoch)
    }

    /// Kafka's `prepareProducerIdRotation`: the epoch is exhausted, so a new producer id.
    pub fn prepare_producer_id_rotation(
        &mut self,
        new_producer_id: i64,
        txn_timeout_ms: i32,
        now_ms: i64,
        record_last_epoch: bool,
    ) -> Result<TxnTransit, ResponseError> {
        if self.has_pending_transaction() {
            return Err(illegal(
                "cannot rotate producer ids while a transaction is pending".into(),
            ));
        }
        let last = if record_last_epoch {
            self.current.producer_epoch
        } else {
            NO_PRODUCER_EPOCH
        };
        let mut r = self.target(TransactionState::Empty);
        r.producer_id = new_producer_id;
        r.producer_epoch = 0;
        r.txn_timeout_ms = txn_timeout_ms;
        r.partitions.clear();
        r.txn_start_timestamp_ms = -1;
        r.txn_last_update_timestamp_ms = now_ms;
        self.prepare_transition(r, last)
    }

    /// Kafka's `prepareAddPartitions`: a transaction starts at its first partition.
    pub fn prepare_add_partitions(
        &mut self,
        added: impl IntoIterator<Item = (String, i32)>,
        now_ms: i64,
        client_transaction_version: i16,
    ) -> Result<TxnTransit, ResponseError> {
        let mut r = self.target(TransactionState::Ongoing);
        if matches!(
            self.current.state,
            TransactionState::Empty
                | TransactionState::CompleteAbort
                | TransactionState::CompleteCommit
        ) {
            r.txn_start_timestamp_ms = now_ms;
        }
        r.partitions.extend(added);
        r.txn_last_update_timestamp_ms = now_ms;
        r.client_transaction_version = client_transaction_version;
        self.prepare_transition(r, self.last_producer_epoch)
    }

    /// Kafka's `prepareAbortOrCommit`. With TV2 every end of a transaction bumps the epoch;
    /// `next_producer_id` is the id to rotate to when that bump exhausts the epochs.
    pub fn prepare_abort_or_commit(
        &mut self,
        state: TransactionState,
        client_transaction_version: i16,
        next_producer_id: i64,
        now_ms: i64,
        no_partition_added: bool,
    ) -> Result<TxnTransit, ResponseError> {
        debug_assert!(matches!(
            state,
            TransactionState::PrepareCommit | TransactionState::PrepareAbort
        ));
        let epoch = self.current.producer_epoch;
        let mut r = self.target(state);
        let last = if client_transaction_version >= 2 {
            if epoch == i16::MAX && state == TransactionState::PrepareAbort {
                // Already broken: let the abort through without overflowing, to recover.
                tracing::error!(transactional_id = %self.transactional_id, "aborting at epoch i16::MAX");
            } else {
                r.producer_epoch = epoch + 1;
            }
            epoch
        } else {
            self.last_producer_epoch
        };
        // TV2 may abort with no partition added: the start time is then the abort's.
        if no_partition_added {
            r.txn_start_timestamp_ms = now_ms;
        }
        r.next_producer_id = next_producer_id;
        r.txn_last_update_timestamp_ms = now_ms;
        r.client_transaction_version = client_transaction_version;
        self.prepare_transition(r, last)
    }

    /// Kafka's `prepareComplete`: every marker is written. An exhausted TV2 producer moves
    /// to its next producer id at epoch 0.
    pub fn prepare_complete(&mut self, now_ms: i64) -> Result<TxnTransit, ResponseError> {
        self.has_failed_epoch_fence = false;
        let state = if self.current.state == TransactionState::PrepareCommit {
            TransactionState::CompleteCommit
        } else {
            TransactionState::CompleteAbort
        };
        let mut r = self.target(state);
        if self.current.supports_epoch_bump() && self.current.next_producer_id != NO_PRODUCER_ID {
            r.producer_id = self.current.next_producer_id;
            r.producer_epoch = 0;
        }
        r.next_producer_id = NO_PRODUCER_ID;
        r.partitions.clear();
        r.txn_last_update_timestamp_ms = now_ms;
        self.prepare_transition(r, self.last_producer_epoch)
    }

    /// Kafka's `prepareDead`: the transactional id expires (logged as a tombstone).
    pub fn prepare_dead(&mut self) -> Result<TxnTransit, ResponseError> {
        let mut r = self.target(TransactionState::Dead);
        r.partitions.clear();
        self.prepare_transition(r, self.last_producer_epoch)
    }

    /// Kafka's `completeTransitionTo`: the transition's record is committed.
    pub fn complete_transition(&mut self, t: TxnTransit) -> Result<(), ResponseError> {
        let pending = self.pending_state;
        let ok = pending == Some(t.record.state)
            && (t.record.producer_epoch == self.current.producer_epoch
                || t.record.producer_epoch == self.current.producer_epoch.wrapping_add(1)
                || t.record.producer_epoch == 0
                || self.current.producer_epoch == NO_PRODUCER_EPOCH)
            && t.record.txn_last_update_timestamp_ms >= self.current.txn_last_update_timestamp_ms;
        if !ok {
            self.pending_state = None;
            return Err(illegal(format!(
                "transactional id {}: cannot complete {:?} (pending {pending:?}, epoch {} -> {})",
                self.transactional_id,
                t.record.state,
                self.current.producer_epoch,
                t.record.producer_epoch
            )));
        }
        let prev_producer_id = t.record.prev_producer_id;
        self.current = t.record;
        self.current.prev_producer_id = prev_producer_id;
        self.last_producer_epoch = t.last_producer_epoch;
        self.pending_state = None;
        Ok(())
    }

    /// The append of a prepared transition failed: forget it (a failed fence is remembered
    /// so its retry does not bump twice).
    pub fn abort_transition(&mut self) {
        if self.pending_state == Some(TransactionState::PrepareEpochFence) {
            self.has_failed_epoch_fence = true;
        }
        self.pending_state = None;
    }
}
