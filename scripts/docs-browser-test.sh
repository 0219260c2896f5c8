#!/usr/bin/env bash
# Headless Chromium against /docs: loads the reference page from the demo, uses "Try it"
# on GET /v1/contacts/{id} with a dev token, checks that the response appears in the page,
# and writes a screenshot (docs/screenshots/docs-try-it.png unless SCREENSHOT is set).
#
# The page reads `#op=contacts.get&id=…&token=…&run=1`: it opens the operation, fills the
# Try-it form from the hash and presses its Send button, exactly as a user would; the token
# stays in the fragment, which is never sent to the server. Chromium: Debian `chromium`
# (apt-get install -y chromium). Environment: LISTEN, ADMIN, SCREENSHOT, CHROMIUM.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="target/docs-browser"
SCREENSHOT="${SCREENSHOT:-docs/screenshots/docs-try-it.png}"
CHROMIUM="${CHROMIUM:-$(command -v chromium || command -v chromium-browser || true)}"
. scripts/demo-env.sh

start=$(date +%s)
if [ -z "$CHROMIUM" ]; then
  echo "chromium is not installed (Debian: apt-get install -y chromium)"; exit 1
fi
echo "== build"
cargo build --release
rm -rf "$OUT"; mkdir -p "$OUT" "$(dirname "$SCREENSHOT")"
start_demo "$OUT"
contact_id="${DEMO_CONTACT##*/}"
token=$(./target/release/prospect-edge token --tenant 1 --user 101)
url="http://$LISTEN/docs#op=contacts.get&id=$contact_id&token=$token&run=1"

chrome() {
  local profile
  profile="$(mktemp -d)"
  # The page's fetches run in virtual time, which waits for pending network requests.
  "$CHROMIUM" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --disable-dev-shm-usage --hide-scrollbars --user-data-dir="$profile" \
    --virtual-time-budget=15000 --window-size=1400,1000 "$@" "$url" 2>> "$OUT/chromium.log"
  rm -rf "$profile"
}

echo "== chromium: dump the DOM after Try it"
chrome --dump-dom > "$OUT/dom.html"
fail() { echo "FAIL: $*"; echo "(DOM in $OUT/dom.html, chromium log in $OUT/chromium.log)"; exit 1; }
grep -q 'id="result"[^>]*data-status="200"' "$OUT/dom.html" || fail "no 200 in the Try-it result"
grep -q '"email": "ada.lovelace1@example.com"' "$OUT/dom.html" || fail "the contact is not shown"
grep -q "\"id\": \"$contact_id\"" "$OUT/dom.html" || fail "the contact's id is not shown"
grep -q 'trace-id: [0-9a-f]\{32\}' "$OUT/dom.html" || fail "the response headers are not shown"
grep -q 'version: 2026-11-01' "$OUT/dom.html" || fail "the Version header is not shown"
echo "   ok: 200, the contact's body and headers are in the page"

echo "== chromium: Try it on the search, with the example the page pre-fills"
url="http://$LISTEN/docs#op=contacts.search&token=$token&run=1"
chrome --dump-dom > "$OUT/search.html"
grep -q 'id="result"[^>]*data-status="200"' "$OUT/search.html" || fail "the pre-filled search did not answer 200"
grep -q '"operator": "contains"' "$OUT/search.html" || fail "the search example is not pre-filled"
grep -q '"email": "[^"]*@example.com"' "$OUT/search.html" || fail "the pre-filled search returned no contact"
echo "   ok: the pre-filled search example returns contacts"

echo "== chromium: a schema page and the search box (prefilled from #q=)"
url="http://$LISTEN/docs#schema=Contact&q=lifecycle_stage"
chrome --dump-dom > "$OUT/schema.html"
grep -q '<h2>Contact</h2>' "$OUT/schema.html" || fail "the Contact schema is not shown"
grep -q 'lifecycle_stage' "$OUT/schema.html" || fail "the schema's fields are not shown"
grep -q 'data-op="contacts.search"' "$OUT/schema.html" || fail "the search box does not find the contact operations"
if grep -q 'data-op="deals.get"' "$OUT/schema.html"; then fail "the search box does not filter"; fi
grep -q 'data-schema="Contact"' "$OUT/schema.html" || fail "the search box does not list the Contact schema"
echo "   ok: schema page, and the search box filters operations and schemas"

echo "== chromium: screenshot"
url="http://$LISTEN/docs#op=contacts.get&id=$contact_id&token=$token&run=1"
chrome --screenshot="$OUT/screenshot.png" > /dev/null
[ -s "$OUT/screenshot.png" ] || fail "no screenshot written"
cp "$OUT/screenshot.png" "$SCREENSHOT"
echo "== ok: $SCREENSHOT ($(wc -c < "$SCREENSHOT") bytes) in $(( $(date +%s) - start )) s"
