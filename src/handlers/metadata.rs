//! Metadata (key 3): brokers, controller and topic/partition leadership, with
//! `auto.create.topics.enable` as Kafka applies it.

use std::collections::BTreeSet;

use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{
    BrokerId, CreateTopicsRequest, MetadataRequest, MetadataResponse, TopicName,
};
use kafka_protocol::ResponseError;
use uuid::Uuid;

use super::{str_bytes, RequestContext};
use crate::controller::{validate_topic_name, NewTopic, RequestTimeout};
use crate::metadata::{MetadataImage, TopicImage};

/// Kafka's "operations not requested" marker for authorized-operations fields.
pub const AUTHORIZED_OPERATIONS_OMITTED: i32 = i32::MIN;

pub async fn handle(ctx: &RequestContext, req: MetadataRequest) -> MetadataResponse {
    let broker = &ctx.broker;
    let mut image = broker.image();
    // Which topics: None (or, before v1, an empty list) means all.
    let all_topics = req.topics.is_none()
        || (ctx.api_version == 0 && req.topics.as_ref().is_some_and(|t| t.is_empty()));
    // As Kafka's KafkaApis: topic ids, when any is given (v12+), else names; each topic
    // once however often it is asked for, so the response is no larger than the topics.
    let mut requested: Vec<(Option<String>, Uuid)> = Vec::new();
    if !all_topics {
        let topics = req.topics.iter().flatten();
        let ids: BTreeSet<Uuid> = topics
            .clone()
            .map(|t| t.topic_id)
            .filter(|id| !id.is_nil())
            .collect();
        if ids.is_empty() {
            let names: BTreeSet<String> = topics
                .filter_map(|t| t.name.as_ref().map(|n| n.0.to_string()))
                .collect();
            requested.extend(names.into_iter().map(|n| (Some(n), Uuid::nil())));
        } else {
            requested.extend(ids.into_iter().map(|id| (None, id)));
        }
    }
    // Auto-create unknown topics when both the client (v4+) and the broker allow it.
    let allow_auto_create = (ctx.api_version < 4 || req.allow_auto_topic_creation)
        && broker.config.auto_create_topics_enable;
    if allow_auto_create {
        let missing: BTreeSet<String> = requested
            .iter()
            .filter_map(|(n, _)| n.clone())
            .filter(|n| {
                image.topic(n).is_none() && validate_topic_name(n).is_ok() && !n.starts_with("__")
            })
            .collect();
        if !missing.is_empty() {
            let new_topics = missing
                .into_iter()
                .map(|name| NewTopic {
                    name,
                    num_partitions: -1,
                    replication_factor: -1,
                    ..Default::default()
                })
                .collect();
            auto_create(ctx, new_topics).await;
            image = broker.image();
        }
    }

    let topics: Vec<MetadataResponseTopic> = if all_topics {
        image
            .topics
            .values()
            .map(|t| topic_metadata(&image, t))
            .collect()
    } else {
        requested
            .iter()
            .map(|(name, id)| {
                let found = match name {
                    Some(n) => image.topic(n),
                    None => image.topic_by_id(id),
                };
                match found {
                    Some(t) => topic_metadata(&image, t),
                    None => {
                        let code = match name {
                            Some(n) if validate_topic_name(n).is_err() => {
                                ResponseError::InvalidTopicException
                            }
                            Some(_) => ResponseError::UnknownTopicOrPartition,
                            None => ResponseError::UnknownTopicId,
                        };
                        MetadataResponseTopic::default()
                            .with_error_code(code.code())
                            .with_name(name.as_ref().map(|n| TopicName(str_bytes(n))))
                            .with_topic_id(*id)
                            .with_topic_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED)
                    }
                }
            })
            .collect()
    };

    let mut resp = MetadataResponse::default()
        .with_brokers(brokers(&image))
        .with_topics(topics)
        .with_controller_id(BrokerId(controller_id_for_clients(ctx, &image)));
    if ctx.api_version >= 2 {
        resp = resp.with_cluster_id(image.cluster_id.as_deref().map(str_bytes));
    }
    if (8..=10).contains(&ctx.api_version) {
        resp = resp.with_cluster_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED);
    }
    if ctx.api_version < 8 {
        for t in resp.topics.iter_mut() {
            t.topic_authorized_operations = AUTHORIZED_OPERATIONS_OMITTED;
        }
    }
    resp
}

