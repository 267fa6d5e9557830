//! SWIM membership among the gateways of all regions, built on foca.
//!
//! Every gateway runs one [`Membership`] (sans-IO: bytes, timers and local
//! operations in; datagrams, timers and events out) inside one
//! [`MembershipDriver`] task that owns its UDP socket. The rest of the node
//! holds a [`MembershipHandle`].
//!
//! What spreads with the membership:
//! - each member's identity ([`MemberId`]: node id, region, incarnation,
//!   gossip, peer and client addresses), in every packet;
//! - each member's metadata ([`MemberMetadata`]: load figures and topic
//!   heads), a versioned custom broadcast per node;
//! - the cluster configuration ([`ConfigChange`]), versioned custom
//!   broadcasts merged by last-writer-wins (see [`cluster_config`]);
//! - anti-entropy (`sync.rs`) repairs what gossip missed.
//!
//! Every datagram carries an HMAC-SHA256 tag under the cluster key and is
//! verified before it is parsed (`auth.rs`).
//!
//! # Layout
//! - `identity.rs`: `NodeId`, `Incarnation`, `MemberId` and its wire form.
//! - `codec.rs`: foca's codec (headers and member updates).
//! - `auth.rs`: the signed envelope, the cluster key, drop reasons.
//! - `metadata.rs`, [`cluster_config`]: the replicated state and its merges.
//! - `broadcast.rs`: foca's broadcast handler over that state.
//! - `sync.rs`: digest-driven anti-entropy.
//! - `config.rs`: `MembershipConfig`, presets, validation.
//! - `machine.rs`: `Membership`, the state machine.
//! - `view.rs`: member view, events, stats, outputs.
//! - `driver.rs`: `GossipSocket`, `MembershipDriver`, `MembershipHandle`.
//! - `tests.rs`: a virtual-time harness running several cores.
//!
//! # Driving it
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use meshgate_federation::membership::*;
//! use meshgate_storage::RegionId;
//!
//! let socket = tokio::net::UdpSocket::bind("0.0.0.0:7422").await?;
//! let address = "10.0.0.5:7422".parse()?;
//! let id = MemberId::new(
//!     NodeId::parse("us-east-1")?,
//!     RegionId::parse("us-east")?,
//!     Incarnation(1), // persisted, bumped at every start
//!     MemberAddresses { gossip: address, peer: "10.0.0.5:7423".parse()?, client: "10.0.0.5:7424".parse()? },
//! );
//! let core = Membership::new(id, &MembershipConfig::wan(16), 42)?;
//! let (driver, handle) = MembershipDriver::new(core, socket);
//! tokio::spawn(driver.run());
//! handle.join(vec!["10.0.1.5:7422".parse()?]).await?;
//! let mut events = handle.subscribe();
//! while let Ok(event) = events.recv().await {
//!     println!("{event:?}");
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # Limitations
//! - The tag authenticates but does not encrypt, and does not stop replay
//!   of a captured packet by an on-path attacker.
//! - A member's slot is its gossip address: a node restarted on another
//!   address appears as a new member until the old one is declared down.
//! - Seeds must be given by the address they advertise as their gossip
//!   address (no NAT rewriting).
//! - Metadata is one broadcast item per node, so it holds about 20 topic
//!   heads with the default `broadcast_item_bytes_max`.

mod auth;
mod broadcast;
pub mod cluster_config;
mod codec;
mod config;
mod driver;
mod error;
mod identity;
mod machine;
mod metadata;
mod sync;
mod view;

#[cfg(test)]
mod tests;

pub use self::auth::{
    CLUSTER_SECRET_BYTES_MIN, ClusterSecret, DropCounters, DropReason, INSECURE_DEV_CLUSTER_SECRET,
};
pub use self::cluster_config::{
    CONFIG_KEY_BYTES_MAX, ConfigChange, ConfigKeyError, validate_config_key,
};
pub use self::config::{MembershipConfig, SwimPreset, ValidConfig};
pub use self::driver::{GossipSocket, MembershipDriver, MembershipHandle};
pub use self::error::MembershipError;
pub use self::identity::{Incarnation, MemberAddresses, MemberId, NODE_ID_BYTES_MAX, NodeId};
pub use self::machine::Membership;
pub use self::metadata::{MemberMetadata, TopicHead};
pub use self::view::{
    MemberState, MemberView, MembershipEvent, MembershipStats, MembershipTimer, Transmit,
};
