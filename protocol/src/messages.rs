//! Requests and replies of the native protocol.
//!
//! Each request travels on its own QUIC bidirectional stream: the client
//! writes one [`Request`] frame and finishes its side; the node answers
//! with one [`Response`] frame. Streams are cheap in QUIC, so a client
//! pipelines by opening many at once; the node caps how many run per
//! connection. The first request on a connection must be
//! [`Request::Hello`].

use bytes::Bytes;
use meshgate_storage::{Durability, Header, OriginStream, VersionVector};
use serde::{Deserialize, Serialize};

use crate::error::WireError;

/// The protocol version this crate speaks.
pub const PROTOCOL_VERSION: u16 = 1;
/// The ALPN token of the client protocol.
pub const ALPN: &[u8] = b"meshgate/1";

/// A request from a client to a node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Request {
    /// The version handshake; must come first on a connection.
    Hello(Hello),
    /// Creates a topic.
    CreateTopic(CreateTopic),
    /// Deletes a topic and its data.
    DeleteTopic(TopicName),
    /// Lists topics.
    ListTopics,
    /// Describes one topic and its partitions.
    DescribeTopic(TopicName),
    /// Appends records to a partition.
    Produce(Produce),
    /// Reads record batches from a partition.
    Fetch(Fetch),
    /// Finds an offset by position or timestamp.
    ListOffsets(ListOffsets),
    /// Joins (or rejoins) a consumer group.
    JoinGroup(JoinGroup),
    /// Gets this member's assignment (the leader also sets everyone's).
    SyncGroup(SyncGroup),
    /// Keeps a group membership alive.
    Heartbeat(Heartbeat),
    /// Leaves a consumer group.
    LeaveGroup(LeaveGroup),
    /// Commits consumed offsets of a group.
    CommitOffsets(CommitOffsets),
    /// Reads a group's committed offsets.
    FetchOffsets(FetchOffsets),
    /// Lists consumer groups.
    ListGroups,
    /// Describes one consumer group.
    DescribeGroup(GroupName),
    /// Who this node is.
    NodeInfo,
    /// The cluster's membership as this node sees it.
    Members,
    /// Adds or replaces a mirroring rule (spread to every region).
    AddMirrorRule(MirrorRuleSpec),
    /// Removes a mirroring rule.
    RemoveMirrorRule(RuleName),
    /// Lists mirroring rules.
    ListMirrorRules,
    /// Mirroring links of this node: state, vectors and lag.
    MirrorStatus,
    /// The regions that pull partitions from this node, and how far behind
    /// each is (known here even while the link is cut).
    MirrorFollowers,
    /// Adds or replaces a dispatch rule (a queue fed from a topic; spread
    /// to every node).
    CreateQueue(crate::queues::QueueSpec),
    /// Removes a dispatch rule and its queue.
    DeleteQueue(crate::queues::QueueName),
    /// Lists dispatch rules.
    ListQueues,
    /// A queue's rule and figures.
    DescribeQueue(crate::queues::QueueName),
    /// Leases messages of a queue.
    Receive(crate::queues::Receive),
    /// Acks, nacks or extends leased messages.
    Settle(crate::queues::Settle),
    /// Moves dead letters back into their queue.
    Redrive(crate::queues::Redrive),
}

impl Request {
    /// A short name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Hello(_) => "hello",
            Self::CreateTopic(_) => "create_topic",
            Self::DeleteTopic(_) => "delete_topic",
            Self::ListTopics => "list_topics",
            Self::DescribeTopic(_) => "describe_topic",
            Self::Produce(_) => "produce",
            Self::Fetch(_) => "fetch",
            Self::ListOffsets(_) => "list_offsets",
            Self::JoinGroup(_) => "join_group",
            Self::SyncGroup(_) => "sync_group",
            Self::Heartbeat(_) => "heartbeat",
            Self::LeaveGroup(_) => "leave_group",
            Self::CommitOffsets(_) => "commit_offsets",
            Self::FetchOffsets(_) => "fetch_offsets",
            Self::ListGroups => "list_groups",
            Self::DescribeGroup(_) => "describe_group",
            Self::NodeInfo => "node_info",
            Self::Members => "members",
            Self::AddMirrorRule(_) => "add_mirror_rule",
            Self::RemoveMirrorRule(_) => "remove_mirror_rule",
            Self::ListMirrorRules => "list_mirror_rules",
            Self::MirrorStatus => "mirror_status",
            Self::MirrorFollowers => "mirror_followers",
            Self::CreateQueue(_) => "create_queue",
            Self::DeleteQueue(_) => "delete_queue",
            Self::ListQueues => "list_queues",
            Self::DescribeQueue(_) => "describe_queue",
            Self::Receive(_) => "receive",
            Self::Settle(_) => "settle",
            Self::Redrive(_) => "redrive",
        }
    }
}