/// Live (unfenced) brokers with their client endpoint.
pub fn brokers(image: &MetadataImage) -> Vec<MetadataResponseBroker> {
    image
        .live_brokers()
        .filter_map(|b| {
            let ep = b.endpoints.first()?;
            Some(
                MetadataResponseBroker::default()
                    .with_node_id(BrokerId(b.broker_id))
                    .with_host(str_bytes(&ep.host))
                    .with_port(ep.port as i32)
                    .with_rack(b.rack.as_deref().map(str_bytes)),
            )
        })
        .collect()
}

fn topic_metadata(image: &MetadataImage, topic: &TopicImage) -> MetadataResponseTopic {
    let partitions = topic
        .partitions
        .iter()
        .map(|(p, reg)| {
            let offline: Vec<BrokerId> = reg
                .replicas
                .iter()
                .filter(|r| !image.brokers.get(r).map(|b| !b.fenced).unwrap_or(false))
                .map(|r| BrokerId(*r))
                .collect();
            let error = if reg.leader < 0 {
                ResponseError::LeaderNotAvailable.code()
            } else {
                0
            };
            MetadataResponsePartition::default()
                .with_error_code(error)
                .with_partition_index(*p)
                .with_leader_id(BrokerId(reg.leader))
                .with_leader_epoch(reg.leader_epoch)
                .with_replica_nodes(reg.replicas.iter().map(|r| BrokerId(*r)).collect())
                .with_isr_nodes(reg.isr.iter().map(|r| BrokerId(*r)).collect())
                .with_offline_replicas(offline)
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(str_bytes(&topic.name))))
        .with_topic_id(topic.topic_id)
        .with_is_internal(topic.is_internal())
        .with_partitions(partitions)
        .with_topic_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED)
}

/// Creates topics for a Metadata request, on the active controller (locally or forwarded).
/// The new topics show up in this node's image once it applies the records; until then the
/// client sees UNKNOWN_TOPIC_OR_PARTITION or LEADER_NOT_AVAILABLE and retries, as with Kafka.
async fn auto_create(ctx: &RequestContext, topics: Vec<NewTopic>) {
    let broker = &ctx.broker;
    if broker.controller.is_active() {
        let mut failed = 0usize;
        for (name, result) in broker
            .controller
            .create_topics(topics, false, RequestTimeout::Quorum)
            .await
        {
            match result {
                Ok(_) => {
                    tracing::info!(topic = %name, client = ctx.client_id(), "auto-created topic")
                }
                Err(e) => {
                    // One line per request, not per topic: a request may name thousands.
                    if failed == 0 {
                        tracing::warn!(topic = %name, error = %e, "auto-create failed");
                    }
                    failed += 1;
                }
            }
        }
        if failed > 1 {
            tracing::warn!(
                failed,
                client = ctx.client_id(),
                "auto-create failed for topics"
            );
        }
        return;
    }
    let request = CreateTopicsRequest::default()
        .with_timeout_ms(30_000)
        .with_topics(
            topics
                .iter()
                .map(|t| {
                    CreatableTopic::default()
                        .with_name(TopicName(str_bytes(&t.name)))
                        .with_num_partitions(-1)
                        .with_replication_factor(-1)
                })
                .collect(),
        );
    match broker.send_to_controller(&request, 7).await {
        Ok(resp) => {
            let mut failed = 0usize;
            for t in resp.topics {
                if t.error_code == 0 {
                    tracing::info!(topic = %t.name.0, client = ctx.client_id(), "auto-created topic");
                } else if t.error_code != ResponseError::TopicAlreadyExists.code() {
                    if failed == 0 {
                        tracing::warn!(topic = %t.name.0, code = t.error_code, "auto-create failed");
                    }
                    failed += 1;
                }
            }
            if failed > 1 {
                tracing::warn!(
                    failed,
                    client = ctx.client_id(),
                    "auto-create failed for topics"
                );
            }
            // Give the records a moment to reach this node's image.
            let deadline = tokio::time::Instant::now() + std::time::Duration::from_millis(500);
            while tokio::time::Instant::now() < deadline
                && topics
                    .iter()
                    .any(|t| broker.image().topic(&t.name).is_none())
            {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
        Err(e) => tracing::warn!(error = %e, "auto-create failed"),
    }
}

/// The controller id clients are told: in KRaft clients cannot reach the controllers, so Kafka
/// names a live broker; here the active controller when it is a live broker, as every node is
/// both, else the lowest live broker.
pub fn controller_id_for_clients(ctx: &RequestContext, image: &MetadataImage) -> i32 {
    let active = ctx.broker.controller.active_controller_id();
    if image.live_brokers().any(|b| b.broker_id == active) {
        return active;
    }
    image
        .live_brokers()
        .map(|b| b.broker_id)
        .next()
        .unwrap_or(-1)
}
