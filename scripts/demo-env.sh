# Sourced by the OpenAPI scripts: starts `prospect-edge demo` in the background on
# $LISTEN / $ADMIN, waits until it serves /v1/openapi.json, and stops it on exit.
# Sets DEMO_PID and DEMO_CONTACT (the path of tenant 1's contact 1, from the demo's banner).
# shellcheck shell=bash
LISTEN="${LISTEN:-127.0.0.1:18080}"
ADMIN="${ADMIN:-127.0.0.1:19090}"

start_demo() {
  local out="$1"
  mkdir -p "$out"
  # DEMO_CONF: another config for the demo (the fuzzer's lifts the rate limits, which a
  # few thousand generated requests a minute would otherwise exhaust).
  ./target/release/prospect-edge demo --listen "$LISTEN" --admin "$ADMIN" \
    -c "${DEMO_CONF:-conf/demo/edge.yaml}" > "$out/demo.out" 2> "$out/demo.log" &
  DEMO_PID=$!
  trap 'kill "$DEMO_PID" 2>/dev/null || true; wait "$DEMO_PID" 2>/dev/null || true' EXIT
  local ready=""
  for _ in $(seq 1 300); do
    if curl -fsS -o /dev/null "http://$LISTEN/v1/openapi.json" 2>/dev/null; then ready=1; break; fi
    if ! kill -0 "$DEMO_PID" 2>/dev/null; then break; fi
    sleep 0.1
  done
  if [ -z "$ready" ]; then
    echo "the demo did not start on $LISTEN:"; cat "$out/demo.log"; exit 1
  fi
  DEMO_CONTACT="$(grep -o '/v1/contacts/con_[A-Za-z0-9_-]*' "$out/demo.out" | head -1)"
}
