//! Raw mapping files → the compiled [`Plan`], with every error located.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use indexmap::IndexMap;
use marked_yaml::{Span, Spanned};
use serde_json::Value;

use super::model::*;
use super::raw::*;
use crate::diag::{self, Diags};
use crate::problem::Kind;

/// Everything the compiler needs to know of the edge config.
pub struct Context<'a> {
    pub upstream_names: Vec<&'a str>,
}

impl Context<'static> {
    /// The six services of the legacy platform, under the names the shipped configs give
    /// them.
    pub fn legacy() -> Context<'static> {
        Context {
            upstream_names: vec![
                "crm-core",
                "sales",
                "workflow",
                "engagements",
                "audit",
                "iam",
            ],
        }
    }
}

/// The shipped `mappings/` compiled against [`Context::legacy`] (tests, benches, fuzzing).
pub fn load_shipped() -> Result<Plan, Diags> {
    load_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings"),
        &Context::legacy(),
    )
}

/// Loads every `*.yaml` of `dir` and compiles the plan, or returns every error found.
pub fn load_dir(dir: &Path, ctx: &Context) -> Result<Plan, Diags> {
    let mut d = Diags::default();
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
            .collect(),
        Err(e) => {
            d.file(dir, format!("cannot read mapping directory: {e}"));
            return Err(d);
        }
    };
    files.sort();
    let services_path = dir.join("services.yaml");
    let versions_path = dir.join("versions.yaml");
    let mut services = HashMap::new();
    if let Some(node) = diag::load(&services_path, &mut d) {
        if let Some(raw) = diag::de::<RawServices>(&services_path, &node, &mut d) {
            for (name, s) in &raw.services {
                if let Some(svc) = compile_service(&services_path, name, s, ctx, &mut d) {
                    services.insert(name.clone(), svc);
                }
            }
        }
    }
    let mut versions = None;
    let mut raw_versions = None;
    if let Some(node) = diag::load(&versions_path, &mut d) {
        if let Some(raw) = diag::de::<RawVersions>(&versions_path, &node, &mut d) {
            versions = compile_versions(&versions_path, &raw, &mut d);
            raw_versions = Some(raw);
        }
    }
    let mut resources = IndexMap::new();
    let mut prefixes = HashMap::new();
    let mut count = 2;
    for path in files {
        if path == services_path || path == versions_path {
            continue;
        }
        count += 1;
        let Some(node) = diag::load(&path, &mut d) else {
            continue;
        };
        let Some(raw) = diag::de::<RawResource>(&path, &node, &mut d) else {
            continue;
        };
        let fields = diag::de_entries::<RawField>(
            &path,
            node.as_mapping().and_then(|m| m.get_node("fields")),
            &mut d,
        );
        let actions = diag::de_entries::<RawAction>(
            &path,
            node.as_mapping().and_then(|m| m.get_node("actions")),
            &mut d,
        );
        let mut sources = Vec::new();
        if let Some(map) = node
            .as_mapping()
            .and_then(|m| m.get_node("sources"))
            .and_then(|n| n.as_mapping())
        {
            for (name, snode) in map.iter() {
                let Some(rs) = diag::de::<RawSource>(&path, snode, &mut d) else {
                    continue;
                };
                let sfields = diag::de_entries::<RawField>(
                    &path,
                    snode.as_mapping().and_then(|m| m.get_node("fields")),
                    &mut d,
                );
                sources.push((name.as_str().to_string(), rs, sfields));
            }
        }
        let mut c = Compiler {
            path: &path,
            d: &mut d,
            services: &services,
            current: None,
        };
        let compiled = if raw.sources.is_some() {
            c.multi(&raw, &sources)
        } else {
            c.resource(&raw, &fields, &actions)
        };
        if let Some(r) = compiled {
            if resources.contains_key(&r.name) {
                d.at(
                    &path,
                    raw.resource.span(),
                    format!("resource `{}` is declared twice", r.name),
                );
                continue;
            }
            if let Some(other) = prefixes.insert(r.prefix.clone(), r.name.clone()) {
                d.at(
                    &path,
                    raw.prefix.span(),
                    format!("prefix `{}` is already used by `{other}`", r.prefix),
                );
            }
            resources.insert(r.name.clone(), Arc::new(r));
        }
    }
    check_refs(&resources, &prefixes, &mut d, dir);
    resolve_changes(&mut resources, &mut d, dir);
    if let Some(raw) = &raw_versions {
        super::versions_check::check(&versions_path, raw, &resources, &mut d);
    }
    match versions {
        Some(versions) if d.is_empty() => Ok(Plan {
            resources,
            services,
            versions,
            prefixes,
            files: count,
        }),
        _ => Err(d),
    }
}

/// One entry of a resource's `sources`: its name, its body and its fields, parsed.
type SourceEntry = (
    String,
    RawSource,
    Vec<(marked_yaml::types::MarkedScalarNode, RawField)>,
);

/// Fills each `changes` field's tables from the resources it names (all compiled by now).
fn resolve_changes(resources: &mut IndexMap<String, Arc<Resource>>, d: &mut Diags, dir: &Path) {
    fn table(res: &Resource) -> Vec<(String, Field)> {
        res.fields
            .iter()
            .filter_map(|f| f.from.as_ref().map(|p| (p.dotted(), f.clone())))
            .collect()
    }
    fn fill(
        fields: &mut [Field],
        all: &IndexMap<String, Arc<Resource>>,
        missing: &mut Vec<String>,
    ) {
        for f in fields {
            match &mut f.codec {
                Codec::Changes(c) => {
                    c.tables = c
                        .entities
                        .iter()
                        .map(|(code, name)| match all.get(name) {
                            Some(r) => (code.clone(), table(r)),
                            None => {
                                missing.push(name.clone());
                                (code.clone(), Vec::new())
                            }
                        })
                        .collect();
                }
                Codec::Object { fields, .. } => fill(fields, all, missing),
                _ => {}
            }
        }
    }
    let snapshot = resources.clone();
    for (name, res) in resources.iter_mut() {
        let mut missing = Vec::new();
        let mut r = (**res).clone();
        fill(&mut r.fields, &snapshot, &mut missing);
        r.sources = r
            .sources
            .iter()
            .map(|s| {
                let mut s = (**s).clone();
                fill(&mut s.fields, &snapshot, &mut missing);
                Arc::new(s)
            })
            .collect();
        for m in missing {
            d.file(
                &dir.join(format!("{name}.yaml")),
                format!("`changes` names resource `{m}`, which is not declared"),
            );
        }
        *res = Arc::new(r);
    }
}

/// Known prefixes that are not resources of their own.
const EXTRA_PREFIXES: [&str; 2] = ["usr", "stage"];

fn check_refs(
    resources: &IndexMap<String, Arc<Resource>>,
    prefixes: &HashMap<String, String>,
    d: &mut Diags,
    dir: &Path,
) {
    fn refs(fields: &[Field], out: &mut Vec<(String, String)>) {
        for f in fields {
            match &f.codec {
                Codec::Id { prefix } | Codec::IdList { prefix } => {
                    out.push((f.name.clone(), prefix.clone()))
                }
                Codec::Object { fields, .. } | Codec::List { fields } => refs(fields, out),
                Codec::Attachment(a) => {
                    for k in &a.kinds {
                        out.push((f.name.clone(), k.prefix.clone()));
                    }
                }
                _ => {}
            }
        }
    }
    for r in resources.values() {
        let mut out = Vec::new();
        refs(&r.fields, &mut out);
        for (field, prefix) in out {
            if !prefixes.contains_key(&prefix) && !EXTRA_PREFIXES.contains(&prefix.as_str()) {
                d.file(
                    &dir.join(format!("{}.yaml", r.name)),
                    format!(
                        "field `{field}` refers to prefix `{prefix}`, which no resource declares"
                    ),
                );
            }
        }
    }
}