/// What a node answers: a reply or a typed error.
pub type Response = Result<Reply, WireError>;

/// A successful answer. Each request has one matching variant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    /// To [`Request::Hello`].
    Hello(HelloOk),
    /// To [`Request::CreateTopic`] and [`Request::DescribeTopic`].
    Topic(TopicDescription),
    /// To [`Request::DeleteTopic`].
    TopicDeleted,
    /// To [`Request::ListTopics`].
    Topics(Vec<TopicSummary>),
    /// To [`Request::Produce`].
    Produced(ProduceOk),
    /// To [`Request::Fetch`].
    Fetched(FetchOk),
    /// To [`Request::ListOffsets`]: the offset, if one matches.
    Offset(Option<u64>),
    /// To [`Request::JoinGroup`].
    Joined(JoinOk),
    /// To [`Request::SyncGroup`]: this member's assignment.
    Synced(Bytes),
    /// To [`Request::Heartbeat`].
    HeartbeatOk,
    /// To [`Request::LeaveGroup`].
    Left,
    /// To [`Request::CommitOffsets`].
    Committed,
    /// To [`Request::FetchOffsets`].
    CommittedOffsets(Vec<CommittedOffset>),
    /// To [`Request::ListGroups`].
    Groups(Vec<GroupSummary>),
    /// To [`Request::DescribeGroup`].
    Group(GroupDescription),
    /// To [`Request::NodeInfo`].
    Node(NodeInfo),
    /// To [`Request::Members`].
    Members(Vec<MemberInfo>),
    /// To [`Request::AddMirrorRule`], [`Request::RemoveMirrorRule`] and
    /// [`Request::ListMirrorRules`]: the rules after the change.
    MirrorRules(Vec<MirrorRuleSpec>),
    /// To [`Request::MirrorStatus`].
    MirrorStatus(Vec<MirrorLinkStatus>),
    /// To [`Request::MirrorFollowers`].
    MirrorFollowers(Vec<MirrorFollowerStatus>),
    /// To [`Request::CreateQueue`], [`Request::DeleteQueue`] and
    /// [`Request::ListQueues`]: the rules after the change.
    Queues(Vec<crate::queues::QueueSpec>),
    /// To [`Request::DescribeQueue`].
    Queue(crate::queues::QueueDescription),
    /// To [`Request::Receive`]: the leased messages (none when the wait ran out).
    Messages(Vec<crate::queues::QueueMessage>),
    /// To [`Request::Settle`]: per lease, in order, `None` when settled or
    /// the typed error (`UnknownLease`, `LeaseExpired`).
    Settled(Vec<Option<WireError>>),
    /// To [`Request::Redrive`]: how many dead letters moved back.
    Redriven(u64),
}

/// The version handshake.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The client's protocol version.
    pub version: u16,
    /// A name for the client, for logs.
    pub client_id: String,
}

/// The node's half of the handshake.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HelloOk {
    /// The protocol version the connection uses.
    pub version: u16,
    /// The node's id.
    pub node_id: String,
    /// The node's region.
    pub region: String,
    /// Largest frame the node accepts, in bytes.
    pub frame_bytes_max: u32,
}

/// A topic name in a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicName {
    /// The topic.
    pub name: String,
}

/// A group name in a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupName {
    /// The group.
    pub group: String,
}

