//! The in-memory metadata image: the state that committed metadata records build.
//!
//! Applying a committed record is a total, deterministic function of (image, record): the
//! controller validates what it proposes, but a record that still conflicts with the image
//! (a topic created twice, a partition of an unknown topic or one that leaves a gap, a
//! producer-id block below the next id, an invalid registration) is skipped with an error
//! log, the same way on every node and on every replay. It never panics, and the invariants
//! below hold after every record.
//!
//! # Invariants
//! - `topics_by_id` and `topics` describe the same set of topics.
//! - Every partition of a topic has index `0..partition_count`, with no gaps.
//! - Every partition has at least one replica, distinct ones; its ISR is a set of its
//!   replicas; its leader is -1 or an ISR member.
//! - `next_producer_id` only grows, so producer ids are never handed out twice.

use std::collections::{BTreeMap, HashMap};

use uuid::Uuid;

use super::records::{BrokerEndpoint, ConfigResource, MetadataRecord};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerRegistration {
    pub broker_id: i32,
    pub broker_epoch: i64,
    pub incarnation_id: Uuid,
    pub endpoints: Vec<BrokerEndpoint>,
    pub rack: Option<String>,
    pub fenced: bool,
    /// The metadata offset of the record that last fenced this broker (its registration, or
    /// a fencing). A fenced broker counts as caught up only once its metadata reaches it: then
    /// it has also seen the leaderships moved away from it.
    pub fenced_offset: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionRegistration {
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    /// -1 when the partition has no leader (offline).
    pub leader: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicImage {
    pub name: String,
    pub topic_id: Uuid,
    pub partitions: BTreeMap<i32, PartitionRegistration>,
}

impl TopicImage {
    pub fn is_internal(&self) -> bool {
        self.name.starts_with("__")
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct MetadataImage {
    /// Index of the last record applied (0 = none).
    pub last_offset: u64,
    pub cluster_id: Option<String>,
    pub brokers: BTreeMap<i32, BrokerRegistration>,
    pub topics: BTreeMap<String, TopicImage>,
    pub topics_by_id: HashMap<Uuid, String>,
    pub configs: BTreeMap<ConfigResource, BTreeMap<String, String>>,
    /// The first producer id not yet handed out in a block.
    pub next_producer_id: i64,
}

impl MetadataImage {
    /// Applies one committed batch of records (one metadata log entry) in order. A record
    /// that conflicts with the image is skipped (see the module doc); the others apply.
    ///
    /// # Panics
    /// If `offset` is not past the last applied one: the log hands entries out in order.
    pub fn apply_batch(&mut self, offset: u64, records: &[MetadataRecord]) {
        assert!(
            offset > self.last_offset,
            "metadata records applied out of order: {offset} after {}",
            self.last_offset
        );
        for record in records {
            if let Err(conflict) = self.apply_record(record) {
                tracing::error!(offset, %conflict, ?record, "conflicting metadata record skipped");
                continue;
            }
            match record {
                MetadataRecord::RegisterBroker { broker_id, .. }
                | MetadataRecord::BrokerFencing {
                    broker_id,
                    fenced: true,
                    ..
                } => {
                    if let Some(b) = self.brokers.get_mut(broker_id).filter(|b| b.fenced) {
                        b.fenced_offset = offset;
                    }
                }
                _ => {}
            }
        }
        self.last_offset = offset;
        debug_assert_eq!(self.check_invariants(), Ok(()));
    }

    /// The type's invariants, checked (debug builds check them after every batch).
    pub fn check_invariants(&self) -> Result<(), String> {
        if self.topics.len() != self.topics_by_id.len() {
            return Err("topics and topics_by_id differ in size".into());
        }
        for (name, t) in &self.topics {
            if self.topics_by_id.get(&t.topic_id) != Some(name) || t.name != *name {
                return Err(format!("topic {name} is not indexed by its id"));
            }
            for (i, (p, reg)) in t.partitions.iter().enumerate() {
                if *p != i as i32 {
                    return Err(format!("topic {name} has a gap before partition {p}"));
                }
                registration_is_valid(reg).map_err(|e| format!("{name}-{p}: {e}"))?;
            }
        }
        Ok(())
    }

    /// Applies one committed record as its own entry.
    pub fn apply(&mut self, offset: u64, record: &MetadataRecord) {
        self.apply_batch(offset, std::slice::from_ref(record));
    }

    /// The image as records that rebuild it from nothing: the content of a metadata snapshot,
    /// as in KRaft, where snapshots are records too.
    pub fn to_records(&self) -> Vec<MetadataRecord> {
        let mut out = Vec::new();
        if let Some(cluster_id) = &self.cluster_id {
            out.push(MetadataRecord::ClusterId {
                cluster_id: cluster_id.clone(),
            });
        }
        for b in self.brokers.values() {
            out.push(MetadataRecord::RegisterBroker {
                broker_id: b.broker_id,
                broker_epoch: b.broker_epoch,
                incarnation_id: b.incarnation_id,
                endpoints: b.endpoints.clone(),
                rack: b.rack.clone(),
            });
            if !b.fenced {
                out.push(MetadataRecord::BrokerFencing {
                    broker_id: b.broker_id,
                    broker_epoch: b.broker_epoch,
                    fenced: false,
                });
            }
        }
        for t in self.topics.values() {
            out.push(MetadataRecord::Topic {
                name: t.name.clone(),
                topic_id: t.topic_id,
            });
            for (p, r) in &t.partitions {
                out.push(MetadataRecord::Partition {
                    topic_id: t.topic_id,
                    partition: *p,
                    replicas: r.replicas.clone(),
                    isr: r.isr.clone(),
                    leader: r.leader,
                    leader_epoch: r.leader_epoch,
                    partition_epoch: r.partition_epoch,
                });
            }
        }
        for (resource, configs) in &self.configs {
            for (name, value) in configs {
                out.push(MetadataRecord::Config {
                    resource: resource.clone(),
                    name: name.clone(),
                    value: Some(value.clone()),
                });
            }
        }
        // An empty block moves the next producer id without handing any out.
        out.push(MetadataRecord::ProducerIds {
            broker_id: -1,
            first_producer_id: self.next_producer_id,
            size: 0,
        });
        out
    }

    /// Rebuilds an image from a snapshot's records, as of `offset`.
    pub fn from_records(offset: u64, records: &[MetadataRecord]) -> MetadataImage {
        let mut image = MetadataImage::default();
        for record in records {
            if let Err(conflict) = image.apply_record(record) {
                tracing::error!(offset, %conflict, ?record, "conflicting snapshot record skipped");
            }
        }
        // Where a broker was last fenced is not in the snapshot; the snapshot's offset is a
        // safe stand-in (no earlier than the real one).
        for b in image.brokers.values_mut() {
            b.fenced_offset = offset;
        }
        image.last_offset = offset;
        image
    }

    /// Applies one record, or explains why it conflicts with the image (then the image is
    /// unchanged).
    fn apply_record(&mut self, record: &MetadataRecord) -> Result<(), String> {
        match record {
            MetadataRecord::ClusterId { cluster_id } => self.cluster_id = Some(cluster_id.clone()),
            MetadataRecord::RegisterBroker {
                broker_id,
                broker_epoch,
                incarnation_id,
                endpoints,
                rack,
            } => {
                if let Some(existing) = self.brokers.get(broker_id) {
                    if existing.broker_epoch >= *broker_epoch {
                        return Err(format!(
                            "broker {broker_id} registered at epoch {broker_epoch}, not above its epoch {}",
                            existing.broker_epoch
                        ));
                    }
                }
                self.brokers.insert(
                    *broker_id,
                    BrokerRegistration {
                        broker_id: *broker_id,
                        broker_epoch: *broker_epoch,
                        incarnation_id: *incarnation_id,
                        endpoints: endpoints.clone(),
                        rack: rack.clone(),
                        fenced: true,
                        fenced_offset: self.last_offset,
                    },
                );
            }
            MetadataRecord::BrokerFencing {
                broker_id,
                broker_epoch,
                fenced,
            } => {
                // A fencing of an earlier epoch is stale, and harmless to drop.
                if let Some(b) = self.brokers.get_mut(broker_id) {
                    if b.broker_epoch == *broker_epoch {
                        b.fenced = *fenced;
                    }
                }
            }
            MetadataRecord::Topic { name, topic_id } => {
                if self.topics.contains_key(name) {
                    return Err(format!("topic {name} already exists"));
                }
                if let Some(other) = self.topics_by_id.get(topic_id) {
                    return Err(format!("topic id {topic_id} already names topic {other}"));
                }
                self.topics_by_id.insert(*topic_id, name.clone());
                self.topics.insert(
                    name.clone(),
                    TopicImage {
                        name: name.clone(),
                        topic_id: *topic_id,
                        partitions: BTreeMap::new(),
                    },
                );
            }
            MetadataRecord::Partition {
                topic_id,
                partition,
                replicas,
                isr,
                leader,
                leader_epoch,
                partition_epoch,
            } => {
                let Some(topic) = self
                    .topics_by_id
                    .get(topic_id)
                    .and_then(|name| self.topics.get_mut(name))
                else {
                    return Err(format!(
                        "partition {partition} of unknown topic id {topic_id}"
                    ));
                };
                if *partition < 0 || *partition as usize > topic.partitions.len() {
                    return Err(format!(
                        "partition {partition} of {} leaves a gap after {} partition(s)",
                        topic.name,
                        topic.partitions.len()
                    ));
                }
                let reg = PartitionRegistration {
                    replicas: replicas.clone(),
                    isr: isr.clone(),
                    leader: *leader,
                    leader_epoch: *leader_epoch,
                    partition_epoch: *partition_epoch,
                };
                registration_is_valid(&reg)
                    .map_err(|e| format!("partition {partition} of {}: {e}", topic.name))?;
                topic.partitions.insert(*partition, reg);
            }
            MetadataRecord::RemoveTopic { topic_id } => {
                if let Some(name) = self.topics_by_id.remove(topic_id) {
                    self.topics.remove(&name);
                    self.configs.remove(&ConfigResource::topic(&name));
                }
            }
            MetadataRecord::Config {
                resource,
                name,
                value,
            } => {
                let entry = self.configs.entry(resource.clone()).or_default();
                match value {
                    Some(v) => {
                        entry.insert(name.clone(), v.clone());
                    }
                    None => {
                        entry.remove(name);
                    }
                }
                if entry.is_empty() {
                    self.configs.remove(resource);
                }
            }
            MetadataRecord::ProducerIds {
                first_producer_id,
                size,
                ..
            } => {
                if *first_producer_id < self.next_producer_id {
                    return Err(format!(
                        "producer id block at {first_producer_id} is below the next id {}",
                        self.next_producer_id
                    ));
                }
                let next = (*size >= 0)
                    .then(|| first_producer_id.checked_add(*size as i64))
                    .flatten()
                    .ok_or_else(|| {
                        format!("producer id block of {size} at {first_producer_id} is invalid")
                    })?;
                self.next_producer_id = next;
            }
        }
        Ok(())
    }

    pub fn topic(&self, name: &str) -> Option<&TopicImage> {
        self.topics.get(name)
    }

    pub fn topic_by_id(&self, id: &Uuid) -> Option<&TopicImage> {
        self.topics_by_id.get(id).and_then(|n| self.topics.get(n))
    }

    pub fn topic_configs(&self, name: &str) -> Option<&BTreeMap<String, String>> {
        self.configs.get(&ConfigResource::topic(name))
    }

    /// Brokers that are registered and not fenced, in id order.
    pub fn live_brokers(&self) -> impl Iterator<Item = &BrokerRegistration> {
        self.brokers.values().filter(|b| !b.fenced)
    }
}

/// A partition registration's own invariants (see the module doc).
fn registration_is_valid(reg: &PartitionRegistration) -> Result<(), String> {
    let mut replicas = reg.replicas.clone();
    replicas.sort_unstable();
    replicas.dedup();
    if replicas.is_empty() || replicas.len() != reg.replicas.len() {
        return Err(format!("replicas {:?} are empty or repeat", reg.replicas));
    }
    let mut isr = reg.isr.clone();
    isr.sort_unstable();
    isr.dedup();
    if isr.len() != reg.isr.len() || isr.iter().any(|r| replicas.binary_search(r).is_err()) {
        return Err(format!(
            "ISR {:?} is not a set of the replicas {:?}",
            reg.isr, reg.replicas
        ));
    }
    if reg.leader != -1 && !reg.isr.contains(&reg.leader) {
        return Err(format!(
            "leader {} is not in the ISR {:?}",
            reg.leader, reg.isr
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applies_topic_partition_config_and_removal() {
        let mut image = MetadataImage::default();
        let id = Uuid::new_v4();
        image.apply(
            1,
            &MetadataRecord::Topic {
                name: "t".into(),
                topic_id: id,
            },
        );
        image.apply(
            2,
            &MetadataRecord::Partition {
                topic_id: id,
                partition: 0,
                replicas: vec![1],
                isr: vec![1],
                leader: 1,
                leader_epoch: 0,
                partition_epoch: 0,
            },
        );
        image.apply(
            3,
            &MetadataRecord::Config {
                resource: ConfigResource::topic("t"),
                name: "retention.ms".into(),
                value: Some("10".into()),
            },
        );
        assert_eq!(image.topic("t").unwrap().partitions.len(), 1);
        assert_eq!(image.topic_configs("t").unwrap()["retention.ms"], "10");
        image.apply(4, &MetadataRecord::RemoveTopic { topic_id: id });
        assert!(image.topic("t").is_none());
        assert!(image.topic_configs("t").is_none());
        assert!(image.topics_by_id.is_empty());
    }

    #[test]
    fn snapshot_records_rebuild_the_same_image() {
        let mut image = MetadataImage::default();
        let id = Uuid::new_v4();
        let batch = vec![
            MetadataRecord::ClusterId {
                cluster_id: "c".into(),
            },
            MetadataRecord::RegisterBroker {
                broker_id: 1,
                broker_epoch: 5,
                incarnation_id: Uuid::new_v4(),
                endpoints: vec![],
                rack: None,
            },
            MetadataRecord::BrokerFencing {
                broker_id: 1,
                broker_epoch: 5,
                fenced: false,
            },
            MetadataRecord::RegisterBroker {
                broker_id: 2,
                broker_epoch: 6,
                incarnation_id: Uuid::new_v4(),
                endpoints: vec![],
                rack: Some("r".into()),
            },
            MetadataRecord::Topic {
                name: "t".into(),
                topic_id: id,
            },
            MetadataRecord::Partition {
                topic_id: id,
                partition: 0,
                replicas: vec![1, 2],
                isr: vec![1],
                leader: 1,
                leader_epoch: 3,
                partition_epoch: 4,
            },
            MetadataRecord::Config {
                resource: ConfigResource::topic("t"),
                name: "retention.ms".into(),
                value: Some("1".into()),
            },
            MetadataRecord::ProducerIds {
                broker_id: 1,
                first_producer_id: 0,
                size: 1000,
            },
        ];
        image.apply_batch(7, &batch);
        let rebuilt = MetadataImage::from_records(7, &image.to_records());
        assert_eq!(rebuilt, image);
    }

    fn partition(topic_id: Uuid, partition: i32, replicas: &[i32], leader: i32) -> MetadataRecord {
        MetadataRecord::Partition {
            topic_id,
            partition,
            replicas: replicas.to_vec(),
            isr: replicas.to_vec(),
            leader,
            leader_epoch: 0,
            partition_epoch: 0,
        }
    }

    /// The conflicts a retried or replayed proposal can produce: each is skipped, the rest of
    /// its entry applies, and two nodes applying the same entries reach the same image.
    #[test]
    fn conflicting_records_are_skipped_the_same_way_everywhere() {
        let first = Uuid::new_v4();
        let retry = Uuid::new_v4();
        let entries: Vec<Vec<MetadataRecord>> = vec![
            vec![
                MetadataRecord::Topic {
                    name: "t".into(),
                    topic_id: first,
                },
                partition(first, 0, &[1, 2], 1),
                partition(first, 1, &[2, 1], 2),
                MetadataRecord::ProducerIds {
                    broker_id: 1,
                    first_producer_id: 0,
                    size: 1000,
                },
            ],
            // The same CreateTopics, validated again before the first had committed.
            vec![
                MetadataRecord::Topic {
                    name: "t".into(),
                    topic_id: retry,
                },
                partition(retry, 0, &[3, 1], 3),
                partition(retry, 1, &[1, 3], 1),
                // The same block handed out twice, and a block past the id space.
                MetadataRecord::ProducerIds {
                    broker_id: 1,
                    first_producer_id: 0,
                    size: 1000,
                },
                MetadataRecord::ProducerIds {
                    broker_id: 1,
                    first_producer_id: i64::MAX - 1,
                    size: 1000,
                },
            ],
            vec![
                // A gap, a negative index, an unknown topic, invalid registrations.
                partition(first, 5, &[1], 1),
                partition(first, -1, &[1], 1),
                partition(Uuid::new_v4(), 0, &[1], 1),
                partition(first, 0, &[], -1),
                partition(first, 0, &[1, 1], 1),
                partition(first, 0, &[1, 2], 3),
                MetadataRecord::Partition {
                    topic_id: first,
                    partition: 0,
                    replicas: vec![1, 2],
                    isr: vec![1, 2, 2, 3],
                    leader: 1,
                    leader_epoch: 1,
                    partition_epoch: 1,
                },
                // The same topic id under another name.
                MetadataRecord::Topic {
                    name: "u".into(),
                    topic_id: first,
                },
                // A valid change after the conflicts still applies.
                partition(first, 2, &[1, 2], 2),
            ],
        ];
        let mut a = MetadataImage::default();
        let mut b = MetadataImage::default();
        for (i, entry) in entries.iter().enumerate() {
            a.apply_batch(i as u64 + 1, entry);
        }
        for (i, entry) in entries.iter().enumerate() {
            b.apply_batch(i as u64 + 1, entry);
        }
        assert_eq!(a, b);
        assert_eq!(a.check_invariants(), Ok(()));
        let t = a.topic("t").unwrap();
        assert_eq!(t.topic_id, first);
        assert_eq!(t.partitions.len(), 3);
        assert_eq!(
            t.partitions[&0].replicas,
            vec![1, 2],
            "the retry did not overwrite"
        );
        assert_eq!(a.topics_by_id.len(), 1);
        assert_eq!(a.next_producer_id, 1000);
        // A snapshot of the result rebuilds it; a replay from the snapshot agrees.
        assert_eq!(MetadataImage::from_records(3, &a.to_records()), a);
    }

    #[test]
    fn stale_broker_registrations_are_skipped() {
        let mut image = MetadataImage::default();
        let register = |epoch: i64| MetadataRecord::RegisterBroker {
            broker_id: 1,
            broker_epoch: epoch,
            incarnation_id: Uuid::new_v4(),
            endpoints: vec![],
            rack: None,
        };
        image.apply(1, &register(5));
        image.apply(
            2,
            &MetadataRecord::BrokerFencing {
                broker_id: 1,
                broker_epoch: 5,
                fenced: false,
            },
        );
        image.apply(3, &register(5));
        image.apply(4, &register(4));
        assert!(
            !image.brokers[&1].fenced,
            "neither replaced the registration"
        );
        image.apply(5, &register(6));
        assert!(image.brokers[&1].fenced);
        assert_eq!(image.brokers[&1].broker_epoch, 6);
    }

    #[test]
    #[should_panic(expected = "out of order")]
    fn rejects_out_of_order_records() {
        let mut image = MetadataImage::default();
        image.apply(
            2,
            &MetadataRecord::ClusterId {
                cluster_id: "a".into(),
            },
        );
        image.apply(
            2,
            &MetadataRecord::ClusterId {
                cluster_id: "b".into(),
            },
        );
    }
}
