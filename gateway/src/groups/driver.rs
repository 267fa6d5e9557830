//! The async shell around [`Coordinator`]: a cloneable handle, a mutex
//! around the state machine, one tokio task that sleeps until the machine's
//! next deadline, and a oneshot channel per long-lived request.
//!
//! Time is tokio's clock (`tokio::time::Instant`), so the coordinator runs
//! on turmoil's simulated time and on paused test clocks.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Weak};
use std::time::Instant;

use meshgate_protocol::{
    GroupSummary, Heartbeat, JoinGroup, LeaveGroup, Response, SyncGroup, WireError,
};
use parking_lot::Mutex;
use tokio::sync::{Notify, oneshot};

use super::assignor::PartitionCounts;
use super::config::{GroupConfig, GroupConfigError};
use super::coordinator::Coordinator;
use super::error::GroupError;
use super::types::{AssignmentMode, GroupDetails, GroupStats, RequestToken};

/// A cloneable handle to the node's group coordinator.
///
/// Joins and syncs return futures that resolve when the coordinator
/// answers. They are cancellation-safe: dropping one (the client went
/// away) tells the coordinator, which removes a member whose join is
/// dropped and leaves one whose sync is dropped to its session timeout, so
/// a vanished client never wedges its group.
///
/// The timer task stops when every handle (and every pending request) is
/// gone, or at [`GroupCoordinator::shutdown`].
#[derive(Debug, Clone)]
pub struct GroupCoordinator {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<DriverState>,
    /// Wakes the timer task: a deadline earlier than the one it sleeps
    /// until appeared, or the coordinator stops.
    wake: Arc<Notify>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        // The timer task holds only a weak reference: let it see it is gone.
        self.wake.notify_one();
    }
}

#[derive(Debug)]
struct DriverState {
    machine: Coordinator,
    /// Bounded by the machine's pending requests (at most a join and a sync
    /// per member): a request leaves when answered or cancelled.
    waiters: BTreeMap<RequestToken, oneshot::Sender<Response>>,
    next_token: u64,
    /// The deadline the timer task sleeps until; `None` while it waits
    /// without one.
    timer_armed: Option<Instant>,
    stopped: bool,
}

/// The current time on tokio's clock (simulated under turmoil and paused
/// tests).
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

impl DriverState {
    /// Hands every answer the machine decided to its waiter, and says
    /// whether the timer task must re-arm for an earlier deadline.
    fn dispatch(&mut self) -> bool {
        while let Some((token, response)) = self.machine.poll_output() {
            if let Some(sender) = self.waiters.remove(&token) {
                // The receiver is gone only if its future was dropped after
                // the answer was decided; nobody is left to tell.
                let _ = sender.send(response);
            }
        }
        match (self.machine.poll_timeout(), self.timer_armed) {
            (Some(next), Some(armed)) => next < armed,
            (Some(_), None) => true,
            (None, _) => false,
        }
    }

    fn register(&mut self) -> (RequestToken, oneshot::Receiver<Response>) {
        let token = RequestToken(self.next_token);
        self.next_token += 1;
        let (sender, receiver) = oneshot::channel();
        self.waiters.insert(token, sender);
        (token, receiver)
    }
}

/// A join or sync in flight; cancels it in the coordinator when dropped
/// before its answer arrived.
struct InFlight {
    shared: Arc<Shared>,
    group: String,
    token: RequestToken,
    answered: bool,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.answered {
            return;
        }
        let mut state = self.shared.state.lock();
        if state.waiters.remove(&self.token).is_some() {
            state.machine.handle_cancel(now(), &self.group, self.token);
            if state.dispatch() {
                self.shared.wake.notify_one();
            }
        }
    }
}

fn stopped_response() -> Response {
    Err(WireError::from(GroupError::ShuttingDown))
}

impl GroupCoordinator {
    /// Starts a coordinator and its timer task on the current tokio
    /// runtime (panics outside one, like `tokio::spawn`). See
    /// [`Coordinator::new`] for `first_member_number`.
    pub fn new(config: GroupConfig, first_member_number: u64) -> Result<Self, GroupConfigError> {
        let machine = Coordinator::new(config, first_member_number)?;
        let wake = Arc::new(Notify::new());
        let shared = Arc::new(Shared {
            state: Mutex::new(DriverState {
                machine,
                waiters: BTreeMap::new(),
                next_token: 0,
                timer_armed: None,
                stopped: false,
            }),
            wake: Arc::clone(&wake),
        });
        tokio::spawn(run_timer(Arc::downgrade(&shared), wake));
        Ok(Self { shared })
    }

