//! Anti-entropy for the replicated state (configuration and metadata).
//!
//! Gossip sends each broadcast a bounded number of times, so a node that
//! joins later, restarts or sits out a partition misses some. Every
//! `sync_interval` each node sends one random active member a digest
//! (SHA-256 of every record it holds, in a fixed order). A receiver whose
//! digest differs sends back its records, bounded to
//! `sync_packets_per_round_max` packets starting at a random record, and,
//! if asked, its own digest so the first node sends its records too. Merge
//! is last-writer-wins, so records that are not news change nothing.
//! Records learnt this way are not gossiped on: every pair syncs on its
//! own, which spreads them epidemically without a storm.
//!
//! The same packet kind carries a suspicion notice. foca arms the
//! "suspect to down" timer only on the node whose probe failed; if that
//! node renews its identity (which discards its timers) before the timer
//! fires, and the suspected member never heard of the suspicion, the member
//! stays suspect everywhere, forever. A node that sees a member suspect for
//! twice the suspicion timeout tells it directly, and the member refutes.
//!
//! Body layouts (inside an `auth.rs` envelope of kind `Sync`):
//! - digest: `[0][reply_wanted: u8][digest: 32 bytes]`;
//! - records: `[1][count: u16][(length: u16, broadcast item)...]`;
//! - suspicion notice: `[2][SWIM incarnation: u16][member id]`.

use bytes::{Buf, BufMut};
use ring::digest;

use super::codec::WireError;
use super::identity::{MemberId, decode_member_id, encode_member_id};

const TAG_DIGEST: u8 = 0;
const TAG_RECORDS: u8 = 1;
const TAG_SUSPECT: u8 = 2;
const DIGEST_BYTES: usize = 32;
/// Bytes of a records body before its first item: tag and count.
const RECORDS_HEADER_BYTES: usize = 3;
/// Bytes before each item: its length.
const ITEM_PREFIX_BYTES: usize = 2;

/// A decoded anti-entropy message.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum SyncMessage<'a> {
    /// "This is the digest of my state."
    Digest {
        digest: [u8; DIGEST_BYTES],
        reply_wanted: bool,
    },
    /// Records, each an encoded broadcast item.
    Records(Vec<&'a [u8]>),
    /// "I hold you suspect at this SWIM incarnation."
    Suspected {
        member: MemberId,
        swim_incarnation: u16,
    },
}

/// SHA-256 over every item, each behind its length.
pub(crate) fn digest_of(items: &[Vec<u8>]) -> [u8; DIGEST_BYTES] {
    let mut context = digest::Context::new(&digest::SHA256);
    for item in items {
        context.update(&(item.len() as u64).to_be_bytes());
        context.update(item);
    }
    let mut output = [0; DIGEST_BYTES];
    output.copy_from_slice(context.finish().as_ref());
    output
}

pub(crate) fn encode_digest(digest: &[u8; DIGEST_BYTES], reply_wanted: bool) -> Vec<u8> {
    let mut body = Vec::with_capacity(2 + DIGEST_BYTES);
    body.put_u8(TAG_DIGEST);
    body.put_u8(u8::from(reply_wanted));
    body.put_slice(digest);
    body
}

pub(crate) fn encode_suspect_notice(member: &MemberId, swim_incarnation: u16) -> Vec<u8> {
    let mut body = Vec::new();
    body.put_u8(TAG_SUSPECT);
    body.put_u16(swim_incarnation);
    encode_member_id(member, &mut body);
    body
}

/// Packs `items`, starting at `start` and wrapping around, into at most
/// `packets_max` bodies of at most `body_bytes_max` bytes. Items that could
/// not fit even alone are skipped (they cannot exist when every item is
/// bounded by `broadcast_item_bytes_max`, which validation keeps below a
/// packet).
pub(crate) fn pack_records(
    items: &[Vec<u8>],
    start: usize,
    body_bytes_max: usize,
    packets_max: usize,
) -> Vec<Vec<u8>> {
    let mut bodies = Vec::new();
    let mut body = Vec::new();
    let mut count: u16 = 0;
    for offset in 0..items.len() {
        let item = &items[(start + offset) % items.len()];
        let needed = ITEM_PREFIX_BYTES + item.len();
        if RECORDS_HEADER_BYTES + needed > body_bytes_max {
            continue;
        }
        if count == u16::MAX || body.len() + needed > body_bytes_max {
            finish_records(&mut body, count, &mut bodies);
            count = 0;
            if bodies.len() >= packets_max {
                return bodies;
            }
        }
        if body.is_empty() {
            body.put_u8(TAG_RECORDS);
            body.put_u16(0);
        }
        // Items are at most one packet long, so the length fits a u16.
        body.put_u16(u16::try_from(item.len()).expect("item shorter than a packet"));
        body.put_slice(item);
        count += 1;
    }
    if count > 0 {
        finish_records(&mut body, count, &mut bodies);
    }
    bodies
}

