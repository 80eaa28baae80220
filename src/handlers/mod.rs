//! Request dispatch: one module per Kafka API, and the single table of supported versions
//! that both gates requests and answers ApiVersions.

pub mod add_offsets_to_txn;
pub mod add_partitions_to_txn;
pub mod allocate_producer_ids;
pub mod alter_partition;
pub mod api_versions;
pub mod broker_heartbeat;
pub mod broker_registration;
pub mod create_partitions;
pub mod create_topics;
pub mod delete_groups;
pub mod delete_records;
pub mod delete_topics;
pub mod describe_cluster;
pub mod describe_configs;
pub mod describe_groups;
pub mod describe_quorum;
pub mod describe_topic_partitions;
pub mod describe_transactions;
pub mod elect_leaders;
pub mod end_txn;
pub mod fetch;
pub mod find_coordinator;
pub mod heartbeat;
pub mod incremental_alter_configs;
pub mod init_producer_id;
pub mod join_group;
pub mod leave_group;
pub mod list_groups;
pub mod list_offsets;
pub mod list_partition_reassignments;
pub mod list_transactions;
pub mod metadata;
pub mod offset_commit;
pub mod offset_delete;
pub mod offset_fetch;
pub mod offset_for_leader_epoch;
pub mod produce;
pub mod sync_group;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseKind};
use kafka_protocol::protocol::{Decodable, StrBytes};

use crate::broker::Broker;
use crate::net::connection::{PendingResponse, Reply};
use crate::net::frame::encode_response;

/// Which kind of listener a connection arrived on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListenerKind {
    /// Client traffic: producers, consumers, admin clients.
    Broker,
    /// Controller traffic: Raft RPCs, broker registration and heartbeats, forwarded
    /// controller requests, and admin clients using `--bootstrap-controller`.
    Controller,
}

/// An API this node implements, the versions it accepts, and where it serves it.
pub struct ApiSupport {
    pub key: ApiKey,
    /// Lowest version advertised in ApiVersions.
    pub min_advertised: i16,
    /// Lowest version actually served; below it the connection is closed (KIP-896).
    pub min_served: i16,
    pub max: i16,
    pub on_broker: bool,
    pub on_controller: bool,
}

impl ApiSupport {
    pub fn served_on(&self, listener: ListenerKind) -> bool {
        match listener {
            ListenerKind::Broker => self.on_broker,
            ListenerKind::Controller => self.on_controller,
        }
    }
}

/// Served on the client listener only.
const fn broker(key: ApiKey, min: i16, max: i16) -> ApiSupport {
    ApiSupport {
        key,
        min_advertised: min,
        min_served: min,
        max,
        on_broker: true,
        on_controller: false,
    }
}

/// Served on the controller listener only.
const fn controller(key: ApiKey, min: i16, max: i16) -> ApiSupport {
    ApiSupport {
        key,
        min_advertised: min,
        min_served: min,
        max,
        on_broker: false,
        on_controller: true,
    }
}

/// Served on both listeners.
const fn both(key: ApiKey, min: i16, max: i16) -> ApiSupport {
    ApiSupport {
        key,
        min_advertised: min,
        min_served: min,
        max,
        on_broker: true,
        on_controller: true,
    }
}

