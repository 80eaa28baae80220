//! Nemeses: the faults injected while the workload runs. Every `interval` one fault starts,
//! and one `interval` later it is healed; each start and heal is an `info` event of process
//! `nemesis` in the history, with its time.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde_json::json;

use crate::db::Cluster;
use crate::history::{EventType, HistoryWriter, Process};
use crate::net;

/// One kind of fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// kill -9 one random node, restarted at the heal.
    KillOne,
    /// kill -9 the leader of a random partition of the workload (or the active controller).
    KillLeader,
    /// kill -9 every node at once.
    KillAll,
    /// SIGSTOP one random node, SIGCONT at the heal.
    PauseOne,
    /// SIGSTOP the leader of a random partition (or the active controller).
    PauseLeader,
    /// Cut one random node off from the others (a minority of one; the rest is a majority).
    PartitionOne,
    /// Cut a partition leader (or the active controller) off from the others.
    PartitionLeader,
    /// Majorities ring: every node still sees a majority, but no two see the same one. With
    /// three nodes that is one cut link: a and c each see b, b sees both.
    PartitionRing,
}

impl Fault {
    pub const ALL: [Fault; 8] = [
        Fault::KillOne,
        Fault::KillLeader,
        Fault::KillAll,
        Fault::PauseOne,
        Fault::PauseLeader,
        Fault::PartitionOne,
        Fault::PartitionLeader,
        Fault::PartitionRing,
    ];

    /// Whether the fault cuts network links (and its heal restores them).
    pub fn cuts_links(self) -> bool {
        matches!(
            self,
            Fault::PartitionOne | Fault::PartitionLeader | Fault::PartitionRing
        )
    }

    pub fn name(self) -> &'static str {
        match self {
            Fault::KillOne => "kill-one",
            Fault::KillLeader => "kill-leader",
            Fault::KillAll => "kill-all",
            Fault::PauseOne => "pause-one",
            Fault::PauseLeader => "pause-leader",
            Fault::PartitionOne => "partition-one",
            Fault::PartitionLeader => "partition-leader",
            Fault::PartitionRing => "partition-ring",
        }
    }
}

/// Parses a comma-separated list of faults or families: `none`, `kill` (one, leader, all),
/// `pause` (one, leader), `partition` (one, leader, ring), `all`, or single fault names.
pub fn parse_faults(spec: &str) -> Result<Vec<Fault>> {
    let mut out = Vec::new();
    for word in spec.split(',').map(str::trim).filter(|w| !w.is_empty()) {
        let family: Vec<Fault> = match word {
            "none" => vec![],
            "all" => Fault::ALL.to_vec(),
            "kill" => vec![Fault::KillOne, Fault::KillLeader, Fault::KillAll],
            "pause" => vec![Fault::PauseOne, Fault::PauseLeader],
            "partition" => vec![
                Fault::PartitionOne,
                Fault::PartitionLeader,
                Fault::PartitionRing,
            ],
            name => match Fault::ALL.iter().find(|f| f.name() == name) {
                Some(f) => vec![*f],
                None => bail!("unknown nemesis {name:?}"),
            },
        };
        for f in family {
            if !out.contains(&f) {
                out.push(f);
            }
        }
    }
    Ok(out)
}

/// Who leads what, as the cluster's metadata says.
pub trait LeaderLookup: Send {
    /// Leader node ids worth hitting: partition leaders of the workload and the active controller.
    fn leaders(&self, cluster: &Mutex<Cluster>) -> Vec<i32>;
}

pub struct Nemesis {
    pub cluster: Arc<Mutex<Cluster>>,
    pub history: Arc<HistoryWriter>,
    pub faults: Vec<Fault>,
    pub interval: Duration,
    pub rng: StdRng,
    pub leaders: Box<dyn LeaderLookup>,
}

/// What the nemesis did, for the summary.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct NemesisStats {
    pub faults: usize,
    pub by_kind: std::collections::BTreeMap<String, usize>,
}

impl Nemesis {
    /// Injects and heals faults until `until`; everything is healed when it returns.
    pub fn run(&mut self, until: Instant, stop: &std::sync::atomic::AtomicBool) -> NemesisStats {
        let mut stats = NemesisStats::default();
        if self.faults.is_empty() {
            return stats;
        }
        loop {
            if !sleep_until(Instant::now() + self.interval, until, stop) {
                break;
            }
            let fault = *self.faults.choose(&mut self.rng).expect("faults");
            match self.inject(fault) {
                Ok(()) => {
                    stats.faults += 1;
                    *stats.by_kind.entry(fault.name().into()).or_default() += 1;
                }
                Err(e) => self.note("error", json!(format!("{}: {e:#}", fault.name()))),
            }
            sleep_until(Instant::now() + self.interval, until, stop);
            self.heal(fault.cuts_links());
            if Instant::now() >= until || stop.load(std::sync::atomic::Ordering::Relaxed) {
                break;
            }
        }
        stats
    }

    fn note(&self, f: &str, value: serde_json::Value) {
        self.history
            .record(EventType::Info, Process::Nemesis, f, value, None);
    }

    fn target(&mut self, leader: bool) -> i32 {
        let ids: Vec<i32> = if leader {
            self.leaders.leaders(&self.cluster)
        } else {
            vec![]
        };
        let ids = if ids.is_empty() {
            self.cluster
                .lock()
                .unwrap()
                .nodes
                .iter()
                .map(|n| n.id)
                .collect()
        } else {
            ids
        };
        *ids.choose(&mut self.rng).expect("nodes")
    }

