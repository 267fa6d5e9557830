//! One work queue as a sans-IO state machine: messages routed in from the
//! source topic (by reference: partition and offset), leased to competing
//! consumers, acked, nacked or expired, and dead-lettered after too many
//! attempts. Time is always an argument; [`Queue::poll_timeout`] says when
//! something changes next and [`Queue::poll_dead_letter`] hands out the
//! messages this queue gave up on.
//!
//! A message is *log-backed* when it came from the source log: once done
//! (acked or dead-lettered) its offset joins the partition's [`AckSet`],
//! and after a restart the dispatcher routes every offset not in that set
//! again. A message is *explicit* when the log cannot bring it back (every
//! dead letter; a message redriven from the dead-letter queue): those are
//! listed one by one in the durable state.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::ack_set::AckSet;
use super::error::QueueError;
use super::options::QueueOptions;

/// Leases remembered after they expire, so a late ack says "expired"
/// rather than "unknown" (8 bytes each).
pub const EXPIRED_LEASES_REMEMBERED: usize = 4096;

/// A message: a record of the source topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct MessageId {
    /// The source partition.
    pub partition: u32,
    /// The record's offset in this node's log of that partition.
    pub offset: u64,
}

/// A lease on one delivered message, unique on this node while it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LeaseId(pub u64);

/// A message entering a queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Incoming {
    /// Which record.
    pub id: MessageId,
    /// Its key, for per-key FIFO.
    pub key: Option<Bytes>,
    /// When it was routed into the (first) queue, milliseconds since the epoch.
    pub routed_ms: u64,
    /// Not delivered before this time (milliseconds since the epoch).
    pub not_before_ms: u64,
    /// Deliveries so far (0 for a new message).
    pub attempts: u32,
}

/// One delivery handed to a consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Settle the message with this lease.
    pub lease: LeaseId,
    /// Which record.
    pub id: MessageId,
    /// 1 on the first delivery.
    pub attempt: u32,
    /// The lease runs out at this time (milliseconds since the epoch).
    pub deadline_ms: u64,
}

/// Why a message left the queue without an ack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeadReason {
    /// Delivered `max_attempts` times without an ack.
    MaxAttempts,
    /// Pushed out by the backlog bound.
    Backlog,
    /// Older than `max_message_age_ms`.
    Expired,
}

/// A message the queue gave up on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The message as it would enter another queue (attempts kept).
    pub message: Incoming,
    /// Why.
    pub reason: DeadReason,
}

/// What a queue must keep across restarts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueState {
    /// Per source partition: the offsets this queue is done with.
    pub acks: BTreeMap<u32, AckSet>,
    /// Messages the log cannot bring back, one by one.
    pub explicit: Vec<Incoming>,
}

/// Counters and gauges, for describe and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueStats {
    /// Messages waiting (not in flight), delayed ones included.
    pub depth: u64,
    /// Messages leased and not yet settled.
    pub in_flight: u64,
    /// Age of the oldest message in the queue, in milliseconds.
    pub oldest_age_ms: Option<u64>,
    /// Messages routed in since start.
    pub routed: u64,
    /// Deliveries since start (first deliveries and redeliveries).
    pub delivered: u64,
    /// Deliveries that were not the first, since start.
    pub redeliveries: u64,
    /// Acks since start.
    pub acked: u64,
    /// Messages given up on since start.
    pub dead_lettered: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    /// In `waiting` under this sort key.
    Waiting { not_before_ms: u64, sequence: u64 },
    /// Leased.
    InFlight(LeaseId),
    /// Behind another message with the same key (per-key FIFO).
    Blocked { not_before_ms: u64 },
}

#[derive(Debug, Clone)]
struct Entry {
    key: Option<Bytes>,
    routed_ms: u64,
    attempts: u32,
    explicit: bool,
    place: Place,
}

#[derive(Debug, Clone, Copy)]
struct Lease {
    id: MessageId,
    deadline_ms: u64,
}

