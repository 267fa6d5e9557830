//! Membership configuration: one plain struct, presets, and its validation
//! into foca's [`foca::Config`].

use std::num::{NonZeroU32, NonZeroUsize};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::auth::{CLUSTER_SECRET_BYTES_MIN, ClusterSecret, ENVELOPE_BYTES};
use super::error::MembershipError;
use super::identity::MEMBER_ID_BYTES_MAX;

/// Which timing family the SWIM failure detector starts from.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SwimPreset {
    /// foca's `Config::new_wan`: 5 s probe period, 3 s probe RTT,
    /// suspicion of about 30 s; gateways in far-apart regions.
    #[default]
    Wan,
    /// foca's `Config::new_lan`: 1 s probe period, 0.5 s RTT.
    Lan,
    /// For tests and simulations on one machine: 100 ms probe period,
    /// 30 ms RTT, 300 ms suspicion; a dead node is down in about a second.
    Fast,
}

/// Configuration of the membership layer. Every field has a default, so an
/// empty table in a config file is valid; [`MembershipConfig::validate`]
/// checks the limits.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MembershipConfig {
    /// Timing preset of the failure detector. Default `wan`.
    pub preset: SwimPreset,
    /// Number of gateways expected in the cluster, all regions together:
    /// scales how often an update is retransmitted and (for `wan`/`lan`) how
    /// long suspicion lasts. Default 16; 1 to 100 000.
    pub cluster_size_expected: u32,
    /// Overrides the preset's probe period, in milliseconds: how often each
    /// node probes one member. Must exceed `probe_rtt_ms`. Default: preset.
    pub probe_period_ms: Option<u64>,
    /// Overrides the preset's probe round-trip time, in milliseconds: how long
    /// to wait for a direct ack before asking others to probe. Default:
    /// preset.
    pub probe_rtt_ms: Option<u64>,
    /// Overrides how long a suspect member has to refute before it is
    /// declared down, in milliseconds. Default: preset.
    pub suspect_to_down_ms: Option<u64>,
    /// Secret shared by every gateway of the cluster; every gossip packet
    /// carries an HMAC-SHA256 tag keyed by it. At least 16 bytes. Default:
    /// none, which uses [`super::INSECURE_DEV_CLUSTER_SECRET`] and logs a
    /// warning: that key is public, so such a cluster is not authenticated.
    pub cluster_key: Option<ClusterSecret>,
    /// Largest gossip datagram sent or accepted, in bytes, envelope and tag
    /// included. Larger datagrams are dropped unread. Default 1400 (fits an
    /// Ethernet MTU); 1024 to 65 000.
    pub packet_bytes_max: usize,
    /// Largest custom broadcast item (one node's metadata, or one
    /// configuration change with its key and value), in bytes. Must leave room
    /// for a packet header with the largest identities. Default 768.
    pub broadcast_item_bytes_max: usize,
    /// Most configuration entries (tombstones included) held. Changes to new
    /// keys beyond it are refused and counted. Default 4096 (at most
    /// 4096 x `broadcast_item_bytes_max` = 3 MiB of memory); 1 to 1 000 000.
    pub config_entries_max: usize,
    /// Most nodes whose metadata is held. Default 1024; 1 to 100 000.
    pub members_max: usize,
    /// Most seeds kept for re-announcing. Default 64; 1 to 1024.
    pub seeds_max: usize,
    /// First delay between announces to the seeds while this node knows no
    /// other member, in milliseconds; doubles after each round. Default
    /// 1000; 10 to 600 000.
    pub announce_interval_ms: u64,
    /// Longest delay between those announces, in milliseconds. Default
    /// 30 000; at least `announce_interval_ms`.
    pub announce_interval_max_ms: u64,
    /// How often this node compares its configuration and metadata with one
    /// random member and sends what differs (anti-entropy), in milliseconds.
    /// Default 10 000; 10 to 3 600 000.
    pub sync_interval_ms: u64,
    /// Most anti-entropy packets sent to one member per round. Default 16;
    /// 1 to 1024. Larger tables take several rounds.
    pub sync_packets_per_round_max: usize,
    /// Events buffered per subscriber of the driver; a subscriber that falls
    /// further behind loses the oldest events and is told so. Default 1024;
    /// 1 to 1 000 000.
    pub event_channel_capacity: usize,
    /// Requests buffered from handles to the driver. Default 64; 1 to 65 536.
    pub command_channel_capacity: usize,
}

impl Default for MembershipConfig {
    fn default() -> Self {
        Self {
            preset: SwimPreset::Wan,
            cluster_size_expected: 16,
            probe_period_ms: None,
            probe_rtt_ms: None,
            suspect_to_down_ms: None,
            cluster_key: None,
            packet_bytes_max: 1400,
            broadcast_item_bytes_max: 768,
            config_entries_max: 4096,
            members_max: 1024,
            seeds_max: 64,
            announce_interval_ms: 1000,
            announce_interval_max_ms: 30_000,
            sync_interval_ms: 10_000,
            sync_packets_per_round_max: 16,
            event_channel_capacity: 1024,
            command_channel_capacity: 64,
        }
    }
}

