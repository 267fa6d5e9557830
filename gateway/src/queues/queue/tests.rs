//! The queue state machine on virtual time: `now` is a plain number.

use super::*;
use crate::queues::domain::{Domain, Side};
use proptest::prelude::*;

fn options() -> QueueOptions {
    QueueOptions {
        visibility_timeout_ms: 1_000,
        max_attempts: 3,
        ..QueueOptions::default()
    }
}

fn message(offset: u64, key: Option<&'static str>, routed_ms: u64) -> Incoming {
    Incoming {
        id: MessageId {
            partition: 0,
            offset,
        },
        key: key.map(|key| Bytes::from_static(key.as_bytes())),
        routed_ms,
        not_before_ms: 0,
        attempts: 0,
    }
}

fn offsets(deliveries: &[Delivery]) -> Vec<u64> {
    deliveries
        .iter()
        .map(|delivery| delivery.id.offset)
        .collect()
}

#[test]
fn competing_consumers_never_get_the_same_message() {
    let mut queue = Queue::new(options(), 0);
    for offset in 0..10 {
        queue.handle_routed(0, message(offset, None, 0));
    }
    let first = queue.handle_receive(0, 4, None);
    let second = queue.handle_receive(0, 10, None);
    assert_eq!(offsets(&first), vec![0, 1, 2, 3]);
    assert_eq!(offsets(&second), vec![4, 5, 6, 7, 8, 9]);
    assert!(queue.handle_receive(0, 10, None).is_empty());
    assert_eq!(queue.stats(0).in_flight, 10);
}

#[test]
fn acked_messages_advance_the_floor_and_are_not_routed_again() {
    let mut queue = Queue::new(options(), 0);
    queue.handle_start(0, 0);
    for offset in 0..3 {
        queue.handle_routed(0, message(offset, None, 0));
    }
    for delivery in queue.handle_receive(0, 3, None) {
        queue.handle_ack(1, delivery.lease).unwrap();
    }
    assert_eq!(queue.floor(0), Some(3));
    queue.handle_routed(2, message(1, None, 0));
    assert_eq!(queue.stats(2).depth, 0);
}

#[test]
fn an_unacked_message_is_delivered_again_after_the_visibility_timeout() {
    let mut queue = Queue::new(options(), 0);
    queue.handle_routed(0, message(7, None, 0));
    let first = queue.handle_receive(0, 1, None);
    assert_eq!(first[0].attempt, 1);
    assert_eq!(queue.poll_timeout(), Some(1_000));
    assert!(queue.handle_receive(999, 1, None).is_empty());
    let again = queue.handle_receive(1_000, 1, None);
    assert_eq!(offsets(&again), vec![7]);
    assert_eq!(again[0].attempt, 2);
    assert_eq!(queue.stats(1_000).redeliveries, 1);
    assert_eq!(
        queue.handle_ack(1_001, first[0].lease),
        Err(QueueError::LeaseExpired(first[0].lease.0))
    );
    queue.handle_ack(1_001, again[0].lease).unwrap();
}

#[test]
fn acks_of_unknown_or_settled_leases_are_typed_errors() {
    let mut queue = Queue::new(options(), 100);
    assert_eq!(
        queue.handle_ack(0, LeaseId(5)),
        Err(QueueError::UnknownLease(5))
    );
    queue.handle_routed(0, message(0, None, 0));
    let delivery = queue.handle_receive(0, 1, None).remove(0);
    queue.handle_ack(1, delivery.lease).unwrap();
    assert_eq!(
        queue.handle_nack(2, delivery.lease, None),
        Err(QueueError::UnknownLease(delivery.lease.0))
    );
}

#[test]
fn a_lease_expiring_exactly_at_the_ack_is_expired() {
    let mut queue = Queue::new(options(), 0);
    queue.handle_routed(0, message(0, None, 0));
    let delivery = queue.handle_receive(0, 1, Some(50)).remove(0);
    assert_eq!(delivery.deadline_ms, 50);
    assert!(matches!(
        queue.handle_ack(50, delivery.lease),
        Err(QueueError::LeaseExpired(_))
    ));
}

#[test]
fn a_nack_with_a_delay_holds_the_message_back_until_then() {
    let mut queue = Queue::new(options(), 0);
    queue.handle_routed(0, message(0, None, 0));
    let delivery = queue.handle_receive(0, 1, None).remove(0);
    queue.handle_nack(10, delivery.lease, Some(500)).unwrap();
    assert!(queue.handle_receive(509, 1, None).is_empty());
    assert_eq!(queue.poll_timeout(), Some(510));
    assert_eq!(offsets(&queue.handle_receive(510, 1, None)), vec![0]);
}