/// One queue.
#[derive(Debug)]
pub struct Queue {
    options: QueueOptions,
    entries: BTreeMap<MessageId, Entry>,
    /// Deliverable order: (not before, arrival sequence).
    waiting: BTreeSet<(u64, u64, MessageId)>,
    /// Every entry by age, for the oldest-age gauge and the age limit.
    by_age: BTreeSet<(u64, MessageId)>,
    leases: BTreeMap<LeaseId, Lease>,
    deadlines: BTreeSet<(u64, LeaseId)>,
    expired: VecDeque<LeaseId>,
    expired_set: BTreeSet<LeaseId>,
    /// Per-key FIFO order (only with `fifo_by_key`): the head may be out.
    keys: BTreeMap<Bytes, VecDeque<MessageId>>,
    acks: BTreeMap<u32, AckSet>,
    next_lease: u64,
    next_sequence: u64,
    dead: VecDeque<DeadLetter>,
    stats: QueueStats,
}

impl Queue {
    /// An empty queue. Lease ids count up from `lease_base` (pick it at
    /// random, so ids from before a restart are not reused).
    pub fn new(options: QueueOptions, lease_base: u64) -> Self {
        Self {
            options,
            entries: BTreeMap::new(),
            waiting: BTreeSet::new(),
            by_age: BTreeSet::new(),
            leases: BTreeMap::new(),
            deadlines: BTreeSet::new(),
            expired: VecDeque::new(),
            expired_set: BTreeSet::new(),
            keys: BTreeMap::new(),
            acks: BTreeMap::new(),
            next_lease: lease_base,
            next_sequence: 0,
            dead: VecDeque::new(),
            stats: QueueStats::default(),
        }
    }

    /// A queue from its durable state: explicit messages come back waiting;
    /// log-backed ones come back as the dispatcher routes them again.
    pub fn restore(options: QueueOptions, lease_base: u64, state: QueueState, now_ms: u64) -> Self {
        let mut queue = Self::new(options, lease_base);
        queue.acks = state.acks;
        for message in state.explicit {
            queue.insert(now_ms, message, true);
        }
        queue
    }

    /// The options.
    pub fn options(&self) -> &QueueOptions {
        &self.options
    }

    /// Replaces the options; leases already given keep their deadlines.
    pub fn set_options(&mut self, options: QueueOptions) {
        self.options = options;
    }

    /// Where the dispatcher must start reading `partition` for this queue:
    /// the ack floor (`None` when the queue never saw the partition).
    pub fn floor(&self, partition: u32) -> Option<u64> {
        self.acks.get(&partition).map(AckSet::floor)
    }

    /// Starts tracking `partition` at `offset` (a queue created now takes
    /// records from the current end). No effect when already tracked.
    pub fn handle_start(&mut self, partition: u32, offset: u64) {
        self.acks
            .entry(partition)
            .or_insert_with(|| AckSet::starting_at(offset));
    }

    /// The state to persist.
    pub fn state(&self) -> QueueState {
        let explicit = self
            .entries
            .iter()
            .filter(|(_, entry)| entry.explicit)
            .map(|(id, entry)| Incoming {
                id: *id,
                key: entry.key.clone(),
                routed_ms: entry.routed_ms,
                not_before_ms: 0,
                attempts: entry.attempts,
            })
            .collect();
        QueueState {
            acks: self.acks.clone(),
            explicit,
        }
    }

    /// Counters and gauges at `now_ms`.
    pub fn stats(&self, now_ms: u64) -> QueueStats {
        let mut stats = self.stats.clone();
        stats.in_flight = self.leases.len() as u64;
        stats.depth = self.entries.len() as u64 - stats.in_flight;
        stats.oldest_age_ms = self
            .by_age
            .first()
            .map(|(routed_ms, _)| now_ms.saturating_sub(*routed_ms));
        stats
    }

    /// A record of the source log routed to this queue. Ignored when the
    /// queue is done with it or holds it already (routing is idempotent).
    pub fn handle_routed(&mut self, now_ms: u64, message: Incoming) {
        let acks = self.acks.entry(message.id.partition).or_default();
        if acks.contains(message.id.offset) || self.entries.contains_key(&message.id) {
            return;
        }
        self.stats.routed += 1;
        self.insert(now_ms, message, false);
    }

