#!/usr/bin/env bash
# Sends known traffic through an edge (loopback only), scrapes the admin listener's
# /metrics and has `promtool check metrics` (Debian package `prometheus`) lint it.
# Usage: scripts/check-metrics.sh   (after cargo build --release)
source "$(dirname "$0")/lib-demo-backends.sh"
command -v promtool > /dev/null || { echo "promtool missing: apt-get install prometheus" >&2; exit 2; }
start_edge
wait_200 "http://127.0.0.1:$ADM/readyz"
E=http://127.0.0.1:$PUB
for h in "authorization: Bearer $TOKEN" "authorization: Bearer a.b.c" "x-none: 1"; do
    curl -s -o /dev/null "$E$CONTACT" -H 'version: 2026-11-01' -H "$h"
done
curl -s -o /dev/null "$E/v1/nothing" -H "authorization: Bearer $TOKEN"
curl -s -o /dev/null -X POST "$E/v1/contacts/search" -H 'version: 2026-11-01' \
    -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' -d '{}'
curl -s "http://127.0.0.1:$ADM/metrics" > "$WORK/metrics.txt"
echo "$(grep -c '^prospect_edge_' "$WORK/metrics.txt") prospect_edge_* samples"
promtool check metrics < "$WORK/metrics.txt"
echo "promtool check metrics: ok"
