#!/usr/bin/env bash
# Zero-downtime proof, loopback only, bounded (~30 s): steady wrk load on one contact while
# (a) a mapping file gains a field and the edge gets SIGHUP, then
# (b) the binary is upgraded: a second `run -u` on the same upgrade socket takes the
#     listening sockets over, the old process gets SIGQUIT and drains.
# Passes when wrk saw no socket error and no non-2xx answer, the new field is served
# after (a), and after (b) the old process is gone and the new one serves.
# Usage: scripts/zero-downtime.sh [seconds of load, default 24]
#        (after cargo build --release; needs wrk and curl)
source "$(dirname "$0")/lib-demo-backends.sh"
command -v wrk > /dev/null || { echo "wrk missing: apt-get install wrk" >&2; exit 2; }
DURATION=${1:-24}
E=http://127.0.0.1:$PUB
get() { curl -s "$E$CONTACT" -H 'version: 2026-11-01' -H "authorization: Bearer $TOKEN"; }

start_edge
OLD=$EDGE_PID
wait_200 "http://127.0.0.1:$ADM/readyz"
[ "$(get | grep -c '"role"')" = 0 ] || { echo "role served before the edit?" >&2; exit 1; }

echo "load: wrk -t2 -c16 -d${DURATION}s GET $CONTACT on 127.0.0.1:$PUB (edge pid $OLD)"
wrk -t2 -c16 -d"${DURATION}s" --latency -H 'version: 2026-11-01' \
    -H "authorization: Bearer $TOKEN" "$E$CONTACT" > "$WORK/wrk.txt" 2>&1 &
WRK=$!
PIDS+=("$WRK")
# The phases are scheduled in wall time so that both happen under load; every check
# below polls for its outcome.
sleep $((DURATION / 4))

echo "(a) $(date -u +%T) add contacts.role to the mapping, SIGHUP $OLD"
sed -i '0,/^fields:$/s//fields:\n  role: { from: jobTitle, read_only: true }/' "$WORK/mappings/contacts.yaml"
kill -HUP "$OLD"
for _ in $(seq 1 500); do get | grep -q '"role"' && break; sleep 0.02; done
get | grep -q '"role"' || { echo "the new field was never served" >&2; exit 1; }
echo "    role served; readyz: $(curl -s http://127.0.0.1:$ADM/readyz | grep -o '"mapping_reloads":{[^}]*}')"
sleep $((DURATION / 4))

echo "(b) $(date -u +%T) start the new binary with -u, SIGQUIT the old one ($OLD)"
start_edge -u
NEW=$EDGE_PID
kill -QUIT "$OLD"
for _ in $(seq 1 1000); do kill -0 "$OLD" 2>/dev/null || break; sleep 0.02; done
if kill -0 "$OLD" 2>/dev/null; then echo "the old process did not exit" >&2; exit 1; fi
kill -0 "$NEW" || { echo "the new process died: $(tail -5 "$WORK/edge.log")" >&2; exit 1; }
wait_200 "http://127.0.0.1:$ADM/readyz"
echo "    $(date -u +%T) old process $OLD exited; new process $NEW serves (readyz 200)"
get | grep -q '"role"' || { echo "the new process does not serve the edited mapping" >&2; exit 1; }

wait "$WRK"
echo
cat "$WORK/wrk.txt"
echo
requests=$(awk '/requests in/ {print $1}' "$WORK/wrk.txt")
errors=$(grep -E 'Socket errors|Non-2xx' "$WORK/wrk.txt" || true)
if [ -n "$errors" ] || [ -z "$requests" ] || [ "$requests" -lt 100 ]; then
    echo "FAIL: $requests requests; $errors"
    exit 1
fi
echo "PASS: $requests requests, 0 failed (no socket errors, no non-2xx) across a mapping reload and a binary upgrade"