/// Per-topic settings. Unset fields take the node's defaults.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TopicSettings {
    /// Number of partitions, fixed at creation (1..=1024).
    pub partitions: u32,
    /// Keep at most this many bytes per partition.
    pub retention_bytes: Option<u64>,
    /// Delete data older than this many milliseconds.
    pub retention_ms: Option<u64>,
    /// When appends are acknowledged as durable.
    pub durability: Option<Durability>,
    /// Roll segments at this many bytes.
    pub segment_bytes: Option<u64>,
}

/// Creates a topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateTopic {
    /// Its name.
    pub name: String,
    /// Its settings.
    pub settings: TopicSettings,
}

/// One origin's count in a version vector, in a wire- and JSON-friendly form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VectorEntry {
    /// The origin region.
    pub region: String,
    /// The topic incarnation.
    pub incarnation: u64,
    /// Records of that origin.
    pub count: u64,
}

/// Converts a version vector to its wire form.
pub fn vector_entries(vector: &VersionVector) -> Vec<VectorEntry> {
    vector
        .iter()
        .map(|(origin, count)| VectorEntry {
            region: origin.region.to_string(),
            incarnation: origin.incarnation.0,
            count,
        })
        .collect()
}

/// Converts a vector from its wire form; fails on an invalid region name.
pub fn vector_from_entries(
    entries: &[VectorEntry],
) -> Result<VersionVector, meshgate_storage::NameError> {
    entries
        .iter()
        .map(|entry| {
            Ok((
                OriginStream {
                    region: meshgate_storage::RegionId::parse(&entry.region)?,
                    incarnation: meshgate_storage::Incarnation(entry.incarnation),
                },
                entry.count,
            ))
        })
        .collect()
}

/// A partition's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionInfo {
    /// The partition number.
    pub partition: u32,
    /// Earliest retained offset.
    pub start_offset: u64,
    /// Offset after the last durable (visible) record.
    pub high_watermark: u64,
    /// Bytes on disk.
    pub size_bytes: u64,
    /// Records held per origin.
    pub vector: Vec<VectorEntry>,
    /// Set when the partition is quarantined or failed.
    pub unavailable: Option<String>,
}

/// A topic, its settings and partitions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicDescription {
    /// Its name.
    pub name: String,
    /// Its incarnation (the same in every region).
    pub incarnation: u64,
    /// Effective settings.
    pub settings: TopicSettings,
    /// Its partitions.
    pub partitions: Vec<PartitionInfo>,
}

/// A line of the topic list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicSummary {
    /// Its name.
    pub name: String,
    /// Number of partitions.
    pub partitions: u32,
    /// Records held, all partitions.
    pub records: u64,
}

/// A record as a producer sends it. The node stamps the timestamp (a hybrid
/// logical clock) and the origin coordinate.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ProduceRecord {
    /// The partitioning key.
    pub key: Option<Bytes>,
    /// The payload.
    pub value: Bytes,
    /// Headers; keys may repeat.
    pub headers: Vec<Header>,
}

/// When a produce request is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Acks {
    /// As soon as the records are written (not necessarily durable).
    None,
    /// Once durable on this node per the topic's durability policy.
    #[default]
    Local,
    /// Once durable here and held by this many other regions (mirroring).
    Mirrored(u32),
}

/// An idempotent producer's identity and the sequence number of a batch:
/// per (producer, topic, partition), batches are numbered 0, 1, 2, ...; a
/// resent batch is recognised and not appended twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerSequence {
    /// Chosen at random by the producer.
    pub producer_id: u64,
    /// This batch's number.
    pub sequence: u64,
}

/// Appends records to one partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Produce {
    /// The topic.
    pub topic: String,
    /// The partition (see [`crate::partition_for_key`]).
    pub partition: u32,
    /// The records, at least one.
    pub records: Vec<ProduceRecord>,
    /// When to answer.
    pub acks: Acks,
    /// Set by idempotent producers.
    pub producer: Option<ProducerSequence>,
}

