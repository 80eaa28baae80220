//! The group coordinator: consumer groups under the classic protocol and their committed
//! offsets (Kafka's `GroupCoordinator`).
//!
//! This node coordinates every group. Committed offsets are kept in memory for the life of
//! the process; storing them in the replicated `__consumer_offsets` topic (so they survive
//! restarts and move with coordinator failover) is the consumer-groups milestone.

pub mod state;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::ResponseError;
use parking_lot::Mutex;

use crate::clock::now_ms;
pub use state::{Group, GroupState, JoinRequest, JoinResult, Outcome, SyncResult};

/// How often session and rebalance timers are checked.
const TICK_MS: u64 = 50;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommittedOffset {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
    pub commit_timestamp_ms: i64,
}

struct GroupEntry {
    group: Group,
    offsets: BTreeMap<(String, i32), CommittedOffset>,
}

/// A member as DescribeGroups reports it.
pub struct MemberDescription {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub metadata: bytes::Bytes,
    pub assignment: bytes::Bytes,
}

pub struct GroupDescription {
    pub state: GroupState,
    pub protocol_type: String,
    pub protocol_name: String,
    pub members: Vec<MemberDescription>,
}

pub struct GroupCoordinator {
    /// `group.initial.rebalance.delay.ms`: a new group waits this long for more members.
    initial_rebalance_delay_ms: i64,
    groups: Mutex<HashMap<String, GroupEntry>>,
}

impl GroupCoordinator {
    pub fn new(initial_rebalance_delay_ms: i64) -> Self {
        GroupCoordinator {
            initial_rebalance_delay_ms,
            groups: Mutex::new(HashMap::new()),
        }
    }

    fn with_group<T>(
        &self,
        group_id: &str,
        create: bool,
        f: impl FnOnce(&mut GroupEntry) -> T,
    ) -> Option<T> {
        let mut groups = self.groups.lock();
        if create && !groups.contains_key(group_id) {
            groups.insert(
                group_id.to_string(),
                GroupEntry {
                    group: Group::new(group_id),
                    offsets: BTreeMap::new(),
                },
            );
        }
        let result = groups.get_mut(group_id).map(f);
        // An empty group with no offsets is forgotten, keeping the map bounded.
        if groups.get(group_id).is_some_and(|e| {
            e.group.state == GroupState::Empty && e.group.is_empty() && e.offsets.is_empty()
        }) {
            groups.remove(group_id);
        }
        result
    }

    pub fn join(&self, group_id: &str, req: JoinRequest) -> Outcome<JoinResult> {
        let delay = self.initial_rebalance_delay_ms;
        self.with_group(group_id, true, |e| e.group.join(req, now_ms(), delay))
            .expect("created")
    }

    pub fn sync(
        &self,
        group_id: &str,
        member_id: &str,
        generation_id: i32,
        assignments: Vec<(String, bytes::Bytes)>,
    ) -> Outcome<SyncResult> {
        self.with_group(group_id, false, |e| {
            e.group
                .sync(member_id, generation_id, assignments, now_ms())
        })
        .unwrap_or(Outcome::Now(SyncResult {
            error: Some(ResponseError::UnknownMemberId),
            protocol_type: None,
            protocol_name: None,
            assignment: Default::default(),
        }))
    }

    pub fn heartbeat(
        &self,
        group_id: &str,
        member_id: &str,
        generation_id: i32,
    ) -> Option<ResponseError> {
        self.with_group(group_id, false, |e| {
            e.group.heartbeat(member_id, generation_id, now_ms())
        })
        .unwrap_or(Some(ResponseError::UnknownMemberId))
    }

    pub fn leave(
        &self,
        group_id: &str,
        member_id: &str,
        group_instance_id: Option<&str>,
    ) -> Option<ResponseError> {
        self.with_group(group_id, false, |e| {
            e.group.leave(member_id, group_instance_id, now_ms())
        })
        .unwrap_or(Some(ResponseError::UnknownMemberId))
    }

    /// Stores offsets after validating the committer's membership and generation.
    pub fn commit_offsets(
        &self,
        group_id: &str,
        member_id: &str,
        group_instance_id: Option<&str>,
        generation_id: i32,
        offsets: Vec<((String, i32), CommittedOffset)>,
    ) -> Result<(), ResponseError> {
        self.with_group(group_id, true, |e| {
            if let Some(err) = e.group.validate_offset_commit(
                member_id,
                group_instance_id,
                generation_id,
                now_ms(),
            ) {
                return Err(err);
            }
            for (tp, o) in offsets {
                e.offsets.insert(tp, o);
            }
            Ok(())
        })
        .expect("created")
    }

    /// Committed offsets of the given partitions (all of the group's when `None`).
    pub fn fetch_offsets(
        &self,
        group_id: &str,
        partitions: Option<Vec<(String, i32)>>,
    ) -> Vec<((String, i32), Option<CommittedOffset>)> {
        let groups = self.groups.lock();
        let offsets = groups.get(group_id).map(|e| &e.offsets);
        match partitions {
            Some(ps) => ps
                .into_iter()
                .map(|tp| (tp.clone(), offsets.and_then(|o| o.get(&tp).cloned())))
                .collect(),
            None => offsets
                .map(|o| {
                    o.iter()
                        .map(|(tp, c)| (tp.clone(), Some(c.clone())))
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// (group id, protocol type, state) of every group.
    pub fn list_groups(&self) -> Vec<(String, String, GroupState)> {
        let groups = self.groups.lock();
        let mut out: Vec<_> = groups
            .values()
            .map(|e| {
                (
                    e.group.group_id.clone(),
                    e.group.protocol_type.clone().unwrap_or_default(),
                    e.group.state,
                )
            })
            .collect();
        out.sort();
        out
    }

    pub fn describe_group(&self, group_id: &str) -> GroupDescription {
        let groups = self.groups.lock();
        let Some(e) = groups.get(group_id) else {
            // Kafka describes an unknown group as Dead with no members.
            return GroupDescription {
                state: GroupState::Dead,
                protocol_type: String::new(),
                protocol_name: String::new(),
                members: vec![],
            };
        };
        let g = &e.group;
        let protocol = g.protocol_name.clone().unwrap_or_default();
        let stable = g.state == GroupState::Stable;
        GroupDescription {
            state: g.state,
            protocol_type: g.protocol_type.clone().unwrap_or_default(),
            protocol_name: if stable {
                protocol.clone()
            } else {
                String::new()
            },
            members: g
                .members
                .values()
                .map(|m| MemberDescription {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    metadata: if stable {
                        m.metadata_for(&protocol)
                    } else {
                        Default::default()
                    },
                    assignment: if stable {
                        m.assignment.clone()
                    } else {
                        Default::default()
                    },
                })
                .collect(),
        }
    }

    /// Drives session and rebalance timers, forever.
    pub async fn run_timers(self: Arc<Self>) {
        let mut ticker = tokio::time::interval(Duration::from_millis(TICK_MS));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let now = now_ms();
            let mut groups = self.groups.lock();
            for e in groups.values_mut() {
                e.group.tick(now);
            }
            groups.retain(|_, e| {
                !(e.group.state == GroupState::Empty && e.group.is_empty() && e.offsets.is_empty())
            });
        }
    }
}
