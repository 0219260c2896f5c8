//! The OpenAPI 3.1 document of the public API, generated from the compiled [`Plan`]: every
//! operation of every resource, its request and response schemas, the search body with
//! each field's operators, the envelopes, every problem with its slug, the headers, the
//! OAuth 2.0 scopes, and examples. `docs` serves the `/docs` page that renders it.
//!
//! Nothing here is written per resource: the mapping files drive both the edge and this
//! document, so the reference cannot drift from what the edge does. It owns the *shape* of
//! the description, not the behaviour: where a schema states a rule (required, nullable,
//! read-only, operators, limits), the rule is enforced by `mapping::transform` and
//! `mapping::search`, and the schema mirrors it so that schemathesis can hold the edge to it.
//!
//! The document is a function of (plan, settings, release). The release is a parameter
//! throughout (`Gen::release`): per-release field views hook in at [`Gen::fields`].

mod components;
pub mod docs;
mod paths;
mod schemas;
mod search_schemas;

use std::borrow::Cow;

use serde_json::{json, Map, Value};

use crate::mapping::model::*;
use crate::problem::{Kind, Problem};

pub const OPENAPI_VERSION: &str = "3.1.0";
pub const TITLE: &str = "ProspectConnect Public API";
/// Used when the edge config names no token issuer (the document must still be valid).
pub const PLACEHOLDER_ISSUER: &str = "https://auth.prospectconnect.example";
/// Where the OAuth 2.0 endpoints sit under an issuer. The edge only verifies tokens; the
/// issuer's real endpoints are published by the identity provider, so these are placeholders.
pub const AUTHORIZE_PATH: &str = "/oauth2/authorize";
pub const TOKEN_PATH: &str = "/oauth2/token";

/// Sealed public ids: `<prefix>_` + base64url, at most 64 characters (contract §1).
const ID_MAX_LEN: u64 = 64;
/// The edge's limits on request values (`mapping::transform`, `mapping::search`).
const CONTAINS_MAX_BYTES: u64 = 256;
const IN_MAX_VALUES: u64 = 100;
const MAX_LIMIT: u64 = 100;
/// A write's decimal string: at most 15 integer digits and 2 decimals (`valid_decimal`).
const DECIMAL_WRITE_PATTERN: &str = r"^-?[0-9]{1,15}(\.[0-9]{1,2})?$";
const DECIMAL_READ_PATTERN: &str = r"^-?[0-9]+(\.[0-9]+)?$";
const TRACE_ID_PATTERN: &str = "^[0-9a-f]{32}$";
const EXAMPLE_TIMESTAMP: &str = "2026-11-28T09:30:00.000Z";
const EXAMPLE_DATE: &str = "2026-11-28";

/// What the document needs besides the plan.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Base of every problem `type` URL (`problem_type_base` in the edge config).
    pub problem_type_base: String,
    pub authorization_url: String,
    pub token_url: String,
}

impl Settings {
    /// Settings from the edge config's problem base and its first token issuer.
    pub fn new(problem_type_base: &str, issuer: Option<&str>) -> Settings {
        let issuer = issuer.unwrap_or(PLACEHOLDER_ISSUER).trim_end_matches('/');
        Settings {
            problem_type_base: problem_type_base.to_string(),
            authorization_url: format!("{issuer}{AUTHORIZE_PATH}"),
            token_url: format!("{issuer}{TOKEN_PATH}"),
        }
    }

    pub fn from_config(cfg: &crate::config::EdgeConfig) -> Settings {
        Settings::new(
            &cfg.problem_type_base,
            cfg.issuers.first().map(|i| i.issuer.as_str()),
        )
    }
}

/// The plan and settings of an edge config, for `prospect-edge openapi`. The document needs
/// no secrets and no upstream, so only `mappings`, `upstreams` (names), `problem_type_base`
/// and the first issuer are read: it works on the production config without its secrets.
pub fn load(config: &std::path::Path) -> Result<(Plan, Settings), crate::diag::Diags> {
    let mut d = crate::diag::Diags::default();
    let Some((dir, names)) = crate::config::mapping_hint(config) else {
        d.file(
            config,
            "cannot read `mappings` (and `upstreams`) from this edge config",
        );
        return Err(d);
    };
    let node = crate::diag::load(config, &mut d).ok_or_else(|| std::mem::take(&mut d))?;
    let map = node.as_mapping();
    let base = map
        .and_then(|m| m.get_scalar("problem_type_base"))
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|| crate::config::DEFAULT_PROBLEM_BASE.to_string());
    let issuer = map
        .and_then(|m| m.get_sequence("issuers"))
        .and_then(|seq| seq.first())
        .and_then(|i| i.as_mapping())
        .and_then(|i| i.get_scalar("issuer"))
        .map(|s| s.as_str().to_string());
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let plan = crate::mapping::load_dir(
        &dir,
        &crate::mapping::Context {
            upstream_names: names,
        },
    )?;
    Ok((plan, Settings::new(&base, issuer.as_deref())))
}

