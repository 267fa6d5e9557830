//! The data model shared by every crate: regions, origin streams, offsets,
//! hybrid-logical timestamps and records (DESIGN.md, "Data model").

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::error::NameError;

/// Longest region name, in bytes. Region names travel in every batch header,
/// so they are kept short.
pub const REGION_NAME_BYTES_MAX: usize = 63;

/// A region's stable name, such as `us-east`: 1 to 63 bytes of ASCII
/// letters, digits, `-`, `_` and `.`, starting with a letter or digit.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RegionId(Arc<str>);

impl RegionId {
    /// Validates `name` as a region name.
    pub fn parse(name: &str) -> Result<Self, NameError> {
        validate_name("region", name, REGION_NAME_BYTES_MAX)?;
        Ok(Self(Arc::from(name)))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Checks a name against the shared rule for region, topic and queue names:
/// `1..=bytes_max` bytes of ASCII letters, digits, `-`, `_` and `.`, the
/// first being a letter or digit.
pub fn validate_name(kind: &'static str, name: &str, bytes_max: usize) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty { kind });
    }
    if name.len() > bytes_max {
        return Err(NameError::TooLong {
            kind,
            bytes: name.len(),
            bytes_max,
        });
    }
    let first = name.as_bytes()[0];
    if !first.is_ascii_alphanumeric() {
        return Err(NameError::BadStart { kind });
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(NameError::BadCharacter {
            kind,
            character: bad,
        });
    }
    Ok(())
}

impl TryFrom<String> for RegionId {
    type Error = NameError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<RegionId> for String {
    fn from(value: RegionId) -> Self {
        value.0.to_string()
    }
}

impl fmt::Display for RegionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RegionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", &*self.0)
    }
}

/// A topic incarnation: the id a topic gets when it is created, the same in
/// every region. A topic deleted and re-created gets a new incarnation, so its
/// origin streams never mix with the old ones.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
pub struct Incarnation(pub u64);

impl fmt::Display for Incarnation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// One origin stream of a partition: the records that originated in
/// `region` for one incarnation of the topic.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
pub struct OriginStream {
    /// Where the records were first appended.
    pub region: RegionId,
    /// Which incarnation of the topic they belong to.
    pub incarnation: Incarnation,
}

impl fmt::Display for OriginStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.region, self.incarnation)
    }
}

/// A record's position in its origin stream: dense, starting at 0, assigned
/// by the origin region on append.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
pub struct OriginSeq(pub u64);

/// A record's position in one region's log of a partition. Region-specific:
/// the same record has different local offsets in different regions.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default, Serialize, Deserialize,
)]
pub struct LocalOffset(pub u64);

impl fmt::Display for LocalOffset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A record's global identity: its origin stream and its seq in it.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
pub struct OriginCoord {
    /// The origin stream.
    pub stream: OriginStream,
    /// The position in it.
    pub seq: OriginSeq,
}

/// A hybrid logical clock reading: physical milliseconds since the Unix epoch
/// in the upper 48 bits, a logical counter in the lower 16.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default, Serialize, Deserialize,
)]
pub struct Timestamp(pub u64);

impl Timestamp {
    const LOGICAL_BITS: u32 = 16;

    /// A timestamp with the given wall-clock part and logical counter 0.
    pub fn from_millis(millis: u64) -> Self {
        Self(millis << Self::LOGICAL_BITS)
    }

    /// The wall-clock part, in milliseconds since the Unix epoch.
    pub fn millis(self) -> u64 {
        self.0 >> Self::LOGICAL_BITS
    }

    /// The logical counter.
    pub fn logical(self) -> u16 {
        (self.0 & 0xffff) as u16
    }
}

/// A hybrid logical clock (Kulkarni et al.): readings never go backwards and
/// order causally related events even when wall clocks are skewed. Sans-IO:
/// the caller passes the wall clock in.
#[derive(Debug, Default, Clone)]
pub struct HybridClock {
    last: Timestamp,
}

impl HybridClock {
    /// A fresh reading, given the wall clock in milliseconds since the epoch.
    pub fn tick(&mut self, wall_millis: u64) -> Timestamp {
        let wall = Timestamp::from_millis(wall_millis);
        self.last = if wall > self.last {
            wall
        } else {
            Timestamp(self.last.0 + 1)
        };
        self.last
    }

    /// Folds in a timestamp seen on a message from elsewhere, so later local
    /// readings order after it.
    pub fn observe(&mut self, remote: Timestamp) {
        if remote > self.last {
            self.last = remote;
        }
    }

    /// The last reading given out.
    pub fn last(&self) -> Timestamp {
        self.last
    }
}

/// A record header: a UTF-8 key and a byte value. Keys may repeat.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Header {
    /// The header's name.
    pub key: String,
    /// The header's value.
    pub value: Bytes,
}

/// What a producer hands the log: key, value, headers and a timestamp.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct Record {
    /// The partitioning key, if any.
    pub key: Option<Bytes>,
    /// The payload.
    pub value: Bytes,
    /// Headers, in order; keys may repeat.
    pub headers: Vec<Header>,
    /// When the record was produced (hybrid logical clock).
    pub timestamp: Timestamp,
}

impl Record {
    /// A record with a value and nothing else.
    pub fn from_value(value: impl Into<Bytes>) -> Self {
        Self {
            value: value.into(),
            ..Self::default()
        }
    }

    /// The first header value with this key.
    pub fn header(&self, key: &str) -> Option<&Bytes> {
        self.headers.iter().find(|h| h.key == key).map(|h| &h.value)
    }

    /// Bytes this record takes in a batch, at most; used for limits.
    pub fn encoded_len_max(&self) -> usize {
        let headers: usize = self
            .headers
            .iter()
            .map(|h| h.key.len() + h.value.len() + 20)
            .sum();
        self.key.as_ref().map_or(0, Bytes::len) + self.value.len() + headers + 50
    }
}

/// A record as read back from a log: where it sits locally and where it came from.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct StoredRecord {
    /// Its offset in this region's log.
    pub offset: LocalOffset,
    /// Its global identity.
    pub origin: OriginCoord,
    /// Key, value, headers and timestamp.
    pub record: Record,
}
