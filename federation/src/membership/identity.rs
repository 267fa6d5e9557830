//! Who a member is: node id, region, incarnation and its three addresses,
//! and the compact binary form in which foca carries it in every packet.

use std::cmp::Ordering;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use bytes::{Buf, BufMut};
use meshgate_storage::{NameError, RegionId, validate_name};
use serde::{Deserialize, Serialize};

use super::codec::WireError;

/// Longest node id, in bytes. Node ids travel in every gossip packet (twice
/// in its header), so they are kept as short as region names.
pub const NODE_ID_BYTES_MAX: usize = 63;

/// Largest encoded [`MemberId`], in bytes: two length-prefixed names of at
/// most 63 bytes, an 8-byte incarnation and three IPv6 socket addresses of
/// 19 bytes each. Used to prove a broadcast item always fits in a packet.
pub(crate) const MEMBER_ID_BYTES_MAX: usize =
    (1 + NODE_ID_BYTES_MAX) + (1 + meshgate_storage::types::REGION_NAME_BYTES_MAX) + 8 + 3 * 19;

/// A gateway's stable name, such as `us-east-1`: 1 to 63 bytes of ASCII
/// letters, digits, `-`, `_` and `.`, starting with a letter or digit (the
/// same rule as region names).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NodeId(Arc<str>);

impl NodeId {
    /// Validates `name` as a node id.
    pub fn parse(name: &str) -> Result<Self, NameError> {
        validate_name("node", name, NODE_ID_BYTES_MAX)?;
        Ok(Self(Arc::from(name)))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "NodeId({})", self.0)
    }
}

impl TryFrom<String> for NodeId {
    type Error = NameError;

    fn try_from(name: String) -> Result<Self, Self::Error> {
        Self::parse(&name)
    }
}

impl From<NodeId> for String {
    fn from(id: NodeId) -> Self {
        id.0.to_string()
    }
}

/// Which life of a node an identity belongs to. A process starts with a
/// value its caller chooses (a counter persisted and bumped at every start,
/// or the start time in seconds) and bumps it when the cluster declared it
/// down, so a restarted or returning node always wins against the identity
/// the cluster remembers.
///
/// Not to be confused with SWIM's own 16-bit incarnation, which a member
/// bumps to refute suspicion and which [`super::MemberView`] shows as
/// `swim_incarnation`.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default, Serialize, Deserialize,
)]
pub struct Incarnation(pub u64);

/// The three addresses a gateway advertises.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct MemberAddresses {
    /// Where its gossip (UDP) socket receives. Also the member's slot in the
    /// cluster: a newer identity with the same gossip address replaces the
    /// older one.
    pub gossip: SocketAddr,
    /// Where its QUIC peer endpoint (gateway to gateway) listens.
    pub peer: SocketAddr,
    /// Where clients connect.
    pub client: SocketAddr,
}

/// A member's identity as foca sees it: node id, region, incarnation and
/// addresses. Two identities are the same member only if every field is
/// equal; a restarted node comes back under a new identity that wins the
/// address conflict (see [`foca::Identity`]).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct MemberId {
    node: NodeId,
    region: RegionId,
    incarnation: Incarnation,
    addresses: MemberAddresses,
}

impl MemberId {
    /// Builds an identity.
    pub fn new(
        node: NodeId,
        region: RegionId,
        incarnation: Incarnation,
        addresses: MemberAddresses,
    ) -> Self {
        Self {
            node,
            region,
            incarnation,
            addresses,
        }
    }

    /// A stand-in for a seed whose identity is not known yet: only its gossip
    /// address matters, because foca accepts an announce addressed to any
    /// identity with the receiver's address.
    pub(crate) fn seed(gossip: SocketAddr) -> Self {
        // Both names are valid by construction.
        let name = "seed";
        Self {
            node: NodeId(Arc::from(name)),
            region: RegionId::parse(name).expect("\"seed\" is a valid region name"),
            incarnation: Incarnation(0),
            addresses: MemberAddresses {
                gossip,
                peer: gossip,
                client: gossip,
            },
        }
    }

    /// The node id.
    pub fn node(&self) -> &NodeId {
        &self.node
    }

    /// The region the node serves.
    pub fn region(&self) -> &RegionId {
        &self.region
    }

    /// Which life of the node this is.
    pub fn incarnation(&self) -> Incarnation {
        self.incarnation
    }

    /// The advertised addresses.
    pub fn addresses(&self) -> MemberAddresses {
        self.addresses
    }

    /// Orders identities that share a gossip address: the higher incarnation
    /// wins, then node id, region and the other addresses, so the order is
    /// total and every node picks the same winner.
    fn conflict_rank(&self) -> (Incarnation, &NodeId, &RegionId, SocketAddr, SocketAddr) {
        (
            self.incarnation,
            &self.node,
            &self.region,
            self.addresses.peer,
            self.addresses.client,
        )
    }
}

impl fmt::Debug for MemberId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "{}/{}#{}@{}",
            self.region.as_str(),
            self.node,
            self.incarnation.0,
            self.addresses.gossip
        )
    }
}

impl PartialOrd for MemberId {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for MemberId {
    fn cmp(&self, other: &Self) -> Ordering {
        (&self.node, self.addresses.gossip)
            .cmp(&(&other.node, other.addresses.gossip))
            .then_with(|| self.conflict_rank().cmp(&other.conflict_rank()))
    }
}

impl foca::Identity for MemberId {
    type Addr = SocketAddr;

    /// A new identity one incarnation higher, so it wins against the one the
    /// cluster declared down. `None` only after 2^64 renewals.
    fn renew(&self) -> Option<Self> {
        let incarnation = self.incarnation.0.checked_add(1)?;
        Some(Self {
            incarnation: Incarnation(incarnation),
            ..self.clone()
        })
    }

