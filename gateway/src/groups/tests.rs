//! Behaviour of the sans-IO coordinator on a virtual clock.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use bytes::Bytes;
use meshgate_protocol::{
    ErrorCode, GroupProtocol, Heartbeat, JoinGroup, JoinOk, LeaveGroup, Reply, Response, SyncGroup,
    TopicPartitions, decode_assignment, decode_subscription, encode_subscription,
};
use proptest::prelude::*;

use super::*;

const SESSION_MS: u32 = 10_000;
const REBALANCE_MS: u32 = 5_000;
const DELAY_MS: u64 = 300;

/// Drives a [`Coordinator`] on a virtual clock and checks that every
/// request token is answered at most once.
struct Harness {
    coordinator: Coordinator,
    now: Instant,
    next_token: u64,
    counts: BTreeMap<String, u32>,
    answers: BTreeMap<RequestToken, Response>,
    /// Every token ever answered, to catch a second answer.
    answered: BTreeSet<RequestToken>,
}

impl Harness {
    fn new() -> Self {
        Self::with_config(GroupConfig::default())
    }

    fn with_config(config: GroupConfig) -> Self {
        #[allow(clippy::disallowed_methods)]
        // The origin of the virtual clock; nothing reads it again.
        let now = Instant::now();
        Self {
            coordinator: Coordinator::new(config, 1).expect("valid config"),
            now,
            next_token: 0,
            counts: BTreeMap::from([("t".to_string(), 7), ("u".to_string(), 2)]),
            answers: BTreeMap::new(),
            answered: BTreeSet::new(),
        }
    }

    fn token(&mut self) -> RequestToken {
        self.next_token += 1;
        RequestToken(self.next_token)
    }

    fn collect(&mut self) {
        self.coordinator.assert_invariants();
        while let Some((token, response)) = self.coordinator.poll_output() {
            assert!(token.0 <= self.next_token, "answer to a token never issued");
            assert!(self.answered.insert(token), "{token:?} answered twice");
            self.answers.insert(token, response);
        }
    }

    fn join_request(&mut self, request: JoinGroup, mode: AssignmentMode) -> RequestToken {
        let token = self.token();
        let now = self.now;
        self.coordinator
            .handle_join(now, token, request, mode, &self.counts);
        self.collect();
        token
    }

    /// A node-mode join offering `protocol` over `topics`.
    fn join_with(
        &mut self,
        group: &str,
        member: Option<&str>,
        client: &str,
        topics: &[&str],
        protocol: &str,
    ) -> RequestToken {
        let request = join_request(group, member, client, vec![subscription(protocol, topics)]);
        self.join_request(request, AssignmentMode::Node)
    }

    fn join(
        &mut self,
        group: &str,
        member: Option<&str>,
        client: &str,
        topics: &[&str],
    ) -> RequestToken {
        self.join_with(group, member, client, topics, "range")
    }

    fn sync_with(
        &mut self,
        group: &str,
        generation: u32,
        member: &str,
        assignments: Vec<(String, Bytes)>,
    ) -> RequestToken {
        let token = self.token();
        let request = SyncGroup {
            group: group.into(),
            generation,
            member_id: member.into(),
            assignments,
        };
        let now = self.now;
        self.coordinator.handle_sync(now, token, request);
        self.collect();
        token
    }

    fn sync(&mut self, group: &str, generation: u32, member: &str) -> RequestToken {
        self.sync_with(group, generation, member, Vec::new())
    }

    /// Syncs and decodes the node-computed assignment.
    fn partitions(&mut self, group: &str, generation: u32, member: &str) -> Vec<TopicPartitions> {
        let token = self.sync(group, generation, member);
        match self.take(token) {
            Some(Ok(Reply::Synced(bytes))) => decode_assignment(&bytes).expect("a node assignment"),
            other => panic!("sync of {member}: {other:?}"),
        }
    }

    fn heartbeat(&mut self, group: &str, generation: u32, member: &str) -> Response {
        let request = Heartbeat {
            group: group.into(),
            generation,
            member_id: member.into(),
        };
        let response = self.coordinator.handle_heartbeat(self.now, request);
        self.collect();
        response
    }

    fn leave(&mut self, group: &str, member: &str) -> Response {
        let request = LeaveGroup {
            group: group.into(),
            member_id: member.into(),
        };
        let response = self.coordinator.handle_leave(self.now, request);
        self.collect();
        response
    }

    fn take(&mut self, token: RequestToken) -> Option<Response> {
        self.answers.remove(&token)
    }

    fn joined(&mut self, token: RequestToken) -> JoinOk {
        match self.take(token) {
            Some(Ok(Reply::Joined(joined))) => joined,
            other => panic!("join {token:?}: {other:?}"),
        }
    }

    fn error(&mut self, token: RequestToken) -> ErrorCode {
        match self.take(token) {
            Some(Err(error)) => error.code,
            other => panic!("expected an error for {token:?}: {other:?}"),
        }
    }

    /// Moves the clock forward, running every deadline on the way.
    fn advance_ms(&mut self, ms: u64) {
        let target = self.now + Duration::from_millis(ms);
        while let Some(deadline) = self
            .coordinator
            .poll_timeout()
            .filter(|deadline| *deadline <= target)
        {
            self.now = self.now.max(deadline);
            self.coordinator.handle_timeout(self.now);
            self.collect();
        }
        self.now = target;
    }

