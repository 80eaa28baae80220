//! The in-memory metadata image: the state that committed metadata records build.
//!
//! # Invariants
//! - `topics_by_id` and `topics` describe the same set of topics.
//! - Every partition of a topic has index `0..partition_count`, with no gaps.
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
    /// Applies one committed batch of records (one metadata log entry, applied atomically).
    /// Records are validated by the controller before they are proposed, so a record that does
    /// not fit the image is a broken invariant.
    pub fn apply_batch(&mut self, offset: u64, records: &[MetadataRecord]) {
        assert!(
            offset > self.last_offset,
            "metadata records applied out of order: {offset} after {}",
            self.last_offset
        );
        for record in records {
            self.apply_record(record);
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
            image.apply_record(record);
        }
        // Where a broker was last fenced is not in the snapshot; the snapshot's offset is a
        // safe stand-in (no earlier than the real one).
        for b in image.brokers.values_mut() {
            b.fenced_offset = offset;
        }
        image.last_offset = offset;
        image
    }

    fn apply_record(&mut self, record: &MetadataRecord) {
        match record {
            MetadataRecord::ClusterId { cluster_id } => self.cluster_id = Some(cluster_id.clone()),
            MetadataRecord::RegisterBroker {
                broker_id,
                broker_epoch,
                incarnation_id,
                endpoints,
                rack,
            } => {
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
                if let Some(b) = self.brokers.get_mut(broker_id) {
                    if b.broker_epoch == *broker_epoch {
                        b.fenced = *fenced;
                    }
                }
            }
            MetadataRecord::Topic { name, topic_id } => {
                assert!(
                    !self.topics.contains_key(name),
                    "topic {name} created twice"
                );
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
                let name = self
                    .topics_by_id
                    .get(topic_id)
                    .expect("partition record for an unknown topic");
                let topic = self
                    .topics
                    .get_mut(name)
                    .expect("topics and topics_by_id agree");
                assert!(
                    *partition as usize <= topic.partitions.len(),
                    "partition {partition} leaves a gap"
                );
                topic.partitions.insert(
                    *partition,
                    PartitionRegistration {
                        replicas: replicas.clone(),
                        isr: isr.clone(),
                        leader: *leader,
                        leader_epoch: *leader_epoch,
                        partition_epoch: *partition_epoch,
                    },
                );
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
                assert!(
                    *first_producer_id >= self.next_producer_id,
                    "producer id block handed out twice"
                );
                self.next_producer_id = first_producer_id + *size as i64;
            }
        }
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
