//! What the transaction coordinator decides for each request (the request logic of Kafka's
//! `TransactionCoordinator`: `handleInitProducerId`, `handleAddPartitionsToTransaction`,
//! `handleVerifyPartitionsInTransaction`, `handleEndTransaction`), as functions of a
//! transactional id's metadata and the request, with no I/O. The coordinator service runs
//! them under its lock, appends the transition they prepare, and completes it once the
//! record is committed.

use kafka_protocol::ResponseError;

use super::state::{
    is_epoch_exhausted, TransactionMetadata, TransactionState, TxnTransit, NO_PRODUCER_EPOCH,
};

/// Kafka's `validateTransactionTimeoutMs`: positive and at most `transaction.max.timeout.ms`.
pub fn validate_txn_timeout_ms(
    txn_timeout_ms: i32,
    max_timeout_ms: i32,
) -> Result<(), ResponseError> {
    if txn_timeout_ms <= 0 || txn_timeout_ms > max_timeout_ms {
        return Err(ResponseError::InvalidTransactionTimeout);
    }
    Ok(())
}

/// What InitProducerId leads to.
#[derive(Debug, PartialEq, Eq)]
pub enum InitAction {
    /// Log the transition, then answer its producer id and epoch.
    Write(TxnTransit),
    /// A transaction is ongoing: log the fence, abort the transaction with the fenced epoch,
    /// and answer CONCURRENT_TRANSACTIONS so the client retries (and bumps again).
    FenceAndAbort(TxnTransit),
}

/// Kafka's `isValidProducerId`: whether the (producer id, epoch) a KIP-360 client expects
/// may re-initialise this transactional id.
fn is_valid_expected_producer(meta: &TransactionMetadata, producer_id: i64, epoch: i16) -> bool {
    meta.producer_epoch() == NO_PRODUCER_EPOCH
        || producer_id == meta.producer_id()
        || (producer_id == meta.current.prev_producer_id && is_epoch_exhausted(epoch))
}

/// Whether `init_producer_id` will need a fresh producer id (exhausted epochs), so the
/// caller can allocate one from the controller's blocks before taking its lock.
pub fn init_needs_new_producer_id(
    meta: &TransactionMetadata,
    expected: Option<(i64, i16)>,
) -> bool {
    matches!(
        meta.state(),
        TransactionState::Empty
            | TransactionState::CompleteAbort
            | TransactionState::CompleteCommit
    ) && meta.is_producer_epoch_exhausted()
        && expected.is_none_or(|(_, e)| e == meta.producer_epoch())
}

/// `handleInitProducerId` for an existing transactional id. `new_producer_id` must be
/// given when `init_needs_new_producer_id` says so.
pub fn init_producer_id(
    meta: &mut TransactionMetadata,
    expected: Option<(i64, i16)>,
    txn_timeout_ms: i32,
    new_producer_id: Option<i64>,
    now_ms: i64,
) -> Result<InitAction, ResponseError> {
    if meta.pending_state.is_some() {
        return Err(ResponseError::ConcurrentTransactions);
    }
    if let Some((pid, epoch)) = expected {
        if !is_valid_expected_producer(meta, pid, epoch) {
            return Err(ResponseError::ProducerFenced);
        }
    }
    match meta.state() {
        TransactionState::PrepareAbort | TransactionState::PrepareCommit => {
            Err(ResponseError::ConcurrentTransactions)
        }
        TransactionState::Empty
        | TransactionState::CompleteAbort
        | TransactionState::CompleteCommit => {
            if init_needs_new_producer_id(meta, expected) {
                let id = new_producer_id.ok_or(ResponseError::UnknownServerError)?;
                meta.prepare_producer_id_rotation(id, txn_timeout_ms, now_ms, expected.is_some())
                    .map(InitAction::Write)
            } else {
                meta.prepare_increment_producer_epoch(
                    txn_timeout_ms,
                    expected.map(|(_, e)| e),
                    now_ms,
                )
                .map(InitAction::Write)
            }
        }
        TransactionState::Ongoing => meta
            .prepare_fence_producer_epoch()
            .map(InitAction::FenceAndAbort),
        TransactionState::Dead | TransactionState::PrepareEpochFence => {
            tracing::error!(transactional_id = %meta.transactional_id, state = ?meta.state(), "InitProducerId in an unexpected state");
            Err(ResponseError::UnknownServerError)
        }
    }
}

