#!/usr/bin/env python3
"""kafka_orders: an unchanged Kafka client (confluent-kafka) on meshgate.

An order service produces order events (created, paid, shipped, cancelled)
keyed by order id with an idempotent producer; a billing service consumes
them as consumer group `billing`, commits, and checks that every order's
events arrived once each and in the order they were produced.

Runs against a meshgate it starts itself (a child `meshgate serve` on
loopback ports, data in a temporary directory), or against a running one:

    pip install confluent-kafka
    python3 examples/python/kafka_orders.py                          # starts its own gateway
    python3 examples/python/kafka_orders.py --bootstrap 127.0.0.1:9092  # a running `meshgate serve`
"""
import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid

STEPS = ["created", "paid", "shipped"]


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def find_meshgate(explicit):
    if explicit:
        return explicit
    found = shutil.which("meshgate")
    if found:
        return found
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    for profile in ["debug", "release"]:
        candidate = os.path.join(root, "target", profile, "meshgate")
        if os.path.exists(candidate):
            return candidate
    sys.exit("no meshgate binary: build it (cargo build -p meshgate-gateway), "
             "put it on PATH, or pass --meshgate PATH or --bootstrap HOST:PORT")


def start_gateway(binary, data_dir):
    """Starts `meshgate serve` on loopback ports; returns (process, bootstrap)."""
    port = free_port()
    kafka = f"127.0.0.1:{port}"
    args = [binary, "serve", "--data-dir", data_dir, "--kafka-listen", kafka]
    for flag in ["--listen", "--http-listen", "--gossip-listen", "--peer-listen"]:
        args += [flag, "127.0.0.1:0"]
    log = open(os.path.join(data_dir, "meshgate.log"), "wb")
    process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 30
    while time.time() < deadline:
        if process.poll() is not None:
            sys.exit(f"meshgate exited with {process.returncode}; see {log.name}")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return process, kafka
        except OSError:
            time.sleep(0.1)
    process.kill()
    sys.exit("meshgate did not open its Kafka listener within 30 s")


def create_topic(bootstrap, topic, partitions):
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(topic, num_partitions=partitions)]).values():
        future.result(timeout=20)


def produce(bootstrap, topic, orders):
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True,
                         "compression.type": "zstd", "linger.ms": 5})
    failures = []
    sent = []
    for index in range(orders):
        order = f"order-{index:05}"
        # Every tenth order is cancelled after payment instead of shipped.
        steps = STEPS[:2] + ["cancelled"] if index % 10 == 9 else STEPS
        for step in steps:
            producer.produce(topic, key=order, value=f"{order} {step}",
                             headers=[("event", step.encode())],
                             on_delivery=lambda err, _msg: err and failures.append(str(err)))
            sent.append((order, step))
        producer.poll(0)
    if producer.flush(30) != 0 or failures:
        sys.exit(f"not every event was acknowledged: {failures[:3]}")
    return sent


def consume(bootstrap, topic, expected):
    from confluent_kafka import Consumer

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "billing",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    events = {}
    received = 0
    deadline = time.time() + 60
    while received < expected and time.time() < deadline:
        message = consumer.poll(0.5)
        if message is None:
            continue
        if message.error():
            sys.exit(f"consume error: {message.error()}")
        order = message.key().decode()
        step = dict(message.headers() or [])["event"].decode()
        events.setdefault(order, []).append(step)
        received += 1
        if received % 100 == 0 or received == expected:
            consumer.commit(asynchronous=False)
    committed = consumer.committed(consumer.assignment(), timeout=10)
    consumer.close()
    return events, received, sum(max(p.offset, 0) for p in committed)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bootstrap", help="a running gateway's Kafka listener (HOST:PORT)")
    parser.add_argument("--meshgate", help="the meshgate binary to start when no --bootstrap")
    parser.add_argument("--orders", type=int, default=1000)
    args = parser.parse_args()
    try:
        import confluent_kafka  # noqa: F401
    except ImportError:
        sys.exit("this example needs confluent-kafka: pip install confluent-kafka")

    gateway = None
    data_dir = None
    bootstrap = args.bootstrap
    if not bootstrap:
        data_dir = tempfile.mkdtemp(prefix="meshgate-kafka-orders-")
        gateway, bootstrap = start_gateway(find_meshgate(args.meshgate), data_dir)
        print(f"started meshgate with its Kafka listener on {bootstrap}")
    try:
        topic = f"orders-{uuid.uuid4().hex[:8]}"
        create_topic(bootstrap, topic, 3)
        print(f"created topic {topic} with 3 partitions (Kafka AdminClient)")
        started = time.time()
        sent = produce(bootstrap, topic, args.orders)
        produced = time.time() - started
        print(f"order service: {len(sent)} events for {args.orders} orders acknowledged "
              f"in {produced:.2f} s (idempotent producer, zstd)")
        started = time.time()
        events, received, committed = consume(bootstrap, topic, len(sent))
        print(f"billing: {received} events consumed in {time.time() - started:.2f} s, "
              f"{committed} offsets committed")
        expected = {}
        for order, step in sent:
            expected.setdefault(order, []).append(step)
        wrong = [order for order in expected if events.get(order) != expected[order]]
        if received != len(sent) or wrong:
            sys.exit(f"{received} of {len(sent)} events; orders out of order or missing: {wrong[:5]}")
        if committed != len(sent):
            sys.exit(f"the group's committed offsets cover {committed} of {len(sent)} events")
        cancelled = sum(1 for steps in events.values() if steps[-1] == "cancelled")
        print(f"check: every order's events arrived once, in order "
              f"({len(events) - cancelled} shipped, {cancelled} cancelled)")
    finally:
        if gateway:
            gateway.terminate()
            gateway.wait(10)
            shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
