#!/usr/bin/env bash
# Three regions in containers, tested for real. Builds the image, brings
# us-east, eu-west and ap-south up with deploy/compose, and checks with
# bounded waits:
#   1. all three regions see each other alive (meshgate members);
#   2. a mirroring rule for orders* over all three: records produced in each
#      region are in every region, none twice;
#   3. a consumer group consuming in eu-west; docker kill of eu-west; the group
#      resumes in us-east: nothing lost, nothing twice, record by record;
#   4. docker network disconnect cuts ap-south off while producers write on
#      both sides; mirror status shows the link down and, at us-east, how
#      many of its records ap-south lacks;
#      reconnect; every region converges;
#   5. a region restarted from its volume keeps its data.
# Prints a table of the checks and their durations. Tears everything down on
# every exit. Skips (exit 0, with the reason) when no Docker engine answers.
# Usage: deploy/test-compose.sh   (MESHGATE_IMAGE_PROFILE=release|compose)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)

if ! docker info >/dev/null 2>&1; then
    echo "deploy/test-compose.sh: SKIPPED: no Docker engine answers (docker info failed)"
    exit 0
fi
compose_bin=$(command -v docker-compose || true)
if [ -z "$compose_bin" ]; then
    echo "deploy/test-compose.sh: SKIPPED: docker-compose is not installed"
    exit 0
fi

project=meshgate-test-$$
image=meshgate:test-$$
compose_file=$here/compose/docker-compose.yml
export MESHGATE_IMAGE=$image
results=$(mktemp)
workdir=$(mktemp -d)
# The test's network gets a subnet of its own choosing (one Docker picks
# for a probe network) so that step 4 can reconnect ap-south at the address
# it had: a gateway advertises the address it resolved at start, and Docker
# hands a reconnected container the next free one otherwise.
override=$workdir/network.yml
dc() { "$compose_bin" -p "$project" -f "$compose_file" -f "$override" "$@"; }
teardown() {
    local status=$?
    set +e
    if [ "$status" -ne 0 ]; then
        echo "--- logs of the failed run ---" >&2
        dc logs --no-color --tail 40 >&2
    fi
    dc down -v --remove-orphans >/dev/null 2>&1
    docker image rm -f "$image" >/dev/null 2>&1
    rm -rf "$workdir" "$results"
    exit "$status"
}
trap teardown EXIT

probe=${project}_probe
docker network create "$probe" >/dev/null
subnet=$(docker network inspect -f '{{range .IPAM.Config}}{{.Subnet}}{{end}}' "$probe")
docker network rm "$probe" >/dev/null
printf 'version: "2.4"\nnetworks:\n  mesh:\n    ipam:\n      config:\n        - subnet: %s\n' "$subnet" >"$override"

started=$(date +%s.%N)
step_start=$started
check() { # NAME: record how long the step since the last check took
    local now
    now=$(date +%s.%N)
    printf '%s\t%.1f s\n' "$1" "$(echo "$now - $step_start" | bc)" >>"$results"
    step_start=$now
}
fail() { echo "FAILED: $*" >&2; exit 1; }
# Bounded wait: until COMMAND succeeds, at most SECONDS.
wait_for() {
    local seconds=$1; shift
    local deadline=$(( $(date +%s) + seconds ))
    until "$@" >/dev/null 2>&1; do
        [ "$(date +%s)" -lt "$deadline" ] || return 1
        sleep 1
    done
}
mg() { # REGION ARGS...: the meshgate CLI inside a region's container
    local region=$1; shift
    dc exec -T "$region" /meshgate --server 127.0.0.1:7420 --ca-cert /certs/ca.pem "$@"
}
container() { dc ps -q "$1"; }

# ---- image and certificates -------------------------------------------------
profile=${MESHGATE_IMAGE_PROFILE:-compose}
MESHGATE_PROFILE=$profile "$here/build-image.sh" "$image" | tee "$workdir/image.txt"
MESHGATE="$root/target/x86_64-unknown-linux-gnu/$profile/meshgate" "$here/compose/setup.sh" >/dev/null
check "build the image and certificates ($(grep -o '[0-9]* MiB' "$workdir/image.txt"))"

# ---- 1. three regions see each other alive ----------------------------------
up_started=$(date +%s.%N)
dc up -d >/dev/null
alive_everywhere() {
    for region in us-east eu-west ap-south; do
        [ "$(mg "$region" members | grep -c ' alive ')" -eq 3 ] || return 1
    done
}
wait_for 90 alive_everywhere || fail "the three regions did not converge"
converged=$(echo "$(date +%s.%N) - $up_started" | bc)
check "1. three regions alive everywhere (up to converged: ${converged%.*} s)"

# ---- 2. mirroring: records of each region in every region, none twice -------
mg us-east topic create orders --partitions 3 >/dev/null
mg us-east mirror add orders --topics 'orders*' --regions us-east,eu-west,ap-south >/dev/null
topic_everywhere() { for r in eu-west ap-south; do mg "$r" topic describe orders >/dev/null || return 1; done; }
wait_for 60 topic_everywhere || fail "the mirrored topic did not reach every region"
per_region=40
for region in us-east eu-west ap-south; do
    seq 1 "$per_region" | sed "s/^/$region-/" | mg "$region" produce orders >/dev/null