    fn state(&self, group: &str) -> GroupState {
        self.coordinator
            .describe(group)
            .expect("group exists")
            .state
    }

    /// Forms generation 1 of `group` with one node-mode member per client.
    fn stable_group(&mut self, group: &str, clients: &[&str], topics: &[&str]) -> Vec<JoinOk> {
        let tokens: Vec<RequestToken> = clients
            .iter()
            .map(|client| self.join(group, None, client, topics))
            .collect();
        self.advance_ms(DELAY_MS);
        tokens.into_iter().map(|token| self.joined(token)).collect()
    }
}

fn subscription(protocol: &str, topics: &[&str]) -> GroupProtocol {
    let topics: Vec<String> = topics.iter().map(|topic| topic.to_string()).collect();
    GroupProtocol {
        name: protocol.into(),
        metadata: encode_subscription(&topics),
    }
}

fn join_request(
    group: &str,
    member: Option<&str>,
    client: &str,
    protocols: Vec<GroupProtocol>,
) -> JoinGroup {
    JoinGroup {
        group: group.into(),
        member_id: member.map(str::to_string),
        client_id: client.into(),
        session_timeout_ms: SESSION_MS,
        rebalance_timeout_ms: REBALANCE_MS,
        protocols,
    }
}

fn code(response: Response) -> ErrorCode {
    response.expect_err("an error").code
}

fn only(topic: &str, partitions: &[u32]) -> Vec<TopicPartitions> {
    vec![TopicPartitions {
        topic: topic.into(),
        partitions: partitions.to_vec(),
    }]
}

#[test]
fn single_member_joins_syncs_and_becomes_stable_with_node_assignment() {
    let mut h = Harness::new();
    let token = h.join("g", None, "app", &["t"]);
    assert_eq!(
        h.take(token),
        None,
        "the first join waits for the initial delay"
    );
    assert_eq!(h.state("g"), GroupState::PreparingRebalance);
    h.advance_ms(DELAY_MS);
    let joined = h.joined(token);
    assert_eq!((joined.generation, joined.member_id.as_str()), (1, "app-1"));
    assert_eq!(joined.leader_id, "app-1");
    assert_eq!(joined.protocol, "range");
    assert!(joined.members.is_empty(), "node mode sends no member list");
    assert_eq!(h.state("g"), GroupState::Stable);
    assert_eq!(
        h.partitions("g", 1, "app-1"),
        only("t", &[0, 1, 2, 3, 4, 5, 6])
    );
    assert_eq!(h.heartbeat("g", 1, "app-1"), Ok(Reply::HeartbeatOk));
    let summary = &h.coordinator.list()[0];
    assert_eq!((summary.state.as_str(), summary.members), ("stable", 1));
    let details = h.coordinator.describe("g").expect("exists");
    assert_eq!(
        details.members[0].partitions,
        only("t", &[0, 1, 2, 3, 4, 5, 6])
    );
    assert_eq!(details.mode, Some(AssignmentMode::Node));
}

#[test]
fn three_members_joining_together_share_one_generation_and_range_splits_seven_as_three_two_two() {
    let mut h = Harness::new();
    let a = h.join("g", None, "a", &["t"]);
    h.advance_ms(100);
    let b = h.join("g", None, "b", &["t"]);
    h.advance_ms(100);
    let c = h.join("g", None, "c", &["t"]);
    h.advance_ms(DELAY_MS - 1);
    assert!(h.answers.is_empty(), "each join extends the initial delay");
    h.advance_ms(1);
    let joins = [h.joined(a), h.joined(b), h.joined(c)];
    assert!(joins.iter().all(|joined| joined.generation == 1));
    assert_eq!(h.partitions("g", 1, "a-1"), only("t", &[0, 1, 2]));
    assert_eq!(h.partitions("g", 1, "b-2"), only("t", &[3, 4]));
    assert_eq!(h.partitions("g", 1, "c-3"), only("t", &[5, 6]));
}

#[test]
fn three_members_with_roundrobin_get_every_partition_dealt_in_turn() {
    let mut h = Harness::new();
    let tokens: Vec<RequestToken> = ["a", "b", "c"]
        .into_iter()
        .map(|client| h.join_with("g", None, client, &["t", "u"], "roundrobin"))
        .collect();
    h.advance_ms(DELAY_MS);
    for token in tokens {
        assert_eq!(h.joined(token).protocol, "roundrobin");
    }
    // (t,0..7) then (u,0..2), dealt a, b, c, a, ...
    assert_eq!(h.partitions("g", 1, "a-1"), only("t", &[0, 3, 6]));
    assert_eq!(
        h.partitions("g", 1, "b-2"),
        vec![tp("t", &[1, 4]), tp("u", &[0])]
    );
    assert_eq!(
        h.partitions("g", 1, "c-3"),
        vec![tp("t", &[2, 5]), tp("u", &[1])]
    );
}

fn tp(topic: &str, partitions: &[u32]) -> TopicPartitions {
    TopicPartitions {
        topic: topic.into(),
        partitions: partitions.to_vec(),
    }
}