impl MembershipConfig {
    /// The production default: foca's WAN timings for `cluster_size` nodes.
    pub fn wan(cluster_size: u32) -> Self {
        Self {
            cluster_size_expected: cluster_size,
            ..Self::default()
        }
    }

    /// foca's LAN timings for `cluster_size` nodes.
    pub fn lan(cluster_size: u32) -> Self {
        Self {
            preset: SwimPreset::Lan,
            cluster_size_expected: cluster_size,
            announce_interval_ms: 500,
            announce_interval_max_ms: 5_000,
            sync_interval_ms: 5_000,
            ..Self::default()
        }
    }

    /// For tests and simulations: failures are detected in about a second,
    /// seeds are re-announced every 100 ms to 1 s, anti-entropy runs every
    /// 500 ms.
    pub fn fast() -> Self {
        Self {
            preset: SwimPreset::Fast,
            cluster_size_expected: 8,
            announce_interval_ms: 100,
            announce_interval_max_ms: 1_000,
            sync_interval_ms: 500,
            ..Self::default()
        }
    }

    /// Checks every limit and builds what the core runs on.
    pub fn validate(&self) -> Result<ValidConfig, MembershipError> {
        let invalid = |reason: String| Err(MembershipError::InvalidConfig { reason });
        check_range(
            "cluster_size_expected",
            self.cluster_size_expected.into(),
            1,
            100_000,
        )?;
        check_range(
            "packet_bytes_max",
            self.packet_bytes_max as u64,
            1024,
            65_000,
        )?;
        check_range(
            "config_entries_max",
            self.config_entries_max as u64,
            1,
            1_000_000,
        )?;
        check_range("members_max", self.members_max as u64, 1, 100_000)?;
        check_range("seeds_max", self.seeds_max as u64, 1, 1024)?;
        check_range(
            "announce_interval_ms",
            self.announce_interval_ms,
            10,
            600_000,
        )?;
        check_range(
            "announce_interval_max_ms",
            self.announce_interval_max_ms,
            self.announce_interval_ms,
            3_600_000,
        )?;
        check_range("sync_interval_ms", self.sync_interval_ms, 10, 3_600_000)?;
        check_range(
            "sync_packets_per_round_max",
            self.sync_packets_per_round_max as u64,
            1,
            1024,
        )?;
        check_range(
            "event_channel_capacity",
            self.event_channel_capacity as u64,
            1,
            1_000_000,
        )?;
        check_range(
            "command_channel_capacity",
            self.command_channel_capacity as u64,
            1,
            65_536,
        )?;
        if let Some(secret) = &self.cluster_key
            && secret.len() < CLUSTER_SECRET_BYTES_MIN
        {
            return invalid(format!(
                "cluster_key is {} bytes; at least {CLUSTER_SECRET_BYTES_MIN} are needed",
                secret.len()
            ));
        }
        let swim_packet_bytes_max = self.packet_bytes_max - ENVELOPE_BYTES;
        // A broadcast item must fit in a foca `Broadcast` message between the
        // largest identities: header (two ids, u16 incarnation, message tag),
        // then the item behind its u16 length.
        let item_room = swim_packet_bytes_max - (2 * MEMBER_ID_BYTES_MAX + 3) - 2;
        check_range(
            "broadcast_item_bytes_max",
            self.broadcast_item_bytes_max as u64,
            256,
            item_room as u64,
        )?;
        let swim = self.swim_config(swim_packet_bytes_max)?;
        Ok(ValidConfig {
            swim,
            packet_bytes_max: self.packet_bytes_max,
            broadcast_item_bytes_max: self.broadcast_item_bytes_max,
            config_entries_max: self.config_entries_max,
            members_max: self.members_max,
            seeds_max: self.seeds_max,
            announce_interval: Duration::from_millis(self.announce_interval_ms),
            announce_interval_max: Duration::from_millis(self.announce_interval_max_ms),
            sync_interval: Duration::from_millis(self.sync_interval_ms),
            sync_packets_per_round_max: self.sync_packets_per_round_max,
            event_channel_capacity: self.event_channel_capacity,
            command_channel_capacity: self.command_channel_capacity,
        })
    }

