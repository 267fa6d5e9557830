//! The authenticated envelope around every gossip datagram.
//!
//! Layout: `[version: u8][kind: u8][body ...][tag: 32 bytes]`, where `tag`
//! is HMAC-SHA256 under the cluster key over everything before it. A
//! receiver checks the size, then the tag (in constant time), and only then
//! looks at a single byte of the content: an unauthenticated packet is
//! never parsed.
//!
//! The tag proves a packet was written by a holder of the cluster key; it
//! does not stop an on-path attacker from replaying an old packet, and it
//! does not hide the content (see the crate's limitations).

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};
use ring::hmac;
use serde::{Deserialize, Serialize};

/// Version byte of the envelope. Bumped when the layout of anything inside
/// changes incompatibly.
pub(crate) const PACKET_VERSION: u8 = 1;

/// Bytes of the HMAC-SHA256 tag.
pub(crate) const TAG_BYTES: usize = 32;

/// Bytes the envelope adds to a body: version, kind and tag.
pub(crate) const ENVELOPE_BYTES: usize = 2 + TAG_BYTES;

/// The secret used when none is configured. It is public (it is right
/// here), so a cluster using it is not authenticated at all: anyone can
/// join it or feed it lies. Only for development.
pub const INSECURE_DEV_CLUSTER_SECRET: &str =
    "meshgate insecure development cluster key - never use in production";

/// Shortest accepted cluster secret, in bytes.
pub const CLUSTER_SECRET_BYTES_MIN: usize = 16;

/// The shared secret from which the gossip HMAC key is derived. Its `Debug`
/// output is redacted so it does not end up in logs.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ClusterSecret(String);

impl ClusterSecret {
    /// Wraps a secret; [`CLUSTER_SECRET_BYTES_MIN`] bytes at least (checked
    /// when the configuration is validated).
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    /// The secret's length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the secret is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for ClusterSecret {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("ClusterSecret(<redacted>)")
    }
}

/// The HMAC-SHA256 key every gossip packet is signed with.
pub(crate) struct ClusterKey(hmac::Key);

impl ClusterKey {
    /// Derives the key from a secret: HMAC accepts keys of any length, so the
    /// secret's bytes are the key.
    pub(crate) fn from_secret(secret: &ClusterSecret) -> Self {
        Self(hmac::Key::new(hmac::HMAC_SHA256, secret.0.as_bytes()))
    }
}

/// What a packet body holds.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum PacketKind {
    /// A foca (SWIM) message.
    Swim = 0,
    /// An anti-entropy message (see [`super::sync`]).
    Sync = 1,
}

/// Why an incoming packet was dropped. Dropping never changes membership
/// state; each reason has its own counter in [`DropCounters`].
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, thiserror::Error)]
pub enum DropReason {
    /// Larger than `packet_bytes_max`.
    #[error("packet larger than the limit")]
    TooLarge,
    /// Shorter than an empty envelope.
    #[error("packet shorter than an envelope")]
    TooShort,
    /// The HMAC tag does not verify: wrong cluster key, corruption or
    /// forgery.
    #[error("authentication tag does not verify")]
    AuthenticationFailed,
    /// Authentic, but written by an incompatible version.
    #[error("unknown packet version")]
    UnknownVersion,
    /// Authentic, but of a kind this version does not know.
    #[error("unknown packet kind")]
    UnknownKind,
    /// Authentic, but its content does not decode.
    #[error("malformed packet content")]
    Malformed,
    /// Claims to come from this node's own identity or address.
    #[error("packet from ourselves")]
    FromOurselves,
    /// Decoded, but refused: foca rejected it (see the debug log for why),
    /// or it was addressed to an identity this node no longer has.
    #[error("refused")]
    Refused,
}

/// How many packets were dropped, by reason.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct DropCounters {
    /// See [`DropReason::TooLarge`].
    pub too_large: u64,
    /// See [`DropReason::TooShort`].
    pub too_short: u64,
    /// See [`DropReason::AuthenticationFailed`].
    pub authentication_failed: u64,
    /// See [`DropReason::UnknownVersion`].
    pub unknown_version: u64,
    /// See [`DropReason::UnknownKind`].
    pub unknown_kind: u64,
    /// See [`DropReason::Malformed`].
    pub malformed: u64,
    /// See [`DropReason::FromOurselves`].
    pub from_ourselves: u64,
    /// See [`DropReason::Refused`].
    pub refused: u64,
}