/// Every API Gregor serves. Produce advertises v0 because librdkafka refuses a broker whose
/// Produce range starts higher, but v0-2 are rejected as Apache Kafka 4.x rejects them.
pub const SUPPORTED_APIS: &[ApiSupport] = &[
    ApiSupport {
        key: ApiKey::Produce,
        min_advertised: 0,
        min_served: 3,
        max: 12,
        on_broker: true,
        on_controller: false,
    },
    broker(ApiKey::Fetch, 4, 17),
    broker(ApiKey::ListOffsets, 1, 10),
    broker(ApiKey::Metadata, 0, 13),
    broker(ApiKey::OffsetCommit, 2, 9),
    broker(ApiKey::OffsetFetch, 1, 9),
    broker(ApiKey::FindCoordinator, 0, 6),
    broker(ApiKey::JoinGroup, 0, 9),
    broker(ApiKey::Heartbeat, 0, 4),
    broker(ApiKey::LeaveGroup, 0, 5),
    broker(ApiKey::SyncGroup, 0, 5),
    broker(ApiKey::DescribeGroups, 0, 5),
    broker(ApiKey::ListGroups, 0, 5),
    broker(ApiKey::DeleteGroups, 0, 2),
    broker(ApiKey::OffsetDelete, 0, 0),
    both(ApiKey::ApiVersions, 0, 4),
    both(ApiKey::CreateTopics, 2, 7),
    both(ApiKey::DeleteTopics, 1, 6),
    broker(ApiKey::DeleteRecords, 0, 2),
    broker(ApiKey::InitProducerId, 0, 5),
    broker(ApiKey::OffsetForLeaderEpoch, 2, 4),
    both(ApiKey::DescribeConfigs, 1, 4),
    both(ApiKey::CreatePartitions, 0, 3),
    both(ApiKey::IncrementalAlterConfigs, 0, 1),
    broker(ApiKey::ListPartitionReassignments, 0, 0),
    both(ApiKey::ElectLeaders, 0, 2),
    both(ApiKey::DescribeQuorum, 0, 2),
    both(ApiKey::DescribeCluster, 0, 2),
    controller(ApiKey::BrokerRegistration, 0, 4),
    controller(ApiKey::BrokerHeartbeat, 0, 1),
    controller(ApiKey::AllocateProducerIds, 0, 0),
    controller(ApiKey::AlterPartition, 2, 3),
    broker(ApiKey::DescribeTopicPartitions, 0, 0),
    broker(ApiKey::AddPartitionsToTxn, 0, 5),
    broker(ApiKey::AddOffsetsToTxn, 0, 4),
    broker(ApiKey::EndTxn, 0, 5),
    broker(ApiKey::DescribeTransactions, 0, 0),
    broker(ApiKey::ListTransactions, 0, 1),
];

pub fn support_for(key: ApiKey, listener: ListenerKind) -> Option<&'static ApiSupport> {
    SUPPORTED_APIS
        .iter()
        .find(|a| a.key == key && a.served_on(listener))
}

/// What a handler needs to know about the request it serves.
pub struct RequestContext {
    pub broker: Arc<Broker>,
    pub header: RequestHeader,
    pub api_key: ApiKey,
    pub api_version: i16,
    pub peer: SocketAddr,
    pub listener: ListenerKind,
}

impl RequestContext {
    /// Encodes a response body into a frame, or closes the connection if it cannot be
    /// encoded at the request's version (a bug, logged loudly).
    pub fn reply(&self, body: ResponseKind) -> Reply {
        let header_version = self.api_key.response_header_version(self.api_version);
        match encode_response(
            self.header.correlation_id,
            self.api_version,
            header_version,
            &body,
        ) {
            Ok(frame) => Reply::Frame(frame),
            Err(e) => {
                tracing::error!(api = ?self.api_key, version = self.api_version, error = %e, "cannot encode response; closing connection");
                Reply::Close
            }
        }
    }

    /// Whether the request came from another Gregor node's controller channel; such requests
    /// are never forwarded again (no forwarding loops during an election).
    pub fn is_from_broker(&self) -> bool {
        self.client_id().starts_with("gregor-broker-")
    }

    pub fn client_id(&self) -> &str {
        self.header
            .client_id
            .as_ref()
            .map(|s| s.as_str())
            .unwrap_or("")
    }
}

fn ready(reply: Reply) -> PendingResponse {
    Box::pin(async move { reply })
}

fn close(peer: SocketAddr, why: &str) -> PendingResponse {
    tracing::info!(%peer, why, "closing connection");
    ready(Reply::Close)
}

