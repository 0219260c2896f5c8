#!/bin/sh
# Seeds the fuzz corpora from the golden fixtures (tests/fixtures/*/case.json).
set -eu
cd "$(dirname "$0")"
for t in request_transform filter_translation request_json upstream_interpret id_cursor_open; do
  mkdir -p "corpus/$t"
done
for f in ../tests/fixtures/*/case.json; do
  name=$(basename "$(dirname "$f")")
  python3 - "$f" "$name" <<'PY'
import json, sys
case = json.load(open(sys.argv[1])); name = sys.argv[2]
for k in ("public", "upstream"):
    if case.get(k) is not None:
        body = json.dumps(case[k]).encode()
        open(f"corpus/request_transform/{name}-{k}", "wb").write(body)
        open(f"corpus/request_json/{name}-{k}", "wb").write(body)
        # A 200 answer, then the record (and wrapped as crm-core/sales envelopes would).
        open(f"corpus/upstream_interpret/{name}-{k}", "wb").write(b"\x00\x64" + body)
        open(f"corpus/upstream_interpret/{name}-{k}-env", "wb").write(
            b"\x00\x64" + json.dumps({"ok": True, "result": case[k], "data": case[k]}).encode())
PY
done
printf '%s' '{"filters":[{"field":"lifecycle_stage","operator":"eq","value":"lead"}],"sort":"-created_at","limit":10}' > corpus/filter_translation/contacts-eq
printf '%s' '{"filters":[{"field":"created_at","operator":"gte","value":"2025-01-01T00:00:00Z"},{"field":"email","operator":"in","value":["a@b.c"]}]}' > corpus/filter_translation/range-in
printf '%s' 'con_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA' > corpus/id_cursor_open/id
printf '%s' 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA' > corpus/id_cursor_open/cursor
