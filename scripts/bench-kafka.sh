#!/usr/bin/env bash
# Produce and consume throughput through the Kafka listener (confluent-kafka)
# and, in the same run against the same gateway, through the native QUIC
# protocol (gateway/examples/native_bench.rs).
#
#   scripts/bench-kafka.sh [messages] [value bytes]     (default 200000 x 100)
#
# Needs python3 with confluent-kafka (see .ci/run). Builds in release mode
# into $CARGO_TARGET_DIR (default target/). Each protocol writes its own
# topic (1 partition, durability as named below); the gateway's data lives
# in a temporary directory removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
messages=${1:-200000}
value_bytes=${2:-100}
durability=${MESHGATE_BENCH_DURABILITY:-5ms}
target=${CARGO_TARGET_DIR:-target}
cargo build --release --quiet -p meshgate-gateway --bin meshgate --example native_bench
data=$(mktemp -d)
kafka_port=$((20000 + RANDOM % 20000))
MESHGATE_TOPIC_DEFAULTS__DURABILITY="$durability" MESHGATE_TOPIC_DEFAULTS__PARTITIONS=1 \
MESHGATE_TOPIC_DEFAULTS__AUTO_CREATE=true \
  "$target/release/meshgate" serve --data-dir "$data" --listen 127.0.0.1:0 --http-listen 127.0.0.1:0 \
  --gossip-listen 127.0.0.1:0 --peer-listen 127.0.0.1:0 --kafka-listen "127.0.0.1:$kafka_port" \
  2> "$data/serve.log" &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$data"' EXIT
for _ in $(seq 1 100); do
  grep -q "serving clients on" "$data/serve.log" && break
  sleep 0.1
done
client=$(sed -n 's/.*serving clients on \([0-9.:]*\) (QUIC).*/\1/p' "$data/serve.log")
echo "# $messages messages of $value_bytes bytes, 1 partition, durability $durability (ack after fsync), $(nproc) cores"
python3 scripts/kafka_bench.py "127.0.0.1:$kafka_port" kafka-bench "$messages" "$value_bytes"
# The native bench needs its topic; create it through the Kafka admin API.
python3 - "127.0.0.1:$kafka_port" <<'PY'
import sys
from confluent_kafka.admin import AdminClient, NewTopic
admin = AdminClient({"bootstrap.servers": sys.argv[1]})
admin.create_topics([NewTopic("native-bench", 1)])["native-bench"].result(10)
PY
"$target/release/examples/native_bench" "$client" native-bench "$messages" "$value_bytes" 1000
