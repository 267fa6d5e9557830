#!/usr/bin/env bash
# Makes what deploy/compose/docker-compose.yml needs and the repository does
# not hold (no keys are committed):
#   secrets/ca/ca.pem, ca.key   the cluster CA (its key never enters a container)
#   certs/ca.pem                the CA certificate every gateway trusts
#   certs/<region>/node.pem,key each region's certificate, issued by the CA
#   .env                        MESHGATE_MEMBERSHIP__CLUSTER_KEY, a random gossip key
# Existing files are kept, so running it twice changes nothing.
# Usage: deploy/compose/setup.sh   (MESHGATE=path/to/meshgate to pick the binary)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
bin=${MESHGATE:-}
if [ -z "$bin" ]; then
    for candidate in "$root/target/x86_64-unknown-linux-gnu/release/meshgate" \
        "$root/target/x86_64-unknown-linux-gnu/compose/meshgate" "$root/target/release/meshgate" "$(command -v meshgate || true)"; do
        if [ -n "$candidate" ] && [ -x "$candidate" ]; then bin=$candidate; break; fi
    done
fi
[ -n "$bin" ] || { echo "no meshgate binary: run deploy/build-image.sh first, or set MESHGATE" >&2; exit 1; }

if [ ! -f "$here/secrets/ca/ca.pem" ]; then
    "$bin" certs ca --dir "$here/secrets/ca"
fi
mkdir -p "$here/certs"
cp "$here/secrets/ca/ca.pem" "$here/certs/ca.pem"
for region in us-east eu-west ap-south; do
    if [ ! -f "$here/certs/$region/node.pem" ]; then
        "$bin" certs node --ca-dir "$here/secrets/ca" --node-id "$region-1" --san "$region" --out "$here/certs/$region"
    fi
done
if [ ! -f "$here/.env" ]; then
    key=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
    printf 'MESHGATE_MEMBERSHIP__CLUSTER_KEY=%s\n' "$key" >"$here/.env"
    chmod 600 "$here/.env"
fi
# The gateways run as uid 10001 and must read their keys (mode 0600).
if [ "$(id -u)" = 0 ]; then
    chown -R 10001:10001 "$here/certs"
else
    echo "note: run as root (or chown -R 10001:10001 $here/certs) so the containers can read their keys" >&2
fi
echo "certificates in $here/certs, cluster key in $here/.env"