/// `handleAddPartitionsToTransaction`: `Ok(None)` when every partition is already in the
/// ongoing transaction (nothing to log).
pub fn add_partitions(
    meta: &mut TransactionMetadata,
    producer_id: i64,
    producer_epoch: i16,
    partitions: &[(String, i32)],
    client_transaction_version: i16,
    now_ms: i64,
) -> Result<Option<TxnTransit>, ResponseError> {
    if producer_id != meta.producer_id() {
        return Err(ResponseError::InvalidProducerIdMapping);
    }
    if producer_epoch != meta.producer_epoch() {
        return Err(ResponseError::ProducerFenced);
    }
    if meta.pending_state.is_some() {
        return Err(ResponseError::ConcurrentTransactions);
    }
    match meta.state() {
        TransactionState::PrepareCommit
        | TransactionState::PrepareAbort
        | TransactionState::PrepareEpochFence => Err(ResponseError::ConcurrentTransactions),
        TransactionState::Dead => Err(ResponseError::InvalidProducerIdMapping),
        TransactionState::Ongoing
            if partitions
                .iter()
                .all(|tp| meta.current.partitions.contains(tp)) =>
        {
            Ok(None)
        }
        _ => meta
            .prepare_add_partitions(
                partitions.iter().cloned(),
                now_ms,
                client_transaction_version,
            )
            .map(Some),
    }
}

/// `handleVerifyPartitionsInTransaction` (AddPartitionsToTxn v4+ with verify_only): the
/// error of each partition, none when it is in the producer's ongoing transaction.
pub fn verify_partitions(
    meta: &TransactionMetadata,
    producer_id: i64,
    producer_epoch: i16,
    partitions: &[(String, i32)],
) -> Result<Vec<((String, i32), Option<ResponseError>)>, ResponseError> {
    if producer_id != meta.producer_id() {
        return Err(ResponseError::InvalidProducerIdMapping);
    }
    if producer_epoch != meta.producer_epoch() {
        return Err(ResponseError::ProducerFenced);
    }
    if meta.pending_state.is_some() {
        return Err(ResponseError::ConcurrentTransactions);
    }
    Ok(partitions
        .iter()
        .map(|tp| {
            let in_txn =
                meta.state() == TransactionState::Ongoing && meta.current.partitions.contains(tp);
            (
                tp.clone(),
                (!in_txn).then_some(ResponseError::TransactionAbortable),
            )
        })
        .collect())
}

/// What EndTxn leads to.
#[derive(Debug, PartialEq, Eq)]
pub enum EndAction {
    /// A retry of an end already done: answer the current producer id and epoch.
    AlreadyDone,
    /// Log PrepareCommit/PrepareAbort, answer, then send the markers.
    Prepare(TxnTransit),
}