#[test]
fn leaving_member_triggers_rebalance_and_the_rest_cover_every_partition() {
    let mut h = Harness::new();
    h.stable_group("g", &["a", "b", "c"], &["t"]);
    assert_eq!(h.leave("g", "c-3"), Ok(Reply::Left));
    assert_eq!(h.state("g"), GroupState::PreparingRebalance);
    assert_eq!(
        code(h.heartbeat("g", 1, "a-1")),
        ErrorCode::RebalanceInProgress
    );
    assert_eq!(
        code(h.heartbeat("g", 1, "b-2")),
        ErrorCode::RebalanceInProgress
    );
    let a = h.join("g", Some("a-1"), "a", &["t"]);
    assert_eq!(h.take(a), None, "waits for b");
    let b = h.join("g", Some("b-2"), "b", &["t"]);
    assert_eq!((h.joined(a).generation, h.joined(b).generation), (2, 2));
    assert_eq!(h.partitions("g", 2, "a-1"), only("t", &[0, 1, 2, 3]));
    assert_eq!(h.partitions("g", 2, "b-2"), only("t", &[4, 5, 6]));
    assert_eq!(code(h.heartbeat("g", 2, "c-3")), ErrorCode::UnknownMember);
}

#[test]
fn silent_member_is_evicted_after_its_session_timeout() {
    let mut h = Harness::new();
    h.stable_group("g", &["a", "b"], &["t"]);
    for _ in 0..2 {
        h.advance_ms(4_000);
        assert_eq!(h.heartbeat("g", 1, "a-1"), Ok(Reply::HeartbeatOk));
    }
    assert_eq!(h.state("g"), GroupState::Stable);
    // b has been silent for 12 s > its 10 s session.
    h.advance_ms(4_000);
    assert_eq!(h.state("g"), GroupState::PreparingRebalance);
    assert_eq!(h.coordinator.stats().sessions_expired, 1);
    assert_eq!(code(h.heartbeat("g", 1, "b-2")), ErrorCode::UnknownMember);
    assert_eq!(
        code(h.heartbeat("g", 1, "a-1")),
        ErrorCode::RebalanceInProgress
    );
    let a = h.join("g", Some("a-1"), "a", &["t"]);
    assert_eq!(h.joined(a).generation, 2);
    assert_eq!(
        h.partitions("g", 2, "a-1"),
        only("t", &[0, 1, 2, 3, 4, 5, 6])
    );
}

#[test]
fn members_that_do_not_rejoin_within_the_rebalance_timeout_are_removed() {
    let mut h = Harness::new();
    h.stable_group("g", &["a", "b"], &["t"]);
    let c = h.join("g", None, "c", &["t"]);
    let a = h.join("g", Some("a-1"), "a", &["t"]);
    // b stays alive by heartbeats but never rejoins.
    for _ in 0..4 {
        h.advance_ms(1_000);
        assert_eq!(
            code(h.heartbeat("g", 1, "b-2")),
            ErrorCode::RebalanceInProgress
        );
    }
    h.advance_ms(u64::from(REBALANCE_MS) - 4_000);
    assert_eq!((h.joined(a).generation, h.joined(c).generation), (2, 2));
    assert_eq!(code(h.heartbeat("g", 2, "b-2")), ErrorCode::UnknownMember);
    assert_eq!(h.coordinator.stats().members_dropped, 1);
}

#[test]
fn leader_assignments_reach_followers_in_leader_mode() {
    let mut h = Harness::new();
    let kafka = |metadata: &'static [u8]| {
        vec![
            GroupProtocol {
                name: "cooperative-sticky".into(),
                metadata: Bytes::from_static(metadata),
            },
            GroupProtocol {
                name: "range".into(),
                metadata: Bytes::from_static(b"kafka-range"),
            },
        ]
    };
    let a = h.join_request(
        join_request("k", None, "a", kafka(b"meta-a")),
        AssignmentMode::Leader,
    );
    let b = h.join_request(
        join_request("k", None, "b", kafka(b"meta-b")),
        AssignmentMode::Leader,
    );
    h.advance_ms(DELAY_MS);
    let (leader, follower) = (h.joined(a), h.joined(b));
    assert_eq!(leader.leader_id, "a-1");
    assert_eq!(leader.protocol, "cooperative-sticky");
    let metadata: Vec<(&str, &[u8])> = leader
        .members
        .iter()
        .map(|m| (m.member_id.as_str(), &m.metadata[..]))
        .collect();
    assert_eq!(
        metadata,
        vec![("a-1", &b"meta-a"[..]), ("b-2", &b"meta-b"[..])]
    );
    assert!(follower.members.is_empty());
    assert_eq!(h.state("k"), GroupState::CompletingRebalance);

    let waiting = h.sync("k", 1, "b-2");
    assert_eq!(h.take(waiting), None, "followers wait for the leader");
    assert_eq!(h.heartbeat("k", 1, "b-2"), Ok(Reply::HeartbeatOk));
    assert_eq!(h.coordinator.check_commit("k", Some((1, "b-2"))), Ok(()));
    let assignments = vec![
        ("a-1".to_string(), Bytes::from_static(b"for-a")),
        ("b-2".to_string(), Bytes::from_static(b"for-b")),
    ];
    let leader_sync = h.sync_with("k", 1, "a-1", assignments);
    assert_eq!(
        h.take(leader_sync),
        Some(Ok(Reply::Synced(Bytes::from_static(b"for-a"))))
    );
    assert_eq!(
        h.take(waiting),
        Some(Ok(Reply::Synced(Bytes::from_static(b"for-b"))))
    );
    assert_eq!(h.state("k"), GroupState::Stable);
    let details = h.coordinator.describe("k").expect("exists");
    assert_eq!(details.members[1].assignment, Bytes::from_static(b"for-b"));
}

