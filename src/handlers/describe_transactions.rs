//! DescribeTransactions (key 65): the state of each transactional id this node coordinates.

use kafka_protocol::messages::describe_transactions_response::{TopicData, TransactionState};
use kafka_protocol::messages::{
    DescribeTransactionsRequest, DescribeTransactionsResponse, ProducerId, TopicName,
};

use super::{str_bytes, RequestContext};

/// Bound on the ids of one request.
const IDS_MAX: usize = 10_000;

pub fn handle(
    ctx: &RequestContext,
    req: DescribeTransactionsRequest,
) -> DescribeTransactionsResponse {
    let tc = &ctx.broker.txn_coordinator;
    let states = req
        .transactional_ids
        .iter()
        .take(IDS_MAX)
        .map(|id| {
            let base = TransactionState::default().with_transactional_id(id.clone());
            match tc.describe(id) {
                Ok(d) => {
                    let mut by_topic: std::collections::BTreeMap<String, Vec<i32>> =
                        Default::default();
                    for (t, p) in d.partitions {
                        by_topic.entry(t).or_default().push(p);
                    }
                    base.with_transaction_state(str_bytes(d.state.name()))
                        .with_transaction_timeout_ms(d.txn_timeout_ms)
                        .with_transaction_start_time_ms(d.txn_start_timestamp_ms)
                        .with_producer_id(ProducerId(d.producer_id))
                        .with_producer_epoch(d.producer_epoch)
                        .with_topics(
                            by_topic
                                .into_iter()
                                .map(|(t, ps)| {
                                    TopicData::default()
                                        .with_topic(TopicName(str_bytes(&t)))
                                        .with_partitions(ps)
                                })
                                .collect(),
                        )
                }
                Err(e) => base
                    .with_error_code(e.code())
                    .with_transaction_state(str_bytes(""))
                    .with_producer_id(ProducerId(-1))
                    .with_producer_epoch(-1)
                    .with_transaction_start_time_ms(-1),
            }
        })
        .collect();
    DescribeTransactionsResponse::default().with_transaction_states(states)
}
