//! `accounts`: organizations as a JSON:API 1.1 service (`BACKENDS.md`), in the style of
//! a Rails/Postgres API: the tenant in the path, `application/vnd.api+json` both ways
//! (415/406 as the spec says), `filter[attr][op]=`, keyset `page[cursor]` paging with a
//! relative `links.next` and no total, errors as an array with `source.pointer` or
//! `source.parameter`. The query is form-decoded (`+` is a space), as Rack does. Its
//! records are its own ([`Organization`]); users and roles are the world's.

use std::cmp::Ordering;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Map, Value};

use crate::common::Actor;
use crate::odata::{pct_decode, pct_encode};
use crate::state::{Organization, Rng, SimState, Tenant, World};
use crate::time::{fmt_jsonapi, now_ms, parse_iso};

const MEDIA: &str = "application/vnd.api+json";
const DEFAULT_PAGE: usize = 20;
const MAX_PAGE: usize = 100;

pub(crate) fn router(state: SimState) -> Router {
    Router::new().fallback(dispatch).with_state(state)
}

// ---- errors ---------------------------------------------------------------------

#[derive(Clone, Debug)]
enum Source {
    None,
    Pointer(String),
    Parameter(String),
    Header(&'static str),
}

#[derive(Clone, Debug)]
struct Entry {
    status: StatusCode,
    code: &'static str,
    title: &'static str,
    detail: String,
    source: Source,
}

/// A JSON:API error document: one or more entries and the answer's status.
struct ApiErr(Vec<Entry>);

fn entry(
    status: StatusCode,
    code: &'static str,
    detail: impl Into<String>,
    source: Source,
) -> Entry {
    let title = match code {
        "bad_request" => "Bad request",
        "unauthorized" => "Unauthorized",
        "forbidden" => "Forbidden",
        "not_found" => "Not found",
        "method_not_allowed" => "Method not allowed",
        "not_acceptable" => "Not acceptable",
        "unsupported_media_type" => "Unsupported media type",
        "taken" => "Has already been taken",
        "type_mismatch" => "Conflict",
        "blank" => "Can't be blank",
        "invalid" => "Is invalid",
        "too_long" => "Is too long",
        _ => "Internal server error",
    };
    Entry {
        status,
        code,
        title,
        detail: detail.into(),
        source,
    }
}

impl ApiErr {
    fn one(
        status: StatusCode,
        code: &'static str,
        detail: impl Into<String>,
        source: Source,
    ) -> Self {
        ApiErr(vec![entry(status, code, detail, source)])
    }
    fn param(name: &str, detail: impl Into<String>) -> Self {
        Self::one(
            StatusCode::BAD_REQUEST,
            "bad_request",
            detail,
            Source::Parameter(name.to_string()),
        )
    }
    fn pointer(
        status: StatusCode,
        code: &'static str,
        ptr: &str,
        detail: impl Into<String>,
    ) -> Self {
        Self::one(status, code, detail, Source::Pointer(ptr.to_string()))
    }
    fn not_found(detail: impl Into<String>) -> Self {
        Self::one(StatusCode::NOT_FOUND, "not_found", detail, Source::None)
    }
    fn forbidden(detail: impl Into<String>) -> Self {
        Self::one(StatusCode::FORBIDDEN, "forbidden", detail, Source::None)
    }
}

impl IntoResponse for ApiErr {
    fn into_response(self) -> Response {
        // several statuses at once: the most general 4xx applies (JSON:API)
        let status = match self.0.as_slice() {
            [] => StatusCode::INTERNAL_SERVER_ERROR,
            [one] => one.status,
            many if many.iter().all(|e| e.status == many[0].status) => many[0].status,
            _ => StatusCode::BAD_REQUEST,
        };
        let errors: Vec<Value> = self
            .0
            .into_iter()
            .map(|e| {
                let mut o = json!({
                    "status": e.status.as_u16().to_string(),
                    "code": e.code,
                    "title": e.title,
                    "detail": e.detail,
                });
                match e.source {
                    Source::None => {}
                    Source::Pointer(p) => o["source"] = json!({ "pointer": p }),
                    Source::Parameter(p) => o["source"] = json!({ "parameter": p }),
                    Source::Header(h) => o["source"] = json!({ "header": h }),
                }
                o
            })
            .collect();
        doc(status, &json!({ "errors": errors }))
    }
}

fn doc(status: StatusCode, v: &Value) -> Response {
    let bytes = serde_json::to_vec(v).unwrap_or_else(|_| b"null".to_vec());
    (
        status,
        [(header::CONTENT_TYPE, HeaderValue::from_static(MEDIA))],
        bytes,
    )
        .into_response()
}

pub(crate) fn internal() -> Response {
    ApiErr::one(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "Something went wrong.",
        Source::None,
    )
    .into_response()
}

type Res = Result<Response, ApiErr>;

// ---- media types ----------------------------------------------------------------

/// `type/subtype` (lowercase) and its parameters (names lowercase, values unquoted).
fn media_type(s: &str) -> (String, Vec<(String, String)>) {
    let mut parts = s.split(';');
    let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
    let params = parts
        .filter_map(|p| {
            let (k, v) = p.split_once('=')?;
            Some((
                k.trim().to_ascii_lowercase(),
                v.trim().trim_matches('"').to_string(),
            ))
        })
        .collect();
    (media, params)
}

/// JSON:API allows only `ext` and `profile`; this server supports no extension.
fn usable(params: &[(String, String)], allow_q: bool) -> bool {
    params.iter().all(|(k, v)| match k.as_str() {
        "profile" => true,
        "ext" => v.trim().is_empty(),
        "q" => allow_q,
        _ => false,
    })
}

fn check_content_type(h: &HeaderMap) -> Result<(), ApiErr> {
    let ct = h.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let ok = ct.is_some_and(|ct| {
        let (m, p) = media_type(ct);
        m == MEDIA && usable(&p, false)
    });
    if ok {
        Ok(())
    } else {
        Err(ApiErr::one(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!(
                "The request body must be {MEDIA} without parameters other than ext and profile."
            ),
            Source::Header("Content-Type"),
        ))
    }
}

fn check_accept(h: &HeaderMap) -> Result<(), ApiErr> {
    let ranges: Vec<(String, Vec<(String, String)>)> = h
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(media_type)
        .filter(|(m, _)| m == MEDIA)
        .collect();
    if ranges.is_empty() || ranges.iter().any(|(_, p)| usable(p, true)) {
        Ok(())
    } else {
        Err(ApiErr::one(
            StatusCode::NOT_ACCEPTABLE,
            "not_acceptable",
            format!("Every {MEDIA} in Accept has parameters this server cannot honour."),
            Source::Header("Accept"),
        ))
    }
}

// ---- the resource ---------------------------------------------------------------

fn self_link(tenant: u32, id: u64) -> String {
    format!("/tenants/{tenant}/organizations/{id}")
}

fn resource(tenant: u32, o: &Organization) -> Value {
    json!({
        "type": "organizations",
        "id": o.id.to_string(),
        "attributes": {
            "name": o.name,
            "domain": o.domain,
            "industry": o.industry,
            "employee-count": o.employees,
            "city": o.city,
            "country": o.country,
            "created-at": fmt_jsonapi(o.created),
            "updated-at": fmt_jsonapi(o.updated),
        },
        "relationships": {"owner": {"data": {"type": "users", "id": o.owner.to_string()}}},
        "links": {"self": self_link(tenant, o.id)},
    })
}

// ---- dispatch -------------------------------------------------------------------

enum Route {
    Collection(u32),
    Member(u32, String),
}

fn route(path: &str) -> Option<Route> {
    let segs: Vec<&str> = path.strip_prefix('/')?.split('/').collect();
    match segs.as_slice() {
        ["tenants", t, "organizations"] => {
            Some(Route::Collection(pct_decode(t).ok()?.parse().ok()?))
        }
        ["tenants", t, "organizations", id] => Some(Route::Member(
            pct_decode(t).ok()?.parse().ok()?,
            pct_decode(id).ok()?,
        )),
        _ => None,
    }
}

async fn dispatch(
    State(st): State<SimState>,
    method: Method,
    uri: Uri,
    h: HeaderMap,
    payload: Bytes,
) -> Response {
    let mut resp = handle(&st, &method, &uri, &h, &payload).unwrap_or_else(|e| e.into_response());
    if let Some(c) = h.get("x-request-id") {
        resp.headers_mut()
            .insert(HeaderName::from_static("x-request-id"), c.clone());
    }
    resp
}

fn handle(st: &SimState, method: &Method, uri: &Uri, h: &HeaderMap, payload: &[u8]) -> Res {
    let actor = h
        .get("x-actor-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .ok_or_else(|| {
            ApiErr::one(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "X-Actor-Id is missing or not a user id.",
                Source::Header("X-Actor-Id"),
            )
        })?;
    let route =
        route(uri.path()).ok_or_else(|| ApiErr::not_found("No route matches this path."))?;
    let allowed = match route {
        Route::Collection(_) => [Method::GET, Method::POST].contains(method),
        Route::Member(..) => [Method::GET, Method::PATCH, Method::DELETE].contains(method),
    };
    if !allowed {
        let mut r = ApiErr::one(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("{method} is not allowed here."),
            Source::None,
        )
        .into_response();
        let allow = match route {
            Route::Collection(_) => "GET, POST",
            Route::Member(..) => "GET, PATCH, DELETE",
        };
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static(allow));
        return Ok(r);
    }
    if *method == Method::POST || *method == Method::PATCH {
        check_content_type(h)?;
    }
    check_accept(h)?;
    match route {
        Route::Collection(t) if *method == Method::GET => list(st, t, actor, uri),
        Route::Collection(t) => {
            no_query(uri)?;
            create(st, t, actor, payload)
        }
        Route::Member(t, raw) => {
            no_query(uri)?;
            let id = raw
                .parse::<u64>()
                .ok()
                .filter(|i| *i > 0)
                .ok_or_else(|| ApiErr::not_found(format!("No organization {raw}.")))?;
            match *method {
                Method::GET => get(st, t, actor, id),
                Method::PATCH => patch(st, t, actor, id, payload),
                _ => delete(st, t, actor, id),
            }
        }
    }
}