#[test]
fn leader_that_never_syncs_is_removed_and_waiting_followers_are_told_to_rejoin() {
    let mut h = Harness::new();
    let protocols = || {
        vec![GroupProtocol {
            name: "range".into(),
            metadata: Bytes::new(),
        }]
    };
    let a = h.join_request(
        join_request("k", None, "a", protocols()),
        AssignmentMode::Leader,
    );
    let b = h.join_request(
        join_request("k", None, "b", protocols()),
        AssignmentMode::Leader,
    );
    h.advance_ms(DELAY_MS);
    h.joined(a);
    h.joined(b);
    let waiting = h.sync("k", 1, "b-2");
    h.advance_ms(u64::from(REBALANCE_MS));
    assert_eq!(h.error(waiting), ErrorCode::RebalanceInProgress);
    assert_eq!(code(h.heartbeat("k", 1, "a-1")), ErrorCode::UnknownMember);
    let b = h.join_request(
        join_request("k", Some("b-2"), "b", protocols()),
        AssignmentMode::Leader,
    );
    let joined = h.joined(b);
    assert_eq!((joined.generation, joined.leader_id.as_str()), (2, "b-2"));
}

#[test]
fn stale_generations_and_unknown_members_get_their_exact_codes() {
    let mut h = Harness::new();
    h.stable_group("g", &["a"], &["t"]);
    assert_eq!(
        code(h.heartbeat("g", 0, "a-1")),
        ErrorCode::IllegalGeneration
    );
    assert_eq!(
        code(h.heartbeat("g", 1, "nobody")),
        ErrorCode::UnknownMember
    );
    assert_eq!(
        code(h.heartbeat("other", 1, "a-1")),
        ErrorCode::UnknownMember
    );
    let stale = h.sync("g", 7, "a-1");
    assert_eq!(h.error(stale), ErrorCode::IllegalGeneration);
    let unknown = h.sync("g", 1, "nobody");
    assert_eq!(h.error(unknown), ErrorCode::UnknownMember);
    let join = h.join("g", Some("nobody"), "x", &["t"]);
    assert_eq!(h.error(join), ErrorCode::UnknownMember);
    let join = h.join("fresh", Some("a-1"), "x", &["t"]);
    assert_eq!(h.error(join), ErrorCode::UnknownMember);
    assert_eq!(code(h.leave("g", "nobody")), ErrorCode::UnknownMember);
}

#[test]
fn members_without_a_common_protocol_or_mode_are_inconsistent() {
    let mut h = Harness::new();
    h.join_with("g", None, "a", &["t"], "range");
    let rr = h.join_with("g", None, "b", &["t"], "roundrobin");
    assert_eq!(h.error(rr), ErrorCode::InconsistentProtocol);
    let sticky = h.join_with("h", None, "c", &["t"], "sticky");
    assert_eq!(h.error(sticky), ErrorCode::InconsistentProtocol);
    let kafka = join_request("g", None, "d", vec![subscription("range", &["t"])]);
    let mixed = h.join_request(kafka, AssignmentMode::Leader);
    assert_eq!(h.error(mixed), ErrorCode::InconsistentProtocol);
    let nothing = h.join_request(join_request("k", None, "e", vec![]), AssignmentMode::Leader);
    assert_eq!(h.error(nothing), ErrorCode::InconsistentProtocol);
    // Offering both, the common one is chosen.
    let both = join_request(
        "g",
        None,
        "f",
        vec![
            subscription("roundrobin", &["t"]),
            subscription("range", &["t"]),
        ],
    );
    let both = h.join_request(both, AssignmentMode::Node);
    h.advance_ms(DELAY_MS);
    assert_eq!(h.joined(both).protocol, "range");
}

#[test]
fn invalid_group_names_are_rejected_as_invalid_name() {
    let mut h = Harness::new();
    let too_long = "g".repeat(GROUP_NAME_BYTES_MAX + 1);
    for name in ["", "bad name", "-dash", "slash/y", too_long.as_str()] {
        let join = h.join(name, None, "a", &["t"]);
        assert_eq!(h.error(join), ErrorCode::InvalidName, "{name:?}");
        assert_eq!(code(h.heartbeat(name, 1, "a-1")), ErrorCode::InvalidName);
        let sync = h.sync(name, 1, "a-1");
        assert_eq!(h.error(sync), ErrorCode::InvalidName);
        assert_eq!(code(h.leave(name, "a-1")), ErrorCode::InvalidName);
        let commit = h.coordinator.check_commit(name, None).expect_err("invalid");
        assert_eq!(commit.code(), ErrorCode::InvalidName);
    }
    let longest = "g".repeat(GROUP_NAME_BYTES_MAX);
    let join = h.join(&longest, None, "a", &["t"]);
    assert_eq!(h.take(join), None, "a valid name joins");
    let names: Vec<String> = h
        .coordinator
        .list()
        .into_iter()
        .map(|summary| summary.group)
        .collect();
    assert_eq!(names, [longest]);
}

