#!/usr/bin/env bash
# Builds the static meshgate binary and the `meshgate:dev` image FROM scratch.
# Usage: deploy/build-image.sh [tag]      (default tag: meshgate:dev)
# MESHGATE_PROFILE=compose builds with the lighter `compose` cargo profile
# (optimised less, built faster: what the tests use); default `release`.
set -euo pipefail
cd "$(dirname "$0")/.."
tag=${1:-meshgate:dev}
profile=${MESHGATE_PROFILE:-release}
target=x86_64-unknown-linux-gnu
RUSTFLAGS='-C target-feature=+crt-static' \
    cargo build --profile "$profile" --locked --target "$target" -p meshgate-gateway --bin meshgate
context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
cp "${CARGO_TARGET_DIR:-target}/$target/$profile/meshgate" "$context/meshgate"
# Debug line tables help `perf`, not a container: drop them (symbols stay,
# so a backtrace still names functions).
if command -v strip >/dev/null; then strip --strip-debug "$context/meshgate"; fi
mkdir "$context/data"
cp deploy/Dockerfile "$context/Dockerfile"
docker build --quiet --tag "$tag" "$context" >/dev/null
size=$(docker image inspect "$tag" --format '{{.Size}}')
echo "built $tag ($((size / 1024 / 1024)) MiB)"
