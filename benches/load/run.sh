#!/usr/bin/env bash
# Side-by-side load benchmark: the edge vs plain nginx vs an OpenResty-style gateway doing
# the edge's GET-one job (`peer`, benches/load/openresty/) vs the simulator directly.
#
#   benches/load/run.sh            # everything on 127.0.0.1, about 7 minutes with the defaults
#
# Knobs (environment): THREADS=1 CONNS=32 DURATION=10s ROUNDS=3 BIG_CONNS=1000 BIG_DURATION=5s
# WRK_CPUS=1 pins the load generator to that CPU list and SERVER_CPUS=0 pins everything
# else (simulator, edges, nginx, redis) to that one: the generator "pinned apart".
# ONLY=a,d runs just those scenarios (default: all).
# EDGE_BIN=path uses that binary instead of building. KEEP=1 keeps the temp dir (configs, logs); PERF=1 profiles each edge's first round. Needs root only to install wrk/nginx/redis.
# EDGE_BIN_B=path adds a second edge target, `edge-b` (no rate limit, like `edge`), run by that
# binary with the mappings in EDGE_B_MAPPINGS (default $ROOT/mappings; give the other build's
# own tree when the mapping format differs), for an A/B of two builds in one run: it is
# driven in (a), (b) and (c) next to `edge`, the two in alternating order round by round.
# The simulator and the other targets always come from EDGE_BIN (or the build).
# EDGE_YAML='key: value' adds top-level keys to the config of every edge of EDGE_BIN (e.g.
# 'access_log_buffer_bytes: 65536'), EDGE_B_YAML to edge-b's: the same binary with two
# configs is an A/B of a setting.
#
# It starts `prospect-edge demo` (the simulator with zero latency + the dev issuer), three
# standalone edges on that simulator (no rate limit; memory limiter; Redis limiter), nginx
# (plain proxy_pass with upstream keepalive to crm-core) and, if none answers on
# 127.0.0.1:6379, a private redis-server; then drives each target with the same wrk
# settings, alternating targets round by round. Every process it started is stopped on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
THREADS=${THREADS:-1}
CONNS=${CONNS:-32}
DURATION=${DURATION:-10s}
ROUNDS=${ROUNDS:-3}
BIG_CONNS=${BIG_CONNS:-1000}
BIG_DURATION=${BIG_DURATION:-5s}
VERSION_HDR="Version: 2026-11-01"
WRK_CPUS=${WRK_CPUS:-}
SERVER_CPUS=${SERVER_CPUS:-}
if [ -n "$SERVER_CPUS" ] && [ -z "${PINNED_SERVERS:-}" ]; then
    # Re-run this script pinned: every process it starts inherits the CPU list.
    PINNED_SERVERS=1 exec taskset -c "$SERVER_CPUS" "$0" "$@"
fi
# The load generator, pinned apart when asked.
wrk() {
    if [ -n "$WRK_CPUS" ]; then
        taskset -c "$WRK_CPUS" wrk "$@"
    else
        command wrk "$@"
    fi
}

say() { printf '%s\n' "$*" >&2; }
die() {
    say "run.sh: $*"
    exit 1
}

