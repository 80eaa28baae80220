//! The transaction coordinator on a three-node cluster, with the raw-protocol client:
//! FindCoordinator(TRANSACTION), InitProducerId epoch bumps and fencing, AddPartitionsToTxn,
//! EndTxn commit and abort (observed with DescribeTransactions), ListTransactions, and a
//! kill -9 of the coordinator after which the new leader of the partition loads the state.
//!
//! Markers go to partition leaders as WriteTxnMarkers. Whether this build's leaders serve it
//! is read from ApiVersions: if they do, transactions must reach CompleteCommit /
//! CompleteAbort; if not, they must stay prepared while the coordinator keeps retrying.

use std::time::Duration;

use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::describe_transactions_response::TransactionState;
use kafka_protocol::messages::{
    AddPartitionsToTxnRequest, ApiKey, ApiVersionsRequest, DescribeTransactionsRequest,
    EndTxnRequest, FindCoordinatorRequest, InitProducerIdRequest, ListTransactionsRequest,
    ProducerId, TopicName, TransactionalId,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use crate::client::Client;
use crate::cluster::wait_for;
use crate::harness::{Cluster, Node};

const PROPS: &[(&str, &str)] = &[
    ("transaction.state.log.num.partitions", "4"),
    ("offsets.topic.num.partitions", "4"),
    (
        "transaction.abort.timed.out.transaction.cleanup.interval.ms",
        "500",
    ),
];

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn find_txn_coordinator(node: &Node, id: &str) -> Option<i32> {
    let mut c = Client::try_connect(&node.bootstrap()).ok()?;
    let req = FindCoordinatorRequest::default()
        .with_key(s(id))
        .with_key_type(1);
    let resp = c.request(&req, 3).ok()?;
    (resp.error_code == 0).then_some(resp.node_id.0)
}

fn init(c: &mut Client, id: &str, timeout_ms: i32) -> (i16, i64, i16) {
    let req = InitProducerIdRequest::default()
        .with_transactional_id(Some(TransactionalId(s(id))))
        .with_transaction_timeout_ms(timeout_ms)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    let r = c.request(&req, 4).unwrap();
    (r.error_code, r.producer_id.0, r.producer_epoch)
}

fn add(c: &mut Client, id: &str, pid: i64, epoch: i16, topic: &str, parts: &[i32]) -> Vec<i16> {
    let req = AddPartitionsToTxnRequest::default()
        .with_v3_and_below_transactional_id(TransactionalId(s(id)))
        .with_v3_and_below_producer_id(ProducerId(pid))
        .with_v3_and_below_producer_epoch(epoch)
        .with_v3_and_below_topics(vec![AddPartitionsToTxnTopic::default()
            .with_name(TopicName(s(topic)))
            .with_partitions(parts.to_vec())]);
    let r = c.request(&req, 3).unwrap();
    r.results_by_topic_v3_and_below
        .iter()
        .flat_map(|t| {
            t.results_by_partition
                .iter()
                .map(|p| p.partition_error_code)
        })
        .collect()
}

fn end(c: &mut Client, id: &str, pid: i64, epoch: i16, commit: bool) -> i16 {
    let req = EndTxnRequest::default()
        .with_transactional_id(TransactionalId(s(id)))
        .with_producer_id(ProducerId(pid))
        .with_producer_epoch(epoch)
        .with_committed(commit);
    c.request(&req, 3).unwrap().error_code
}

fn describe(c: &mut Client, id: &str) -> TransactionState {
    let req =
        DescribeTransactionsRequest::default().with_transactional_ids(vec![TransactionalId(s(id))]);
    c.request(&req, 0).unwrap().transaction_states.remove(0)
}

fn serves_write_txn_markers(node: &Node) -> bool {
    let mut c = Client::connect(&node.bootstrap());
    let r = c.request(&ApiVersionsRequest::default(), 3).unwrap();
    r.api_keys
        .iter()
        .any(|k| k.api_key == ApiKey::WriteTxnMarkers as i16)
}

/// Connects to the coordinator of `id` (as node `via` answers), retrying while it moves.
fn coordinator(cluster: &mut Cluster, via: i32, id: &str) -> (i32, Client) {
    let node = cluster.node(via);
    let leader = wait_for("a transaction coordinator", Duration::from_secs(60), || {
        find_txn_coordinator(node, id)
    });
    let addr = cluster.node(leader).bootstrap();
    (leader, Client::connect(&addr))
}

#[test]
fn transaction_coordinator_lifecycle_and_failover() {
    let mut cluster = Cluster::start(3, PROPS);
    Client::connect(&cluster.node(1).bootstrap()).create_topic("txn-data", 2);
    let markers = serves_write_txn_markers(cluster.node(1));
    let (done_commit, done_abort) = if markers {
        ("CompleteCommit", "CompleteAbort")
    } else {
        ("PrepareCommit", "PrepareAbort")
    };

    let (leader, mut c) = coordinator(&mut cluster, 1, "tx-a");
    // The coordinator may still be loading its partition right after the topic appeared.
    let (err, pid, epoch0) = wait_for("InitProducerId", Duration::from_secs(30), || {
        let r = init(&mut c, "tx-a", 60_000);
        (r.0 != ResponseError::CoordinatorLoadInProgress.code()).then_some(r)
    });
    assert_eq!(err, 0);
    assert_eq!(epoch0, 0);
    let (err, pid2, epoch1) = init(&mut c, "tx-a", 60_000);
    assert_eq!(
        (err, pid2, epoch1),
        (0, pid, 1),
        "a second InitProducerId bumps the epoch"
    );
    assert_eq!(
        init(&mut c, "tx-a", 10_000_000).0,
        ResponseError::InvalidTransactionTimeout.code()
    );

    // The old epoch is fenced; the current one starts the transaction.
    assert_eq!(
        add(&mut c, "tx-a", pid, 0, "txn-data", &[0, 1]),
        vec![ResponseError::ProducerFenced.code(); 2]
    );
    assert_eq!(add(&mut c, "tx-a", pid, 1, "txn-data", &[0, 1]), vec![0, 0]);
    let d = describe(&mut c, "tx-a");
    assert_eq!(d.error_code, 0);
    assert_eq!(d.transaction_state.as_str(), "Ongoing");
    assert_eq!((d.producer_id.0, d.producer_epoch), (pid, 1));
    assert_eq!(d.topics.len(), 1);
    assert_eq!(d.topics[0].partitions, vec![0, 1]);
    assert!(d.transaction_start_time_ms > 0);

    assert_eq!(end(&mut c, "tx-a", pid, 1, true), 0);
    wait_for("tx-a committed", Duration::from_secs(30), || {
        (describe(&mut c, "tx-a").transaction_state.as_str() == done_commit).then_some(())
    });
    if !markers {
        // Prepared for good: a retry of the commit is told to wait, an abort is refused.
        assert_eq!(
            end(&mut c, "tx-a", pid, 1, true),
            ResponseError::ConcurrentTransactions.code()
        );
        assert_eq!(
            end(&mut c, "tx-a", pid, 1, false),
            ResponseError::InvalidTxnState.code()
        );
        std::thread::sleep(Duration::from_secs(2));
        assert!(
            cluster
                .node(leader)
                .log()
                .contains("transaction markers not yet written; retrying"),
            "the coordinator retries the markers"
        );
    }

    // A second transactional id, aborted.
    let (_, mut c2) = coordinator(&mut cluster, 1, "tx-b");
    let (err, pid_b, epoch_b) = wait_for("InitProducerId tx-b", Duration::from_secs(30), || {
        let r = init(&mut c2, "tx-b", 60_000);
        (r.0 != ResponseError::CoordinatorLoadInProgress.code()).then_some(r)
    });
    assert_eq!(err, 0);
    assert_ne!(pid_b, pid, "each transactional id has its own producer id");
    assert_eq!(
        add(&mut c2, "tx-b", pid_b, epoch_b, "txn-data", &[1]),
        vec![0]
    );
    assert_eq!(end(&mut c2, "tx-b", pid_b, epoch_b, false), 0);
    wait_for("tx-b aborted", Duration::from_secs(30), || {
        (describe(&mut c2, "tx-b").transaction_state.as_str() == done_abort).then_some(())
    });

    // A transaction past its timeout is aborted by the coordinator with a fenced epoch.
    let (_, mut c3) = coordinator(&mut cluster, 1, "tx-c");
    let (err, pid_c, epoch_c) = wait_for("InitProducerId tx-c", Duration::from_secs(30), || {
        let r = init(&mut c3, "tx-c", 1_000);
        (r.0 != ResponseError::CoordinatorLoadInProgress.code()).then_some(r)
    });
    assert_eq!(err, 0);
    assert_eq!(
        add(&mut c3, "tx-c", pid_c, epoch_c, "txn-data", &[0]),
        vec![0]
    );
    let d = wait_for("tx-c aborted on timeout", Duration::from_secs(30), || {
        let d = describe(&mut c3, "tx-c");
        (d.transaction_state.as_str() == done_abort).then_some(d)
    });
    assert_eq!(
        d.producer_epoch,
        epoch_c + 1,
        "the timed-out producer is fenced"
    );
    assert_eq!(
        end(&mut c3, "tx-c", pid_c, epoch_c, true),
        ResponseError::ProducerFenced.code()
    );

    // ListTransactions on the coordinator of tx-a, by state and by producer id.
    let list = ListTransactionsRequest::default().with_state_filters(vec![s(done_commit)]);
    let r = c.request(&list, 0).unwrap();
    assert_eq!(r.error_code, 0);
    assert!(r
        .transaction_states
        .iter()
        .any(|t| t.transactional_id.0.as_str() == "tx-a"));
    assert!(r
        .transaction_states
        .iter()
        .all(|t| t.transaction_state.as_str() == done_commit));
    let by_pid = ListTransactionsRequest::default().with_producer_id_filters(vec![ProducerId(pid)]);
    let r = c.request(&by_pid, 1).unwrap();
    assert_eq!(
        r.transaction_states
            .iter()
            .map(|t| t.transactional_id.0.to_string())
            .collect::<Vec<_>>(),
        vec!["tx-a".to_string()]
    );
    let unknown = ListTransactionsRequest::default().with_state_filters(vec![s("Nonsense")]);
    let r = c.request(&unknown, 0).unwrap();
    assert_eq!(r.unknown_state_filters, vec![s("Nonsense")]);
    assert!(r.transaction_states.is_empty());

    // kill -9 the coordinator of tx-a: the next leader of its partition loads the state.
    drop(c);
    cluster.node(leader).kill();
    let via = if leader == 1 { 2 } else { 1 };
    let new_leader = wait_for("a new coordinator", Duration::from_secs(60), || {
        let n = find_txn_coordinator(cluster.node(via), "tx-a")?;
        (n != leader).then_some(n)
    });
    let mut c = Client::connect(&cluster.node(new_leader).bootstrap());
    let d = wait_for("tx-a loaded", Duration::from_secs(30), || {
        let d = describe(&mut c, "tx-a");
        (d.error_code == 0).then_some(d)
    });
    assert_eq!(
        (d.producer_id.0, d.producer_epoch),
        (pid, 1),
        "state survives the failover"
    );
    assert!(
        d.transaction_state.as_str() == done_commit
            || d.transaction_state.as_str() == "CompleteCommit",
        "state after failover: {}",
        d.transaction_state.as_str()
    );
    let (err, _, epoch) = init(&mut c, "tx-a", 60_000);
    if markers {
        assert_eq!(
            (err, epoch),
            (0, 2),
            "the new coordinator continues from the loaded epoch"
        );
    } else {
        // The loaded commit is still being completed (markers resent by the new leader).
        assert_eq!(err, ResponseError::ConcurrentTransactions.code());
        std::thread::sleep(Duration::from_secs(2));
        assert!(cluster
            .node(new_leader)
            .log()
            .contains("transaction markers not yet written; retrying"));
    }
}
