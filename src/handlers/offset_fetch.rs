//! OffsetFetch (key 9): committed offsets of one group (v0-7) or several (v8+). A group
//! this node does not coordinate gets NOT_COORDINATOR (or COORDINATOR_LOAD_IN_PROGRESS):
//! per group in v8+, for the request in v2-7, per partition in v1.

use std::collections::{HashMap, HashSet};

use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{OffsetFetchRequest, OffsetFetchResponse, TopicName};

use kafka_protocol::ResponseError;

use super::{str_bytes, RequestContext};
use crate::group::CommittedOffset;

type Fetched = Vec<((String, i32), Option<CommittedOffset>)>;

fn fetch(
    ctx: &RequestContext,
    group_id: &str,
    topics: Option<Vec<(String, Vec<i32>)>>,
) -> Result<Fetched, ResponseError> {
    if group_id.is_empty() {
        return Err(ResponseError::InvalidGroupId);
    }
    let partitions = topics.map(|ts| {
        ts.into_iter()
            .flat_map(|(t, ps)| ps.into_iter().map(move |p| (t.clone(), p)))
            .collect()
    });
    ctx.broker
        .group_coordinator
        .fetch_offsets(group_id, partitions)
}

/// What OffsetFetch reports for a partition without a committed offset.
fn no_offset() -> CommittedOffset {
    CommittedOffset {
        offset: -1,
        leader_epoch: -1,
        metadata: String::new(),
        commit_timestamp_ms: -1,
    }
}

/// Groups results by topic, keeping the order in which topics first appear (in time
/// linear in the results: a request may name many topics).
fn by_topic(fetched: Fetched) -> Vec<(String, Vec<(i32, Option<CommittedOffset>)>)> {
    let mut out: Vec<(String, Vec<(i32, Option<CommittedOffset>)>)> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for ((t, p), c) in fetched {
        match index.get(&t) {
            Some(&i) => out[i].1.push((p, c)),
            None => {
                index.insert(t.clone(), out.len());
                out.push((t, vec![(p, c)]));
            }
        }
    }
    out
}

pub fn handle(ctx: &RequestContext, req: OffsetFetchRequest) -> OffsetFetchResponse {
    if ctx.api_version >= 8 {
        // Each group once, in request order, so repeating a group id cannot multiply its
        // offsets in the response.
        let mut seen = HashSet::new();
        let groups = req
            .groups
            .iter()
            .filter(|g| seen.insert(g.group_id.0.as_str()))
            .map(|g| {
                let topics = g.topics.as_ref().map(|ts| {
                    ts.iter()
                        .map(|t| (t.name.0.to_string(), t.partition_indexes.clone()))
                        .collect()
                });
                let fetched = match fetch(ctx, &g.group_id.0, topics) {
                    Ok(f) => by_topic(f),
                    Err(e) => {
                        return OffsetFetchResponseGroup::default()
                            .with_group_id(g.group_id.clone())
                            .with_error_code(e.code())
                    }
                };
                let topics = fetched
                    .into_iter()
                    .map(|(t, ps)| {
                        OffsetFetchResponseTopics::default()
                            .with_name(TopicName(str_bytes(&t)))
                            .with_partitions(
                                ps.into_iter()
                                    .map(|(p, c)| {
                                        let c = c.unwrap_or_else(no_offset);
                                        OffsetFetchResponsePartitions::default()
                                            .with_partition_index(p)
                                            .with_committed_offset(c.offset)
                                            .with_committed_leader_epoch(c.leader_epoch)
                                            .with_metadata(Some(str_bytes(&c.metadata)))
                                    })
                                    .collect(),
                            )
                    })
                    .collect();
                OffsetFetchResponseGroup::default()
                    .with_group_id(g.group_id.clone())
                    .with_topics(topics)
            })
            .collect();
        return OffsetFetchResponse::default().with_groups(groups);
    }
    let topics = req.topics.as_ref().map(|ts| {
        ts.iter()
            .map(|t| (t.name.0.to_string(), t.partition_indexes.clone()))
            .collect()
    });
    let fetched = match fetch(ctx, &req.group_id.0, topics.clone()) {
        Ok(f) => by_topic(f),
        Err(e) if ctx.api_version >= 2 => {
            return OffsetFetchResponse::default().with_error_code(e.code())
        }
        Err(e) => {
            // v1 has no request-level error: every requested partition carries it.
            let failed = topics
                .unwrap_or_default()
                .into_iter()
                .map(|(t, ps)| {
                    OffsetFetchResponseTopic::default()
                        .with_name(TopicName(str_bytes(&t)))
                        .with_partitions(
                            ps.into_iter()
                                .map(|p| {
                                    OffsetFetchResponsePartition::default()
                                        .with_partition_index(p)
                                        .with_committed_offset(-1)
                                        .with_metadata(Some(str_bytes("")))
                                        .with_error_code(e.code())
                                })
                                .collect(),
                        )
                })
                .collect();
            return OffsetFetchResponse::default().with_topics(failed);
        }
    };
    let topics = fetched
        .into_iter()
        .map(|(t, ps)| {
            OffsetFetchResponseTopic::default()
                .with_name(TopicName(str_bytes(&t)))
                .with_partitions(
                    ps.into_iter()
                        .map(|(p, c)| {
                            let c = c.unwrap_or_else(no_offset);
                            let mut r = OffsetFetchResponsePartition::default()
                                .with_partition_index(p)
                                .with_committed_offset(c.offset)
                                .with_metadata(Some(str_bytes(&c.metadata)));
                            if ctx.api_version >= 5 {
                                r = r.with_committed_leader_epoch(c.leader_epoch);
                            }
                            r
                        })
                        .collect(),
                )
        })
        .collect();
    OffsetFetchResponse::default().with_topics(topics)
}