    /// Runs one input against the machine and delivers what it decided;
    /// `None` once stopped.
    fn apply<T>(&self, input: impl FnOnce(&mut Coordinator, Instant) -> T) -> Option<T> {
        let mut state = self.shared.state.lock();
        if state.stopped {
            return None;
        }
        let result = input(&mut state.machine, now());
        if state.dispatch() {
            self.shared.wake.notify_one();
        }
        Some(result)
    }

    /// Submits a long-lived request: registers its waiter, then runs it.
    /// `None` once stopped.
    fn submit(
        &self,
        input: impl FnOnce(&mut Coordinator, Instant, RequestToken),
    ) -> Option<(RequestToken, oneshot::Receiver<Response>)> {
        let mut state = self.shared.state.lock();
        if state.stopped {
            return None;
        }
        // Registered first: the answer may be decided during `input`.
        let (token, receiver) = state.register();
        input(&mut state.machine, now(), token);
        if state.dispatch() {
            self.shared.wake.notify_one();
        }
        Some((token, receiver))
    }

    /// The future of a submitted request's answer; dropping it, even
    /// before its first poll, cancels the request.
    fn answer(
        &self,
        group: String,
        submitted: Option<(RequestToken, oneshot::Receiver<Response>)>,
    ) -> impl Future<Output = Response> + Send + use<> {
        // Built now, not inside the async block: a future dropped unpolled
        // must cancel its request too.
        let waiting = submitted.map(|(token, receiver)| {
            let in_flight = InFlight {
                shared: Arc::clone(&self.shared),
                group,
                token,
                answered: false,
            };
            (in_flight, receiver)
        });
        async move {
            let Some((mut in_flight, receiver)) = waiting else {
                return stopped_response();
            };
            let response = receiver.await;
            in_flight.answered = true;
            // The sender goes without an answer only at shutdown.
            response.unwrap_or_else(|_| stopped_response())
        }
    }

    /// Joins (or rejoins) a group; resolves at the end of the join phase.
    /// The request is submitted when this is called; the returned future
    /// only waits (dropping it cancels the join, removing its member).
    /// `counts` is read during this call only (see
    /// [`Coordinator::handle_join`]).
    pub fn join(
        &self,
        request: JoinGroup,
        mode: AssignmentMode,
        counts: &dyn PartitionCounts,
    ) -> impl Future<Output = Response> + Send + use<> {
        let group = request.group.clone();
        let submitted = self.submit(|machine, now, token| {
            machine.handle_join(now, token, request, mode, counts);
        });
        self.answer(group, submitted)
    }

    /// Gets this member's assignment (and, from a leader, sets everyone's);
    /// resolves at once in a stable group, else when the leader's sync
    /// arrives. Submitted when called, like [`GroupCoordinator::join`].
    pub fn sync(&self, request: SyncGroup) -> impl Future<Output = Response> + Send + use<> {
        let group = request.group.clone();
        let submitted = self.submit(|machine, now, token| {
            machine.handle_sync(now, token, request);
        });
        self.answer(group, submitted)
    }

    /// Keeps a membership alive (see [`Coordinator::handle_heartbeat`]).
    /// Never waits today; async so the coordinator can move behind a
    /// channel or to another node without changing callers.
    pub async fn heartbeat(&self, request: Heartbeat) -> Response {
        self.apply(|machine, now| machine.handle_heartbeat(now, request))
            .unwrap_or_else(stopped_response)
    }

    /// Leaves a group at once (see [`Coordinator::handle_leave`]).
    pub async fn leave(&self, request: LeaveGroup) -> Response {
        self.apply(|machine, now| machine.handle_leave(now, request))
            .unwrap_or_else(stopped_response)
    }

    /// Whether an offset commit may proceed (see
    /// [`Coordinator::check_commit`]).
    pub async fn check_commit(
        &self,
        group: &str,
        member: Option<(u32, &str)>,
    ) -> Result<(), GroupError> {
        self.shared.state.lock().machine.check_commit(group, member)
    }

    /// Every group, by name.
    pub async fn list(&self) -> Vec<GroupSummary> {
        self.shared.state.lock().machine.list()
    }

    /// One group in detail.
    pub async fn describe(&self, group: &str) -> Option<GroupDetails> {
        self.shared.state.lock().machine.describe(group)
    }

    /// Partition counts changed (see
    /// [`Coordinator::handle_metadata_changed`]).
    pub fn metadata_changed(&self, counts: &dyn PartitionCounts) {
        // Nothing to refresh once stopped.
        let _ = self.apply(|machine, now| machine.handle_metadata_changed(now, counts));
    }

    /// Counters and gauges for metrics.
    pub fn stats(&self) -> GroupStats {
        self.shared.state.lock().machine.stats()
    }

