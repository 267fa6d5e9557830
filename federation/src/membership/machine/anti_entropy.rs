//! Anti-entropy and stuck-suspicion handling of [`Membership`] (see
//! `sync.rs` for the protocol).

use std::net::SocketAddr;

use foca::{Identity, State};
use foca_rand::RngExt;

use super::Membership;
use crate::membership::auth::{DropReason, ENVELOPE_BYTES, PacketKind};
use crate::membership::broadcast::BroadcastItem;
use crate::membership::identity::{MemberId, NodeId};
use crate::membership::sync::{self, SyncMessage};

impl Membership {
    pub(super) fn handle_sync(&mut self, from: SocketAddr, body: &[u8]) -> Result<(), DropReason> {
        match sync::decode(body).map_err(|_| DropReason::Malformed)? {
            SyncMessage::Digest {
                digest,
                reply_wanted,
            } => {
                let items = self.state.lock().encoded_items();
                let ours = sync::digest_of(&items);
                if ours != digest {
                    self.send_records(from, &items);
                    if reply_wanted {
                        self.push_transmit(
                            from,
                            PacketKind::Sync,
                            &sync::encode_digest(&ours, false),
                        );
                    }
                }
                Ok(())
            }
            SyncMessage::Records(records) => {
                let mut malformed = false;
                for record in records {
                    let merged =
                        BroadcastItem::decode(record, self.config.broadcast_item_bytes_max)
                            .and_then(|item| self.state.lock().merge(item));
                    match merged {
                        Ok(Some(_)) => {
                            self.stats.sync_records_applied =
                                self.stats.sync_records_applied.saturating_add(1);
                        }
                        Ok(None) => {}
                        Err(_) => malformed = true,
                    }
                }
                self.drain_state_changes();
                if malformed {
                    Err(DropReason::Malformed)
                } else {
                    Ok(())
                }
            }
            SyncMessage::Suspected {
                member,
                swim_incarnation,
            } => {
                if member != *self.identity() {
                    return Err(DropReason::Refused);
                }
                // Feeding foca the suspicion about itself makes it refute:
                // bump its SWIM incarnation and gossip.
                let update = foca::Member::new(member, swim_incarnation, State::Suspect);
                let result = self
                    .swim
                    .apply_many(std::iter::once(update), true, &mut self.runtime);
                self.note_swim_result(result);
                self.drain_runtime();
                Ok(())
            }
        }
    }

    /// Tells members that have stayed suspect (same SWIM incarnation) for
    /// twice the suspicion timeout that they are suspected, so they refute.
    pub(super) fn notify_stuck_suspects(&mut self) {
        let ticks_needed = (2 * self.config.swim.suspect_to_down_after.as_millis())
            .div_ceil(self.config.sync_interval.as_millis().max(1))
            .max(2) as u32;
        let current: Vec<(SocketAddr, MemberId, u16)> = self
            .swim
            .iter_membership_state()
            .filter(|member| member.state() == State::Suspect)
            .map(|member| {
                (
                    member.id().addr(),
                    member.id().clone(),
                    member.incarnation(),
                )
            })
            .collect();
        self.suspects
            .retain(|address, _| current.iter().any(|(suspect, _, _)| suspect == address));
        for (address, id, swim_incarnation) in current {
            let entry = self
                .suspects
                .entry(address)
                .or_insert((id.clone(), swim_incarnation, 0));
            if entry.0 != id || entry.1 != swim_incarnation {
                *entry = (id.clone(), swim_incarnation, 0);
            }
            entry.2 += 1;
            if entry.2 >= ticks_needed {
                entry.2 = 0;
                let body = sync::encode_suspect_notice(&id, swim_incarnation);
                self.push_transmit(address, PacketKind::Sync, &body);
            }
        }
    }

    fn send_records(&mut self, to: SocketAddr, items: &[Vec<u8>]) {
        if items.is_empty() {
            return;
        }
        let start = self.rng.random_range(0..items.len());
        let body_bytes_max = self.config.packet_bytes_max - ENVELOPE_BYTES;
        for body in sync::pack_records(
            items,
            start,
            body_bytes_max,
            self.config.sync_packets_per_round_max,
        ) {
            self.push_transmit(to, PacketKind::Sync, &body);
        }
    }

    pub(super) fn start_sync_round(&mut self) {
        if self.leaving {
            return;
        }
        let active: Vec<SocketAddr> = self
            .swim
            .iter_members()
            .map(|member| member.id().addr())
            .collect();
        if active.is_empty() {
            return;
        }
        let peer = active[self.rng.random_range(0..active.len())];
        let digest = sync::digest_of(&self.state.lock().encoded_items());
        self.stats.sync_rounds += 1;
        self.push_transmit(peer, PacketKind::Sync, &sync::encode_digest(&digest, true));
    }

    /// Forgets what belongs to addresses and nodes foca no longer knows.
    pub(super) fn housekeeping(&mut self) {
        let known: Vec<(SocketAddr, NodeId)> = self
            .swim
            .iter_membership_state()
            .map(|member| (member.id().addr(), member.id().node().clone()))
            .collect();
        let own = self.identity().node().clone();
        self.last_heard
            .retain(|address, _| known.iter().any(|(known, _)| known == address));
        self.reported
            .retain(|address, _| known.iter().any(|(known, _)| known == address));
        self.state
            .lock()
            .metadata
            .retain(|node| *node == own || known.iter().any(|(_, known)| known == node));
    }
}
