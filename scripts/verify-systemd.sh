#!/usr/bin/env bash
# Verifies the unit (and each drop-in example on top of it) with systemd-analyze, and prints
# the `systemd-analyze security` exposure score. Works without systemd as PID 1
# (systemd >= 250 for --offline). The binary path is swapped for /bin/true because verify
# checks that ExecStart= commands exist.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
sub() { sed 's#/usr/local/bin/prospect-edge#/bin/true#' "$@"; }
sub systemd/prospect-edge.service > "$tmp/prospect-edge.service"
systemd-analyze verify "$tmp/prospect-edge.service"
echo "verify: systemd/prospect-edge.service ok"
for d in systemd/prospect-edge.service.d/*.conf.example; do
    sub systemd/prospect-edge.service "$d" > "$tmp/with-dropin.service"
    systemd-analyze verify "$tmp/with-dropin.service"
    echo "verify: + $(basename "$d") ok"
done
systemd-analyze security --offline=true --threshold=20 "$tmp/prospect-edge.service" | tail -1