/// The problem a request for an unknown, malformed or retired release gets.
pub fn unsupported_version(plan: &Plan) -> Problem {
    Problem::new(
        Kind::UnsupportedVersion,
        "The version parameter names no supported release",
    )
    .with_ext("supported_versions", plan.versions.supported())
}

/// The OpenAPI document of `version` (a live release), or 400 `unsupported-version`.
pub fn document(plan: &Plan, settings: &Settings, version: &str) -> Result<Value, Problem> {
    let release = plan
        .versions
        .find(version)
        .ok_or_else(|| unsupported_version(plan))?;
    Ok(Gen::new(plan, settings, release).document())
}

// ---------------------------------------------------------------- names and words

/// `2026-11-01` → `2026.11.1`: `info.version` becomes a generated package's version, and
/// a date is no valid PEP 440 / semver version (the release stays in `x-api-version`).
fn package_version(date: &str) -> String {
    let parts: Vec<String> = date
        .split('-')
        .map(|p| {
            let t = p.trim_start_matches('0');
            if t.is_empty() { "0" } else { t }.to_string()
        })
        .collect();
    parts.join(".")
}

/// `companies` → `company`, `contacts` → `contact` (resource names are plural nouns).
fn singular(plural: &str) -> String {
    if let Some(stem) = plural.strip_suffix("ies") {
        format!("{stem}y")
    } else if let Some(stem) = plural.strip_suffix("ses") {
        format!("{stem}s")
    } else if let Some(stem) = plural.strip_suffix('s') {
        stem.to_string()
    } else {
        plural.to_string()
    }
}

/// `line_item` → `LineItem`.
fn pascal(s: &str) -> String {
    s.split('_')
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut c = w.chars();
            match c.next() {
                Some(f) => f.to_ascii_uppercase().to_string() + c.as_str(),
                None => String::new(),
            }
        })
        .collect()
}

/// `job_title` → `job title`.
fn words(s: &str) -> String {
    s.replace('_', " ")
}

/// `[a, b, c]` → `a, b and c`.
fn list_words(items: Vec<String>) -> String {
    match items.as_slice() {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

fn article(noun: &str) -> &'static str {
    match noun.chars().next() {
        Some('a' | 'e' | 'i' | 'o' | 'u') => "an",
        _ => "a",
    }
}

fn id_pattern(prefix: &str) -> String {
    format!("^{prefix}_[A-Za-z0-9_-]+$")
}

fn example_id(prefix: &str) -> String {
    format!("{prefix}_Xq3Lr0s9TbW2mN7vYc4pKaE1")
}

fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn response_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/responses/{name}") })
}

fn header_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/headers/{name}") })
}

fn param_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/parameters/{name}") })
}

/// Adds `null` to a schema: a type array where possible (OpenAPI 3.1 has no `nullable`).
fn or_null(mut schema: Value) -> Value {
    let simple = schema.get("$ref").is_none()
        && schema.get("oneOf").is_none()
        && schema.get("anyOf").is_none();
    if let (true, Some(obj)) = (simple, schema.as_object_mut()) {
        if let Some(Value::String(t)) = obj.get("type").cloned() {
            obj.insert("type".into(), json!([t, "null"]));
            if let Some(Value::Array(e)) = obj.get_mut("enum") {
                e.push(Value::Null);
            }
            return schema;
        }
    }
    json!({ "anyOf": [schema, {"type": "null"}] })
}