# ------------------------------------------------------------------ tools
need=()
type -P wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx)
command -v redis-server >/dev/null || need+=(redis-server)
# The OpenResty-style peer: ngx_lua, cjson and resty.core from Debian.
[ -f /usr/lib/nginx/modules/ngx_http_lua_module.so ] || need+=(libnginx-mod-http-lua)
[ -f /usr/lib/x86_64-linux-gnu/lua/5.1/cjson.so ] || need+=(lua-cjson)
[ -f /usr/share/lua/5.1/resty/core.lua ] || need+=(lua-resty-core)
command -v curl >/dev/null || need+=(curl)
command -v python3 >/dev/null || need+=(python3)
[ -z "${PERF:-}" ] || command -v perf >/dev/null || need+=(linux-perf)
if ((${#need[@]})); then
    [ "$(id -u)" = 0 ] || die "missing ${need[*]}: run as root to install them, or install them"
    say "installing ${need[*]} (Debian packages)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

# EDGE_BIN=path measures another build of the edge (e.g. before/after a change).
if [ -n "${EDGE_BIN:-}" ]; then
    BIN=$EDGE_BIN
else
    say "building the edge (release)"
    cargo build --release --quiet --bin prospect-edge
    BIN="$ROOT/target/release/prospect-edge"
fi
BIN_B=${EDGE_BIN_B:-}
MAPPINGS_B=${EDGE_B_MAPPINGS:-$ROOT/mappings}
EDGE_YAML=${EDGE_YAML:-}
EDGE_B_YAML=${EDGE_B_YAML:-}
if [ -n "$BIN_B" ]; then
    [ -x "$BIN_B" ] || die "EDGE_BIN_B=$BIN_B is not an executable"
    [ -d "$MAPPINGS_B" ] || die "EDGE_B_MAPPINGS=$MAPPINGS_B is not a directory"
fi

# ------------------------------------------------------------------ processes
T=$(mktemp -d /tmp/prospect-edge-bench.XXXXXX)
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for _ in $(seq 50); do
        local alive=0
        for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
        [ "$alive" = 0 ] && break
        sleep 0.1
    done
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    if [ "${KEEP:-0}" = 1 ]; then say "kept $T"; else rm -rf "$T"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
now_ms() { date +%s%3N; }
# Polls an URL until it answers 200; prints the milliseconds it took from $2 (a now_ms).
wait_200() {
    local url=$1 t0=$2 pid=$3
    for _ in $(seq 2000); do
        if curl -sf -o /dev/null --max-time 1 "$url"; then
            echo $(($(now_ms) - t0))
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.005
    done
    return 1
}

# The demo: simulator (zero latency) + dev issuer (+ an edge we do not measure).
DEMO_PORT=$(free_port)
DEMO_ADMIN=$(free_port)
"$BIN" demo --listen "127.0.0.1:$DEMO_PORT" --admin "127.0.0.1:$DEMO_ADMIN" \
    >"$T/demo.out" 2>"$T/demo.log" &
DEMO_PID=$!
PIDS+=("$DEMO_PID")
wait_200 "http://127.0.0.1:$DEMO_ADMIN/healthz" "$(now_ms)" "$DEMO_PID" >/dev/null ||
    die "the demo did not start: $(tail -5 "$T/demo.log")"
svc() { awk -v n="$1" '$1 == n { print $2 }' "$T/demo.out"; }
CRM=$(svc crm-core)
JWKS=$(svc issuer-jwks)
[ -n "$CRM" ] && [ -n "$JWKS" ] || die "cannot read the demo's service URLs from $T/demo.out"
TOKEN=$(sed -n "s/^ *export TOKEN='\([^']*\)'.*/\1/p" "$T/demo.out" | head -1) # the banner's `export TOKEN='…'`
CONTACT_PATH=$(grep -o "/v1/contacts/[A-Za-z0-9_-]*" "$T/demo.out" | head -1)
[ -n "$TOKEN" ] && [ -n "$CONTACT_PATH" ] || die "cannot read the demo's token and contact URL"

# Redis: the one on 6379 if it answers, else a private one.
REDIS_URL=redis://127.0.0.1:6379
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
    RP=$(free_port)
    redis-server --bind 127.0.0.1 --port "$RP" --save '' --appendonly no \
        --dir "$T" --logfile "$T/redis.log" &
    PIDS+=("$!")
    REDIS_URL=redis://127.0.0.1:$RP
    for _ in $(seq 100); do redis-cli -p "$RP" ping >/dev/null 2>&1 && break; sleep 0.05; done
fi
REDIS_PREFIX="bench-$$-$(date +%s):"

# The standalone edges: the demo's config and secrets, upstreams on the demo's simulator.
edge_conf() { # name listen admin extra-yaml [mappings-dir]
    cat >"$T/$1.yaml" <<YAML
listen: 127.0.0.1:$2
admin: 127.0.0.1:$3
threads: 2
grace_period_seconds: 1
mappings: ${5:-$ROOT/mappings}
permissions_cache_seconds: 30
secrets:
  ids: { demo_value: "demo-only id secret - never use in production" }
  cursors: { demo_value: "demo-only cursor secret - never use in production" }
upstreams:
$(for s in crm-core sales workflow engagements audit iam; do echo "  $s: { url: \"$(svc $s)\" }"; done)
issuers:
  - issuer: https://issuer.demo.prospect-edge.invalid
    jwks_url: $JWKS
    audience: https://api.prospectconnect.example
    algorithms: [EdDSA]
$4
YAML
}
declare -A EDGE_PID EDGE_URL EDGE_ADMIN
start_edge() { # name extra-yaml [binary mappings-dir]; sets STARTUP_MS (ms to /healthz)
    local name=$1 p a t0 ms bin=${3:-$BIN}
    p=$(free_port)
    a=$(free_port)
    local own=$EDGE_YAML
    [ "$name" != edge-b ] || own=$EDGE_B_YAML
    edge_conf "$name" "$p" "$a" "$2
$own" "${4:-$ROOT/mappings}"
    t0=$(now_ms)
    "$bin" run -c "$T/$name.yaml" --pid-file "$T/$name.pid" --upgrade-sock "$T/$name.sock" \
        >"$T/$name.out" 2>"$T/$name.log" &
    local pid=$!
    PIDS+=("$pid")
    ms=$(wait_200 "http://127.0.0.1:$a/healthz" "$t0" "$pid") ||
        die "edge $name did not start: $(tail -5 "$T/$name.log")"
    wait_200 "http://127.0.0.1:$a/readyz" "$t0" "$pid" >/dev/null ||
        die "edge $name not ready: $(tail -5 "$T/$name.log")"
    EDGE_PID[$name]=$pid
    EDGE_URL[$name]="http://127.0.0.1:$p"
    EDGE_ADMIN[$name]="http://127.0.0.1:$a"
    STARTUP_MS=$ms
}
LIMITS_MEM='rate_limits: { backend: memory, policies: [{ name: default, quota: 100000000, window_seconds: 3600 }] }'
LIMITS_REDIS="redis: { url: \"$REDIS_URL\", key_prefix: \"$REDIS_PREFIX\" }
rate_limits: { backend: redis, policies: [{ name: default, quota: 100000000, window_seconds: 3600 }] }"

# Startup: a fresh process each time, config + mappings compiled, admin answering.
STARTUPS=()
for i in 1 2 3; do
    start_edge "startup$i" ""
    STARTUPS+=("$STARTUP_MS")
    kill "${EDGE_PID[startup$i]}"
done
start_edge edge ""
STARTUPS+=("$STARTUP_MS")
start_edge edge-mem "$LIMITS_MEM"
STARTUPS+=("$STARTUP_MS")
start_edge edge-redis "$LIMITS_REDIS"
STARTUPS+=("$STARTUP_MS")
# The A/B target: the other build, with its own mappings (not counted in STARTUPS).
[ -z "$BIN_B" ] || start_edge edge-b "" "$BIN_B" "$MAPPINGS_B"

# nginx: a plain reverse proxy to crm-core with upstream keepalive, as many workers as
# the edge has threads, an access log like the edge's.
NGINX_PORT=$(free_port)
mkdir -p "$T/nginx/logs"
cat >"$T/nginx/nginx.conf" <<NGINX
worker_processes 2;
user root;
pid $T/nginx/nginx.pid;
error_log $T/nginx/logs/error.log warn;
events { worker_connections 4096; }
http {
    access_log $T/nginx/logs/access.log;
    client_body_temp_path $T/nginx/body;
    proxy_temp_path $T/nginx/proxy;
    fastcgi_temp_path $T/nginx/fastcgi;
    uwsgi_temp_path $T/nginx/uwsgi;
    scgi_temp_path $T/nginx/scgi;
    keepalive_requests 1000000;
    upstream crm { server ${CRM#http://}; keepalive 64; }
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location / {
            proxy_pass http://crm;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-PC-Tenant 1;
            proxy_set_header X-PC-User 101;
        }
    }
}
NGINX
"$NGINX" -p "$T/nginx" -c "$T/nginx/nginx.conf" -g 'daemon off;' 2>"$T/nginx/stderr.log" &
NGINX_PID=$!
PIDS+=("$NGINX_PID")
NGINX_URL="http://127.0.0.1:$NGINX_PORT"
for _ in $(seq 100); do curl -s -o /dev/null "$NGINX_URL/" && break; sleep 0.05; done

# The OpenResty-style peer (benches/load/openresty/): nginx + ngx_lua doing the edge's
# GET-one job (JWT via libcrypto with a token cache, scope, IAM permission cached 30 s,
# per-app rate limit in a shared dict, trust headers, cjson rewrite), 2 workers, no
# access log. Its key is the demo issuer's Ed25519 key, read from the JWKS.
PEER_PORT=$(free_port)
mkdir -p "$T/peer/logs"
JWK_X=$(curl -sf "$JWKS" | python3 -c 'import json,sys; print(json.load(sys.stdin)["keys"][0]["x"])') ||
    die "cannot read the demo issuer's JWKS"
sed -e "s|@PREFIX@|$T/peer|g" -e "s|@ROOT@|$ROOT|g" -e "s|@PORT@|$PEER_PORT|g" \
    -e "s|@CRM@|${CRM#http://}|g" -e "s|@IAM@|$(svc iam | sed 's|^http://||')|g" \
    -e "s|@JWK_X@|$JWK_X|g" -e "s|@ISSUER@|https://issuer.demo.prospect-edge.invalid|g" \
    -e "s|@AUDIENCE@|https://api.prospectconnect.example|g" \
    benches/load/openresty/nginx.conf.in >"$T/peer/nginx.conf"
"$NGINX" -p "$T/peer" -c "$T/peer/nginx.conf" -g 'daemon off;' 2>"$T/peer/stderr.log" &
PEER_PID=$!
PIDS+=("$PEER_PID")
PEER_URL="http://127.0.0.1:$PEER_PORT"
for _ in $(seq 100); do curl -s -o /dev/null "$PEER_URL/" && break; sleep 0.05; done

# ------------------------------------------------------------------ checks before measuring
AUTH="Authorization: Bearer $TOKEN"
TRUST="X-PC-Tenant: 1|X-PC-User: 101"
SEARCH_BODY='{"limit": 25}'
PAGE_BODY='{"limit": 100}'
SEARCH_UP='{"where": [], "orderBy": [{"field": "createdAt", "dir": "DESC"}], "offset": 0, "limit": 25}'
CREATE_BODY='{"first_name": "Bench", "last_name": "Load", "email": "bench-{n}@load.example"}'
CREATE_UP='{"firstName": "Bench", "lastName": "Load", "emailAddress": "bench-{n}@load.example"}'
check() { # expected-status description curl-args...
    local want=$1 what=$2
    shift 2
    local got
    got=$(curl -s -o "$T/check.body" -w '%{http_code}' "$@")
    [ "$got" = "$want" ] || die "$what: HTTP $got, expected $want: $(head -c 300 "$T/check.body")"
}
check 200 "edge GET contact" -H "$AUTH" -H "$VERSION_HDR" "${EDGE_URL[edge]}$CONTACT_PATH"
check 200 "nginx GET contact" "$NGINX_URL/api/v3/contacts/1"
check 200 "peer GET contact" -H "$AUTH" "$PEER_URL/v1/contacts/con_1"
grep -q '"email"' "$T/check.body" || die "the peer's answer is not the public shape: $(head -c 300 "$T/check.body")"
n=$(curl -s -X POST -H "$AUTH" -H "$VERSION_HDR" -H 'Content-Type: application/json' \
    -d "$SEARCH_BODY" "${EDGE_URL[edge]}/v1/contacts/search" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["data"]))')
[ "$n" = 25 ] || die "the edge's search returned $n records, expected 25"
n=$(curl -s -X POST -H 'Content-Type: application/json' -d "$SEARCH_UP" \
    "$NGINX_URL/api/v3/contacts/query" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["records"]))')
[ "$n" = 25 ] || die "nginx's query returned $n records, expected 25"
check 201 "edge create" -X POST -H "$AUTH" -H "$VERSION_HDR" -H 'Content-Type: application/json' \
    -d "${CREATE_BODY//\{n\}/check-edge}" "${EDGE_URL[edge]}/v1/contacts"
check 201 "nginx create" -X POST -H 'Content-Type: application/json' \
    -d "${CREATE_UP//\{n\}/check-nginx}" "$NGINX_URL/api/v3/contacts"
check 200 "edge-redis GET contact" -H "$AUTH" -H "$VERSION_HDR" "${EDGE_URL[edge-redis]}$CONTACT_PATH"
curl -s -D - -o /dev/null -H "$AUTH" -H "$VERSION_HDR" "${EDGE_URL[edge-redis]}$CONTACT_PATH" |
    grep -qi '^ratelimit' || die "edge-redis answered without RateLimit headers"
if [ -n "$BIN_B" ]; then
    # The same checks on edge-b, and the same public record from both builds.
    check 200 "edge-b GET contact" -H "$AUTH" -H "$VERSION_HDR" "${EDGE_URL[edge-b]}$CONTACT_PATH"
    cp "$T/check.body" "$T/check-b.body"
    check 200 "edge GET contact" -H "$AUTH" -H "$VERSION_HDR" "${EDGE_URL[edge]}$CONTACT_PATH"
    cmp -s "$T/check.body" "$T/check-b.body" ||
        say "note: edge and edge-b answer the GET differently: $(head -c 300 "$T/check-b.body")"
    n=$(curl -s -X POST -H "$AUTH" -H "$VERSION_HDR" -H 'Content-Type: application/json' \
        -d "$SEARCH_BODY" "${EDGE_URL[edge-b]}/v1/contacts/search" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["data"]))')
    [ "$n" = 25 ] || die "edge-b's search returned $n records, expected 25"
    check 201 "edge-b create" -X POST -H "$AUTH" -H "$VERSION_HDR" -H 'Content-Type: application/json' \
        -d "${CREATE_BODY//\{n\}/check-edge-b}" "${EDGE_URL[edge-b]}/v1/contacts"
fi

# ------------------------------------------------------------------ measuring
RAW="$T/raw.tsv" # scenario target round rps p50_us p99_us requests non2xx sockerr proxy_ticks sim_ticks
: >"$RAW"
NONCE=$(date +%s)
PROFILES=()
# CPU time (user + system, clock ticks) of a process and its children's threads.
ticks() {
    local t=0 p
    for p in "$@"; do
        [ -r "/proc/$p/stat" ] && t=$((t + $(awk '{ print $14 + $15 }' "/proc/$p/stat")))
    done
    echo "$t"
}
proxy_pids() { # target
    case $1 in
    direct) ;;
    nginx) ps --ppid "$NGINX_PID" -o pid= ;;
    peer) ps --ppid "$PEER_PID" -o pid= ;;
    edge-gzip | edge-br) echo "${EDGE_PID[edge]}" ;; # the same edge, asked for a coding
    *) echo "${EDGE_PID[$1]}" ;;
    esac
}
HZ=$(getconf CLK_TCK)
drive() { # scenario target round url method headers body
    local out perf_pid=""
    # PERF=1: profile the edge during its first round of each scenario (perf from linux-perf).
    if [ "${PERF:-0}" = 1 ] && [ "$3" = 1 ] && [ -n "${EDGE_PID[$2]:-}" ]; then
        perf record -q -F 999 -g -p "${EDGE_PID[$2]}" -o "$T/perf-$1-$2.data" \
            -- sleep "${DURATION%s}" 2>/dev/null &
        perf_pid=$!
        PIDS+=("$perf_pid")
    fi
    local pp p0 s0
    pp=$(proxy_pids "$2")
    # shellcheck disable=SC2086
    p0=$(ticks $pp)
    s0=$(ticks "$DEMO_PID")
    out=$(WRK_METHOD=$5 WRK_HEADERS=$6 WRK_BODY=$7 WRK_NONCE="$NONCE-$2-$3" \
        wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency -s benches/load/request.lua "$4" |
        grep '^RESULT') || die "wrk failed on $1/$2"
    # shellcheck disable=SC2086
    local pcpu=$(($(ticks $pp) - p0)) scpu=$(($(ticks "$DEMO_PID") - s0))
    # shellcheck disable=SC2086
    set -- "$1" "$2" "$3" $(echo "$out" | sed 's/RESULT //; s/[a-z0-9_]*=//g') "$pcpu" "$scpu"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >>"$RAW"
    if [ -n "$perf_pid" ]; then
        wait "$perf_pid" || true
        PROFILES+=("$1-$2")
    fi
    say "  $1 $2 round $3: $4 req/s, p50 $5 us, p99 $6 us, non-2xx $8, socket errors $9"
}
# `edge`, then `edge-b` when there is one, the order swapped every other round.
drive_edges() { # scenario round path method headers body
    local t order=(edge)
    if [ -n "$BIN_B" ]; then
        if (($2 % 2)); then order=(edge edge-b); else order=(edge-b edge); fi
    fi
    for t in "${order[@]}"; do drive "$1" "$t" "$2" "${EDGE_URL[$t]}$3" "$4" "$5" "$6"; done
}
declare -A HWM HWM_B
hwm() { awk '/VmHWM/ { print int($2 / 1024) }' "/proc/${EDGE_PID[$1]}/status"; }
rss() { awk '/VmRSS/ { print int($2 / 1024) }' "/proc/${EDGE_PID[$1]}/status"; }
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
say "load average before measuring: $LOAD_BEFORE; wrk -t$THREADS -c$CONNS -d$DURATION, $ROUNDS rounds"

