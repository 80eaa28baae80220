//! Broker registration, heartbeats, fencing and liveness (Kafka's `ClusterControlManager`
//! and `BrokerHeartbeatManager`).
//!
//! Fencing and unfencing a broker can touch every partition it holds, more than one metadata
//! log entry carries. Such a decision is split so that any prefix of it is a safe state:
//! - Fencing: the partition changes (leaderships moved, ISR places dropped) come first, in
//!   chunks; the fencing record comes last. A failover midway leaves a broker that is still
//!   unfenced in the image, and the next active controller, which gives it one session and
//!   then fences it again, redoes the rest.
//! - Unfencing: the unfence record comes first, then the elections it makes possible, in
//!   chunks. A failover midway leaves leaderless partitions with a live ISR member, which
//!   [`ClusterControlManager::sweep`] gives a leader on the next active controller.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use parking_lot::Mutex;
use uuid::Uuid;

use super::election;
use super::replication_control::{partition_change, unclean_allowed};
use super::ControllerResult;
use crate::config::BrokerConfig;
use crate::error::ApiError;
use crate::metadata::records::BrokerEndpoint;
use crate::metadata::{MetadataImage, MetadataRecord, PartitionRegistration};
use kafka_protocol::ResponseError;

/// What the active controller knows of a broker's liveness (never replicated: a new active
/// controller starts everyone with a full session).
#[derive(Clone, Copy, Debug)]
struct BrokerContact {
    broker_epoch: i64,
    last_heartbeat_ms: i64,
}

/// A broker's registration request, as BrokerRegistration carries it.
#[derive(Clone, Debug)]
pub struct BrokerRegistrationInput {
    pub broker_id: i32,
    pub incarnation_id: Uuid,
    pub endpoints: Vec<BrokerEndpoint>,
    pub rack: Option<String>,
}

/// BrokerHeartbeat's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeartbeatOutcome {
    pub is_caught_up: bool,
    pub is_fenced: bool,
}

/// # Invariants
/// - `contacts` holds, per broker, the epoch and time of the last heartbeat this node saw
///   as the active controller; it is reset to "everyone just heartbeated" when this node
///   becomes active, so no broker is fenced before it had a full session to find us.
pub struct ClusterControlManager {
    config: Arc<BrokerConfig>,
    contacts: Mutex<HashMap<i32, BrokerContact>>,
}

impl ClusterControlManager {
    pub fn new(config: Arc<BrokerConfig>) -> Self {
        ClusterControlManager {
            config,
            contacts: Mutex::new(HashMap::new()),
        }
    }

    pub fn record_contact(&self, broker_id: i32, broker_epoch: i64, now_ms: i64) {
        self.contacts.lock().insert(
            broker_id,
            BrokerContact {
                broker_epoch,
                last_heartbeat_ms: now_ms,
            },
        );
    }

    /// A new active controller gives every broker a full session to find it.
    pub fn became_active(&self, image: &MetadataImage, now_ms: i64) {
        let mut contacts = self.contacts.lock();
        contacts.clear();
        for b in image.brokers.values() {
            contacts.insert(
                b.broker_id,
                BrokerContact {
                    broker_epoch: b.broker_epoch,
                    last_heartbeat_ms: now_ms,
                },
            );
        }
    }

    /// The registration of a broker: a retry of the same incarnation gets the epoch it has;
    /// a new start gets a larger epoch and starts fenced. A re-registering broker that was
    /// unfenced loses its leaderships first (in chunks), its new registration last.
    pub fn register_broker(
        &self,
        image: &MetadataImage,
        input: BrokerRegistrationInput,
    ) -> ControllerResult<i64> {
        let existing = image.brokers.get(&input.broker_id);
        if let Some(existing) = existing {
            if existing.incarnation_id == input.incarnation_id {
                return ControllerResult::of(existing.broker_epoch);
            }
        }
        let mut records = Vec::new();
        if image.cluster_id.is_none() {
            let cluster_id = self
                .config
                .cluster_id
                .clone()
                .unwrap_or_else(new_cluster_id);
            records.push(MetadataRecord::ClusterId { cluster_id });
        }
        // The epoch must exceed every earlier one of this broker; the log offset does.
        let previous = existing.map(|b| b.broker_epoch).unwrap_or(0);
        let broker_epoch = (image.last_offset as i64 + 1).max(previous + 1);
        records.push(MetadataRecord::RegisterBroker {
            broker_id: input.broker_id,
            broker_epoch,
            incarnation_id: input.incarnation_id,
            endpoints: input.endpoints,
            rack: input.rack,
        });
        let moves = if existing.is_some_and(|b| !b.fenced) {
            self.fence_changes(image, input.broker_id)
        } else {
            Vec::new()
        };
        ControllerResult::of(broker_epoch)
            .then_divisible(moves)
            .then_atomic(records)
    }

