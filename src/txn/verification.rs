//! KIP-890 verification for the produce path: before a leader appends a transactional
//! batch it asks the partition's transaction coordinator whether the partition is in the
//! producer's ongoing transaction (AddPartitionsToTxn v4+ with `verify_only = true`), or,
//! for a TV2 client, adds it implicitly (`verify_only = false`). Kafka's
//! `AddPartitionsToTxnManager` does the same, batching per coordinator; this sends one
//! request per call.
//!
//! Interface for the produce handler:
//! `verify_transaction(&broker, transactional_id, producer_id, producer_epoch, &partitions,
//! implicit_add)` returns `Ok(())` or, per Kafka, the error the Produce response carries
//! (INVALID_PRODUCER_ID_MAPPING, PRODUCER_FENCED / INVALID_PRODUCER_EPOCH,
//! TRANSACTION_ABORTABLE for a partition not in the transaction, CONCURRENT_TRANSACTIONS,
//! NOT_COORDINATOR / COORDINATOR_NOT_AVAILABLE, which Kafka maps to NOT_ENOUGH_REPLICAS
//! for the producer's retry).

use std::net::ToSocketAddrs;
use std::time::Duration;

use kafka_protocol::messages::add_partitions_to_txn_request::{
    AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction,
};
use kafka_protocol::messages::{AddPartitionsToTxnRequest, ProducerId, TopicName, TransactionalId};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::TransactionCoordinator;
use crate::broker::Broker;

/// AddPartitionsToTxn's broker-to-broker form (v4 verify; v5 also carries TV2 adds).
const VERIFY_VERSION: i16 = 5;
const VERIFY_TIMEOUT: Duration = Duration::from_secs(5);

/// Kafka's `AddPartitionsToTxnManager` mapping of coordinator errors for the producer.
fn produce_error(e: ResponseError) -> ResponseError {
    use ResponseError as E;
    match e {
        E::NotCoordinator
        | E::CoordinatorNotAvailable
        | E::CoordinatorLoadInProgress
        | E::RequestTimedOut => E::NotEnoughReplicas,
        E::ProducerFenced => E::InvalidProducerEpoch,
        other => other,
    }
}

pub async fn verify_transaction(
    broker: &Broker,
    transactional_id: &str,
    producer_id: i64,
    producer_epoch: i16,
    partitions: &[(String, i32)],
    implicit_add: bool,
) -> Result<(), ResponseError> {
    let image = broker.image();
    let coordinator_addr = TransactionCoordinator::partition_for(&image, transactional_id)
        .and_then(|p| {
            image
                .topic(super::TRANSACTION_STATE_TOPIC)?
                .partitions
                .get(&p)
                .map(|r| r.leader)
        })
        .and_then(|leader| image.brokers.get(&leader).filter(|b| !b.fenced))
        .and_then(|b| b.endpoints.first())
        .and_then(|ep| (ep.host.as_str(), ep.port).to_socket_addrs().ok()?.next())
        .ok_or(ResponseError::NotEnoughReplicas)?;
    let mut by_topic: std::collections::BTreeMap<&str, Vec<i32>> = Default::default();
    for (t, p) in partitions {
        by_topic.entry(t).or_default().push(*p);
    }
    let request = AddPartitionsToTxnRequest::default().with_transactions(vec![
        AddPartitionsToTxnTransaction::default()
            .with_transactional_id(TransactionalId(StrBytes::from_string(
                transactional_id.to_string(),
            )))
            .with_producer_id(ProducerId(producer_id))
            .with_producer_epoch(producer_epoch)
            .with_verify_only(!implicit_add)
            .with_topics(
                by_topic
                    .into_iter()
                    .map(|(t, ps)| {
                        AddPartitionsToTxnTopic::default()
                            .with_name(TopicName(StrBytes::from_string(t.to_string())))
                            .with_partitions(ps)
                    })
                    .collect(),
            ),
    ]);
    let resp = broker
        .node_channel()
        .send(coordinator_addr, &request, VERIFY_VERSION, VERIFY_TIMEOUT)
        .await
        .map_err(|_| ResponseError::NotEnoughReplicas)?;
    if let Some(e) = ResponseError::try_from_code(resp.error_code) {
        return Err(produce_error(e));
    }
    for t in resp.results_by_transaction {
        for topic in t.topic_results {
            for p in topic.results_by_partition {
                if let Some(e) = ResponseError::try_from_code(p.partition_error_code) {
                    return Err(produce_error(e));
                }
            }
        }
    }
    Ok(())
}
