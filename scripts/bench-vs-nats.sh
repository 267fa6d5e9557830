#!/usr/bin/env bash
# meshgate vs NATS JetStream on this machine, side by side, in one run.
#
# Builds meshgate in release mode, starts a release `meshgate serve` on free
# loopback ports with a temporary data directory, runs `meshgate bench`
# (produce 100 B and 1 KiB, consume, e2e latency at a fixed rate), then the
# NATS JetStream peer benchmark (shared/peers/nats/run.sh: file store,
# publish with acks through a 256-message window, pull-consume) with the same
# message count and sizes, and prints a comparison with ratios.
#
# Durability is stated next to every figure. Debian's nats-server 2.9
# acknowledges before a lazy fsync (it has no sync_interval), so meshgate is
# run both with `never` (no fsync: the like-for-like comparison) and with
# `10ms` (fsync at most every 10 ms, acknowledge after it: safe, the default
# kind of policy).
#
# Usage: scripts/bench-vs-nats.sh [MESSAGES] [E2E_RATE]
#   MESSAGES  records per throughput run (default 200000)
#   E2E_RATE  records per second of the e2e latency run (default 10000)
# Environment: CARGO_TARGET_DIR (default ./target), PEERS_DIR (default
# ../shared/peers next to the repository).
# One producer and one consumer on each side (the NATS peer publishes from
# one client with a 256-message window and pull-consumes with one). meshgate
# uses 4 partitions, linger 2 ms for throughput and 0 for latency.
# Holds /tmp/peer-bench.lock for the whole run: one benchmark at a time.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
messages=${1:-200000}
rate=${2:-10000}
peers=${PEERS_DIR:-$root/../shared/peers}
target=${CARGO_TARGET_DIR:-$root/target}
e2e_messages=$(( rate * 10 ))

exec 9>/tmp/peer-bench.lock
flock 9

cargo build --release -q -p meshgate-gateway --manifest-path "$root/Cargo.toml"
meshgate=$target/release/meshgate
dir=$(mktemp -d)
"$meshgate" serve --data-dir "$dir/data" --listen 127.0.0.1:0 --http-listen 127.0.0.1:0 \
    --gossip-listen 127.0.0.1:0 --peer-listen 127.0.0.1:0 >"$dir/serve.out" 2>"$dir/serve.log" &
serve=$!
trap 'set +e; kill "$serve" 2>/dev/null; wait "$serve" 2>/dev/null; rm -rf "$dir"' EXIT
address=
for _ in $(seq 100); do
    address=$(grep -o 'serving clients on [^ ]*' "$dir/serve.log" | awk '{print $4}' || true)
    [ -n "$address" ] && break
    kill -0 "$serve" 2>/dev/null || { cat "$dir/serve.log" >&2; exit 1; }
    sleep 0.1
done
[ -n "$address" ] || { echo "meshgate serve did not start" >&2; exit 1; }

results=$dir/results.jsonl
bench() { # LABEL ARGS...: one meshgate bench run, tagged
    local label=$1; shift
    echo "meshgate $label ..." >&2
    "$meshgate" --server "$address" --ca-cert "$dir/data/tls/ca.pem" bench "$@" --json \
        | jq -c --arg name "$label" '. + {system: "meshgate", "label": $name}' >>"$results"
}
for size in 100 1024; do
    for durability in never 10ms; do
        bench "produce ${size}B $durability" produce --messages "$messages" --size "$size" \
            --acks local --durability "$durability" --partitions 4 --producers 1
    done
done
for durability in never 10ms; do
    bench "consume 100B $durability" consume --messages "$messages" --size 100 \
        --durability "$durability" --partitions 4 --consumers 1 --producers 1
    bench "e2e 100B $durability" e2e --messages "$e2e_messages" --rate "$rate" --size 100 \
        --durability "$durability" --partitions 4 --linger-ms 0
done

for size in 100 1024; do
    echo "nats size $size ..." >&2
    # The lock is held by this script already; run.sh itself takes none.
    env -u CARGO_TARGET_DIR "$peers/nats/run.sh" "$messages" "$size" 256 \
        | jq -c --arg size "$size" 'select(.phase != null) + {system: "nats", size: ($size | tonumber)}' >>"$results"
