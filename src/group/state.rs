//! One consumer group under the classic rebalance protocol, as Kafka's `GroupMetadata` and
//! `GroupCoordinator` run it: members join, the coordinator picks a protocol and a leader,
//! the leader's assignment is handed out in SyncGroup, heartbeats keep members alive.
//!
//! The state machine does no I/O and reads no clock: callers pass `now_ms`, and responses
//! that must wait (JoinGroup until the rebalance completes, SyncGroup until the leader sends
//! the assignment) are delivered through oneshot channels the state machine holds.
//!
//! # Invariants
//! - `leader` is a current member whenever the group is CompletingRebalance or Stable.
//! - `generation_id` grows by one each time a rebalance completes.
//! - In Stable, every member has been sent its assignment (or is waiting for none).
//! - `static_members` maps each group.instance.id to the member that holds it, one to one.

use std::collections::{BTreeMap, HashMap, HashSet};

use bytes::Bytes;
use kafka_protocol::ResponseError;
use tokio::sync::oneshot;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    /// The name Kafka's tools print.
    pub fn as_str(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// A JoinGroup request, decoded.
#[derive(Clone, Debug)]
pub struct JoinRequest {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    /// (name, metadata), in the member's order of preference.
    pub protocols: Vec<(String, Bytes)>,
    /// JoinGroup v4+: a new dynamic member must first get its member id (MEMBER_ID_REQUIRED).
    pub require_known_member_id: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub metadata: Bytes,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinResult {
    pub error: Option<ResponseError>,
    pub generation_id: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// Only the leader gets the members (with their metadata for the chosen protocol).
    pub members: Vec<JoinMember>,
}

impl JoinResult {
    pub fn error(member_id: &str, e: ResponseError) -> JoinResult {
        JoinResult {
            error: Some(e),
            generation_id: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            member_id: member_id.to_string(),
            members: vec![],
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncResult {
    pub error: Option<ResponseError>,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

impl SyncResult {
    pub fn error(e: ResponseError) -> SyncResult {
        SyncResult {
            error: Some(e),
            protocol_type: None,
            protocol_name: None,
            assignment: Bytes::new(),
        }
    }
}

/// A response now, or one that arrives when the group gets there.
pub enum Outcome<T> {
    Now(T),
    Later(oneshot::Receiver<T>),
}

#[derive(Debug)]
pub struct Member {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
    last_heartbeat_ms: i64,
    join_waiter: Option<oneshot::Sender<JoinResult>>,
    sync_waiter: Option<oneshot::Sender<SyncResult>>,
}

impl Member {
    pub fn metadata_for(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(n, _)| n == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }
}

#[derive(Debug)]
pub struct Group {
    pub group_id: String,
    pub state: GroupState,
    pub generation_id: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: Option<String>,
    pub members: BTreeMap<String, Member>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, and until when they may join.
    pending_members: HashMap<String, i64>,
    static_members: HashMap<String, String>,
    /// When a rebalance in progress completes even if not every member rejoined.
    rebalance_deadline_ms: i64,
    /// A new group waits this long for more members before its first rebalance completes.
    initial_join_until_ms: i64,
}

impl Group {
    pub fn new(group_id: &str) -> Group {
        Group {
            group_id: group_id.to_string(),
            state: GroupState::Empty,
            generation_id: 0,
            protocol_type: None,
            protocol_name: None,
            leader: None,
            members: BTreeMap::new(),
            pending_members: HashMap::new(),
            static_members: HashMap::new(),
            rebalance_deadline_ms: 0,
            initial_join_until_ms: 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.pending_members.is_empty()
    }

    /// JoinGroup (Kafka's `handleJoinGroup`).
    pub fn join(
        &mut self,
        req: JoinRequest,
        now_ms: i64,
        initial_delay_ms: i64,
    ) -> Outcome<JoinResult> {
        if self.state == GroupState::Dead {
            return Outcome::Now(JoinResult::error(
                &req.member_id,
                ResponseError::CoordinatorNotAvailable,
            ));
        }
        if req.protocols.is_empty()
            || req.protocol_type.is_empty()
            || !self.supports_protocols(&req.protocol_type, &req.protocols)
        {
            return Outcome::Now(JoinResult::error(
                &req.member_id,
                ResponseError::InconsistentGroupProtocol,
            ));
        }
        if req.session_timeout_ms <= 0 {
            return Outcome::Now(JoinResult::error(
                &req.member_id,
                ResponseError::InvalidSessionTimeout,
            ));
        }
        if req.member_id.is_empty() {
            let member_id = format!("{}-{}", req.client_id, uuid::Uuid::new_v4());
            if let Some(instance) = &req.group_instance_id {
                if let Some(old_id) = self.static_members.get(instance).cloned() {
                    return self.replace_static_member(
                        &old_id,
                        member_id,
                        req,
                        now_ms,
                        initial_delay_ms,
                    );
                }
            } else if req.require_known_member_id {
                // KIP-394: the member must come back with this id, so a client that times out
                // and retries does not leave a ghost member behind.
                self.pending_members
                    .insert(member_id.clone(), now_ms + req.session_timeout_ms as i64);
                return Outcome::Now(JoinResult::error(
                    &member_id,
                    ResponseError::MemberIdRequired,
                ));
            }
            return self.add_member_and_rebalance(member_id, req, now_ms, initial_delay_ms);
        }
        if self.pending_members.remove(&req.member_id).is_some() {
            let member_id = req.member_id.clone();
            return self.add_member_and_rebalance(member_id, req, now_ms, initial_delay_ms);
        }
        let Some(member) = self.members.get_mut(&req.member_id) else {
            return Outcome::Now(JoinResult::error(
                &req.member_id,
                ResponseError::UnknownMemberId,
            ));
        };
        if member.group_instance_id != req.group_instance_id {
            return Outcome::Now(JoinResult::error(
                &req.member_id,
                ResponseError::FencedInstanceId,
            ));
        }
        let unchanged = member.protocols == req.protocols;
        member.protocols = req.protocols;
        member.session_timeout_ms = req.session_timeout_ms;
        member.rebalance_timeout_ms = req.rebalance_timeout_ms;
        member.last_heartbeat_ms = now_ms;
        let is_leader = self.leader.as_deref() == Some(req.member_id.as_str());
        match self.state {
            GroupState::Stable if unchanged && !is_leader => {
                // A follower rejoining with the same metadata gets the current generation.
                Outcome::Now(self.join_result_for(&req.member_id))
            }
            _ => {
                let (tx, rx) = oneshot::channel();
                if let Some(old) = self
                    .members
                    .get_mut(&req.member_id)
                    .and_then(|m| m.join_waiter.replace(tx))
                {
                    let _ = old.send(JoinResult::error(
                        &req.member_id,
                        ResponseError::UnknownMemberId,
                    ));
                }
                if self.state != GroupState::PreparingRebalance {
                    self.prepare_rebalance(now_ms, 0);
                }
                self.maybe_complete_join(now_ms);
                Outcome::Later(rx)
            }
        }
    }

    fn replace_static_member(
        &mut self,
        old_id: &str,
        new_id: String,
        req: JoinRequest,
        now_ms: i64,
        initial_delay_ms: i64,
    ) -> Outcome<JoinResult> {
        let Some(mut member) = self.members.remove(old_id) else {
            return self.add_member_and_rebalance(new_id, req, now_ms, initial_delay_ms);
        };
        // The old incarnation is fenced: any response it still waits for says so.
        if let Some(w) = member.join_waiter.take() {
            let _ = w.send(JoinResult::error(old_id, ResponseError::FencedInstanceId));
        }
        if let Some(w) = member.sync_waiter.take() {
            let _ = w.send(SyncResult::error(ResponseError::FencedInstanceId));
        }
        let unchanged = member.protocols == req.protocols;
        member.member_id = new_id.clone();
        member.client_id = req.client_id.clone();
        member.client_host = req.client_host.clone();
        member.session_timeout_ms = req.session_timeout_ms;
        member.rebalance_timeout_ms = req.rebalance_timeout_ms;
        member.protocols = req.protocols.clone();
        member.last_heartbeat_ms = now_ms;
        let was_leader = self.leader.as_deref() == Some(old_id);
        if was_leader {
            self.leader = Some(new_id.clone());
        }
        self.static_members.insert(
            req.group_instance_id.clone().expect("static member"),
            new_id.clone(),
        );
        self.members.insert(new_id.clone(), member);
        if self.state == GroupState::Stable && unchanged && !was_leader {
            // KIP-345: a static member that restarts keeps its assignment without a rebalance.
            return Outcome::Now(self.join_result_for(&new_id));
        }
        let (tx, rx) = oneshot::channel();
        self.members
            .get_mut(&new_id)
            .expect("just inserted")
            .join_waiter = Some(tx);
        if self.state != GroupState::PreparingRebalance {
            self.prepare_rebalance(now_ms, 0);
        }
        self.maybe_complete_join(now_ms);
        Outcome::Later(rx)
    }

    fn add_member_and_rebalance(
        &mut self,
        member_id: String,
        req: JoinRequest,
        now_ms: i64,
        initial_delay_ms: i64,
    ) -> Outcome<JoinResult> {
        let (tx, rx) = oneshot::channel();
        if self.members.is_empty() {
            self.protocol_type = Some(req.protocol_type.clone());
        }
        if let Some(instance) = &req.group_instance_id {
            self.static_members
                .insert(instance.clone(), member_id.clone());
        }
        self.members.insert(
            member_id.clone(),
            Member {
                member_id: member_id.clone(),
                group_instance_id: req.group_instance_id,
                client_id: req.client_id,
                client_host: req.client_host,
                session_timeout_ms: req.session_timeout_ms,
                rebalance_timeout_ms: req.rebalance_timeout_ms,
                protocol_type: req.protocol_type,
                protocols: req.protocols,
                assignment: Bytes::new(),
                last_heartbeat_ms: now_ms,
                join_waiter: Some(tx),
                sync_waiter: None,
            },
        );
        if self.state != GroupState::PreparingRebalance {
            let delay = if self.state == GroupState::Empty {
                initial_delay_ms
            } else {
                0
            };
            self.prepare_rebalance(now_ms, delay);
        }
        self.maybe_complete_join(now_ms);
        Outcome::Later(rx)
    }

    /// Moves to PreparingRebalance: members must rejoin by the largest rebalance timeout.
    fn prepare_rebalance(&mut self, now_ms: i64, initial_delay_ms: i64) {
        // Members waiting for an assignment learn that a new rebalance started.
        for m in self.members.values_mut() {
            if let Some(w) = m.sync_waiter.take() {
                let _ = w.send(SyncResult::error(ResponseError::RebalanceInProgress));
            }
        }
        let timeout = self
            .members
            .values()
            .map(|m| m.rebalance_timeout_ms)
            .max()
            .unwrap_or(0)
            .max(0) as i64;
        self.state = GroupState::PreparingRebalance;
        self.rebalance_deadline_ms = now_ms + timeout;
        self.initial_join_until_ms = now_ms + initial_delay_ms.min(timeout);
    }

    fn all_members_joined(&self) -> bool {
        self.pending_members.is_empty() && self.members.values().all(|m| m.join_waiter.is_some())
    }

    /// Completes the join phase once every member rejoined (after a new group's initial
    /// delay), or at the rebalance deadline without the stragglers.
    fn maybe_complete_join(&mut self, now_ms: i64) {
        if self.state != GroupState::PreparingRebalance {
            return;
        }
        let ready = self.all_members_joined() && now_ms >= self.initial_join_until_ms;
        if !ready && now_ms < self.rebalance_deadline_ms {
            return;
        }
        // Members that did not rejoin in time are removed.
        let stragglers: Vec<String> = self
            .members
            .values()
            .filter(|m| m.join_waiter.is_none())
            .map(|m| m.member_id.clone())
            .collect();
        for id in stragglers {
            self.remove_member(&id);
        }
        self.pending_members.clear();
        self.generation_id += 1;
        if self.members.is_empty() {
            self.state = GroupState::Empty;
            self.protocol_name = None;
            self.leader = None;
            return;
        }
        self.protocol_name = Some(self.select_protocol());
        if !self
            .leader
            .as_ref()
            .is_some_and(|l| self.members.contains_key(l))
        {
            self.leader = self.members.keys().next().cloned();
        }
        self.state = GroupState::CompletingRebalance;
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let result = self.join_result_for(&id);
            let member = self.members.get_mut(&id).expect("member");
            member.last_heartbeat_ms = now_ms;
            if let Some(w) = member.join_waiter.take() {
                let _ = w.send(result);
            }
        }
    }

    fn join_result_for(&self, member_id: &str) -> JoinResult {
        let protocol = self.protocol_name.clone().unwrap_or_default();
        let leader = self.leader.clone().unwrap_or_default();
        let members = if leader == member_id {
            self.members
                .values()
                .map(|m| JoinMember {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    metadata: m.metadata_for(&protocol),
                })
                .collect()
        } else {
            vec![]
        };
        JoinResult {
            error: None,
            generation_id: self.generation_id,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            leader,
            member_id: member_id.to_string(),
            members,
        }
    }

    /// Each member's protocol names as a set, so protocol checks stay linear in the
    /// protocols listed (a member may list many).
    fn member_protocol_sets(&self) -> Vec<HashSet<&str>> {
        self.members
            .values()
            .map(|m| m.protocols.iter().map(|(n, _)| n.as_str()).collect())
            .collect()
    }

    /// The protocol every member supports that most members list first (Kafka's vote).
    fn select_protocol(&self) -> String {
        let sets = self.member_protocol_sets();
        let mut candidates: Vec<&str> = self
            .members
            .values()
            .next()
            .map(|m| m.protocols.iter().map(|(n, _)| n.as_str()).collect())
            .unwrap_or_default();
        candidates.retain(|c| sets.iter().all(|s| s.contains(c)));
        let candidate_set: HashSet<&str> = candidates.iter().copied().collect();
        let mut votes: HashMap<&str, usize> = HashMap::new();
        for m in self.members.values() {
            if let Some((n, _)) = m
                .protocols
                .iter()
                .find(|(n, _)| candidate_set.contains(n.as_str()))
            {
                *votes.entry(n.as_str()).or_default() += 1;
            }
        }
        // Most votes; among equals, the one the first member lists first.
        candidates
            .iter()
            .enumerate()
            .max_by_key(|(i, c)| (votes.get(*c).copied().unwrap_or(0), std::cmp::Reverse(*i)))
            .map(|(_, c)| c.to_string())
            .unwrap_or_default()
    }

    fn supports_protocols(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if self.members.is_empty() {
            return true;
        }
        if self.protocol_type.as_deref() != Some(protocol_type) {
            return false;
        }
        // At least one of the new member's protocols must be supported by every member.
        let sets = self.member_protocol_sets();
        protocols
            .iter()
            .any(|(p, _)| sets.iter().all(|s| s.contains(p.as_str())))
    }

    /// SyncGroup (Kafka's `handleSyncGroup`).
    pub fn sync(
        &mut self,
        member_id: &str,
        generation_id: i32,
        assignments: Vec<(String, Bytes)>,
        now_ms: i64,
    ) -> Outcome<SyncResult> {
        if self.state == GroupState::Dead {
            return Outcome::Now(SyncResult::error(ResponseError::CoordinatorNotAvailable));
        }
        if !self.members.contains_key(member_id) {
            return Outcome::Now(SyncResult::error(ResponseError::UnknownMemberId));
        }
        if generation_id != self.generation_id {
            return Outcome::Now(SyncResult::error(ResponseError::IllegalGeneration));
        }
        match self.state {
            GroupState::Empty => Outcome::Now(SyncResult::error(ResponseError::UnknownMemberId)),
            GroupState::PreparingRebalance => {
                Outcome::Now(SyncResult::error(ResponseError::RebalanceInProgress))
            }
            GroupState::Stable => {
                let m = self.members.get_mut(member_id).expect("member");
                m.last_heartbeat_ms = now_ms;
                Outcome::Now(SyncResult {
                    error: None,
                    protocol_type: self.protocol_type.clone(),
                    protocol_name: self.protocol_name.clone(),
                    assignment: m.assignment.clone(),
                })
            }
            GroupState::CompletingRebalance => {
                let (tx, rx) = oneshot::channel();
                let m = self.members.get_mut(member_id).expect("member");
                m.last_heartbeat_ms = now_ms;
                m.sync_waiter = Some(tx);
                if self.leader.as_deref() == Some(member_id) {
                    let mut given: HashMap<String, Bytes> = assignments.into_iter().collect();
                    for m in self.members.values_mut() {
                        m.assignment = given.remove(&m.member_id).unwrap_or_default();
                    }
                    self.state = GroupState::Stable;
                    for m in self.members.values_mut() {
                        if let Some(w) = m.sync_waiter.take() {
                            let _ = w.send(SyncResult {
                                error: None,
                                protocol_type: self.protocol_type.clone(),
                                protocol_name: self.protocol_name.clone(),
                                assignment: m.assignment.clone(),
                            });
                        }
                    }
                }
                Outcome::Later(rx)
            }
            GroupState::Dead => unreachable!("handled above"),
        }
    }

    /// Heartbeat (Kafka's `handleHeartbeat`): `None` is success.
    pub fn heartbeat(
        &mut self,
        member_id: &str,
        generation_id: i32,
        now_ms: i64,
    ) -> Option<ResponseError> {
        match self.state {
            GroupState::Dead => return Some(ResponseError::CoordinatorNotAvailable),
            GroupState::Empty => return Some(ResponseError::UnknownMemberId),
            _ => {}
        }
        let Some(m) = self.members.get_mut(member_id) else {
            return Some(ResponseError::UnknownMemberId);
        };
        if generation_id != self.generation_id {
            return Some(ResponseError::IllegalGeneration);
        }
        m.last_heartbeat_ms = now_ms;
        if self.state == GroupState::PreparingRebalance {
            return Some(ResponseError::RebalanceInProgress);
        }
        None
    }

    /// LeaveGroup for one member, by member id or (static) instance id.
    pub fn leave(
        &mut self,
        member_id: &str,
        group_instance_id: Option<&str>,
        now_ms: i64,
    ) -> Option<ResponseError> {
        let id = match group_instance_id {
            Some(instance) => match self.static_members.get(instance) {
                Some(id) if member_id.is_empty() || id == member_id => id.clone(),
                Some(_) => return Some(ResponseError::FencedInstanceId),
                None => return Some(ResponseError::UnknownMemberId),
            },
            None => member_id.to_string(),
        };
        if self.pending_members.remove(&id).is_some() {
            self.maybe_complete_join(now_ms);
            return None;
        }
        if !self.members.contains_key(&id) {
            return Some(ResponseError::UnknownMemberId);
        }
        self.remove_member(&id);
        self.on_membership_lost(now_ms);
        None
    }

    fn remove_member(&mut self, member_id: &str) {
        if let Some(mut m) = self.members.remove(member_id) {
            if let Some(w) = m.join_waiter.take() {
                let _ = w.send(JoinResult::error(member_id, ResponseError::UnknownMemberId));
            }
            if let Some(w) = m.sync_waiter.take() {
                let _ = w.send(SyncResult::error(ResponseError::UnknownMemberId));
            }
            if let Some(instance) = m.group_instance_id {
                self.static_members.remove(&instance);
            }
        }
        if self.leader.as_deref() == Some(member_id) {
            self.leader = None;
        }
    }

    /// After a member is gone: the others must rebalance (or the group is empty).
    fn on_membership_lost(&mut self, now_ms: i64) {
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                if self.members.is_empty() {
                    self.generation_id += 1;
                    self.state = GroupState::Empty;
                    self.protocol_name = None;
                    self.leader = None;
                } else {
                    self.prepare_rebalance(now_ms, 0);
                }
            }
            GroupState::PreparingRebalance => self.maybe_complete_join(now_ms),
            GroupState::Empty | GroupState::Dead => {}
        }
    }

    /// Timers: expired sessions, expired member-id reservations, rebalance deadlines.
    pub fn tick(&mut self, now_ms: i64) {
        self.pending_members.retain(|_, until| *until > now_ms);
        // A member waiting in JoinGroup is bounded by the rebalance deadline instead.
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| {
                m.join_waiter.is_none()
                    && now_ms - m.last_heartbeat_ms > m.session_timeout_ms as i64
            })
            .map(|m| m.member_id.clone())
            .collect();
        for id in &expired {
            tracing::info!(group = %self.group_id, member = %id, "member session expired");
            self.remove_member(id);
        }
        if !expired.is_empty() {
            self.on_membership_lost(now_ms);
        }
        self.maybe_complete_join(now_ms);
    }

    /// Whether an offset commit from this member at this generation is accepted (Kafka's
    /// `ClassicGroup.validateOffsetCommit`). Generation -1 is the admin client
    /// (`kafka-consumer-groups --reset-offsets`) or a consumer without group management: it
    /// may commit while the group is Empty, and gets UNKNOWN_MEMBER_ID otherwise.
    pub fn validate_offset_commit(
        &mut self,
        member_id: &str,
        group_instance_id: Option<&str>,
        generation_id: i32,
        now_ms: i64,
    ) -> Option<ResponseError> {
        if self.state == GroupState::Dead {
            return Some(ResponseError::CoordinatorNotAvailable);
        }
        if generation_id < 0 && self.state == GroupState::Empty {
            return None;
        }
        if generation_id >= 0 || !member_id.is_empty() || group_instance_id.is_some() {
            if let Some(instance) = group_instance_id {
                match self.static_members.get(instance) {
                    None => return Some(ResponseError::UnknownMemberId),
                    Some(id) if id != member_id => return Some(ResponseError::FencedInstanceId),
                    Some(_) => {}
                }
            }
            if !self.members.contains_key(member_id) {
                return Some(ResponseError::UnknownMemberId);
            }
            if generation_id != self.generation_id {
                return Some(ResponseError::IllegalGeneration);
            }
        } else if self.state != GroupState::Empty {
            return Some(ResponseError::UnknownMemberId);
        }
        if self.state == GroupState::CompletingRebalance {
            return Some(ResponseError::RebalanceInProgress);
        }
        if let Some(m) = self.members.get_mut(member_id) {
            m.last_heartbeat_ms = now_ms;
        }
        None
    }

    /// Topics the members subscribe to, from their consumer-protocol metadata for the chosen
    /// protocol (Kafka's `subscribedTopics`): empty for an Empty group or another protocol
    /// type; `None` (unknown: treat every topic as subscribed, as Kafka's
    /// `isSubscribedToTopic` does) when a member's metadata is not a subscription.
    pub fn subscribed_topics(&self) -> Option<std::collections::BTreeSet<String>> {
        if self.state == GroupState::Empty || self.protocol_type.as_deref() != Some("consumer") {
            return Some(Default::default());
        }
        let protocol = self.protocol_name.clone().unwrap_or_default();
        let mut topics = std::collections::BTreeSet::new();
        for m in self.members.values() {
            let metadata = if protocol.is_empty() {
                m.protocols
                    .first()
                    .map(|(_, md)| md.clone())
                    .unwrap_or_default()
            } else {
                m.metadata_for(&protocol)
            };
            topics.extend(super::consumer_protocol::subscribed_topics(&metadata)?);
        }
        Some(topics)
    }

    /// The coordinator stops coordinating this group (its partition moved): every member
    /// waiting in JoinGroup or SyncGroup is told, so it looks for the new coordinator.
    pub fn fail_waiters(&mut self, error: ResponseError) {
        for m in self.members.values_mut() {
            if let Some(w) = m.join_waiter.take() {
                let _ = w.send(JoinResult::error(&m.member_id, error));
            }
            if let Some(w) = m.sync_waiter.take() {
                let _ = w.send(SyncResult::error(error));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn join_req(member_id: &str, protocols: &[&str]) -> JoinRequest {
        JoinRequest {
            member_id: member_id.into(),
            group_instance_id: None,
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 30_000,
            protocol_type: "consumer".into(),
            protocols: protocols
                .iter()
                .map(|p| (p.to_string(), Bytes::from(p.to_string())))
                .collect(),
            require_known_member_id: true,
        }
    }

    fn later<T>(o: Outcome<T>) -> oneshot::Receiver<T> {
        match o {
            Outcome::Later(rx) => rx,
            Outcome::Now(_) => panic!("expected a delayed response"),
        }
    }

    fn now<T: std::fmt::Debug>(o: Outcome<T>) -> T {
        match o {
            Outcome::Now(r) => r,
            Outcome::Later(_) => panic!("expected an immediate response"),
        }
    }

    /// Joins a new dynamic member: MEMBER_ID_REQUIRED, then the real join.
    fn join_new(g: &mut Group, t: i64) -> (String, oneshot::Receiver<JoinResult>) {
        let first = now(g.join(join_req("", &["range"]), t, 0));
        assert_eq!(first.error, Some(ResponseError::MemberIdRequired));
        let rx = later(g.join(join_req(&first.member_id, &["range"]), t, 0));
        (first.member_id, rx)
    }

    #[test]
    fn two_members_join_sync_and_heartbeat() {
        let mut g = Group::new("g");
        let (a, mut rx_a) = join_new(&mut g, 0);
        // The first rebalance completes as soon as everyone joined (no initial delay here).
        let ra = rx_a.try_recv().unwrap();
        assert_eq!(
            (ra.generation_id, ra.leader.as_str(), ra.members.len()),
            (1, a.as_str(), 1)
        );
        assert_eq!(g.state, GroupState::CompletingRebalance);
        // A second member forces a rebalance; the first must rejoin.
        let first = now(g.join(join_req("", &["range"]), 10, 0));
        let b = first.member_id.clone();
        let mut rx_b = later(g.join(join_req(&b, &["range"]), 10, 0));
        assert_eq!(g.state, GroupState::PreparingRebalance);
        assert!(rx_b.try_recv().is_err());
        assert_eq!(
            g.heartbeat(&a, 1, 20),
            Some(ResponseError::RebalanceInProgress)
        );
        let mut rx_a = later(g.join(join_req(&a, &["range"]), 30, 0));
        let ra = rx_a.try_recv().unwrap();
        let rb = rx_b.try_recv().unwrap();
        assert_eq!(ra.generation_id, 2);
        assert_eq!(ra.leader, a, "the leader is kept across rebalances");
        assert_eq!(ra.members.len(), 2);
        assert!(rb.members.is_empty(), "followers get no member list");
        // Sync: the follower waits for the leader's assignment.
        let mut sb = later(g.sync(&b, 2, vec![], 40));
        assert!(sb.try_recv().is_err());
        let mut sa = later(g.sync(
            &a,
            2,
            vec![
                (a.clone(), Bytes::from_static(b"A")),
                (b.clone(), Bytes::from_static(b"B")),
            ],
            40,
        ));
        assert_eq!(sa.try_recv().unwrap().assignment, Bytes::from_static(b"A"));
        assert_eq!(sb.try_recv().unwrap().assignment, Bytes::from_static(b"B"));
        assert_eq!(g.state, GroupState::Stable);
        assert_eq!(g.heartbeat(&b, 2, 50), None);
        assert_eq!(
            g.heartbeat(&b, 1, 50),
            Some(ResponseError::IllegalGeneration)
        );
        assert_eq!(
            g.heartbeat("ghost", 2, 50),
            Some(ResponseError::UnknownMemberId)
        );
    }

    #[test]
    fn expired_session_triggers_rebalance_without_the_member() {
        let mut g = Group::new("g");
        let (a, _rx) = join_new(&mut g, 0);
        let first = now(g.join(join_req("", &["range"]), 0, 0));
        let b = first.member_id;
        let _rx_b = later(g.join(join_req(&b, &["range"]), 0, 0));
        let mut rx_a = later(g.join(join_req(&a, &["range"]), 0, 0));
        rx_a.try_recv().unwrap();
        let _ = g.sync(&a, g.generation_id, vec![], 0);
        assert_eq!(g.state, GroupState::Stable);
        // b stops heartbeating; a keeps going.
        assert_eq!(g.heartbeat(&a, g.generation_id, 9_000), None);
        g.tick(10_001);
        assert!(!g.members.contains_key(&b));
        assert_eq!(g.state, GroupState::PreparingRebalance);
        let gen = g.generation_id;
        let mut rx_a = later(g.join(join_req(&a, &["range"]), 10_100, 0));
        let ra = rx_a.try_recv().unwrap();
        assert_eq!((ra.generation_id, ra.members.len()), (gen + 1, 1));
    }

    #[test]
    fn rebalance_deadline_drops_members_that_do_not_rejoin() {
        let mut g = Group::new("g");
        let (a, _) = join_new(&mut g, 0);
        let (b, mut rx_b) = join_new(&mut g, 0);
        let _ = rx_b.try_recv();
        let gen = g.generation_id;
        // b rejoins (e.g. new subscription) and a never does.
        let mut rx_b = later(g.join(join_req(&b, &["range", "roundrobin"]), 100, 0));
        // a keeps heartbeating (told a rebalance is in progress) but never rejoins.
        for t in [9_000, 18_000, 27_000] {
            assert_eq!(
                g.heartbeat(&a, gen, t),
                Some(ResponseError::RebalanceInProgress)
            );
            g.tick(t);
        }
        assert!(
            rx_b.try_recv().is_err(),
            "waits for a until the rebalance timeout"
        );
        g.tick(30_101);
        let rb = rx_b.try_recv().unwrap();
        assert_eq!(rb.generation_id, gen + 1);
        assert!(!g.members.contains_key(&a));
    }

    #[test]
    fn protocols_must_be_compatible_and_votes_pick_one() {
        let mut g = Group::new("g");
        let (_, _) = join_new(&mut g, 0);
        // Checked before a member id is handed out, as Kafka does.
        let r = now(g.join(join_req("", &["sticky"]), 0, 0));
        assert_eq!(r.error, Some(ResponseError::InconsistentGroupProtocol));
        assert_eq!(g.select_protocol(), "range");
    }

    #[test]
    fn static_member_rejoin_keeps_assignment_without_rebalance() {
        let mut g = Group::new("g");
        let mut req = join_req("", &["range"]);
        req.group_instance_id = Some("i-1".into());
        let mut rx = later(g.join(req.clone(), 0, 0));
        let r = rx.try_recv().unwrap();
        let old_id = r.member_id.clone();
        let _ = g.sync(
            &old_id,
            r.generation_id,
            vec![(old_id.clone(), Bytes::from_static(b"X"))],
            0,
        );
        // Need a second member so the first is not the leader.
        let (b, mut rx_b) = join_new(&mut g, 1);
        let mut rx_a = later(g.join(
            JoinRequest {
                member_id: old_id.clone(),
                ..req.clone()
            },
            1,
            0,
        ));
        let ra = rx_a.try_recv().unwrap();
        let _ = rx_b.try_recv().unwrap();
        let leader = ra.leader.clone();
        let _ = g.sync(
            &leader,
            ra.generation_id,
            vec![
                (old_id.clone(), Bytes::from_static(b"X")),
                (b.clone(), Bytes::from_static(b"Y")),
            ],
            2,
        );
        assert_eq!(g.state, GroupState::Stable);
        if leader != old_id {
            let r = now(g.join(req.clone(), 3, 0));
            assert_ne!(r.member_id, old_id);
            assert_eq!(r.generation_id, ra.generation_id, "no new generation");
            assert_eq!(g.state, GroupState::Stable);
            assert_eq!(
                g.heartbeat(&old_id, ra.generation_id, 4),
                Some(ResponseError::UnknownMemberId)
            );
        }
    }

    #[test]
    fn offset_commit_validation() {
        let mut g = Group::new("g");
        assert_eq!(
            g.validate_offset_commit("", None, -1, 0),
            None,
            "standalone commit to an empty group"
        );
        let (a, mut rx) = join_new(&mut g, 0);
        let gen = rx.try_recv().unwrap().generation_id;
        assert_eq!(
            g.validate_offset_commit("", None, -1, 0),
            Some(ResponseError::UnknownMemberId)
        );
        assert_eq!(
            g.validate_offset_commit(&a, None, gen, 0),
            Some(ResponseError::RebalanceInProgress)
        );
        let _ = g.sync(&a, gen, vec![], 0);
        assert_eq!(g.validate_offset_commit(&a, None, gen, 0), None);
        assert_eq!(
            g.validate_offset_commit(&a, None, gen + 1, 0),
            Some(ResponseError::IllegalGeneration)
        );
        assert_eq!(g.leave(&a, None, 0), None);
        assert_eq!(g.state, GroupState::Empty);
        // The admin client (generation -1, no member id) may commit to an Empty group, and
        // so may a former member: an Empty group has no generation to check.
        assert_eq!(g.validate_offset_commit("", None, -1, 0), None);
        assert_eq!(g.validate_offset_commit(&a, None, -1, 0), None);
        // A generation >= 0 must name a member.
        assert_eq!(
            g.validate_offset_commit(&a, None, gen, 0),
            Some(ResponseError::UnknownMemberId)
        );
    }

    #[test]
    fn admin_commit_to_active_group_is_refused() {
        let mut g = Group::new("g");
        let (a, mut rx) = join_new(&mut g, 0);
        let gen = rx.try_recv().unwrap().generation_id;
        let _ = g.sync(&a, gen, vec![], 0);
        assert_eq!(g.state, GroupState::Stable);
        assert_eq!(
            g.validate_offset_commit("", None, -1, 0),
            Some(ResponseError::UnknownMemberId)
        );
        // A member id with generation -1 is checked against the generation.
        assert_eq!(
            g.validate_offset_commit(&a, None, -1, 0),
            Some(ResponseError::IllegalGeneration)
        );
        assert_eq!(
            g.validate_offset_commit("", Some("i-9"), -1, 0),
            Some(ResponseError::UnknownMemberId)
        );
    }

    #[test]
    fn subscribed_topics_come_from_consumer_metadata() {
        let subscription = |topics: &[&str]| {
            let mut b = vec![0u8, 0];
            b.extend_from_slice(&(topics.len() as i32).to_be_bytes());
            for t in topics {
                b.extend_from_slice(&(t.len() as i16).to_be_bytes());
                b.extend_from_slice(t.as_bytes());
            }
            b.extend_from_slice(&[0xff, 0xff, 0xff, 0xff]);
            Bytes::from(b)
        };
        let mut g = Group::new("g");
        assert_eq!(g.subscribed_topics(), Some(Default::default()));
        let mut req = join_req("", &["range"]);
        req.protocols = vec![("range".into(), subscription(&["orders", "users"]))];
        req.require_known_member_id = false;
        let mut rx = later(g.join(req, 0, 0));
        let r = rx.try_recv().unwrap();
        let _ = g.sync(&r.member_id, r.generation_id, vec![], 0);
        let topics: Vec<String> = g.subscribed_topics().unwrap().into_iter().collect();
        assert_eq!(topics, vec!["orders".to_string(), "users".to_string()]);
    }

    #[test]
    fn metadata_that_is_no_subscription_subscribes_to_everything() {
        // Version 3, a topic count of 2^31 - 1 and five bytes: not a subscription.
        let mut garbage = vec![0u8, 3, 0x7f, 0xff, 0xff, 0xff];
        garbage.extend_from_slice(b"short");
        let mut g = Group::new("g");
        let mut req = join_req("", &["range"]);
        req.protocols = vec![("range".into(), Bytes::from(garbage))];
        req.require_known_member_id = false;
        let mut rx = later(g.join(req, 0, 0));
        let r = rx.try_recv().unwrap();
        let _ = g.sync(&r.member_id, r.generation_id, vec![], 0);
        assert_eq!(g.subscribed_topics(), None);
    }
}