/// Where a produce landed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProduceOk {
    /// Offset of the first record.
    pub base_offset: u64,
    /// Number of records.
    pub record_count: u32,
    /// True when this was a resend of a batch already appended; the offsets
    /// are those of the first append.
    pub duplicate: bool,
}

/// Reads record batches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fetch {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: u32,
    /// First offset wanted.
    pub offset: u64,
    /// Bytes wanted at most (at least one batch is returned).
    pub max_bytes: u32,
    /// Wait up to this long for data when there is none (long poll).
    pub max_wait_ms: u32,
}

/// Record batches read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchOk {
    /// Whole batches in the storage format (see `meshgate_storage::Batch`);
    /// the first may start before the offset asked for.
    pub batches: Bytes,
    /// The offset after the returned batches (the next to fetch).
    pub next_offset: u64,
    /// The partition's high watermark.
    pub high_watermark: u64,
    /// The partition's earliest retained offset.
    pub start_offset: u64,
}

/// Which offset to find.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OffsetSpec {
    /// The earliest retained offset.
    Earliest,
    /// The high watermark (where new records will appear).
    Latest,
    /// The first record with a timestamp at or after these milliseconds
    /// since the epoch.
    Timestamp(u64),
}

/// Finds an offset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListOffsets {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: u32,
    /// What to find.
    pub at: OffsetSpec,
}

/// An assignment protocol a member supports, with its metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupProtocol {
    /// Its name. `range` and `roundrobin` are computed by the node itself
    /// (metadata: [`encode_subscription`]); others are left to the leader.
    pub name: String,
    /// Protocol-specific metadata.
    pub metadata: Bytes,
}

/// Joins a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinGroup {
    /// The group.
    pub group: String,
    /// The member id from an earlier join; `None` on the first.
    pub member_id: Option<String>,
    /// The client's name, for descriptions.
    pub client_id: String,
    /// Evicted when no heartbeat arrives for this long.
    pub session_timeout_ms: u32,
    /// How long a rebalance waits for members to rejoin.
    pub rebalance_timeout_ms: u32,
    /// Supported assignment protocols, preferred first.
    pub protocols: Vec<GroupProtocol>,
}

/// A member as the leader sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupMember {
    /// Its id.
    pub member_id: String,
    /// Its metadata for the chosen protocol.
    pub metadata: Bytes,
}

/// A completed join.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinOk {
    /// The new generation.
    pub generation: u32,
    /// This member's id.
    pub member_id: String,
    /// The leader's id.
    pub leader_id: String,
    /// The chosen protocol.
    pub protocol: String,
    /// Every member, for the leader when it assigns; empty otherwise.
    pub members: Vec<GroupMember>,
}

/// Gets (and for a leader, sets) assignments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncGroup {
    /// The group.
    pub group: String,
    /// The generation from the join.
    pub generation: u32,
    /// This member.
    pub member_id: String,
    /// The leader's assignments for every member (leader-assigned protocols).
    pub assignments: Vec<(String, Bytes)>,
}

/// Keeps a membership alive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// The group.
    pub group: String,
    /// The generation from the join.
    pub generation: u32,
    /// This member.
    pub member_id: String,
}

/// Leaves a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaveGroup {
    /// The group.
    pub group: String,
    /// This member.
    pub member_id: String,
}

/// A topic's partitions.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TopicPartitions {
    /// The topic.
    pub topic: String,
    /// Partition numbers, ascending.
    pub partitions: Vec<u32>,
}

/// A consumed position in one partition: the next offset to read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionOffset {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: u32,
    /// The next offset to consume.
    pub offset: u64,
}

/// Commits offsets. With a generation and member id the commit is checked
/// against the group's membership; without, it is a standalone commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitOffsets {
    /// The group.
    pub group: String,
    /// Generation and member of the committer, if in the group.
    pub member: Option<(u32, String)>,
    /// The offsets.
    pub offsets: Vec<PartitionOffset>,
}

/// Reads committed offsets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchOffsets {
    /// The group.
    pub group: String,
    /// Which partitions; `None` for every committed one.
    pub partitions: Option<Vec<TopicPartitions>>,
}