# ONLY=a,d runs just those scenarios (quick A/B iterations); all by default.
want() { [ -z "${ONLY:-}" ] || [[ ",$ONLY," == *",$1,"* ]]; }
want a && for r in $(seq "$ROUNDS"); do
    drive a direct "$r" "$CRM/api/v3/contacts/1" GET "$TRUST" ""
    drive a nginx "$r" "$NGINX_URL/api/v3/contacts/1" GET "" ""
    drive a peer "$r" "$PEER_URL/v1/contacts/con_1" GET "$AUTH" ""
    drive_edges a "$r" "$CONTACT_PATH" GET "$AUTH|$VERSION_HDR" ""
done
HWM[a]=$(hwm edge)
[ -z "$BIN_B" ] || HWM_B[a]=$(hwm edge-b)
want b && for r in $(seq "$ROUNDS"); do
    drive b direct "$r" "$CRM/api/v3/contacts/query" POST "$TRUST" "$SEARCH_UP"
    drive b nginx "$r" "$NGINX_URL/api/v3/contacts/query" POST "" "$SEARCH_UP"
    drive_edges b "$r" /v1/contacts/search POST "$AUTH|$VERSION_HDR" "$SEARCH_BODY"
done
HWM[b]=$(hwm edge)
[ -z "$BIN_B" ] || HWM_B[b]=$(hwm edge-b)
want d && for r in $(seq "$ROUNDS"); do
    drive d nginx "$r" "$NGINX_URL/api/v3/contacts/1" GET "" ""
    drive d peer "$r" "$PEER_URL/v1/contacts/con_1" GET "$AUTH" ""
    drive d edge-mem "$r" "${EDGE_URL[edge-mem]}$CONTACT_PATH" GET "$AUTH|$VERSION_HDR" ""
    drive d edge-redis "$r" "${EDGE_URL[edge-redis]}$CONTACT_PATH" GET "$AUTH|$VERSION_HDR" ""
