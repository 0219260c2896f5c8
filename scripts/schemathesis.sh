#!/usr/bin/env bash
# Fuzzes the running demo against its own OpenAPI document with schemathesis (PyPI):
# builds the edge, starts `prospect-edge demo` on loopback, mints a token (tenant 1,
# user 101, every scope) and runs schemathesis on every operation of every supported
# release, positive and negative cases, all phases (examples, coverage, fuzzing, stateful).
#
# Checks: schemathesis' defaults except `positive_data_acceptance`, which assumes that a
# schema-valid request is accepted. Here sealed ids and cursors are opaque strings whose
# validity no schema can express (a well-formed `cmp_…` that does not open is a 400 naming
# the field, a forged cursor a 400 `invalid-cursor`), and the legacy services add rules of
# their own (e-mail syntax, non-empty names) that the mapping files do not declare.
#
# Environment: MAX_EXAMPLES (default 20), SEED (default random), VERSIONS (default all),
# LISTEN / ADMIN (default 127.0.0.1:18080 / 127.0.0.1:19090), CHECKS (a schemathesis
# --checks list, default: see above). Extra arguments go to `schemathesis run`.
# Reports (JUnit) land in target/schemathesis/.
set -euo pipefail
cd "$(dirname "$0")/.."
MAX_EXAMPLES="${MAX_EXAMPLES:-20}"
OUT="target/schemathesis"
. scripts/python-env.sh
. scripts/demo-env.sh

start=$(date +%s)
echo "== build"
cargo build --release
ensure_python_tools
mkdir -p "$OUT"
venv="$(cd "$PY_VENV" && pwd)"

# The demo's config with rate limits far above what the fuzzer sends; the key and the
# mappings stay where the demo config expects them (conf/demo/).
DEMO_CONF=conf/demo/fuzz-edge.yaml
sed -e 's/quota: 600,/quota: 10000000,/' -e 's/quota: 120,/quota: 10000000,/' \
  conf/demo/edge.yaml > "$DEMO_CONF"
trap 'rm -f "$DEMO_CONF"' EXIT
export DEMO_CONF
start_demo "$OUT"

token=$(./target/release/prospect-edge token --tenant 1 --user 101 --ttl 7200)
versions="${VERSIONS:-$(./target/release/prospect-edge openapi -c conf/demo/edge.yaml --list-versions)}"
checks=(--exclude-checks positive_data_acceptance)
if [ -n "${CHECKS:-}" ]; then checks=(--checks "$CHECKS"); fi
seed=()
if [ -n "${SEED:-}" ]; then seed=(--seed "$SEED"); fi

status=0
for v in $versions; do
  echo "== schemathesis: release $v, $MAX_EXAMPLES examples per operation"
  # From target/: schemathesis keeps its cache of past failures (replayed first) in ./.schemathesis.
  (cd "$OUT" && "$venv/bin/schemathesis" run "http://$LISTEN/v1/openapi.json?version=$v" \
    -H "Authorization: Bearer $token" \
    --max-examples "$MAX_EXAMPLES" "${seed[@]}" "${checks[@]}" \
    --report junit --report-junit-path "junit-$v.xml" \
    --no-color "$@") || status=$?
done
echo "== done in $(( $(date +%s) - start )) s (exit $status)"
exit "$status"