/// A member route takes no query parameters (`include`, `fields` are not supported).
fn no_query(uri: &Uri) -> Result<(), ApiErr> {
    match form_pairs(uri.query()).first() {
        Some((k, _)) => Err(ApiErr::param(
            k,
            format!("The parameter {k} is not supported here."),
        )),
        None => Ok(()),
    }
}

fn form_pairs(q: Option<&str>) -> Vec<(String, String)> {
    q.map(|q| {
        form_urlencoded::parse(q.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    })
    .unwrap_or_default()
}

fn enter(w: &World, tenant: u32, user: u64) -> Result<Actor, ApiErr> {
    let role = w
        .tenants
        .get(&tenant)
        .and_then(|t| t.users.get(&user))
        .ok_or_else(|| {
            ApiErr::forbidden(format!("User {user} is not a member of tenant {tenant}."))
        })?;
    Ok(Actor {
        user,
        role: role.clone(),
    })
}

fn require(a: &Actor, perm: &'static str) -> Result<(), ApiErr> {
    if a.can(perm) {
        Ok(())
    } else {
        Err(ApiErr::forbidden(format!(
            "The role {} may not do this ({perm}).",
            a.role
        )))
    }
}

fn tenant_mut(w: &mut World, t: u32) -> Result<&mut Tenant, ApiErr> {
    w.tenants
        .get_mut(&t)
        .ok_or_else(|| ApiErr::forbidden(format!("No access to tenant {t}.")))
}

fn visible<'t>(ten: &'t Tenant, a: &Actor, id: u64) -> Result<&'t Organization, ApiErr> {
    ten.organizations
        .get(&id)
        .filter(|o| a.sees(o.owner))
        .ok_or_else(|| ApiErr::not_found(format!("No organization {id}.")))
}