impl DropCounters {
    /// Counts one drop.
    pub(crate) fn count(&mut self, reason: DropReason) {
        let counter = match reason {
            DropReason::TooLarge => &mut self.too_large,
            DropReason::TooShort => &mut self.too_short,
            DropReason::AuthenticationFailed => &mut self.authentication_failed,
            DropReason::UnknownVersion => &mut self.unknown_version,
            DropReason::UnknownKind => &mut self.unknown_kind,
            DropReason::Malformed => &mut self.malformed,
            DropReason::FromOurselves => &mut self.from_ourselves,
            DropReason::Refused => &mut self.refused,
        };
        *counter = counter.saturating_add(1);
    }

    /// All drops, whatever the reason.
    pub fn total(&self) -> u64 {
        [
            self.too_large,
            self.too_short,
            self.authentication_failed,
            self.unknown_version,
            self.unknown_kind,
            self.malformed,
            self.from_ourselves,
            self.refused,
        ]
        .iter()
        .fold(0u64, |total, count| total.saturating_add(*count))
    }
}

/// Wraps `body` in an envelope of `kind` and signs it.
pub(crate) fn seal(key: &ClusterKey, kind: PacketKind, body: &[u8]) -> Bytes {
    let mut packet = BytesMut::with_capacity(body.len() + ENVELOPE_BYTES);
    packet.put_u8(PACKET_VERSION);
    packet.put_u8(kind as u8);
    packet.put_slice(body);
    let tag = hmac::sign(&key.0, &packet);
    packet.put_slice(tag.as_ref());
    packet.freeze()
}

/// Checks size and tag, then returns the kind and body of an authentic
/// packet.
pub(crate) fn open<'a>(
    key: &ClusterKey,
    packet: &'a [u8],
    packet_bytes_max: usize,
) -> Result<(PacketKind, &'a [u8]), DropReason> {
    if packet.len() > packet_bytes_max {
        return Err(DropReason::TooLarge);
    }
    if packet.len() < ENVELOPE_BYTES {
        return Err(DropReason::TooShort);
    }
    let (signed, tag) = packet.split_at(packet.len() - TAG_BYTES);
    hmac::verify(&key.0, signed, tag).map_err(|_| DropReason::AuthenticationFailed)?;
    if signed[0] != PACKET_VERSION {
        return Err(DropReason::UnknownVersion);
    }
    let kind = match signed[1] {
        0 => PacketKind::Swim,
        1 => PacketKind::Sync,
        _ => return Err(DropReason::UnknownKind),
    };
    Ok((kind, &signed[2..]))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn key() -> ClusterKey {
        ClusterKey::from_secret(&ClusterSecret::new("a test secret of enough length"))
    }

    #[test]
    fn sealed_packet_opens_to_its_kind_and_body() {
        let packet = seal(&key(), PacketKind::Sync, b"hello");
        assert_eq!(
            open(&key(), &packet, 1400),
            Ok((PacketKind::Sync, &b"hello"[..]))
        );
    }

    #[test]
    fn packet_signed_with_another_key_is_refused() {
        let other = ClusterKey::from_secret(&ClusterSecret::new("another secret, same length!!"));
        let packet = seal(&other, PacketKind::Swim, b"hello");
        assert_eq!(
            open(&key(), &packet, 1400),
            Err(DropReason::AuthenticationFailed)
        );
    }

    #[test]
    fn oversized_packet_is_refused_before_its_tag_is_checked() {
        let packet = seal(&key(), PacketKind::Swim, &[0; 100]);
        assert_eq!(open(&key(), &packet, 99), Err(DropReason::TooLarge));
    }

    #[test]
    fn secret_debug_output_is_redacted() {
        let secret = ClusterSecret::new("super secret value");
        assert!(!format!("{secret:?}").contains("super"));
    }

    proptest! {
        #[test]
        fn any_single_bit_flip_fails_authentication(
            body in proptest::collection::vec(any::<u8>(), 0..200),
            bit in any::<usize>(),
        ) {
            let mut packet = seal(&key(), PacketKind::Swim, &body).to_vec();
            let bit = bit % (packet.len() * 8);
            packet[bit / 8] ^= 1 << (bit % 8);
            prop_assert_eq!(open(&key(), &packet, 1400), Err(DropReason::AuthenticationFailed));
        }

        #[test]
        fn random_bytes_never_open(packet in proptest::collection::vec(any::<u8>(), 0..300)) {
            prop_assert!(open(&key(), &packet, 1400).is_err());
        }
    }
}
