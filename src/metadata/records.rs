//! Metadata records: the entries of the cluster metadata log.
//!
//! Modelled on KRaft's records (`metadata/src/main/resources/common/metadata/*.json` in
//! Apache Kafka). The active controller is their only writer; every node applies the
//! committed ones, in log order, to its `MetadataImage`.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A Kafka endpoint a broker registers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerEndpoint {
    pub listener: String,
    pub host: String,
    pub port: u16,
}

/// What a config record applies to, with Kafka's `ConfigResource.Type` codes.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ConfigResource {
    /// 2 = topic, 4 = broker (Kafka's codes).
    pub resource_type: i8,
    /// Topic name, broker id as text, or "" for the cluster-wide broker default.
    pub name: String,
}

impl ConfigResource {
    pub const TOPIC: i8 = 2;
    pub const BROKER: i8 = 4;

    pub fn topic(name: &str) -> Self {
        ConfigResource {
            resource_type: Self::TOPIC,
            name: name.to_string(),
        }
    }

    pub fn is_topic(&self) -> bool {
        self.resource_type == Self::TOPIC
    }
}

/// One committed change to the cluster metadata.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum MetadataRecord {
    /// The cluster's id, written once when the metadata log is first created.
    ClusterId { cluster_id: String },
    /// A broker (re)registers; each start gets a new, larger broker epoch.
    RegisterBroker {
        broker_id: i32,
        broker_epoch: i64,
        incarnation_id: Uuid,
        endpoints: Vec<BrokerEndpoint>,
        rack: Option<String>,
    },
    /// A broker is fenced (`fenced = true`) or unfenced.
    BrokerFencing {
        broker_id: i32,
        broker_epoch: i64,
        fenced: bool,
    },
    /// A topic is created; its partitions follow as `Partition` records.
    Topic { name: String, topic_id: Uuid },
    /// A partition's full registration (creation, or a change that replaces it whole).
    Partition {
        topic_id: Uuid,
        partition: i32,
        replicas: Vec<i32>,
        isr: Vec<i32>,
        leader: i32,
        leader_epoch: i32,
        partition_epoch: i32,
    },
    /// A topic and all its partitions and configs are deleted.
    RemoveTopic { topic_id: Uuid },
    /// A dynamic config is set (`Some`) or removed (`None`).
    Config {
        resource: ConfigResource,
        name: String,
        value: Option<String>,
    },
    /// A block of producer ids `[first, first + size)` is handed to a broker.
    ProducerIds {
        broker_id: i32,
        first_producer_id: i64,
        size: i32,
    },
}