    /// Checks a heartbeat and refreshes the session. `is_fenced && is_caught_up` means the
    /// broker may be unfenced now.
    pub fn heartbeat(
        &self,
        image: &MetadataImage,
        broker_id: i32,
        broker_epoch: i64,
        metadata_offset: i64,
        now_ms: i64,
    ) -> Result<HeartbeatOutcome, ApiError> {
        let Some(reg) = image.brokers.get(&broker_id) else {
            return Err(ApiError::with_message(
                ResponseError::BrokerIdNotRegistered,
                format!("Broker {broker_id} is not registered"),
            ));
        };
        if reg.broker_epoch != broker_epoch {
            return Err(ApiError::with_message(
                ResponseError::StaleBrokerEpoch,
                format!(
                    "Expected broker epoch {}, got {broker_epoch}",
                    reg.broker_epoch
                ),
            ));
        }
        self.record_contact(broker_id, broker_epoch, now_ms);
        // Caught up: its metadata holds its registration and, if it is fenced, the fencing
        // (and so the leaderships moved away meanwhile). A broker resumed after a pause
        // must not be unfenced, and so trusted as a leader, on its stale metadata.
        let is_caught_up = metadata_offset >= broker_epoch
            && (!reg.fenced || metadata_offset as u64 >= reg.fenced_offset);
        Ok(HeartbeatOutcome {
            is_caught_up,
            is_fenced: reg.fenced,
        })
    }

    /// Unfences a broker (if it still is fenced at this epoch): the unfence record first,
    /// then the elections it makes possible. The answer is whether anything changed.
    pub fn unfence(
        &self,
        image: &MetadataImage,
        broker_id: i32,
        broker_epoch: i64,
    ) -> ControllerResult<bool> {
        if !image
            .brokers
            .get(&broker_id)
            .is_some_and(|b| b.fenced && b.broker_epoch == broker_epoch)
        {
            return ControllerResult::of(false);
        }
        let mut live: BTreeSet<i32> = image.live_brokers().map(|b| b.broker_id).collect();
        live.insert(broker_id);
        let mut elections = Vec::new();
        for topic in image.topics.values() {
            let unclean = unclean_allowed(&self.config, image, &topic.name);
            for (p, reg) in &topic.partitions {
                if let Some(next) = election::after_broker_unfenced(reg, &live, unclean) {
                    elections.push(partition_change(topic.topic_id, *p, next));
                }
            }
        }
        ControllerResult::atomic(
            vec![MetadataRecord::BrokerFencing {
                broker_id,
                broker_epoch,
                fenced: false,
            }],
            true,
        )
        .then_divisible(elections)
    }

    /// Live brokers whose session expired, with their epochs.
    pub fn expired(&self, image: &MetadataImage, now_ms: i64) -> Vec<(i32, i64)> {
        let session_ms = self.config.broker_session_timeout_ms as i64;
        let contacts = self.contacts.lock();
        image
            .live_brokers()
            .filter(|b| {
                contacts.get(&b.broker_id).is_none_or(|c| {
                    c.broker_epoch != b.broker_epoch || now_ms - c.last_heartbeat_ms > session_ms
                })
            })
            .map(|b| (b.broker_id, b.broker_epoch))
            .collect()
    }

    /// Fences a broker whose session expired (if it still is due): its partition changes in
    /// chunks, the fencing record last. The answer is the number of partitions changed, or
    /// None when the broker was no longer due.
    pub fn fence_expired(
        &self,
        image: &MetadataImage,
        broker_id: i32,
        broker_epoch: i64,
        now_ms: i64,
    ) -> ControllerResult<Option<usize>> {
        let still_due = image
            .brokers
            .get(&broker_id)
            .is_some_and(|b| !b.fenced && b.broker_epoch == broker_epoch)
            && self
                .expired(image, now_ms)
                .contains(&(broker_id, broker_epoch));
        if !still_due {
            return ControllerResult::of(None);
        }
        let moves = self.fence_changes(image, broker_id);
        let moved = moves.len();
        ControllerResult::of(Some(moved))
            .then_divisible(moves)
            .then_atomic(vec![MetadataRecord::BrokerFencing {
                broker_id,
                broker_epoch,
                fenced: true,
            }])
    }

    /// The partition changes that fencing `broker` causes: it leaves every ISR (the last
    /// member stays), and the partitions it led get another leader.
    fn fence_changes(&self, image: &MetadataImage, broker: i32) -> Vec<MetadataRecord> {
        let live: BTreeSet<i32> = image
            .live_brokers()
            .map(|b| b.broker_id)
            .filter(|b| *b != broker)
            .collect();
        let mut records = Vec::new();
        for topic in image.topics.values() {
            let unclean = unclean_allowed(&self.config, image, &topic.name);
            for (p, reg) in &topic.partitions {
                if let Some(next) = election::after_broker_fenced(reg, broker, &live, unclean) {
                    records.push(partition_change(topic.topic_id, *p, next));
                }
            }
        }
        records
    }