/// `handleEndTransaction`. `from_client` is false when the coordinator aborts on its own
/// (timeout, fencing): then the epoch given is the coordinator's, and a lower one fences.
/// `new_producer_id` is the id to rotate to if a TV2 bump exhausts the epochs (see
/// `end_needs_new_producer_id`).
#[allow(clippy::too_many_arguments)]
pub fn end_transaction(
    meta: &mut TransactionMetadata,
    producer_id: i64,
    producer_epoch: i16,
    commit: bool,
    client_transaction_version: i16,
    from_client: bool,
    new_producer_id: Option<i64>,
    now_ms: i64,
) -> Result<EndAction, ResponseError> {
    use TransactionState::*;
    let tv2 = client_transaction_version >= 2;
    let state = meta.state();
    let completed = matches!(state, CompleteCommit | CompleteAbort);
    // TV2 bumps on every end, so a retry whose answer was lost arrives one epoch behind
    // (or, across a producer id rotation, at i16::MAX - 1 of the previous id).
    let retry_on_overflow = tv2
        && completed
        && meta.current.prev_producer_id == producer_id
        && producer_epoch == i16::MAX - 1
        && meta.producer_epoch() == 0;
    let retry_on_epoch_bump =
        tv2 && completed && producer_epoch.checked_add(1) == Some(meta.producer_epoch());
    let is_retry = retry_on_overflow || retry_on_epoch_bump;
    let is_epoch_fence = meta.pending_state == Some(PrepareEpochFence);

    if producer_id != meta.producer_id() && !retry_on_overflow {
        return Err(ResponseError::InvalidProducerIdMapping);
    }
    let fenced = if from_client {
        !is_epoch_fence && producer_epoch != meta.producer_epoch() && !is_retry
    } else {
        producer_epoch < meta.producer_epoch()
    };
    if fenced {
        return Err(ResponseError::ProducerFenced);
    }
    if meta.pending_state.is_some() && !is_epoch_fence {
        return Err(ResponseError::ConcurrentTransactions);
    }
    let next_state = if commit { PrepareCommit } else { PrepareAbort };
    let prepare = |meta: &mut TransactionMetadata, no_partition_added: bool| {
        // A TV2 end at an exhausted epoch bumps to one no client sees and moves the producer
        // to a new id at epoch 0 when the transaction completes.
        let next_pid = if tv2 && meta.is_producer_epoch_exhausted() {
            new_producer_id.ok_or(ResponseError::UnknownServerError)?
        } else {
            -1
        };
        meta.prepare_abort_or_commit(
            next_state,
            client_transaction_version,
            next_pid,
            now_ms,
            no_partition_added,
        )
        .map(EndAction::Prepare)
    };
    match state {
        Ongoing => {
            if is_epoch_fence {
                if commit {
                    return Err(ResponseError::InvalidTxnState);
                }
                // The fence's bumped epoch goes into the abort record.
                meta.pending_state = None;
                meta.current.producer_epoch = producer_epoch;
                meta.last_producer_epoch = NO_PRODUCER_EPOCH;
            }
            prepare(meta, false)
        }
        CompleteCommit | CompleteAbort => {
            let same = (state == CompleteCommit) == commit;
            if same && (is_retry || !tv2) {
                Ok(EndAction::AlreadyDone)
            } else if tv2 && !commit && !is_retry {
                // TV2: a client unsure of the state may always abort.
                prepare(meta, true)
            } else {
                Err(ResponseError::InvalidTxnState)
            }
        }
        PrepareCommit | PrepareAbort => {
            if (state == PrepareCommit) == commit {
                Err(ResponseError::ConcurrentTransactions)
            } else {
                Err(ResponseError::InvalidTxnState)
            }
        }
        Empty => {
            if tv2 && !commit {
                prepare(meta, true)
            } else {
                Err(ResponseError::InvalidTxnState)
            }
        }
        Dead | PrepareEpochFence => {
            tracing::error!(transactional_id = %meta.transactional_id, ?state, "EndTxn in an unexpected state");
            Err(ResponseError::UnknownServerError)
        }
    }
}

/// Whether `end_transaction` will need a fresh producer id (a TV2 end at the last epoch).
pub fn end_needs_new_producer_id(
    meta: &TransactionMetadata,
    client_transaction_version: i16,
) -> bool {
    client_transaction_version >= 2 && meta.is_producer_epoch_exhausted()
}

#[cfg(test)]
mod tests {
    use super::*;
    use TransactionState::*;

    const NOW: i64 = 1_000;

    fn tp(t: &str, p: i32) -> (String, i32) {
        (t.to_string(), p)
    }

    /// A transactional id just initialised at epoch 0 (TV `tv`).
    fn initialised(tv: i16) -> TransactionMetadata {
        let mut m = TransactionMetadata::new("tx", 7, 60_000, NOW);
        let InitAction::Write(t) = init_producer_id(&mut m, None, 60_000, None, NOW).unwrap()
        else {
            panic!("a new id is written");
        };
        assert_eq!(
            (
                t.record.producer_id,
                t.record.producer_epoch,
                t.record.state
            ),
            (7, 0, Empty)
        );
        m.complete_transition(t).unwrap();
        m.current.client_transaction_version = tv;
        m
    }

