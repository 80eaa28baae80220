//! Fencing a broker that holds 20,000 partition replicas: the controller's decision is larger
//! than one metadata log entry, so it is split into entries that are each correct alone. The
//! broker's leaderships move, it leaves the ISRs, and after a restart it registers again and
//! rejoins them. It holds more segments than its open-files limit allows descriptors, so
//! its least recently used segment files are closed and reopened on use.

use std::time::{Duration, Instant};

use kafka_protocol::messages::create_topics_request::{CreatableReplicaAssignment, CreatableTopic};
use kafka_protocol::messages::{BrokerId, CreateTopicsRequest, MetadataRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use crate::client::Client;
use crate::harness::Cluster;

const TOPICS: i32 = 4;
const PARTITIONS_PER_TOPIC: i32 = 5_000;
const REPLICAS: usize = (TOPICS * PARTITIONS_PER_TOPIC) as usize;
const SESSION_TIMEOUT_MS: u64 = 3_000;

/// Per partition of the cluster's topics: (leader, ISR).
fn partition_states(addr: &str) -> Option<Vec<(i32, Vec<i32>)>> {
    let mut client = Client::try_connect(addr).ok()?;
    let meta = client
        .request(&MetadataRequest::default().with_topics(None), 12)
        .ok()?;
    Some(
        meta.topics
            .iter()
            .flat_map(|t| t.partitions.iter())
            .map(|p| (p.leader_id.0, p.isr_nodes.iter().map(|b| b.0).collect()))
            .collect(),
    )
}

/// Polls `addr` until `done` holds for its partition states; returns the time it took.
fn wait_for(
    addr: &str,
    what: &str,
    timeout: Duration,
    done: impl Fn(&[(i32, Vec<i32>)]) -> bool,
) -> Duration {
    let start = Instant::now();
    let mut last = None;
    loop {
        if let Some(states) = partition_states(addr) {
            if states.len() == REPLICAS && done(&states) {
                return start.elapsed();
            }
            last = Some(states);
        }
        assert!(
            start.elapsed() < timeout,
            "{what}: not within {timeout:?}; last seen: {}",
            match &last {
                None => "no answer".to_string(),
                Some(s) => format!(
                    "{} partitions, {} without a leader, {} with a full ISR",
                    s.len(),
                    s.iter().filter(|(l, _)| *l < 0).count(),
                    s.iter().filter(|(_, isr)| isr.len() == 2).count()
                ),
            }
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn open_files(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn fencing_a_broker_with_20000_replicas_moves_its_leaderships() {
    let session = SESSION_TIMEOUT_MS.to_string();
    let mut cluster = Cluster::start(3, &[("broker.session.timeout.ms", &session)]);
    let addr = |c: &Cluster, id: i32| c.nodes[id as usize - 1].bootstrap();
    let mut client = Client::connect(&addr(&cluster, 1));
    let meta = client
        .request(&MetadataRequest::default().with_topics(Some(vec![])), 12)
        .unwrap();
    // The fenced broker is not the active controller, which makes the decision.
    let controller = meta.controller_id.0;
    let fenced = if controller == 1 { 2 } else { 1 };
    let others: Vec<i32> = (1..=3).filter(|id| *id != fenced).collect();
    let observer = addr(&cluster, controller);

    // Every partition has a replica on `fenced`, which leads half of them.
    let start = Instant::now();
    let mut client = Client::connect(&observer);
    for t in 0..TOPICS {
        let assignments = (0..PARTITIONS_PER_TOPIC)
            .map(|p| {
                let other = others[(p % 2) as usize];
                let replicas = if p % 4 < 2 {
                    [fenced, other]
                } else {
                    [other, fenced]
                };
                CreatableReplicaAssignment::default()
                    .with_partition_index(p)
                    .with_broker_ids(replicas.iter().map(|b| BrokerId(*b)).collect())
            })
            .collect();
        let req = CreateTopicsRequest::default()
            .with_topics(vec![CreatableTopic::default()
                .with_name(TopicName(StrBytes::from_string(format!("wide-{t}"))))
                .with_num_partitions(-1)
                .with_replication_factor(-1)
                .with_assignments(assignments)])
            .with_timeout_ms(30_000);
        // Retried as the AdminClient retries: a timeout may come before the decision (the
        // previous create still applying) or after it (then the retry finds the topic).
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let code = client.request(&req, 7).unwrap().topics[0].error_code;
            if code == 0 || code == ResponseError::TopicAlreadyExists.code() {
                break;
            }
            assert_eq!(
                code,
                ResponseError::RequestTimedOut.code(),
                "create wide-{t}: error {code}"
            );
            assert!(Instant::now() < deadline, "create wide-{t} never resolved");
        }
    }
    wait_for(
        &observer,
        "every partition led, ISR full",
        Duration::from_secs(300),
        |s| s.iter().all(|(leader, isr)| *leader >= 0 && isr.len() == 2),
    );
    let led = |s: &[(i32, Vec<i32>)]| s.iter().filter(|(l, _)| *l == fenced).count();
    let states = partition_states(&observer).unwrap();
    let (_, hard_limit) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap();
    let fds = open_files(cluster.nodes[fenced as usize - 1].pid().unwrap());
    println!(
        "{REPLICAS} replicas on broker {fenced}, {} led by it, created in {:.1} s; it has {fds} files open (limit {hard_limit})",
        led(&states),
        start.elapsed().as_secs_f64()
    );
    assert!((fds as u64) < hard_limit, "{fds} open files");
    assert!(
        led(&states) >= REPLICAS / 4,
        "broker {fenced} leads too few"
    );

    // kill -9: its session expires and the controller fences it.
    cluster.nodes[fenced as usize - 1].kill();
    let moved = wait_for(
        &observer,
        "leaderships moved",
        Duration::from_secs(120),
        |s| {
            s.iter()
                .all(|(leader, isr)| *leader != fenced && *leader >= 0 && !isr.contains(&fenced))
        },
    );
    println!(
        "fenced broker {fenced}: {REPLICAS} replicas out of their ISRs and its leaderships moved {:.2} s after the kill ({:.2} s after its {SESSION_TIMEOUT_MS} ms session timeout)",
        moved.as_secs_f64(),
        moved.as_secs_f64() - SESSION_TIMEOUT_MS as f64 / 1000.0
    );

    // It registers again, is unfenced, catches up and rejoins every ISR.
    cluster.nodes[fenced as usize - 1].restart();
    let rejoined = wait_for(&observer, "ISRs rejoined", Duration::from_secs(300), |s| {
        s.iter().all(|(_, isr)| isr.contains(&fenced))
    });
    println!(
        "broker {fenced} re-registered and rejoined {REPLICAS} ISRs in {:.1} s",
        rejoined.as_secs_f64()
    );
    for n in cluster.nodes.iter_mut() {
        assert!(n.is_running(), "node {} died", n.node_id);
    }
}