done
HWM[d]=$(hwm edge-redis)
# The cost of compression: a 100-record page (~36 KB) identity-coded, gzip and brotli.
want e && for r in $(seq "$ROUNDS"); do
    drive e edge "$r" "${EDGE_URL[edge]}/v1/contacts/search" POST "$AUTH|$VERSION_HDR" "$PAGE_BODY"
    drive e edge-gzip "$r" "${EDGE_URL[edge]}/v1/contacts/search" POST "$AUTH|$VERSION_HDR|Accept-Encoding: gzip" "$PAGE_BODY"
    drive e edge-br "$r" "${EDGE_URL[edge]}/v1/contacts/search" POST "$AUTH|$VERSION_HDR|Accept-Encoding: br" "$PAGE_BODY"
done
HWM[e]=$(hwm edge)
# Creates last: they grow the simulator's data set, which the search above reads.
want c && for r in $(seq "$ROUNDS"); do
    drive c direct "$r" "$CRM/api/v3/contacts" POST "$TRUST" "$CREATE_UP"
    drive c nginx "$r" "$NGINX_URL/api/v3/contacts" POST "" "$CREATE_UP"
    drive_edges c "$r" /v1/contacts POST "$AUTH|$VERSION_HDR" "$CREATE_BODY"
done
HWM[c]=$(hwm edge)
[ -z "$BIN_B" ] || HWM_B[c]=$(hwm edge-b)
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# 1,000 concurrent keep-alive connections on the edge with the memory limiter.
say "RSS with $BIG_CONNS connections (edge-mem, $BIG_DURATION)"
BIG_BEFORE=$(rss edge-mem)
big=$(WRK_METHOD=GET WRK_HEADERS="$AUTH|$VERSION_HDR" WRK_BODY="" \
    wrk -t"$THREADS" -c"$BIG_CONNS" -d"$BIG_DURATION" --latency -s benches/load/request.lua \
    "${EDGE_URL[edge-mem]}$CONTACT_PATH" | grep '^RESULT')
