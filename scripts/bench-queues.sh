#!/usr/bin/env bash
# meshgate dispatch queues vs RabbitMQ fan-out on this machine, side by side,
# in one run.
#
# Runs `meshgate bench queues` (one hot topic into 1, 10 and 100 queues with
# an active consumer each, and as many consumer groups reading the topic
# directly; it starts its own gateway in the process), then the RabbitMQ
# peer benchmark (shared/peers/rabbitmq/run.sh: one publisher, persistent
# confirmed messages to a fanout exchange bound to 1, 10, 100 durable
# classic queues, one consumer each; it installs rabbitmq-server with apt
# if missing), with the same message count and size, and prints delivered
# messages/s side by side with ratios, and the log reads per record.
#
# Durability, stated next to the figures: meshgate's topic fsyncs at most
# every 10 ms and acknowledges producers after the fsync (queue ack state is
# written every 250 ms); RabbitMQ confirms a persistent message once every
# queue it was routed to has it on disk (batched fsync).
#
# Usage: scripts/bench-queues.sh [MESSAGES] [SIZE]   (default 10000 100)
# Environment: CARGO_TARGET_DIR (default ./target); PEERS_DIR (default
# ../shared/peers next to the repository); MESHGATE_BUILD=release (default)
# builds with `cargo build --release`, MESHGATE_BUILD=dev-opt builds the dev
# profile with our crates at opt-level 2 (dependencies are already at 2 in
# dev: much faster on a machine that has a dev build).
# Holds /tmp/peer-bench.lock for the whole run: one benchmark at a time.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
messages=${1:-10000}
size=${2:-100}
peers=${PEERS_DIR:-$root/../shared/peers}
target=${CARGO_TARGET_DIR:-$root/target}

exec 9>/tmp/peer-bench.lock
flock 9

case ${MESHGATE_BUILD:-release} in
    release)
        cargo build --release -q -p meshgate-gateway --bin meshgate --manifest-path "$root/Cargo.toml"
        meshgate=$target/release/meshgate ;;
    dev-opt)
        CARGO_PROFILE_DEV_OPT_LEVEL=2 cargo build -q -p meshgate-gateway --bin meshgate \
            --manifest-path "$root/Cargo.toml"
        meshgate=$target/debug/meshgate ;;
    *) echo "MESHGATE_BUILD is release or dev-opt" >&2; exit 2 ;;
esac

dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
echo "meshgate bench queues ($messages messages of $size B, 1/10/100 queues and groups) ..." >&2
"$meshgate" bench queues --messages "$messages" --size "$size" --queues 1,10,100 --json \
    >"$dir/meshgate.jsonl"
echo "RabbitMQ peer (same messages and size, 1/10/100 queues) ..." >&2
"$peers/rabbitmq/run.sh" "$messages" "$size" 1 10 100 >"$dir/rabbitmq.jsonl"

echo
echo "Fan-out of one hot topic: $messages messages of $size B per case, one consumer per queue/group"
echo "meshgate: topic fsync every <=10 ms, producers acked after fsync; queue acks persisted every 250 ms"
echo "RabbitMQ: $(jq -r 'select(.phase=="fanout") | .peer' "$dir/rabbitmq.jsonl" | head -1); durable classic queues, persistent messages, publisher confirms"
printf '%-7s %18s %18s %18s %14s %14s %14s\n' QUEUES "meshgate queues/s" "meshgate groups/s" "RabbitMQ/s" "queues:rabbit" "reads/rec (q)" "reads/rec (g)"
for q in 1 10 100; do
    mq=$(jq -r "select(.mode==\"queues\" and .queues==$q) | .deliveries_per_s" "$dir/meshgate.jsonl")
    mg=$(jq -r "select(.mode==\"groups\" and .queues==$q) | .deliveries_per_s" "$dir/meshgate.jsonl")
    rq=$(jq -r "select(.phase==\"fanout\" and .queues==$q) | .deliveries_per_s" "$dir/rabbitmq.jsonl")
    rrq=$(jq -r "select(.mode==\"queues\" and .queues==$q) | .log_reads_per_record" "$dir/meshgate.jsonl")
    rrg=$(jq -r "select(.mode==\"groups\" and .queues==$q) | .log_reads_per_record" "$dir/meshgate.jsonl")
    ratio=$(awk -v a="$mq" -v b="$rq" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "-" }')
    printf '%-7s %18.0f %18.0f %18.0f %14s %14.2f %14.2f\n' "$q" "$mq" "$mg" "$rq" "$ratio" "$rrq" "$rrg"
done
echo
echo "raw results:"
cat "$dir/meshgate.jsonl" "$dir/rabbitmq.jsonl"