    /// The registration `reg` should have given who is fenced now, or None if it has it:
    /// fenced brokers neither lead nor stay in the ISR (but its last member), and a
    /// leaderless partition with a live ISR member (or any live replica, unclean) leads again.
    fn reconciled(
        reg: &PartitionRegistration,
        image: &MetadataImage,
        live: &BTreeSet<i32>,
        unclean: bool,
    ) -> Option<PartitionRegistration> {
        let mut next: Option<PartitionRegistration> = None;
        for replica in &reg.replicas {
            if live.contains(replica) {
                continue;
            }
            // Only registered, fenced brokers are moved away from; an unknown id stays.
            if !image.brokers.get(replica).is_some_and(|b| b.fenced) {
                continue;
            }
            let current = next.as_ref().unwrap_or(reg);
            if let Some(n) = election::after_broker_fenced(current, *replica, live, unclean) {
                next = Some(n);
            }
        }
        let current = next.as_ref().unwrap_or(reg);
        if let Some(n) = election::after_broker_unfenced(current, live, unclean) {
            next = Some(n);
        }
        next
    }

    /// Whether [`Self::sweep`] would change anything (checked every tick, without the
    /// write lock; only partitions that hold a fenced replica or lack a leader cost more
    /// than a look).
    pub fn needs_sweep(&self, image: &MetadataImage) -> bool {
        let live: BTreeSet<i32> = image.live_brokers().map(|b| b.broker_id).collect();
        image.topics.values().any(|t| {
            let unclean = unclean_allowed(&self.config, image, &t.name);
            t.partitions
                .values()
                .any(|reg| Self::reconciled(reg, image, &live, unclean).is_some())
        })
    }

    /// Reconciles every partition with broker liveness (see [`Self::reconciled`]); the
    /// answer is the number of partitions changed. Divisible: each change stands alone.
    pub fn sweep(&self, image: &MetadataImage) -> ControllerResult<usize> {
        let live: BTreeSet<i32> = image.live_brokers().map(|b| b.broker_id).collect();
        let mut records = Vec::new();
        for topic in image.topics.values() {
            let unclean = unclean_allowed(&self.config, image, &topic.name);
            for (p, reg) in &topic.partitions {
                if let Some(next) = Self::reconciled(reg, image, &live, unclean) {
                    records.push(partition_change(topic.topic_id, *p, next));
                }
            }
        }
        let moved = records.len();
        ControllerResult::of(moved).then_divisible(records)
    }
}

