"""Smoke test of the generated Python client (scripts/sdk-clients.sh) against the demo.

Usage: smoke.py RELEASE OPENAPI_JSON, with TOKEN, BASE (the demo) and FWD_BASE (the demo on
the forward-compat fixture's mappings) in the environment. Every call goes through the
generated package `prospectconnect`; a failure exits non-zero with what was wrong.
"""
import importlib
import json
import os
import pkgutil
import sys
import uuid

import prospectconnect
from prospectconnect import AuthenticatedClient
from prospectconnect.api.contacts import (
    contacts_create,
    contacts_delete,
    contacts_get,
    contacts_search,
    contacts_update,
)
from prospectconnect.models import (
    ApiVersion,
    Contact,
    ContactCreate,
    ContactResponse,
    ContactSearch,
    ContactUpdate,
    ContactPage,
    ProblemInvalidRequest,
    ProblemNotFound,
)

release, doc_path = sys.argv[1], sys.argv[2]
doc = json.load(open(doc_path))
version = ApiVersion(release)
checks = []


def check(what, ok, detail=""):
    checks.append(what)
    if not ok:
        sys.exit(f"python smoke ({release}): {what} FAILED {detail}")


# Every operation of the document is a module of the package.
ops = {op["operationId"].replace(".", "_").replace("-", "_")
       for p in doc["paths"].values() for m, op in p.items()
       if m in ("get", "post", "patch", "put", "delete")}
api = importlib.import_module("prospectconnect.api")
have = {name for pkg in pkgutil.iter_modules(api.__path__)
        for name in (m.name for m in pkgutil.iter_modules(
            [os.path.join(api.__path__[0], pkg.name)]))}
print(f"python: {len(ops & have)}/{len(ops)} operations generated")
check("every operation generated", ops <= have, sorted(ops - have))

client = AuthenticatedClient(base_url=os.environ["BASE"], token=os.environ["TOKEN"],
                             raise_on_unexpected_status=True)

# Create with an Idempotency-Key; the replay answers the same record.
tag = f"sdk-{uuid.uuid4().hex[:12]}"
email = f"{tag}-0@example.com"
key = str(uuid.uuid4())
body = ContactCreate.from_dict({"email": email, "first_name": "Sdk", "last_name": "Smoke",
                                "phone": "+1-555-0199"})
r = contacts_create.sync_detailed(client=client, body=body, version=version, idempotency_key=key)
check("create 201", r.status_code == 201, r.content[:300])
check("create parses", isinstance(r.parsed, ContactResponse), type(r.parsed))
created = r.parsed.data
check("created email", created.email == email)
again = contacts_create.sync_detailed(client=client, body=body, version=version, idempotency_key=key)
check("replay answers the same id", again.status_code == 201 and again.parsed.data.id == created.id)
check("replay is marked", again.headers.get("idempotent-replayed") == "true")

# Get.
r = contacts_get.sync_detailed(created.id, client=client, version=version)
check("get 200", r.status_code == 200 and r.parsed.data.id == created.id, r.content[:300])

# Search with a filter, following the cursor to the end: this run's three contacts, one a page.
others = []
for i in (1, 2):
    r = contacts_create.sync_detailed(client=client, version=version, body=ContactCreate.from_dict(
        {"email": f"{tag}-{i}@example.com", "first_name": "Sdk"}))
    check("create another", r.status_code == 201, r.content[:300])
    others.append(r.parsed.data.id)
seen, cursor, pages = [], None, 0
while True:
    q = {"filters": [{"field": "email", "operator": "contains", "value": tag}], "limit": 1}
    if cursor:
        q = {"cursor": cursor, "limit": 1}
    r = contacts_search.sync_detailed(client=client, body=ContactSearch.from_dict(q), version=version)
    check("search 200", r.status_code == 200 and isinstance(r.parsed, ContactPage), r.content[:300])
    pages += 1
    seen += [c.id for c in r.parsed.data]
    cursor = r.parsed.meta.cursor
    if not cursor:
        break
    check("bounded paging", pages < 500)
check("search pages", sorted(seen) == sorted([created.id] + others) and pages >= 3,
      f"{pages} pages, {seen}")
for i in others:
    check("delete another", contacts_delete.sync_detailed(i, client=client, version=version).status_code == 204)
print(f"python: search followed {pages} pages, {len(seen)} contacts")

# PATCH a field to null.
r = contacts_update.sync_detailed(created.id, client=client, version=version,
                                  body=ContactUpdate.from_dict({"phone": None}))
check("patch 200", r.status_code == 200, r.content[:300])
check("phone cleared", r.parsed.data.phone is None, r.parsed.data.phone)

# Delete; then it is a 404, parsed as a problem.
r = contacts_delete.sync_detailed(created.id, client=client, version=version)
check("delete 204", r.status_code == 204, r.content[:300])
r = contacts_get.sync_detailed(created.id, client=client, version=version)
check("404 parsed", r.status_code == 404 and isinstance(r.parsed, ProblemNotFound), (r.status_code, type(r.parsed)))
check("404 problem members", r.parsed.status == 404 and len(r.parsed.trace_id) == 32)

# A 400 naming the member, parsed as a problem with its errors.
r = contacts_search.sync_detailed(client=client, version=version,
                                  body=ContactSearch.from_dict({"limit": 1000}))
check("400 parsed", r.status_code == 400 and isinstance(r.parsed, ProblemInvalidRequest), (r.status_code, type(r.parsed), r.content[:300]))
check("400 errors", [e.pointer for e in r.parsed.errors] == ["/limit"], r.parsed.errors)

# Forward compatibility: an edge answering a new enum value and a new member.
fwd = AuthenticatedClient(base_url=os.environ["FWD_BASE"], token=os.environ["TOKEN"],
                          raise_on_unexpected_status=True)
r = contacts_search.sync_detailed(client=fwd, version=version, body=ContactSearch.from_dict(
    {"filters": [{"field": "email", "operator": "contains", "value": "alan.turing"}]}))
check("forward-compat search 200", r.status_code == 200 and isinstance(r.parsed, ContactPage), r.content[:300])
stages = [c.lifecycle_stage for c in r.parsed.data]
check("an unknown enum value reads as a string", "customer_success" in stages, stages)
extra = [c.additional_properties.get("nickname", "absent") for c in r.parsed.data]
check("an unknown member is kept", "absent" not in extra, extra)
print(f"python ({release}): {len(checks)} checks passed")