#[test]
fn out_of_range_timeouts_are_invalid_arguments() {
    let mut h = Harness::new();
    let cases = [
        (999, REBALANCE_MS),
        (600_001, REBALANCE_MS),
        (SESSION_MS, 0),
        (SESSION_MS, 1_800_001),
    ];
    for (session, rebalance) in cases {
        let mut request = join_request("g", None, "a", vec![subscription("range", &["t"])]);
        request.session_timeout_ms = session;
        request.rebalance_timeout_ms = rebalance;
        let token = h.join_request(request, AssignmentMode::Node);
        match h.take(token) {
            Some(Err(error)) => {
                assert_eq!(error.code, ErrorCode::InvalidArgument);
                let field = if session == SESSION_MS {
                    "rebalance_timeout_ms"
                } else {
                    "session_timeout_ms"
                };
                assert!(error.message.starts_with(field), "{}", error.message);
            }
            other => panic!("{session}/{rebalance}: {other:?}"),
        }
    }
    assert!(
        h.coordinator.list().is_empty(),
        "refused joins create no group"
    );
    for (session, rebalance) in [(1_000, 1_000), (600_000, 1_800_000)] {
        let mut request = join_request("g", None, "a", vec![subscription("range", &["t"])]);
        request.session_timeout_ms = session;
        request.rebalance_timeout_ms = rebalance;
        let token = h.join_request(request, AssignmentMode::Node);
        assert_eq!(h.take(token), None, "{session}/{rebalance} accepted");
    }
}

#[test]
fn oversized_and_malformed_arguments_are_invalid_arguments() {
    let mut h = Harness::new();
    let big = GroupProtocol {
        name: "x".into(),
        metadata: Bytes::from(vec![0u8; 64 * 1024 + 1]),
    };
    let garbage = GroupProtocol {
        name: "range".into(),
        metadata: Bytes::from_static(b"\xc1"),
    };
    let many: Vec<GroupProtocol> = (0..=PROTOCOLS_PER_MEMBER_MAX)
        .map(|index| GroupProtocol {
            name: format!("p{index}"),
            metadata: Bytes::new(),
        })
        .collect();
    let twice = vec![subscription("range", &["t"]), subscription("range", &["u"])];
    let long_name = vec![GroupProtocol {
        name: "p".repeat(PROTOCOL_NAME_BYTES_MAX + 1),
        metadata: Bytes::new(),
    }];
    let cases = [
        (vec![big], AssignmentMode::Leader),
        (vec![garbage], AssignmentMode::Node),
        (many, AssignmentMode::Leader),
        (twice, AssignmentMode::Node),
        (long_name, AssignmentMode::Leader),
    ];
    for (protocols, mode) in cases {
        let token = h.join_request(join_request("g", None, "a", protocols), mode);
        assert_eq!(h.error(token), ErrorCode::InvalidArgument);
    }
    let long_client = "c".repeat(CLIENT_ID_BYTES_MAX + 1);
    let token = h.join("g", None, &long_client, &["t"]);
    assert_eq!(h.error(token), ErrorCode::InvalidArgument);

    let protocols = || {
        vec![GroupProtocol {
            name: "range".into(),
            metadata: Bytes::new(),
        }]
    };
    let a = h.join_request(
        join_request("k", None, "a", protocols()),
        AssignmentMode::Leader,
    );
    h.advance_ms(DELAY_MS);
    let member = h.joined(a).member_id;
    let huge = vec![(member.clone(), Bytes::from(vec![0u8; 64 * 1024 + 1]))];
    let token = h.sync_with("k", 1, &member, huge);
    assert_eq!(h.error(token), ErrorCode::InvalidArgument);
    let duplicate = vec![
        (member.clone(), Bytes::new()),
        (member.clone(), Bytes::new()),
    ];
    let token = h.sync_with("k", 1, &member, duplicate);
    assert_eq!(h.error(token), ErrorCode::InvalidArgument);
    assert_eq!(
        h.state("k"),
        GroupState::CompletingRebalance,
        "refused syncs change nothing"
    );
}

#[test]
fn superseded_join_is_answered_with_an_error_and_the_newer_one_completes() {
    let mut h = Harness::new();
    h.stable_group("g", &["a", "b"], &["t"]);
    let first = h.join("g", Some("a-1"), "a", &["t", "u"]);
    let second = h.join("g", Some("a-1"), "a", &["t", "u"]);
    assert_eq!(h.error(first), ErrorCode::RebalanceInProgress);
    assert_eq!(h.take(second), None);
    let b = h.join("g", Some("b-2"), "b", &["t"]);
    assert_eq!(
        (h.joined(second).generation, h.joined(b).generation),
        (2, 2)
    );
}

