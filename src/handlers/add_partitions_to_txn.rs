//! AddPartitionsToTxn (key 24): v0-3 from a transactional producer (one transaction); v4+
//! from a partition leader in batch form, where `verify_only` asks whether the partitions
//! are in the ongoing transaction (KIP-890) and v5 carries TV2's implicit adds. Every
//! partition of a transaction gets the transaction's error, as in Kafka.

use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::{AddPartitionsToTxnRequest, AddPartitionsToTxnResponse};
use kafka_protocol::ResponseError;

use super::RequestContext;

/// Bound on the partitions of one request (Kafka bounds them by the request size).
const PARTITIONS_MAX: usize = 10_000;

fn partitions_of(topics: &[AddPartitionsToTxnTopic]) -> Vec<(String, i32)> {
    topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| (t.name.0.to_string(), *p)))
        .collect()
}

fn results(
    partitions: &[(String, i32)],
    error: impl Fn(&(String, i32)) -> Option<ResponseError>,
) -> Vec<AddPartitionsToTxnTopicResult> {
    let mut by_topic: std::collections::BTreeMap<&str, Vec<AddPartitionsToTxnPartitionResult>> =
        Default::default();
    for tp in partitions {
        by_topic.entry(&tp.0).or_default().push(
            AddPartitionsToTxnPartitionResult::default()
                .with_partition_index(tp.1)
                .with_partition_error_code(error(tp).map_or(0, |e| e.code())),
        );
    }
    by_topic
        .into_iter()
        .map(|(t, r)| {
            AddPartitionsToTxnTopicResult::default()
                .with_name(kafka_protocol::messages::TopicName(super::str_bytes(t)))
                .with_results_by_partition(r)
        })
        .collect()
}

pub async fn handle(
    ctx: &RequestContext,
    req: AddPartitionsToTxnRequest,
) -> AddPartitionsToTxnResponse {
    let tc = &ctx.broker.txn_coordinator;
    if ctx.api_version <= 3 {
        let partitions = partitions_of(&req.v3_and_below_topics);
        if partitions.len() > PARTITIONS_MAX {
            return AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(
                results(&partitions, |_| Some(ResponseError::InvalidRequest)),
            );
        }
        let r = tc
            .add_partitions(
                &req.v3_and_below_transactional_id,
                req.v3_and_below_producer_id.0,
                req.v3_and_below_producer_epoch,
                &partitions,
                1,
            )
            .await;
        let err = match r {
            Ok(()) => None,
            // Clients before v2... Kafka keeps PRODUCER_FENCED as INVALID_PRODUCER_EPOCH for them.
            Err(ResponseError::ProducerFenced) if ctx.api_version < 2 => {
                Some(ResponseError::InvalidProducerEpoch)
            }
            Err(e) => Some(e),
        };
        return AddPartitionsToTxnResponse::default()
            .with_results_by_topic_v3_and_below(results(&partitions, |_| err));
    }
    let total: usize = req
        .transactions
        .iter()
        .map(|t| partitions_of(&t.topics).len())
        .sum();
    if total > PARTITIONS_MAX {
        return AddPartitionsToTxnResponse::default()
            .with_error_code(ResponseError::InvalidRequest.code());
    }
    let mut out = Vec::with_capacity(req.transactions.len());
    for t in &req.transactions {
        let partitions = partitions_of(&t.topics);
        let id: &str = &t.transactional_id;
        let topic_results = if t.verify_only {
            match tc.verify_partitions(id, t.producer_id.0, t.producer_epoch, &partitions) {
                Ok(v) => {
                    let map: std::collections::HashMap<_, _> = v.into_iter().collect();
                    results(&partitions, |tp| map.get(tp).copied().flatten())
                }
                Err(e) => results(&partitions, |_| Some(e)),
            }
        } else {
            // v5 from a leader: TV2's implicit add.
            let tv = if ctx.api_version >= 5 { 2 } else { 1 };
            let err = tc
                .add_partitions(id, t.producer_id.0, t.producer_epoch, &partitions, tv)
                .await
                .err();
            results(&partitions, |_| err)
        };
        out.push(
            AddPartitionsToTxnResult::default()
                .with_transactional_id(t.transactional_id.clone())
                .with_topic_results(topic_results),
        );
    }
    AddPartitionsToTxnResponse::default().with_results_by_transaction(out)
}