done

# NATS end-to-end latency at the same rate, measured like `meshgate bench
# e2e` (the peer benchmark above measures throughput only).
echo "nats e2e ..." >&2
# Shares the peer benchmark's build folder: same async-nats, compiled once.
probe_target=${NATS_LATENCY_TARGET:-/tmp/nats-peer-target}
env -u CARGO_TARGET_DIR cargo build --release -q --manifest-path "$root/scripts/nats-latency/Cargo.toml" \
    --target-dir "$probe_target"
nats_port=$(( 20000 + RANDOM % 20000 ))
printf 'port: %s\njetstream { store_dir: "%s/js" }\n' "$nats_port" "$dir" >"$dir/nats.conf"
nats-server -c "$dir/nats.conf" >"$dir/nats.log" 2>&1 &
nats=$!
trap 'set +e; kill "$serve" "$nats" 2>/dev/null; wait 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$nats_port") 2>/dev/null && break; sleep 0.1; done
"$probe_target/release/nats-latency" "127.0.0.1:$nats_port" "$e2e_messages" 100 "$rate" \
    | jq -c '. + {system: "nats", size: 100}' >>"$results"
kill "$nats"; wait "$nats" 2>/dev/null || true

cp "$results" "${BENCH_RESULTS:-/tmp/bench-vs-nats.jsonl}"
python3 - "$results" <<'PY'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
mesh = {r["label"]: r for r in rows if r["system"] == "meshgate"}
nats = {(r["phase"], r["size"]): r for r in rows if r["system"] == "nats"}
lazy = "nats: ack before lazy fsync"
print()
print(f"{'benchmark':<34}{'meshgate msgs/s':>16}{'NATS msgs/s':>14}{'ratio':>8}  durability")
for size in (100, 1024):
    peer = nats.get(("publish", size))
    for durability, note in (("never", "meshgate: no fsync"), ("10ms", "meshgate: fsync <=10ms, ack after")):
        m = mesh.get(f"produce {size}B {durability}")
        if not m or not peer:
            continue
        ratio = m["msgs_per_s"] / peer["msgs_per_s"]
        print(f"{'produce ' + str(size) + ' B, acks':<34}{m['msgs_per_s']:>16,.0f}{peer['msgs_per_s']:>14,.0f}{ratio:>7.2f}x  {note}; {lazy}")
peer = nats.get(("consume", 100))
for durability in ("never", "10ms"):
    m = mesh.get(f"consume 100B {durability}")
    if m and peer:
        ratio = m["msgs_per_s"] / peer["msgs_per_s"]
        print(f"{'consume 100 B':<34}{m['msgs_per_s']:>16,.0f}{peer['msgs_per_s']:>14,.0f}{ratio:>7.2f}x  topic written with {durability}")
print()
print(f"{'e2e latency (meshgate)':<34}{'rate/s':>10}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'max ms':>9}  durability")
for durability, note in (("never", "no fsync"), ("10ms", "visible after fsync (<=10ms)")):
    m = mesh.get(f"e2e 100B {durability}")
    if m and m.get("latency_ms"):
        l = m["latency_ms"]
        print(f"{'e2e 100 B':<34}{m['msgs_per_s']:>10,.0f}{l['p50']:>9.2f}{l['p90']:>9.2f}{l['p99']:>9.2f}{l['max']:>9.2f}  {note}")
peer = nats.get(("e2e", 100))
if peer:
    l = peer["latency_ms"]
    rate = peer["messages"] / peer["seconds"]
    print(f"{'e2e 100 B (NATS JetStream)':<34}{rate:>10,.0f}{l['p50']:>9.2f}{l['p90']:>9.2f}{l['p99']:>9.2f}{l['max']:>9.2f}  {lazy}")
    for durability in ("never", "10ms"):
        m = mesh.get(f"e2e 100B {durability}")
        if m and m.get("latency_ms"):
            print(f"  p99 meshgate {durability} / NATS: {m['latency_ms']['p99'] / l['p99']:.2f}x")
PY
