//! The pull protocol between gateways, on one QUIC bidirectional stream per
//! (topic, partition) and pulling region, over the connection the puller
//! dialed. Frames are `meshgate_protocol::frame` frames (length-prefixed
//! MessagePack).
//!
//! 1. The puller sends [`PullRequest`]: the partition, what it holds (its
//!    version vector), the rule's filter.
//! 2. The server answers a stream of [`PullFrame`]s: whole batches of what
//!    the puller lacks, in the server's log order, and committed group
//!    positions once the batches they refer to are sent; or one
//!    [`PullFrame::Refused`] and the end of the stream.
//! 3. The puller sends [`PullAck`]s with what it holds durably, so the
//!    server can answer `mirrored(k)` produces and commits that wait.
//!
//! Flow control is QUIC's: a puller that appends slowly stops reading, its
//! stream window fills, the server's writes wait.

use bytes::Bytes;
use meshgate_protocol::VectorEntry;
use serde::{Deserialize, Serialize};

use super::rules::MirrorFilter;

/// The pull protocol version this code speaks.
pub const PULL_PROTOCOL_VERSION: u16 = 1;
/// Largest frame either side accepts on a pull stream.
pub const PULL_FRAME_BYTES_MAX: usize = 16 << 20;

/// Opens a pull.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullRequest {
    /// [`PULL_PROTOCOL_VERSION`].
    pub version: u16,
    /// The puller's region, for the server's acknowledgement bookkeeping.
    pub region: String,
    /// The topic.
    pub topic: String,
    /// Its incarnation (must be the server's).
    pub incarnation: u64,
    /// The puller's partition count (must be the server's).
    pub partitions: u32,
    /// The partition to pull.
    pub partition: u32,
    /// What the puller holds: origin -> records.
    pub vector: Vec<VectorEntry>,
    /// Records that fail it travel as gap markers.
    pub filter: MirrorFilter,
    /// Most bytes of batches per frame (the server caps it).
    pub frame_bytes_max: u32,
}

/// Why a server refuses a pull. The stream ends after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefusalCode {
    /// The server has no such topic.
    UnknownTopic,
    /// The server's topic is another incarnation.
    IncarnationMismatch,
    /// The server's topic has another partition count.
    PartitionCountMismatch,
    /// No such partition.
    InvalidPartition,
    /// The partition is quarantined or failed on the server.
    Unavailable,
    /// The protocol version is not spoken.
    UnsupportedVersion,
    /// The request did not decode.
    Malformed,
    /// The server is shutting down.
    ShuttingDown,
}

/// A refusal with its reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    /// What kind.
    pub code: RefusalCode,
    /// What exactly, for people.
    pub message: String,
}

/// A committed consumer-group position forwarded to the puller, after every
/// batch it refers to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitForward {
    /// Numbers the commits of this stream; acknowledged by
    /// [`PullAck::commits_through`].
    pub id: u64,
    /// The group.
    pub group: String,
    /// The position: origin -> records consumed.
    pub vector: Vec<VectorEntry>,
    /// The group's lease epoch when committed; a commit of an older epoch
    /// than the receiver knows is ignored.
    pub epoch: u64,
}

/// A frame from the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PullFrame {
    /// Whole batches in the storage format, gap markers included.
    Batches(Bytes),
    /// A group position to merge.
    Commit(CommitForward),
    /// Nothing new for a while; what the server holds, so the puller sees
    /// its lag even when nothing flows.
    Idle {
        /// The server's vector.
        vector: Vec<VectorEntry>,
    },
    /// The pull cannot be served.
    Refused(Refusal),
}

/// What the puller holds durably, sent after it appended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullAck {
    /// The puller's vector for the partition.
    pub vector: Vec<VectorEntry>,
    /// The highest [`CommitForward::id`] applied and durable.
    pub commits_through: u64,
}

#[cfg(test)]
mod tests {
    use meshgate_protocol::frame;
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn frames_round_trip() {
        let frames = vec![
            PullFrame::Batches(Bytes::from_static(b"batches")),
            PullFrame::Commit(CommitForward {
                id: 3,
                group: "billing".into(),
                vector: vec![VectorEntry {
                    region: "a".into(),
                    incarnation: 1,
                    count: 9,
                }],
                epoch: 2,
            }),
            PullFrame::Idle { vector: vec![] },
            PullFrame::Refused(Refusal {
                code: RefusalCode::PartitionCountMismatch,
                message: "3 vs 4".into(),
            }),
        ];
        for original in frames {
            let encoded = frame::encode(&original).expect("encodes");
            let back: PullFrame = frame::decode(&encoded).expect("decodes");
            assert_eq!(back, original);
        }
    }

    proptest! {
        #[test]
        fn garbage_never_decodes_into_a_panic(body in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = rmp_serde::from_slice::<PullRequest>(&body);
            let _ = rmp_serde::from_slice::<PullFrame>(&body);
            let _ = rmp_serde::from_slice::<PullAck>(&body);
        }
    }
}