done
total=$(( 3 * per_region ))
# Every region holds TOTAL records; prints the sorted origin coordinates.
coordinates() { # REGION COUNT
    mg "$1" consume orders --from-beginning --count "$2" --format json \
        | jq -r '"\(.partition)/\(.origin.region)/\(.origin.seq) \(.value)"' | sort
}
holds() { [ "$(mg "$1" topic describe orders --json 2>/dev/null | jq '[.partitions[].high_watermark] | add')" = "$2" ]; }
for region in us-east eu-west ap-south; do
    wait_for 60 holds "$region" "$total" || fail "$region does not hold $total records"
done
coordinates us-east "$total" >"$workdir/us-east.txt"
for region in eu-west ap-south; do
    coordinates "$region" "$total" >"$workdir/$region.txt"
    cmp -s "$workdir/us-east.txt" "$workdir/$region.txt" || fail "$region holds other records than us-east"
done
[ "$(sort -u "$workdir/us-east.txt" | wc -l)" -eq "$total" ] || fail "a record is held twice"
check "2. orders* mirrored: $total records in every region, none twice"

# ---- 3. group consumes in eu-west; eu-west killed; the group resumes in us-east
half=$(( total / 2 ))
mg eu-west consume orders --group billing --from-beginning --count "$half" --format json \
    | jq -r '"\(.partition)/\(.origin.region)/\(.origin.seq)"' >"$workdir/delivered.txt"
[ "$(wc -l <"$workdir/delivered.txt")" -eq "$half" ] || fail "eu-west delivered $(wc -l <"$workdir/delivered.txt") of $half"
docker kill "$(container eu-west)" >/dev/null
mg us-east consume orders --group billing --from-beginning --count "$(( total - half ))" --format json \
    | jq -r '"\(.partition)/\(.origin.region)/\(.origin.seq)"' >>"$workdir/delivered.txt"
sort "$workdir/delivered.txt" >"$workdir/delivered.sorted"
cut -d' ' -f1 "$workdir/us-east.txt" | sort >"$workdir/all.sorted"
[ "$(sort -u "$workdir/delivered.sorted" | wc -l)" -eq "$(wc -l <"$workdir/delivered.sorted")" ] || fail "a record was delivered twice"
cmp -s "$workdir/delivered.sorted" "$workdir/all.sorted" || {
    diff "$workdir/delivered.sorted" "$workdir/all.sorted" | head -20 >&2
    fail "the group's deliveries are not the topic (< delivered only, > in the topic only)"
}
check "3. group failover eu-west -> us-east: $total delivered once each"

# ---- 4. ap-south cut off while both sides write; lag shown; reconnect ------
network=${project}_mesh
ap=$(container ap-south)
ap_ip=$(docker inspect -f "{{(index .NetworkSettings.Networks \"$network\").IPAddress}}" "$ap")
docker network disconnect "$network" "$ap"
seq 1 20 | sed 's/^/us-cut-/' | mg us-east produce orders >/dev/null
seq 1 20 | sed 's/^/ap-cut-/' | mg ap-south produce orders >/dev/null
link_down() { mg us-east mirror status --json | jq -e '[.links[] | select(.source_region == "ap-south" and .state != "pulling")] | length > 0'; }
wait_for 60 link_down || fail "mirror status never showed the cut link"
# us-east knows what ap-south lacks of what it holds: the 20 records written
# on its side since the cut.
ap_south_lag() {
    mg us-east mirror status --json | jq -e \
        '[.followers[] | select(.region == "ap-south") | .origins[] | select(.origin == "us-east") | .lag_records] | add >= 20'
}
wait_for 30 ap_south_lag || fail "mirror status never showed ap-south's lag"
mg us-east mirror status >"$workdir/status-cut.txt"
docker network connect --ip "$ap_ip" --alias ap-south "$network" "$ap"
total=$(( total + 40 ))
for region in us-east ap-south; do
    wait_for 90 holds "$region" "$total" || fail "$region did not converge to $total after the cut"
done
coordinates us-east "$total" >"$workdir/us-east-2.txt"
coordinates ap-south "$total" >"$workdir/ap-south-2.txt"
cmp -s "$workdir/us-east-2.txt" "$workdir/ap-south-2.txt" || fail "us-east and ap-south differ after the cut"
check "4. ap-south cut off and reconnected: converged on $total (status showed the link down and the lag)"

# ---- 5. eu-west restarted from its volume keeps its data and catches up ------
dc start eu-west >/dev/null
wait_for 90 holds eu-west "$total" || fail "eu-west did not come back with its data and catch up"
coordinates eu-west "$total" >"$workdir/eu-west-2.txt"
cmp -s "$workdir/us-east-2.txt" "$workdir/eu-west-2.txt" || fail "eu-west differs after its restart"
check "5. eu-west restarted from its volume: its data kept, caught up to $total"

echo
echo "meshgate three-region compose test: passed"
column -t -s $'\t' "$results"
echo "status while ap-south was cut off (from us-east):"
sed 's/^/    /' "$workdir/status-cut.txt"
echo "total: $(echo "$(date +%s.%N) - $started" | bc | cut -d. -f1) s"
