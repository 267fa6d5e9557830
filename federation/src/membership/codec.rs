//! foca's [`Codec`] for [`MemberId`]: a fixed, hand-written binary layout.
//!
//! Every field is length-checked while reading, nothing is allocated beyond
//! the names, and a buffer too small for an item is left untouched, as
//! foca's `Codec` contract asks. Packets reach this codec only after their
//! HMAC tag verified (see [`super::auth`]), so it parses bytes written by a
//! holder of the cluster key; it must still never panic on them.
//!
//! Layout (all integers big-endian):
//! - header: src id, src SWIM incarnation (u16), dst id, message;
//! - message: tag (u8), then per tag: probe number (u8) for ping/ack, an id
//!   and a probe number for the four indirect messages, nothing otherwise;
//! - member: id, SWIM incarnation (u16), state (u8: 0 alive, 1 suspect,
//!   2 down).

use bytes::{Buf, BufMut};
use foca::{Codec, Header, Member, Message, State};
use meshgate_storage::NameError;

use super::identity::{MemberId, decode_member_id, encode_member_id};

/// Why bytes could not be decoded. Decoding errors never change state: the
/// packet that carried them is dropped and counted.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WireError {
    /// The bytes ended in the middle of a field.
    #[error("truncated")]
    Truncated,
    /// A tag byte has no meaning.
    #[error("unknown {what} tag {tag}")]
    UnknownTag {
        /// Which field.
        what: &'static str,
        /// Its value.
        tag: u8,
    },
    /// A name is not UTF-8.
    #[error("name is not UTF-8")]
    NotUtf8,
    /// A name breaks the naming rule.
    #[error("invalid name")]
    Name(#[source] NameError),
    /// The encoded item does not fit in the space left in the packet; the
    /// buffer was left untouched.
    #[error("no room for the item in the packet")]
    NoRoom,
    /// A configuration change carries an invalid key.
    #[error("invalid configuration key")]
    ConfigKey(#[source] super::cluster_config::ConfigKeyError),
    /// A MessagePack item could not be decoded.
    #[error("malformed item")]
    Item(#[source] rmp_serde::decode::Error),
    /// An item is larger than its limit.
    #[error("item is {bytes} bytes; the limit is {bytes_max}")]
    ItemTooLarge {
        /// Its size.
        bytes: usize,
        /// The limit.
        bytes_max: usize,
    },
}

const MESSAGE_PING: u8 = 0;
const MESSAGE_ACK: u8 = 1;
const MESSAGE_PING_REQUEST: u8 = 2;
const MESSAGE_INDIRECT_PING: u8 = 3;
const MESSAGE_INDIRECT_ACK: u8 = 4;
const MESSAGE_FORWARDED_ACK: u8 = 5;
const MESSAGE_ANNOUNCE: u8 = 6;
const MESSAGE_FEED: u8 = 7;
const MESSAGE_GOSSIP: u8 = 8;
const MESSAGE_BROADCAST: u8 = 9;
const MESSAGE_TURN_UNDEAD: u8 = 10;

const STATE_ALIVE: u8 = 0;
const STATE_SUSPECT: u8 = 1;
const STATE_DOWN: u8 = 2;

/// The codec foca uses for headers and member updates. Keeps one scratch
/// buffer so encoding does not allocate once warmed up.
#[derive(Default)]
pub(crate) struct WireCodec {
    scratch: Vec<u8>,
}

impl WireCodec {
    /// Copies the scratch buffer into `buffer` if it fits, else leaves
    /// `buffer` untouched.
    fn flush_scratch(&mut self, mut buffer: impl BufMut) -> Result<(), WireError> {
        if buffer.remaining_mut() < self.scratch.len() {
            return Err(WireError::NoRoom);
        }
        buffer.put_slice(&self.scratch);
        Ok(())
    }
}

impl Codec<MemberId> for WireCodec {
    type Error = WireError;

    fn encode_header(
        &mut self,
        header: &Header<MemberId>,
        buffer: impl BufMut,
    ) -> Result<(), Self::Error> {
        self.scratch.clear();
        encode_member_id(&header.src, &mut self.scratch);
        self.scratch.put_u16(header.src_incarnation);
        encode_member_id(&header.dst, &mut self.scratch);
        encode_message(&header.message, &mut self.scratch);
        self.flush_scratch(buffer)
    }

    fn decode_header(&mut self, mut buffer: impl Buf) -> Result<Header<MemberId>, Self::Error> {
        let src = decode_member_id(&mut buffer)?;
        let src_incarnation = buffer.try_get_u16().map_err(|_| WireError::Truncated)?;
        let dst = decode_member_id(&mut buffer)?;
        let message = decode_message(&mut buffer)?;
        Ok(Header {
            src,
            src_incarnation,
            dst,
            message,
        })
    }

    fn encode_member(
        &mut self,
        member: &Member<MemberId>,
        buffer: impl BufMut,
    ) -> Result<(), Self::Error> {
        self.scratch.clear();
        encode_member_id(member.id(), &mut self.scratch);
        self.scratch.put_u16(member.incarnation());
        self.scratch.put_u8(match member.state() {
            State::Alive => STATE_ALIVE,
            State::Suspect => STATE_SUSPECT,
            State::Down => STATE_DOWN,
        });
        self.flush_scratch(buffer)
    }

    fn decode_member(&mut self, mut buffer: impl Buf) -> Result<Member<MemberId>, Self::Error> {
        let id = decode_member_id(&mut buffer)?;
        let incarnation = buffer.try_get_u16().map_err(|_| WireError::Truncated)?;
        let state = match buffer.try_get_u8().map_err(|_| WireError::Truncated)? {
            STATE_ALIVE => State::Alive,
            STATE_SUSPECT => State::Suspect,
            STATE_DOWN => State::Down,
            tag => return Err(WireError::UnknownTag { what: "state", tag }),
        };
        Ok(Member::new(id, incarnation, state))
    }
}

fn encode_message(message: &Message<MemberId>, buffer: &mut Vec<u8>) {
    let (tag, indirect, probe_number) = match message {
        Message::Ping(number) => (MESSAGE_PING, None, Some(*number)),
        Message::Ack(number) => (MESSAGE_ACK, None, Some(*number)),
        Message::PingReq {
            target,
            probe_number,
        } => (MESSAGE_PING_REQUEST, Some(target), Some(*probe_number)),
        Message::IndirectPing {
            origin,
            probe_number,
        } => (MESSAGE_INDIRECT_PING, Some(origin), Some(*probe_number)),
        Message::IndirectAck {
            target,
            probe_number,
        } => (MESSAGE_INDIRECT_ACK, Some(target), Some(*probe_number)),
        Message::ForwardedAck {
            origin,
            probe_number,
        } => (MESSAGE_FORWARDED_ACK, Some(origin), Some(*probe_number)),
        Message::Announce => (MESSAGE_ANNOUNCE, None, None),
        Message::Feed => (MESSAGE_FEED, None, None),
        Message::Gossip => (MESSAGE_GOSSIP, None, None),
        Message::Broadcast => (MESSAGE_BROADCAST, None, None),
        Message::TurnUndead => (MESSAGE_TURN_UNDEAD, None, None),
    };
    buffer.put_u8(tag);
    if let Some(id) = indirect {
        encode_member_id(id, buffer);
    }
    if let Some(number) = probe_number {
        buffer.put_u8(number);
    }
}

fn decode_message(buffer: &mut impl Buf) -> Result<Message<MemberId>, WireError> {
    let tag = buffer.try_get_u8().map_err(|_| WireError::Truncated)?;
    let message = match tag {
        MESSAGE_PING => Message::Ping(decode_probe_number(buffer)?),
        MESSAGE_ACK => Message::Ack(decode_probe_number(buffer)?),
        MESSAGE_PING_REQUEST => Message::PingReq {
            target: decode_member_id(buffer)?,
            probe_number: decode_probe_number(buffer)?,
        },
        MESSAGE_INDIRECT_PING => Message::IndirectPing {
            origin: decode_member_id(buffer)?,
            probe_number: decode_probe_number(buffer)?,
        },
        MESSAGE_INDIRECT_ACK => Message::IndirectAck {
            target: decode_member_id(buffer)?,
            probe_number: decode_probe_number(buffer)?,
        },
        MESSAGE_FORWARDED_ACK => Message::ForwardedAck {
            origin: decode_member_id(buffer)?,
            probe_number: decode_probe_number(buffer)?,
        },
        MESSAGE_ANNOUNCE => Message::Announce,
        MESSAGE_FEED => Message::Feed,
        MESSAGE_GOSSIP => Message::Gossip,
        MESSAGE_BROADCAST => Message::Broadcast,
        MESSAGE_TURN_UNDEAD => Message::TurnUndead,
        tag => {
            return Err(WireError::UnknownTag {
                what: "message",
                tag,
            });
        }
    };
    Ok(message)
}

fn decode_probe_number(buffer: &mut impl Buf) -> Result<u8, WireError> {
    buffer.try_get_u8().map_err(|_| WireError::Truncated)
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use meshgate_storage::RegionId;

    use super::*;
    use crate::membership::identity::{Incarnation, MemberAddresses, NodeId};

    fn member(node: &str) -> MemberId {
        let address = SocketAddr::from(([10, 0, 0, 1], 7422));
        MemberId::new(
            NodeId::parse(node).unwrap(),
            RegionId::parse("eu-west").unwrap(),
            Incarnation(1),
            MemberAddresses {
                gossip: address,
                peer: address,
                client: address,
            },
        )
    }

    fn every_message() -> Vec<Message<MemberId>> {
        vec![
            Message::Ping(1),
            Message::Ack(2),
            Message::PingReq {
                target: member("t"),
                probe_number: 3,
            },
            Message::IndirectPing {
                origin: member("o"),
                probe_number: 4,
            },
            Message::IndirectAck {
                target: member("t"),
                probe_number: 5,
            },
            Message::ForwardedAck {
                origin: member("o"),
                probe_number: 6,
            },
            Message::Announce,
            Message::Feed,
            Message::Gossip,
            Message::Broadcast,
            Message::TurnUndead,
        ]
    }

    #[test]
    fn every_header_round_trips() {
        let mut codec = WireCodec::default();
        for message in every_message() {
            let header = Header {
                src: member("a"),
                src_incarnation: 9,
                dst: member("b"),
                message,
            };
            let mut bytes = Vec::new();
            codec.encode_header(&header, &mut bytes).unwrap();
            let mut slice = &bytes[..];
            assert_eq!(codec.decode_header(&mut slice).unwrap(), header);
            assert!(slice.is_empty());
        }
    }

    #[test]
    fn member_update_round_trips() {
        let mut codec = WireCodec::default();
        for state in [State::Alive, State::Suspect, State::Down] {
            let update = Member::new(member("m"), 77, state);
            let mut bytes = Vec::new();
            codec.encode_member(&update, &mut bytes).unwrap();
            let mut slice = &bytes[..];
            assert_eq!(codec.decode_member(&mut slice).unwrap(), update);
        }
    }

    #[test]
    fn encoding_into_a_full_buffer_leaves_it_untouched() {
        let mut codec = WireCodec::default();
        let mut bytes = Vec::new();
        let mut limited = (&mut bytes).limit(10);
        let update = Member::new(member("m"), 1, State::Alive);
        assert!(matches!(
            codec.encode_member(&update, &mut limited),
            Err(WireError::NoRoom)
        ));
        assert!(bytes.is_empty());
    }
}