    fn commit(m: &mut TransactionMetadata, t: TxnTransit) {
        m.complete_transition(t).unwrap();
    }

    fn ongoing(tv: i16) -> TransactionMetadata {
        let mut m = initialised(tv);
        let t = add_partitions(&mut m, 7, 0, &[tp("a", 0)], tv, NOW)
            .unwrap()
            .unwrap();
        commit(&mut m, t);
        assert_eq!(m.state(), Ongoing);
        m
    }

    #[test]
    fn timeouts_are_validated() {
        assert_eq!(
            validate_txn_timeout_ms(0, 900_000),
            Err(ResponseError::InvalidTransactionTimeout)
        );
        assert_eq!(
            validate_txn_timeout_ms(-5, 900_000),
            Err(ResponseError::InvalidTransactionTimeout)
        );
        assert_eq!(
            validate_txn_timeout_ms(900_001, 900_000),
            Err(ResponseError::InvalidTransactionTimeout)
        );
        assert_eq!(validate_txn_timeout_ms(900_000, 900_000), Ok(()));
    }

    #[test]
    fn init_bumps_the_epoch_and_fences_the_old_one() {
        let mut m = initialised(0);
        let InitAction::Write(t) = init_producer_id(&mut m, None, 60_000, None, NOW + 1).unwrap()
        else {
            panic!()
        };
        assert_eq!(t.record.producer_epoch, 1);
        commit(&mut m, t);
        // The old epoch is fenced; the current one adds partitions.
        assert_eq!(
            add_partitions(&mut m, 7, 0, &[tp("a", 0)], 0, NOW),
            Err(ResponseError::ProducerFenced)
        );
        assert_eq!(
            add_partitions(&mut m, 8, 1, &[tp("a", 0)], 0, NOW),
            Err(ResponseError::InvalidProducerIdMapping)
        );
        assert!(add_partitions(&mut m, 7, 1, &[tp("a", 0)], 0, NOW)
            .unwrap()
            .is_some());
        // One transition at a time.
        assert_eq!(
            add_partitions(&mut m, 7, 1, &[tp("b", 0)], 0, NOW),
            Err(ResponseError::ConcurrentTransactions)
        );
        assert_eq!(
            init_producer_id(&mut m, None, 60_000, None, NOW),
            Err(ResponseError::ConcurrentTransactions)
        );
    }

    #[test]
    fn kip360_init_with_expected_epoch() {
        let mut m = initialised(0);
        // Same producer recovering: bump, remembering epoch 0.
        let InitAction::Write(t) =
            init_producer_id(&mut m, Some((7, 0)), 60_000, None, NOW).unwrap()
        else {
            panic!()
        };
        assert_eq!((t.record.producer_epoch, t.last_producer_epoch), (1, 0));
        commit(&mut m, t);
        // Its retry (answer lost) gets the same epoch again.
        let InitAction::Write(t) =
            init_producer_id(&mut m, Some((7, 0)), 60_000, None, NOW).unwrap()
        else {
            panic!()
        };
        assert_eq!(t.record.producer_epoch, 1);
        m.abort_transition();
        // Another epoch, or another producer id, is fenced.
        assert_eq!(
            init_producer_id(&mut m, Some((7, 5)), 60_000, None, NOW),
            Err(ResponseError::ProducerFenced)
        );
        assert_eq!(
            init_producer_id(&mut m, Some((99, 1)), 60_000, None, NOW),
            Err(ResponseError::ProducerFenced)
        );
    }