/// Parses one request frame and starts serving it. Requests are started in arrival order;
/// the returned future finishes the response.
pub async fn dispatch(
    broker: &Arc<Broker>,
    frame: Bytes,
    peer: SocketAddr,
    listener: ListenerKind,
) -> PendingResponse {
    if frame.len() < 8 {
        return close(peer, "request shorter than a request header");
    }
    let raw_key = i16::from_be_bytes([frame[0], frame[1]]);
    if raw_key == gregor_raft::RAFT_RPC_API_KEY && listener == ListenerKind::Controller {
        let quorum = broker.quorum.clone();
        return Box::pin(async move {
            Reply::Frame(with_size_prefix(&quorum.handle_rpc_frame(frame).await))
        });
    }
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let Ok(api_key) = ApiKey::try_from(raw_key) else {
        return close(peer, "unknown api key");
    };
    let Some(support) = support_for(api_key, listener) else {
        tracing::debug!(%peer, ?api_key, "unsupported api");
        return close(peer, "api not supported by this broker");
    };
    if version < support.min_served || version > support.max {
        if api_key == ApiKey::ApiVersions {
            // KIP-511: answer an unknown ApiVersions version with v0 and our key list, so the
            // client can pick a version it shares with us.
            return ready(api_versions::unsupported_version_reply(
                correlation_id,
                listener,
            ));
        }
        tracing::info!(%peer, ?api_key, version, "unsupported version");
        return close(peer, "unsupported api version");
    }
    let mut buf = frame;
    let header_version = api_key.request_header_version(version);
    let header = match RequestHeader::decode(&mut buf, header_version) {
        Ok(h) => h,
        Err(_) => return close(peer, "malformed request header"),
    };
    let request = match RequestKind::decode(api_key, &mut buf, version) {
        Ok(r) => r,
        Err(e) => {
            tracing::info!(%peer, ?api_key, version, error = %e, "malformed request body");
            return close(peer, "malformed request body");
        }
    };
    let ctx = RequestContext {
        broker: broker.clone(),
        header,
        api_key,
        api_version: version,
        peer,
        listener,
    };
    match request {
        RequestKind::ApiVersions(r) => {
            ready(ctx.reply(ResponseKind::ApiVersions(api_versions::handle(&ctx, r))))
        }
        RequestKind::Metadata(r) => {
            let resp = metadata::handle(&ctx, r).await;
            ready(ctx.reply(ResponseKind::Metadata(resp)))
        }
        RequestKind::Produce(r) => produce::handle(ctx, r).await,
        RequestKind::Fetch(r) => fetch::handle(ctx, r),
        RequestKind::ListOffsets(r) => {
            ready(ctx.reply(ResponseKind::ListOffsets(list_offsets::handle(&ctx, r))))
        }
        RequestKind::CreateTopics(r) => {
            let resp = create_topics::handle(&ctx, r).await;
            ready(ctx.reply(ResponseKind::CreateTopics(resp)))
        }
        RequestKind::DeleteTopics(r) => {
            let resp = delete_topics::handle(&ctx, r).await;
            ready(ctx.reply(ResponseKind::DeleteTopics(resp)))
        }
        RequestKind::CreatePartitions(r) => {
            let resp = create_partitions::handle(&ctx, r).await;
            ready(ctx.reply(ResponseKind::CreatePartitions(resp)))
        }
        RequestKind::DeleteRecords(r) => {
            ready(ctx.reply(ResponseKind::DeleteRecords(delete_records::handle(&ctx, r))))
        }
        RequestKind::InitProducerId(r) => {
            let resp = init_producer_id::handle(&ctx, r).await;
            ready(ctx.reply(ResponseKind::InitProducerId(resp)))
        }
        RequestKind::OffsetForLeaderEpoch(r) => ready(ctx.reply(
            ResponseKind::OffsetForLeaderEpoch(offset_for_leader_epoch::handle(&ctx, r)),
        )),
        RequestKind::DescribeConfigs(r) => {
            let resp = describe_configs::handle(&ctx, r).await;
            ready(ctx.reply(ResponseKind::DescribeConfigs(resp)))
        }
        RequestKind::IncrementalAlterConfigs(r) => {
            let resp = incremental_alter_configs::handle(&ctx, r).await;
            ready(ctx.reply(ResponseKind::IncrementalAlterConfigs(resp)))
        }
        RequestKind::ListPartitionReassignments(r) => ready(ctx.reply(
            ResponseKind::ListPartitionReassignments(list_partition_reassignments::handle(&ctx, r)),
        )),
        RequestKind::DescribeCluster(r) => ready(ctx.reply(ResponseKind::DescribeCluster(
            describe_cluster::handle(&ctx, r),
        ))),
        RequestKind::DescribeQuorum(r) => {
            let resp = describe_quorum::handle(&ctx, r).await;
            ready(ctx.reply(ResponseKind::DescribeQuorum(resp)))
        }
        RequestKind::BrokerRegistration(r) => {
            let resp = broker_registration::handle(&ctx, r).await;
            ready(ctx.reply(ResponseKind::BrokerRegistration(resp)))
        }
        RequestKind::BrokerHeartbeat(r) => {
            let resp = broker_heartbeat::handle(&ctx, r).await;
            ready(ctx.reply(ResponseKind::BrokerHeartbeat(resp)))
        }
        RequestKind::ElectLeaders(r) => {
            let resp = elect_leaders::handle(&ctx, r).await;
            ready(ctx.reply(ResponseKind::ElectLeaders(resp)))
        }
        RequestKind::AlterPartition(r) => {
            let resp = alter_partition::handle(&ctx, r).await;
            ready(ctx.reply(ResponseKind::AlterPartition(resp)))
        }
        RequestKind::AllocateProducerIds(r) => {
            let resp = allocate_producer_ids::handle(&ctx, r).await;
            ready(ctx.reply(ResponseKind::AllocateProducerIds(resp)))
        }
        RequestKind::AddPartitionsToTxn(r) => {
            let resp = add_partitions_to_txn::handle(&ctx, r).await;
            ready(ctx.reply(ResponseKind::AddPartitionsToTxn(resp)))
        }
        RequestKind::AddOffsetsToTxn(r) => {
            let resp = add_offsets_to_txn::handle(&ctx, r).await;
            ready(ctx.reply(ResponseKind::AddOffsetsToTxn(resp)))
        }
        RequestKind::EndTxn(r) => {
            let resp = end_txn::handle(&ctx, r).await;
            ready(ctx.reply(ResponseKind::EndTxn(resp)))
        }
        RequestKind::DescribeTransactions(r) => ready(ctx.reply(
            ResponseKind::DescribeTransactions(describe_transactions::handle(&ctx, r)),
        )),
        RequestKind::ListTransactions(r) => ready(ctx.reply(ResponseKind::ListTransactions(
            list_transactions::handle(&ctx, r),
        ))),
        RequestKind::FindCoordinator(r) => ready(ctx.reply(ResponseKind::FindCoordinator(
            find_coordinator::handle(&ctx, r),
        ))),
        RequestKind::JoinGroup(r) => join_group::handle(ctx, r),
        RequestKind::SyncGroup(r) => sync_group::handle(ctx, r),
        RequestKind::Heartbeat(r) => {
            ready(ctx.reply(ResponseKind::Heartbeat(heartbeat::handle(&ctx, r))))
        }
        RequestKind::LeaveGroup(r) => {
            ready(ctx.reply(ResponseKind::LeaveGroup(leave_group::handle(&ctx, r))))
        }
        RequestKind::OffsetCommit(r) => offset_commit::handle(ctx, r),
        RequestKind::DeleteGroups(r) => delete_groups::handle(ctx, r),
        RequestKind::OffsetDelete(r) => offset_delete::handle(ctx, r),
        RequestKind::OffsetFetch(r) => {
            ready(ctx.reply(ResponseKind::OffsetFetch(offset_fetch::handle(&ctx, r))))
        }
        RequestKind::ListGroups(r) => {
            ready(ctx.reply(ResponseKind::ListGroups(list_groups::handle(&ctx, r))))
        }
        RequestKind::DescribeGroups(r) => ready(ctx.reply(ResponseKind::DescribeGroups(
            describe_groups::handle(&ctx, r),
        ))),
        RequestKind::DescribeTopicPartitions(r) => ready(ctx.reply(
            ResponseKind::DescribeTopicPartitions(describe_topic_partitions::handle(&ctx, r)),
        )),
        other => {
            tracing::error!(%peer, api = ?api_key, "supported api without a handler: {:?}", std::mem::discriminant(&other));
            close(peer, "no handler")
        }
    }
}

/// A frame body with its 4-byte size in front.
fn with_size_prefix(body: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(body.len() + 4);
    out.extend_from_slice(&(body.len() as i32).to_be_bytes());
    out.extend_from_slice(body);
    Bytes::from(out)
}

/// `Some(StrBytes)` of a message, for error_message fields.
pub fn message(m: &Option<String>) -> Option<StrBytes> {
    m.as_ref().map(|s| StrBytes::from_string(s.clone()))
}

pub fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}
