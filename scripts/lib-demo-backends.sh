# Sourced by the ops scripts: starts `prospect-edge demo` on loopback as the provider of the
# legacy CRM simulator and the dev issuer's JWKS, and writes an edge config that points a
# separately run edge at them. Sets: BIN, WORK, DEMO_PID, JWKS_URL, CONTACT, TOKEN, PUB, ADM.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${BIN:-$ROOT/target/release/prospect-edge}
[ -x "$BIN" ] || { echo "build first: cargo build --release" >&2; exit 2; }
WORK=$(mktemp -d /tmp/prospect-edge-ops.XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

# A free-looking loopback port (random in 20000–59999; checked not to be listening).
free_port() {
    local p
    while :; do
        p=$((20000 + RANDOM % 40000))
        if ! (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null; then echo "$p"; return; fi
    done
}

# Polls a URL until it answers 200 (at most ~10 s).
wait_200() {
    for _ in $(seq 1 500); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' "$1")" = 200 ] && return 0
        sleep 0.02
    done
    echo "not ready: $1" >&2
    return 1
}

DEMO_PUB=$(free_port); DEMO_ADM=$(free_port)
(cd "$ROOT" && exec "$BIN" demo --listen 127.0.0.1:$DEMO_PUB --admin 127.0.0.1:$DEMO_ADM) \
    > "$WORK/demo.out" 2> "$WORK/demo.log" &
DEMO_PID=$!
PIDS+=("$DEMO_PID")
wait_200 "http://127.0.0.1:$DEMO_ADM/readyz"
JWKS_URL=$(awk '$1 == "issuer-jwks" {print $2}' "$WORK/demo.out")
CONTACT=$(grep -o '/v1/contacts/[^ ]*' "$WORK/demo.out" | head -1)
TOKEN=$(cd "$ROOT" && "$BIN" token --tenant 1 --user 101 --ttl 3600)

PUB=$(free_port); ADM=$(free_port)
cp -r "$ROOT/mappings" "$WORK/mappings"
{
    echo "listen: 127.0.0.1:$PUB"
    echo "admin: 127.0.0.1:$ADM"
    echo "threads: 2"
    echo "grace_period_seconds: ${GRACE:-3}"
    echo "mappings: mappings"
    echo "permissions_cache_seconds: 30"
    echo "secrets:"
    echo "  ids: { demo_value: \"demo-only id secret - never use in production\" }"
    echo "  cursors: { demo_value: \"demo-only cursor secret - never use in production\" }"
    echo "upstreams:"
    for s in crm-core sales workflow engagements audit iam; do
        echo "  $s: { url: \"$(awk -v s=$s '$1 == s {print $2}' "$WORK/demo.out")\", connect_timeout_ms: 500, timeout_ms: 5000 }"
    done
    echo "issuers:"
    echo "  - issuer: https://issuer.demo.prospect-edge.invalid"
    echo "    jwks_url: $JWKS_URL"
    echo "    audience: https://api.prospectconnect.example"
    echo "    algorithms: [EdDSA]"
} > "$WORK/edge.yaml"
"$BIN" check -c "$WORK/edge.yaml" > /dev/null

# Starts an edge on the generated config; extra flags (e.g. -u) are passed on. Sets EDGE_PID.
start_edge() {
    "$BIN" run -c "$WORK/edge.yaml" --pid-file "$WORK/edge.pid" \
        --upgrade-sock "$WORK/upgrade.sock" "$@" > /dev/null 2>> "$WORK/edge.log" &
    EDGE_PID=$!
    PIDS+=("$EDGE_PID")
}