fn slug(path: &Path, s: &Spanned<String>, d: &mut Diags) -> Option<Kind> {
    let k = Kind::from_slug(s.as_str());
    if k.is_none() {
        d.at(
            path,
            s.span(),
            format!(
                "`{}` is not a problem slug of the public contract",
                s.as_str()
            ),
        );
    }
    k
}

fn pointer(path: &Path, s: &Spanned<String>, d: &mut Diags) -> Option<String> {
    if !s.is_empty() && !s.starts_with('/') {
        d.at(
            path,
            s.span(),
            format!("`{}` is not a JSON pointer (start it with /)", s.as_str()),
        );
        return None;
    }
    Some(s.to_string())
}

fn compile_service(
    path: &Path,
    name: &str,
    s: &RawService,
    ctx: &Context,
    d: &mut Diags,
) -> Option<Service> {
    if !ctx.upstream_names.contains(&name) {
        d.file(
            path,
            format!(
                "service `{name}` has no upstream in the edge config (upstreams: {})",
                ctx.upstream_names.join(", ")
            ),
        );
    }
    let text_errors = match s.errors.as_ref().map(|e| e.as_str()) {
        None | Some("json") => false,
        Some("text") => true,
        Some(other) => {
            if let Some(e) = &s.errors {
                d.at(
                    path,
                    e.span(),
                    format!("errors: `{other}` must be json or text"),
                );
            }
            false
        }
    };
    let mut codes = HashMap::new();
    for (code, sl) in &s.codes {
        if let Some(k) = slug(path, sl, d) {
            codes.insert(code.clone(), k);
        }
    }
    let mut statuses = HashMap::new();
    for (st, sl) in &s.statuses {
        match st.parse::<u16>() {
            Ok(n) if (400..600).contains(&n) => {
                if let Some(k) = slug(path, sl, d) {
                    statuses.insert(n, k);
                }
            }
            _ => d.at(
                path,
                sl.span(),
                format!("`{st}` is not an HTTP error status"),
            ),
        }
    }
    let conventions = conventions(path, s, d);
    Some(Service {
        name: name.to_string(),
        conventions,
        text_errors,
        success: s.success.as_ref().and_then(|p| pointer(path, p, d)),
        result: s.result.as_ref().and_then(|p| pointer(path, p, d)),
        code: s.code.as_ref().and_then(|p| pointer(path, p, d)),
        field_errors: s
            .field_errors
            .as_ref()
            .and_then(|f| pointer(path, &f.at, d).map(|p| (p, UpPath::parse(&f.field)))),
        codes,
        statuses,
    })
}

fn header_name(path: &Path, s: &Spanned<String>, d: &mut Diags) -> Option<http::HeaderName> {
    match http::HeaderName::from_bytes(s.as_bytes()) {
        Ok(h) => Some(h),
        Err(_) => {
            d.at(
                path,
                s.span(),
                format!("`{}` is not a header name", s.as_str()),
            );
            None
        }
    }
}

/// A service's trust placement, static headers and media type.
fn conventions(path: &Path, s: &RawService, d: &mut Diags) -> Conventions {
    let mut c = Conventions::platform();
    if let Some(t) = &s.trust {
        let mut place = |p: &Option<RawPlace>, what: &str, var: Var, c: &mut Conventions| {
            let Some(p) = p else {
                if what != "request_id" {
                    d.file(
                        path,
                        format!(
                            "service `trust` must say where `{what}` goes (header, query or path: true)"
                        ),
                    );
                }
                return Place::Nowhere;
            };
            match (&p.header, &p.query, &p.path) {
                (Some(h), None, None) => header_name(path, h, d)
                    .map(Place::Header)
                    .unwrap_or(Place::Nowhere),
                (None, Some(q), None) => Place::Query(q.to_string()),
                (None, None, Some(b)) if **b => {
                    c.in_path.push(var);
                    Place::Nowhere
                }
                _ => {
                    let span = p
                        .header
                        .as_ref()
                        .or(p.query.as_ref())
                        .map(|x| *x.span())
                        .or(p.path.as_ref().map(|x| *x.span()));
                    let msg =
                        format!("trust `{what}`: exactly one of `header`, `query` or `path: true`");
                    match span {
                        Some(sp) => d.at(path, &sp, msg),
                        None => d.file(path, msg),
                    }
                    Place::Nowhere
                }
            }
        };
        c.tenant = place(&t.tenant, "tenant", Var::Tenant, &mut c);
        c.user = place(&t.user, "user", Var::User, &mut c);
        c.request_id = place(&t.request_id, "request_id", Var::RequestId, &mut c);
    }
    if let Some(m) = &s.media_type {
        match http::HeaderValue::from_str(m) {
            Ok(v) if m.contains('/') => {
                c.headers = vec![(http::header::ACCEPT, v.clone())];
                c.media_type = v;
            }
            _ => d.at(
                path,
                m.span(),
                format!("`{}` is not a media type", m.as_str()),
            ),
        }
    }
    for (k, v) in &s.headers {
        let Ok(name) = http::HeaderName::from_bytes(k.as_bytes()) else {
            d.at(path, v.span(), format!("`{k}` is not a header name"));
            continue;
        };
        match http::HeaderValue::from_str(v) {
            Ok(hv) => {
                c.headers.retain(|(n, _)| n != name);
                c.headers.push((name, hv));
            }
            Err(_) => d.at(path, v.span(), "not a valid header value"),
        }
    }
    c
}

/// Parses a `{var}` template; every hole must name a known value.
pub fn parse_tpl(s: &str) -> Result<Tpl, String> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(i) = rest.find('{') {
        if i > 0 {
            out.push(Piece::Lit(rest[..i].to_string()));
        }
        let Some(j) = rest[i..].find('}') else {
            return Err(format!("`{s}`: a `{{` is not closed"));
        };
        let name = &rest[i + 1..i + j];
        match Var::parse(name) {
            Some(v) => out.push(Piece::Var(v)),
            None => {
                return Err(format!(
                    "`{{{name}}}` is not a template value (id, tenant, user, request_id, size)"
                ))
            }
        }
        rest = &rest[i + j + 1..];
    }
    if !rest.is_empty() {
        out.push(Piece::Lit(rest.to_string()));
    }
    Ok(Tpl(out))
}

fn is_date(s: &str) -> bool {
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok() && s.len() == 10
}

fn compile_versions(path: &Path, raw: &RawVersions, d: &mut Diags) -> Option<Versions> {
    let mut releases = Vec::new();
    for (date, r) in &raw.releases {
        if !is_date(date) {
            d.file(path, format!("release `{date}` is not a YYYY-MM-DD date"));
            continue;
        }
        if let Some(s) = &r.sunset {
            if !is_date(s) {
                d.at(path, s.span(), "sunset must be a YYYY-MM-DD date");
            }
        }
        let mut changes = Vec::new();
        for c in &r.changes {
            match (&c.rename, &c.nest) {
                (Some(rn), None) => changes.push(Change::Rename {
                    resource: c.resource.to_string(),
                    from: rn.from.to_string(),
                    to: rn.to.to_string(),
                }),
                (None, Some(n)) => changes.push(Change::Nest {
                    resource: c.resource.to_string(),
                    into: n.into.to_string(),
                    members: n
                        .members
                        .iter()
                        .map(|(old, new)| (old.clone(), new.to_string()))
                        .collect(),
                    numbers_as_decimals: n
                        .numbers_as_decimals
                        .iter()
                        .map(|x| x.to_string())
                        .collect(),
                }),
                _ => d.at(
                    path,
                    c.resource.span(),
                    "a change is exactly one of `rename` or `nest`",
                ),
            }
        }
        releases.push(Release {
            date: date.clone(),
            deprecated: r.deprecated,
            sunset: r.sunset.as_ref().map(|s| s.to_string()),
            retired: r.retired,
            changes,
        });
    }
    releases.sort_by(|a, b| a.date.cmp(&b.date));
    if !releases
        .iter()
        .any(|r| r.date == *raw.current && !r.retired)
    {
        d.at(
            path,
            raw.current.span(),
            format!("current `{}` is not a live release", raw.current.as_str()),
        );
        return None;
    }
    Some(Versions {
        current: raw.current.to_string(),
        releases,
    })
}

