#!/usr/bin/env bash
# Builds the static meshgate binary and the `meshgate:dev` image FROM scratch.
# Usage: deploy/build-image.sh [tag]      (default tag: meshgate:dev)
set -euo pipefail
cd "$(dirname "$0")/.."
tag=${1:-meshgate:dev}
target=x86_64-unknown-linux-gnu
RUSTFLAGS='-C target-feature=+crt-static' \
    cargo build --release --locked --target "$target" -p meshgate-gateway --bin meshgate
context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
cp "target/$target/release/meshgate" "$context/meshgate"
mkdir "$context/data"
cp deploy/Dockerfile "$context/Dockerfile"
docker build --quiet --tag "$tag" "$context" >/dev/null
size=$(docker image inspect "$tag" --format '{{.Size}}')
echo "built $tag ($((size / 1024 / 1024)) MiB)"
