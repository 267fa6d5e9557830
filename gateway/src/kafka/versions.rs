//! The APIs and versions this listener serves, as ApiVersions advertises
//! them. Only what is implemented is listed.

use kafka_protocol::messages::ApiKey;

/// An API and the versions served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiRange {
    /// The API.
    pub key: ApiKey,
    /// The oldest version served.
    pub min: i16,
    /// The newest version served.
    pub max: i16,
}

const fn api(key: ApiKey, min: i16, max: i16) -> ApiRange {
    ApiRange { key, min, max }
}

/// Every API served, with its versions.
pub const SUPPORTED: &[ApiRange] = &[
    // Produce 0-2 carry message sets (see `legacy.rs`); 3 and later record
    // batches. Advertising 0 keeps older librdkafka from turning off
    // compression.
    api(ApiKey::Produce, 0, 11),
    api(ApiKey::Fetch, 4, 12),
    api(ApiKey::ListOffsets, 1, 7),
    api(ApiKey::Metadata, 1, 12),
    api(ApiKey::OffsetCommit, 2, 9),
    api(ApiKey::OffsetFetch, 1, 9),
    api(ApiKey::FindCoordinator, 0, 4),
    api(ApiKey::JoinGroup, 0, 9),
    api(ApiKey::Heartbeat, 0, 4),
    api(ApiKey::LeaveGroup, 0, 5),
    api(ApiKey::SyncGroup, 0, 5),
    api(ApiKey::DescribeGroups, 0, 5),
    api(ApiKey::ListGroups, 0, 5),
    api(ApiKey::ApiVersions, 0, 3),
    api(ApiKey::CreateTopics, 2, 7),
    api(ApiKey::DeleteTopics, 1, 6),
    api(ApiKey::InitProducerId, 0, 4),
    api(ApiKey::DescribeConfigs, 1, 4),
];

/// The versions served of `key`, if it is served at all.
pub fn served(key: ApiKey) -> Option<ApiRange> {
    SUPPORTED.iter().copied().find(|range| range.key == key)
}