/// A scalar from YAML: marked YAML has only strings, so numbers and booleans are recognised.
pub fn scalar(s: &str) -> Value {
    if let Ok(n) = s.parse::<i64>() {
        return Value::from(n);
    }
    if let Ok(f) = s.parse::<f64>() {
        if s.contains('.') {
            return Value::from(f);
        }
    }
    match s {
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        "null" | "~" => Value::Null,
        _ => Value::from(s),
    }
}

/// A `const` value: JSON when it parses as JSON (`[]`, `{}`), else a scalar.
fn json_scalar(s: &str) -> Value {
    if s.starts_with('[') || s.starts_with('{') {
        if let Ok(v) = serde_json::from_str(s) {
            return v;
        }
    }
    scalar(s)
}

fn template(v: &Value) -> Value {
    match v {
        Value::String(s) if s.starts_with('$') => v.clone(),
        Value::String(s) => scalar(s),
        Value::Object(m) => {
            Value::Object(m.iter().map(|(k, v)| (k.clone(), template(v))).collect())
        }
        Value::Array(a) => Value::Array(a.iter().map(template).collect()),
        other => other.clone(),
    }
}

struct Compiler<'a> {
    path: &'a Path,
    d: &'a mut Diags,
    services: &'a HashMap<String, Service>,
    /// The service of the resource (or source) being compiled.
    current: Option<String>,
}