BIG_HWM=$(hwm edge-mem)
BIG_FDS=$(ls "/proc/${EDGE_PID[edge-mem]}/fd" | wc -l)

# Mapping reload: SIGHUP, then the timestamp of the edge's "mappings reloaded" log line.
RELOADS_MS=()
for i in 1 2 3; do
    sent=$(date -u +%s.%N)
    kill -HUP "${EDGE_PID[edge]}"
    for _ in $(seq 500); do
        [ "$(grep -c '"mappings reloaded"' "$T/edge.log")" -ge "$i" ] && break
        sleep 0.01
    done
    RELOADS_MS+=("$(grep '"mappings reloaded"' "$T/edge.log" | sed -n "${i}p" | python3 -c '
import datetime, json, sys
t = json.load(sys.stdin)["timestamp"].rstrip("Z")
done = datetime.datetime.fromisoformat(t[:26]).replace(tzinfo=datetime.timezone.utc).timestamp()
print(round((done - float(sys.argv[1])) * 1000, 1))' "$sent")")
done

# ------------------------------------------------------------------ the table
COMMIT=$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src benches Cargo.toml || echo "+dirty")
DATE=$(date -u +%Y-%m-%d)
OUT="benches/results/$DATE-$COMMIT${BIN_B:+-ab}.md"
mkdir -p benches/results
python3 - "$RAW" >"$T/table.md" <<PY
import statistics as st, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
by = {}
hz = $HZ
for s, t, r, rps, p50, p99, n, non2xx, sockerr, pt, stk in rows:
    n = max(int(n), 1)
    by.setdefault((s, t), []).append((float(rps), int(p50), int(p99), int(non2xx), int(sockerr),
                                      int(pt) * 1e6 / hz / n, int(stk) * 1e6 / hz / n))