/// Puts annotation members (description, readOnly, default, …) beside a schema.
fn annotate(mut schema: Value, notes: Map<String, Value>) -> Value {
    if notes.is_empty() {
        return schema;
    }
    match schema.as_object_mut() {
        Some(obj) if obj.get("$ref").is_none() => {
            for (k, v) in notes {
                obj.insert(k, v);
            }
            schema
        }
        _ => {
            let mut obj = Map::new();
            obj.insert("allOf".into(), json!([schema]));
            obj.extend(notes);
            Value::Object(obj)
        }
    }
}

// ---------------------------------------------------------------- the generator

/// Which side of the API a field schema describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dir {
    /// Responses: every field, read-only ones marked.
    Read,
    /// `POST /v1/{resource}`: writable and create-only fields, required ones required.
    Create,
    /// `PATCH /v1/{resource}/{id}`: writable fields, none required.
    Update,
    /// Action inputs and sub-objects: written whole, required ones required.
    Input,
}

/// The operations of one resource, in document order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OpKind {
    Create,
    Search,
    Get,
    Update,
    Delete,
}

impl OpKind {
    fn name(self) -> &'static str {
        match self {
            OpKind::Create => "create",
            OpKind::Search => "search",
            OpKind::Get => "get",
            OpKind::Update => "update",
            OpKind::Delete => "delete",
        }
    }
}

struct Gen<'a> {
    plan: &'a Plan,
    settings: &'a Settings,
    release: &'a Release,
    schemas: Map<String, Value>,
    /// Components defined while building others (filter variants, attachments).
    defined: std::cell::RefCell<Map<String, Value>>,
}