// ---- reads ----------------------------------------------------------------------

fn get(st: &SimState, t: u32, user: u64, id: u64) -> Res {
    let w = st.read();
    let a = enter(&w, t, user)?;
    require(&a, "companies:view")?;
    let ten = w
        .tenants
        .get(&t)
        .ok_or_else(|| ApiErr::forbidden(format!("No access to tenant {t}.")))?;
    let o = visible(ten, &a, id)?;
    Ok(doc(StatusCode::OK, &json!({ "data": resource(t, o) })))
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Str,
    Int,
    /// a timestamp, compared in nanoseconds
    Time,
}

const ATTRS: &[(&str, Kind)] = &[
    ("name", Kind::Str),
    ("domain", Kind::Str),
    ("industry", Kind::Str),
    ("employee-count", Kind::Int),
    ("country", Kind::Str),
    ("city", Kind::Str),
    ("owner", Kind::Int),
    ("created-at", Kind::Time),
    ("updated-at", Kind::Time),
];
const SORTABLE: &[&str] = &[
    "id",
    "name",
    "domain",
    "industry",
    "employee-count",
    "country",
    "city",
    "created-at",
    "updated-at",
];

/// One attribute's value, for filters and sorting (`Null` sorts last ascending, as in
/// Postgres).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum K {
    Int(i128),
    Str(String),
    Null,
}

