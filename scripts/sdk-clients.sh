#!/usr/bin/env bash
# Generated clients as tests: for every supported release, dumps the OpenAPI document,
# lints it (spectral `spectral:oas`: 0 errors; redocly `recommended`: 0 errors), generates
#   - a Python client with openapi-python-client, pip-installs it, and
#   - TypeScript types with openapi-typescript, used through openapi-fetch, `tsc --strict`,
# checks that every operation of the document is in both, and runs a smoke program with
# each against a running demo (scripts/sdk/smoke.py, scripts/sdk/smoke.ts): create with an
# Idempotency-Key (and its replay), get, a filtered search followed cursor by cursor to the
# end, a PATCH setting a field to null, delete, and a 400 and a 404 read as parsed problems.
# Then forward compatibility: the same clients read an edge whose mappings (the fixture
# tests/sdk-fixtures/forward-compat.py) answer an enum value and a field the document does not
# know, without failing.
#
# Tools are pinned below and installed on first use under target/sdk/ (a venv and an npm
# prefix); node/npm come from Debian when absent.
# Environment: VERSIONS (default all), KEEP=1 keeps target/sdk/out.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

PY_CLIENT="openapi-python-client==0.29.1"
NPM_TOOLS=(openapi-typescript@7.13.0 openapi-fetch@0.17.0 typescript@5.9.3
  @stoplight/spectral-cli@6.16.3 @redocly/cli@2.77.0)

SDK="$ROOT/target/sdk"
OUT="$SDK/out"
start=$(date +%s)

echo "== build"
cargo build --release
BIN="$ROOT/target/release/prospect-edge"

# ---------------------------------------------------------------- tools
if ! command -v npm >/dev/null || ! command -v node >/dev/null; then
  echo "== installing nodejs, npm (Debian)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm
fi
mkdir -p "$SDK/node"
if [ "$(cat "$SDK/node/.tools" 2>/dev/null)" != "${NPM_TOOLS[*]}" ]; then
  echo "== npm: ${NPM_TOOLS[*]}"
  (cd "$SDK/node" && { [ -f package.json ] || echo '{"private": true}' > package.json; } \
    && npm install --no-audit --no-fund --loglevel=error "${NPM_TOOLS[@]}")
  echo "${NPM_TOOLS[*]}" > "$SDK/node/.tools"
fi
NBIN="$SDK/node/node_modules/.bin"
if [ ! -x "$SDK/venv/bin/python" ]; then python3 -m venv "$SDK/venv"; fi
if [ "$(cat "$SDK/venv/.tools" 2>/dev/null)" != "$PY_CLIENT" ]; then
  echo "== pip: $PY_CLIENT"
  "$SDK/venv/bin/python" -m pip install -q --disable-pip-version-check "$PY_CLIENT"
  echo "$PY_CLIENT" > "$SDK/venv/.tools"
fi
PY="$SDK/venv/bin/python"
echo "== tools: $("$SDK/venv/bin/openapi-python-client" --version), openapi-typescript \
$("$NBIN/openapi-typescript" --version 2>/dev/null | tail -1), tsc $("$NBIN/tsc" --version), \
spectral $("$NBIN/spectral" --version), redocly $("$NBIN/redocly" --version), node $(node --version)"

# ---------------------------------------------------------------- demos
free_port() {
  local p
  while :; do
    p=$((20000 + RANDOM % 40000))
    if ! (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null; then echo "$p"; return; fi
  done
}
PIDS=()
FWD_CONF="conf/demo/forward-compat-edge.yaml"
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -f "$FWD_CONF"
}
trap cleanup EXIT
# start_demo CONF: a demo on free ports; sets DEMO_URL (not a subshell: PIDS must keep it).
start_demo() {
  local conf="$1" listen admin log
  listen="127.0.0.1:$(free_port)"; admin="127.0.0.1:$(free_port)"
  log="$OUT/demo-$(basename "$conf" .yaml)"
  "$BIN" demo --log-json --listen "$listen" --admin "$admin" -c "$conf" > "$log.out" 2> "$log.log" &
  PIDS+=("$!")
  for _ in $(seq 1 300); do
    if curl -fsS -o /dev/null "http://$listen/v1/openapi.json" 2>/dev/null; then
      DEMO_URL="http://$listen"; return 0
    fi
    sleep 0.1
  done
  echo "the demo ($conf) did not start:" >&2; cat "$log.log" >&2; return 1
}

