//! Group membership: join, sync, heartbeats in the background, and the
//! signal that tells the consumer to rejoin.
//!
//! The node computes assignments for the `range` and `roundrobin`
//! protocols, so every member (the leader too) sends an empty assignment
//! list in SyncGroup and decodes its own from the reply.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use meshgate_protocol::{
    ErrorCode, GroupProtocol, Heartbeat, JoinGroup, LeaveGroup, Reply, Request, SyncGroup,
    TopicPartitions, decode_assignment, encode_subscription,
};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::client::{Client, RetryOn, expect_reply};
use crate::error::ClientError;

/// How partitions are spread over members, computed by the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Assignor {
    /// Contiguous ranges of each topic's partitions per member.
    #[default]
    Range,
    /// Partitions dealt to members in turn.
    RoundRobin,
}

impl Assignor {
    /// The protocol name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Range => "range",
            Self::RoundRobin => "roundrobin",
        }
    }
}

/// Joins and syncs tried in a row before giving up, each after a rebalance
/// or an expired membership.
const JOIN_ATTEMPTS_MAX: u32 = 20;

/// What the heartbeat task tells the consumer.
#[derive(Debug, Default)]
pub(crate) struct Signal {
    rejoin: AtomicBool,
    forget_member: AtomicBool,
    pub(crate) notify: Notify,
}

impl Signal {
    pub(crate) fn needs_rejoin(&self) -> bool {
        self.rejoin.load(Ordering::Acquire)
    }

    /// Asks for a rejoin; `forget` drops the member id first (the node no
    /// longer knows it).
    pub(crate) fn raise(&self, forget: bool) {
        if forget {
            self.forget_member.store(true, Ordering::Release);
        }
        self.rejoin.store(true, Ordering::Release);
        self.notify.notify_one();
    }

    /// Raises the signal if `error` means the membership is out of date.
    pub(crate) fn raise_for(&self, error: &ClientError) {
        match error.code() {
            Some(ErrorCode::RebalanceInProgress | ErrorCode::IllegalGeneration) => {
                self.raise(false);
            }
            Some(ErrorCode::UnknownMember) => self.raise(true),
            _ => {}
        }
    }
}

/// A consumer's membership of a group.
#[derive(Debug)]
pub(crate) struct Membership {
    pub(crate) group: String,
    pub(crate) topics: Vec<String>,
    pub(crate) member_id: Option<String>,
    pub(crate) generation: Option<u32>,
    pub(crate) signal: Arc<Signal>,
    heartbeat: Option<JoinHandle<()>>,
    session_timeout: Duration,
    rebalance_timeout: Duration,
    assignor: Assignor,
}

impl Drop for Membership {
    fn drop(&mut self) {
        if let Some(task) = self.heartbeat.take() {
            task.abort();
        }
    }
}

impl Membership {
    pub(crate) fn new(
        group: String,
        topics: Vec<String>,
        session_timeout: Duration,
        rebalance_timeout: Duration,
        assignor: Assignor,
    ) -> Self {
        let signal = Arc::new(Signal::default());
        // Not yet a member: the first poll joins.
        signal.raise(false);
        Self {
            group,
            topics,
            member_id: None,
            generation: None,
            signal,
            heartbeat: None,
            session_timeout,
            rebalance_timeout,
            assignor,
        }
    }

    /// The generation and member id to commit with, while a member.
    pub(crate) fn commit_identity(&self) -> Option<(u32, String)> {
        Some((self.generation?, self.member_id.clone()?))
    }

    fn protocols(&self) -> Vec<GroupProtocol> {
        let metadata = encode_subscription(&self.topics);
        let other = match self.assignor {
            Assignor::Range => Assignor::RoundRobin,
            Assignor::RoundRobin => Assignor::Range,
        };
        [self.assignor, other]
            .into_iter()
            .map(|assignor| GroupProtocol {
                name: assignor.name().to_string(),
                metadata: metadata.clone(),
            })
            .collect()
    }

    /// Stops heartbeating (before a rejoin or leave).
    pub(crate) fn stop_heartbeat(&mut self) {
        if let Some(task) = self.heartbeat.take() {
            task.abort();
        }
    }

