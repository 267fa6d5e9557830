#!/usr/bin/env bash
# meshgate mirroring vs a NATS JetStream mirror, side by side in one run.
#
# NATS: shared/peers/nats-mirror/run.sh (two nats-server regions, B a
# leafnode of A with JetStream domains, B's stream mirrors A's): backlog
# catch-up, live mirroring, publish-to-visible-in-B lag at a fixed rate.
# meshgate: `meshgate bench mirror`, the same three phases on gateways it
# starts in-process on loopback, from region A into B (2 regions, the
# like-for-like figure) and from A into B and C (3 regions).
#
# Durability differs and is printed with every figure: nats-server 2.9
# acknowledges before a lazy fsync; meshgate runs `never` (no fsync, the
# like-for-like comparison) and `10ms` (fsync at most every 10 ms, records
# visible and acknowledged after it: the safe kind of policy).
#
# Usage: scripts/bench-mirror-vs-nats.sh [MESSAGES] [SIZE] [LAG_RATE] [LAG_SECS]
# Holds /tmp/peer-bench.lock for the whole run: one benchmark at a time.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
messages=${1:-200000}
size=${2:-100}
rate=${3:-2000}
secs=${4:-5}
peers=${PEERS_DIR:-$root/../shared/peers}
target=${CARGO_TARGET_DIR:-$root/target}

exec 9>/tmp/peer-bench.lock
flock 9

cargo build --release -q -p meshgate-gateway --manifest-path "$root/Cargo.toml"
meshgate=$target/release/meshgate
results=$(mktemp)
trap 'rm -f "$results"' EXIT

for durability in never 10ms; do
    for regions in 2 3; do
        echo "meshgate $durability, $regions regions ..." >&2
        RUST_LOG=error "$meshgate" bench mirror --messages "$messages" --size "$size" --rate "$rate" \
            --lag-seconds "$secs" --regions "$regions" --durability "$durability" --json >>"$results"
    done
done
echo "NATS JetStream mirror ..." >&2
bash "$peers/nats-mirror/run.sh" "$messages" "$size" 256 "$rate" "$secs" \
    | jq -c 'select(.phase != null) | . + {system: "nats", durability: "lazy", regions: 2}' >>"$results"

jq -rs '
  def nats(p): map(select(.system == "nats" and .phase == p)) | first;
  def lag(r): if r.lag_ms then "p50 \(r.lag_ms.p50) ms, p99 \(r.lag_ms.p99) ms"
              elif r.p50_ms then "p50 \(r.p50_ms) ms, p99 \(r.p99_ms) ms"
              else "" end;
  . as $all
  | ["system", "durability", "regions", "phase", "msg/s", "MB/s", "x NATS msg/s", "lag"],
    ( .[] | . as $r
      | ($all | nats($r.phase)) as $n
      | [ $r.system, $r.durability, ($r.regions|tostring), $r.phase,
          (($r.msgs_per_s // 0) | floor | tostring),
          (($r.mb_per_s // 0) | tostring),
          (if $r.system == "meshgate" and $n and ($n.msgs_per_s // 0) > 0
             then (($r.msgs_per_s / $n.msgs_per_s) * 100 | floor / 100 | tostring) else "" end),
          lag($r) ] )
  | @tsv' "$results" | column -t -s $'\t'