impl<'a> Gen<'a> {
    fn new(plan: &'a Plan, settings: &'a Settings, release: &'a Release) -> Gen<'a> {
        Gen {
            plan,
            settings,
            release,
            schemas: Map::new(),
            defined: Default::default(),
        }
    }

    /// Defines the component schema `name` (once) and answers a reference to it.
    fn define(&self, name: &str, schema: Value) -> Value {
        self.defined
            .borrow_mut()
            .entry(name.to_string())
            .or_insert(schema);
        schema_ref(name)
    }

    /// The fields of `res` as clients of this release see them. Every release shows the
    /// mapping's fields today; per-release transforms (renames, reshapes) plug in here.
    fn fields<'r>(&self, res: &'r Resource) -> Cow<'r, [Field]> {
        use crate::mapping::model::{Change, Codec};
        let changes =
            crate::mapping::versions::pending(&self.plan.versions, &self.release.date, &res.name);
        if changes.is_empty() {
            return Cow::Borrowed(&res.fields);
        }
        // Undo each later change, newest first, as the responses of this release do.
        let mut fields = res.fields.clone();
        for c in changes.iter().rev() {
            match c {
                Change::Rename { from, to, .. } => {
                    for f in fields.iter_mut().filter(|f| &f.name == to) {
                        f.name = from.clone();
                    }
                }
                Change::Nest {
                    into,
                    members,
                    numbers_as_decimals,
                    ..
                } => {
                    let Some(pos) = fields.iter().position(|f| &f.name == into) else {
                        continue;
                    };
                    let outer = fields.remove(pos);
                    let Codec::Object { fields: subs, .. } = &outer.codec else {
                        continue;
                    };
                    for (i, (old, member)) in members.iter().enumerate() {
                        let Some(sub) = subs.iter().find(|s| &s.name == member) else {
                            continue;
                        };
                        let mut f = sub.clone();
                        f.name = old.clone();
                        f.nullable = outer.nullable || sub.nullable;
                        f.required = outer.required && sub.required;
                        f.access = outer.access;
                        if numbers_as_decimals.contains(old) {
                            f.codec = Codec::Number { scale: 1.0 };
                        }
                        if i == 0 {
                            f.sort = outer.sort.clone();
                            f.filters = outer.filters.clone();
                        }
                        fields.insert(pos + i, f);
                    }
                }
            }
        }
        Cow::Owned(fields)
    }

    fn type_url(&self, kind: Kind) -> String {
        format!("{}{}", self.settings.problem_type_base, kind.slug())
    }

    fn document(mut self) -> Value {
        let mut paths = Map::new();
        let mut tags = Vec::new();
        for res in self.plan.resources.values() {
            tags.push(json!({
                "name": res.name,
                "description": res.description.clone().unwrap_or_else(|| words(&res.name)),
            }));
            self.resource_schemas(res);
            self.resource_paths(res, &mut paths);
        }
        self.problem_schemas();
        self.schemas.insert(
            "ApiVersion".into(),
            json!({
                "type": "string",
                "enum": [self.release.date],
                "description": "The release this document describes; send it as the `Version` header of every request.",
            }),
        );
        let defined = std::mem::take(&mut *self.defined.borrow_mut());
        for (k, v) in defined {
            self.schemas.entry(k).or_insert(v);
        }
        self.schemas.sort_keys();
        let mut components = Map::new();
        components.insert(
            "schemas".into(),
            Value::Object(std::mem::take(&mut self.schemas)),
        );
        components.insert("responses".into(), self.problem_responses());
        components.insert("parameters".into(), self.parameters());
        components.insert("headers".into(), self.headers());
        components.insert(
            "securitySchemes".into(),
            json!({ "oauth2": self.security_scheme() }),
        );
        json!({
            "openapi": OPENAPI_VERSION,
            "info": self.info(),
            "servers": [{"url": "/", "description": "This edge"}],
            "tags": tags,
            "paths": paths,
            "components": components,
        })
    }

    fn info(&self) -> Value {
        let v = &self.plan.versions;
        let releases: Vec<String> = v
            .releases
            .iter()
            .filter(|r| !r.retired)
            .map(|r| {
                let mut line = format!("- `{}`", r.date);
                if r.date == v.current {
                    line.push_str(" (current)");
                }
                if r.deprecated {
                    line.push_str(" (deprecated");
                    if let Some(s) = &r.sunset {
                        line.push_str(&format!(", sunset {s}"));
                    }
                    line.push(')');
                }
                line
            })
            .collect();
        let mut description = format!(
            "The public REST API of ProspectConnect, release `{}`.\n\n\
             This document is generated by the edge from the same mapping files that drive it; \
             other releases: `GET /v1/openapi.json?version=YYYY-MM-DD`.\n\n\
             **Releases**\n\n{}\n\n\
             **Authentication**: an OAuth 2.0 access token (RFC 9068 JWT) as \
             `Authorization: Bearer <token>`; each operation names the scope it needs, and the \
             user's CRM role must also allow it (`x-required-permission`).\n\n\
             **Versions**: every request sends `Version: {}`; the response echoes it.\n\n\
             **Errors**: every error is `application/problem+json` (RFC 9457) whose `type` ends \
             with a slug (`{}<slug>`); 400s name every offending member by JSON pointer in \
             `errors`.\n\n\
             **Lists**: `POST /v1/{{resource}}/search` answers `{{data, meta: {{cursor, total?}}}}`; \
             send `meta.cursor` back as `cursor` for the next page (null on the last one).",
            self.release.date,
            releases.join("\n"),
            self.release.date,
            self.settings.problem_type_base,
        );
        if self.release.deprecated {
            description.push_str(&format!(
                "\n\n**This release is deprecated**{}: responses carry `Deprecation` and `Sunset`.",
                self.release
                    .sunset
                    .as_ref()
                    .map(|s| format!(" and stops working on {s}"))
                    .unwrap_or_default()
            ));
        }
        let mut info = json!({
            "title": TITLE,
            "version": package_version(&self.release.date),
            "summary": format!("The {} of the ProspectConnect CRM.", list_words(self.plan.resources.keys().map(|r| words(r)).collect())),
            "description": description,
        });
        if let Some(obj) = info.as_object_mut() {
            obj.insert(
                "contact".into(),
                json!({"name": "ProspectConnect API team", "url": "https://papi.trendev.in/docs"}),
            );
            obj.insert(
                "license".into(),
                json!({"name": "Proprietary", "url": "https://papi.trendev.in/terms"}),
            );
            // `info.version` must be a package version for generators; the release itself:
            obj.insert(
                "x-api-version".into(),
                Value::from(self.release.date.as_str()),
            );
            obj.insert("x-current-version".into(), Value::from(v.current.as_str()));
            obj.insert("x-supported-versions".into(), json!(v.supported()));
            if self.release.deprecated {
                obj.insert("x-deprecated".into(), Value::Bool(true));
                if let Some(s) = &self.release.sunset {
                    obj.insert("x-sunset".into(), Value::from(s.as_str()));
                }
            }
        }
        info
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped() -> Plan {
        crate::mapping::load_shipped().expect("shipped mappings compile")
    }

    fn settings() -> Settings {
        Settings::new("https://t.example/p/", Some("https://issuer.example/"))
    }

    /// Every `$ref` of the document points at something it defines.
    fn refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    match (k.as_str(), x) {
                        ("$ref", Value::String(s)) => out.push(s.clone()),
                        _ => refs(x, out),
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
            _ => {}
        }
    }

    #[test]
    fn every_ref_resolves_in_every_release() {
        let plan = shipped();
        for v in plan.versions.supported() {
            let doc = document(&plan, &settings(), &v).expect("doc");
            let mut all = Vec::new();
            refs(&doc, &mut all);
            assert!(all.len() > 100, "{}", all.len());
            for r in all {
                let ptr = r.strip_prefix('#').expect("local ref");
                let ptr = ptr.replace("~1", "/");
                assert!(doc.pointer(&ptr).is_some(), "{v}: dangling {r}");
            }
        }
    }

    #[test]
    fn unknown_version_is_unsupported_version() {
        let plan = shipped();
        let p = document(&plan, &settings(), "2020-01-01").expect_err("unknown");
        assert_eq!(p.kind, Kind::UnsupportedVersion);
        assert_eq!(
            p.extensions["supported_versions"],
            json!(["2026-05-01", "2026-11-01"])
        );
    }

    #[test]
    fn nullable_schemas_use_type_arrays_and_enums_keep_null() {
        assert_eq!(
            or_null(json!({"type": "string", "enum": ["a"]})),
            json!({"type": ["string", "null"], "enum": ["a", null]})
        );
        assert_eq!(
            or_null(json!({"oneOf": [{"type": "object"}]})),
            json!({"anyOf": [{"oneOf": [{"type": "object"}]}, {"type": "null"}]})
        );
    }

    #[test]
    fn release_dates_become_package_versions() {
        assert_eq!(package_version("2026-11-01"), "2026.11.1");
        assert_eq!(package_version("2026-05-01"), "2026.5.1");
        let plan = shipped();
        let doc = document(&plan, &settings(), "2026-05-01").expect("doc");
        assert_eq!(doc["info"]["version"], "2026.5.1");
        assert_eq!(doc["info"]["x-api-version"], "2026-05-01");
    }

    #[test]
    fn problems_are_flat_models_sharing_problem_error() {
        let plan = shipped();
        let doc = document(&plan, &settings(), "2026-11-01").expect("doc");
        let s = &doc["components"]["schemas"];
        let p = &s["Problem.invalid-request"];
        assert!(p.get("allOf").is_none());
        assert_eq!(
            p["properties"]["errors"]["items"],
            json!({"$ref": "#/components/schemas/ProblemError"})
        );
        assert_eq!(
            p["properties"]["status"],
            json!({"type": "integer", "const": 400})
        );
        assert_eq!(
            doc["components"]["parameters"]["Version"]["schema"],
            json!({"$ref": "#/components/schemas/ApiVersion"})
        );
        assert_eq!(s["ApiVersion"]["enum"], json!(["2026-11-01"]));
    }

    #[test]
    fn names_are_singular_pascal() {
        assert_eq!(pascal(&singular("companies")), "Company");
        assert_eq!(pascal(&singular("contacts")), "Contact");
        assert_eq!(pascal(&singular("line_items")), "LineItem");
        assert_eq!(pascal(&singular("addresses")), "Address");
    }

    #[test]
    fn contact_schemas_follow_the_mapping() {
        let plan = shipped();
        let doc = document(&plan, &settings(), "2026-11-01").expect("doc");
        let s = &doc["components"]["schemas"];
        let c = &s["Contact"];
        assert_eq!(c["required"][0], "id");
        assert_eq!(c["properties"]["id"]["pattern"], "^con_[A-Za-z0-9_-]+$");
        assert_eq!(c["properties"]["created_at"]["readOnly"], true);
        assert_eq!(c["properties"]["created_at"]["format"], "date-time");
        // Responses: the known values or any other string (a later release's); never null,
        // since crm-core always holds a stage.
        let stage = &c["properties"]["lifecycle_stage"]["anyOf"];
        assert_eq!(
            stage[0]["enum"],
            json!(["subscriber", "lead", "opportunity", "customer", "other"])
        );
        assert_eq!(stage[1]["type"], "string");
        assert_eq!(stage.as_array().map(Vec::len), Some(2));
        assert!(c.get("additionalProperties").is_none());
        // Requests: closed; null only where the field is nullable.
        assert_eq!(
            s["ContactUpdate"]["properties"]["lifecycle_stage"]["enum"],
            json!(["subscriber", "lead", "opportunity", "customer", "other"])
        );
        assert_eq!(
            s["ContactUpdate"]["properties"]["company_id"]["type"],
            json!(["string", "null"])
        );
        // A variant written as a string on create is just a string.
        assert_eq!(
            s["ActivityCreate"]["properties"]["summary"]["type"],
            json!("string")
        );
        assert_eq!(s["ContactUpdate"]["additionalProperties"], false);
        assert_eq!(s["ContactCreate"]["required"], json!(["email"]));
        assert!(s["ContactCreate"]["properties"].get("created_at").is_none());
        assert!(s["ContactUpdate"].get("required").is_none());
        // Deals: create-only fields are writable on create only; money is an object or null.
        assert!(s["DealCreate"]["properties"].get("pipeline_id").is_some());
        assert!(s["DealUpdate"]["properties"].get("pipeline_id").is_none());
        assert_eq!(
            s["Deal"]["properties"]["amount"]["type"],
            json!(["object", "null"])
        );
        assert_eq!(
            s["DealCreate"]["properties"]["amount"]["properties"]["value"]["pattern"],
            DECIMAL_WRITE_PATTERN
        );
        // Tasks have no total; pipelines are paged by the edge, which counts them.
        assert_eq!(
            s["TaskPage"]["properties"]["meta"]["required"],
            json!(["cursor"])
        );
        assert_eq!(
            s["PipelinePage"]["properties"]["meta"]["required"],
            json!(["cursor", "total"])
        );
        // Notes sort only their fixed default order: the object itself, no one-branch oneOf.
        assert!(s["NoteSort"].get("oneOf").is_none());
        assert_eq!(
            s["NoteSort"]["properties"],
            json!({
                "field": {"type": "string", "const": "created_at"},
                "direction": {"type": "string", "const": "desc"},
            })
        );
        assert_eq!(s["NoteSort"]["required"], json!(["field", "direction"]));
        // Contacts sort several ways: one named component each.
        assert_eq!(
            s["ContactSort"]["oneOf"][0],
            json!({"$ref": "#/components/schemas/ContactSortByLastName"})
        );
        // No request default: `limit` and `direction` say theirs in words.
        assert!(s["ContactSearch"]["properties"]["limit"]
            .get("default")
            .is_none());
        assert!(s["ContactSortByLastName"]["properties"]["direction"]
            .get("default")
            .is_none());
    }

    #[test]
    fn filters_are_one_variant_per_operator_group() {
        let plan = shipped();
        let doc = document(&plan, &settings(), "2026-11-01").expect("doc");
        let s = &doc["components"]["schemas"];
        let variants = s["ContactFilter"]["oneOf"].as_array().expect("variants");
        let names: Vec<&str> = variants
            .iter()
            .filter_map(|v| v["$ref"].as_str())
            .map(|r| r.trim_start_matches("#/components/schemas/"))
            .collect();
        assert_eq!(
            names,
            [
                "ContactFilterFirstNameEq",
                "ContactFilterFirstNameContains",
                "ContactFilterLastNameEq",
                "ContactFilterLastNameContains",
                "ContactFilterEmailEq",
                "ContactFilterEmailContains",
                "ContactFilterEmailHasValue",
                "ContactFilterJobTitleEq",
                "ContactFilterJobTitleContains",
                "ContactFilterCompanyIdEq",
                "ContactFilterCompanyIdIn",
                "ContactFilterOwnerIdEq",
                "ContactFilterOwnerIdIn",
                "ContactFilterLifecycleStageEq",
                "ContactFilterLifecycleStageInNotIn",
                "ContactFilterCreatedAtGtGteLtLte",
                "ContactFilterCreatedAtBetween",
                "ContactFilterUpdatedAtGtGteLtLte",
                "ContactFilterUpdatedAtBetween",
            ]
        );
        for n in names {
            assert!(s[n]["properties"]["field"]["const"].is_string(), "{n}");
            assert!(
                s[n].get("title").is_none(),
                "{n}: titles name generated models"
            );
        }
        assert_eq!(
            s["TaskFilterAttachedToIdEq"]["properties"]["field"]["const"],
            "attached_to.id"
        );
    }
}
