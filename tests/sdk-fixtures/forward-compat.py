"""The mapping change of the forward-compatibility check (scripts/sdk-clients.sh).

Applied to a copy of mappings/: a later release's edge that answers what today's
document does not describe, as docs/versioning.md allows without a new release:
  - a new enum value: upstream lifecycle stage 4 reads `customer_success`, a value the
    document's `lifecycle_stage` enum does not list (it lists `customer`);
  - a new member: `nickname` on every contact.
Clients generated from today's document must read such answers without failing.
Usage: apply.py MAPPINGS_DIR
"""
import pathlib
import sys

path = pathlib.Path(sys.argv[1]) / "contacts.yaml"
text = path.read_text()
changes = [
    ("customer: 4,", "customer_success: 4,"),
    ("  phone: { from: phoneNumber, nullable: true }\n",
     "  phone: { from: phoneNumber, nullable: true }\n"
     "  nickname: { from: nickName, nullable: true }\n"),
]
for old, new in changes:
    if text.count(old) != 1:
        sys.exit(f"forward-compat fixture: `{old.strip()}` not found once in {path}")
    text = text.replace(old, new)
path.write_text(text)
