//! Produce (key 0): append each partition's batch on its leader, then answer per `acks`:
//! 0 = no response, 1 = once the leader appended, -1 = once the ISR holds it (the HW passed it).
//!
//! Each batch is validated as Kafka's LogValidator does (`gregor_storage::validator`, run by
//! the partition); a refusal is that partition's error code, with KIP-467's `record_errors`
//! and `error_message` when particular records failed. Request-level rules come first, as in
//! `KafkaApis.handleProduceRequest` and `ProduceRequest.validateRecords`.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use bytes::Bytes;
use gregor_storage::BatchHeader;
use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse, ResponseKind, TopicName};
use kafka_protocol::ResponseError;

use super::{message, str_bytes, RequestContext};
use crate::error::ApiError;
use crate::net::connection::{PendingResponse, Reply};
use crate::replica::{
    AppendResult, Partition, ReplicaManager, TopicPartition, ACKS_ALL, ACKS_LEADER, ACKS_NONE,
};

/// One partition's outcome: appended (maybe still waiting for the ISR) or failed.
enum PartitionOutcome {
    Appended {
        partition: Arc<Partition>,
        result: AppendResult,
    },
    Failed(ApiError),
}

pub async fn handle(ctx: RequestContext, req: ProduceRequest) -> PendingResponse {
    let acks = req.acks;
    // Kafka refuses transactional batches outside a transactional producer's request before
    // looking at partitions (it answers as though the transactional id were unauthorized).
    if req.transactional_id.is_none() && has_transactional_records(&req) {
        return respond_all(
            ctx,
            req,
            ApiError::new(ResponseError::TransactionalIdAuthorizationFailed),
        );
    }
    if acks != ACKS_NONE && acks != ACKS_LEADER && acks != ACKS_ALL {
        return respond_all(ctx, req, ApiError::new(ResponseError::InvalidRequiredAcks));
    }
    let image = ctx.broker.image();
    let rm = &ctx.broker.replica_manager;
    // Appends happen now, in request order; only the wait for the ISR is deferred.
    let mut outcomes: Vec<(String, Vec<(i32, PartitionOutcome)>)> =
        Vec::with_capacity(req.topic_data.len());
    for topic in &req.topic_data {
        let name = topic.name.0.to_string();
        let mut parts = Vec::with_capacity(topic.partition_data.len());
        for p in &topic.partition_data {
            let tp = TopicPartition::new(name.clone(), p.index);
            let outcome = match &p.records {
                None => PartitionOutcome::Failed(ApiError::with_message(
                    ResponseError::InvalidRecord,
                    "No records",
                )),
                Some(records) => match check_compression(records, ctx.api_version)
                    .and_then(|()| rm.append(&image, &tp, records, acks))
                {
                    Ok((partition, result)) => PartitionOutcome::Appended { partition, result },
                    Err(e) => {
                        tracing::debug!(topic = %name, partition = p.index, error = %e, "produce failed");
                        PartitionOutcome::Failed(e)
                    }
                },
            };
            parts.push((p.index, outcome));
        }
        outcomes.push((name, parts));
    }
    if acks == ACKS_NONE {
        return Box::pin(async { Reply::Nothing });
    }
    let deadline = Instant::now() + Duration::from_millis(req.timeout_ms.max(0) as u64);
    Box::pin(async move {
        let mut responses = Vec::with_capacity(outcomes.len());
        for (topic, parts) in outcomes {
            let mut partition_responses = Vec::with_capacity(parts.len());
            for (index, outcome) in parts {
                let response = match outcome {
                    PartitionOutcome::Failed(e) => error_response(index, &e),
                    PartitionOutcome::Appended { partition, result } => {
                        // acks=all is acknowledged only once every ISR member holds the batch:
                        // the HW covers it. acks=1: the leader's log (page cache) holds it.
                        let waited = if acks == ACKS_ALL {
                            ReplicaManager::wait_for_high_watermark(
                                &partition,
                                result.leader_epoch,
                                result.last_offset + 1,
                                deadline,
                            )
                            .await
                        } else {
                            Ok(())
                        };
                        match waited {
                            Ok(()) => PartitionProduceResponse::default()
                                .with_index(index)
                                .with_base_offset(result.base_offset)
                                .with_log_append_time_ms(result.log_append_time_ms)
                                .with_log_start_offset(result.log_start_offset),
                            Err(e) => error_response(index, &e),
                        }
                    }
                };
                partition_responses.push(response);
            }
            responses.push(
                TopicProduceResponse::default()
                    .with_name(TopicName(str_bytes(&topic)))
                    .with_partition_responses(partition_responses),
            );
        }
        ctx.reply(ResponseKind::Produce(
            ProduceResponse::default().with_responses(responses),
        ))
    })
}

fn error_response(index: i32, e: &ApiError) -> PartitionProduceResponse {
    PartitionProduceResponse::default()
        .with_index(index)
        .with_error_code(e.code())
        .with_base_offset(-1)
        .with_error_message(message(&e.message))
        .with_record_errors(
            e.record_errors
                .iter()
                .map(|r| {
                    BatchIndexAndErrorMessage::default()
                        .with_batch_index(r.batch_index)
                        .with_batch_index_error_message(Some(str_bytes(&r.message)))
                })
                .collect(),
        )
}

/// Whether any partition's first batch is transactional (Kafka's
/// `ProduceRequest.hasTransactionalRecords`, which reads the first batch header only).
fn has_transactional_records(req: &ProduceRequest) -> bool {
    req.topic_data
        .iter()
        .flat_map(|t| t.partition_data.iter())
        .filter_map(|p| p.records.as_ref())
        .filter_map(|records| BatchHeader::parse(records).ok())
        .any(|header| header.is_transactional())
}

/// The codec id of zstd in batch attributes.
const ZSTD: u8 = 4;

/// Zstd batches need Produce v7+ (KIP-110, Kafka's `ProduceRequest.validateRecords`).
fn check_compression(records: &Bytes, api_version: i16) -> Result<(), ApiError> {
    let zstd = BatchHeader::parse(records).is_ok_and(|h| h.compression() == ZSTD);
    if zstd && api_version < 7 {
        return Err(ApiError::with_message(
            ResponseError::UnsupportedCompressionType,
            format!("Produce requests with version {api_version} are not allowed to use ZStandard compression"),
        ));
    }
    Ok(())
}

/// Answers every partition with the same error.
fn respond_all(ctx: RequestContext, req: ProduceRequest, e: ApiError) -> PendingResponse {
    if req.acks == ACKS_NONE {
        return Box::pin(async { Reply::Nothing });
    }
    let responses = req
        .topic_data
        .iter()
        .map(|t| {
            TopicProduceResponse::default()
                .with_name(t.name.clone())
                .with_topic_id(t.topic_id)
                .with_partition_responses(
                    t.partition_data
                        .iter()
                        .map(|p| error_response(p.index, &e))
                        .collect(),
                )
        })
        .collect();
    let reply = ctx.reply(ResponseKind::Produce(
        ProduceResponse::default().with_responses(responses),
    ));
    Box::pin(async move { reply })
}