    /// Records of the source log in `[start, end)` of `partition` that were
    /// not routed here (filtered out, or gaps): the queue is done with them.
    pub fn handle_skipped(&mut self, partition: u32, start: u64, end: u64) {
        self.acks
            .entry(partition)
            .or_default()
            .insert_range(start, end);
    }

    /// A message the log cannot bring back (a dead letter, a redriven
    /// message). Ignored when the queue holds it already.
    pub fn handle_explicit(&mut self, now_ms: u64, message: Incoming) {
        if !self.entries.contains_key(&message.id) {
            self.stats.routed += 1;
            self.insert(now_ms, message, true);
        }
    }

    fn insert(&mut self, now_ms: u64, message: Incoming, explicit: bool) {
        let not_before_ms = message.not_before_ms.max(
            message
                .routed_ms
                .saturating_add(self.options.delivery_delay_ms),
        );
        let mut place = Place::Blocked { not_before_ms };
        if let Some(key) = message.key.as_ref().filter(|_| self.options.fifo_by_key) {
            let order = self.keys.entry(key.clone()).or_default();
            order.push_back(message.id);
            if order.len() == 1 {
                place = self.waiting_place(message.id, not_before_ms);
            }
        } else {
            place = self.waiting_place(message.id, not_before_ms);
        }
        self.by_age.insert((message.routed_ms, message.id));
        self.entries.insert(
            message.id,
            Entry {
                key: message.key,
                routed_ms: message.routed_ms,
                attempts: message.attempts,
                explicit,
                place,
            },
        );
        self.enforce_backlog(now_ms);
    }

    fn waiting_place(&mut self, id: MessageId, not_before_ms: u64) -> Place {
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        self.waiting.insert((not_before_ms, sequence, id));
        Place::Waiting {
            not_before_ms,
            sequence,
        }
    }

    fn enforce_backlog(&mut self, now_ms: u64) {
        // Each pass removes one entry, so this runs at most `entries` times.
        while self.entries.len() - self.leases.len() > self.options.max_backlog as usize {
            let Some(&(_, _, id)) = self.waiting.first() else {
                // Everything waiting is blocked behind in-flight keys: push
                // out the newest blocked message instead.
                let id = self.blocked_newest();
                self.give_up(now_ms, id, DeadReason::Backlog);
                continue;
            };
            self.give_up(now_ms, id, DeadReason::Backlog);
        }
    }

    fn blocked_newest(&self) -> MessageId {
        // Only called when entries outnumber leases with nothing waiting,
        // so some entry is blocked.
        *self
            .entries
            .iter()
            .rev()
            .find(|(_, entry)| matches!(entry.place, Place::Blocked { .. }))
            .expect("a blocked entry exists when nothing waits")
            .0
    }

    /// Leases up to `count_max` deliverable messages to a consumer for
    /// `visibility_ms` (the queue's default when `None`).
    pub fn handle_receive(
        &mut self,
        now_ms: u64,
        count_max: usize,
        visibility_ms: Option<u64>,
    ) -> Vec<Delivery> {
        self.handle_timeout(now_ms);
        let visibility_ms = visibility_ms
            .unwrap_or(self.options.visibility_timeout_ms)
            .clamp(1, super::options::VISIBILITY_MS_MAX);
        let mut deliveries = Vec::new();
        while deliveries.len() < count_max
            && (self.leases.len() as u64) < self.options.max_in_flight
        {
            let Some(&(not_before_ms, sequence, id)) = self.waiting.first() else {
                break;
            };
            if not_before_ms > now_ms {
                break;
            }
            self.waiting.remove(&(not_before_ms, sequence, id));
            let entry = self
                .entries
                .get_mut(&id)
                .expect("a waiting id has an entry");
            if self
                .options
                .max_message_age_ms
                .is_some_and(|age_max| now_ms.saturating_sub(entry.routed_ms) >= age_max)
            {
                entry.place = Place::Blocked { not_before_ms };
                self.give_up(now_ms, id, DeadReason::Expired);
                continue;
            }
            let lease = LeaseId(self.next_lease);
            self.next_lease = self.next_lease.wrapping_add(1);
            entry.attempts = entry.attempts.saturating_add(1);
            entry.place = Place::InFlight(lease);
            let deadline_ms = now_ms.saturating_add(visibility_ms);
            self.leases.insert(lease, Lease { id, deadline_ms });
            self.deadlines.insert((deadline_ms, lease));
            self.stats.delivered += 1;
            if entry.attempts > 1 {
                self.stats.redeliveries += 1;
            }
            deliveries.push(Delivery {
                lease,
                id,
                attempt: entry.attempts,
                deadline_ms,
            });
        }
        deliveries
    }

