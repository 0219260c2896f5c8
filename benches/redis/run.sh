#!/usr/bin/env bash
# Redis round trips the edge makes, measured on one Redis master core: the capacity
# model's Redis column (docs/operating.md). Starts its own redis-server on a free port
# (pinned to CPU 0; redis-benchmark on CPU 1), runs the edge's own commands with the
# edge's own key shapes and value sizes, once without persistence and once with AOF
# `appendfsync everysec` (what docs/operating.md asks for the 24 h idempotency promise),
# and prints requests per second per command. Only 127.0.0.1.
#
#   benches/redis/run.sh                 # N=200000 C=50 per command
#   N=500000 C=100 benches/redis/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${N:-200000}
C=${C:-50}
command -v redis-server >/dev/null && command -v redis-benchmark >/dev/null || {
    echo "redis-server and redis-benchmark are needed (Debian: redis-server, redis-tools)" >&2
    exit 1
}
WORK=$(mktemp -d)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cleanup() { redis-cli -p "$PORT" shutdown nosave >/dev/null 2>&1 || true; rm -rf "$WORK"; }
trap cleanup EXIT

# The edge's scripts, as src/policy.rs has them (read from the source so they can't drift).
INCR=$(python3 - <<'PY'
import re
s = open("src/policy.rs").read()
print(re.search(r'const INCR_SCRIPT: &str = r#"(.*?)"#;', s, re.S).group(1))
PY
)
RELEASE=$(python3 - <<'PY'
import re
s = open("src/policy.rs").read()
print(re.search(r'const RELEASE_SCRIPT: &str = r#"(.*?)"#;', s, re.S).group(1))
PY
)
# An in-flight claim and a stored answer of the sizes the edge writes (a created
# contact's 201 with its headers: ~1.2 KB).
CLAIM='{"fp":"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef","s":"i","t":"8c1f0e7a2b4d4e6f9a0b1c2d3e4f5a6b"}'
ANSWER=$(python3 -c 'print("{\"s\":\"done\",\"status\":201,\"body\":\"" + "x"*1100 + "\"}")')

run_all() {
    local label=$1
    local incr release
    incr=$(redis-cli -p "$PORT" script load "$INCR")
    release=$(redis-cli -p "$PORT" script load "$RELEASE")
    bench() {
        local what=$1
        shift
        local rps
        rps=$(taskset -c 1 redis-benchmark -p "$PORT" -c "$C" -n "$N" -r 100000 -q "$@" 2>/dev/null |
            tr '\r' '\n' | grep -o '[0-9.]* requests per second' | tail -1 | cut -d' ' -f1)
        printf '| %-10s | %-52s | %10s |\n' "$label" "$what" "$rps"
    }
    bench "rate limit: EVALSHA INCR_SCRIPT, 1 window" evalsha "$incr" 1 '{rl:1:app__rand_int__}:h' 3600
    bench "rate limit: EVALSHA INCR_SCRIPT, 2 windows" evalsha "$incr" 2 '{rl:1:app__rand_int__}:h' '{rl:1:app__rand_int__}:m' 3600 60
    bench "idempotency claim: SET NX PX (~100 B)" set '{idem:1:app:k__rand_int__}' "$CLAIM" NX PX 10000
    bench "idempotency store: SET PX 24 h (~1.2 KB)" set '{idem:1:app:s__rand_int__}' "$ANSWER" PX 86400000
    bench "idempotency replay: GET" get '{idem:1:app:s__rand_int__}'
    bench "claim release: EVALSHA RELEASE_SCRIPT" evalsha "$release" 1 '{idem:1:app:k__rand_int__}' 8c1f0e7a
}

echo "redis $(redis-server --version | grep -o 'v=[0-9.]*'), N=$N C=$C, server on CPU 0, benchmark on CPU 1"
echo
echo '| persistence | command (the edge'"'"'s key shapes) | requests/s |'
echo '| --- | --- | ---: |'
taskset -c 0 redis-server --port "$PORT" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$WORK" --daemonize yes --logfile "$WORK/redis.log" >/dev/null
until redis-cli -p "$PORT" ping >/dev/null 2>&1; do sleep 0.1; done
run_all "none"
redis-cli -p "$PORT" flushall >/dev/null
redis-cli -p "$PORT" config set appendonly yes >/dev/null
redis-cli -p "$PORT" config set appendfsync everysec >/dev/null
sleep 1
run_all "AOF everysec"
