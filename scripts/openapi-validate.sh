#!/usr/bin/env bash
# Builds the edge, dumps the OpenAPI document of every supported release with
# `prospect-edge openapi`, and validates each one:
#   1. openapi-spec-validator (PyPI): the document is valid OpenAPI 3.1;
#   2. scripts/openapi_check.py: every example validates against its own schema, every
#      operation names a declared OAuth scope, every problem slug is documented.
# Usage: scripts/openapi-validate.sh [-c conf/edge.yaml]
set -euo pipefail
cd "$(dirname "$0")/.."
CONF="conf/edge.yaml"
if [ "${1:-}" = "-c" ] && [ -n "${2:-}" ]; then CONF="$2"; fi
OUT="target/openapi"
[ "$CONF" = "conf/edge.yaml" ] && scripts/dev-cert.sh  # its tls: section needs a certificate
. scripts/python-env.sh

start=$(date +%s)
echo "== build"
cargo build --release
ensure_python_tools
mkdir -p "$OUT"
docs=()
for v in $(./target/release/prospect-edge openapi -c "$CONF" --list-versions); do
  f="$OUT/openapi-$v.json"
  ./target/release/prospect-edge openapi -c "$CONF" --version "$v" > "$f"
  docs+=("$f")
  echo "== $f: $(wc -c < "$f") bytes"
done
echo "== openapi-spec-validator"
"$PY_VENV/bin/openapi-spec-validator" "${docs[@]}"
echo "== examples, scopes and problems"
"$PY_VENV/bin/python" scripts/openapi_check.py "${docs[@]}"
echo "== ok: ${#docs[@]} documents valid in $(( $(date +%s) - start )) s"