#[test]
fn rejoin_with_unchanged_metadata_returns_the_current_generation_without_rebalancing() {
    let mut h = Harness::new();
    h.stable_group("g", &["a", "b"], &["t"]);
    let again = h.join("g", Some("b-2"), "b", &["t"]);
    assert_eq!(h.joined(again).generation, 1);
    assert_eq!(h.state("g"), GroupState::Stable);
    let changed = h.join("g", Some("b-2"), "b", &["t", "u"]);
    assert_eq!(h.take(changed), None, "a new subscription rebalances");
    assert_eq!(h.state("g"), GroupState::PreparingRebalance);
    let a = h.join("g", Some("a-1"), "a", &["t"]);
    assert_eq!(h.joined(a).generation, 2);
    assert_eq!(
        h.partitions("g", 2, "b-2"),
        vec![tp("t", &[4, 5, 6]), tp("u", &[0, 1])]
    );
}

#[test]
fn lone_member_changing_its_subscription_gets_a_new_generation_at_once() {
    let mut h = Harness::new();
    h.stable_group("g", &["a"], &["t"]);
    let token = h.join("g", Some("a-1"), "a", &["t", "u"]);
    assert_eq!(h.joined(token).generation, 2);
    assert_eq!(
        h.partitions("g", 2, "a-1"),
        vec![tp("t", &[0, 1, 2, 3, 4, 5, 6]), tp("u", &[0, 1])]
    );
}

#[test]
fn partition_count_changes_rebalance_only_the_node_groups_they_affect() {
    let mut h = Harness::new();
    h.stable_group("on-t", &["a"], &["t"]);
    h.stable_group("on-u", &["b"], &["u"]);
    let now = h.now;
    let counts = h.counts.clone();
    h.coordinator.handle_metadata_changed(now, &counts);
    assert_eq!(
        (h.state("on-t"), h.state("on-u")),
        (GroupState::Stable, GroupState::Stable)
    );
    h.counts.insert("t".into(), 8);
    let counts = h.counts.clone();
    h.coordinator.handle_metadata_changed(now, &counts);
    assert_eq!(
        (h.state("on-t"), h.state("on-u")),
        (GroupState::PreparingRebalance, GroupState::Stable)
    );
    let a = h.join("on-t", Some("a-1"), "a", &["t"]);
    assert_eq!(h.joined(a).generation, 2);
    assert_eq!(
        h.partitions("on-t", 2, "a-1"),
        only("t", &[0, 1, 2, 3, 4, 5, 6, 7])
    );
}

#[test]
fn topic_created_after_the_join_is_assigned_after_the_metadata_change() {
    let mut h = Harness::new();
    h.stable_group("g", &["a"], &["later"]);
    assert_eq!(h.partitions("g", 1, "a-1"), vec![]);
    h.counts.insert("later".into(), 2);
    let (now, counts) = (h.now, h.counts.clone());
    h.coordinator.handle_metadata_changed(now, &counts);
    let a = h.join("g", Some("a-1"), "a", &["later"]);
    assert_eq!(h.joined(a).generation, 2);
    assert_eq!(h.partitions("g", 2, "a-1"), only("later", &[0, 1]));
}

#[test]
fn commit_checks_follow_kafka_semantics() {
    let mut h = Harness::new();
    assert_eq!(
        h.coordinator.check_commit("none", None),
        Ok(()),
        "standalone commit to an unknown group"
    );
    let unknown = h.coordinator.check_commit("none", Some((1, "x")));
    assert_eq!(
        unknown.expect_err("refused").code(),
        ErrorCode::UnknownMember
    );
    h.stable_group("g", &["a", "b"], &["t"]);
    let check = |h: &Harness, member: Option<(u32, &str)>| {
        h.coordinator
            .check_commit("g", member)
            .map_err(|e| e.code())
    };
    assert_eq!(check(&h, Some((1, "a-1"))), Ok(()));
    assert_eq!(
        check(&h, Some((0, "a-1"))),
        Err(ErrorCode::IllegalGeneration)
    );
    assert_eq!(check(&h, Some((1, "zz"))), Err(ErrorCode::UnknownMember));
    assert_eq!(
        check(&h, None),
        Err(ErrorCode::UnknownMember),
        "standalone commit races active members"
    );
    h.join("g", None, "c", &["t"]);
    assert_eq!(
        check(&h, Some((1, "a-1"))),
        Ok(()),
        "members of the current generation commit while a rebalance is prepared"
    );
    assert_eq!(h.leave("g", "a-1"), Ok(Reply::Left));
    assert_eq!(h.leave("g", "b-2"), Ok(Reply::Left));
    h.advance_ms(u64::from(REBALANCE_MS));
    h.leave("g", "c-3").expect("c was in generation 2");
    assert_eq!(h.state("g"), GroupState::Empty);
    assert_eq!(
        check(&h, None),
        Ok(()),
        "standalone commit to an empty group"
    );
}

