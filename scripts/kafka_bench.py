#!/usr/bin/env python3
"""Produce then consume throughput through the Kafka listener with confluent-kafka.

kafka_bench.py <bootstrap> <topic> <messages> <value bytes>: produces to
partition 0 (acks=all, linger 5 ms, no compression), then consumes every
message back. Prints one JSON line per phase, like examples/native_bench.rs.
"""
import json
import sys
import time

from confluent_kafka import Consumer, Producer


def report(phase, messages, value_bytes, seconds):
    print(json.dumps({
        "protocol": "kafka", "phase": phase, "messages": messages, "seconds": round(seconds, 3),
        "messages_per_s": round(messages / seconds), "mb_per_s": round(messages * value_bytes / seconds / 1e6, 1),
    }))


def main():
    bootstrap, topic, messages, value_bytes = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    value = b"x" * value_bytes
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5,
                         "batch.size": 1 << 20, "queue.buffering.max.messages": 1_000_000})
    started = time.time()
    for _ in range(messages):
        while True:
            try:
                producer.produce(topic, value=value, partition=0)
                break
            except BufferError:
                producer.poll(0.01)
    if producer.flush(120) != 0:
        sys.exit("messages left unsent")
    report("produce", messages, value_bytes, time.time() - started)

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-{time.time()}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False,
                         "fetch.max.bytes": 8 << 20})
    consumer.subscribe([topic])
    received = 0
    started = None
    deadline = time.time() + 300
    while received < messages and time.time() < deadline:
        batch = consumer.consume(10000, 1.0)
        if batch and started is None:
            started = time.time()
        received += sum(1 for m in batch if not m.error())
    consumer.close()
    report("consume", received, value_bytes, time.time() - (started or time.time()))


if __name__ == "__main__":
    main()
