#!/usr/bin/env bash
# Instructions per request of one edge build, under callgrind (deterministic enough to
# compare builds on a busy machine, where wall-clock load numbers are noise).
#
#   benches/load/instr.sh [BIN]        # default target/release/prospect-edge
#
# Knobs: EDGE_ENV="K=V ..." (the edge's environment, e.g. an LD_PRELOADed allocator), SCENARIO=a|b|c (GET one contact | 25-record search | create), SECONDS_=5,
# CONNS=4, OUT=dir (keeps callgrind.out there), MAPPINGS=dir (default $ROOT/mappings: give
# another build its own tree when the mapping format differs, e.g. an A/B across a rewrite),
# DEMO_BIN=path (the build whose `demo` runs the simulator, default BIN: `demo` loads
# conf/demo/edge.yaml and so this tree's mappings, which a build of another mapping format
# refuses; measure such a build with DEMO_BIN= this tree's build).
# Starts `DEMO_BIN demo` (the simulator) natively and one `BIN run` edge under callgrind on
# 127.0.0.1; warms up, zeroes the counters, drives it with wrk for SECONDS_, dumps, and
# divides the edge's instructions (all threads) by the access-log lines written meanwhile.
# Prints "instr/req N (requests R)".
# MODE=rss instead runs the edge natively and prints its VmHWM after wrk -t1 -c1000 -d5s
# (BIG_CONNS, BIG_SECONDS), the 1,000 keep-alive connections of issue 8.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
need=()
command -v valgrind >/dev/null || need+=(valgrind)
command -v wrk >/dev/null || need+=(wrk)
if ((${#need[@]})); then
    [ "$(id -u)" = 0 ] || { echo "instr.sh: missing ${need[*]}: install them (Debian packages)" >&2; exit 1; }
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
BIN=${1:-$ROOT/target/release/prospect-edge}
SCENARIO=${SCENARIO:-a}
SECS=${SECONDS_:-5}
CONNS=${CONNS:-4}
T=$(mktemp -d /tmp/prospect-edge-instr.XXXXXX)
OUT=${OUT:-$T}
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    sleep 0.5
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    [ "$OUT" = "$T" ] || rm -rf "$T"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_200() { for _ in $(seq 1200); do curl -sf -o /dev/null --max-time 2 "$1" && return 0; sleep 0.1; done; return 1; }

DP=$(free_port); DA=$(free_port)
"${DEMO_BIN:-$BIN}" demo --listen "127.0.0.1:$DP" --admin "127.0.0.1:$DA" >"$T/demo.out" 2>"$T/demo.log" &
PIDS+=("$!")
wait_200 "http://127.0.0.1:$DA/healthz" || { echo "demo did not start" >&2; exit 1; }
svc() { awk -v n="$1" '$1 == n { print $2 }' "$T/demo.out"; }
TOKEN=$(sed -n "s/^ *export TOKEN='\([^']*\)'.*/\1/p" "$T/demo.out" | head -1) # the banner's `export TOKEN='…'`
CONTACT_PATH=$(grep -o "/v1/contacts/[A-Za-z0-9_-]*" "$T/demo.out" | head -1)
P=$(free_port); A=$(free_port)
cat >"$T/edge.yaml" <<YAML
listen: 127.0.0.1:$P
admin: 127.0.0.1:$A
threads: 2
grace_period_seconds: 1
mappings: ${MAPPINGS:-$ROOT/mappings}
permissions_cache_seconds: 300
secrets:
  ids: { demo_value: "demo-only id secret - never use in production" }
  cursors: { demo_value: "demo-only cursor secret - never use in production" }
upstreams:
$(for s in crm-core sales workflow engagements audit iam; do echo "  $s: { url: \"$(svc $s)\" }"; done)
issuers:
  - issuer: https://issuer.demo.prospect-edge.invalid
    jwks_url: $(svc issuer-jwks)
    audience: https://api.prospectconnect.example
    algorithms: [EdDSA]
YAML
VG_CMD=(valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind.out" --dump-instr=no)
[ "${MODE:-instr}" = rss ] && VG_CMD=()
env ${EDGE_ENV:-} "${VG_CMD[@]}" "$BIN" run -c "$T/edge.yaml" --pid-file "$T/edge.pid" --upgrade-sock "$T/edge.sock" \
    >"$T/edge.out" 2>"$T/edge.log" &
VG=$!
PIDS+=("$VG")
wait_200 "http://127.0.0.1:$A/readyz" || { echo "edge did not start: $(tail -3 "$T/edge.log")" >&2; exit 1; }
URL="http://127.0.0.1:$P"
case $SCENARIO in
a) M=GET; B=""; U="$URL$CONTACT_PATH" ;;
b) M=POST; B='{"limit": 25}'; U="$URL/v1/contacts/search" ;;
c) M=POST; B='{"first_name": "Bench", "last_name": "Load", "email": "instr-{n}@load.example"}'; U="$URL/v1/contacts" ;;
esac
H="Authorization: Bearer $TOKEN|Version: 2026-11-01"
drive() { WRK_METHOD=$M WRK_HEADERS=$H WRK_BODY=$B WRK_NONCE="$(date +%s%N)" \
    wrk -t1 -c"$CONNS" -d"$1" -s benches/load/request.lua "$U" >"$T/wrk.txt"; }
if [ "${MODE:-instr}" = rss ]; then
    drive 1s
    before=$(awk '/VmRSS/ { print int($2 / 1024) }' "/proc/$VG/status")
    ulimit -n 65536 2>/dev/null || true
    (for _ in $(seq 40); do ls "/proc/$VG/fd" | wc -l; sleep 0.1; done | sort -n | tail -1 >"$T/maxfd") &
    SAMPLER=$!
    CONNS=${BIG_CONNS:-1000} drive "${BIG_SECONDS:-5}s"
    wait "$SAMPLER"
    echo "peak fds $(cat "$T/maxfd"); rss before ${before} MiB; VmHWM after ${BIG_CONNS:-1000} connections $(awk '/VmHWM/ { print int($2 / 1024) }' "/proc/$VG/status") MiB; $(grep -E 'Requests/sec|Socket' "$T/wrk.txt" | tr -s ' \n' ' ')"
    exit 0
fi
drive 2s # warm-up: pools, caches, JWKS
sleep 0.5
callgrind_control -z "$VG" >/dev/null
n0=$(grep -c '"target":"access"' "$T/edge.log" || true)
drive "${SECS}s"
sleep 0.5
callgrind_control -d "$VG" >/dev/null
n1=$(grep -c '"target":"access"' "$T/edge.log" || true)
sleep 1
bad=$(grep '"target":"access"' "$T/edge.log" | tail -n +$((n0 + 1)) | grep -vc '"status":20[01]' || true)
f=$(ls -t "$OUT"/callgrind.out* | grep -v '\.out$' | head -1 || true)
[ -n "$f" ] || f=$(ls -t "$OUT"/callgrind.out* | head -1)
ir=$(callgrind_annotate "$f" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1; exit }')
req=$((n1 - n0))
echo "instr/req $((ir / req)) (requests $req, non-2xx $bad, scenario $SCENARIO, file $f)"