    fn addr(&self) -> SocketAddr {
        self.addresses.gossip
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        self.conflict_rank() > adversary.conflict_rank()
    }
}

/// Writes `id` as: node (u8 length + bytes), region (u8 length + bytes),
/// incarnation (u64 big-endian), then gossip, peer and client addresses.
pub(crate) fn encode_member_id(id: &MemberId, buffer: &mut impl BufMut) {
    encode_name(id.node.as_str(), buffer);
    encode_name(id.region.as_str(), buffer);
    buffer.put_u64(id.incarnation.0);
    encode_address(id.addresses.gossip, buffer);
    encode_address(id.addresses.peer, buffer);
    encode_address(id.addresses.client, buffer);
}

/// Reads what [`encode_member_id`] wrote, validating both names.
pub(crate) fn decode_member_id(buffer: &mut impl Buf) -> Result<MemberId, WireError> {
    let node = NodeId::parse(&decode_name(buffer)?).map_err(WireError::Name)?;
    let region = RegionId::parse(&decode_name(buffer)?).map_err(WireError::Name)?;
    let incarnation = Incarnation(buffer.try_get_u64().map_err(|_| WireError::Truncated)?);
    let gossip = decode_address(buffer)?;
    let peer = decode_address(buffer)?;
    let client = decode_address(buffer)?;
    Ok(MemberId {
        node,
        region,
        incarnation,
        addresses: MemberAddresses {
            gossip,
            peer,
            client,
        },
    })
}

fn encode_name(name: &str, buffer: &mut impl BufMut) {
    // Names are validated to at most 63 bytes, so the length fits a u8.
    let length = u8::try_from(name.len()).expect("validated names are at most 63 bytes");
    buffer.put_u8(length);
    buffer.put_slice(name.as_bytes());
}

fn decode_name(buffer: &mut impl Buf) -> Result<String, WireError> {
    let length = usize::from(buffer.try_get_u8().map_err(|_| WireError::Truncated)?);
    if buffer.remaining() < length {
        return Err(WireError::Truncated);
    }
    let mut bytes = vec![0; length];
    buffer.copy_to_slice(&mut bytes);
    String::from_utf8(bytes).map_err(|_| WireError::NotUtf8)
}

const ADDRESS_V4: u8 = 4;
const ADDRESS_V6: u8 = 6;

fn encode_address(address: SocketAddr, buffer: &mut impl BufMut) {
    match address.ip() {
        IpAddr::V4(ip) => {
            buffer.put_u8(ADDRESS_V4);
            buffer.put_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            buffer.put_u8(ADDRESS_V6);
            buffer.put_slice(&ip.octets());
        }
    }
    buffer.put_u16(address.port());
}

fn decode_address(buffer: &mut impl Buf) -> Result<SocketAddr, WireError> {
    let tag = buffer.try_get_u8().map_err(|_| WireError::Truncated)?;
    let ip = match tag {
        ADDRESS_V4 => {
            let mut octets = [0; 4];
            buffer
                .try_copy_to_slice(&mut octets)
                .map_err(|_| WireError::Truncated)?;
            IpAddr::V4(Ipv4Addr::from(octets))
        }
        ADDRESS_V6 => {
            let mut octets = [0; 16];
            buffer
                .try_copy_to_slice(&mut octets)
                .map_err(|_| WireError::Truncated)?;
            IpAddr::V6(Ipv6Addr::from(octets))
        }
        tag => {
            return Err(WireError::UnknownTag {
                what: "address",
                tag,
            });
        }
    };
    let port = buffer.try_get_u16().map_err(|_| WireError::Truncated)?;
    Ok(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use foca::Identity;

    use super::*;

    fn member(node: &str, incarnation: u64, port: u16) -> MemberId {
        let address = SocketAddr::from(([127, 0, 0, 1], port));
        MemberId::new(
            NodeId::parse(node).unwrap(),
            RegionId::parse("us-east").unwrap(),
            Incarnation(incarnation),
            MemberAddresses {
                gossip: address,
                peer: address,
                client: address,
            },
        )
    }

    #[test]
    fn member_id_round_trips_through_its_wire_form() {
        let mut id = member("us-east-1", 7, 7422);
        id.addresses.peer = "[::1]:7423".parse().unwrap();
        let mut bytes = Vec::new();
        encode_member_id(&id, &mut bytes);
        assert!(bytes.len() <= MEMBER_ID_BYTES_MAX);
        let mut slice = &bytes[..];
        assert_eq!(decode_member_id(&mut slice).unwrap(), id);
        assert!(slice.is_empty(), "decoding consumes exactly the encoding");
    }

    #[test]
    fn renewed_identity_wins_the_address_conflict() {
        let old = member("a", 3, 1);
        let new = old.renew().unwrap();
        assert_eq!(new.incarnation(), Incarnation(4));
        assert!(new.win_addr_conflict(&old));
        assert!(!old.win_addr_conflict(&new));
    }

    #[test]
    fn address_conflict_between_equal_incarnations_has_one_winner() {
        let a = member("a", 3, 1);
        let b = member("b", 3, 1);
        assert!(a.win_addr_conflict(&b) != b.win_addr_conflict(&a));
    }

    #[test]
    fn truncated_member_id_is_an_error() {
        let mut bytes = Vec::new();
        encode_member_id(&member("a", 1, 2), &mut bytes);
        for cut in 0..bytes.len() {
            let mut slice = &bytes[..cut];
            assert!(decode_member_id(&mut slice).is_err(), "cut at {cut}");
        }
    }
}
