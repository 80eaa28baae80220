//! An in-process cluster of three voters on loopback ports, each with its own data directory
//! and `serve_rpc` listener, driven through the public API only.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gregor_raft::{
    serve_rpc, MetadataQuorum, NodeId, QuorumConfig, QuorumError, StateMachine, RAFT_RPC_API_KEY,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

const WAIT: Duration = Duration::from_secs(20);
const REQUEST_TIMEOUT_MS: u64 = 2000;

#[derive(Default)]
struct TestState {
    /// (index, entry) in apply order.
    entries: Vec<(u64, Vec<u8>)>,
    last_index: u64,
    /// `last_index` of every `restore` call.
    restores: Vec<u64>,
}

/// A state machine that remembers every entry and snapshots itself as JSON.
#[derive(Default)]
struct TestStateMachine {
    state: Mutex<TestState>,
}

impl StateMachine for TestStateMachine {
    fn apply(&self, index: u64, entry: &[u8]) {
        let mut state = self.state.lock().unwrap();
        assert!(
            index > state.last_index,
            "apply({index}) after {}",
            state.last_index
        );
        state.last_index = index;
        state.entries.push((index, entry.to_vec()));
    }

    fn snapshot(&self) -> (u64, Vec<u8>) {
        let state = self.state.lock().unwrap();
        (
            state.last_index,
            serde_json::to_vec(&state.entries).unwrap(),
        )
    }

    fn restore(&self, last_index: u64, data: &[u8]) {
        let mut state = self.state.lock().unwrap();
        state.entries = serde_json::from_slice(data).unwrap();
        state.last_index = last_index;
        state.restores.push(last_index);
    }
}

impl TestStateMachine {
    fn entries(&self) -> Vec<(u64, Vec<u8>)> {
        self.state.lock().unwrap().entries.clone()
    }

    fn restores(&self) -> Vec<u64> {
        self.state.lock().unwrap().restores.clone()
    }
}

struct Node {
    quorum: Arc<MetadataQuorum>,
    state_machine: Arc<TestStateMachine>,
    server: JoinHandle<()>,
}

struct Cluster {
    root: tempfile::TempDir,
    voters: BTreeMap<NodeId, SocketAddr>,
    snapshot_after_entries: u64,
    nodes: BTreeMap<NodeId, Node>,
}

/// Each node on its own loopback address, with outgoing connections bound to it, as in the
/// fault-injection setup.
fn node_ip(id: NodeId) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 10 + id as u8))
}

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

impl Cluster {
    /// Starts voters 1..=3 from empty directories.
    async fn start(snapshot_after_entries: u64) -> Cluster {
        init_tracing();
        let mut listeners = BTreeMap::new();
        for id in 1..=3 {
            let listener = TcpListener::bind((node_ip(id), 0)).await.unwrap();
            listeners.insert(id, listener);
        }
        let voters = listeners
            .iter()
            .map(|(id, listener)| (*id, listener.local_addr().unwrap()))
            .collect();
        let mut cluster = Cluster {
            root: tempfile::tempdir().unwrap(),
            voters,
            snapshot_after_entries,
            nodes: BTreeMap::new(),
        };
        // Highest id first, so the bootstrapping node comes last and the others must wait.
        for (id, listener) in listeners.into_iter().rev() {
            cluster.start_node(id, listener).await;
        }
        cluster
    }

    fn data_dir(&self, id: NodeId) -> PathBuf {
        self.root.path().join(format!("node-{id}"))
    }

    fn config(&self, id: NodeId) -> QuorumConfig {
        let mut config = QuorumConfig::new(id, self.data_dir(id), self.voters.clone());
        config.election_timeout_min_ms = 300;
        config.election_timeout_max_ms = 600;
        config.heartbeat_interval_ms = 50;
        config.snapshot_after_entries = self.snapshot_after_entries;
        config.request_timeout_ms = REQUEST_TIMEOUT_MS;
        config.source_addr = Some(node_ip(id));
        config
    }

    async fn start_node(&mut self, id: NodeId, listener: TcpListener) {
        let state_machine = Arc::new(TestStateMachine::default());
        let quorum = MetadataQuorum::start(self.config(id), state_machine.clone())
            .await
            .unwrap();
        let quorum = Arc::new(quorum);
        let server = tokio::spawn(serve_rpc(listener, quorum.clone()));
        self.nodes.insert(
            id,
            Node {
                quorum,
                state_machine,
                server,
            },
        );
    }