rm -rf "$OUT"; mkdir -p "$OUT"
# The fixture edge: the shipped mappings with the change of tests/sdk-fixtures/forward-compat.py.
cp -r mappings "$OUT/mappings-forward"
"$PY" tests/sdk-fixtures/forward-compat.py "$OUT/mappings-forward"
sed -e "s#^mappings: .*#mappings: $OUT/mappings-forward#" conf/demo/edge.yaml > "$FWD_CONF"
"$BIN" check -c "$FWD_CONF" > /dev/null
start_demo conf/demo/edge.yaml; BASE=$DEMO_URL
start_demo "$FWD_CONF"; FWD_BASE=$DEMO_URL
TOKEN=$("$BIN" token --tenant 1 --user 101 --ttl 3600)
export TOKEN BASE FWD_BASE

status=0
for v in ${VERSIONS:-$("$BIN" openapi -c conf/demo/edge.yaml --list-versions)}; do
  d="$OUT/$v"; mkdir -p "$d"
  doc="$d/openapi.json"
  curl -fsS "$BASE/v1/openapi.json?version=$v" -o "$doc"
  ops=$("$PY" -c 'import json,sys; d=json.load(open(sys.argv[1])); print(sum(1 for p in d["paths"].values() for m in p if m in ("get","post","patch","put","delete")))' "$doc")
  echo "== release $v: $ops operations"

  echo "-- spectral (spectral:oas)"
  printf 'extends: ["spectral:oas"]\n' > "$d/.spectral.yaml"
  "$NBIN/spectral" lint --ruleset "$d/.spectral.yaml" --fail-severity error "$doc" || status=1
  echo "-- redocly (recommended, config: scripts/sdk/redocly.yaml)"
  "$NBIN/redocly" lint --config scripts/sdk/redocly.yaml "$doc" || status=1

  echo "-- python: openapi-python-client"
  (cd "$d" && "$SDK/venv/bin/openapi-python-client" generate --path "$doc" \
    --config "$ROOT/scripts/sdk/python-client.yaml" --output-path py --overwrite) > "$d/py-gen.log" 2>&1 \
    || { cat "$d/py-gen.log"; status=1; continue; }
  if grep -qi "warning\|error\|could not\|skip" "$d/py-gen.log"; then
    echo "openapi-python-client warned:"; cat "$d/py-gen.log"; status=1
  fi
  "$SDK/venv/bin/python" -m pip install -q --disable-pip-version-check "$d/py" \
    && "$SDK/venv/bin/python" -m pip install -q --disable-pip-version-check --force-reinstall --no-deps "$d/py" \
    || { echo "the generated package does not install"; status=1; continue; }
  echo "   installed: $("$SDK/venv/bin/python" -m pip show prospectconnect-client 2>/dev/null | grep -E '^(Name|Version)' | tr '\n' ' ')"
  "$PY" scripts/sdk/smoke.py "$v" "$doc" || status=1

  echo "-- typescript: openapi-typescript + openapi-fetch, tsc --strict"
  mkdir -p "$d/ts"
  "$NBIN/openapi-typescript" "$doc" -o "$d/ts/schema.d.ts" > "$d/ts-gen.log" 2>&1 \
    || { cat "$d/ts-gen.log"; status=1; continue; }
  sed -e "s#__VERSION__#$v#g" scripts/sdk/smoke.mts > "$d/ts/smoke.mts"
  ln -sfn "$SDK/node/node_modules" "$d/ts/node_modules"
  cat > "$d/ts/tsconfig.json" <<JSON
{"compilerOptions": {"strict": true, "noEmitOnError": true, "target": "es2022",
  "module": "nodenext", "moduleResolution": "nodenext", "lib": ["es2022", "dom"],
  "skipLibCheck": false, "outDir": "dist"}, "files": ["smoke.mts", "schema.d.ts"]}
JSON
  (cd "$d/ts" && "$NBIN/tsc" -p tsconfig.json) || { echo "tsc --strict failed"; status=1; continue; }
  "$PY" - "$doc" "$d/ts/schema.d.ts" <<'PYEOF' || status=1
import json, re, sys
doc = json.load(open(sys.argv[1]))
ts = open(sys.argv[2]).read()
ids = [op["operationId"] for p in doc["paths"].values() for m, op in p.items()
       if m in ("get", "post", "patch", "put", "delete")]
block = ts.split("export interface operations", 1)[1]
missing = [i for i in ids if not re.search(r'^\s*"%s": \{' % re.escape(i), block, re.M)]
print(f"typescript: {len(ids) - len(missing)}/{len(ids)} operations in schema.d.ts")
sys.exit(1 if missing else 0)
PYEOF
  (cd "$d/ts" && node dist/smoke.mjs) || status=1
done
[ "${KEEP:-}" = 1 ] || rm -rf "$OUT/mappings-forward"
echo "== sdk clients: done in $(( $(date +%s) - start )) s (exit $status)"
exit "$status"