#[test]
fn initial_delay_is_capped_by_the_rebalance_timeout() {
    let mut h = Harness::new();
    let first = h.join("g", None, "a", &["t"]);
    // A new member every 200 ms keeps extending the 300 ms delay...
    for index in 0..40 {
        h.advance_ms(200);
        if h.answers.contains_key(&first) {
            // ...until the rebalance timeout since the first join.
            assert_eq!(index, u64::from(REBALANCE_MS) as usize / 200 - 1);
            assert_eq!(h.joined(first).generation, 1);
            return;
        }
        h.join("g", None, &format!("m{index}"), &["t"]);
    }
    panic!("the initial join phase never ended");
}

#[test]
fn group_and_member_limits_answer_busy_and_empty_groups_make_room() {
    let config = GroupConfig {
        groups_max: 2,
        members_per_group_max: 2,
        ..GroupConfig::default()
    };
    let mut h = Harness::with_config(config);
    h.stable_group("g1", &["a", "b"], &["t"]);
    h.stable_group("g2", &["c"], &["t"]);
    let full = h.join("g1", None, "x", &["t"]);
    assert_eq!(h.error(full), ErrorCode::Busy);
    let third = h.join("g3", None, "y", &["t"]);
    assert_eq!(h.error(third), ErrorCode::Busy);
    h.leave("g2", "c-3").expect("member");
    assert_eq!(h.state("g2"), GroupState::Empty);
    let third = h.join("g3", None, "y", &["t"]);
    assert_eq!(h.take(third), None, "joined the new group");
    let names: Vec<String> = h
        .coordinator
        .list()
        .into_iter()
        .map(|summary| summary.group)
        .collect();
    assert_eq!(names, ["g1", "g3"], "the empty group was forgotten");
}

#[test]
fn cancelled_joins_remove_their_members_from_the_next_generation() {
    let mut h = Harness::new();
    h.stable_group("g", &["a", "b", "c"], &["t"]);
    let ghost = h.join("g", None, "ghost", &["t"]);
    let now = h.now;
    h.coordinator.handle_cancel(now, "g", ghost);
    h.collect();
    assert_eq!(h.take(ghost), None, "a cancelled request is not answered");
    assert_eq!(h.state("g"), GroupState::PreparingRebalance);
    let a = h.join("g", Some("a-1"), "a", &["t"]);
    let c = h.join("g", Some("c-3"), "c", &["t"]);
    // c's client went away while its join waited: c is removed, so the
    // phase completes as soon as b rejoins, and c gets no partitions.
    h.advance_ms(1);
    let now = h.now;
    h.coordinator.handle_cancel(now, "g", c);
    h.collect();
    assert_eq!(h.take(c), None);
    assert!(h.answers.is_empty(), "b has not rejoined yet");
    let b = h.join("g", Some("b-2"), "b", &["t"]);
    assert_eq!((h.joined(a).generation, h.joined(b).generation), (2, 2));
    let members: Vec<String> = h
        .coordinator
        .describe("g")
        .expect("exists")
        .members
        .into_iter()
        .map(|m| m.member_id)
        .collect();
    assert_eq!(members, ["a-1", "b-2"]);
    assert_eq!(h.coordinator.stats().members_dropped, 2);
    h.coordinator.handle_cancel(now, "g", RequestToken(9_999));
    h.coordinator.handle_cancel(now, "nope", ghost);
    assert_eq!(h.state("g"), GroupState::Stable);
}

#[test]
fn leaving_answers_the_leavers_pending_join_and_the_last_leaver_empties_the_group() {
    let mut h = Harness::new();
    h.stable_group("g", &["a", "b"], &["t"]);
    let pending = h.join("g", Some("a-1"), "a", &["u"]);
    assert_eq!(h.leave("g", "a-1"), Ok(Reply::Left));
    assert_eq!(h.error(pending), ErrorCode::UnknownMember);
    assert_eq!(h.state("g"), GroupState::PreparingRebalance);
    assert_eq!(h.leave("g", "b-2"), Ok(Reply::Left));
    let details = h.coordinator.describe("g").expect("kept while empty");
    assert_eq!(
        (details.state, details.generation, details.mode),
        (GroupState::Empty, 2, None)
    );
    assert_eq!(h.coordinator.list()[0].state, "empty");
    assert_eq!(
        h.coordinator.poll_timeout(),
        None,
        "an empty group has no deadlines"
    );
    // A native group may now become a Kafka group.
    let kafka = join_request(
        "g",
        None,
        "k",
        vec![GroupProtocol {
            name: "range".into(),
            metadata: Bytes::new(),
        }],
    );
    let token = h.join_request(kafka, AssignmentMode::Leader);
    h.advance_ms(DELAY_MS);
    assert_eq!(h.joined(token).generation, 3);
}

#[derive(Debug, Clone)]
enum Operation {
    Join { group: usize, client: usize },
    Rejoin { member: usize, topics: usize },
    Sync { member: usize },
    Heartbeat { member: usize },
    Leave { member: usize },
    Cancel { token: usize },
    Advance { ms: u64 },
    MetadataChanged { partitions: u32 },
}