    #[test]
    fn init_during_a_transaction_fences_and_aborts() {
        let mut m = ongoing(0);
        let InitAction::FenceAndAbort(fence) =
            init_producer_id(&mut m, None, 60_000, None, NOW).unwrap()
        else {
            panic!("an ongoing transaction is aborted")
        };
        assert_eq!(
            (fence.record.state, fence.record.producer_epoch),
            (PrepareEpochFence, 1)
        );
        // The coordinator's own abort with the fenced epoch goes through.
        let EndAction::Prepare(abort) = end_transaction(
            &mut m,
            7,
            fence.record.producer_epoch,
            false,
            0,
            false,
            None,
            NOW,
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!(
            (abort.record.state, abort.record.producer_epoch),
            (PrepareAbort, 1)
        );
        assert_eq!(abort.record.partitions, [tp("a", 0)].into_iter().collect());
        commit(&mut m, abort);
        // While it completes, the client's retry is told to wait; the old epoch is fenced.
        assert_eq!(
            init_producer_id(&mut m, None, 60_000, None, NOW),
            Err(ResponseError::ConcurrentTransactions)
        );
        assert_eq!(
            end_transaction(&mut m, 7, 0, true, 0, true, None, NOW),
            Err(ResponseError::ProducerFenced)
        );
        let done = m.prepare_complete(NOW).unwrap();
        commit(&mut m, done);
        assert_eq!(m.state(), CompleteAbort);
        assert!(m.current.partitions.is_empty());
        let InitAction::Write(t) = init_producer_id(&mut m, None, 60_000, None, NOW).unwrap()
        else {
            panic!()
        };
        assert_eq!(t.record.producer_epoch, 2);
    }

    #[test]
    fn exhausted_epochs_rotate_the_producer_id() {
        let mut m = initialised(0);
        m.current.producer_epoch = i16::MAX - 1;
        assert!(init_needs_new_producer_id(&m, None));
        let InitAction::Write(t) = init_producer_id(&mut m, None, 60_000, Some(8), NOW).unwrap()
        else {
            panic!()
        };
        assert_eq!(
            (
                t.record.producer_id,
                t.record.producer_epoch,
                t.record.prev_producer_id
            ),
            (8, 0, 7)
        );
    }

    #[test]
    fn tv1_commit_and_retries() {
        let mut m = ongoing(0);
        assert_eq!(
            add_partitions(&mut m, 7, 0, &[tp("a", 0)], 0, NOW),
            Ok(None),
            "already in the transaction"
        );
        let EndAction::Prepare(t) =
            end_transaction(&mut m, 7, 0, true, 0, true, None, NOW).unwrap()
        else {
            panic!()
        };
        assert_eq!(
            (t.record.state, t.record.producer_epoch),
            (PrepareCommit, 0),
            "TV1 keeps the epoch"
        );
        commit(&mut m, t);
        assert_eq!(
            end_transaction(&mut m, 7, 0, true, 0, true, None, NOW),
            Err(ResponseError::ConcurrentTransactions)
        );
        assert_eq!(
            end_transaction(&mut m, 7, 0, false, 0, true, None, NOW),
            Err(ResponseError::InvalidTxnState)
        );
        assert_eq!(
            add_partitions(&mut m, 7, 0, &[tp("b", 0)], 0, NOW),
            Err(ResponseError::ConcurrentTransactions)
        );
        let t = m.prepare_complete(NOW + 5).unwrap();
        commit(&mut m, t);
        assert_eq!(m.state(), CompleteCommit);
        assert_eq!(
            end_transaction(&mut m, 7, 0, true, 0, true, None, NOW),
            Ok(EndAction::AlreadyDone)
        );
        assert_eq!(
            end_transaction(&mut m, 7, 0, false, 0, true, None, NOW),
            Err(ResponseError::InvalidTxnState)
        );
        // TV1 cannot end a transaction that never started.
        let mut e = initialised(0);
        assert_eq!(
            end_transaction(&mut e, 7, 0, false, 0, true, None, NOW),
            Err(ResponseError::InvalidTxnState)
        );
    }

    #[test]
    fn tv2_bumps_on_every_end() {
        let mut m = ongoing(2);
        let EndAction::Prepare(t) =
            end_transaction(&mut m, 7, 0, true, 2, true, None, NOW).unwrap()
        else {
            panic!()
        };
        assert_eq!(
            (
                t.record.state,
                t.record.producer_epoch,
                t.last_producer_epoch
            ),
            (PrepareCommit, 1, 0)
        );
        commit(&mut m, t);
        let t = m.prepare_complete(NOW).unwrap();
        commit(&mut m, t);
        assert_eq!((m.state(), m.producer_epoch()), (CompleteCommit, 1));
        // The retry arrives with the old epoch and is answered, not fenced.
        assert_eq!(
            end_transaction(&mut m, 7, 0, true, 2, true, None, NOW),
            Ok(EndAction::AlreadyDone)
        );
        // An abort with nothing added is allowed in TV2 (the client may be unsure).
        let EndAction::Prepare(t) =
            end_transaction(&mut m, 7, 1, false, 2, true, None, NOW).unwrap()
        else {
            panic!()
        };
        assert_eq!(
            (
                t.record.state,
                t.record.producer_epoch,
                t.record.txn_start_timestamp_ms
            ),
            (PrepareAbort, 2, NOW)
        );
        m.abort_transition();
        assert_eq!(
            end_transaction(&mut m, 7, 1, true, 2, true, None, NOW),
            Err(ResponseError::InvalidTxnState)
        );
        assert_eq!(
            end_transaction(&mut m, 7, 5, true, 2, true, None, NOW),
            Err(ResponseError::ProducerFenced)
        );
    }

    #[test]
    fn tv2_end_at_the_last_epoch_rotates_the_producer_id() {
        let mut m = ongoing(2);
        m.current.producer_epoch = i16::MAX - 2;
        assert!(!end_needs_new_producer_id(&m, 2));
        m.current.producer_epoch = i16::MAX - 1;
        assert!(end_needs_new_producer_id(&m, 2));
        assert_eq!(
            end_transaction(&mut m, 7, i16::MAX - 1, true, 2, true, None, NOW),
            Err(ResponseError::UnknownServerError)
        );
        let EndAction::Prepare(t) =
            end_transaction(&mut m, 7, i16::MAX - 1, true, 2, true, Some(9), NOW).unwrap()
        else {
            panic!()
        };
        assert_eq!(
            (t.record.producer_epoch, t.record.next_producer_id),
            (i16::MAX, 9)
        );
        commit(&mut m, t);
        let t = m.prepare_complete(NOW).unwrap();
        assert_eq!(
            (
                t.record.producer_id,
                t.record.producer_epoch,
                t.record.next_producer_id
            ),
            (9, 0, -1)
        );
        commit(&mut m, t);
        // The retry from the previous id at MAX - 1 is recognised.
        assert_eq!(
            end_transaction(&mut m, 7, i16::MAX - 1, true, 2, true, None, NOW),
            Ok(EndAction::AlreadyDone)
        );
    }

    #[test]
    fn verification_needs_the_partition_in_the_ongoing_transaction() {
        let m = ongoing(0);
        let v = verify_partitions(&m, 7, 0, &[tp("a", 0), tp("b", 0)]).unwrap();
        assert_eq!(
            v,
            vec![
                (tp("a", 0), None),
                (tp("b", 0), Some(ResponseError::TransactionAbortable))
            ]
        );
        assert_eq!(
            verify_partitions(&m, 7, 1, &[tp("a", 0)]),
            Err(ResponseError::ProducerFenced)
        );
        assert_eq!(
            verify_partitions(&m, 6, 0, &[tp("a", 0)]),
            Err(ResponseError::InvalidProducerIdMapping)
        );
    }

    #[test]
    fn invalid_transitions_are_refused() {
        let mut m = initialised(0);
        // Empty -> CompleteCommit is not one of Kafka's transitions.
        assert_eq!(
            m.prepare_complete(NOW),
            Err(ResponseError::UnknownServerError)
        );
        assert_eq!(m.pending_state, None);
        // Ongoing cannot be expired.
        let mut o = ongoing(0);
        assert_eq!(o.prepare_dead(), Err(ResponseError::UnknownServerError));
        assert!(!Ongoing.is_expiration_allowed());
        // A completion must match the pending state.
        let t = m.prepare_dead().unwrap();
        let mut wrong = t.clone();
        wrong.record.state = Ongoing;
        assert_eq!(
            m.complete_transition(wrong),
            Err(ResponseError::UnknownServerError)
        );
        for s in TransactionState::ALL {
            assert_eq!(TransactionState::from_id(s.id()), Some(s));
            assert_eq!(TransactionState::from_name(s.name()), Some(s));
        }
        assert_eq!(TransactionState::from_id(8), None);
        assert_eq!(TransactionState::from_id(-1), None);
    }
}
