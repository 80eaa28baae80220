//! ListTransactions (key 66): the transactional ids this node coordinates, filtered by
//! state, producer id and (v1+) minimum running duration (v2's id pattern is not served:
//! the version table stops at v1). An unknown state name matches
//! nothing and is returned in `unknown_state_filters`, as Kafka does.

use std::collections::HashSet;

use kafka_protocol::messages::list_transactions_response::TransactionState as Listed;
use kafka_protocol::messages::{
    ListTransactionsRequest, ListTransactionsResponse, ProducerId, TransactionalId,
};

use super::{str_bytes, RequestContext};
use crate::txn::state::TransactionState;

pub fn handle(ctx: &RequestContext, req: ListTransactionsRequest) -> ListTransactionsResponse {
    let mut states = HashSet::new();
    let mut unknown = Vec::new();
    for s in &req.state_filters {
        match TransactionState::from_name(s) {
            Some(st) => {
                states.insert(st);
            }
            None => unknown.push(s.clone()),
        }
    }
    let resp = ListTransactionsResponse::default().with_unknown_state_filters(unknown.clone());
    if !unknown.is_empty() && states.is_empty() {
        // Only unknown states asked for: nothing can match.
        return resp;
    }
    let producer_ids: HashSet<i64> = req.producer_id_filters.iter().map(|p| p.0).collect();
    let duration = if ctx.api_version >= 1 {
        req.duration_filter
    } else {
        -1
    };
    match ctx
        .broker
        .txn_coordinator
        .list(&states, &producer_ids, duration)
    {
        Ok(list) => resp.with_transaction_states(
            list.into_iter()
                .map(|(id, pid, st)| {
                    Listed::default()
                        .with_transactional_id(TransactionalId(str_bytes(&id)))
                        .with_producer_id(ProducerId(pid))
                        .with_transaction_state(str_bytes(st.name()))
                })
                .collect(),
        ),
        Err(e) => resp.with_error_code(e.code()),
    }
}