    async fn stop(&mut self, id: NodeId) {
        let node = self.nodes.remove(&id).expect("node is running");
        node.quorum.shutdown().await.unwrap();
        node.server.await.unwrap();
    }

    async fn restart(&mut self, id: NodeId) {
        let listener = TcpListener::bind(self.voters[&id]).await.unwrap();
        self.start_node(id, listener).await;
    }

    fn quorum(&self, id: NodeId) -> &MetadataQuorum {
        &self.nodes[&id].quorum
    }

    fn state_machine(&self, id: NodeId) -> &TestStateMachine {
        &self.nodes[&id].state_machine
    }

    /// Waits until one running node leads and every running node knows it.
    async fn leader(&self) -> NodeId {
        let deadline = Instant::now() + WAIT;
        loop {
            let leaders: Vec<NodeId> = self
                .nodes
                .iter()
                .filter(|(_, node)| node.quorum.is_leader())
                .map(|(id, _)| *id)
                .collect();
            if let [leader] = leaders[..] {
                if self
                    .nodes
                    .values()
                    .all(|node| node.quorum.leader() == Some(leader))
                {
                    return leader;
                }
            }
            assert!(Instant::now() < deadline, "no leader agreed on in time");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn followers(&self, leader: NodeId) -> Vec<NodeId> {
        self.nodes
            .keys()
            .copied()
            .filter(|id| *id != leader)
            .collect()
    }

    /// Proposes on whichever node leads, following NotLeader hints.
    async fn propose(&self, entries: Vec<Vec<u8>>) -> u64 {
        let deadline = Instant::now() + WAIT;
        loop {
            let leader = self.leader().await;
            match self.quorum(leader).propose(entries.clone()).await {
                Ok(index) => return index,
                Err(QuorumError::NotLeader { .. }) => {}
                Err(e) => panic!("propose failed: {e}"),
            }
            assert!(Instant::now() < deadline, "propose did not succeed in time");
        }
    }

    /// Waits until every running node has applied exactly `expected`.
    async fn converged(&self, expected: &[(u64, Vec<u8>)]) {
        let deadline = Instant::now() + WAIT;
        loop {
            if self
                .nodes
                .values()
                .all(|node| node.state_machine.entries() == expected)
            {
                return;
            }
            if Instant::now() > deadline {
                let progress: Vec<String> = self
                    .nodes
                    .iter()
                    .map(|(id, node)| {
                        format!(
                            "node {id}: {} entries, local log {:?}",
                            node.state_machine.entries().len(),
                            node.quorum.local_log()
                        )
                    })
                    .collect();
                panic!(
                    "state machines did not converge on {} entries: {progress:?}",
                    expected.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn shutdown(mut self) {
        for id in self.nodes.keys().copied().collect::<Vec<_>>() {
            self.stop(id).await;
        }
    }
}

fn payload(i: usize) -> Vec<u8> {
    format!("record-{i}").into_bytes()
}

/// Proposes `count` single-entry batches starting at payload `first`, returning what the state
/// machines must hold for them.
async fn propose_many(cluster: &Cluster, first: usize, count: usize) -> Vec<(u64, Vec<u8>)> {
    let mut applied = Vec::new();
    for i in first..first + count {
        let index = cluster.propose(vec![payload(i)]).await;
        applied.push((index, payload(i)));
    }
    applied
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forms_from_empty_directories_and_commits_on_all_voters() {
    let cluster = Cluster::start(10_000).await;
    let leader = cluster.leader().await;

    let last = cluster
        .quorum(leader)
        .propose(vec![payload(0), payload(1), payload(2)])
        .await
        .unwrap();
    // The proposal resolved after being applied on the leader.
    let applied = cluster.state_machine(leader).entries();
    assert_eq!(applied.len(), 3);
    assert_eq!(applied.last().unwrap().0, last);
    assert_eq!(applied[0].0 + 2, last, "one batch gets consecutive indexes");
    cluster.converged(&applied).await;

    let info = cluster.quorum(leader).quorum_info();
    assert_eq!(info.leader_id, Some(leader));
    assert!(info.leader_epoch >= 1);
    assert!(info.high_watermark > last as i64);
    assert!(info.observers.is_empty());
    let voter_ids: Vec<NodeId> = info.voters.iter().map(|v| v.node_id).collect();
    assert_eq!(voter_ids, vec![1, 2, 3]);
    for voter in &info.voters {
        assert!(voter.log_end_offset > 0, "{voter:?}");
        assert!(voter.last_fetch_timestamp_ms > 0, "{voter:?}");
    }
    for follower in cluster.followers(leader) {
        let (hint, term) = *cluster.quorum(follower).subscribe_leader().borrow();
        assert_eq!(hint, Some(leader));
        assert_eq!(term, info.leader_epoch);
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_answers_not_leader_with_the_leader_hint() {
    let cluster = Cluster::start(10_000).await;
    let leader = cluster.leader().await;
    for follower in cluster.followers(leader) {
        let quorum = cluster.quorum(follower);
        assert!(!quorum.is_leader());
        match quorum.propose(vec![payload(0)]).await {
            Err(QuorumError::NotLeader { leader: hint }) => assert_eq!(hint, Some(leader)),
            other => panic!("expected NotLeader, got {other:?}"),
        }
        match quorum.read_barrier().await {
            Err(QuorumError::NotLeader { leader: hint }) => assert_eq!(hint, Some(leader)),
            other => panic!("expected NotLeader, got {other:?}"),
        }
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_barrier_on_the_leader_sees_every_committed_entry() {
    let cluster = Cluster::start(10_000).await;
    let applied = propose_many(&cluster, 0, 5).await;
    let leader = cluster.leader().await;
    cluster.quorum(leader).read_barrier().await.unwrap();
    assert_eq!(cluster.state_machine(leader).entries(), applied);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_leader_is_elected_when_the_leader_stops() {
    let mut cluster = Cluster::start(10_000).await;
    let mut applied = propose_many(&cluster, 0, 3).await;
    let old_leader = cluster.leader().await;
    let old_term = cluster.quorum(old_leader).quorum_info().leader_epoch;

    cluster.stop(old_leader).await;
    let new_leader = cluster.leader().await;
    assert_ne!(new_leader, old_leader);
    assert!(cluster.quorum(new_leader).quorum_info().leader_epoch > old_term);
    applied.extend(propose_many(&cluster, 3, 3).await);
    cluster.converged(&applied).await;

    // The old leader rejoins as a follower and catches up.
    cluster.restart(old_leader).await;
    applied.extend(propose_many(&cluster, 6, 2).await);
    cluster.converged(&applied).await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_recovers_from_disk_and_catches_up() {
    let mut cluster = Cluster::start(10_000).await;
    let mut applied = propose_many(&cluster, 0, 4).await;
    cluster.converged(&applied).await;
    let leader = cluster.leader().await;
    let follower = cluster.followers(leader)[0];

    cluster.stop(follower).await;
    applied.extend(propose_many(&cluster, 4, 4).await);
    cluster.restart(follower).await;
    cluster.converged(&applied).await;

    // A whole-cluster restart: every node rebuilds its state from its own disk alone (no
    // snapshot yet, so by re-applying the committed log), and the quorum goes on.
    for id in [1, 2, 3] {
        cluster.stop(id).await;
    }
    let mut listeners = Vec::new();
    for id in [1, 2, 3] {
        listeners.push((id, TcpListener::bind(cluster.voters[&id]).await.unwrap()));
    }
    for (id, listener) in listeners {
        cluster.start_node(id, listener).await;
        assert!(cluster.state_machine(id).restores().is_empty());
    }
    cluster.converged(&applied).await;
    applied.extend(propose_many(&cluster, 8, 2).await);
    cluster.converged(&applied).await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_purge_the_log_and_reach_a_lagging_node() {
    let mut cluster = Cluster::start(10).await;
    let mut applied = propose_many(&cluster, 0, 2).await;
    cluster.converged(&applied).await;
    let leader = cluster.leader().await;
    let lagging = cluster.followers(leader)[0];
    cluster.stop(lagging).await;

    applied.extend(propose_many(&cluster, 2, 40).await);
    let deadline = Instant::now() + WAIT;
    let leader = cluster.leader().await;
    loop {
        let log = cluster.quorum(leader).local_log();
        if let Some(snapshot_index) = log.snapshot_index {
            if log.log_start_offset > 20 {
                assert!(log.log_start_offset <= snapshot_index as i64 + 1, "{log:?}");
                break;
            }
        }
        assert!(Instant::now() < deadline, "no snapshot and purge: {log:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    cluster.restart(lagging).await;
    cluster.converged(&applied).await;
    let restores = cluster.state_machine(lagging).restores();
    assert!(
        restores.iter().any(|index| *index > 20),
        "the lagging node got no snapshot: {restores:?}"
    );
    let log = cluster.quorum(lagging).local_log();
    assert!(log.snapshot_index.is_some(), "{log:?}");

    // After a restart the node starts from its local snapshot, not from an empty state.
    cluster.stop(lagging).await;
    cluster.restart(lagging).await;
    assert!(!cluster.state_machine(lagging).restores().is_empty());
    applied.extend(propose_many(&cluster, 42, 2).await);
    cluster.converged(&applied).await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_with_one_voter_down_and_not_with_two() {
    let mut cluster = Cluster::start(10_000).await;
    let leader = cluster.leader().await;
    let followers = cluster.followers(leader);

    cluster.stop(followers[0]).await;
    let mut applied = propose_many(&cluster, 0, 3).await;
    cluster.converged(&applied).await;

    let leader = cluster.leader().await;
    let other = cluster.followers(leader)[0];
    cluster.stop(other).await;
    let started = Instant::now();
    match cluster.quorum(leader).propose(vec![payload(3)]).await {
        Err(QuorumError::Unavailable(_)) => {}
        other => panic!("a lone voter answered {other:?}"),
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(REQUEST_TIMEOUT_MS)
            && elapsed < Duration::from_millis(REQUEST_TIMEOUT_MS + 1000),
        "{elapsed:?}"
    );
    match cluster.quorum(leader).read_barrier().await {
        Err(QuorumError::Unavailable(_)) => {}
        other => panic!("a lone voter answered {other:?}"),
    }

    // With a majority back, the quorum commits again (the unacknowledged entry may or may not
    // be among what it commits).
    cluster.restart(other).await;
    let index = cluster.propose(vec![payload(4)]).await;
    let leader = cluster.leader().await;
    cluster.quorum(leader).read_barrier().await.unwrap();
    let entries = cluster.state_machine(leader).entries();
    assert_eq!(entries.last(), Some(&(index, payload(4))));
    applied = entries;
    cluster.converged(&applied).await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_frames_are_answered_without_harm() {
    let cluster = Cluster::start(10_000).await;
    let leader = cluster.leader().await;
    let quorum = cluster.quorum(leader);

    let garbage: [&[u8]; 5] = [
        &[],
        &[0x7f],
        &[0, 18, 0, 0, 0, 0, 0, 1, 0],
        &[0x7f, 0xff, 0, 0, 0, 0, 0, 9, 7],
        &[0x7f, 0xff, 0, 0, 0, 0, 0, 9, 0, 0xff, 0xff, 0xff],
    ];
    for frame in garbage {
        let response = quorum
            .handle_rpc_frame(bytes::Bytes::copy_from_slice(frame))
            .await;
        assert!(response.len() >= 5, "{response:?}");
        assert_eq!(response[4], 1, "error status for {frame:?}");
    }
    let response = quorum
        .handle_rpc_frame(bytes::Bytes::from_static(&[
            0x7f, 0xff, 0, 0, 0, 0, 0, 9, 1, 0xff,
        ]))
        .await;
    assert_eq!(&response[..5], &[0, 0, 0, 9, 1]);

    // Over TCP: a well-formed frame with an undecodable payload gets an error reply on the
    // same connection; an oversized size prefix closes the connection.
    let mut stream = TcpStream::connect(cluster.voters[&leader]).await.unwrap();
    let mut frame = Vec::new();
    frame.extend_from_slice(&10i32.to_be_bytes());
    frame.extend_from_slice(&RAFT_RPC_API_KEY.to_be_bytes());
    frame.extend_from_slice(&[0, 0, 0, 0, 0, 42, 0, 0xff]);
    stream.write_all(&frame).await.unwrap();
    let size = stream.read_i32().await.unwrap();
    let mut body = vec![0; size as usize];
    stream.read_exact(&mut body).await.unwrap();
    assert_eq!(&body[..5], &[0, 0, 0, 42, 1]);
    stream.write_all(&i32::MAX.to_be_bytes()).await.unwrap();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(WAIT, stream.read_to_end(&mut rest)).await;
    assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "{closed:?}");

    // The quorum still works.
    let applied = propose_many(&cluster, 0, 2).await;
    cluster.converged(&applied).await;
    cluster.shutdown().await;
}