    /// Joins (or rejoins) and syncs until this member has an assignment of
    /// a stable generation; then heartbeats in the background.
    pub(crate) async fn join(
        &mut self,
        client: &Client,
    ) -> Result<Vec<TopicPartitions>, ClientError> {
        self.stop_heartbeat();
        let mut last_error = None;
        for attempt in 0..JOIN_ATTEMPTS_MAX {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(20 * u64::from(attempt.min(10)))).await;
            }
            if self.signal.forget_member.swap(false, Ordering::AcqRel) {
                self.member_id = None;
            }
            self.signal.rejoin.store(false, Ordering::Release);
            match self.join_and_sync(client).await {
                Ok(assignment) => {
                    self.start_heartbeat(client.clone());
                    return Ok(assignment);
                }
                Err(error)
                    if matches!(
                        error.code(),
                        Some(
                            ErrorCode::RebalanceInProgress
                                | ErrorCode::IllegalGeneration
                                | ErrorCode::UnknownMember
                        )
                    ) =>
                {
                    if error.code() == Some(ErrorCode::UnknownMember) {
                        self.member_id = None;
                    }
                    tracing::debug!(target: "meshgate::client::group", group = %self.group, %error, "rejoining");
                    last_error = Some(error);
                }
                Err(error) => return Err(error),
            }
        }
        Err(last_error.unwrap_or(ClientError::Protocol("join attempts exhausted".into())))
    }

    async fn join_and_sync(
        &mut self,
        client: &Client,
    ) -> Result<Vec<TopicPartitions>, ClientError> {
        let join = Request::JoinGroup(JoinGroup {
            group: self.group.clone(),
            member_id: self.member_id.clone(),
            client_id: client.config().client_id.clone(),
            session_timeout_ms: millis(self.session_timeout),
            rebalance_timeout_ms: millis(self.rebalance_timeout),
            protocols: self.protocols(),
        });
        let reply = client
            .request_waiting(join, self.rebalance_timeout, RetryOn::TransportOnly)
            .await?;
        let joined = expect_reply!(reply, Reply::Joined(joined) => joined)?;
        self.member_id = Some(joined.member_id.clone());
        self.generation = Some(joined.generation);
        let sync = Request::SyncGroup(SyncGroup {
            group: self.group.clone(),
            generation: joined.generation,
            member_id: joined.member_id.clone(),
            assignments: Vec::new(),
        });
        let reply = client
            .request_waiting(sync, self.rebalance_timeout, RetryOn::TransportOnly)
            .await?;
        let bytes = expect_reply!(reply, Reply::Synced(bytes) => bytes)?;
        if bytes.is_empty() {
            return Ok(Vec::new());
        }
        let assignment = decode_assignment(&bytes).ok_or_else(|| {
            ClientError::Protocol(format!("group {}: undecodable assignment", self.group))
        })?;
        tracing::debug!(target: "meshgate::client::group", group = %self.group, generation = joined.generation, member = %joined.member_id, ?assignment, "assigned");
        Ok(assignment)
    }

    fn start_heartbeat(&mut self, client: Client) {
        let (Some(generation), Some(member_id)) = (self.generation, self.member_id.clone()) else {
            return;
        };
        let request = Heartbeat {
            group: self.group.clone(),
            generation,
            member_id,
        };
        let period = (self.session_timeout / 3).max(Duration::from_millis(10));
        let signal = self.signal.clone();
        self.heartbeat = Some(tokio::spawn(async move {
            loop {
                tokio::time::sleep(period).await;
                let reply = client
                    .request_waiting(
                        Request::Heartbeat(request.clone()),
                        Duration::ZERO,
                        RetryOn::TransportOnly,
                    )
                    .await;
                match reply {
                    Ok(_) => {}
                    Err(error) if error.code().is_some_and(is_membership_code) => {
                        signal.raise_for(&error);
                        return;
                    }
                    Err(error) => {
                        tracing::debug!(target: "meshgate::client::group", %error, "heartbeat failed; trying again");
                    }
                }
            }
        }));
    }

    /// Leaves the group (best effort: the session timeout evicts us anyway).
    pub(crate) async fn leave(&mut self, client: &Client) -> Result<(), ClientError> {
        self.stop_heartbeat();
        let Some(member_id) = self.member_id.take() else {
            return Ok(());
        };
        self.generation = None;
        let request = Request::LeaveGroup(LeaveGroup {
            group: self.group.clone(),
            member_id,
        });
        let reply = client
            .request_waiting(request, Duration::ZERO, RetryOn::TransportOnly)
            .await?;
        expect_reply!(reply, Reply::Left => ())
    }
}

fn is_membership_code(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::RebalanceInProgress | ErrorCode::IllegalGeneration | ErrorCode::UnknownMember
    )
}

fn millis(duration: Duration) -> u32 {
    duration.as_millis().min(u128::from(u32::MAX)) as u32
}