/// A cluster id in Kafka's form: 16 random bytes, URL-safe base64 without padding.
fn new_cluster_id() -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes = Uuid::new_v4().into_bytes();
    let mut bits: u32 = 0;
    let mut n = 0;
    let mut out = String::with_capacity(22);
    for b in bytes {
        bits = (bits << 8) | b as u32;
        n += 8;
        while n >= 6 {
            n -= 6;
            out.push(ALPHABET[((bits >> n) & 63) as usize] as char);
        }
    }
    if n > 0 {
        out.push(ALPHABET[((bits << (6 - n)) & 63) as usize] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::MetadataRecord as R;

    #[test]
    fn cluster_id_shape() {
        let id = new_cluster_id();
        assert_eq!(id.len(), 22);
    }

    fn config() -> Arc<BrokerConfig> {
        Arc::new(
            BrokerConfig::from_props(BrokerConfig::parse_properties("node.id=1\n").unwrap())
                .unwrap(),
        )
    }

    /// Three live brokers and `partitions` partitions of one topic on all three, led by 1.
    fn image(partitions: i32) -> (MetadataImage, Uuid) {
        let mut image = MetadataImage::default();
        let mut batch = vec![R::ClusterId {
            cluster_id: "c".into(),
        }];
        for b in 1..=3 {
            batch.push(R::RegisterBroker {
                broker_id: b,
                broker_epoch: b as i64,
                incarnation_id: Uuid::new_v4(),
                endpoints: vec![],
                rack: None,
            });
            batch.push(R::BrokerFencing {
                broker_id: b,
                broker_epoch: b as i64,
                fenced: false,
            });
        }
        let id = Uuid::new_v4();
        batch.push(R::Topic {
            name: "t".into(),
            topic_id: id,
        });
        for p in 0..partitions {
            batch.push(R::Partition {
                topic_id: id,
                partition: p,
                replicas: vec![1, 2, 3],
                isr: vec![1, 2, 3],
                leader: 1,
                leader_epoch: 0,
                partition_epoch: 0,
            });
        }
        image.apply_batch(1, &batch);
        (image, id)
    }

    fn apply<T>(image: &mut MetadataImage, result: &ControllerResult<T>, entries: usize) {
        let mut offset = image.last_offset;
        for batch in result.batches.iter().take(entries) {
            offset += 1;
            image.apply_batch(offset, &batch.records);
        }
    }

    #[test]
    fn fencing_moves_partitions_first_and_a_cut_short_fencing_is_finished_by_the_sweep() {
        let (mut image, _) = image(5);
        let cluster = ClusterControlManager::new(config());
        // Broker 1 never heartbeated to this controller: expired.
        let result = cluster.fence_expired(&image, 1, 1, 0);
        assert_eq!(result.response, Some(5));
        assert_eq!(result.batches.len(), 2);
        assert!(result.batches[0].divisible);
        assert!(matches!(
            result.batches[1].records[..],
            [R::BrokerFencing { fenced: true, .. }]
        ));
        // Failover after the partition changes only: 1 is still live, leads nothing.
        let mut cut = image.clone();
        apply(&mut cut, &result, 1);
        assert!(!cut.brokers[&1].fenced);
        assert!(cut.topics["t"].partitions.values().all(|p| p.leader == 2));
        apply(&mut image, &result, 2);
        assert!(image.brokers[&1].fenced);
        assert!(!cluster.needs_sweep(&image));

        // A partition still led by the fenced broker (an interrupted fencing of another
        // kind, or a replay) is moved by the sweep; a second sweep finds nothing.
        let id = image.topics["t"].topic_id;
        image.apply(
            image.last_offset + 1,
            &R::Partition {
                topic_id: id,
                partition: 0,
                replicas: vec![1, 2, 3],
                isr: vec![1, 2, 3],
                leader: 1,
                leader_epoch: 7,
                partition_epoch: 7,
            },
        );
        assert!(cluster.needs_sweep(&image));
        let sweep = cluster.sweep(&image);
        assert_eq!(sweep.response, 1);
        apply(&mut image, &sweep, 1);
        let p0 = &image.topics["t"].partitions[&0];
        assert_eq!(
            (p0.leader, p0.isr.clone(), p0.leader_epoch),
            (2, vec![2, 3], 8)
        );
        assert!(!cluster.needs_sweep(&image));
        assert_eq!(cluster.sweep(&image).response, 0);
    }

    #[test]
    fn unfencing_records_first_and_the_sweep_elects_what_a_failover_left_leaderless() {
        let (mut image, id) = image(3);
        let cluster = ClusterControlManager::new(config());
        // Partition 0 lost everyone but broker 3, which then was fenced: offline.
        image.apply_batch(
            2,
            &[
                R::Partition {
                    topic_id: id,
                    partition: 0,
                    replicas: vec![1, 2, 3],
                    isr: vec![3],
                    leader: -1,
                    leader_epoch: 1,
                    partition_epoch: 1,
                },
                R::BrokerFencing {
                    broker_id: 3,
                    broker_epoch: 3,
                    fenced: true,
                },
            ],
        );
        let result = cluster.unfence(&image, 3, 3);
        assert!(result.response);
        assert!(matches!(
            result.batches[0].records[..],
            [R::BrokerFencing { fenced: false, .. }]
        ));
        // Failover right after the unfence record: the sweep elects 3.
        apply(&mut image, &result, 1);
        assert!(cluster.needs_sweep(&image));
        let sweep = cluster.sweep(&image);
        assert_eq!(sweep.response, 1);
        apply(&mut image, &sweep, 1);
        assert_eq!(image.topics["t"].partitions[&0].leader, 3);
        assert!(!cluster.unfence(&image, 3, 3).response, "already unfenced");
    }

    #[test]
    fn registration_retry_of_the_same_incarnation_writes_nothing() {
        let (image, _) = image(1);
        let cluster = ClusterControlManager::new(config());
        let incarnation = image.brokers[&2].incarnation_id;
        let again = cluster.register_broker(
            &image,
            BrokerRegistrationInput {
                broker_id: 2,
                incarnation_id: incarnation,
                endpoints: vec![],
                rack: None,
            },
        );
        assert_eq!((again.response, again.record_count()), (2, 0));
        let restart = cluster.register_broker(
            &image,
            BrokerRegistrationInput {
                broker_id: 1,
                incarnation_id: Uuid::new_v4(),
                endpoints: vec![],
                rack: None,
            },
        );
        assert!(restart.response > 1);
        // Leaderships move first, the registration (which fences) last.
        assert!(restart.batches[0].divisible);
        assert!(matches!(
            restart.batches.last().unwrap().records[..],
            [R::RegisterBroker { broker_id: 1, .. }]
        ));
    }
}
