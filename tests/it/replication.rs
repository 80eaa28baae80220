//! Partition replication by follower fetch on a three-node cluster: acks=all waits for the
//! ISR, followers hold byte-identical copies, and a new leader has every acknowledged record.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::records::Compression;

use crate::client::Client;
use crate::cluster::{create_topic, leaders, wait_for};
use crate::harness::Cluster;

fn segment_bytes(cluster: &Cluster, node: i32, dir: &str) -> Vec<u8> {
    let n = cluster.nodes.iter().find(|n| n.node_id == node).unwrap();
    std::fs::read(n.data_dir().join(dir).join("00000000000000000000.log")).unwrap_or_default()
}

#[test]
fn acks_all_replicates_to_every_follower_and_survives_leader_loss() {
    let mut cluster = Cluster::start(3, &[("min.insync.replicas", "2")]);
    assert_eq!(create_topic(&cluster.nodes[0], "replicated", 1, 3), 0);
    let (leader, _, isr) = wait_for("a leader", Duration::from_secs(10), || {
        leaders(&cluster.nodes[0], "replicated")
            .get(&0)
            .cloned()
            .filter(|(l, _, _)| *l > 0)
    });
    assert_eq!(isr.len(), 3);
    let mut c = Client::connect(&cluster.node(leader).bootstrap());
    wait_for("the leader to take writes", Duration::from_secs(10), || {
        let (err, _, _) = c.fetch("replicated", 0, 0, 0).ok()?;
        (err == 0).then_some(())
    });
    let mut acked = Vec::new();
    for i in 0..200 {
        let values: Vec<Bytes> = (0..5)
            .map(|j| Bytes::from(format!("record-{i}-{j}")))
            .collect();
        let (err, base) = c
            .produce("replicated", 0, &values, -1, Compression::None)
            .unwrap();
        assert_eq!(err, 0, "acks=all produce {i}");
        for (j, v) in values.into_iter().enumerate() {
            acked.push((base + j as i64, v));
        }
    }
    // The leader's log is readable up to the HW, which covers every acknowledged record.
    let log = c.read_all("replicated", 0, 0);
    assert_eq!(log, acked);
    // All three replicas converge on byte-identical logs.
    let reference = segment_bytes(&cluster, leader, "replicated-0");
    assert!(!reference.is_empty());
    for node in 1..=3 {
        wait_for(
            &format!("replica on node {node}"),
            Duration::from_secs(10),
            || (segment_bytes(&cluster, node, "replicated-0") == reference).then_some(()),
        );
    }

    // Kill the leader: a former ISR follower leads and has every acknowledged record.
    cluster.node(leader).kill();
    let observer = (1..=3).find(|b| *b != leader).unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let new_leader = loop {
        if let Some((l, _, _)) = leaders(cluster.node(observer), "replicated")
            .get(&0)
            .cloned()
        {
            if l > 0 && l != leader {
                break l;
            }
        }
        assert!(Instant::now() < deadline, "no new leader");
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut c = Client::connect(&cluster.node(new_leader).bootstrap());
    // The observed log end never goes back: until the new leader's HW reaches its epoch's
    // start it answers OFFSET_NOT_AVAILABLE (78), never a smaller offset.
    let latest = wait_for(
        "ListOffsets(latest) on the new leader",
        Duration::from_secs(10),
        || {
            let (err, offset) = c.list_offset("replicated", 0, -1);
            assert!(err == 0 || err == 78 || err == 6, "ListOffsets error {err}");
            (err == 0).then_some(offset)
        },
    );
    assert!(
        latest >= acked.len() as i64,
        "latest offset {latest} went back below {}",
        acked.len()
    );
    let log = wait_for(
        "the new leader to expose its HW",
        Duration::from_secs(10),
        || {
            let (err, hw, _) = c.fetch("replicated", 0, 0, 0).ok()?;
            (err == 0 && hw >= acked.len() as i64).then(|| c.read_all("replicated", 0, 0))
        },
    );
    assert_eq!(
        &log[..acked.len()],
        &acked[..],
        "every acknowledged record at its offset on the new leader"
    );
    // Writes continue on the two remaining replicas (min.insync.replicas=2).
    let (err, base) = c
        .produce(
            "replicated",
            0,
            &[Bytes::from_static(b"after")],
            -1,
            Compression::None,
        )
        .unwrap();
    assert_eq!((err, base), (0, acked.len() as i64));
}

#[test]
fn stopped_follower_leaves_the_isr_and_rejoins_after_sigcont() {
    // Sessions outlast the test's pauses, so only the ISR lag (1.5 s) acts, not fencing.
    // Five nodes, so that two stopped followers still leave a metadata quorum (three of five
    // voters) to commit the ISR changes.
    let mut cluster = Cluster::start(
        5,
        &[
            ("min.insync.replicas", "2"),
            ("replica.lag.time.max.ms", "1500"),
            ("broker.session.timeout.ms", "30000"),
        ],
    );
    assert_eq!(create_topic(&cluster.nodes[0], "isr", 1, 3), 0);
    let (leader, _, _) = wait_for("a leader", Duration::from_secs(10), || {
        leaders(&cluster.nodes[0], "isr")
            .get(&0)
            .cloned()
            .filter(|(l, _, _)| *l > 0)
    });
    let (_, _, replicas) = leaders(&cluster.nodes[0], "isr")[&0].clone();
    let followers: Vec<i32> = replicas.iter().copied().filter(|b| *b != leader).collect();
    assert_eq!(followers.len(), 2);
    let mut c = Client::connect(&cluster.node(leader).bootstrap());
    // The leader itself may apply its leadership a moment after another node shows it.
    wait_for("the leader to take writes", Duration::from_secs(10), || {
        let (err, _) = c
            .produce("isr", 0, &[Bytes::from_static(b"a")], -1, Compression::None)
            .ok()?;
        (err == 0).then_some(())
    });

    // One follower stopped: it leaves the ISR after replica.lag.time.max.ms; acks=all goes on.
    cluster.node(followers[0]).pause(true);
    let stopped_at = Instant::now();
    wait_for(
        "the stopped follower to leave the ISR",
        Duration::from_secs(15),
        || {
            let (_, _, isr) = leaders(cluster.node(leader), "isr").get(&0).cloned()?;
            (!isr.contains(&followers[0])).then_some(())
        },
    );
    println!(
        "follower {} left the ISR {} ms after SIGSTOP",
        followers[0],
        stopped_at.elapsed().as_millis()
    );
    let (err, _) = c
        .produce("isr", 0, &[Bytes::from_static(b"b")], -1, Compression::None)
        .unwrap();
    assert_eq!(err, 0, "acks=all with two in-sync replicas");

    // Two followers stopped: acks=all is refused with NOT_ENOUGH_REPLICAS, acks=1 works.
    cluster.node(followers[1]).pause(true);
    wait_for(
        "the ISR to shrink to the leader",
        Duration::from_secs(15),
        || {
            let (_, _, isr) = leaders(cluster.node(leader), "isr").get(&0).cloned()?;
            (isr == vec![leader]).then_some(())
        },
    );
    let (err, _) = c
        .produce("isr", 0, &[Bytes::from_static(b"c")], -1, Compression::None)
        .unwrap();
    assert_eq!(err, 19, "NOT_ENOUGH_REPLICAS");
    let (err, _) = c
        .produce("isr", 0, &[Bytes::from_static(b"d")], 1, Compression::None)
        .unwrap();
    assert_eq!(err, 0, "acks=1 still works");

    // SIGCONT: both catch up and rejoin the ISR.
    cluster.node(followers[0]).pause(false);
    cluster.node(followers[1]).pause(false);
    wait_for(
        "the followers to rejoin the ISR",
        Duration::from_secs(15),
        || {
            let (_, _, isr) = leaders(cluster.node(leader), "isr").get(&0).cloned()?;
            (isr.len() == 3).then_some(())
        },
    );
    let (err, _) = c
        .produce("isr", 0, &[Bytes::from_static(b"e")], -1, Compression::None)
        .unwrap();
    assert_eq!(err, 0, "acks=all again once the ISR is back");
}

#[test]
fn restarted_leader_truncates_its_diverged_tail_to_the_new_leaders_log() {
    let mut cluster = Cluster::start(
        3,
        &[
            ("broker.session.timeout.ms", "4000"),
            ("replica.lag.time.max.ms", "30000"),
        ],
    );
    assert_eq!(create_topic(&cluster.nodes[0], "diverge", 1, 3), 0);
    let (old_leader, _, _) = wait_for("a leader", Duration::from_secs(10), || {
        leaders(&cluster.nodes[0], "diverge")
            .get(&0)
            .cloned()
            .filter(|(l, _, _)| *l > 0)
    });
    let followers: Vec<i32> = (1..=3).filter(|b| *b != old_leader).collect();
    let mut c = Client::connect(&cluster.node(old_leader).bootstrap());
    wait_for("the leader to take writes", Duration::from_secs(10), || {
        let (err, _) = c
            .produce(
                "diverge",
                0,
                &[Bytes::from_static(b"committed-0")],
                -1,
                Compression::None,
            )
            .ok()?;
        (err == 0).then_some(())
    });
    for i in 1..10 {
        let (err, _) = c
            .produce(
                "diverge",
                0,
                &[Bytes::from(format!("committed-{i}"))],
                -1,
                Compression::None,
            )
            .unwrap();
        assert_eq!(err, 0);
    }
    // The followers stop; the leader takes five acks=1 writes only it will ever hold.
    for f in &followers {
        cluster.node(*f).pause(true);
    }
    for i in 0..5 {
        let (err, _) = c
            .produce(
                "diverge",
                0,
                &[Bytes::from(format!("lost-{i}"))],
                1,
                Compression::None,
            )
            .unwrap();
        assert_eq!(err, 0);
    }
    cluster.node(old_leader).kill();
    for f in &followers {
        cluster.node(*f).pause(false);
    }
    // A follower becomes leader in a new epoch and takes new writes at offsets 10..13.
    let new_leader = wait_for("a new leader", Duration::from_secs(20), || {
        leaders(cluster.node(followers[0]), "diverge")
            .get(&0)
            .map(|(l, _, _)| *l)
            .filter(|l| *l > 0 && *l != old_leader)
    });
    let mut c = Client::connect(&cluster.node(new_leader).bootstrap());
    let first = wait_for(
        "the new leader to take writes",
        Duration::from_secs(10),
        || {
            let (err, base) = c
                .produce(
                    "diverge",
                    0,
                    &[Bytes::from_static(b"new-0")],
                    -1,
                    Compression::None,
                )
                .ok()?;
            (err == 0).then_some(base)
        },
    );
    // A write appended but not yet confirmed when it was retried is there twice (at least
    // once), so `first` may be past 10; what matters is below.
    assert!(
        first >= 10,
        "the new leader's log continues after the committed records"
    );
    for i in 1..3 {
        let (err, _) = c
            .produce(
                "diverge",
                0,
                &[Bytes::from(format!("new-{i}"))],
                -1,
                Compression::None,
            )
            .unwrap();
        assert_eq!(err, 0);
    }
    // The old leader returns as a follower: it finds the divergence at offset 10 (end of epoch
    // 0 on the new leader), drops its five unreplicated records and copies the new ones.
    cluster.node(old_leader).restart();
    let reference = segment_bytes(&cluster, new_leader, "diverge-0");
    wait_for(
        "the old leader to converge",
        Duration::from_secs(20),
        || (segment_bytes(&cluster, old_leader, "diverge-0") == reference).then_some(()),
    );
    let log = c.read_all("diverge", 0, 0);
    let values: Vec<String> = log
        .iter()
        .map(|(_, v)| String::from_utf8_lossy(v).to_string())
        .collect();
    for (i, v) in values.iter().enumerate().take(10) {
        assert_eq!(
            v,
            &format!("committed-{i}"),
            "committed records keep their offsets"
        );
    }
    // Records written with acks=1 survive only where a follower fetched them before it
    // stopped (a long poll in flight may carry the first one); the rest existed only on the
    // old leader, which must have cut them off to match the new leader byte for byte.
    assert!(
        values[10..].iter().any(|v| v.starts_with("new-")),
        "{values:?}"
    );
    assert!(
        cluster
            .node(old_leader)
            .log()
            .contains("truncating diverged log"),
        "the old leader truncated its diverged tail"
    );
}

/// Partition -> leader of a topic as `node` sees it (-1: offline).
fn leader_of(node: &crate::harness::Node, topic: &str) -> Option<i32> {
    leaders(node, topic).get(&0).map(|(l, _, _)| *l)
}

#[test]
fn unclean_election_waits_by_default_and_loses_data_when_enabled() {
    let mut cluster = Cluster::start(3, &[("replica.lag.time.max.ms", "1500")]);
    // Two replicas: the leader and one follower.
    let mut admin = Client::connect(&cluster.nodes[0].bootstrap());
    let req = kafka_protocol::messages::CreateTopicsRequest::default()
        .with_timeout_ms(5_000)
        .with_topics(vec![
            kafka_protocol::messages::create_topics_request::CreatableTopic::default()
                .with_name(kafka_protocol::messages::TopicName(
                    kafka_protocol::protocol::StrBytes::from_static_str("unclean"),
                ))
                .with_num_partitions(1)
                .with_replication_factor(2),
        ]);
    assert_eq!(admin.request(&req, 7).unwrap().topics[0].error_code, 0);
    let (leader, _, replicas) = wait_for("a leader", Duration::from_secs(10), || {
        leaders(&cluster.nodes[0], "unclean")
            .get(&0)
            .cloned()
            .filter(|(l, _, isr)| *l > 0 && isr.len() == 2)
    });
    let follower = *replicas.iter().find(|r| **r != leader).unwrap();
    let bystander = (1..=3).find(|b| *b != leader && *b != follower).unwrap();
    let mut c = Client::connect(&cluster.node(leader).bootstrap());
    wait_for("the leader to take writes", Duration::from_secs(10), || {
        let (err, _) = c
            .produce(
                "unclean",
                0,
                &[Bytes::from_static(b"both-have-it")],
                -1,
                Compression::None,
            )
            .ok()?;
        (err == 0).then_some(())
    });
    // The follower dies; the ISR shrinks to the leader, which takes writes only it holds.
    cluster.node(follower).kill();
    wait_for(
        "the ISR to shrink to the leader",
        Duration::from_secs(15),
        || {
            let (_, _, isr) = leaders(cluster.node(bystander), "unclean")
                .get(&0)
                .cloned()?;
            (isr == vec![leader]).then_some(())
        },
    );
    for i in 0..5 {
        let (err, _) = c
            .produce(
                "unclean",
                0,
                &[Bytes::from(format!("only-on-leader-{i}"))],
                1,
                Compression::None,
            )
            .unwrap();
        assert_eq!(err, 0);
    }
    let (_, leader_end) = c.list_offset("unclean", 0, -1);
    assert_eq!(leader_end, 6);
    // The leader dies too; the out-of-sync follower comes back.
    cluster.node(leader).kill();
    cluster.node(follower).restart();
    cluster
        .node(follower)
        .wait_until_serving(2, Duration::from_secs(30));
    // Default (unclean.leader.election.enable=false): once the dead leader is fenced the
    // partition has no leader, and stays so: no loss, it waits for the old leader.
    wait_for(
        "the dead leader to be fenced",
        Duration::from_secs(15),
        || (leader_of(cluster.node(bystander), "unclean") == Some(-1)).then_some(()),
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        leader_of(cluster.node(bystander), "unclean"),
        Some(-1),
        "the partition stays offline"
    );
    let unavailable = crate::harness::kafka_ok(
        "topics",
        &[
            "--bootstrap-server",
            &cluster.node(bystander).bootstrap(),
            "--describe",
            "--unavailable-partitions",
        ],
    );
    assert!(
        unavailable.contains("Topic: unclean\tPartition: 0"),
        "kafka-topics --unavailable-partitions lists it:\n{unavailable}"
    );
    // The operator accepts the loss: the out-of-sync replica leads, without what it lacked.
    crate::harness::kafka_ok(
        "configs",
        &[
            "--bootstrap-server",
            &cluster.node(bystander).bootstrap(),
            "--entity-type",
            "topics",
            "--entity-name",
            "unclean",
            "--alter",
            "--add-config",
            "unclean.leader.election.enable=true",
        ],
    );
    let new_leader = wait_for("an unclean leader", Duration::from_secs(15), || {
        leader_of(cluster.node(bystander), "unclean").filter(|l| *l > 0)
    });
    assert_eq!(new_leader, follower);
    let mut c = Client::connect(&cluster.node(follower).bootstrap());
    let log = wait_for("the new leader's log", Duration::from_secs(10), || {
        let (err, hw, _) = c.fetch("unclean", 0, 0, 0).ok()?;
        (err == 0 && hw >= 1).then(|| c.read_all("unclean", 0, 0))
    });
    let values: Vec<String> = log
        .iter()
        .map(|(_, v)| String::from_utf8_lossy(v).to_string())
        .collect();
    assert_eq!(
        values,
        vec!["both-have-it".to_string()],
        "the five records only the old leader held are lost"
    );
}

/// Kills the preferred leader of partition 0 of `topic`, waits for leadership to move, then
/// brings it back and waits until it is in the ISR again. Returns its id.
fn bounce_preferred_leader(cluster: &mut Cluster, topic: &str) -> i32 {
    let (preferred, _, _) = wait_for("a leader", Duration::from_secs(10), || {
        leaders(&cluster.nodes[0], topic)
            .get(&0)
            .cloned()
            .filter(|(l, _, isr)| *l > 0 && isr.len() == 3)
    });
    let observer = (1..=3).find(|b| *b != preferred).unwrap();
    cluster.node(preferred).kill();
    wait_for("leadership to move", Duration::from_secs(30), || {
        leaders(cluster.node(observer), topic)
            .get(&0)
            .filter(|(l, _, _)| *l > 0 && *l != preferred)
            .map(|_| ())
    });
    cluster.node(preferred).restart();
    cluster
        .node(preferred)
        .wait_until_serving(3, Duration::from_secs(30));
    wait_for(
        "the returned broker to rejoin the ISR",
        Duration::from_secs(120),
        || {
            let (_, _, isr) = leaders(cluster.node(observer), topic).get(&0).cloned()?;
            isr.contains(&preferred).then_some(())
        },
    );
    preferred
}

#[test]
fn kafka_leader_election_restores_the_preferred_leader() {
    let mut cluster = Cluster::start(
        3,
        &[
            ("auto.leader.rebalance.enable", "false"),
            ("replica.lag.time.max.ms", "2000"),
        ],
    );
    assert_eq!(create_topic(&cluster.nodes[0], "prefer", 1, 3), 0);
    let preferred = bounce_preferred_leader(&mut cluster, "prefer");
    let observer = (1..=3).find(|b| *b != preferred).unwrap();
    assert_ne!(
        leaders(cluster.node(observer), "prefer")[&0].0,
        preferred,
        "no automatic move back"
    );
    let out = crate::harness::kafka_ok(
        "leader-election",
        &[
            "--bootstrap-server",
            &cluster.node(observer).bootstrap(),
            "--election-type",
            "PREFERRED",
            "--all-topic-partitions",
        ],
    );
    assert!(
        out.contains("Successfully completed leader election (PREFERRED) for partitions prefer-0"),
        "{out}"
    );
    wait_for(
        "the preferred leader to lead",
        Duration::from_secs(10),
        || (leaders(cluster.node(observer), "prefer")[&0].0 == preferred).then_some(()),
    );
}

#[test]
fn auto_leader_rebalance_restores_the_preferred_leader() {
    let mut cluster = Cluster::start(
        3,
        &[
            ("leader.imbalance.check.interval.seconds", "1"),
            ("replica.lag.time.max.ms", "2000"),
        ],
    );
    assert_eq!(create_topic(&cluster.nodes[0], "rebalance", 1, 3), 0);
    let preferred = bounce_preferred_leader(&mut cluster, "rebalance");
    let observer = (1..=3).find(|b| *b != preferred).unwrap();
    wait_for(
        "auto rebalance to restore the preferred leader",
        Duration::from_secs(15),
        || (leaders(cluster.node(observer), "rebalance")[&0].0 == preferred).then_some(()),
    );
}

#[test]
fn no_acknowledged_write_is_lost_while_leaders_are_killed_in_turn() {
    let mut cluster = Cluster::start(
        3,
        &[
            ("min.insync.replicas", "2"),
            ("replica.lag.time.max.ms", "2000"),
        ],
    );
    assert_eq!(create_topic(&cluster.nodes[0], "steady", 3, 3), 0);
    for p in 0..3 {
        wait_for("leaders", Duration::from_secs(10), || {
            leaders(&cluster.nodes[0], "steady")
                .get(&p)
                .filter(|(l, _, isr)| *l > 0 && isr.len() == 3)
                .map(|_| ())
        });
    }
    // The stock Java producer (idempotent, acks=all, retrying) reports every acknowledged
    // record with its partition and offset.
    let bootstrap = cluster
        .nodes
        .iter()
        .map(|n| n.bootstrap())
        .collect::<Vec<_>>()
        .join(",");
    let mut producer = std::process::Command::new(crate::harness::repo_root().join("bin/kafka"))
        .args([
            "verifiable-producer",
            "--bootstrap-server",
            &bootstrap,
            "--topic",
            "steady",
            "--max-messages",
            "6000",
            "--throughput",
            "300",
            "--acks",
            "-1",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = producer.stdout.take().unwrap();
    let reader = std::thread::spawn(move || std::io::read_to_string(stdout).unwrap());
    // Kill the leader of each partition in turn, and bring it back.
    for p in 0..3 {
        std::thread::sleep(Duration::from_secs(2));
        let (leader, _, _) = wait_for("a leader", Duration::from_secs(120), || {
            leaders(
                cluster.nodes.iter().find(|n| n.is_alive()).unwrap(),
                "steady",
            )
            .get(&p)
            .cloned()
            .filter(|(l, _, _)| *l > 0)
        });
        cluster.node(leader).kill();
        std::thread::sleep(Duration::from_secs(4));
        cluster.node(leader).restart();
        cluster
            .node(leader)
            .wait_until_serving(3, Duration::from_secs(30));
    }
    let status = producer.wait().unwrap();
    let output = reader.join().unwrap();
    assert!(status.success(), "verifiable producer failed");
    // Every acknowledged record: (partition, offset) -> value.
    let mut acked: BTreeMap<(i32, i64), String> = BTreeMap::new();
    for line in output
        .lines()
        .filter(|l| l.contains("\"producer_send_success\""))
    {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        acked.insert(
            (
                v["partition"].as_i64().unwrap() as i32,
                v["offset"].as_i64().unwrap(),
            ),
            v["value"].as_str().unwrap().to_string(),
        );
    }
    assert!(
        acked.len() > 1000,
        "only {} records acknowledged",
        acked.len()
    );
    // Every record is readable at its acknowledged offset, offsets are dense, no value twice.
    let mut seen = std::collections::HashSet::new();
    for p in 0..3 {
        let (leader, _, _) = wait_for("a leader", Duration::from_secs(120), || {
            leaders(&cluster.nodes[0], "steady")
                .get(&p)
                .cloned()
                .filter(|(l, _, isr)| *l > 0 && isr.len() == 3)
        });
        let mut c = Client::connect(&cluster.node(leader).bootstrap());
        let log = c.read_all("steady", p, 0);
        for (i, (offset, value)) in log.iter().enumerate() {
            assert_eq!(*offset, i as i64, "partition {p}: offsets are dense");
            assert!(
                seen.insert(value.clone()),
                "partition {p}: value {value:?} written twice"
            );
        }
        for ((ap, offset), value) in acked.range((p, 0)..(p + 1, 0)) {
            assert_eq!(
                log.get(*offset as usize)
                    .map(|(_, v)| String::from_utf8_lossy(v).to_string())
                    .as_deref(),
                Some(value.as_str()),
                "partition {ap}: acknowledged offset {offset}"
            );
        }
        // All three replicas hold byte-identical logs.
        let dir = format!("steady-{p}");
        let reference = segment_bytes(&cluster, leader, &dir);
        for node in 1..=3 {
            wait_for(
                &format!("partition {p} on node {node}"),
                Duration::from_secs(120),
                || (segment_bytes(&cluster, node, &dir) == reference).then_some(()),
            );
        }
    }
}