#[test]
fn after_max_attempts_the_message_is_dead_lettered_once() {
    let mut domain = Domain::new(options(), 0);
    domain.handle_start(0, 4);
    domain.handle_routed(0, message(4, None, 0));
    for attempt in 1..=3 {
        let delivery = domain.handle_receive(Side::Main, 0, 1, None).remove(0);
        assert_eq!(delivery.attempt, attempt);
        domain
            .handle_nack(Side::Main, 0, delivery.lease, None)
            .unwrap();
    }
    assert!(domain.handle_receive(Side::Main, 0, 1, None).is_empty());
    assert_eq!(domain.stats(Side::Main, 0).0.dead_lettered, 1);
    assert_eq!(
        domain.floor(0),
        Some(5),
        "a dead letter is done for the queue"
    );
    // Routing it again (a dispatcher restart) does not bring it back.
    domain.handle_routed(0, message(4, None, 0));
    assert!(domain.handle_receive(Side::Main, 0, 1, None).is_empty());
    let dead = domain.handle_receive(Side::Dead, 0, 5, None);
    assert_eq!(offsets(&dead), vec![4]);
    assert_eq!(dead[0].attempt, 1);
}

#[test]
fn a_redrive_moves_dead_letters_back_with_fresh_attempts() {
    let mut domain = Domain::new(
        QueueOptions {
            max_attempts: 1,
            ..options()
        },
        0,
    );
    domain.handle_start(0, 0);
    domain.handle_routed(0, message(0, None, 0));
    domain.handle_routed(0, message(1, None, 0));
    for delivery in domain.handle_receive(Side::Main, 0, 2, None) {
        domain
            .handle_nack(Side::Main, 0, delivery.lease, None)
            .unwrap();
    }
    assert_eq!(domain.stats(Side::Dead, 0).0.depth, 2);
    assert_eq!(domain.handle_redrive(10, 100), 2);
    assert_eq!(domain.stats(Side::Dead, 10).0.depth, 0);
    let again = domain.handle_receive(Side::Main, 10, 5, None);
    assert_eq!(offsets(&again), vec![0, 1]);
    assert!(again.iter().all(|delivery| delivery.attempt == 1));
    // A redriven message survives a restart, and is gone once acked.
    let state = domain.state();
    assert_eq!(state.main.explicit.len(), 2);
    domain.handle_ack(Side::Main, 11, again[0].lease).unwrap();
    assert_eq!(domain.state().main.explicit.len(), 1);
}

#[test]
fn delayed_messages_wait_for_their_time() {
    let mut queue = Queue::new(
        QueueOptions {
            delivery_delay_ms: 100,
            ..options()
        },
        0,
    );
    queue.handle_routed(0, message(0, None, 0));
    let mut late = message(1, None, 0);
    late.not_before_ms = 1_000;
    queue.handle_routed(0, late);
    assert!(queue.handle_receive(99, 5, None).is_empty());
    assert_eq!(offsets(&queue.handle_receive(100, 5, None)), vec![0]);
    assert!(queue.handle_receive(999, 5, None).is_empty());
    assert_eq!(offsets(&queue.handle_receive(1_000, 5, None)), vec![1]);
}

#[test]
fn per_key_fifo_keeps_one_message_per_key_in_flight_in_order() {
    let mut queue = Queue::new(
        QueueOptions {
            fifo_by_key: true,
            ..options()
        },
        0,
    );
    for (offset, key) in [(0, "a"), (1, "a"), (2, "b"), (3, "a"), (4, "b")] {
        queue.handle_routed(0, message(offset, Some(key), 0));
    }
    queue.handle_routed(0, message(5, None, 0));
    let first = queue.handle_receive(0, 10, None);
    assert_eq!(offsets(&first), vec![0, 2, 5]);
    // A nack keeps the key's place: offset 0 comes before 1.
    queue.handle_nack(1, first[0].lease, None).unwrap();
    let again = queue.handle_receive(1, 10, None);
    assert_eq!(offsets(&again), vec![0]);
    queue.handle_ack(2, again[0].lease).unwrap();
    queue.handle_ack(2, first[1].lease).unwrap();
    assert_eq!(offsets(&queue.handle_receive(2, 10, None)), vec![1, 4]);
}

#[test]
fn the_backlog_bound_dead_letters_the_next_waiting_message() {
    let mut domain = Domain::new(
        QueueOptions {
            max_backlog: 2,
            ..options()
        },
        0,
    );
    for offset in 0..4 {
        domain.handle_routed(0, message(offset, None, 0));
    }
    let main = domain.stats(Side::Main, 0).0;
    assert_eq!((main.depth, main.dead_lettered), (2, 2));
    assert_eq!(
        offsets(&domain.handle_receive(Side::Main, 0, 5, None)),
        vec![2, 3]
    );
    // The dead-letter queue has the same bound; past it, dead letters drop:
    // 4 and 5 are pushed out by 6 and 7, and push out 0 and 1.
    for offset in 4..8 {
        domain.handle_routed(0, message(offset, None, 0));
    }
    let (dead, dropped) = domain.stats(Side::Dead, 0);
    assert_eq!(dead.depth, 2);
    assert_eq!(dropped, 2);
}

#[test]
fn the_in_flight_bound_limits_receives() {
    let mut queue = Queue::new(
        QueueOptions {
            max_in_flight: 2,
            ..options()
        },
        0,
    );
    for offset in 0..5 {
        queue.handle_routed(0, message(offset, None, 0));
    }
    assert_eq!(queue.handle_receive(0, 5, None).len(), 2);
    assert!(!queue.has_deliverable(0));
    assert!(queue.handle_receive(0, 5, None).is_empty());
}