fn finish_records(body: &mut Vec<u8>, count: u16, bodies: &mut Vec<Vec<u8>>) {
    if count == 0 {
        return;
    }
    body[1..3].copy_from_slice(&count.to_be_bytes());
    bodies.push(std::mem::take(body));
}

/// Parses a sync body; never panics, whatever the bytes.
pub(crate) fn decode(mut body: &[u8]) -> Result<SyncMessage<'_>, WireError> {
    match body.try_get_u8().map_err(|_| WireError::Truncated)? {
        TAG_DIGEST => {
            let reply_wanted = match body.try_get_u8().map_err(|_| WireError::Truncated)? {
                0 => false,
                1 => true,
                tag => return Err(WireError::UnknownTag { what: "reply", tag }),
            };
            let mut digest = [0; DIGEST_BYTES];
            body.try_copy_to_slice(&mut digest)
                .map_err(|_| WireError::Truncated)?;
            if !body.is_empty() {
                return Err(WireError::Truncated);
            }
            Ok(SyncMessage::Digest {
                digest,
                reply_wanted,
            })
        }
        TAG_RECORDS => {
            let count = body.try_get_u16().map_err(|_| WireError::Truncated)?;
            let mut items = Vec::with_capacity(usize::from(count).min(body.len() / 2));
            for _ in 0..count {
                let length = usize::from(body.try_get_u16().map_err(|_| WireError::Truncated)?);
                if body.len() < length {
                    return Err(WireError::Truncated);
                }
                let (item, rest) = body.split_at(length);
                items.push(item);
                body = rest;
            }
            if !body.is_empty() {
                return Err(WireError::Truncated);
            }
            Ok(SyncMessage::Records(items))
        }
        TAG_SUSPECT => {
            let swim_incarnation = body.try_get_u16().map_err(|_| WireError::Truncated)?;
            let member = decode_member_id(&mut body)?;
            if !body.is_empty() {
                return Err(WireError::Truncated);
            }
            Ok(SyncMessage::Suspected {
                member,
                swim_incarnation,
            })
        }
        tag => Err(WireError::UnknownTag { what: "sync", tag }),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn digest_message_round_trips() {
        let digest = digest_of(&[b"a".to_vec(), b"b".to_vec()]);
        let body = encode_digest(&digest, true);
        assert_eq!(
            decode(&body).unwrap(),
            SyncMessage::Digest {
                digest,
                reply_wanted: true
            }
        );
    }

    #[test]
    fn digest_depends_on_item_boundaries() {
        assert_ne!(
            digest_of(&[b"ab".to_vec(), b"c".to_vec()]),
            digest_of(&[b"a".to_vec(), b"bc".to_vec()])
        );
    }

    #[test]
    fn records_are_packed_within_the_packet_limits() {
        let items: Vec<Vec<u8>> = (0..50u8).map(|index| vec![index; 40]).collect();
        let bodies = pack_records(&items, 7, 200, 3);
        assert_eq!(bodies.len(), 3);
        let mut seen = Vec::new();
        for body in &bodies {
            assert!(body.len() <= 200);
            let SyncMessage::Records(records) = decode(body).unwrap() else {
                panic!("records expected");
            };
            seen.extend(records.iter().map(|record| record[0]));
        }
        assert_eq!(seen[0], 7, "packing starts at the requested item");
        assert_eq!(seen.len(), 12, "four 42-byte items per 200-byte body");
    }

    #[test]
    fn all_records_fit_when_the_budget_allows() {
        let items: Vec<Vec<u8>> = (0..10u8).map(|index| vec![index; 10]).collect();
        let bodies = pack_records(&items, 3, 1000, 16);
        assert_eq!(bodies.len(), 1);
        let SyncMessage::Records(records) = decode(&bodies[0]).unwrap() else {
            panic!("records expected");
        };
        assert_eq!(records.len(), 10);
    }

    proptest! {
        #[test]
        fn garbage_sync_bodies_never_panic(body in prop::collection::vec(any::<u8>(), 0..400)) {
            let _ = decode(&body);
        }
    }
}