    /// The consumer is done with the message.
    pub fn handle_ack(&mut self, now_ms: u64, lease: LeaseId) -> Result<MessageId, QueueError> {
        let Lease { id, .. } = self.take_lease(now_ms, lease)?;
        self.stats.acked += 1;
        self.finish(id);
        Ok(id)
    }

    /// The consumer could not handle the message: deliver it again after
    /// `delay_ms` (at once when `None`), or dead-letter it when it has had
    /// its attempts.
    pub fn handle_nack(
        &mut self,
        now_ms: u64,
        lease: LeaseId,
        delay_ms: Option<u64>,
    ) -> Result<MessageId, QueueError> {
        let Lease { id, .. } = self.take_lease(now_ms, lease)?;
        let not_before_ms = now_ms.saturating_add(delay_ms.unwrap_or(0));
        self.retry_or_give_up(now_ms, id, not_before_ms);
        Ok(id)
    }

    /// Gives the message `lease` covers `extend_ms` more from now.
    pub fn handle_extend(
        &mut self,
        now_ms: u64,
        lease: LeaseId,
        extend_ms: u64,
    ) -> Result<u64, QueueError> {
        let Lease { id, .. } = self.take_lease(now_ms, lease)?;
        let deadline_ms =
            now_ms.saturating_add(extend_ms.clamp(1, super::options::VISIBILITY_MS_MAX));
        self.leases.insert(lease, Lease { id, deadline_ms });
        self.deadlines.insert((deadline_ms, lease));
        Ok(deadline_ms)
    }

    fn take_lease(&mut self, now_ms: u64, lease: LeaseId) -> Result<Lease, QueueError> {
        self.handle_timeout(now_ms);
        match self.leases.remove(&lease) {
            Some(found) => {
                self.deadlines.remove(&(found.deadline_ms, lease));
                Ok(found)
            }
            None if self.expired_set.contains(&lease) => Err(QueueError::LeaseExpired(lease.0)),
            None => Err(QueueError::UnknownLease(lease.0)),
        }
    }

