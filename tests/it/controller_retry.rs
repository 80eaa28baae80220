//! A controller decision that commits after its client stopped waiting, retried the way the
//! AdminClient retries CreateTopics: the cluster ends with one topic, every node holds the
//! same image, and replaying the metadata log after a restart rebuilds that image.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::{CreateTopicsRequest, MetadataRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use crate::client::Client;
use crate::harness::Cluster;

/// What every node must agree on: topic name -> (topic id, replicas of each partition).
type TopicsImage = BTreeMap<String, (String, Vec<Vec<i32>>)>;

const TOPIC: &str = "late";
const PARTITIONS: i32 = 3_000;

/// One CreateTopics for `TOPIC`; returns the topic's error code.
fn create(client: &mut Client, timeout_ms: i32) -> i16 {
    let req = CreateTopicsRequest::default()
        .with_topics(vec![CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
            .with_num_partitions(PARTITIONS)
            .with_replication_factor(3)])
        .with_timeout_ms(timeout_ms);
    match client.request(&req, 7) {
        Ok(resp) => resp.topics[0].error_code,
        // The connection broke (the node it went to is paused or lost leadership): the
        // client's retry decides.
        Err(_) => ResponseError::RequestTimedOut.code(),
    }
}

fn topics_image(addr: &str) -> Option<TopicsImage> {
    let mut client = Client::try_connect(addr).ok()?;
    let meta = client
        .request(&MetadataRequest::default().with_topics(None), 12)
        .ok()?;
    Some(
        meta.topics
            .iter()
            .map(|t| {
                let mut partitions: Vec<(i32, Vec<i32>)> = t
                    .partitions
                    .iter()
                    .map(|p| {
                        (
                            p.partition_index,
                            p.replica_nodes.iter().map(|b| b.0).collect(),
                        )
                    })
                    .collect();
                partitions.sort();
                (
                    t.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default(),
                    (
                        t.topic_id.to_string(),
                        partitions.into_iter().map(|(_, r)| r).collect(),
                    ),
                )
            })
            .collect(),
    )
}

/// Waits until every node serves the same topics, each with all its partitions, and returns
/// that image.
fn agreed_image(cluster: &mut Cluster) -> TopicsImage {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let images: Vec<Option<TopicsImage>> = cluster
            .nodes
            .iter()
            .map(|n| topics_image(&n.bootstrap()))
            .collect();
        if let Some(Some(first)) = images.first() {
            let complete = first.get(TOPIC).map(|(_, p)| p.len()) == Some(PARTITIONS as usize);
            if complete && images.iter().all(|i| i.as_ref() == Some(first)) {
                return first.clone();
            }
        }
        assert!(
            Instant::now() < deadline,
            "the nodes do not agree on the topics: {:?}",
            images
                .iter()
                .map(|i| i.as_ref().map(|i| i
                    .iter()
                    .map(|(n, (id, p))| (n.clone(), id.clone(), p.len()))
                    .collect::<Vec<_>>()))
                .collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn active_controller(cluster: &mut Cluster) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        for n in &cluster.nodes {
            if let Ok(mut c) = Client::try_connect(&n.bootstrap()) {
                let req = MetadataRequest::default().with_topics(Some(vec![]));
                if let Ok(meta) = c.request(&req, 12) {
                    if meta.controller_id.0 > 0 {
                        return meta.controller_id.0;
                    }
                }
            }
        }
        assert!(Instant::now() < deadline, "no active controller");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_create_that_commits_after_its_timeout_and_is_retried_makes_one_topic() {
    let mut cluster = Cluster::start(3, &[]);
    let controller = active_controller(&mut cluster);
    let followers: Vec<i32> = (1..=3).filter(|id| *id != controller).collect();
    let mut client = Client::connect(&cluster.node(controller).bootstrap());

    // One follower paused: the decision commits only once the other one has it.
    cluster.node(followers[0]).pause(true);
    // timeout_ms=0: the client does not wait for the commit (Kafka's "do not wait for the
    // topics to be created"), so the decision is proposed and the answer is a timeout.
    let first = create(&mut client, 0);
    // The other follower paused too, before it can acknowledge: the commit waits for them.
    cluster.node(followers[1]).pause(true);
    assert_eq!(
        first,
        ResponseError::RequestTimedOut.code(),
        "a create that does not wait answers REQUEST_TIMED_OUT"
    );

    // The AdminClient retries a timed-out create. While the quorum is paused the retry
    // cannot be decided: it waits for the first decision to resolve, then times out.
    let while_paused = create(&mut client, 2_000);
    println!(
        "retry while the followers were paused: error {while_paused} ({:?})",
        ResponseError::try_from_code(while_paused)
    );
    assert!(
        while_paused == ResponseError::RequestTimedOut.code()
            || while_paused == ResponseError::TopicAlreadyExists.code(),
        "retry while paused: error {while_paused}"
    );
    std::thread::sleep(Duration::from_secs(4));
    for f in &followers {
        cluster.node(*f).pause(false);
    }

    // Retries until the topic is decided. The first proposal commits late, or is lost with
    // an election and the retry creates the topic: either way there is one.
    let deadline = Instant::now() + Duration::from_secs(60);
    let outcome = loop {
        let controller = active_controller(&mut cluster);
        let mut client = Client::connect(&cluster.node(controller).bootstrap());
        let code = create(&mut client, 30_000);
        if code == 0 || code == ResponseError::TopicAlreadyExists.code() {
            break code;
        }
        assert!(
            code == ResponseError::RequestTimedOut.code()
                || code == ResponseError::NotController.code(),
            "retry: error {code}"
        );
        assert!(Instant::now() < deadline, "the create never resolved");
        std::thread::sleep(Duration::from_millis(200));
    };
    println!(
        "final retry: {}",
        if outcome == 0 {
            "created (the first proposal was lost)"
        } else {
            "TOPIC_ALREADY_EXISTS (the first proposal committed late)"
        }
    );

    let image = agreed_image(&mut cluster);
    assert_eq!(image.len(), 1, "one topic: {:?}", image.keys());
    let (topic_id, replicas) = &image[TOPIC];
    assert!(replicas.iter().all(|r| r.len() == 3));
    for n in &cluster.nodes {
        let log = n.log();
        assert!(
            !log.contains("panicked") && !log.contains("conflicting metadata record"),
            "node {} applied a conflicting record",
            n.node_id
        );
    }

    // Every node replays its metadata log from disk and rebuilds the same image.
    for n in cluster.nodes.iter_mut() {
        n.stop();
    }
    for n in cluster.nodes.iter_mut() {
        n.restart();
    }
    cluster.wait_until_serving(3, Duration::from_secs(60));
    let replayed = agreed_image(&mut cluster);
    assert_eq!(&replayed[TOPIC].0, topic_id, "the topic id survives replay");
    assert_eq!(replayed, image, "replay rebuilds the same image");
    println!("one topic {TOPIC} ({topic_id}), {PARTITIONS} partitions, the same on every node before and after replay");
}