/// A committed position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommittedOffset {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: u32,
    /// Where to resume in this node's log; `None` when nothing is committed.
    pub offset: Option<u64>,
    /// The committed position as a version vector (the region-independent
    /// form it is stored in).
    pub vector: Vec<VectorEntry>,
    /// Records between the position and the high watermark.
    pub lag: Option<u64>,
}

/// A line of the group list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupSummary {
    /// The group.
    pub group: String,
    /// Its state (`empty`, `preparing_rebalance`, `completing_rebalance`, `stable`).
    pub state: String,
    /// Number of members.
    pub members: u32,
    /// The chosen protocol, if any.
    pub protocol: Option<String>,
}

/// A member of a described group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberDescription {
    /// Its id.
    pub member_id: String,
    /// Its client's name.
    pub client_id: String,
    /// Its partitions, when the node knows them (node-computed protocols).
    pub assignment: Vec<TopicPartitions>,
}

/// A group in detail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupDescription {
    /// The group.
    pub group: String,
    /// Its state.
    pub state: String,
    /// Its generation.
    pub generation: u32,
    /// The chosen protocol, if any.
    pub protocol: Option<String>,
    /// Its members.
    pub members: Vec<MemberDescription>,
    /// Its committed offsets, with lag.
    pub offsets: Vec<CommittedOffset>,
}

/// Who a node is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Its id.
    pub node_id: String,
    /// Its region.
    pub region: String,
    /// The meshgate version it runs.
    pub version: String,
    /// Its client address.
    pub client_address: String,
}

/// A gateway of the cluster as one node sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberInfo {
    /// Its node id.
    pub node_id: String,
    /// Its region.
    pub region: String,
    /// `alive`, `suspect`, `down` or `left`.
    pub state: String,
    /// Its identity's incarnation (grows with each restart).
    pub incarnation: u64,
    /// Where clients connect (QUIC).
    pub client_address: String,
    /// Where other gateways connect (QUIC, mutual TLS).
    pub peer_address: String,
    /// Where it gossips (UDP).
    pub gossip_address: String,
    /// Milliseconds since a packet from it was last heard here, if ever.
    pub last_heard_ms_ago: Option<u64>,
    /// True for the node answering.
    pub local: bool,
}

/// A rule name in a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleName {
    /// The rule.
    pub name: String,
}

/// A mirroring rule as clients write it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MirrorRuleSpec {
    /// Its name.
    pub name: String,
    /// Topic pattern: `*` matches any run of characters (`orders*`).
    pub topics: String,
    /// The regions it links (at least two).
    pub regions: Vec<String>,
    /// `full-mesh` (default), `chain:a,b,c` (in order) or `hub:a`.
    pub topology: String,
    /// Only records with this header key and value cross; the others
    /// travel as gap markers.
    pub filter_header: Option<(String, String)>,
    /// Only records whose key starts with these bytes cross.
    pub filter_key_prefix: Option<Bytes>,
}

/// One origin of a mirrored partition as a pulling node sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OriginLag {
    /// The origin region.
    pub origin: String,
    /// Records of it held here.
    pub held: u64,
    /// Its head as last advertised (by gossip, or by the source), if known.
    pub head: Option<u64>,
    /// `head - held`, when the head is known.
    pub lag_records: Option<u64>,
    /// How long this node has been behind that head, in milliseconds.
    pub lag_ms: u64,
}

/// One pull link: this node pulling a partition from a node of a source region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MirrorLinkStatus {
    /// The rule that asks for it.
    pub rule: String,
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: u32,
    /// The source region.
    pub source_region: String,
    /// The source node, when one is alive.
    pub source_node: Option<String>,
    /// `pulling`, `connecting`, `waiting` (no live source), `refused`, `conflict`.
    pub state: String,
    /// Why it is not pulling, if it is not.
    pub error: Option<String>,
    /// Records appended by this link since start.
    pub records_pulled: u64,
    /// Records this node never got because retention deleted them first.
    pub gap_records: u64,
    /// Per origin: held, head and lag.
    pub origins: Vec<OriginLag>,
}

