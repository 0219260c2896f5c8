#!/usr/bin/env python3
"""Checks of the generated OpenAPI documents beyond what openapi-spec-validator covers.

For each document given on the command line:
- every `examples` entry of a component schema, every media-type `example` of a request
  body and every problem response example validates against its own schema
  (JSON Schema 2020-12, `$ref`s resolved inside the document);
- every operation has exactly one OAuth 2.0 requirement naming one scope that the
  `oauth2` scheme declares in both flows, and an `x-required-permission`;
- every problem slug of the catalogue has its schema, and each 4xx/5xx response an
  operation lists is an `application/problem+json` response of that status.

Exit status 1 with one line per finding; 0 with a summary otherwise.
"""
import json
import sys

from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

METHODS = ("get", "put", "post", "patch", "delete", "options", "head", "trace")


def check(path):
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    problems = []
    root = Resource.from_contents(doc, default_specification=DRAFT202012)
    registry = Registry().with_resource("urn:doc", root)

    def validate(instance, schema, where):
        # Resolve "#/components/..." against the whole document.
        wrapped = {"$id": "urn:check", "allOf": [_rebase(schema)]}
        validator = Draft202012Validator(
            wrapped, registry=registry, format_checker=Draft202012Validator.FORMAT_CHECKER
        )
        for err in validator.iter_errors(instance):
            problems.append(f"{path}: {where}: example invalid: {err.message}")

    schemas = doc["components"]["schemas"]
    examples = 0
    for name, schema in schemas.items():
        for i, ex in enumerate(schema.get("examples", [])):
            examples += 1
            validate(ex, {"$ref": f"#/components/schemas/{name}"}, f"schema {name} example {i}")

    flows = doc["components"]["securitySchemes"]["oauth2"]["flows"]
    declared = set(flows["clientCredentials"]["scopes"])
    if declared != set(flows["authorizationCode"]["scopes"]):
        problems.append(f"{path}: the two OAuth flows declare different scopes")
    slugs = {k[len("Problem."):] for k in schemas if k.startswith("Problem.")}
    operations = 0
    for p, item in doc["paths"].items():
        for m in METHODS:
            op = item.get(m)
            if op is None:
                continue
            operations += 1
            where = f"{m.upper()} {p}"
            sec = op.get("security", [])
            if len(sec) != 1 or list(sec[0]) != ["oauth2"] or len(sec[0]["oauth2"]) != 1:
                problems.append(f"{path}: {where}: security must name one oauth2 scope: {sec}")
            elif sec[0]["oauth2"][0] not in declared:
                problems.append(f"{path}: {where}: scope {sec[0]['oauth2'][0]} is not declared")
            if not op.get("x-required-permission"):
                problems.append(f"{path}: {where}: no x-required-permission")
            body = op.get("requestBody", {}).get("content", {}).get("application/json")
            if body and "example" in body:
                examples += 1
                validate(body["example"], body["schema"], f"{where} request example")
            for status, resp in op["responses"].items():
                if status.startswith(("4", "5")):
                    ref = resp.get("$ref", "")
                    target = ref.rsplit("/", 1)[-1]
                    if target != f"Problem{status}":
                        problems.append(f"{path}: {where}: {status} is not the Problem{status} response")
    for name, resp in doc["components"]["responses"].items():
        content = resp["content"].get("application/problem+json")
        if content is None:
            problems.append(f"{path}: response {name} is not application/problem+json")
            continue
        examples += 1
        validate(content["example"], content["schema"], f"response {name} example")
    expected = {
        "invalid-request", "malformed-json", "version-required", "unsupported-version",
        "invalid-cursor", "unauthenticated", "insufficient-scope", "permission-denied",
        "not-found", "method-not-allowed", "conflict", "idempotency-key-in-use",
        "payload-too-large", "unsupported-media-type", "idempotency-key-reused",
        "unprocessable", "rate-limited", "internal", "upstream-error",
        "upstream-unavailable", "upstream-timeout",
        # Beyond the contract's §4 table: slow and oversized request heads (issue #9).
        "request-timeout", "request-header-fields-too-large",
    }
    if slugs != expected:
        problems.append(f"{path}: problem slugs differ from the contract: {sorted(slugs ^ expected)}")
    return problems, operations, examples, len(declared)


def _rebase(schema):
    """Points local refs of a schema fragment at the registered document."""
    if isinstance(schema, dict):
        out = {}
        for k, v in schema.items():
            if k == "$ref" and isinstance(v, str) and v.startswith("#/"):
                out[k] = "urn:doc" + v
            else:
                out[k] = _rebase(v)
        return out
    if isinstance(schema, list):
        return [_rebase(x) for x in schema]
    return schema


def main(paths):
    failed = False
    for path in paths:
        problems, operations, examples, scopes = check(path)
        for p in problems:
            print(p)
        failed = failed or bool(problems)
        if not problems:
            print(f"{path}: {operations} operations, {scopes} scopes, {examples} examples valid")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
