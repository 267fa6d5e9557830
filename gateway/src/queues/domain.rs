//! A domain: a queue and its dead-letter queue (`NAME.dlq`), moved
//! together so a message leaves one and enters the other in one step, and
//! persisted together in one state file (see [`super::state_file`]).

use serde::{Deserialize, Serialize};

use super::error::QueueError;
use super::options::QueueOptions;
use super::queue::{Delivery, Incoming, LeaseId, MessageId, Queue, QueueState, QueueStats};

/// The suffix that names a queue's dead-letter queue.
pub const DEAD_LETTER_SUFFIX: &str = ".dlq";

/// Which of a domain's two queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The queue itself.
    Main,
    /// Its dead-letter queue.
    Dead,
}

/// What a domain keeps across restarts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainState {
    /// The queue.
    pub main: QueueState,
    /// Its dead-letter queue.
    pub dead: QueueState,
    /// Dead letters dropped because the dead-letter queue was full, ever.
    pub dropped: u64,
    /// The incarnation of the source topic the offsets refer to (a topic
    /// deleted and created again starts its queues afresh).
    #[serde(default)]
    pub topic_incarnation: u64,
}

/// A queue, its dead-letter queue and their counters.
#[derive(Debug)]
pub struct Domain {
    main: Queue,
    dead: Queue,
    dropped: u64,
    /// Changed in a way that must be written soon (acks, dead letters,
    /// redrives, new partitions) since the last [`Domain::take_dirty`].
    dirty: bool,
    /// The floor moved past records not routed here since the last
    /// [`Domain::take_changed`]: worth writing now and then (a restart
    /// re-reads less), never urgent (re-reading them is harmless).
    changed: bool,
}

impl Domain {
    /// A new, empty domain. `lease_base` must be random (the two queues use
    /// disjoint halves of the id space).
    pub fn new(options: QueueOptions, lease_base: u64) -> Self {
        Self::restore(options, lease_base, DomainState::default(), 0)
    }

    /// A domain from its durable state.
    pub fn restore(
        options: QueueOptions,
        lease_base: u64,
        state: DomainState,
        now_ms: u64,
    ) -> Self {
        let main_base = lease_base & !(1 << 63);
        let dead_base = lease_base | (1 << 63);
        Self {
            dead: Queue::restore(options.for_dead_letters(), dead_base, state.dead, now_ms),
            main: Queue::restore(options, main_base, state.main, now_ms),
            dropped: state.dropped,
            dirty: false,
            changed: false,
        }
    }

    /// The queue's options.
    pub fn options(&self) -> &QueueOptions {
        self.main.options()
    }

    /// Replaces the options of both queues.
    pub fn set_options(&mut self, options: QueueOptions) {
        self.dead.set_options(options.for_dead_letters());
        self.main.set_options(options);
    }

    /// One of the two queues, read-only.
    pub fn queue(&self, side: Side) -> &Queue {
        match side {
            Side::Main => &self.main,
            Side::Dead => &self.dead,
        }
    }

    /// The state to persist.
    pub fn state(&self) -> DomainState {
        DomainState {
            main: self.main.state(),
            dead: self.dead.state(),
            dropped: self.dropped,
            topic_incarnation: 0,
        }
    }

    /// True (once) when the state changed in a way that must be written
    /// soon since the last call.
    pub fn take_dirty(&mut self) -> bool {
        self.changed &= !self.dirty;
        std::mem::take(&mut self.dirty)
    }

    /// True (once) when anything changed since the last call of this or
    /// [`Domain::take_dirty`] that returned true.
    pub fn take_changed(&mut self) -> bool {
        std::mem::take(&mut self.changed) | std::mem::take(&mut self.dirty)
    }

    /// Counters and gauges of one side; `dropped` is the dead letters lost
    /// to the dead-letter queue's bound.
    pub fn stats(&self, side: Side, now_ms: u64) -> (QueueStats, u64) {
        (self.queue(side).stats(now_ms), self.dropped)
    }

    /// See [`Queue::floor`] (the main queue's).
    pub fn floor(&self, partition: u32) -> Option<u64> {
        self.main.floor(partition)
    }

