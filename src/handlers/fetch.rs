//! Fetch (key 1): whole batches below the high watermark, long-polled like Kafka's
//! `DelayedFetch`: the response waits until `min_bytes` are available or `max_wait_ms`
//! passes, and is cut at `max_bytes` overall and `partition_max_bytes` per partition.
//! `max_bytes` is capped by the broker's `fetch.max.bytes` (as Kafka's KafkaApis does), and
//! reads are sized by the data really present, so a request asking for 2 GiB costs no more
//! than one asking for what the log holds.
//!
//! Fetch sessions (KIP-227) are declined by answering session id 0, which tells the client
//! to keep sending full fetch requests.

use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::fetch_response::{
    EpochEndOffset, FetchableTopicResponse, PartitionData,
};
use kafka_protocol::messages::{FetchRequest, FetchResponse, ResponseKind};
use kafka_protocol::ResponseError;
use tokio::time::Instant;

use super::RequestContext;
use crate::net::connection::PendingResponse;
use crate::replica::{FollowerFetch, FollowerRead, TopicPartition};

/// Upper bound on a single long poll, whatever the client asks.
const MAX_WAIT_MS_LIMIT: i32 = 60_000;

pub fn handle(ctx: RequestContext, req: FetchRequest) -> PendingResponse {
    Box::pin(async move {
        let max_wait = Duration::from_millis(req.max_wait_ms.clamp(0, MAX_WAIT_MS_LIMIT) as u64);
        let deadline = Instant::now() + max_wait;
        let max_bytes = response_max_bytes(&ctx, &req);
        // Kafka: fetchMinBytes = min(request min bytes, fetchMaxBytes).
        let min_bytes = (req.min_bytes.max(0) as usize).min(max_bytes);
        loop {
            // Register for wake-ups before reading, so data that lands in between is seen.
            let notified = ctx.broker.replica_manager.data_arrived().notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let (response, bytes, has_error) = read_partitions(&ctx, &req, max_bytes);
            if bytes >= min_bytes.max(1) || has_error || Instant::now() >= deadline {
                return ctx.reply(ResponseKind::Fetch(response));
            }
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep_until(deadline) => {}
            }
        }
    })
}

/// The record bytes a response may carry: the request's `max_bytes` (from v3) capped by
/// `fetch.max.bytes`.
fn response_max_bytes(ctx: &RequestContext, req: &FetchRequest) -> usize {
    let broker_max = ctx.broker.config.fetch_max_bytes;
    if ctx.api_version >= 3 {
        (req.max_bytes.max(0) as usize).min(broker_max)
    } else {
        broker_max
    }
}

/// Reads every requested partition once: (response, record bytes, any partition error).
fn read_partitions(
    ctx: &RequestContext,
    req: &FetchRequest,
    max_bytes: usize,
) -> (FetchResponse, usize, bool) {
    let image = ctx.broker.image();
    let rm = &ctx.broker.replica_manager;
    let mut remaining = max_bytes;
    let mut total = 0usize;
    let mut has_error = false;
    let mut high_watermark_advanced = false;
    // A follower identifies itself by replica id (in ReplicaState from v15 on); consumers
    // send -1.
    let replica_id = if ctx.api_version >= 15 {
        req.replica_state.replica_id.0
    } else {
        req.replica_id.0
    };
    let mut topics = Vec::with_capacity(req.topics.len());
    for topic in &req.topics {
        let name = if ctx.api_version >= 13 {
            image.topic_by_id(&topic.topic_id).map(|t| t.name.clone())
        } else {
            Some(topic.topic.0.to_string())
        };
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for p in &topic.partitions {
            let mut data = PartitionData::default().with_partition_index(p.partition);
            let result = match &name {
                None => Err(crate::error::ApiError::new(ResponseError::UnknownTopicId)),
                Some(name) => rm
                    .get_partition(&image, &TopicPartition::new(name.clone(), p.partition))
                    .and_then(|partition| {
                        let limit = (p.partition_max_bytes.max(0) as usize).min(remaining);
                        if replica_id >= 0 {
                            let fetch = FollowerFetch {
                                replica_id,
                                fetch_offset: p.fetch_offset,
                                current_leader_epoch: p.current_leader_epoch,
                                last_fetched_epoch: p.last_fetched_epoch,
                            };
                            partition.read_for_follower(&fetch, limit, crate::clock::now_ms())
                        } else {
                            // Like Kafka, the first batch of a response is returned even when
                            // larger than the limits, so a large batch never blocks a consumer.
                            partition
                                .read(p.fetch_offset, p.current_leader_epoch, limit, total == 0)
                                .map(FollowerRead::from)
                        }
                    }),
            };
            match result {
                Ok(read) => {
                    high_watermark_advanced |= read.high_watermark_advanced;
                    total += read.records.len();
                    remaining = remaining.saturating_sub(read.records.len());
                    data = data
                        .with_high_watermark(read.high_watermark)
                        .with_last_stable_offset(read.high_watermark)
                        .with_log_start_offset(read.log_start_offset)
                        .with_records(Some(read.records));
                    if let Some((epoch, end_offset)) = read.diverging_epoch {
                        // Answer at once: the follower must truncate before fetching more.
                        has_error = true;
                        data = data.with_diverging_epoch(
                            EpochEndOffset::default()
                                .with_epoch(epoch)
                                .with_end_offset(end_offset),
                        );
                    }
                }
                Err(e) => {
                    has_error = true;
                    data = data
                        .with_error_code(e.code())
                        .with_high_watermark(-1)
                        .with_last_stable_offset(-1)
                        .with_records(Some(Bytes::new()));
                }
            }
            partitions.push(data);
        }
        topics.push(
            FetchableTopicResponse::default()
                .with_topic(topic.topic.clone())
                .with_topic_id(topic.topic_id)
                .with_partitions(partitions),
        );
    }
    if high_watermark_advanced {
        // Consumers waiting for data below the HW, and acks=all producers, can go on.
        rm.data_arrived().notify_waiters();
    }
    (
        FetchResponse::default()
            .with_responses(topics)
            .with_session_id(0),
        total,
        has_error,
    )
}