names = {"a": "(a) GET one contact", "b": "(b) search, 25 records", "c": "(c) create a contact",
         "d": "(d) GET one contact, rate limit", "e": "(e) search, 100 records, by coding"}
hwm = {"a": "${HWM[a]}", "b": "${HWM[b]}", "c": "${HWM[c]}", "d": "${HWM[d]}", "e": "${HWM[e]}"}
hwm_b = {"a": "${HWM_B[a]:-}", "b": "${HWM_B[b]:-}", "c": "${HWM_B[c]:-}"}
def med(k, i):
    return st.median(x[i] for x in by[k])
print("| scenario | target | req/s | p50 ms | p99 ms | edge/nginx (edge/peer) req/s | edge p99 − nginx p99 | proxy CPU µs/req | simulator CPU µs/req | errors | edge VmHWM |")
print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for s in "abdec":
    targets = [t for (ss, t) in by if ss == s]
    last = [t for t in targets if t != "edge-b"][-1] if targets else None
    for t in targets:
        k = (s, t)
        rps, p50, p99 = med(k, 0), med(k, 1) / 1000, med(k, 2) / 1000
        errs = sum(x[3] + x[4] for x in by[k])
        ratio = diff = mem = ""
        if t.startswith("edge") and (s, "nginx") in by:
            ratio = "%.2f×" % (rps / med((s, "nginx"), 0))
            diff = "%+.2f ms" % (p99 - med((s, "nginx"), 2) / 1000)
            mem = hwm[s] + " MiB" if t == last else ""
            if t == "edge-b":
                mem = hwm_b[s] + " MiB"
        if t.startswith("edge") and (s, "peer") in by:
            ratio += " (%.2f× peer)" % (rps / med((s, "peer"), 0))
        if s == "e" and t != "edge":
            ratio += "%.2f× identity" % (rps / med(("e", "edge"), 0))
            pcpu_id = med(("e", "edge"), 5)
            diff = "%+.0f µs CPU/req" % (med(k, 5) - pcpu_id)
        if t == "edge-b" and (s, "edge") in by:
            ratio += " (%.2f× edge)" % (rps / med((s, "edge"), 0))
        if s == "d" and t == "edge-redis":
            ratio += " (%.2f× edge-mem)" % (rps / med(("d", "edge-mem"), 0))
        pcpu = "" if t == "direct" else "%.0f" % med(k, 5)
        print(f"| {names[s]} | {t} | {rps:,.0f} | {p50:.2f} | {p99:.2f} | {ratio} | {diff} | {pcpu} | {med(k, 6):.0f} | {errs} | {mem} |")
