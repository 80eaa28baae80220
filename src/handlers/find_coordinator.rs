//! FindCoordinator (key 10): a group's coordinator is the leader of its partition of
//! `__consumer_offsets` (v0-3 one key, v4+ a batch of keys). The first request for a group
//! creates the topic through the controller and answers COORDINATOR_NOT_AVAILABLE, so the
//! client retries once the partitions have leaders, as with Kafka. The topic is created at
//! `offsets.topic.replication.factor` or not at all: while fewer brokers are alive the
//! controller refuses it (INVALID_REPLICATION_FACTOR) and every FindCoordinator answers
//! COORDINATOR_NOT_AVAILABLE, as Kafka's `AutoTopicCreationManager` does; a topic created
//! smaller would stay under-replicated for good. Transactions and share groups are not
//! coordinated here.

use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{
    BrokerId, CreateTopicsRequest, FindCoordinatorRequest, FindCoordinatorResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::{str_bytes, RequestContext};
use crate::broker::Broker;
use crate::controller::{NewTopic, RequestTimeout};
use crate::group::{GroupCoordinator, OFFSETS_TOPIC};
use crate::metadata::MetadataImage;

/// FindCoordinator's key type for consumer groups.
const KEY_TYPE_GROUP: i8 = 0;

pub fn handle(ctx: &RequestContext, req: FindCoordinatorRequest) -> FindCoordinatorResponse {
    let image = ctx.broker.image();
    if req.key_type == KEY_TYPE_GROUP && image.topic(OFFSETS_TOPIC).is_none() {
        start_offsets_topic_creation(ctx);
    }
    let answer = |key: &StrBytes| -> Coordinator {
        let c = Coordinator::default().with_key(key.clone());
        let failed = |c: Coordinator, e: ResponseError, message: Option<&str>| {
            c.with_error_code(e.code())
                .with_error_message(message.map(str_bytes))
                .with_node_id(BrokerId(-1))
                .with_port(-1)
        };
        if req.key_type != KEY_TYPE_GROUP {
            return failed(
                c,
                ResponseError::InvalidRequest,
                Some("Only consumer group coordinators are served by this broker"),
            );
        }
        if key.is_empty() {
            return failed(c, ResponseError::InvalidGroupId, None);
        }
        match coordinator_of(&image, key) {
            Some((node_id, host, port)) => c
                .with_node_id(BrokerId(node_id))
                .with_host(str_bytes(&host))
                .with_port(port as i32),
            None => failed(
                c,
                ResponseError::CoordinatorNotAvailable,
                Some("The coordinator is not available."),
            ),
        }
    };
    if ctx.api_version >= 4 {
        return FindCoordinatorResponse::default()
            .with_coordinators(req.coordinator_keys.iter().map(answer).collect());
    }
    let c = answer(&req.key);
    let mut resp = FindCoordinatorResponse::default()
        .with_error_code(c.error_code)
        .with_node_id(c.node_id)
        .with_host(c.host)
        .with_port(c.port);
    if ctx.api_version >= 1 {
        resp = resp.with_error_message(c.error_message);
    }
    resp
}

/// The live leader of the group's offsets partition and its client endpoint.
fn coordinator_of(image: &MetadataImage, group_id: &str) -> Option<(i32, String, u16)> {
    let partition = GroupCoordinator::partition_for(image, group_id)?;
    let leader = image
        .topic(OFFSETS_TOPIC)?
        .partitions
        .get(&partition)?
        .leader;
    let broker = image.brokers.get(&leader).filter(|b| !b.fenced)?;
    let ep = broker.endpoints.first()?;
    Some((leader, ep.host.clone(), ep.port))
}

/// Creates `__consumer_offsets` in the background (one attempt at a time per node).
fn start_offsets_topic_creation(ctx: &RequestContext) {
    let gc = &ctx.broker.group_coordinator;
    if !gc.try_begin_topic_creation() {
        return;
    }
    let broker = ctx.broker.clone();
    tokio::spawn(async move {
        create_offsets_topic(&broker).await;
        broker.group_coordinator.finish_topic_creation();
    });
}

async fn create_offsets_topic(broker: &Broker) {
    let config = broker.group_coordinator.config().clone();
    let replication_factor = config.offsets_topic_replication_factor;
    let live = broker.image().live_brokers().count();
    if live < replication_factor.max(0) as usize {
        // The controller would refuse it; spare it the request a client retry would repeat.
        tracing::debug!(
            live,
            replication_factor,
            "not creating {OFFSETS_TOPIC} until offsets.topic.replication.factor brokers are alive"
        );
        return;
    }
    let configs = [
        ("cleanup.policy".to_string(), "compact".to_string()),
        (
            "segment.bytes".to_string(),
            config.offsets_topic_segment_bytes.to_string(),
        ),
        ("compression.type".to_string(), "producer".to_string()),
    ];
    tracing::info!(
        partitions = config.offsets_topic_num_partitions,
        replication_factor,
        "creating {OFFSETS_TOPIC}"
    );
    let error = if broker.controller.is_active() {
        let topic = NewTopic {
            name: OFFSETS_TOPIC.to_string(),
            num_partitions: config.offsets_topic_num_partitions,
            replication_factor,
            assignments: vec![],
            configs: configs
                .iter()
                .map(|(k, v)| (k.clone(), Some(v.clone())))
                .collect(),
        };
        broker
            .controller
            .create_topics(vec![topic], false, RequestTimeout::Quorum)
            .await
            .into_iter()
            .find_map(|(_, r)| r.err())
            .map(|e| (e.code, e.to_string()))
    } else {
        let request = CreateTopicsRequest::default()
            .with_timeout_ms(30_000)
            .with_topics(vec![CreatableTopic::default()
                .with_name(TopicName(str_bytes(OFFSETS_TOPIC)))
                .with_num_partitions(config.offsets_topic_num_partitions)
                .with_replication_factor(replication_factor)
                .with_configs(
                    configs
                        .iter()
                        .map(|(k, v)| {
                            CreatableTopicConfig::default()
                                .with_name(str_bytes(k))
                                .with_value(Some(str_bytes(v)))
                        })
                        .collect(),
                )]);
        match broker.send_to_controller(&request, 7).await {
            Ok(resp) => resp
                .topics
                .into_iter()
                .find_map(|t| ResponseError::try_from_code(t.error_code))
                .map(|e| (e, String::new())),
            Err(e) => Some((e.code, e.to_string())),
        }
    };
    match error {
        None => tracing::info!("created {OFFSETS_TOPIC}"),
        Some((ResponseError::TopicAlreadyExists, _)) => {}
        Some((ResponseError::InvalidReplicationFactor, message)) => {
            // Fewer live brokers than offsets.topic.replication.factor, as the controller
            // counts them: clients keep getting COORDINATOR_NOT_AVAILABLE meanwhile.
            tracing::info!(
                message,
                "cannot create {OFFSETS_TOPIC} yet; a later FindCoordinator retries"
            )
        }
        Some((code, message)) => {
            tracing::warn!(error = %code, message, "cannot create {OFFSETS_TOPIC}; a later FindCoordinator retries")
        }
    }
}