#[test]
fn messages_past_their_age_are_dead_lettered_not_delivered() {
    let mut domain = Domain::new(
        QueueOptions {
            max_message_age_ms: Some(100),
            ..options()
        },
        0,
    );
    domain.handle_routed(0, message(0, None, 0));
    domain.handle_routed(50, message(1, None, 50));
    assert_eq!(domain.stats(Side::Main, 60).0.oldest_age_ms, Some(60));
    let delivered = domain.handle_receive(Side::Main, 120, 5, None);
    assert_eq!(offsets(&delivered), vec![1]);
    assert_eq!(domain.stats(Side::Dead, 120).0.depth, 1);
}

#[test]
fn a_restore_brings_back_explicit_messages_and_the_ack_floor() {
    let mut domain = Domain::new(
        QueueOptions {
            max_attempts: 1,
            ..options()
        },
        0,
    );
    domain.handle_start(0, 0);
    for offset in 0..4 {
        domain.handle_routed(0, message(offset, None, 0));
    }
    let deliveries = domain.handle_receive(Side::Main, 0, 4, None);
    domain
        .handle_ack(Side::Main, 0, deliveries[0].lease)
        .unwrap();
    domain
        .handle_nack(Side::Main, 0, deliveries[1].lease, None)
        .unwrap();
    domain
        .handle_ack(Side::Main, 0, deliveries[3].lease)
        .unwrap();
    // Offset 2 is in flight at the crash.
    let mut restored = Domain::restore(domain.options().clone(), 99, domain.state(), 10);
    assert_eq!(restored.floor(0), Some(2));
    for offset in 0..4 {
        restored.handle_routed(10, message(offset, None, 0));
    }
    assert_eq!(
        offsets(&restored.handle_receive(Side::Main, 10, 10, None)),
        vec![2]
    );
    assert_eq!(
        offsets(&restored.handle_receive(Side::Dead, 10, 10, None)),
        vec![1]
    );
}

#[derive(Debug, Clone)]
enum Step {
    Route(u64),
    Receive(usize),
    Ack(usize),
    Nack(usize, u64),
    Advance(u64),
    Redrive,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0u64..40).prop_map(Step::Route),
        (1usize..5).prop_map(Step::Receive),
        (0usize..8).prop_map(Step::Ack),
        (0usize..8, 0u64..300).prop_map(|(index, delay)| Step::Nack(index, delay)),
        (1u64..1_500).prop_map(Step::Advance),
        Just(Step::Redrive),
    ]
}

proptest! {
    /// Every routed message is, at every moment, in exactly one place:
    /// acked, waiting or in flight in the queue, or in the dead-letter
    /// queue; and an acked message never shows up again.
    #[test]
    fn every_message_is_in_exactly_one_place(steps in proptest::collection::vec(step(), 1..120), fifo in any::<bool>()) {
        let mut domain = Domain::new(QueueOptions { fifo_by_key: fifo, ..options() }, 0);
        domain.handle_start(0, 0);
        let mut now = 0;
        let mut routed = BTreeSet::new();
        let mut acked = BTreeSet::new();
        let mut leases: Vec<(Side, Delivery)> = Vec::new();
        for step in steps {
            match step {
                Step::Route(offset) => {
                    let key = ["a", "b", "c"][(offset % 3) as usize];
                    domain.handle_routed(now, message(offset, Some(key), now));
                    routed.insert(offset);
                }
                Step::Receive(count) => {
                    for side in [Side::Main, Side::Dead] {
                        for delivery in domain.handle_receive(side, now, count, None) {
                            prop_assert!(!acked.contains(&delivery.id.offset), "acked message redelivered");
                            leases.push((side, delivery));
                        }
                    }
                }
                Step::Ack(index) if index < leases.len() => {
                    let (side, delivery) = leases.remove(index);
                    if domain.handle_ack(side, now, delivery.lease).is_ok() {
                        acked.insert(delivery.id.offset);
                    }
                }
                Step::Nack(index, delay) if index < leases.len() => {
                    let (side, delivery) = leases.remove(index);
                    let _ = domain.handle_nack(side, now, delivery.lease, Some(delay));
                }
                Step::Advance(ms) => now += ms,
                Step::Redrive => { domain.handle_redrive(now, 10); }
                _ => {}
            }
            domain.handle_timeout(now);
            let main = domain.stats(Side::Main, now).0;
            let dead = domain.stats(Side::Dead, now).0;
            let held = main.depth + main.in_flight + dead.depth + dead.in_flight;
            let main_acks = domain.state().main.acks.get(&0).cloned().unwrap_or_default();
            let redriven = domain.state().main.explicit.len() as u64;
            // Offsets routed but not done for the main queue are held by it.
            let open = routed.iter().filter(|offset| !main_acks.contains(**offset)).count() as u64;
            prop_assert_eq!(main.depth + main.in_flight, open + redriven);
            prop_assert_eq!(held, routed.len() as u64 - acked.len() as u64);
        }
    }
}