PY
{
    echo "# Load benchmark $DATE, commit $COMMIT"
    echo
    echo "Machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'),"
    echo "load average $LOAD_BEFORE before measuring, $LOAD_AFTER after."
    echo "wrk -t$THREADS -c$CONNS -d$DURATION per run, $ROUNDS alternating rounds; medians of the rounds."
    if [ -n "$WRK_CPUS$SERVER_CPUS" ]; then
        echo "Pinned: wrk on CPU ${WRK_CPUS:-any}; simulator, edges, nginx and redis on CPU ${SERVER_CPUS:-any}."
    fi
    echo "Edge: 2 threads; nginx: 2 workers; simulator: 1 runtime thread (zero latency)."
    echo "edge (and the simulator): $BIN; mappings $ROOT/mappings."
    [ -z "$EDGE_YAML" ] || echo "The edges' own config: \`$EDGE_YAML\`."
    if [ -n "$BIN_B" ]; then
        echo "edge-b: $BIN_B; mappings $MAPPINGS_B (driven next to edge, order alternating by round)."
        [ -z "$EDGE_B_YAML" ] || echo "edge-b's own config: \`$EDGE_B_YAML\`."
    fi
    echo
    cat "$T/table.md"
    echo
    echo "- Edge RSS with $BIG_CONNS keep-alive connections (edge-mem, wrk -c$BIG_CONNS -d$BIG_DURATION):"
    echo "  VmHWM $BIG_HWM MiB (VmRSS before: $BIG_BEFORE MiB; $BIG_FDS open fds at the end);"
    echo "  $(echo "$big" | sed 's/RESULT //')"
    echo "- Startup to /healthz (ms, fresh processes): ${STARTUPS[*]}"
    echo "- Mapping reload (SIGHUP sent → the edge's \"mappings reloaded\" log line, ms): ${RELOADS_MS[*]}"
} >"$OUT"
for p in "${PROFILES[@]}"; do
    perf report -i "$T/perf-$p.data" --no-children --percent-limit 0.7 --stdio -g none \
        --sort symbol 2>/dev/null | grep -v '^$' | sed 's/  */ /g; s/ - - *$//' | head -60 >"benches/results/$DATE-$COMMIT-perf-$p.txt" || true
    echo "- Profile of $p (perf, edge process, self time): benches/results/$DATE-$COMMIT-perf-$p.txt" >>"$OUT"
done
cat "$OUT"
say "written to $OUT"