impl Compiler<'_> {
    fn err(&mut self, span: &Span, msg: impl Into<String>) {
        self.d.at(self.path, span, msg);
    }

    fn call(&mut self, s: &Spanned<String>, body: Option<&Spanned<Value>>) -> Option<Call> {
        let (m, rest) = s.split_once(' ').unwrap_or(("", s.as_str()));
        let method = match m {
            "GET" => Method::Get,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "PATCH" => Method::Patch,
            "DELETE" => Method::Delete,
            _ => {
                self.err(
                    s.span(),
                    format!(
                        "call `{}` must be `METHOD /path` (GET, POST, PUT, PATCH or DELETE)",
                        s.as_str()
                    ),
                );
                return None;
            }
        };
        let rest = rest.trim();
        if !rest.starts_with('/') {
            self.err(s.span(), "the call's path must start with /");
            return None;
        }
        let (p, q) = rest.split_once('?').unwrap_or((rest, ""));
        let mut query = Vec::new();
        for kv in q.split('&').filter(|kv| !kv.is_empty()) {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            match parse_tpl(v) {
                Ok(t) => query.push((k.to_string(), t)),
                Err(e) => self.err(s.span(), e),
            }
        }
        let path = match parse_tpl(p) {
            Ok(t) => t,
            Err(e) => {
                self.err(s.span(), e);
                return None;
            }
        };
        if path.uses(Var::Size) {
            self.err(
                s.span(),
                "`{size}` is a value of a search's paging, not of a path",
            );
        }
        if let Some(svc) = self.current.as_deref().and_then(|n| self.services.get(n)) {
            for v in &svc.conventions.in_path {
                if !path.uses(*v) {
                    let name = if *v == Var::Tenant { "tenant" } else { "user" };
                    self.err(
                        s.span(),
                        format!(
                            "service `{}` takes the {name} in the path: the call needs `{{{name}}}`",
                            svc.name
                        ),
                    );
                }
            }
        }
        Some(Call {
            method,
            path,
            query,
            headers: Vec::new(),
            body: body.map(|b| template(b)),
            record: None,
            id_from: None,
        })
    }

    /// Per-call headers (templates).
    fn headers(&mut self, raw: &IndexMap<String, Spanned<String>>) -> Vec<(http::HeaderName, Tpl)> {
        let mut out = Vec::new();
        for (k, v) in raw {
            let Ok(name) = http::HeaderName::from_bytes(k.as_bytes()) else {
                self.err(v.span(), format!("`{k}` is not a header name"));
                continue;
            };
            if http::HeaderValue::from_str(v).is_err() {
                self.err(v.span(), "not a valid header value");
                continue;
            }
            match parse_tpl(v) {
                Ok(t) => out.push((name, t)),
                Err(e) => self.err(v.span(), e),
            }
        }
        out
    }

    /// A whole `RawCall`: the call line, its body, headers, record pointer and id source.
    fn full_call(&mut self, c: &RawCall) -> Option<Call> {
        let mut call = self.call(&c.call, c.body.as_ref())?;
        call.headers = self.headers(&c.headers);
        call.record = c
            .record
            .as_ref()
            .and_then(|p| pointer(self.path, p, self.d));
        if let Some(idf) = &c.id_from {
            call.id_from = match (&idf.pointer, &idf.header) {
                (Some(p), None) => pointer(self.path, p, self.d).map(IdFrom::Pointer),
                (None, Some(h)) => {
                    let name = header_name(self.path, h, self.d)?;
                    let pattern = idf.pattern.as_ref().map(|p| p.as_str()).unwrap_or("{id}");
                    match pattern.split_once("{id}") {
                        Some((before, after)) if !after.contains("{id}") => Some(IdFrom::Header {
                            name,
                            before: before.to_string(),
                            after: after.to_string(),
                        }),
                        _ => {
                            self.err(
                                idf.pattern.as_ref().map(|p| p.span()).unwrap_or(h.span()),
                                "id_from: the pattern needs exactly one `{id}`",
                            );
                            None
                        }
                    }
                }
                _ => {
                    self.err(
                        c.call.span(),
                        "id_from needs exactly one of `pointer` or `header` (with `pattern`)",
                    );
                    None
                }
            };
        }
        Some(call)
    }

    fn time_format(&mut self, f: Option<&Spanned<String>>, span: &Span) -> Option<TimeFormat> {
        let Some(f) = f else {
            self.err(
                span,
                "a timestamp or date needs `format` (epoch_ms, epoch_s, aspnet, sql_utc, rfc3339 or iso8601_offset)",
            );
            return None;
        };
        Some(match f.as_str() {
            "epoch_ms" => TimeFormat::EpochMs,
            "epoch_s" => TimeFormat::EpochS,
            "aspnet" => TimeFormat::AspNet,
            "sql_utc" => TimeFormat::SqlUtc,
            "rfc3339" => TimeFormat::Rfc3339,
            "iso8601_offset" => TimeFormat::Iso8601Offset,
            other => {
                self.err(
                    f.span(),
                    format!("format `{other}` is not one of epoch_ms, epoch_s, aspnet, sql_utc, rfc3339, iso8601_offset"),
                );
                return None;
            }
        })
    }

    fn prefix(&mut self, r: Option<&Spanned<String>>, span: &Span, what: &str) -> Option<String> {
        match r {
            Some(p) if valid_prefix(p) => Some(p.to_string()),
            Some(p) => {
                self.err(
                    p.span(),
                    format!("`{}` is not a prefix (lowercase letters)", p.as_str()),
                );
                None
            }
            None => {
                self.err(
                    span,
                    format!("{what} needs `ref` (the prefix of the ids it holds)"),
                );
                None
            }
        }
    }

    fn field(
        &mut self,
        name: &str,
        span: &Span,
        f: &RawField,
        search: Option<&FilterStyle>,
    ) -> Option<Field> {
        if !valid_name(name) {
            self.err(span, format!("field name `{name}` must be snake_case"));
        }
        let ty = f.ty.as_ref().map(|t| t.as_str()).unwrap_or("string");
        let tspan = f.ty.as_ref().map(|t| *t.span()).unwrap_or(*span);
        let scale = f.scale.as_ref().map(|s| **s).unwrap_or(1.0);
        let codec = match ty {
            "string" => Codec::String,
            "integer" => Codec::Integer { scale },
            "number" => Codec::Number { scale },
            "boolean" => Codec::Boolean,
            "decimal" => Codec::Decimal,
            "string_list" => Codec::StringList,
            "json" => Codec::Json,
            "changes" => match (&f.on, &f.entities) {
                (Some(on), Some(ents)) => Codec::Changes(Changes {
                    on: UpPath::parse(on),
                    entities: ents
                        .iter()
                        .map(|(k, v)| (k.clone(), v.to_string()))
                        .collect(),
                    tables: Vec::new(),
                }),
                _ => {
                    self.err(
                        &tspan,
                        "`changes` needs `on` (the entity kind field) and `entities`",
                    );
                    return None;
                }
            },
            "timestamp" => Codec::Timestamp(self.time_format(f.format.as_ref(), &tspan)?),
            "date" => Codec::Date(self.time_format(f.format.as_ref(), &tspan)?),
            "enum" => {
                let Some(values) = &f.values else {
                    self.err(
                        &tspan,
                        "an enum needs `values` (public value: upstream code)",
                    );
                    return None;
                };
                let mut to_up = IndexMap::new();
                for (k, v) in values {
                    if !valid_name(k) {
                        self.err(
                            v.span(),
                            format!("enum value `{k}` must be lowercase snake_case"),
                        );
                    }
                    to_up.insert(k.clone(), scalar(v));
                }
                Codec::Enum { to_up }
            }
            "id" => Codec::Id {
                prefix: self.prefix(f.reference.as_ref(), &tspan, "an id field")?,
            },
            "id_list" => Codec::IdList {
                prefix: self.prefix(f.reference.as_ref(), &tspan, "an id_list field")?,
            },
            "object" | "list" => {
                let Some(sub) = &f.fields else {
                    self.err(&tspan, format!("an {ty} needs `fields`"));
                    return None;
                };
                let mut fields = Vec::new();
                for (n, rf) in sub {
                    let sp = rf.from.as_ref().map(|x| *x.span()).unwrap_or(tspan);
                    if let Some(fl) = self.field(n, &sp, rf, None) {
                        fields.push(fl);
                    }
                }
                if ty == "list" {
                    Codec::List { fields }
                } else {
                    let null_unless = match &f.null_unless {
                        Some(n) => match fields.iter().position(|x| x.name == **n) {
                            Some(i) => Some(i),
                            None => {
                                self.err(
                                    n.span(),
                                    format!("null_unless: no sub-field `{}`", n.as_str()),
                                );
                                None
                            }
                        },
                        None => None,
                    };
                    Codec::Object {
                        fields,
                        null_unless,
                    }
                }
            }
            "attachment" => Codec::Attachment(self.attachment(f, &tspan)?),
            "const" => match &f.value {
                Some(v) => Codec::Const(json_scalar(v)),
                None => {
                    self.err(&tspan, "a const needs `value`");
                    return None;
                }
            },
            "variant" => {
                let key = match (&f.by, &f.on) {
                    (Some(b), None) => VariantKey::Public(b.to_string()),
                    (None, Some(o)) => VariantKey::Upstream(UpPath::parse(o)),
                    _ => {
                        self.err(&tspan, "a variant needs exactly one of `by` (a public field) or `on` (an upstream field)");
                        return None;
                    }
                };
                let Some(raw_cases) = &f.cases else {
                    self.err(&tspan, "a variant needs `cases`");
                    return None;
                };
                let mut cases = Vec::new();
                let mut fallback = None;
                for (k, rf) in raw_cases {
                    let sp = rf.ty.as_ref().map(|x| *x.span()).unwrap_or(tspan);
                    let Some(mut cf) = self.field(name, &sp, rf, None) else {
                        continue;
                    };
                    cf.nullable = true;
                    if k == "_" {
                        fallback = Some(Box::new(cf));
                    } else {
                        cases.push((scalar(k), cf));
                    }
                }
                Codec::Variant(Variant {
                    key,
                    cases,
                    fallback,
                })
            }
            other => {
                self.err(&tspan, format!("type `{other}` is unknown (string, integer, number, boolean, decimal, timestamp, date, enum, id, id_list, object, list, string_list, attachment)"));
                return None;
            }
        };
        let needs_from = !matches!(
            codec,
            Codec::Object { .. }
                | Codec::Attachment(_)
                | Codec::Variant(_)
                | Codec::Const(_)
                | Codec::Changes(_)
        ) || (matches!(codec, Codec::Changes(_)) && f.from.is_none());
        let read_only_codec = matches!(codec, Codec::Const(_) | Codec::Json | Codec::Changes(_));
        let from = match &f.from {
            Some(p) => Some(UpPath::parse(p)),
            None if needs_from => {
                self.err(
                    span,
                    format!("field `{name}` needs `from` (where it sits upstream)"),
                );
                return None;
            }
            None => None,
        };
        let access = match (f.read_only || read_only_codec, f.create_only) {
            (true, true) => {
                self.err(span, "a field cannot be both read_only and create_only");
                Access::ReadOnly
            }
            (true, false) => Access::ReadOnly,
            (false, true) => Access::CreateOnly,
            _ => Access::ReadWrite,
        };
        let default = f.default.as_ref().map(|d| scalar(d));
        if let (Some(def), Codec::Enum { to_up }) = (&f.default, &codec) {
            if !to_up.contains_key(def.as_str()) {
                self.err(
                    def.span(),
                    format!("default `{}` is not one of the enum's values", def.as_str()),
                );
            }
        }
        let mut filters = Vec::new();
        if let Some(ops) = &f.filter {
            let Some(style) = search else {
                self.err(span, "`filter` needs a `search` operation on the resource");
                return None;
            };
            for o in ops {
                let Some(op) = Op::parse(o) else {
                    self.err(
                        o.span(),
                        format!(
                            "operator `{}` is unknown ({})",
                            o.as_str(),
                            Op::ALL.map(Op::name).join(", ")
                        ),
                    );
                    continue;
                };
                filters.push((
                    op,
                    self.filter_target(
                        op,
                        &codec,
                        from.as_ref(),
                        f.params.as_ref(),
                        style,
                        f.filter_as.as_ref().map(|s| s.as_str()),
                    ),
                ));
            }
        }
        if let Some(params) = &f.params {
            for (op, p) in params {
                if Op::parse(op).is_none() {
                    self.err(p.span(), format!("params: `{op}` is not an operator"));
                }
            }
        }
        Some(Field {
            name: name.to_string(),
            from,
            codec,
            nullable: f.nullable,
            required: f.required,
            access,
            default,
            filters,
            sort: f.sort.as_ref().map(|s| s.to_string()),
            description: f.description.clone(),
            write: f.write.as_ref().map(|w| WriteAs {
                to: w.to.as_ref().map(|t| UpPath::parse(t)),
                template: w.template.as_ref().map(|t| (**t).clone()),
            }),
        })
    }

    fn filter_target(
        &mut self,
        op: Op,
        codec: &Codec,
        from: Option<&UpPath>,
        params: Option<&IndexMap<String, Spanned<String>>>,
        style: &FilterStyle,
        filter_as: Option<&str>,
    ) -> FilterTarget {
        let param = |name: &str| params.and_then(|p| p.get(name)).map(|s| s.to_string());
        if let Some(p) = param(op.name()) {
            if p == "local" {
                return FilterTarget::Local;
            }
            let span = params
                .and_then(|m| m.get(op.name()))
                .map(|s| *s.span())
                .unwrap_or_else(Span::new_blank);
            if matches!(style, FilterStyle::WhereList) {
                self.err(
                    &span,
                    "with `filters: where_list` a parameter can only be `local`",
                );
                return FilterTarget::Local;
            }
            if !matches!(op, Op::Eq | Op::Neq | Op::Lt | Op::Lte | Op::Gt | Op::Gte) {
                self.err(
                    &span,
                    format!(
                        "`{}` cannot map to one parameter (between uses the gte and lte parameters; others can be `local`)",
                        op.name()
                    ),
                );
                return FilterTarget::Local;
            }
            return FilterTarget::Param(p);
        }
        if let FilterStyle::Dialect(d) = style {
            let name = filter_as.map(str::to_string).or(from.map(UpPath::dotted));
            return match name {
                Some(n) if d.ops.iter().any(|(o, _)| *o == op) => FilterTarget::Dialect(n),
                _ => FilterTarget::Local,
            };
        }
        if matches!(codec, Codec::Attachment(_)) {
            return if op == Op::Eq {
                FilterTarget::Attachment
            } else {
                FilterTarget::Local
            };
        }
        match style {
            FilterStyle::WhereList => match (op, from) {
                (Op::NotHasValue, _) | (_, None) => FilterTarget::Local,
                (_, Some(f)) => FilterTarget::Where(f.dotted()),
            },
            FilterStyle::Dialect(_) => FilterTarget::Local,
            FilterStyle::Params | FilterStyle::Object(_) => match op {
                Op::Eq => match from {
                    Some(f) => FilterTarget::Param(f.dotted()),
                    None => FilterTarget::Local,
                },
                Op::Between if param("gte").is_some() && param("lte").is_some() => {
                    FilterTarget::Range {
                        low: param("gte"),
                        high: param("lte"),
                    }
                }
                _ => FilterTarget::Local,
            },
        }
    }

    fn attachment(&mut self, f: &RawField, span: &Span) -> Option<Attachment> {
        let style_name = f.style.as_ref().map(|s| s.as_str()).unwrap_or("");
        let style = match style_name {
            "type_and_id" => match (&f.type_from, &f.id_from) {
                (Some(t), Some(i)) => AttachStyle::TypeAndId {
                    type_from: UpPath::parse(t),
                    id_from: UpPath::parse(i),
                },
                _ => {
                    self.err(span, "style type_and_id needs `type_from` and `id_from`");
                    return None;
                }
            },
            "associations" => AttachStyle::Associations,
            _ => {
                self.err(
                    span,
                    "an attachment needs `style`: type_and_id or associations",
                );
                return None;
            }
        };
        let Some(raw_kinds) = &f.kinds else {
            self.err(span, "an attachment needs `kinds`");
            return None;
        };
        let mut kinds = Vec::new();
        for (name, k) in raw_kinds {
            let prefix = self.prefix(Some(&k.reference), span, "a kind")?;
            if matches!(style, AttachStyle::TypeAndId { .. }) && k.code.is_none() {
                self.err(
                    k.reference.span(),
                    format!("kind `{name}` needs `code` (its upstream type code)"),
                );
            }
            if matches!(style, AttachStyle::Associations) && k.from.is_none() {
                self.err(
                    k.reference.span(),
                    format!("kind `{name}` needs `from` (the upstream id list)"),
                );
            }
            kinds.push(AttachKind {
                name: name.clone(),
                prefix,
                code: k.code.as_ref().map(|c| scalar(c)),
                from: k.from.as_ref().map(|f| UpPath::parse(f)),
                param: k.param.as_ref().map(|p| p.to_string()),
            });
        }
        Some(Attachment { style, kinds })
    }

    fn search(&mut self, s: &RawSearch) -> Option<(Search, String)> {
        let call = self.call(&s.call, None).map(|mut c| {
            c.headers = self.headers(&s.headers);
            c
        });
        let filters = match s.filters.as_str() {
            "where_list" => FilterStyle::WhereList,
            "params" => FilterStyle::Params,
            "dialect" => match &s.dialect {
                Some(d) => FilterStyle::Dialect(Box::new(self.dialect(d)?)),
                None => {
                    self.err(
                        s.filters.span(),
                        "filters: dialect needs a `dialect:` block (into, ops, literals)",
                    );
                    return None;
                }
            },
            o if o.starts_with("object:") => FilterStyle::Object(o["object:".len()..].to_string()),
            o => {
                self.err(
                    s.filters.span(),
                    format!("filters `{o}` must be dialect, where_list, params or object:<key>"),
                );
                return None;
            }
        };
        let sort = match s.sort.as_ref().map(|x| (x.style.as_str(), *x.style.span())) {
            None => SortStyle::Local,
            Some(("fixed", _)) => SortStyle::Fixed,
            Some(("param", sp)) => {
                let r = s.sort.as_ref()?;
                match (&r.param, &r.template) {
                    (Some(p), Some(t)) if t.contains("{field}") => SortStyle::Param {
                        param: p.to_string(),
                        template: t.to_string(),
                        asc: r.asc.clone().unwrap_or_else(|| "asc".into()),
                        desc: r.desc.clone().unwrap_or_else(|| "desc".into()),
                    },
                    _ => {
                        self.err(
                            &sp,
                            "sort style param needs `param` and a `template` with `{field}` (and `{dir}`: asc/desc words)",
                        );
                        return None;
                    }
                }
            }
            Some(("local", _)) => SortStyle::Local,
            Some((o, _)) if o.starts_with("order_by_list:") => {
                SortStyle::OrderByList(o["order_by_list:".len()..].to_string())
            }
            Some((o, sp)) if o.starts_with("by_param:") => {
                match o["by_param:".len()..].split_once(',') {
                    Some((by, desc)) => SortStyle::ByParam {
                        by: by.to_string(),
                        desc: desc.to_string(),
                    },
                    None => {
                        self.err(&sp, "by_param needs two names: by_param:<by>,<desc>");
                        return None;
                    }
                }
            }
            Some((o, sp)) => {
                self.err(&sp, format!("sort style `{o}` must be fixed, local, order_by_list:<key> or by_param:<by>,<desc>"));
                return None;
            }
        };
        let p = &s.paging;
        let need = |v: &Option<String>, what: &str, c: &mut Self| -> Option<String> {
            if v.is_none() {
                c.err(
                    p.style.span(),
                    format!("paging style `{}` needs `{what}`", p.style.as_str()),
                );
            }
            v.clone()
        };
        let paging = match p.style.as_str() {
            "offset" => Paging::Offset {
                offset: need(&p.offset, "offset", self)?,
                limit: need(&p.limit, "limit", self)?,
            },
            "page" => Paging::Page {
                page: need(&p.page, "page", self)?,
                size: need(&p.limit, "limit", self)?,
            },
            "start_count" => Paging::StartCount {
                start: need(&p.offset, "offset", self)?,
                count: need(&p.limit, "limit", self)?,
                more: need(&p.more.as_ref().map(|m| m.to_string()), "more", self)?,
            },
            "token" => Paging::Token {
                token: need(&p.token, "token", self)?,
                limit: need(&p.limit, "limit", self)?,
                next: need(&p.next.as_ref().map(|m| m.to_string()), "next", self)?,
                more: p.more.as_ref().map(|m| m.to_string()),
            },
            "next_link" => {
                let Some(n) = &p.next else {
                    self.err(
                        p.style.span(),
                        "paging style next_link needs `next` (a pointer to the link, or link_header)",
                    );
                    return None;
                };
                let next = if n.as_str() == "link_header" {
                    NextFrom::LinkHeader
                } else {
                    NextFrom::Pointer(pointer(self.path, n, self.d)?)
                };
                let size = match &p.size {
                    None => None,
                    Some(r) => Some(self.inject(r, p.style.span())?),
                };
                Paging::NextLink { next, size }
            }
            "none" => Paging::None,
            o => {
                self.err(
                    p.style.span(),
                    format!("paging style `{o}` must be offset, page, start_count, token, next_link or none"),
                );
                return None;
            }
        };
        if p.size.is_some() && !matches!(paging, Paging::NextLink { .. }) {
            self.err(
                p.style.span(),
                "paging `size` belongs to style next_link (the other styles name their size parameter in `limit`)",
            );
        }
        let items = pointer(self.path, &s.items, self.d)?;
        let total = s.total.as_ref().and_then(|t| pointer(self.path, t, self.d));
        let constants = s
            .constants
            .iter()
            .map(|(k, v)| (k.clone(), scalar(v)))
            .collect();
        Some((
            Search {
                call: call?,
                filters,
                sort,
                paging,
                max: p.max.as_ref().map(|m| **m).unwrap_or(100).max(1),
                window: p.window.as_ref().map(|w| **w),
                items,
                total,
                default_sort: (0, true),
                constants,
            },
            s.default_sort.to_string(),
        ))
    }

    /// Where a value the edge chooses goes: a parameter, or a header with a template.
    fn inject(&mut self, r: &RawInject, span: &Span) -> Option<Inject> {
        match (&r.param, &r.header, &r.value) {
            (Some(p), None, None) => Some(Inject::Param(p.to_string())),
            (None, Some(h), v) => {
                let name = header_name(self.path, h, self.d)?;
                let text = v.as_ref().map(|v| v.as_str()).unwrap_or("{size}");
                match parse_tpl(text) {
                    Ok(t) if t.uses(Var::Size) => Some(Inject::Header(name, t)),
                    Ok(_) => {
                        self.err(
                            v.as_ref().map(|v| v.span()).unwrap_or(h.span()),
                            "the size header's `value` needs `{size}`",
                        );
                        None
                    }
                    Err(e) => {
                        self.err(v.as_ref().map(|v| v.span()).unwrap_or(h.span()), e);
                        None
                    }
                }
            }
            _ => {
                self.err(
                    span,
                    "paging `size` is `{param: <name>}` or `{header: <name>, value: \"…{size}…\"}`",
                );
                None
            }
        }
    }

    fn escapes(&mut self, m: &IndexMap<String, String>, span: &Span) -> Vec<(char, String)> {
        let mut out = Vec::new();
        for (k, v) in m {
            let mut chars = k.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) => out.push((c, v.clone())),
                _ => self.err(span, format!("escape `{k}`: one character per entry")),
            }
        }
        out
    }

    /// A filter dialect: each operator's clause templates, checked now.
    fn dialect(&mut self, r: &RawDialect) -> Option<FilterDialect> {
        let span = *r.into.span();
        let into = match r.into.as_str() {
            "params" => FilterInto::Params,
            o if o.starts_with("param:") && o.len() > 6 => FilterInto::Param {
                name: o[6..].to_string(),
                join: r.join.clone().unwrap_or_else(|| " and ".into()),
            },
            o if o.starts_with("list:/") => FilterInto::List(o[5..].to_string()),
            o => {
                self.err(
                    &span,
                    format!("dialect into `{o}` must be param:<name>, params or list:<pointer>"),
                );
                return None;
            }
        };
        const HOLES: [&str; 4] = ["field", "value", "high", "values"];
        let check_text = |t: &str| -> Result<(), String> {
            let mut rest = t;
            while let Some(i) = rest.find('{') {
                let Some(j) = rest[i..].find('}') else {
                    return Err(format!("`{t}`: a `{{` is not closed"));
                };
                let name = &rest[i + 1..i + j];
                if !HOLES.contains(&name) {
                    return Err(format!(
                        "`{{{name}}}` is not a filter template value (field, value, high, values)"
                    ));
                }
                rest = &rest[i + j + 1..];
            }
            Ok(())
        };
        let mut ops = Vec::new();
        for (name, o) in &r.ops {
            let ospan = o
                .clause
                .as_ref()
                .map(|c| *c.span())
                .or(o.object.as_ref().map(|c| *c.span()))
                .or(o
                    .clauses
                    .as_ref()
                    .and_then(|c| c.first())
                    .map(|c| *c.span()))
                .unwrap_or(span);
            let Some(op) = Op::parse(name) else {
                self.err(
                    &ospan,
                    format!(
                        "dialect operator `{name}` is unknown ({})",
                        Op::ALL.map(Op::name).join(", ")
                    ),
                );
                continue;
            };
            let mut texts: Vec<&Spanned<String>> = Vec::new();
            if let Some(c) = &o.clause {
                texts.push(c);
            }
            for c in o.clauses.iter().flatten() {
                texts.push(c);
            }
            let mut clauses = Vec::new();
            match (&into, &o.object, texts.is_empty()) {
                (FilterInto::List(_), Some(obj), true) => {
                    fn strings<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
                        match v {
                            Value::String(s) => out.push(s),
                            Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
                            Value::Object(m) => m.values().for_each(|x| strings(x, out)),
                            _ => {}
                        }
                    }
                    let mut all = Vec::new();
                    strings(obj, &mut all);
                    for t in all {
                        if let Err(e) = check_text(t) {
                            self.err(obj.span(), e);
                        }
                    }
                    clauses.push(Clause::Object(template(obj)));
                }
                (FilterInto::List(_), _, _) => {
                    self.err(
                        &ospan,
                        format!("`{name}`: a `list:` dialect renders each clause as an `object`"),
                    );
                    continue;
                }
                (_, None, false) => {
                    for t in texts {
                        if let Err(e) = check_text(t) {
                            self.err(t.span(), e);
                            continue;
                        }
                        if matches!(into, FilterInto::Params) {
                            match t.split_once('=') {
                                Some((k, v)) if !k.is_empty() => {
                                    clauses.push(Clause::Pair(k.to_string(), v.to_string()))
                                }
                                _ => self.err(
                                    t.span(),
                                    "a `params` clause is `key=value` (`filter[{field}][eq]={value}`)",
                                ),
                            }
                        } else {
                            clauses.push(Clause::Text(t.to_string()));
                        }
                    }
                }
                _ => {
                    self.err(
                        &ospan,
                        format!(
                            "`{name}` needs `clause` or `clauses` (text), or `object` with list:"
                        ),
                    );
                    continue;
                }
            }
            let needs = match op {
                Op::Between => Some("{high}"),
                Op::In | Op::NotIn if !o.each => Some("{values}"),
                _ => None,
            };
            let joined: String = clauses
                .iter()
                .map(|c| match c {
                    Clause::Text(t) => t.clone(),
                    Clause::Pair(k, v) => format!("{k}={v}"),
                    Clause::Object(v) => v.to_string(),
                })
                .collect();
            if let Some(n) = needs {
                if !joined.contains(n) {
                    self.err(&ospan, format!("`{name}` needs `{n}` in its clause"));
                }
            }
            let escape = self.escapes(&o.escape, &ospan);
            ops.push((
                op,
                OpRender {
                    clauses,
                    each: o.each,
                    escape,
                    lower: o.lower,
                },
            ));
        }
        let mut literals = Vec::new();
        for (k, l) in &r.literals {
            if ![
                "string",
                "number",
                "boolean",
                "timestamp",
                "date",
                "id",
                "null",
            ]
            .contains(&k.as_str())
            {
                self.err(
                    &span,
                    format!("literal type `{k}` is unknown (string, number, boolean, timestamp, date, id, null)"),
                );
                continue;
            }
            let escape = self.escapes(&l.escape, &span);
            literals.push((
                k.clone(),
                Literal {
                    quote: l.quote.clone().unwrap_or_default(),
                    escape,
                },
            ));
        }
        Some(FilterDialect {
            into,
            ops,
            literals,
            list_join: r.list_join.clone().unwrap_or_else(|| ",".into()),
        })
    }

    fn check_service(&mut self, service: &Spanned<String>) {
        self.current = Some(service.to_string());
        if !self.services.contains_key(service.as_str()) {
            self.err(
                service.span(),
                format!(
                    "service `{}` is not declared in services.yaml",
                    service.as_str()
                ),
            );
        }
    }

    fn id_kind(&mut self, id: &RawId) -> IdKind {
        match id.kind.as_ref().map(|k| k.as_str()) {
            None | Some("int") => IdKind::Int,
            Some("string") => IdKind::Str,
            Some(o) => {
                if let Some(k) = &id.kind {
                    self.err(k.span(), format!("id kind `{o}` must be int or string"));
                }
                IdKind::Int
            }
        }
    }

    /// A resource served by several sources: each source compiles like a single-source
    /// resource; the public schema is the first source's fields with every source's filters.
    fn multi(&mut self, raw: &RawResource, sources: &[SourceEntry]) -> Option<Resource> {
        if raw.service.is_some() || raw.id.is_some() || raw.fields.is_some() || raw.search.is_some()
        {
            self.err(
                raw.resource.span(),
                "a resource with `sources` declares service, id, fields and operations per source",
            );
        }
        let Some(merge_sort) = &raw.merge_sort else {
            self.err(
                raw.resource.span(),
                "a resource with `sources` needs `merge_sort`",
            );
            return None;
        };
        let mut compiled: Vec<Arc<Resource>> = Vec::new();
        for (name, rs, fields) in sources {
            self.check_service(&rs.service);
            let id_kind = self.id_kind(&rs.id);
            let search = rs.search.as_ref().and_then(|s| self.search(s));
            let style = search.as_ref().map(|(s, _)| s.filters.clone());
            let mut fl = Vec::new();
            for (k, f) in fields {
                if let Some(field) = self.field(k.as_str(), k.span(), f, style.as_ref()) {
                    fl.push(field);
                }
            }
            if compiled.iter().any(|c| c.kind == *rs.kind) || *rs.kind == 0 {
                self.err(
                    rs.kind.span(),
                    format!("source `{name}`: kind must be unique and 1..=255"),
                );
            }
            let search = search.and_then(|(mut s, _)| {
                match fl.iter().position(|f| f.name == **merge_sort) {
                    Some(i) => {
                        s.default_sort = (i, true);
                        Some(s)
                    }
                    None => {
                        self.err(
                            merge_sort.span(),
                            format!("source `{name}` has no field `{}`", merge_sort.as_str()),
                        );
                        None
                    }
                }
            });
            let keep_if_present = rs.keep_if_present.as_ref().map(|k| k.to_string());
            compiled.push(Arc::new(Resource {
                name: raw.resource.to_string(),
                description: rs.description.clone(),
                prefix: raw.prefix.to_string(),
                service: rs.service.to_string(),
                read_scope: raw.scopes.read.to_string(),
                write_scope: raw.scopes.write.as_ref().map(|s| s.to_string()),
                permissions: raw.permissions.to_string(),
                id_from: UpPath::parse(&rs.id.from),
                id_kind,
                fields: fl,
                get: rs.get.as_ref().and_then(|c| self.full_call(c)),
                create: rs.create.as_ref().and_then(|c| self.full_call(c)),
                update: None,
                delete: None,
                search,
                actions: IndexMap::new(),
                kind: *rs.kind,
                sources: Vec::new(),
                keep_if_present,
                create_permission: raw.create_permission.as_ref().map(|p| p.to_string()),
            }));
        }
        let first = compiled.first()?.clone();
        let mut fields = first.fields.clone();
        for f in &mut fields {
            for other in compiled.iter().skip(1) {
                if let Some((_, of)) = other.field(&f.name) {
                    // A variant's schema also covers the other sources' shapes.
                    if let (Codec::Variant(v), false) =
                        (&mut f.codec, matches!(of.codec, Codec::Variant(_)))
                    {
                        v.cases.push((Value::Null, of.clone()));
                    }
                    // The public enum is every source's values together.
                    if let Codec::Enum { to_up } = &mut f.codec {
                        match &of.codec {
                            Codec::Const(Value::String(c)) => {
                                to_up.entry(c.clone()).or_insert(Value::Null);
                            }
                            Codec::Enum { to_up: other_up } => {
                                for k in other_up.keys() {
                                    to_up.entry(k.clone()).or_insert(Value::Null);
                                }
                            }
                            _ => {}
                        }
                    }
                    for (op, _) in &of.filters {
                        if !f.filters.iter().any(|(o, _)| o == op) {
                            f.filters.push((*op, FilterTarget::Local));
                        }
                    }
                }
            }
        }
        let sort_idx = fields.iter().position(|f| f.name == **merge_sort)?;
        let search = first.search.clone().map(|mut s| {
            s.sort = SortStyle::Fixed;
            s.default_sort = (sort_idx, true);
            s
        });
        Some(Resource {
            name: raw.resource.to_string(),
            description: raw.description.clone(),
            prefix: raw.prefix.to_string(),
            service: first.service.clone(),
            read_scope: raw.scopes.read.to_string(),
            write_scope: raw.scopes.write.as_ref().map(|s| s.to_string()),
            permissions: raw.permissions.to_string(),
            id_from: first.id_from.clone(),
            id_kind: first.id_kind,
            fields,
            get: compiled.iter().find_map(|c| c.get.clone()),
            create: compiled.iter().find_map(|c| c.create.clone()),
            update: None,
            delete: None,
            search,
            actions: IndexMap::new(),
            kind: 0,
            sources: compiled,
            keep_if_present: None,
            create_permission: raw.create_permission.as_ref().map(|p| p.to_string()),
        })
    }

    fn resource(
        &mut self,
        raw: &RawResource,
        fields: &[(marked_yaml::types::MarkedScalarNode, RawField)],
        actions: &[(marked_yaml::types::MarkedScalarNode, RawAction)],
    ) -> Option<Resource> {
        if !valid_name(&raw.resource) {
            self.err(
                raw.resource.span(),
                "resource must be a snake_case plural noun (contacts)",
            );
        }
        if !valid_prefix(&raw.prefix) {
            self.err(raw.prefix.span(), "prefix must be lowercase letters (con)");
        }
        let (Some(service), Some(id), Some(_)) = (&raw.service, &raw.id, &raw.fields) else {
            self.err(
                raw.resource.span(),
                "a resource needs `service`, `id` and `fields` (or `sources`)",
            );
            return None;
        };
        self.check_service(service);
        let id_kind = self.id_kind(id);
        let search = match &raw.search {
            Some(s) => self.search(s),
            None => None,
        };
        let style = search.as_ref().map(|(s, _)| s.filters.clone());
        let mut compiled = Vec::new();
        let mut seen = HashSet::new();
        for (k, f) in fields {
            if !seen.insert(k.as_str().to_string()) {
                self.err(
                    k.span(),
                    format!("field `{}` is declared twice", k.as_str()),
                );
            }
            if let Some(fl) = self.field(k.as_str(), k.span(), f, style.as_ref()) {
                compiled.push(fl);
            }
        }
        let search = search.and_then(|(mut s, default_sort)| {
            let (name, dir) = default_sort
                .split_once(' ')
                .unwrap_or((default_sort.as_str(), "desc"));
            match compiled.iter().position(|f| {
                f.name == name
                    && (f.sort.is_some() || matches!(s.sort, SortStyle::Fixed | SortStyle::Local))
            }) {
                Some(i) if dir == "asc" || dir == "desc" => {
                    s.default_sort = (i, dir == "desc");
                    Some(s)
                }
                _ => {
                    if let Some(rs) = &raw.search {
                        self.err(
                            rs.default_sort.span(),
                            format!(
                                "default_sort `{default_sort}` must be `<sortable field> asc|desc`"
                            ),
                        );
                    }
                    None
                }
            }
        });
        let mut acts = IndexMap::new();
        for (k, a) in actions {
            let mut input = Vec::new();
            for (n, rf) in a.input.iter().flatten() {
                if let Some(f) = self.field(n, k.span(), rf, None) {
                    input.push(f);
                }
            }
            let permission = a
                .permission
                .as_ref()
                .map(|p| p.to_string())
                .unwrap_or_else(|| format!("{}:edit", raw.permissions.as_str()));
            if let Some(call) = self.call(&a.call, a.body.as_ref()) {
                acts.insert(
                    k.as_str().to_string(),
                    Action {
                        name: k.as_str().to_string(),
                        call,
                        permission,
                        input,
                        description: a.description.clone(),
                    },
                );
            }
        }
        let update = match &raw.update {
            Some(u) => {
                let call = self.call(&u.call, u.body.as_ref()).map(|mut c| {
                    c.headers = self.headers(&u.headers);
                    c.record = u
                        .record
                        .as_ref()
                        .and_then(|p| pointer(self.path, p, self.d));
                    c
                });
                let strategy = match u.strategy.as_str() {
                    "partial" => Some(UpdateStrategy::Partial),
                    "replace" => match (&u.row_version, &u.conflict_code) {
                        (Some(rv), Some(cc)) => Some(UpdateStrategy::Replace {
                            row_version: UpPath::parse(rv),
                            conflict_code: cc.to_string(),
                        }),
                        _ => {
                            self.err(
                                u.strategy.span(),
                                "strategy replace needs `row_version` and `conflict_code`",
                            );
                            None
                        }
                    },
                    o => {
                        self.err(
                            u.strategy.span(),
                            format!("strategy `{o}` must be partial or replace"),
                        );
                        None
                    }
                };
                match (strategy, call) {
                    (Some(strategy), Some(call)) => Some(Update { strategy, call }),
                    _ => None,
                }
            }
            None => None,
        };
        let get = raw.get.as_ref().and_then(|c| self.full_call(c));
        let create = raw.create.as_ref().and_then(|c| self.full_call(c));
        let delete = raw.delete.as_ref().and_then(|c| self.full_call(c));
        if raw.search.is_some() && search.is_none() {
            return None;
        }
        Some(Resource {
            name: raw.resource.to_string(),
            description: raw.description.clone(),
            prefix: raw.prefix.to_string(),
            service: service.to_string(),
            read_scope: raw.scopes.read.to_string(),
            write_scope: raw.scopes.write.as_ref().map(|s| s.to_string()),
            permissions: raw.permissions.to_string(),
            id_from: UpPath::parse(&id.from),
            id_kind,
            kind: 0,
            sources: Vec::new(),
            keep_if_present: None,
            create_permission: raw.create_permission.as_ref().map(|p| p.to_string()),
            fields: compiled,
            get,
            create,
            update,
            delete,
            search,
            actions: acts,
        })
    }
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