fn operation() -> impl Strategy<Value = Operation> {
    prop_oneof![
        3 => (0..2usize, 0..3usize).prop_map(|(group, client)| Operation::Join { group, client }),
        3 => (0..6usize, 0..2usize).prop_map(|(member, topics)| Operation::Rejoin { member, topics }),
        3 => (0..6usize).prop_map(|member| Operation::Sync { member }),
        4 => (0..6usize).prop_map(|member| Operation::Heartbeat { member }),
        1 => (0..6usize).prop_map(|member| Operation::Leave { member }),
        1 => (0..32usize).prop_map(|token| Operation::Cancel { token }),
        3 => (1..3_000u64).prop_map(|ms| Operation::Advance { ms }),
        1 => (1..10u32).prop_map(|partitions| Operation::MetadataChanged { partitions }),
    ]
}

/// Plays `operations` by members of a native and a Kafka group, then lets
/// every session and phase run out.
fn random_session(operations: Vec<Operation>) -> Result<(), TestCaseError> {
    let mut h = Harness::new();
    let groups = ["native", "kafka"];
    let mut members: Vec<(usize, String, u32)> = Vec::new();
    let mut issued: Vec<(usize, RequestToken)> = Vec::new();
    let mut cancelled = BTreeSet::new();
    let request = |group: usize, member: Option<&str>, topics: &[&str]| {
        let protocols = vec![subscription("range", topics)];
        (
            join_request(groups[group], member, "c", protocols),
            if group == 0 {
                AssignmentMode::Node
            } else {
                AssignmentMode::Leader
            },
        )
    };
    for operation in operations {
        match operation {
            Operation::Join { group, client } => {
                let (mut join, mode) = request(group, None, &["t"]);
                join.client_id = format!("c{client}");
                issued.push((group, h.join_request(join, mode)));
            }
            Operation::Rejoin { member, topics } => {
                if let Some((group, id, _)) = members.get(member).cloned() {
                    let (join, mode) = request(
                        group,
                        Some(&id),
                        if topics == 0 { &["t"] } else { &["t", "u"] },
                    );
                    issued.push((group, h.join_request(join, mode)));
                }
            }
            Operation::Sync { member } => {
                if let Some((group, id, generation)) = members.get(member).cloned() {
                    let assignments = vec![(id.clone(), Bytes::from_static(b"x"))];
                    issued.push((
                        group,
                        h.sync_with(groups[group], generation, &id, assignments),
                    ));
                }
            }
            Operation::Heartbeat { member } => {
                if let Some((group, id, generation)) = members.get(member).cloned() {
                    let _ = h.heartbeat(groups[group], generation, &id);
                }
            }
            Operation::Leave { member } => {
                if let Some((group, id, _)) = members.get(member).cloned() {
                    let _ = h.leave(groups[group], &id);
                }
            }
            Operation::Cancel { token } => {
                if let Some(&(group, token)) = issued.get(token)
                    && !h.answered.contains(&token)
                {
                    let now = h.now;
                    h.coordinator.handle_cancel(now, groups[group], token);
                    h.collect();
                    cancelled.insert(token);
                }
            }
            Operation::Advance { ms } => h.advance_ms(ms),
            Operation::MetadataChanged { partitions } => {
                h.counts.insert("t".into(), partitions);
                let (now, counts) = (h.now, h.counts.clone());
                h.coordinator.handle_metadata_changed(now, &counts);
                h.collect();
            }
        }
        for (token, response) in &h.answers {
            if let Ok(Reply::Joined(joined)) = response {
                let group = issued
                    .iter()
                    .find(|(_, issued)| issued == token)
                    .expect("issued")
                    .0;
                members.retain(|(_, id, _)| *id != joined.member_id);
                members.push((group, joined.member_id.clone(), joined.generation));
            }
        }
        h.answers.clear();
        if let Some(details) = h
            .coordinator
            .describe("native")
            .filter(|d| d.state == GroupState::Stable)
        {
            let owned: usize = details
                .members
                .iter()
                .flat_map(|m| &m.partitions)
                .map(|e| e.partitions.len())
                .sum();
            let distinct: BTreeSet<(String, u32)> = details
                .members
                .iter()
                .flat_map(|m| &m.partitions)
                .flat_map(|e| e.partitions.iter().map(|p| (e.topic.clone(), *p)))
                .collect();
            prop_assert_eq!(owned, distinct.len(), "no partition owned twice");
            let subscribed: BTreeSet<String> = details
                .members
                .iter()
                .flat_map(|m| decode_subscription(&m.metadata).expect("a subscription"))
                .collect();
            let expected: u32 = subscribed
                .iter()
                .filter_map(|topic| h.counts.get(topic))
                .sum();
            prop_assert_eq!(owned, expected as usize, "every partition owned");
        }
    }
    // Everyone goes silent: every session and phase runs out.
    for _ in 0..10 {
        h.advance_ms(3_600_000);
    }
    for (_, token) in issued {
        prop_assert!(
            h.answered.contains(&token) != cancelled.contains(&token),
            "{:?}",
            token
        );
    }
    prop_assert_eq!(h.coordinator.stats().members, 0);
    prop_assert_eq!(h.coordinator.poll_timeout(), None);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Whatever members do, every join and sync that was not cancelled is
    /// answered exactly once, and a node group's stable assignment covers
    /// every partition once.
    #[test]
    fn every_request_is_answered_exactly_once(operations in proptest::collection::vec(operation(), 1..120)) {
        random_session(operations)?;
    }
}
