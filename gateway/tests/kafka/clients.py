#!/usr/bin/env python3
"""Real Kafka clients against a meshgate gateway, driven by gateway/tests/kafka_clients.rs.

Each subcommand does one scenario, checks what it can itself, prints one JSON
object on its last line and exits 0, or exits 1 with the reason. Every wait is
bounded; the Rust test also kills the process after its own timeout.
"""
import argparse
import json
import sys
import threading
import time


def fail(message):
    print(message, file=sys.stderr)
    sys.exit(1)


def confluent_produce_consume(args):
    """Idempotent produce with every compression, then consume everything back."""
    from confluent_kafka import Consumer, Producer

    sent = []
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"]:
        producer = Producer({
            "bootstrap.servers": args.bootstrap,
            "enable.idempotence": True,
            "compression.type": codec,
            "linger.ms": 5,
        })
        errors = []
        for i in range(args.count):
            value = f"{codec}-{i}"
            producer.produce(args.topic, key=f"k{i}", value=value,
                             headers=[("h", b"1"), ("h", b"2")],
                             on_delivery=lambda err, msg: err and errors.append(str(err)))
            sent.append(value)
        if producer.flush(20) != 0 or errors:
            fail(f"{codec}: undelivered or failed: {errors[:3]}")
    consumer = Consumer({
        "bootstrap.servers": args.bootstrap,
        "group.id": "confluent-check",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    })
    consumer.subscribe([args.topic])
    got = []
    deadline = time.time() + 30
    while len(got) < len(sent) and time.time() < deadline:
        message = consumer.poll(0.5)
        if message is None:
            continue
        if message.error():
            fail(f"consume error: {message.error()}")
        if message.headers() != [("h", b"1"), ("h", b"2")]:
            fail(f"headers lost: {message.headers()}")
        got.append(message.value().decode())
    consumer.close()
    if sorted(got) != sorted(sent):
        fail(f"consumed {len(got)} of {len(sent)}; missing {sorted(set(sent) - set(got))[:5]}")
    print(json.dumps({"produced": len(sent), "consumed": len(got)}))


def kafka_python_group_resume(args):
    """Consume part of a topic in a group, commit, close; a new member resumes there."""
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    producer = KafkaProducer(bootstrap_servers=args.bootstrap, compression_type="gzip")
    for i in range(args.count):
        producer.send(args.topic, key=b"k", value=f"m{i}".encode(),
                      headers=[("h", b"a"), ("h", b"b")])
    producer.flush(20)
    producer.close()

    first = KafkaConsumer(args.topic, bootstrap_servers=args.bootstrap, group_id="resume",
                          auto_offset_reset="earliest", enable_auto_commit=False,
                          max_poll_records=1, consumer_timeout_ms=15000)
    seen = []
    for message in first:
        if message.headers != [("h", b"a"), ("h", b"b")]:
            fail(f"headers: {message.headers}")
        seen.append(message.value.decode())
        if len(seen) == args.count // 2:
            break
    first.commit()
    first.close()

    second = KafkaConsumer(args.topic, bootstrap_servers=args.bootstrap, group_id="resume",
                           auto_offset_reset="earliest", enable_auto_commit=False,
                           consumer_timeout_ms=5000)
    rest = [message.value.decode() for message in second]
    second.close()
    expected = [f"m{i}" for i in range(args.count)]
    if seen + rest != expected:
        fail(f"first {seen} then {rest}")
    print(json.dumps({"first": len(seen), "resumed": len(rest)}))


def kafka_python_admin(args):
    """Create a topic, see it in the metadata, produce to it, delete it."""
    from kafka import KafkaProducer
    from kafka.admin import KafkaAdminClient, NewTopic

    admin = KafkaAdminClient(bootstrap_servers=args.bootstrap)
    admin.create_topics([NewTopic(args.topic, num_partitions=4, replication_factor=1,
                                  topic_configs={"retention.ms": "3600000"})])
    if args.topic not in admin.list_topics():
        fail("created topic not listed")
    described = admin.describe_topics([args.topic])
    partitions = len(described[0]["partitions"])
    if partitions != 4:
        fail(f"{partitions} partitions")
    producer = KafkaProducer(bootstrap_servers=args.bootstrap)
    producer.send(args.topic, b"x").get(timeout=10)
    producer.close()
    admin.delete_topics([args.topic])
    if args.topic in admin.list_topics():
        fail("deleted topic still listed")
    admin.close()
    print(json.dumps({"partitions": partitions}))


def confluent_rebalance(args):
    """Three consumers share a 6-partition topic; one leaves and the others take over."""
    from confluent_kafka import Consumer

    assignments = {}
    lock = threading.Lock()
    stop = {}

    def member(name):
        consumer = Consumer({
            "bootstrap.servers": args.bootstrap,
            "group.id": "rebalance",
            "client.id": name,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 300,
            "partition.assignment.strategy": "range",
        })
        consumer.subscribe([args.topic])
        while not stop.get(name):
            consumer.poll(0.1)
            with lock:
                assignments[name] = sorted(tp.partition for tp in consumer.assignment())
        consumer.close()
        with lock:
            assignments.pop(name, None)

    def settled(names):
        with lock:
            parts = [p for n in names for p in assignments.get(n, [])]
            return sorted(parts) == list(range(6)) and all(assignments.get(n) for n in names)

    names = ["c1", "c2", "c3"]
    threads = {n: threading.Thread(target=member, args=(n,)) for n in names}
    for thread in threads.values():
        thread.start()
    deadline = time.time() + 30
    while not settled(names) and time.time() < deadline:
        time.sleep(0.1)
    if not settled(names):
        fail(f"three members never shared the partitions: {assignments}")
    with lock:
        three = dict(assignments)
    stop["c3"] = True
    threads["c3"].join(15)
    deadline = time.time() + 30
    while not settled(["c1", "c2"]) and time.time() < deadline:
        time.sleep(0.1)
    if not settled(["c1", "c2"]):
        fail(f"two members never took over: {assignments}")
    with lock:
        two = dict(assignments)
    stop["c1"] = stop["c2"] = True
    for name in ["c1", "c2"]:
        threads[name].join(15)
    print(json.dumps({"three": three, "two": two}))


def confluent_group_consume(args):
    """Consume a group's records from its committed position until idle."""
    from confluent_kafka import Consumer

    consumer = Consumer({
        "bootstrap.servers": args.bootstrap,
        "group.id": args.group,
        "client.id": "failover-consumer",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    })
    consumer.subscribe([args.topic])
    got = []
    deadline = time.time() + 20
    idle_since = None
    while time.time() < deadline:
        message = consumer.poll(0.2)
        if message is None:
            if got and idle_since and time.time() - idle_since > 1.5:
                break
            idle_since = idle_since or time.time()
            continue
        if message.error():
            continue
        idle_since = None
        got.append({"offset": message.offset(), "value": message.value().decode()})
    consumer.close()
    print(json.dumps({"records": got}))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("scenario")
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--group", default="g")
    parser.add_argument("--count", type=int, default=20)
    args = parser.parse_args()
    scenarios = {
        "confluent-produce-consume": confluent_produce_consume,
        "kafka-python-group-resume": kafka_python_group_resume,
        "kafka-python-admin": kafka_python_admin,
        "confluent-rebalance": confluent_rebalance,
        "confluent-group-consume": confluent_group_consume,
    }
    scenarios[args.scenario](args)


if __name__ == "__main__":
    main()