    fn swim_config(&self, swim_packet_bytes_max: usize) -> Result<foca::Config, MembershipError> {
        // Checked to be in 1..=100_000 above.
        let size = NonZeroU32::new(self.cluster_size_expected).expect("cluster size checked");
        let mut swim = match self.preset {
            SwimPreset::Wan => foca::Config::new_wan(size),
            SwimPreset::Lan => foca::Config::new_lan(size),
            SwimPreset::Fast => fast_swim_config(size),
        };
        if let Some(milliseconds) = self.probe_period_ms {
            swim.probe_period = Duration::from_millis(milliseconds);
        }
        if let Some(milliseconds) = self.probe_rtt_ms {
            swim.probe_rtt = Duration::from_millis(milliseconds);
        }
        if let Some(milliseconds) = self.suspect_to_down_ms {
            swim.suspect_to_down_after = Duration::from_millis(milliseconds);
        }
        if swim.probe_rtt.is_zero() || swim.probe_rtt >= swim.probe_period {
            return Err(MembershipError::InvalidConfig {
                reason: format!(
                    "probe RTT ({:?}) must be positive and below the probe period ({:?})",
                    swim.probe_rtt, swim.probe_period
                ),
            });
        }
        if swim.suspect_to_down_after.is_zero() {
            return Err(MembershipError::InvalidConfig {
                reason: "suspect_to_down_ms must be positive".to_string(),
            });
        }
        swim.max_packet_size =
            NonZeroUsize::new(swim_packet_bytes_max).expect("at least 1024 - envelope bytes");
        Ok(swim)
    }
}

/// foca's LAN settings sped up about tenfold, for one machine.
fn fast_swim_config(size: NonZeroU32) -> foca::Config {
    let lan = foca::Config::new_lan(size);
    // Constants are non-zero.
    let members = |count| NonZeroUsize::new(count).expect("non-zero constant");
    foca::Config {
        probe_period: Duration::from_millis(100),
        probe_rtt: Duration::from_millis(30),
        suspect_to_down_after: Duration::from_millis(300),
        periodic_announce: Some(foca::PeriodicParams {
            frequency: Duration::from_secs(1),
            num_members: members(1),
        }),
        periodic_announce_to_down_members: Some(foca::PeriodicParams {
            frequency: Duration::from_millis(500),
            num_members: members(2),
        }),
        periodic_gossip: Some(foca::PeriodicParams {
            frequency: Duration::from_millis(50),
            num_members: members(3),
        }),
        ..lan
    }
}

fn check_range(field: &str, value: u64, min: u64, max: u64) -> Result<(), MembershipError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(MembershipError::InvalidConfig {
            reason: format!("{field} is {value}; it must be in {min}..={max}"),
        })
    }
}

/// A checked configuration, with foca's part built.
#[derive(Clone, Debug)]
pub struct ValidConfig {
    pub(crate) swim: foca::Config,
    pub(crate) packet_bytes_max: usize,
    pub(crate) broadcast_item_bytes_max: usize,
    pub(crate) config_entries_max: usize,
    pub(crate) members_max: usize,
    pub(crate) seeds_max: usize,
    pub(crate) announce_interval: Duration,
    pub(crate) announce_interval_max: Duration,
    pub(crate) sync_interval: Duration,
    pub(crate) sync_packets_per_round_max: usize,
    pub(crate) event_channel_capacity: usize,
    pub(crate) command_channel_capacity: usize,
}

impl ValidConfig {
    /// The SWIM settings in use.
    pub fn swim(&self) -> &foca::Config {
        &self.swim
    }

    /// Upper bound on how long after a node stops answering every other
    /// node has declared it down, assuming packets flow between the others:
    /// each of `members` nodes probes one member per period, so the dead
    /// node is probed within about `members` periods in the worst case,
    /// then suspected for `suspect_to_down_after`. Tests use it as their
    /// deadline.
    pub fn failure_detection_bound(&self, members: u32) -> Duration {
        self.swim
            .probe_period
            .saturating_mul(members.max(1).saturating_add(2))
            .saturating_add(self.swim.suspect_to_down_after)
    }

    /// Largest gossip datagram, in bytes.
    pub fn packet_bytes_max(&self) -> usize {
        self.packet_bytes_max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_is_foca_wan() {
        let valid = MembershipConfig::default().validate().unwrap();
        let wan = foca::Config::new_wan(NonZeroU32::new(16).unwrap());
        assert_eq!(valid.swim.probe_period, wan.probe_period);
        assert_eq!(valid.swim.suspect_to_down_after, wan.suspect_to_down_after);
        assert_eq!(valid.swim.max_packet_size.get(), 1400 - ENVELOPE_BYTES);
    }

    #[test]
    fn empty_config_file_means_defaults() {
        #[derive(Serialize)]
        struct Empty {}
        let empty_table = rmp_serde::to_vec_named(&Empty {}).unwrap();
        let parsed: MembershipConfig = rmp_serde::from_slice(&empty_table).unwrap();
        assert_eq!(parsed, MembershipConfig::default());
    }

    #[test]
    fn broadcast_item_that_cannot_fit_a_packet_is_refused() {
        let config = MembershipConfig {
            broadcast_item_bytes_max: 1400,
            ..MembershipConfig::default()
        };
        assert!(config.validate().is_err());
    }

    #[test]
    fn probe_rtt_longer_than_the_period_is_refused() {
        let config = MembershipConfig {
            probe_rtt_ms: Some(10_000),
            ..MembershipConfig::default()
        };
        assert!(config.validate().is_err());
    }

    #[test]
    fn short_cluster_secret_is_refused() {
        let config = MembershipConfig {
            cluster_key: Some(ClusterSecret::new("short")),
            ..MembershipConfig::default()
        };
        assert!(config.validate().is_err());
    }
}