fn attr(o: &Organization, name: &str) -> K {
    let s = |v: &Option<String>| v.clone().map_or(K::Null, K::Str);
    match name {
        "id" => K::Int(i128::from(o.id)),
        "name" => K::Str(o.name.clone()),
        "domain" => s(&o.domain),
        "industry" => s(&o.industry),
        "employee-count" => o.employees.map_or(K::Null, |n| K::Int(i128::from(n))),
        "country" => s(&o.country),
        "city" => s(&o.city),
        "owner" => K::Int(i128::from(o.owner)),
        "created-at" => K::Int(i128::from(o.created) * 1_000_000),
        "updated-at" => K::Int(i128::from(o.updated) * 1_000_000),
        _ => K::Null,
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Contains,
    In,
    Null,
}

struct Cond {
    attr: &'static str,
    op: Op,
    values: Vec<K>,
    /// for `null`: whether the attribute must be null
    null: bool,
    /// lowercased needle for `contains`
    needle: String,
}

impl Cond {
    fn holds(&self, o: &Organization) -> bool {
        let v = attr(o, self.attr);
        if self.op == Op::Null {
            return (v == K::Null) == self.null;
        }
        if v == K::Null {
            return false; // SQL: a comparison with NULL is never true
        }
        let first = self.values.first();
        match self.op {
            Op::Eq => first == Some(&v),
            Op::Ne => first.is_some_and(|f| *f != v),
            Op::Lt => first.is_some_and(|f| v < *f),
            Op::Le => first.is_some_and(|f| v <= *f),
            Op::Gt => first.is_some_and(|f| v > *f),
            Op::Ge => first.is_some_and(|f| v >= *f),
            Op::In => self.values.contains(&v),
            Op::Contains => match v {
                K::Str(s) => s.to_lowercase().contains(&self.needle),
                _ => false,
            },
            Op::Null => false,
        }
    }
}

fn parse_value(kind: Kind, raw: &str, param: &str) -> Result<K, ApiErr> {
    match kind {
        Kind::Str => Ok(K::Str(raw.to_string())),
        Kind::Int => raw
            .trim()
            .parse::<i64>()
            .map(|n| K::Int(i128::from(n)))
            .map_err(|_| ApiErr::param(param, format!("'{raw}' is not an integer."))),
        Kind::Time => parse_iso(raw, 9).map(K::Int).ok_or_else(|| {
            ApiErr::param(
                param,
                format!(
                    "'{raw}' is not an ISO 8601 timestamp with a zone (a '+' must be sent as %2B)."
                ),
            )
        }),
    }
}

/// `filter[attr]` or `filter[attr][op]`, with its value.
fn parse_filter(key: &str, value: &str) -> Result<Cond, ApiErr> {
    let bad = |d: String| ApiErr::param(key, d);
    let inner = key
        .strip_prefix("filter[")
        .ok_or_else(|| bad("Malformed filter parameter.".into()))?;
    let (name, rest) = inner
        .split_once(']')
        .ok_or_else(|| bad("Malformed filter parameter.".into()))?;
    let op_name = if rest.is_empty() {
        "eq"
    } else {
        rest.strip_prefix('[')
            .and_then(|r| r.strip_suffix(']'))
            .filter(|o| !o.contains(['[', ']']))
            .ok_or_else(|| bad("Malformed filter parameter.".into()))?
    };
    let (attr_name, kind) = ATTRS
        .iter()
        .find(|(n, _)| *n == name)
        .copied()
        .ok_or_else(|| bad(format!("'{name}' is not a filterable attribute.")))?;
    let op = match op_name {
        "eq" => Op::Eq,
        "ne" => Op::Ne,
        "lt" => Op::Lt,
        "le" => Op::Le,
        "gt" => Op::Gt,
        "ge" => Op::Ge,
        "contains" if kind == Kind::Str => Op::Contains,
        "in" => Op::In,
        "null" => Op::Null,
        other => return Err(bad(format!("'{other}' is not an operator of {name}."))),
    };
    let mut cond = Cond {
        attr: attr_name,
        op,
        values: Vec::new(),
        null: false,
        needle: String::new(),
    };
    match op {
        Op::Null => {
            cond.null = match value {
                "true" => true,
                "false" => false,
                _ => return Err(bad("null takes true or false.".into())),
            }
        }
        Op::Contains => cond.needle = value.to_lowercase(),
        Op::In => {
            for v in value.split(',') {
                cond.values.push(parse_value(kind, v, key)?);
            }
        }
        _ => cond.values.push(parse_value(kind, value, key)?),
    }
    Ok(cond)
}

struct Sort(Vec<(&'static str, bool)>);

fn parse_sort(raw: &str) -> Result<Sort, ApiErr> {
    let mut out: Vec<(&'static str, bool)> = Vec::new();
    for item in raw.split(',') {
        let (desc, name) = match item.strip_prefix('-') {
            Some(n) => (true, n),
            None => (false, item),
        };
        let f = SORTABLE
            .iter()
            .find(|s| **s == name)
            .ok_or_else(|| ApiErr::param("sort", format!("'{name}' is not a sortable field.")))?;
        if out.iter().any(|(n, _)| n == f) {
            return Err(ApiErr::param("sort", format!("'{name}' is listed twice.")));
        }
        out.push((f, desc));
    }
    Ok(Sort(out))
}

impl Sort {
    /// The sort key of a row: its sort fields, then its id.
    fn key(&self, o: &Organization) -> Vec<K> {
        self.0
            .iter()
            .map(|(f, _)| attr(o, f))
            .chain([K::Int(i128::from(o.id))])
            .collect()
    }
    fn cmp(&self, a: &[K], b: &[K]) -> Ordering {
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            let desc = self.0.get(i).is_some_and(|(_, d)| *d);
            let o = if desc { y.cmp(x) } else { x.cmp(y) };
            if o != Ordering::Equal {
                return o;
            }
        }
        Ordering::Equal
    }
}

fn fingerprint(parts: &[(String, String)]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (k, v) in parts {
        for b in k.bytes().chain([0]).chain(v.bytes()).chain([1]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

fn k_json(k: &K) -> Value {
    match k {
        K::Int(i) => Value::String(i.to_string()),
        K::Str(s) => json!({ "s": s }),
        K::Null => Value::Null,
    }
}

fn k_from(v: &Value) -> Option<K> {
    match v {
        Value::Null => Some(K::Null),
        Value::String(s) => s.parse::<i128>().ok().map(K::Int),
        Value::Object(m) => m
            .get("s")
            .and_then(Value::as_str)
            .map(|s| K::Str(s.to_string())),
        _ => None,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The cursor: the last row's sort key, bound to the query's filters and sort.
fn cursor(fp: u64, key: &[K]) -> String {
    let v = json!({"f": format!("{fp:016x}"), "k": key.iter().map(k_json).collect::<Vec<_>>()});
    hex(v.to_string().as_bytes())
}

fn parse_cursor(raw: &str, fp: u64, width: usize) -> Result<Vec<K>, ApiErr> {
    let bad = || ApiErr::param("page[cursor]", "The cursor is not valid for this query.");
    if raw.len() > 8192 {
        return Err(bad());
    }
    let bytes = unhex(raw).ok_or_else(bad)?;
    let v: Value = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    if v["f"].as_str() != Some(format!("{fp:016x}").as_str()) {
        return Err(bad());
    }
    let key: Vec<K> = v["k"]
        .as_array()
        .ok_or_else(bad)?
        .iter()
        .map(k_from)
        .collect::<Option<_>>()
        .ok_or_else(bad)?;
    if key.len() != width {
        return Err(bad());
    }
    Ok(key)
}

fn list(st: &SimState, t: u32, user: u64, uri: &Uri) -> Res {
    let pairs = form_pairs(uri.query());
    let mut conds = Vec::new();
    let mut bound: Vec<(String, String)> = Vec::new();
    let mut sort = Sort(Vec::new());
    let mut raw_sort = None;
    let mut size = None;
    let mut raw_cursor = None;
    let mut seen: Vec<&str> = Vec::new();
    let mut errors = Vec::new();
    for (k, v) in &pairs {
        if seen.contains(&k.as_str()) {
            errors.push(entry(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("The parameter {k} is given more than once."),
                Source::Parameter(k.clone()),
            ));
            continue;
        }
        seen.push(k);
        let r: Result<(), ApiErr> = (|| {
            match k.as_str() {
                "sort" => {
                    sort = parse_sort(v)?;
                    raw_sort = Some(v.clone());
                    bound.push((k.clone(), v.clone()));
                }
                "page[size]" => {
                    let n = v
                        .parse::<usize>()
                        .ok()
                        .filter(|n| (1..=MAX_PAGE).contains(n))
                        .ok_or_else(|| {
                            ApiErr::param(k, format!("page[size] must be 1 to {MAX_PAGE}."))
                        })?;
                    size = Some(n);
                }
                "page[cursor]" => raw_cursor = Some(v.clone()),
                f if f.starts_with("filter[") => {
                    conds.push(parse_filter(f, v)?);
                    bound.push((k.clone(), v.clone()));
                }
                other => {
                    return Err(ApiErr::param(
                        other,
                        format!("The parameter {other} is not supported."),
                    ))
                }
            }
            Ok(())
        })();
        if let Err(ApiErr(mut es)) = r {
            errors.append(&mut es);
        }
    }
    if !errors.is_empty() {
        return Err(ApiErr(errors));
    }
    bound.sort();
    let fp = fingerprint(&bound);
    let after = match &raw_cursor {
        Some(c) => Some(parse_cursor(c, fp, sort.0.len() + 1)?),
        None => None,
    };
    let size = size.unwrap_or(DEFAULT_PAGE);

    let w = st.read();
    let a = enter(&w, t, user)?;
    require(&a, "companies:view")?;
    let ten = w
        .tenants
        .get(&t)
        .ok_or_else(|| ApiErr::forbidden(format!("No access to tenant {t}.")))?;
    let mut rows: Vec<(Vec<K>, &Organization)> = ten
        .organizations
        .values()
        .filter(|o| a.sees(o.owner) && conds.iter().all(|c| c.holds(o)))
        .map(|o| (sort.key(o), o))
        .filter(|(k, _)| {
            after
                .as_ref()
                .is_none_or(|c| sort.cmp(k, c) == Ordering::Greater)
        })
        .collect();
    rows.sort_by(|(x, _), (y, _)| sort.cmp(x, y));
    let more = rows.len() > size;
    rows.truncate(size);
    let data: Vec<Value> = rows.iter().map(|(_, o)| resource(t, o)).collect();
    let base = format!("/tenants/{t}/organizations");
    let self_link = match uri.query() {
        Some(q) if !q.is_empty() => format!("{base}?{q}"),
        _ => base.clone(),
    };
    let next = match rows.last() {
        Some((k, _)) if more => {
            let mut q: Vec<String> = pairs
                .iter()
                .filter(|(k, _)| k.starts_with("filter["))
                .map(|(k, v)| format!("{}={}", pct_encode(k), pct_encode(v)))
                .collect();
            if let Some(s) = &raw_sort {
                q.push(format!("sort={}", pct_encode(s)));
            }
            q.push(format!("page%5Bsize%5D={size}"));
            q.push(format!("page%5Bcursor%5D={}", cursor(fp, k)));
            Value::String(format!("{base}?{}", q.join("&")))
        }
        _ => Value::Null,
    };
    Ok(doc(
        StatusCode::OK,
        &json!({
            "data": data,
            "links": {"self": self_link, "next": next},
            "meta": {"page": {"size": size}},
        }),
    ))
}

// ---- writes ---------------------------------------------------------------------

const WRITABLE: &[&str] = &[
    "name",
    "domain",
    "industry",
    "employee-count",
    "city",
    "country",
];
const READ_ONLY: &[&str] = &["created-at", "updated-at"];

fn valid_domain(d: &str) -> bool {
    let labels: Vec<&str> = d.split('.').collect();
    labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// The document's `data` member, its `type` checked (409 when wrong).
fn data_of(payload: &[u8]) -> Result<Map<String, Value>, ApiErr> {
    let bad = |ptr: &str, d: &str| ApiErr::pointer(StatusCode::BAD_REQUEST, "bad_request", ptr, d);
    let v: Value =
        serde_json::from_slice(payload).map_err(|_| bad("", "The body is not a JSON document."))?;
    let Value::Object(mut top) = v else {
        return Err(bad("", "The document must be a JSON object."));
    };
    let data = match top.remove("data") {
        Some(Value::Object(d)) => d,
        Some(_) => return Err(bad("/data", "data must be a resource object.")),
        None => return Err(bad("", "The document has no data member.")),
    };
    match data.get("type") {
        Some(Value::String(t)) if t == "organizations" => Ok(data),
        Some(Value::String(t)) => Err(ApiErr::pointer(
            StatusCode::CONFLICT,
            "type_mismatch",
            "/data/type",
            format!("'{t}' is not the type of this collection (organizations)."),
        )),
        Some(_) => Err(bad("/data/type", "type must be a string.")),
        None => Err(bad("/data/type", "A resource object needs a type.")),
    }
}

/// Applies `attributes` and `relationships` onto an organization; returns the 400
/// (structure) and 422 (validation) entries.
fn apply(data: &Map<String, Value>, o: &mut Organization, ten: &Tenant) -> Vec<Entry> {
    let mut errs = Vec::new();
    let bad = |errs: &mut Vec<Entry>, ptr: String, d: String| {
        errs.push(entry(
            StatusCode::BAD_REQUEST,
            "bad_request",
            d,
            Source::Pointer(ptr),
        ))
    };
    let unproc = |errs: &mut Vec<Entry>, code: &'static str, ptr: String, d: String| {
        errs.push(entry(
            StatusCode::UNPROCESSABLE_ENTITY,
            code,
            d,
            Source::Pointer(ptr),
        ))
    };
    for k in data.keys() {
        if !["type", "id", "attributes", "relationships", "meta", "links"].contains(&k.as_str()) {
            bad(
                &mut errs,
                format!("/data/{k}"),
                format!("'{k}' is not a member of a resource object."),
            );
        }
    }
    match data.get("attributes") {
        None => {}
        Some(Value::Object(attrs)) => {
            for (k, v) in attrs {
                let ptr = format!("/data/attributes/{k}");
                if READ_ONLY.contains(&k.as_str()) {
                    bad(&mut errs, ptr, format!("{k} is read-only."));
                    continue;
                }
                if !WRITABLE.contains(&k.as_str()) {
                    bad(
                        &mut errs,
                        ptr,
                        format!("{k} is not an attribute of organizations."),
                    );
                    continue;
                }
                let text = |max: usize, errs: &mut Vec<Entry>| -> Option<Option<String>> {
                    match v {
                        Value::Null => Some(None),
                        Value::String(s) if s.chars().count() > max => {
                            unproc(
                                errs,
                                "too_long",
                                ptr.clone(),
                                format!("is too long (maximum is {max} characters)"),
                            );
                            None
                        }
                        Value::String(s) => Some(Some(s.clone())),
                        _ => {
                            unproc(errs, "invalid", ptr.clone(), "must be a string".into());
                            None
                        }
                    }
                };
                match k.as_str() {
                    "name" => match text(255, &mut errs) {
                        Some(Some(s)) if !s.trim().is_empty() => o.name = s,
                        Some(_) => unproc(&mut errs, "blank", ptr.clone(), "can't be blank".into()),
                        None => {}
                    },
                    "domain" => match text(253, &mut errs) {
                        Some(Some(d)) if valid_domain(&d) => o.domain = Some(d),
                        Some(Some(_)) => unproc(
                            &mut errs,
                            "invalid",
                            ptr.clone(),
                            "is not a domain name".into(),
                        ),
                        Some(None) => o.domain = None,
                        None => {}
                    },
                    "industry" => {
                        if let Some(s) = text(100, &mut errs) {
                            o.industry = s;
                        }
                    }
                    "city" => {
                        if let Some(s) = text(100, &mut errs) {
                            o.city = s;
                        }
                    }
                    "country" => match text(100, &mut errs) {
                        Some(Some(c))
                            if c.len() == 2 && c.bytes().all(|b| b.is_ascii_uppercase()) =>
                        {
                            o.country = Some(c)
                        }
                        Some(Some(_)) => unproc(
                            &mut errs,
                            "invalid",
                            ptr.clone(),
                            "must be an ISO 3166-1 alpha-2 code".into(),
                        ),
                        Some(None) => o.country = None,
                        None => {}
                    },
                    _ => match v {
                        Value::Null => o.employees = None,
                        v => match v.as_i64().filter(|n| *n >= 0) {
                            Some(n) if v.is_i64() || v.is_u64() => o.employees = Some(n),
                            _ => unproc(
                                &mut errs,
                                "invalid",
                                ptr.clone(),
                                "must be an integer of 0 or more".into(),
                            ),
                        },
                    },
                }
            }
        }
        Some(_) => bad(
            &mut errs,
            "/data/attributes".into(),
            "attributes must be an object.".into(),
        ),
    }
    match data.get("relationships") {
        None => {}
        Some(Value::Object(rels)) => {
            for (k, v) in rels {
                let ptr = format!("/data/relationships/{k}");
                if k != "owner" {
                    bad(
                        &mut errs,
                        ptr,
                        format!("{k} is not a relationship of organizations."),
                    );
                    continue;
                }
                let Some(Value::Object(rel)) = Some(v) else {
                    bad(
                        &mut errs,
                        ptr,
                        "A relationship must be an object with data.".into(),
                    );
                    continue;
                };
                match rel.get("data") {
                    None => bad(
                        &mut errs,
                        ptr,
                        "A relationship must be an object with data.".into(),
                    ),
                    Some(Value::Null) => unproc(
                        &mut errs,
                        "blank",
                        format!("{ptr}/data"),
                        "must exist".into(),
                    ),
                    Some(Value::Object(link)) => {
                        match link.get("type").and_then(Value::as_str) {
                            Some("users") => {}
                            _ => {
                                unproc(
                                    &mut errs,
                                    "invalid",
                                    format!("{ptr}/data/type"),
                                    "must be users".into(),
                                );
                                continue;
                            }
                        }
                        let id = link
                            .get("id")
                            .and_then(Value::as_str)
                            .and_then(|s| s.parse::<u64>().ok());
                        match id {
                            Some(u) if ten.users.contains_key(&u) => o.owner = u,
                            _ => unproc(
                                &mut errs,
                                "invalid",
                                format!("{ptr}/data/id"),
                                "is not a user of this tenant".into(),
                            ),
                        }
                    }
                    Some(_) => bad(
                        &mut errs,
                        format!("{ptr}/data"),
                        "data must be a resource identifier.".into(),
                    ),
                }
            }
        }
        Some(_) => bad(
            &mut errs,
            "/data/relationships".into(),
            "relationships must be an object.".into(),
        ),
    }
    errs
}

/// 400 entries first (all of them), else 422 (all of them).
fn outcome(errs: Vec<Entry>) -> Result<(), ApiErr> {
    if errs.is_empty() {
        return Ok(());
    }
    let structural: Vec<Entry> = errs
        .iter()
        .filter(|e| e.status == StatusCode::BAD_REQUEST)
        .cloned()
        .collect();
    Err(ApiErr(if structural.is_empty() {
        errs
    } else {
        structural
    }))
}

fn same_domain(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

fn check_taken(ten: &Tenant, o: &Organization) -> Result<(), ApiErr> {
    let Some(d) = &o.domain else {
        return Ok(());
    };
    if ten
        .organizations
        .values()
        .any(|x| x.id != o.id && x.domain.as_deref().is_some_and(|xd| same_domain(xd, d)))
    {
        return Err(ApiErr::pointer(
            StatusCode::CONFLICT,
            "taken",
            "/data/attributes/domain",
            "has already been taken",
        ));
    }
    Ok(())
}

fn create(st: &SimState, t: u32, user: u64, payload: &[u8]) -> Res {
    let mut w = st.write();
    let a = enter(&w, t, user)?;
    require(&a, "companies:edit")?;
    let data = data_of(payload)?;
    if data.contains_key("id") {
        return Err(ApiErr::pointer(
            StatusCode::FORBIDDEN,
            "forbidden",
            "/data/id",
            "Client-generated ids are not supported.",
        ));
    }
    let ten = tenant_mut(&mut w, t)?;
    let now = now_ms();
    let mut o = Organization {
        id: 0,
        name: String::new(),
        domain: None,
        industry: None,
        employees: None,
        city: None,
        country: None,
        owner: a.user,
        created: now,
        updated: now,
    };
    let mut errs = apply(&data, &mut o, ten);
    let named = data
        .get("attributes")
        .and_then(Value::as_object)
        .is_some_and(|m| m.contains_key("name"));
    if !named {
        errs.push(entry(
            StatusCode::UNPROCESSABLE_ENTITY,
            "blank",
            "can't be blank",
            Source::Pointer("/data/attributes/name".into()),
        ));
    }
    outcome(errs)?;
    check_taken(ten, &o)?;
    ten.next_organization += 1;
    o.id = ten.next_organization;
    let body = json!({ "data": resource(t, &o) });
    let link = self_link(t, o.id);
    ten.organizations.insert(o.id, o);
    let mut r = doc(StatusCode::CREATED, &body);
    if let Ok(v) = HeaderValue::from_str(&link) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    Ok(r)
}

fn patch(st: &SimState, t: u32, user: u64, id: u64, payload: &[u8]) -> Res {
    let mut w = st.write();
    let a = enter(&w, t, user)?;
    require(&a, "companies:edit")?;
    let ten = tenant_mut(&mut w, t)?;
    let before = visible(ten, &a, id)?.clone();
    let data = data_of(payload)?;
    match data.get("id") {
        Some(Value::String(s)) if *s == id.to_string() => {}
        Some(Value::String(s)) => {
            return Err(ApiErr::pointer(
                StatusCode::CONFLICT,
                "type_mismatch",
                "/data/id",
                format!("'{s}' is not the id of this organization ({id})."),
            ))
        }
        Some(_) => {
            return Err(ApiErr::pointer(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "/data/id",
                "id must be a string.",
            ))
        }
        None => {
            return Err(ApiErr::pointer(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "/data/id",
                "An update needs the resource's id.",
            ))
        }
    }
    let mut o = before.clone();
    outcome(apply(&data, &mut o, ten))?;
    check_taken(ten, &o)?;
    o.updated = now_ms().max(before.updated);
    let body = json!({ "data": resource(t, &o) });
    ten.organizations.insert(id, o);
    Ok(doc(StatusCode::OK, &body))
}

fn delete(st: &SimState, t: u32, user: u64, id: u64) -> Res {
    let mut w = st.write();
    let a = enter(&w, t, user)?;
    require(&a, "companies:delete")?;
    let ten = tenant_mut(&mut w, t)?;
    visible(ten, &a, id)?;
    ten.organizations.remove(&id);
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---- seed -----------------------------------------------------------------------

const ADJ: &[&str] = &[
    "Blue", "Northern", "Bright", "Global", "Silver", "Rapid", "Prime", "United", "Golden",
    "Summit", "Pacific", "Atlantic", "Urban", "Green", "Iron",
];
const NOUN: &[&str] = &[
    "Systems",
    "Logistics",
    "Foods",
    "Partners",
    "Labs",
    "Networks",
    "Dynamics",
    "Works",
    "Holdings",
    "Analytics",
    "Energy",
    "Media",
    "Robotics",
    "Textiles",
];
const INDUSTRIES: &[&str] = &[
    "SOFTWARE",
    "RETAIL",
    "FOOD",
    "ENERGY",
    "LOGISTICS",
    "MEDIA",
    "FINANCE",
];
const CITIES: &[(&str, &str)] = &[
    ("Springfield", "US"),
    ("Austin", "US"),
    ("London", "GB"),
    ("Berlin", "DE"),
    ("Toronto", "CA"),
    ("Paris", "FR"),
    ("Madrid", "ES"),
    ("Tokyo", "JP"),
];

type Fix = (
    &'static str,
    Option<&'static str>,
    Option<&'static str>,
    Option<i64>,
    Option<&'static str>,
    Option<&'static str>,
    u64,
    &'static str,
);

/// (name, domain, industry, employee-count, city, country, owner, created-at)
const ACME: &[Fix] = &[
    (
        "Acme Corporation",
        Some("acme.example.com"),
        Some("SOFTWARE"),
        Some(250),
        Some("Springfield"),
        Some("US"),
        101,
        "2025-01-02T10:00:00.000Z",
    ),
    (
        "O'Reilly Media",
        Some("oreilly.example.com"),
        Some("MEDIA"),
        Some(400),
        Some("Sebastopol"),
        Some("US"),
        102,
        "2025-01-03T10:00:00.250Z",
    ),
    (
        "100% Organic",
        Some("organic.example.com"),
        Some("FOOD"),
        None,
        Some("Toronto"),
        Some("CA"),
        103,
        "2025-01-04T10:00:00.000Z",
    ),
    (
        "Fifty_Fifty Ltd",
        Some("fiftyfifty.example.com"),
        Some("RETAIL"),
        Some(12),
        Some("London"),
        Some("GB"),
        103,
        "2025-01-05T10:00:00.000Z",
    ),
    (
        "Back\\Slash Systems",
        None,
        None,
        None,
        Some("Berlin"),
        Some("DE"),
        101,
        "2025-01-06T10:00:00.999Z",
    ),
    (
        "Initech",
        Some("initech.example.com"),
        Some("SOFTWARE"),
        Some(80),
        Some("Austin"),
        Some("US"),
        104,
        "2025-01-07T10:00:00.000Z",
    ),
];
const GLOBEX: &[Fix] = &[
    (
        "Globex Corporation",
        Some("globex.example.com"),
        Some("ENERGY"),
        Some(5000),
        Some("Cypress Creek"),
        Some("US"),
        201,
        "2025-02-01T09:00:00.000Z",
    ),
    (
        "Acme Corporation",
        Some("acme.example.com"),
        Some("SOFTWARE"),
        Some(3),
        None,
        None,
        202,
        "2025-02-02T09:00:00.000Z",
    ),
];

const T0: i64 = 1_735_689_600_000; // 2025-01-01T00:00:00Z
const T_PAST: i64 = 1_793_491_200_000; // 2026-11-01T00:00:00Z

fn seed_tenant(t: &mut Tenant, fixtures: &[Fix], total: u64, owners: &[u64], seed: u64) {
    let mut r = Rng(seed);
    for f in fixtures {
        t.next_organization += 1;
        let created = parse_iso(f.7, 9).map_or(T0, |ns| (ns / 1_000_000) as i64);
        let o = Organization {
            id: t.next_organization,
            name: f.0.into(),
            domain: f.1.map(str::to_string),
            industry: f.2.map(str::to_string),
            employees: f.3,
            city: f.4.map(str::to_string),
            country: f.5.map(str::to_string),
            owner: f.6,
            created,
            updated: created,
        };
        t.organizations.insert(o.id, o);
    }
    while t.next_organization < total {
        t.next_organization += 1;
        let id = t.next_organization;
        let name = format!("{} {} {id}", r.pick(ADJ), r.pick(NOUN));
        let (city, country) = *r.pick(CITIES);
        let created = r.range(T0, T_PAST - 200 * 86_400_000);
        let updated = (created + r.range(0, 180 * 86_400_000)).min(T_PAST - 1);
        let o = Organization {
            id,
            domain: (!r.chance(15)).then(|| {
                format!(
                    "{}.example.net",
                    name.to_ascii_lowercase().replace(' ', "-")
                )
            }),
            name,
            industry: (!r.chance(20)).then(|| r.pick(INDUSTRIES).to_string()),
            employees: (!r.chance(25)).then(|| r.range(1, 20_000)),
            city: (!r.chance(10)).then(|| city.to_string()),
            country: (!r.chance(10)).then(|| country.to_string()),
            owner: *r.pick(owners),
            created,
            updated,
        };
        t.organizations.insert(id, o);
    }
}

/// Seeds the organizations: tenant 1 holds 130, tenant 2 holds 4.
pub(crate) fn seed(w: &mut World) {
    if let Some(t) = w.tenants.get_mut(&1) {
        seed_tenant(t, ACME, 130, &[101, 102, 103, 104], 0xACC0_0001);
    }
    if let Some(t) = w.tenants.get_mut(&2) {
        seed_tenant(t, GLOBEX, 4, &[201, 202], 0xACC0_0002);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_is_deterministic_and_sized() {
        let mut a = World::default();
        a.tenants.insert(1, Tenant::default());
        a.tenants.insert(2, Tenant::default());
        seed(&mut a);
        assert_eq!(a.tenants[&1].organizations.len(), 130);
        assert_eq!(a.tenants[&2].organizations.len(), 4);
        let mut domains: Vec<String> = a.tenants[&1]
            .organizations
            .values()
            .filter_map(|o| o.domain.as_ref().map(|d| d.to_lowercase()))
            .collect();
        let n = domains.len();
        domains.sort();
        domains.dedup();
        assert_eq!(domains.len(), n, "domains unique per tenant");
        assert!(domains.iter().all(|d| valid_domain(d)));
    }

    #[test]
    fn filter_parameters() {
        assert!(parse_filter("filter[name]", "x").is_ok());
        assert!(parse_filter("filter[name][contains]", "x").is_ok());
        assert!(parse_filter("filter[employee-count][contains]", "1").is_err());
        assert!(parse_filter("filter[employee-count][gt]", "x").is_err());
        assert!(parse_filter("filter[nope]", "x").is_err());
        assert!(parse_filter("filter[name][like]", "x").is_err());
        assert!(parse_filter("filter[name", "x").is_err());
        assert!(parse_filter("filter[name]x", "x").is_err());
        assert!(parse_filter("filter[name][eq][eq]", "x").is_err());
        assert!(parse_filter("filter[domain][null]", "yes").is_err());
        assert!(parse_filter("filter[created-at][gt]", "2026-01-01T00:00:00.000 0000").is_err());
        assert!(parse_filter("filter[created-at][gt]", "2026-01-01T00:00:00.000+0000").is_ok());
        assert!(parse_filter("filter[owner][in]", "101,x").is_err());
    }

    #[test]
    fn cursors_round_trip_and_refuse_tampering() {
        let key = vec![K::Null, K::Str("a\"b".into()), K::Int(-5)];
        let c = cursor(7, &key);
        assert_eq!(parse_cursor(&c, 7, 3).ok(), Some(key));
        assert!(parse_cursor(&c, 8, 3).is_err());
        assert!(parse_cursor(&c, 7, 2).is_err());
        assert!(parse_cursor("zz", 7, 3).is_err());
        assert!(parse_cursor(&c[1..], 7, 3).is_err());
        assert!(parse_cursor("é", 7, 3).is_err());
    }
}
