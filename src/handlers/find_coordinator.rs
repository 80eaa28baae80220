//! FindCoordinator (key 10): a group's coordinator is the leader of its partition of
//! `__consumer_offsets` (v0-3 one key, v4+ a batch of keys). The first request for a group
//! creates the topic through the controller and answers COORDINATOR_NOT_AVAILABLE, so the
//! client retries once the partitions have leaders, as with Kafka. The topic is created at
//! `offsets.topic.replication.factor` or not at all: while fewer brokers are alive the
//! controller refuses it (INVALID_REPLICATION_FACTOR) and every FindCoordinator answers
//! COORDINATOR_NOT_AVAILABLE, as Kafka's `AutoTopicCreationManager` does; a topic created
//! smaller would stay under-replicated for good. Key type 1 (TRANSACTION) does the same
//! with `__transaction_state` and the transaction coordinator (`crate::txn`). Share groups
//! are not coordinated here.

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
use crate::txn::{TransactionCoordinator, TRANSACTION_STATE_TOPIC};

/// FindCoordinator's key type for consumer groups.
const KEY_TYPE_GROUP: i8 = 0;
/// FindCoordinator's key type for transactional ids.
const KEY_TYPE_TRANSACTION: i8 = 1;

pub fn handle(ctx: &RequestContext, req: FindCoordinatorRequest) -> FindCoordinatorResponse {
    let image = ctx.broker.image();
    if req.key_type == KEY_TYPE_GROUP && image.topic(OFFSETS_TOPIC).is_none() {
        start_offsets_topic_creation(ctx);
    }
    if req.key_type == KEY_TYPE_TRANSACTION && image.topic(TRANSACTION_STATE_TOPIC).is_none() {
        start_transaction_topic_creation(ctx);
    }
    let answer = |key: &StrBytes| -> Coordinator {
        let c = Coordinator::default().with_key(key.clone());
        let failed = |c: Coordinator, e: ResponseError, message: Option<&str>| {
            c.with_error_code(e.code())
                .with_error_message(message.map(str_bytes))
                .with_node_id(BrokerId(-1))
                .with_port(-1)
        };
        let found = match req.key_type {
            KEY_TYPE_GROUP if key.is_empty() => {
                return failed(c, ResponseError::InvalidGroupId, None)
            }
            KEY_TYPE_GROUP => coordinator_of(
                &image,
                OFFSETS_TOPIC,
                GroupCoordinator::partition_for(&image, key),
            ),
            // Kafka answers an empty transactional id with INVALID_REQUEST.
            KEY_TYPE_TRANSACTION if key.is_empty() => {
                return failed(c, ResponseError::InvalidRequest, None)
            }
            KEY_TYPE_TRANSACTION => coordinator_of(
                &image,
                TRANSACTION_STATE_TOPIC,
                TransactionCoordinator::partition_for(&image, key),
            ),
            _ => {
                return failed(
                    c,
                    ResponseError::InvalidRequest,
                    Some("Only group and transaction coordinators are served by this broker"),
                )
            }
        };
        match found {
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

/// The live leader of the key's partition of an internal topic and its client endpoint.
fn coordinator_of(
    image: &MetadataImage,
    topic: &str,
    partition: Option<i32>,
) -> Option<(i32, String, u16)> {
    let partition = partition?;
    let leader = image.topic(topic)?.partitions.get(&partition)?.leader;
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

/// Creates `__transaction_state` in the background (one attempt at a time per node).
fn start_transaction_topic_creation(ctx: &RequestContext) {
    let tc = &ctx.broker.txn_coordinator;
    if !tc.try_begin_topic_creation() {
        return;
    }
    let broker = ctx.broker.clone();
    tokio::spawn(async move {
        let c = broker.txn_coordinator.config().clone();
        let configs = vec![
            ("cleanup.policy".to_string(), "compact".to_string()),
            ("min.insync.replicas".to_string(), c.min_isr.to_string()),
            ("segment.bytes".to_string(), c.segment_bytes.to_string()),
            (
                "unclean.leader.election.enable".to_string(),
                "false".to_string(),
            ),
            ("compression.type".to_string(), "uncompressed".to_string()),
        ];
        create_internal_topic(
            &broker,
            TRANSACTION_STATE_TOPIC,
            c.num_partitions,
            c.replication_factor,
            configs,
        )
        .await;
        broker.txn_coordinator.finish_topic_creation();
    });
}

async fn create_offsets_topic(broker: &Broker) {
    let config = broker.group_coordinator.config().clone();
    let configs = vec![
        ("cleanup.policy".to_string(), "compact".to_string()),
        (
            "segment.bytes".to_string(),
            config.offsets_topic_segment_bytes.to_string(),
        ),
        ("compression.type".to_string(), "producer".to_string()),
    ];
    create_internal_topic(
        broker,
        OFFSETS_TOPIC,
        config.offsets_topic_num_partitions,
        config.offsets_topic_replication_factor,
        configs,
    )
    .await;
}

/// Creates an internal topic at exactly `replication_factor`, through the controller.
async fn create_internal_topic(
    broker: &Broker,
    name: &str,
    num_partitions: i32,
    replication_factor: i16,
    configs: Vec<(String, String)>,
) {
    let live = broker.image().live_brokers().count();
    if live < replication_factor.max(0) as usize {
        // The controller would refuse it; spare it the request a client retry would repeat.
        tracing::debug!(
            live,
            replication_factor,
            "not creating {name} until its replication factor of brokers are alive"
        );
        return;
    }
    tracing::info!(
        partitions = num_partitions,
        replication_factor,
        "creating {name}"
    );
    let error = if broker.controller.is_active() {
        let topic = NewTopic {
            name: name.to_string(),
            num_partitions,
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
                .with_name(TopicName(str_bytes(name)))
                .with_num_partitions(num_partitions)
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
        None => tracing::info!("created {name}"),
        Some((ResponseError::TopicAlreadyExists, _)) => {}
        Some((ResponseError::InvalidReplicationFactor, message)) => {
            // Fewer live brokers than its replication factor, as the controller
            // counts them: clients keep getting COORDINATOR_NOT_AVAILABLE meanwhile.
            tracing::info!(
                message,
                "cannot create {name} yet; a later FindCoordinator retries"
            )
        }
        Some((code, message)) => {
            tracing::warn!(error = %code, message, "cannot create {name}; a later FindCoordinator retries")
        }
    }
}