    /// Expires leases whose deadline passed (the message is delivered
    /// again, or dead-lettered after its last attempt) and ages out
    /// waiting messages past `max_message_age_ms`.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        while let Some(&(deadline_ms, lease)) = self.deadlines.first() {
            if deadline_ms > now_ms {
                break;
            }
            self.deadlines.remove(&(deadline_ms, lease));
            let found = self
                .leases
                .remove(&lease)
                .expect("a deadline has its lease");
            self.remember_expired(lease);
            self.retry_or_give_up(now_ms, found.id, deadline_ms);
        }
        if let Some(age_max) = self.options.max_message_age_ms {
            // Oldest first; stops at the first young or in-flight message.
            while let Some(&(routed_ms, id)) = self.by_age.first() {
                let waiting = self
                    .entries
                    .get(&id)
                    .is_some_and(|entry| !matches!(entry.place, Place::InFlight(_)));
                if now_ms.saturating_sub(routed_ms) < age_max || !waiting {
                    break;
                }
                self.give_up(now_ms, id, DeadReason::Expired);
            }
        }
    }

    /// When the queue's state changes next by itself: a lease deadline or a
    /// delayed message becoming deliverable.
    pub fn poll_timeout(&self) -> Option<u64> {
        let deadline = self.deadlines.first().map(|(deadline_ms, _)| *deadline_ms);
        let ready = self
            .waiting
            .first()
            .map(|(not_before_ms, _, _)| *not_before_ms);
        match (deadline, ready) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// True when a receive at `now_ms` would return something.
    pub fn has_deliverable(&self, now_ms: u64) -> bool {
        (self.leases.len() as u64) < self.options.max_in_flight
            && self
                .waiting
                .first()
                .is_some_and(|(not_before_ms, _, _)| *not_before_ms <= now_ms)
    }

    /// The next message given up on, for the dead-letter queue.
    pub fn poll_dead_letter(&mut self) -> Option<DeadLetter> {
        self.dead.pop_front()
    }

    /// Removes up to `count_max` waiting messages (not in flight), oldest
    /// first, settling them here: for a redrive to another queue.
    pub fn handle_take_waiting(&mut self, count_max: usize) -> Vec<Incoming> {
        let mut taken = Vec::new();
        while taken.len() < count_max {
            let Some(&(not_before_ms, sequence, id)) = self.waiting.first() else {
                break;
            };
            self.waiting.remove(&(not_before_ms, sequence, id));
            let entry = self
                .entries
                .get_mut(&id)
                .expect("a waiting id has an entry");
            entry.place = Place::Blocked { not_before_ms };
            taken.push(Incoming {
                id,
                key: entry.key.clone(),
                routed_ms: entry.routed_ms,
                not_before_ms: 0,
                attempts: 0,
            });
            self.finish(id);
        }
        taken
    }

    fn retry_or_give_up(&mut self, now_ms: u64, id: MessageId, not_before_ms: u64) {
        let entry = self.entries.get(&id).expect("a leased id has an entry");
        if entry.attempts >= self.options.max_attempts {
            self.give_up(now_ms, id, DeadReason::MaxAttempts);
        } else {
            let place = self.waiting_place(id, not_before_ms);
            self.entries
                .get_mut(&id)
                .expect("a leased id has an entry")
                .place = place;
        }
    }

    fn give_up(&mut self, now_ms: u64, id: MessageId, reason: DeadReason) {
        let entry = self
            .entries
            .get(&id)
            .expect("a message given up on has an entry");
        let message = Incoming {
            id,
            key: entry.key.clone(),
            routed_ms: entry.routed_ms,
            not_before_ms: now_ms,
            attempts: entry.attempts,
        };
        self.stats.dead_lettered += 1;
        self.dead.push_back(DeadLetter { message, reason });
        self.finish(id);
    }

    /// Removes a settled message (its lease already gone) and lets the next
    /// message with its key go.
    fn finish(&mut self, id: MessageId) {
        let entry = self.entries.remove(&id).expect("a settled id has an entry");
        if let Place::InFlight(lease) = entry.place {
            assert!(
                !self.leases.contains_key(&lease),
                "settled message {id:?} still leased"
            );
        }
        if let Place::Waiting {
            not_before_ms,
            sequence,
        } = entry.place
        {
            self.waiting.remove(&(not_before_ms, sequence, id));
        }
        self.by_age.remove(&(entry.routed_ms, id));
        if !entry.explicit {
            self.acks.entry(id.partition).or_default().insert(id.offset);
        }
        if let Some(key) = entry.key.filter(|_| self.options.fifo_by_key) {
            self.release_key(&key, id);
        }
    }

    fn release_key(&mut self, key: &Bytes, id: MessageId) {
        let Some(order) = self.keys.get_mut(key) else {
            return;
        };
        order.retain(|queued| *queued != id);
        let next = order.front().copied();
        if order.is_empty() {
            self.keys.remove(key);
        }
        if let Some(next) = next
            && let Some(Place::Blocked { not_before_ms }) =
                self.entries.get(&next).map(|entry| entry.place)
        {
            let place = self.waiting_place(next, not_before_ms);
            self.entries.get_mut(&next).expect("just read").place = place;
        }
    }

    fn remember_expired(&mut self, lease: LeaseId) {
        self.expired.push_back(lease);
        self.expired_set.insert(lease);
        if self.expired.len() > EXPIRED_LEASES_REMEMBERED
            && let Some(oldest) = self.expired.pop_front()
        {
            self.expired_set.remove(&oldest);
        }
    }
}

#[cfg(test)]
mod tests;
