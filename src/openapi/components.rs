//! The shared components: problems (one schema per slug), the problem responses, the
//! `Version` and `Idempotency-Key` parameters, the response headers, the OAuth 2.0 scheme.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::*;

impl Gen<'_> {
    /// When each problem happens (contract §4), for the reference.
    pub(super) fn problem_when(kind: Kind) -> &'static str {
        match kind {
            Kind::InvalidRequest => "a body member, filter, sort or limit is invalid; `errors` names each by JSON pointer",
            Kind::MalformedJson => "the body is not JSON",
            Kind::VersionRequired => "the `Version` header is missing",
            Kind::UnsupportedVersion => "the `Version` names no supported release; `supported_versions` lists them",
            Kind::InvalidCursor => "the cursor is tampered, expired, or from another query, tenant, app or version",
            Kind::Unauthenticated => "the token is missing, invalid or expired",
            Kind::InsufficientScope => "the token lacks the operation's scope (`required_scope`)",
            Kind::PermissionDenied => "the user's CRM role lacks the permission (`required_permission`)",
            Kind::NotFound => "no such route, or the record does not exist or is not visible to the user",
            Kind::MethodNotAllowed => "known path, wrong method (see `Allow`)",
            Kind::RequestTimeout => "the request head or body was not received in time (the connection is then closed)",
            Kind::Conflict => "a duplicate (e.g. a contact's email), or a concurrent update lost after a retry",
            Kind::IdempotencyKeyInUse => "a request with the same `Idempotency-Key` is still being processed",
            Kind::PayloadTooLarge => "the body is over 1 MiB",
            Kind::UnsupportedMediaType => "a body that is not `application/json`",
            Kind::IdempotencyKeyReused => "the `Idempotency-Key` was used for a different request",
            Kind::Unprocessable => "a business rule refused the request (e.g. a stage of another pipeline)",
            Kind::RateLimited => "over the app's quota; see `Retry-After` and `violated_policies`",
            Kind::RequestHeaderFieldsTooLarge => "the request line and header fields are over the configured limit (32 KiB by default)",
            Kind::Internal => "a bug of the edge",
            Kind::UpstreamError => "a backing service answered with an error or garbage",
            Kind::UpstreamUnavailable => "a backing service is unreachable; see `Retry-After`",
            Kind::UpstreamTimeout => "a backing service did not answer in time",
        }
    }

    /// `Problem` (any problem) and one complete schema per slug. Each slug's schema repeats
    /// the members rather than `allOf`-extending `Problem`: generators merge `allOf` members
    /// poorly (a `const` over a `string` clashes), and a client should get one flat model.
    /// The shared `errors` item is the named `ProblemError`.
    pub(super) fn problem_schemas(&mut self) {
        self.schemas.insert(
            "ProblemError".into(),
            json!({
                "type": "object",
                "description": "One offending member of the request.",
                "properties": {
                    "pointer": {"type": "string", "description": "RFC 6901 JSON pointer into the request body (or the search's member)."},
                    "detail": {"type": "string"},
                },
                "required": ["pointer", "detail"],
            }),
        );
        let base_url = self.settings.problem_type_base.clone();
        let members = |kind: Option<Kind>| {
            let (ty, title, status) = match kind {
                Some(k) => (
                    json!({"type": "string", "const": format!("{base_url}{}", k.slug())}),
                    json!({"type": "string", "const": k.title()}),
                    json!({"type": "integer", "const": k.status()}),
                ),
                None => (
                    json!({"type": "string", "format": "uri"}),
                    json!({"type": "string"}),
                    json!({"type": "integer", "minimum": 400, "maximum": 599}),
                ),
            };
            json!({
                "type": ty,
                "title": title,
                "status": status,
                "detail": {"type": "string"},
                "instance": {"type": "string", "description": "The request path."},
                "trace_id": {"type": "string", "pattern": TRACE_ID_PATTERN},
                "errors": {"type": "array", "items": schema_ref("ProblemError")},
                "required_scope": {"type": "string"},
                "required_permission": {"type": "string"},
                "supported_versions": {"type": "array", "items": {"type": "string"}},
                "violated_policies": {"type": "array", "items": {"type": "string"}},
            })
        };
        let base = ["type", "title", "status", "detail", "instance", "trace_id"];
        self.schemas.insert(
            "Problem".into(),
            json!({
                "type": "object",
                "description": "RFC 9457 problem details. `type` ends with the problem's slug; `title` is fixed per type.",
                "properties": members(None),
                "required": base,
            }),
        );
        for kind in Kind::ALL {
            let mut required: Vec<&str> = base.to_vec();
            match kind {
                Kind::InsufficientScope => required.push("required_scope"),
                Kind::PermissionDenied => required.push("required_permission"),
                Kind::UnsupportedVersion => required.push("supported_versions"),
                _ => {}
            }
            let s = json!({
                "type": "object",
                "description": format!("`{}`: {}.", kind.slug(), Self::problem_when(kind)),
                "properties": members(Some(kind)),
                "required": required,
            });
            self.schemas.insert(format!("Problem.{}", kind.slug()), s);
        }
    }

    pub(super) fn problem_responses(&self) -> Value {
        let mut by_status: BTreeMap<u16, Vec<Kind>> = BTreeMap::new();
        for k in Kind::ALL {
            by_status.entry(k.status()).or_default().push(k);
        }
        let mut out = Map::new();
        for (status, kinds) in by_status {
            let list: Vec<String> = kinds
                .iter()
                .map(|k| format!("`{}` ({})", k.slug(), Self::problem_when(*k)))
                .collect();
            let schema = if kinds.len() == 1 {
                schema_ref(&format!("Problem.{}", kinds[0].slug()))
            } else {
                json!({"oneOf": kinds.iter().map(|k| schema_ref(&format!("Problem.{}", k.slug()))).collect::<Vec<_>>()})
            };
            let mut headers = Map::new();
            headers.insert("Trace-Id".into(), header_ref("Trace-Id"));
            headers.insert("Version".into(), header_ref("Version"));
            match status {
                401 => {
                    headers.insert(
                        "WWW-Authenticate".into(),
                        json!({
                            "description": "`Bearer realm=\"prospectconnect\"`, with `error=\"invalid_token\"` when a token was sent.",
                            "required": true,
                            "schema": {"type": "string"},
                        }),
                    );
                }
                403 => {
                    headers.insert(
                        "WWW-Authenticate".into(),
                        json!({
                            "description": "On `insufficient-scope`: `Bearer …, error=\"insufficient_scope\", scope=\"…\"`.",
                            "schema": {"type": "string"},
                        }),
                    );
                }
                405 => {
                    headers.insert(
                        "Allow".into(),
                        json!({"description": "The methods the path accepts.", "required": true, "schema": {"type": "string"}}),
                    );
                }
                409 | 429 | 503 => {
                    headers.insert("Retry-After".into(), header_ref("Retry-After"));
                }
                _ => {}
            }
            if status != 401 {
                headers.insert("RateLimit".into(), header_ref("RateLimit"));
                headers.insert("RateLimit-Policy".into(), header_ref("RateLimit-Policy"));
            }
            let example_kind = kinds[0];
            let mut example = json!({
                "type": self.type_url(example_kind),
                "title": example_kind.title(),
                "status": status,
                "detail": Self::problem_when(example_kind),
                "instance": "/v1/contacts",
                "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
            });
            match example_kind {
                Kind::InvalidRequest => {
                    example["errors"] = json!([{"pointer": "/email", "detail": "is required"}]);
                }
                Kind::InsufficientScope => example["required_scope"] = json!("contact.read"),
                Kind::PermissionDenied => example["required_permission"] = json!("contacts:view"),
                Kind::UnsupportedVersion => {
                    example["supported_versions"] = json!(self.plan.versions.supported())
                }
                _ => {}
            }
            out.insert(
                format!("Problem{status}"),
                json!({
                    "description": format!("Problem: {}.", list.join("; ")),
                    "headers": headers,
                    "content": {"application/problem+json": {"schema": schema, "example": example}},
                }),
            );
        }
        Value::Object(out)
    }

    // ------------------------------------------------------------ parameters, headers, security

    pub(super) fn parameters(&self) -> Value {
        let v = self.release.date.as_str();
        json!({
            "Version": {
                "name": "Version",
                "in": "header",
                "required": true,
                "description": format!(
                    "The API release the request is written for. This document describes `{v}`; \
                     supported releases: {}. Missing → 400 `version-required`; unknown or retired → \
                     400 `unsupported-version`.",
                    self.plan.versions.supported().iter().map(|s| format!("`{s}`")).collect::<Vec<_>>().join(", ")
                ),
                "schema": schema_ref("ApiVersion"),
                "example": v,
            },
            "Idempotency-Key": {
                "name": "Idempotency-Key",
                "in": "header",
                "required": false,
                "description": "1–255 visible ASCII characters, unique per request you mean to make once. \
                    Replays answer the first response with `Idempotent-Replayed: true`; the same key with \
                    another request → 422 `idempotency-key-reused`, still in flight → 409 \
                    `idempotency-key-in-use`. Scoped to the tenant and the app, kept at least 24 h.",
                "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[\\x21-\\x7E]+$"},
                "example": "b1946ac9-2b2c-4c3e-9d6a-0c6f7f1e5a10",
            },
        })
    }

    pub(super) fn headers(&self) -> Value {
        let mut h = json!({
            "Trace-Id": {
                "description": "The request's trace id (32 lowercase hex), also in every problem's `trace_id`.",
                "required": true,
                "schema": {"type": "string", "pattern": TRACE_ID_PATTERN},
            },
            "Version": {
                "description": "The release that served the request.",
                "required": true,
                "schema": {"type": "string", "enum": self.plan.versions.supported()},
            },
            "RateLimit": {
                "description": "The remaining quota of the policy closest to its limit (draft-ietf-httpapi-ratelimit-headers), on authenticated responses.",
                "schema": {"type": "string"},
                "example": "\"default\";r=599;t=60",
            },
            "RateLimit-Policy": {
                "description": "The app's quota policies, on authenticated responses.",
                "schema": {"type": "string"},
                "example": "\"default\";q=600;w=60, \"search\";q=120;w=60",
            },
            "Deprecation": {
                "description": "Present because the requested release is deprecated.",
                "required": self.release.deprecated,
                "schema": {"type": "string"},
            },
            "Sunset": {
                "description": "When the requested (deprecated) release stops working (HTTP date).",
                "required": self.release.deprecated && self.release.sunset.is_some(),
                "schema": {"type": "string"},
            },
            "Retry-After": {
                "description": "Seconds to wait before retrying.",
                "schema": {"type": "string", "pattern": "^[0-9]+$"},
            },
        });
        // Only a deprecated release's answers carry them (an unused component otherwise).
        if let (false, Some(m)) = (self.release.deprecated, h.as_object_mut()) {
            m.remove("Deprecation");
            m.remove("Sunset");
        }
        h
    }

    pub(super) fn security_scheme(&self) -> Value {
        // Scope → the resources it opens, and whether it writes.
        let mut scopes: BTreeMap<String, (Vec<String>, bool)> = BTreeMap::new();
        for res in self.plan.resources.values() {
            let e = scopes.entry(res.read_scope.clone()).or_default();
            e.0.push(words(&res.name));
            if let Some(w) = &res.write_scope {
                let e = scopes.entry(w.clone()).or_default();
                e.0.push(words(&res.name));
                e.1 = true;
            }
        }
        let described: Map<String, Value> = scopes
            .into_iter()
            .map(|(scope, (resources, write))| {
                let list = list_words(resources);
                let what = if write {
                    format!("Create, change, delete and run actions on {list}")
                } else {
                    format!("Read and search {list}")
                };
                (scope, Value::from(what))
            })
            .collect();
        json!({
            "type": "oauth2",
            "description": "OAuth 2.0 access tokens (RFC 9068 JWT, `typ: at+jwt`) from the configured issuer, \
                sent as `Authorization: Bearer <token>`. Each operation lists the scope it needs. The URLs \
                are the issuer's conventional endpoints; its own discovery document is authoritative.",
            "flows": {
                "clientCredentials": {
                    "tokenUrl": self.settings.token_url,
                    "scopes": described,
                },
                "authorizationCode": {
                    "authorizationUrl": self.settings.authorization_url,
                    "tokenUrl": self.settings.token_url,
                    "scopes": described,
                },
            },
        })
    }
}