fn valid_prefix(s: &str) -> bool {
    !s.is_empty() && s.len() <= 8 && s.chars().all(|c| c.is_ascii_lowercase())
}

#[cfg(test)]
mod dialect_checks {
    use std::path::{Path, PathBuf};

    use crate::mapping::Context;

    /// The `directory` fixture with `edit` applied to its files: the rendered diagnostics.
    fn check(edit: impl Fn(&str, String) -> String) -> String {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mappings/directory");
        let dir: PathBuf =
            std::env::temp_dir().join(format!("pe-dialect-{:x}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        for e in std::fs::read_dir(&src)
            .unwrap_or_else(|e| panic!("{e}"))
            .flatten()
        {
            let name = e.file_name().to_string_lossy().to_string();
            let text = std::fs::read_to_string(e.path()).unwrap_or_else(|e| panic!("{e}"));
            std::fs::write(dir.join(&name), edit(&name, text)).unwrap_or_else(|e| panic!("{e}"));
        }
        let ctx = Context {
            upstream_names: vec!["directory"],
        };
        let out = match crate::mapping::load_dir(&dir, &ctx) {
            Ok(_) => String::from("ok"),
            Err(d) => d.render(),
        };
        let _ = std::fs::remove_dir_all(&dir);
        out
    }

    #[test]
    fn the_fixture_compiles() {
        assert_eq!(check(|_, t| t), "ok");
    }

    #[test]
    fn every_bad_construct_is_reported_with_its_place_all_at_once() {
        let out = check(|name, t| match name {
            "contacts.yaml" => t
                .replace("{field} eq {value}", "{field} eq {vale}")
                .replace("{field} in ({values})\" }", "{field} in ()\" }")
                .replace("      neq:", "      equals:")
                .replace("Contacts({id})\" }", "Contacts({key})\" }")
                .replace("pattern: \"Contacts({id})\"", "pattern: \"Contacts()\"")
                .replace(
                    "value: \"odata.maxpagesize={size}\"",
                    "value: \"odata.maxpagesize=50\"",
                )
                .replace("format: rfc3339", "format: iso")
                .replace("If-Match: \"*\" }\ndelete", "If Match: \"*\" }\ndelete"),
            "services.yaml" => t.replace(
                "user: { header: X-Directory-Principal }",
                "user: { header: X-Directory-Principal, query: u }",
            ),
            _ => t,
        });
        for expected in [
            "`{vale}` is not a filter template value (field, value, high, values)",
            "`in` needs `{values}` in its clause",
            "dialect operator `equals` is unknown",
            "`{key}` is not a template value (id, tenant, user, request_id, size)",
            "id_from: the pattern needs exactly one `{id}`",
            "the size header's `value` needs `{size}`",
            "format `iso` is not one of",
            "`If Match` is not a header name",
            "trust `user`: exactly one of `header`, `query` or `path: true`",
        ] {
            assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
        }
        // Each with file:line:col.
        for line in out.lines() {
            let mut parts = line.splitn(4, ':');
            let (file, l, c) = (parts.next(), parts.next(), parts.next());
            assert!(file.is_some_and(|f| f.ends_with(".yaml")), "{line}");
            assert!(l.and_then(|l| l.parse::<u32>().ok()).is_some(), "{line}");
            assert!(c.and_then(|c| c.parse::<u32>().ok()).is_some(), "{line}");
        }
    }

    #[test]
    fn a_missing_counterpart_is_reported() {
        let out = check(|name, t| match name {
            "contacts.yaml" => t.replace("    next: /@odata.nextLink\n", ""),
            "services.yaml" => t.replace("      user: { header: X-Directory-Principal }\n", ""),
            _ => t,
        });
        for expected in [
            "paging style next_link needs `next`",
            "service `trust` must say where `user` goes",
        ] {
            assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
        }
        let out = check(|name, t| match name {
            "contacts.yaml" => {
                t.replace("    size: { header: Prefer", "    sise: { header: Prefer")
            }
            _ => t,
        });
        assert!(out.contains("unknown key `sise`"), "{out}");
    }
}