    /// See [`Queue::handle_start`].
    pub fn handle_start(&mut self, partition: u32, offset: u64) {
        self.main.handle_start(partition, offset);
        self.dirty = true;
    }

    /// See [`Queue::handle_routed`].
    pub fn handle_routed(&mut self, now_ms: u64, message: Incoming) {
        self.main.handle_routed(now_ms, message);
        self.settle_dead(now_ms);
    }

    /// See [`Queue::handle_skipped`].
    pub fn handle_skipped(&mut self, partition: u32, start: u64, end: u64) {
        self.main.handle_skipped(partition, start, end);
        self.changed = true;
    }

    /// See [`Queue::handle_receive`].
    pub fn handle_receive(
        &mut self,
        side: Side,
        now_ms: u64,
        count_max: usize,
        visibility_ms: Option<u64>,
    ) -> Vec<Delivery> {
        let deliveries = self
            .side(side)
            .handle_receive(now_ms, count_max, visibility_ms);
        self.settle_dead(now_ms);
        deliveries
    }

    /// See [`Queue::handle_ack`].
    pub fn handle_ack(
        &mut self,
        side: Side,
        now_ms: u64,
        lease: LeaseId,
    ) -> Result<MessageId, QueueError> {
        let result = self.side(side).handle_ack(now_ms, lease);
        self.settle_dead(now_ms);
        self.dirty |= result.is_ok();
        result
    }

    /// See [`Queue::handle_nack`].
    pub fn handle_nack(
        &mut self,
        side: Side,
        now_ms: u64,
        lease: LeaseId,
        delay_ms: Option<u64>,
    ) -> Result<MessageId, QueueError> {
        let result = self.side(side).handle_nack(now_ms, lease, delay_ms);
        self.settle_dead(now_ms);
        result
    }

    /// See [`Queue::handle_extend`].
    pub fn handle_extend(
        &mut self,
        side: Side,
        now_ms: u64,
        lease: LeaseId,
        extend_ms: u64,
    ) -> Result<u64, QueueError> {
        let result = self.side(side).handle_extend(now_ms, lease, extend_ms);
        self.settle_dead(now_ms);
        result
    }

    /// See [`Queue::handle_timeout`] (both queues).
    pub fn handle_timeout(&mut self, now_ms: u64) {
        self.main.handle_timeout(now_ms);
        self.dead.handle_timeout(now_ms);
        self.settle_dead(now_ms);
    }

    /// The earliest [`Queue::poll_timeout`] of the two queues.
    pub fn poll_timeout(&self) -> Option<u64> {
        match (self.main.poll_timeout(), self.dead.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Moves up to `count_max` waiting dead letters back into the queue,
    /// with their attempts reset; returns how many moved.
    pub fn handle_redrive(&mut self, now_ms: u64, count_max: usize) -> usize {
        let taken = self.dead.handle_take_waiting(count_max);
        let moved = taken.len();
        for mut message in taken {
            message.not_before_ms = now_ms;
            self.main.handle_explicit(now_ms, message);
        }
        self.dirty |= moved > 0;
        self.settle_dead(now_ms);
        moved
    }

    fn side(&mut self, side: Side) -> &mut Queue {
        match side {
            Side::Main => &mut self.main,
            Side::Dead => &mut self.dead,
        }
    }

    /// Moves what the queue gave up on into the dead-letter queue, and
    /// counts what the dead-letter queue dropped. Bounded: each message
    /// given up on moves once, and the dead-letter queue only gives up on
    /// messages through its bound (never on attempts).
    fn settle_dead(&mut self, now_ms: u64) {
        while let Some(dead) = self.main.poll_dead_letter() {
            tracing::debug!(target: "meshgate::queues", id = ?dead.message.id, reason = ?dead.reason, "dead-lettered");
            let mut message = dead.message;
            message.attempts = 0;
            self.dead.handle_explicit(now_ms, message);
            self.dirty = true;
        }
        while self.dead.poll_dead_letter().is_some() {
            self.dropped += 1;
            self.dirty = true;
        }
    }
}