    /// Stops the coordinator: every waiting join and sync is answered
    /// `ShuttingDown`, as are later requests, and the timer task ends.
    /// Group state is not kept (members rejoin elsewhere or after restart).
    pub fn shutdown(&self) {
        let mut state = self.shared.state.lock();
        state.stopped = true;
        for (_, sender) in std::mem::take(&mut state.waiters) {
            let _ = sender.send(stopped_response());
        }
        drop(state);
        self.shared.wake.notify_one();
    }
}

/// Sleeps until the machine's next deadline, runs its timeouts, repeats.
async fn run_timer(shared: Weak<Shared>, wake: Arc<Notify>) {
    loop {
        let deadline = {
            let Some(shared) = shared.upgrade() else {
                return;
            };
            let mut state = shared.state.lock();
            if state.stopped {
                return;
            }
            let deadline = state.machine.poll_timeout();
            state.timer_armed = deadline;
            deadline
        };
        match deadline {
            Some(deadline) => {
                tokio::select! {
                    biased;
                    () = wake.notified() => {}
                    () = tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)) => {}
                }
            }
            None => wake.notified().await,
        }
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let mut state = shared.state.lock();
        state.timer_armed = None;
        state.machine.handle_timeout(now());
        // Re-armed at the top of the loop either way.
        let _ = state.dispatch();
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use bytes::Bytes;
    use meshgate_protocol::{
        ErrorCode, GroupProtocol, JoinOk, Reply, TopicPartitions, decode_assignment,
        encode_subscription,
    };
    use tokio::time::Instant as TokioInstant;

    use super::*;

    fn counts() -> BTreeMap<String, u32> {
        BTreeMap::from([("t".to_string(), 7)])
    }

    fn native(member: Option<&str>, client: &str) -> JoinGroup {
        JoinGroup {
            group: "g".into(),
            member_id: member.map(str::to_string),
            client_id: client.into(),
            session_timeout_ms: 2_000,
            rebalance_timeout_ms: 5_000,
            protocols: vec![GroupProtocol {
                name: "range".into(),
                metadata: encode_subscription(&["t".to_string()]),
            }],
        }
    }

    fn joined(response: Response) -> JoinOk {
        match response {
            Ok(Reply::Joined(joined)) => joined,
            other => panic!("not joined: {other:?}"),
        }
    }

    async fn partitions(coordinator: &GroupCoordinator, joined: &JoinOk) -> Vec<TopicPartitions> {
        let request = SyncGroup {
            group: "g".into(),
            generation: joined.generation,
            member_id: joined.member_id.clone(),
            assignments: Vec::new(),
        };
        match coordinator.sync(request).await {
            Ok(Reply::Synced(bytes)) => decode_assignment(&bytes).expect("node assignment"),
            other => panic!("not synced: {other:?}"),
        }
    }

    fn heartbeat(joined: &JoinOk) -> Heartbeat {
        Heartbeat {
            group: "g".into(),
            generation: joined.generation,
            member_id: joined.member_id.clone(),
        }
    }

    fn start() -> GroupCoordinator {
        GroupCoordinator::new(GroupConfig::default(), 1).expect("valid config")
    }

    #[tokio::test(start_paused = true)]
    async fn members_joining_together_form_one_generation_after_the_initial_delay() {
        let coordinator = start();
        let begin = TokioInstant::now();
        let (a, b, c) = tokio::join!(
            coordinator.join(native(None, "a"), AssignmentMode::Node, &counts()),
            coordinator.join(native(None, "b"), AssignmentMode::Node, &counts()),
            coordinator.join(native(None, "c"), AssignmentMode::Node, &counts()),
        );
        assert_eq!(begin.elapsed(), Duration::from_millis(300));
        let members = [joined(a), joined(b), joined(c)];
        assert!(members.iter().all(|member| member.generation == 1));
        let mut sizes = Vec::new();
        for member in &members {
            sizes.push(partitions(&coordinator, member).await[0].partitions.len());
        }
        assert_eq!(sizes, [3, 2, 2]);
    }

    #[tokio::test(start_paused = true)]
    async fn silent_member_is_evicted_on_tokio_time() {
        let coordinator = start();
        let a = joined(
            coordinator
                .join(native(None, "a"), AssignmentMode::Node, &counts())
                .await,
        );
        assert_eq!(a.generation, 1);
        // b's join waits for a to rejoin; a's rejoin completes the phase.
        let b = coordinator.join(native(None, "b"), AssignmentMode::Node, &counts());
        let rejoin = native(Some(&a.member_id), "a");
        let a = joined(
            coordinator
                .join(rejoin, AssignmentMode::Node, &counts())
                .await,
        );
        let b = joined(b.await);
        assert_eq!((a.generation, b.generation), (2, 2));
        for _ in 0..2 {
            tokio::time::sleep(Duration::from_millis(900)).await;
            assert_eq!(
                coordinator.heartbeat(heartbeat(&a)).await,
                Ok(Reply::HeartbeatOk)
            );
        }
        tokio::time::sleep(Duration::from_millis(600)).await;
        // b went silent 2.4 s ago, past its 2 s session.
        let refused = coordinator
            .heartbeat(heartbeat(&b))
            .await
            .expect_err("evicted");
        assert_eq!(refused.code, ErrorCode::UnknownMember);
        assert_eq!(coordinator.stats().sessions_expired, 1);
        let refused = coordinator
            .heartbeat(heartbeat(&a))
            .await
            .expect_err("rebalancing");
        assert_eq!(refused.code, ErrorCode::RebalanceInProgress);
    }

    #[tokio::test(start_paused = true)]
    async fn dropped_join_futures_remove_their_members_instead_of_wedging_the_group() {
        let coordinator = start();
        let a = coordinator.join(native(None, "a"), AssignmentMode::Node, &counts());
        drop(coordinator.join(native(None, "gone"), AssignmentMode::Node, &counts()));
        let a = joined(a.await);
        assert_eq!(partitions(&coordinator, &a).await[0].partitions.len(), 7);

        // A newcomer whose client vanishes mid-join: a need not wait for it.
        drop(coordinator.join(native(None, "ghost"), AssignmentMode::Node, &counts()));
        let refused = coordinator
            .heartbeat(heartbeat(&a))
            .await
            .expect_err("rebalancing");
        assert_eq!(refused.code, ErrorCode::RebalanceInProgress);
        let begin = TokioInstant::now();
        let again = joined(
            coordinator
                .join(
                    native(Some(&a.member_id), "a"),
                    AssignmentMode::Node,
                    &counts(),
                )
                .await,
        );
        assert_eq!(begin.elapsed(), Duration::ZERO);
        assert_eq!(again.generation, 2);
        let details = coordinator.describe("g").await.expect("exists");
        assert_eq!(details.members.len(), 1);
        assert_eq!(coordinator.stats().requests_pending, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn leader_sync_releases_waiting_followers() {
        let coordinator = start();
        let kafka = |client: &str| JoinGroup {
            protocols: vec![GroupProtocol {
                name: "range".into(),
                metadata: Bytes::from_static(b"kafka"),
            }],
            ..native(None, client)
        };
        let (leader, follower) = tokio::join!(
            coordinator.join(kafka("a"), AssignmentMode::Leader, &counts()),
            coordinator.join(kafka("b"), AssignmentMode::Leader, &counts()),
        );
        let (leader, follower) = (joined(leader), joined(follower));
        assert_eq!(leader.members.len(), 2);
        let waiting = tokio::spawn(coordinator.sync(SyncGroup {
            group: "g".into(),
            generation: 1,
            member_id: follower.member_id.clone(),
            assignments: Vec::new(),
        }));
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!waiting.is_finished());
        let assignments = vec![(follower.member_id.clone(), Bytes::from_static(b"yours"))];
        let own = coordinator
            .sync(SyncGroup {
                group: "g".into(),
                generation: 1,
                member_id: leader.member_id.clone(),
                assignments,
            })
            .await;
        assert_eq!(own, Ok(Reply::Synced(Bytes::new())));
        let theirs = waiting.await.expect("task ran");
        assert_eq!(theirs, Ok(Reply::Synced(Bytes::from_static(b"yours"))));
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_answers_waiting_requests_and_refuses_new_ones() {
        let coordinator = start();
        let waiting =
            tokio::spawn(coordinator.join(native(None, "a"), AssignmentMode::Node, &counts()));
        tokio::task::yield_now().await;
        coordinator.shutdown();
        let answer = waiting.await.expect("task ran").expect_err("stopped");
        assert_eq!(answer.code, ErrorCode::ShuttingDown);
        let later = coordinator
            .join(native(None, "b"), AssignmentMode::Node, &counts())
            .await;
        assert_eq!(later.expect_err("stopped").code, ErrorCode::ShuttingDown);
        let beat = coordinator
            .heartbeat(Heartbeat {
                group: "g".into(),
                generation: 1,
                member_id: "a-1".into(),
            })
            .await;
        assert_eq!(beat.expect_err("stopped").code, ErrorCode::ShuttingDown);
    }

    #[tokio::test(start_paused = true)]
    async fn timer_task_ends_when_the_last_handle_is_dropped() {
        let metrics = tokio::runtime::Handle::current().metrics();
        let before = metrics.num_alive_tasks();
        let coordinator = start();
        let clone = coordinator.clone();
        tokio::task::yield_now().await;
        assert_eq!(metrics.num_alive_tasks(), before + 1);
        drop(coordinator);
        drop(clone);
        tokio::task::yield_now().await;
        assert_eq!(metrics.num_alive_tasks(), before);
    }
}
