//! OffsetFetch (key 9): committed offsets of one group (v0-7) or several (v8+).

use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{OffsetFetchRequest, OffsetFetchResponse, TopicName};

use super::{str_bytes, RequestContext};
use crate::group::CommittedOffset;

type Fetched = Vec<((String, i32), Option<CommittedOffset>)>;

fn fetch(ctx: &RequestContext, group_id: &str, topics: Option<Vec<(String, Vec<i32>)>>) -> Fetched {
    let partitions = topics.map(|ts| {
        ts.into_iter()
            .flat_map(|(t, ps)| ps.into_iter().map(move |p| (t.clone(), p)))
            .collect()
    });
    ctx.broker
        .group_coordinator
        .fetch_offsets(group_id, partitions)
}

/// Groups results by topic, keeping the order in which topics first appear.
fn by_topic(fetched: Fetched) -> Vec<(String, Vec<(i32, Option<CommittedOffset>)>)> {
    let mut out: Vec<(String, Vec<(i32, Option<CommittedOffset>)>)> = Vec::new();
    for ((t, p), c) in fetched {
        match out.iter_mut().find(|(name, _)| *name == t) {
            Some((_, ps)) => ps.push((p, c)),
            None => out.push((t, vec![(p, c)])),
        }
    }
    out
}

pub fn handle(ctx: &RequestContext, req: OffsetFetchRequest) -> OffsetFetchResponse {
    if ctx.api_version >= 8 {
        let groups = req
            .groups
            .iter()
            .map(|g| {
                let topics = g.topics.as_ref().map(|ts| {
                    ts.iter()
                        .map(|t| (t.name.0.to_string(), t.partition_indexes.clone()))
                        .collect()
                });
                let fetched = by_topic(fetch(ctx, &g.group_id.0, topics));
                let topics = fetched
                    .into_iter()
                    .map(|(t, ps)| {
                        OffsetFetchResponseTopics::default()
                            .with_name(TopicName(str_bytes(&t)))
                            .with_partitions(
                                ps.into_iter()
                                    .map(|(p, c)| {
                                        let c = c.unwrap_or(CommittedOffset {
                                            offset: -1,
                                            leader_epoch: -1,
                                            metadata: Some(String::new()),
                                            commit_timestamp_ms: -1,
                                        });
                                        OffsetFetchResponsePartitions::default()
                                            .with_partition_index(p)
                                            .with_committed_offset(c.offset)
                                            .with_committed_leader_epoch(c.leader_epoch)
                                            .with_metadata(Some(str_bytes(
                                                c.metadata.as_deref().unwrap_or(""),
                                            )))
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
    let fetched = by_topic(fetch(ctx, &req.group_id.0, topics));
    let topics = fetched
        .into_iter()
        .map(|(t, ps)| {
            OffsetFetchResponseTopic::default()
                .with_name(TopicName(str_bytes(&t)))
                .with_partitions(
                    ps.into_iter()
                        .map(|(p, c)| {
                            let c = c.unwrap_or(CommittedOffset {
                                offset: -1,
                                leader_epoch: -1,
                                metadata: Some(String::new()),
                                commit_timestamp_ms: -1,
                            });
                            let mut r = OffsetFetchResponsePartition::default()
                                .with_partition_index(p)
                                .with_committed_offset(c.offset)
                                .with_metadata(Some(str_bytes(
                                    c.metadata.as_deref().unwrap_or(""),
                                )));
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