    fn inject(&mut self, fault: Fault) -> Result<()> {
        match fault {
            Fault::KillOne | Fault::KillLeader => {
                let id = self.target(fault == Fault::KillLeader);
                self.cluster.lock().unwrap().kill(id);
                self.note("kill", json!({"fault": fault.name(), "nodes": [id]}));
            }
            Fault::KillAll => {
                let mut c = self.cluster.lock().unwrap();
                let ids: Vec<i32> = c.nodes.iter().map(|n| n.id).collect();
                for id in &ids {
                    c.kill(*id);
                }
                drop(c);
                self.note("kill", json!({"fault": fault.name(), "nodes": ids}));
            }
            Fault::PauseOne | Fault::PauseLeader => {
                let id = self.target(fault == Fault::PauseLeader);
                self.cluster.lock().unwrap().pause(id);
                self.note("pause", json!({"fault": fault.name(), "nodes": [id]}));
            }
            Fault::PartitionOne | Fault::PartitionLeader => {
                let id = self.target(fault == Fault::PartitionLeader);
                let c = self.cluster.lock().unwrap();
                let alone: Vec<String> = c
                    .nodes
                    .iter()
                    .filter(|n| n.id == id)
                    .map(|n| n.host.clone())
                    .collect();
                let rest: Vec<String> = c
                    .nodes
                    .iter()
                    .filter(|n| n.id != id)
                    .map(|n| n.host.clone())
                    .collect();
                drop(c);
                net::partition(&alone, &rest)?;
                self.note(
                    "partition",
                    json!({"fault": fault.name(), "isolated": [id]}),
                );
            }
            Fault::PartitionRing => {
                let mut ids: Vec<i32> = self
                    .cluster
                    .lock()
                    .unwrap()
                    .nodes
                    .iter()
                    .map(|n| n.id)
                    .collect();
                ids.shuffle(&mut self.rng);
                let cuts = ring_cuts(&ids);
                let c = self.cluster.lock().unwrap();
                let host = |id: i32| c.nodes.iter().find(|n| n.id == id).unwrap().host.clone();
                for (a, b) in &cuts {
                    net::cut(&host(*a), &host(*b))?;
                }
                drop(c);
                self.note("partition", json!({"fault": fault.name(), "cut": cuts}));
            }
        }
        Ok(())
    }

    /// Ends every fault: links restored (when asked to: only partitions cut them), paused
    /// nodes resumed, killed nodes restarted.
    pub fn heal(&mut self, links: bool) {
        let hosts = self.cluster.lock().unwrap().hosts();
        let net_result = if links { net::heal(&hosts) } else { Ok(()) };
        let proc_result = self.cluster.lock().unwrap().heal_processes();
        let mut value = json!({"healed": true});
        if let Err(e) = net_result.and(proc_result) {
            value = json!({"healed": false, "error": format!("{e:#}")});
        }
        self.note("heal", value);
    }
}

/// The links to cut for a majorities ring over nodes in ring order: each node keeps its links
/// to its nearest neighbours on either side, enough to see a majority, and loses the rest, so
/// no two nodes see the same majority. Three nodes are all neighbours of each other, so there
/// the ring is opened at one link instead.
pub fn ring_cuts(ids: &[i32]) -> Vec<(i32, i32)> {
    let n = ids.len();
    if n < 3 {
        return vec![];
    }
    if n == 3 {
        return vec![(ids[0], ids[2])];
    }
    let keep = n / 2;
    let mut cuts = Vec::new();
    for i in 0..n {
        for j in (i + 1)..n {
            let d = (j - i).min(n - (j - i));
            // Neighbours within keep/2 on either side stay linked.
            if d > keep.div_ceil(2) {
                cuts.push((ids[i], ids[j]));
            }
        }
    }
    cuts
}

/// Sleeps until `at` (or `until`, or a stop request); false when the run should end.
fn sleep_until(at: Instant, until: Instant, stop: &std::sync::atomic::AtomicBool) -> bool {
    loop {
        if stop.load(std::sync::atomic::Ordering::Relaxed) {
            return false;
        }
        let now = Instant::now();
        if now >= until {
            return false;
        }
        if now >= at {
            return true;
        }
        std::thread::sleep((at - now).min(until - now).min(Duration::from_millis(100)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_expand_without_duplicates() {
        assert_eq!(parse_faults("none").unwrap(), vec![]);
        assert_eq!(parse_faults("all").unwrap().len(), Fault::ALL.len());
        assert_eq!(
            parse_faults("kill,kill-one,pause-leader").unwrap(),
            vec![
                Fault::KillOne,
                Fault::KillLeader,
                Fault::KillAll,
                Fault::PauseLeader
            ]
        );
        assert!(parse_faults("flood").is_err());
    }

    #[test]
    fn three_node_ring_opens_one_link() {
        assert_eq!(ring_cuts(&[2, 3, 1]), vec![(2, 1)]);
    }

    #[test]
    fn five_node_ring_leaves_each_node_a_majority() {
        let ids = [1, 2, 3, 4, 5];
        let cuts = ring_cuts(&ids);
        assert!(!cuts.is_empty());
        for id in ids {
            let lost = cuts.iter().filter(|(a, b)| *a == id || *b == id).count();
            // Itself plus the linked nodes make a majority of 5.
            assert!(1 + (ids.len() - 1 - lost) >= 3, "node {id} lost {lost}");
        }
        // No two nodes see the same set.
        let seen = |id: i32| {
            let mut s: Vec<i32> = ids
                .iter()
                .copied()
                .filter(|o| *o == id || !cuts.contains(&(id.min(*o), id.max(*o))))
                .collect();
            s.sort();
            s
        };
        let sets: std::collections::BTreeSet<Vec<i32>> = ids.iter().map(|i| seen(*i)).collect();
        assert_eq!(sets.len(), ids.len());
    }
}