/// A region pulling a partition from this node, as this node sees it: what
/// it acknowledged holding against what is held here. Known while the
/// link is cut, so the lag a partition builds up is visible at its source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MirrorFollowerStatus {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: u32,
    /// The pulling region.
    pub region: String,
    /// Whether it has a pull session open and the membership holds the
    /// region alive.
    pub connected: bool,
    /// Milliseconds since its last acknowledgement (none since start: `None`).
    pub last_ack_ms_ago: Option<u64>,
    /// Per origin held here: `held` is what the follower acknowledged,
    /// `head` what this node holds, `lag_ms` how long since the follower
    /// last acknowledged anything while behind.
    pub origins: Vec<OriginLag>,
}

/// Encodes a subscription (the topics a member consumes) as the metadata of
/// the node-computed `range` and `roundrobin` protocols.
pub fn encode_subscription(topics: &[String]) -> Bytes {
    // Encoding a list of strings cannot fail.
    Bytes::from(rmp_serde::to_vec(topics).expect("a list of strings encodes"))
}

/// Decodes a subscription; `None` when the bytes are not one.
pub fn decode_subscription(metadata: &[u8]) -> Option<Vec<String>> {
    rmp_serde::from_slice(metadata).ok()
}

/// Encodes a node-computed assignment.
pub fn encode_assignment(assignment: &[TopicPartitions]) -> Bytes {
    // Plain structs of strings and numbers always encode.
    Bytes::from(rmp_serde::to_vec_named(assignment).expect("an assignment encodes"))
}

/// Decodes a node-computed assignment; `None` when the bytes are not one.
pub fn decode_assignment(bytes: &[u8]) -> Option<Vec<TopicPartitions>> {
    rmp_serde::from_slice(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame;

    #[test]
    fn every_request_round_trips() {
        let requests = vec![
            Request::Hello(Hello {
                version: 1,
                client_id: "c".into(),
            }),
            Request::CreateTopic(CreateTopic {
                name: "orders".into(),
                settings: TopicSettings {
                    partitions: 3,
                    durability: Some(Durability::IntervalMs(10)),
                    ..TopicSettings::default()
                },
            }),
            Request::ListTopics,
            Request::Produce(Produce {
                topic: "orders".into(),
                partition: 2,
                records: vec![ProduceRecord {
                    key: Some(Bytes::from_static(b"k")),
                    value: Bytes::from_static(b"v"),
                    headers: vec![Header {
                        key: "h".into(),
                        value: Bytes::from_static(b"x"),
                    }],
                }],
                acks: Acks::Local,
                producer: Some(ProducerSequence {
                    producer_id: 9,
                    sequence: 4,
                }),
            }),
            Request::ListOffsets(ListOffsets {
                topic: "t".into(),
                partition: 0,
                at: OffsetSpec::Timestamp(5),
            }),
            Request::CommitOffsets(CommitOffsets {
                group: "g".into(),
                member: Some((3, "m".into())),
                offsets: vec![PartitionOffset {
                    topic: "t".into(),
                    partition: 0,
                    offset: 7,
                }],
            }),
        ];
        for request in requests {
            let frame = frame::encode(&request).expect("encodes");
            let back: Request = frame::decode(&frame).expect("decodes");
            assert_eq!(back, request);
        }
    }

    #[test]
    fn errors_round_trip_as_responses() {
        let response: Response = Err(WireError::new(crate::ErrorCode::UnknownTopic, "no topic x"));
        let frame = frame::encode(&response).expect("encodes");
        let back: Response = frame::decode(&frame).expect("decodes");
        assert_eq!(back, response);
    }

    #[test]
    fn subscriptions_and_assignments_round_trip() {
        let topics = vec!["a".to_string(), "b".to_string()];
        assert_eq!(
            decode_subscription(&encode_subscription(&topics)),
            Some(topics)
        );
        let assignment = vec![TopicPartitions {
            topic: "a".into(),
            partitions: vec![0, 2],
        }];
        assert_eq!(
            decode_assignment(&encode_assignment(&assignment)),
            Some(assignment)
        );
        assert_eq!(decode_assignment(b"\xc1garbage"), None);
    }
}
