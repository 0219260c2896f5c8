//! Raw mapping files → the compiled [`Plan`], with every error located.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use indexmap::IndexMap;
use marked_yaml::{Span, Spanned};
use serde_json::Value;

use super::model::*;
use super::raw::*;
use super::tpl::{self, Hole, Json, Text, FILTER_HOLES, SORT_HOLES};
use crate::diag::{self, Diags};
use crate::problem::Kind;

/// Everything the compiler needs to know of the edge config.
pub struct Context<'a> {
    pub upstream_names: Vec<&'a str>,
}

impl Context<'static> {
    /// The six services of the legacy platform, under the names the shipped configs give
    /// them (the reference platform's list, as the simulator implements it).
    pub fn legacy() -> Context<'static> {
        Context {
            upstream_names: legacy_sim::SERVICES.to_vec(),
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
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

fn valid_prefix(s: &str) -> bool {
    !s.is_empty() && s.len() <= 8 && s.chars().all(|c| c.is_ascii_lowercase())
}

mod call;
mod field;
mod resource;
mod search;
mod service;

use service::{compile_service, compile_versions};

#[cfg(test)]
mod dialect_checks;
