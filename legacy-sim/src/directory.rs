//! `directory`: contacts as an OData v4 service in the Dynamics/ASP.NET OData style
//! (`BACKENDS.md`). GUID keys in `Contacts(<guid>)` read from the raw path (never
//! percent-decoded), server-driven paging with an absolute `@odata.nextLink`, 204
//! creates with `OData-EntityId`, weak ETags over `VersionNumber`, upsert on a PATCH
//! without `If-Match`, hex-string error codes. Its records are its own
//! ([`DirContact`]); its users and roles are the world's. Routing is done here on the
//! raw path, not by axum, so that a `%28` is a route miss as on IIS.

use std::borrow::Cow;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Map, Value};

use crate::common::Actor;
use crate::odata::{self, Entity, Ty, V};
use crate::state::{DirContact, Rng, SimState, Tenant, World};
use crate::time::{now_ms, TICKS_PER_MS};

const BASE: &str = "/odata/v4";
const CONTENT_TYPE: &str = "application/json; odata.metadata=minimal";
const DEFAULT_PAGE: usize = 50;
const MAX_PAGE: usize = 500;

pub(crate) fn router(state: SimState) -> Router {
    Router::new().fallback(dispatch).with_state(state)
}

// ---- errors ---------------------------------------------------------------------

pub(crate) const E_VALIDATION: &str = "0x80044331";
pub(crate) const E_QUERY: &str = "0x8006088a";
pub(crate) const E_AUTH: &str = "0x80048306";
pub(crate) const E_PRIVILEGE: &str = "0x80040220";
pub(crate) const E_NOT_FOUND: &str = "0x80040217";
pub(crate) const E_ROUTE: &str = "0x80060888";
pub(crate) const E_DUPLICATE: &str = "0x80040237";
pub(crate) const E_VERSION: &str = "0x80060882";
pub(crate) const E_MEDIA: &str = "0x80048d19";
pub(crate) const E_INTERNAL: &str = "0x80040216";

struct DirErr {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// (target, message) of a validation error
    details: Vec<(String, String)>,
}

impl DirErr {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        DirErr {
            status,
            code,
            message: message.into(),
            details: Vec::new(),
        }
    }
    fn query(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, E_QUERY, message)
    }
    fn not_found(key: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            E_NOT_FOUND,
            format!("contact With Id = {key} Does Not Exist"),
        )
    }
    fn validation(details: Vec<(String, String)>) -> Self {
        let message = details
            .first()
            .map(|(t, m)| format!("{t}: {m}"))
            .unwrap_or_else(|| "the request body is not valid".into());
        DirErr {
            status: StatusCode::BAD_REQUEST,
            code: E_VALIDATION,
            message,
            details,
        }
    }
}

impl IntoResponse for DirErr {
    fn into_response(self) -> Response {
        let mut err = json!({"code": self.code, "message": self.message});
        if self.code == E_VALIDATION {
            err["details"] = Value::Array(
                self.details
                    .into_iter()
                    .map(|(t, m)| json!({"code": E_VALIDATION, "target": t, "message": m}))
                    .collect(),
            );
        }
        body(self.status, &json!({ "error": err }))
    }
}

fn body(status: StatusCode, v: &Value) -> Response {
    let bytes = serde_json::to_vec(v).unwrap_or_else(|_| b"null".to_vec());
    (
        status,
        [(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE))],
        bytes,
    )
        .into_response()
}

pub(crate) fn internal() -> Response {
    let mut r = DirErr::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        E_INTERNAL,
        "An unexpected error occurred.",
    )
    .into_response();
    r.headers_mut()
        .insert("odata-version", HeaderValue::from_static("4.0"));
    r
}

type Res = Result<Response, DirErr>;

// ---- the entity -----------------------------------------------------------------

fn opt(o: &Option<String>) -> V<'_> {
    o.as_deref().map_or(V::Null, |s| V::Str(Cow::Borrowed(s)))
}

impl Entity for DirContact {
    const PROPS: &'static [(&'static str, Ty)] = &[
        ("ContactId", Ty::Guid),
        ("FirstName", Ty::Str),
        ("LastName", Ty::Str),
        ("EMailAddress1", Ty::Str),
        ("Telephone1", Ty::Str),
        ("JobTitle", Ty::Str),
        ("OwnerId", Ty::Int),
        ("LifecycleCode", Ty::Int),
        ("CreatedOn", Ty::Date),
        ("ModifiedOn", Ty::Date),
        ("VersionNumber", Ty::Int),
    ];
    fn prop(&self, i: usize) -> V<'_> {
        match i {
            0 => V::Guid(Cow::Borrowed(&self.id)),
            1 => opt(&self.first_name),
            2 => opt(&self.last_name),
            3 => opt(&self.email),
            4 => opt(&self.phone),
            5 => opt(&self.job_title),
            6 => V::Int(self.owner as i64),
            7 => self.lifecycle.map_or(V::Null, V::Int),
            8 => V::Date(self.created),
            9 => V::Date(self.modified),
            _ => V::Int(self.version),
        }
    }
}

/// The option set of `LifecycleCode`.
pub(crate) const LIFECYCLE: [i64; 5] = [
    100_000_000,
    100_000_001,
    100_000_002,
    100_000_003,
    100_000_009,
];

fn etag(c: &DirContact) -> String {
    format!("W/\"{}\"", c.version)
}

fn value_json(v: V<'_>) -> Value {
    match v {
        V::Null => Value::Null,
        V::Str(s) | V::Guid(s) => Value::String(s.into_owned()),
        V::Int(i) => json!(i),
        V::Date(t) => Value::String(crate::time::fmt_odata(t)),
        V::Bool(b) => Value::Bool(b),
    }
}

/// The entity as written in an answer: `@odata.etag`, `ContactId` and the selected
/// properties (every one without `$select`).
fn entity_json(c: &DirContact, select: Option<&[usize]>) -> Value {
    let mut m = Map::new();
    m.insert("@odata.etag".into(), Value::String(etag(c)));
    for (i, (name, _)) in DirContact::PROPS.iter().enumerate() {
        if i == 0 || select.is_none_or(|s| s.contains(&i)) {
            m.insert((*name).into(), value_json(c.prop(i)));
        }
    }
    Value::Object(m)
}

fn context(host: &str, select: Option<&[usize]>, entity: bool) -> String {
    let mut s = format!("http://{host}{BASE}/$metadata#Contacts");
    if let Some(sel) = select {
        let names: Vec<&str> = sel
            .iter()
            .filter_map(|i| DirContact::PROPS.get(*i).map(|p| p.0))
            .collect();
        s.push_str(&format!("({})", names.join(",")));
    }
    if entity {
        s.push_str("/$entity");
    }
    s
}

fn entity_url(host: &str, key: &str) -> String {
    format!("http://{host}{BASE}/Contacts({key})")
}

// ---- the request ----------------------------------------------------------------

struct Req<'r> {
    headers: &'r HeaderMap,
    host: String,
    options: Vec<(String, String)>,
    prefer: Prefer,
}

#[derive(Default)]
struct Prefer {
    representation: bool,
    /// an applicable `odata.maxpagesize`, already clamped to 1..=500
    max_page: Option<usize>,
}

fn prefer(h: &HeaderMap) -> Prefer {
    let mut p = Prefer::default();
    for v in h.get_all("prefer") {
        let Ok(v) = v.to_str() else { continue };
        for pref in v.split(',') {
            let (k, val) = pref.split_once('=').unwrap_or((pref, ""));
            let k = k.trim().to_ascii_lowercase();
            let val = val.trim().trim_matches('"');
            match k.as_str() {
                "return" if val.eq_ignore_ascii_case("representation") => p.representation = true,
                "return" if val.eq_ignore_ascii_case("minimal") => p.representation = false,
                "odata.maxpagesize" => {
                    if let Ok(n) = val.parse::<u64>() {
                        if n >= 1 {
                            p.max_page = Some(n.min(MAX_PAGE as u64) as usize);
                        }
                    }
                }
                _ => {}
            }
        }
    }
    p
}

fn header_str<'h>(h: &'h HeaderMap, name: &str) -> Option<&'h str> {
    h.get(name).and_then(|v| v.to_str().ok()).map(str::trim)
}

/// The principal of the call, from the directory's own trust headers.
fn trust(h: &HeaderMap) -> Result<(u32, u64), DirErr> {
    let unauth = |m: &str| DirErr::new(StatusCode::UNAUTHORIZED, E_AUTH, m.to_string());
    let tenant = header_str(h, "x-directory-tenant")
        .ok_or_else(|| unauth("The X-Directory-Tenant header is missing."))?
        .parse::<u32>()
        .map_err(|_| unauth("The X-Directory-Tenant header is not valid."))?;
    let user = header_str(h, "x-directory-principal")
        .ok_or_else(|| unauth("The X-Directory-Principal header is missing."))?
        .parse::<u64>()
        .map_err(|_| unauth("The X-Directory-Principal header is not valid."))?;
    Ok((tenant, user))
}

fn actor_in(w: &World, (tenant, user): (u32, u64)) -> Result<Actor, DirErr> {
    let role = w
        .tenants
        .get(&tenant)
        .and_then(|t| t.users.get(&user))
        .ok_or_else(|| {
            DirErr::new(
                StatusCode::UNAUTHORIZED,
                E_AUTH,
                format!("The principal {user} is not a user of organization {tenant}."),
            )
        })?;
    Ok(Actor {
        user,
        role: role.clone(),
    })
}

fn require(a: &Actor, perm: &'static str) -> Result<(), DirErr> {
    if a.can(perm) {
        Ok(())
    } else {
        Err(DirErr::new(
            StatusCode::FORBIDDEN,
            E_PRIVILEGE,
            format!(
                "Principal user (Id={}) is missing the {perm} privilege.",
                a.user
            ),
        ))
    }
}

/// `OData-MaxVersion` below 4.0 is refused (the service speaks only 4.0).
fn check_version(h: &HeaderMap) -> Result<(), DirErr> {
    let Some(v) = h.get("odata-maxversion") else {
        return Ok(());
    };
    let bad = || DirErr::query("The OData-MaxVersion header is below the service's 4.0.");
    let v = v.to_str().map_err(|_| bad())?.trim();
    let (major, minor) = v.split_once('.').unwrap_or((v, "0"));
    let major: u32 = major.parse().map_err(|_| bad())?;
    let _minor: u32 = minor.parse().map_err(|_| bad())?;
    if major < 4 {
        return Err(bad());
    }
    Ok(())
}

/// A write body must be `application/json` (parameters such as `charset` allowed).
fn check_media(h: &HeaderMap) -> Result<(), DirErr> {
    let ok = header_str(h, "content-type").is_some_and(|ct| {
        ct.split(';')
            .next()
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
    });
    if ok {
        Ok(())
    } else {
        Err(DirErr::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            E_MEDIA,
            "The request body must be application/json.",
        ))
    }
}

enum Route {
    Collection,
    Entity(String),
}

/// Routes on the raw (still percent-encoded) path.
fn route(path: &str) -> Option<Route> {
    let rest = path.strip_prefix(BASE)?.strip_prefix("/Contacts")?;
    if rest.is_empty() {
        return Some(Route::Collection);
    }
    let key = rest.strip_prefix('(')?.strip_suffix(')')?;
    Some(Route::Entity(key.to_string()))
}

async fn dispatch(
    State(st): State<SimState>,
    method: Method,
    uri: Uri,
    h: HeaderMap,
    payload: Bytes,
) -> Response {
    let mut resp = handle(&st, &method, &uri, &h, &payload).unwrap_or_else(|e| e.into_response());
    let hs = resp.headers_mut();
    hs.insert("odata-version", HeaderValue::from_static("4.0"));
    if let Some(c) = h.get("x-correlation-id") {
        hs.insert(HeaderName::from_static("x-correlation-id"), c.clone());
    }
    resp
}

fn handle(st: &SimState, method: &Method, uri: &Uri, h: &HeaderMap, payload: &[u8]) -> Res {
    let who = trust(h)?;
    check_version(h)?;
    let route = route(uri.path()).ok_or_else(|| {
        DirErr::new(
            StatusCode::NOT_FOUND,
            E_ROUTE,
            format!("Resource not found for the segment '{}'.", uri.path()),
        )
    })?;
    let allowed = match route {
        Route::Collection => "GET, POST",
        Route::Entity(_) => "GET, PATCH, DELETE",
    };
    let known = match route {
        Route::Collection => [Method::GET, Method::POST].contains(method),
        Route::Entity(_) => [Method::GET, Method::PATCH, Method::DELETE].contains(method),
    };
    if !known {
        let mut r = DirErr::new(
            StatusCode::METHOD_NOT_ALLOWED,
            E_ROUTE,
            format!("The HTTP method '{method}' is not allowed on this resource."),
        )
        .into_response();
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static(allowed));
        return Ok(r);
    }
    if *method == Method::POST || *method == Method::PATCH {
        check_media(h)?;
    }
    let options = odata::query_options(uri.query()).map_err(DirErr::query)?;
    let mut seen: Vec<&str> = Vec::new();
    for (k, _) in &options {
        if k.starts_with('$') {
            if seen.contains(&k.as_str()) {
                return Err(DirErr::query(format!(
                    "Query option '{k}' was specified more than once, but it must be specified at most once."
                )));
            }
            seen.push(k);
        }
    }
    let req = Req {
        headers: h,
        host: header_str(h, "host").unwrap_or("localhost").to_string(),
        options,
        prefer: prefer(h),
    };
    match route {
        Route::Collection if *method == Method::GET => list(st, who, &req),
        Route::Collection => create(st, who, &req, payload),
        Route::Entity(raw) => {
            let key = odata::parse_guid(&raw).ok_or_else(|| {
                DirErr::query(format!(
                    "Bad Request - Error in query syntax: '{raw}' is not a valid Edm.Guid key."
                ))
            })?;
            match *method {
                Method::GET => get(st, who, &req, &key),
                Method::PATCH => patch(st, who, &req, &key, payload),
                _ => delete(st, who, &req, &key),
            }
        }
    }
}

/// Only `$select` applies to a single entity.
fn entity_select(req: &Req<'_>) -> Result<Option<Vec<usize>>, DirErr> {
    let mut select = None;
    for (k, v) in &req.options {
        match k.as_str() {
            "$select" => {
                select = Some(odata::parse_select::<DirContact>(v).map_err(DirErr::query)?)
            }
            o if o.starts_with('$') => {
                return Err(DirErr::query(format!(
                    "The query option '{o}' is not allowed on this resource."
                )))
            }
            _ => {}
        }
    }
    Ok(select)
}

fn visible<'t>(ten: &'t Tenant, a: &Actor, key: &str) -> Option<&'t DirContact> {
    ten.directory.get(key).filter(|c| a.sees(c.owner))
}

fn with_header(mut r: Response, name: &'static str, value: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(value) {
        r.headers_mut().insert(HeaderName::from_static(name), v);
    }
    r
}

fn entity_answer(
    status: StatusCode,
    c: &DirContact,
    req: &Req<'_>,
    select: Option<&[usize]>,
) -> Response {
    let mut v = entity_json(c, select);
    if let Value::Object(m) = &mut v {
        m.insert(
            "@odata.context".into(),
            Value::String(context(&req.host, select, true)),
        );
    }
    with_header(body(status, &v), "etag", &etag(c))
}

// ---- If-Match -------------------------------------------------------------------

enum Cond {
    None,
    Any,
    Tags(Vec<String>),
}

fn if_match(h: &HeaderMap) -> Cond {
    let vals: Vec<&str> = h
        .get_all("if-match")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    if vals.is_empty() {
        return Cond::None;
    }
    let tags: Vec<String> = vals
        .iter()
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect();
    if tags.iter().any(|t| t == "*") {
        Cond::Any
    } else {
        Cond::Tags(tags)
    }
}

/// A weak or strong tag naming the version (`W/"7"` or `"7"`).
fn tag_matches(tag: &str, c: &DirContact) -> bool {
    let t = tag.strip_prefix("W/").unwrap_or(tag);
    t.strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .is_some_and(|v| v == c.version.to_string())
}

fn if_none_match_any(h: &HeaderMap) -> bool {
    h.get_all("if-none-match")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim() == "*")
}

fn check_version_of(cond: &Cond, c: &DirContact) -> Result<(), DirErr> {
    match cond {
        Cond::Tags(tags) if !tags.iter().any(|t| tag_matches(t, c)) => Err(DirErr::new(
            StatusCode::PRECONDITION_FAILED,
            E_VERSION,
            "The version of the existing record doesn't match the RowVersion property provided.",
        )),
        _ => Ok(()),
    }
}

// ---- writes ---------------------------------------------------------------------

const WRITABLE: &[&str] = &[
    "FirstName",
    "LastName",
    "EMailAddress1",
    "Telephone1",
    "JobTitle",
    "OwnerId",
    "LifecycleCode",
];
const READ_ONLY: &[&str] = &["ContactId", "CreatedOn", "ModifiedOn", "VersionNumber"];

/// Maximum lengths of the string properties, as the Dynamics contact entity has them.
fn max_len(prop: &str) -> usize {
    match prop {
        "FirstName" | "LastName" | "Telephone1" => 50,
        _ => 100,
    }
}

fn same_email(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b) || a.to_lowercase() == b.to_lowercase()
}

fn parse_body(payload: &[u8]) -> Result<Map<String, Value>, DirErr> {
    let malformed = |m: String| DirErr {
        status: StatusCode::BAD_REQUEST,
        code: E_VALIDATION,
        message: m,
        details: Vec::new(),
    };
    if payload.iter().all(u8::is_ascii_whitespace) {
        return Err(malformed("The request body is empty.".into()));
    }
    match serde_json::from_slice::<Value>(payload) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(malformed("The request body must be a JSON object.".into())),
        Err(e) => Err(malformed(format!(
            "The request body is not valid JSON: {e}"
        ))),
    }
}

/// Applies a write body onto a contact (absent = unchanged, null = cleared); returns
/// the validation errors.
fn apply(obj: &Map<String, Value>, c: &mut DirContact, ten: &Tenant) -> Vec<(String, String)> {
    let mut errs = Vec::new();
    for (k, v) in obj {
        if k.starts_with('@') || k.contains('@') {
            continue; // instance annotations (`@odata.etag`, …) are ignored
        }
        if READ_ONLY.contains(&k.as_str()) {
            errs.push((k.clone(), format!("The property '{k}' is read-only.")));
            continue;
        }
        if !WRITABLE.contains(&k.as_str()) {
            errs.push((
                k.clone(),
                format!(
                    "The property '{k}' does not exist on type 'Microsoft.Dynamics.CRM.contact'."
                ),
            ));
            continue;
        }
        match k.as_str() {
            "OwnerId" => match v.as_u64() {
                Some(id) if ten.users.contains_key(&id) => c.owner = id,
                Some(id) => errs.push((
                    k.clone(),
                    format!("systemuser With Id = {id} Does Not Exist"),
                )),
                None if v.is_null() => errs.push((k.clone(), "OwnerId cannot be null.".into())),
                None => errs.push((k.clone(), "OwnerId must be an Edm.Int64.".into())),
            },
            "LifecycleCode" => match v {
                Value::Null => c.lifecycle = None,
                v => match v.as_i64() {
                    Some(n) if LIFECYCLE.contains(&n) => c.lifecycle = Some(n),
                    Some(n) => errs.push((
                        k.clone(),
                        format!("{n} is not a valid value for the option set LifecycleCode."),
                    )),
                    None => errs.push((k.clone(), "LifecycleCode must be an Edm.Int32.".into())),
                },
            },
            name => {
                let slot = match name {
                    "FirstName" => &mut c.first_name,
                    "LastName" => &mut c.last_name,
                    "EMailAddress1" => &mut c.email,
                    "Telephone1" => &mut c.phone,
                    _ => &mut c.job_title,
                };
                match v {
                    Value::Null => *slot = None,
                    Value::String(s) if s.chars().count() > max_len(name) => errs.push((
                        k.clone(),
                        format!("{name} is longer than {} characters.", max_len(name)),
                    )),
                    Value::String(s) => *slot = Some(s.clone()),
                    _ => errs.push((k.clone(), format!("{name} must be an Edm.String."))),
                }
            }
        }
    }
    errs
}

fn duplicate(ten: &Tenant, c: &DirContact) -> Result<(), DirErr> {
    let Some(email) = &c.email else {
        return Ok(());
    };
    let dup = ten
        .directory
        .values()
        .any(|o| o.id != c.id && o.email.as_deref().is_some_and(|e| same_email(e, email)));
    if dup {
        return Err(DirErr::new(
            StatusCode::PRECONDITION_FAILED,
            E_DUPLICATE,
            "A record with matching key values already exists.",
        ));
    }
    Ok(())
}

fn now_ticks() -> i64 {
    now_ms() * TICKS_PER_MS
}

fn blank(id: String, owner: u64) -> DirContact {
    let now = now_ticks();
    DirContact {
        id,
        first_name: None,
        last_name: None,
        email: None,
        phone: None,
        job_title: None,
        owner,
        lifecycle: None,
        created: now,
        modified: now,
        version: 0,
    }
}

/// Validates and stores a new contact; returns it.
fn insert_new(
    ten: &mut Tenant,
    mut c: DirContact,
    obj: &Map<String, Value>,
) -> Result<DirContact, DirErr> {
    let mut errs = apply(obj, &mut c, ten);
    if c.email.is_none() && !errs.iter().any(|(t, _)| t == "EMailAddress1") {
        errs.push(("EMailAddress1".into(), "EMailAddress1 is required.".into()));
    }
    if !errs.is_empty() {
        return Err(DirErr::validation(errs));
    }
    duplicate(ten, &c)?;
    ten.directory_version += 1;
    c.version = ten.directory_version;
    ten.directory.insert(c.id.clone(), c.clone());
    Ok(c)
}

fn new_key(ten: &mut Tenant) -> String {
    let seed = ten.directory_version as u64 ^ 0xD1EC_7000;
    loop {
        let key = ten.directory_rng.get_or_insert(Rng(seed)).uuid();
        if !ten.directory.contains_key(&key) {
            return key;
        }
    }
}

fn created_answer(c: &DirContact, req: &Req<'_>, select: Option<&[usize]>) -> Response {
    let url = entity_url(&req.host, &c.id);
    let r = if req.prefer.representation {
        let r = entity_answer(StatusCode::CREATED, c, req, select);
        with_header(r, "preference-applied", "return=representation")
    } else {
        StatusCode::NO_CONTENT.into_response()
    };
    with_header(with_header(r, "odata-entityid", &url), "location", &url)
}

fn create(st: &SimState, who: (u32, u64), req: &Req<'_>, payload: &[u8]) -> Res {
    let select = entity_select(req)?;
    let mut w = st.write();
    let a = actor_in(&w, who)?;
    require(&a, "contacts:edit")?;
    let obj = parse_body(payload)?;
    let ten = w
        .tenants
        .get_mut(&who.0)
        .ok_or_else(|| DirErr::new(StatusCode::UNAUTHORIZED, E_AUTH, "unknown organization"))?;
    let key = new_key(ten);
    let c = insert_new(ten, blank(key, a.user), &obj)?;
    Ok(created_answer(&c, req, select.as_deref()))
}

fn patch(st: &SimState, who: (u32, u64), req: &Req<'_>, key: &str, payload: &[u8]) -> Res {
    let select = entity_select(req)?;
    let cond = if_match(req.headers);
    st.note_if_match(req.headers);
    let mut w = st.write();
    let a = actor_in(&w, who)?;
    require(&a, "contacts:edit")?;
    let ten = w
        .tenants
        .get_mut(&who.0)
        .ok_or_else(|| DirErr::new(StatusCode::UNAUTHORIZED, E_AUTH, "unknown organization"))?;
    let existing = ten.directory.get(key).cloned();
    let Some(before) = existing else {
        if !matches!(cond, Cond::None) {
            // If-Match says "only if it exists": never an upsert
            return Err(DirErr::not_found(key));
        }
        let obj = parse_body(payload)?;
        let c = insert_new(ten, blank(key.to_string(), a.user), &obj)?;
        return Ok(created_answer(&c, req, select.as_deref()));
    };
    if !a.sees(before.owner) {
        return Err(DirErr::not_found(key));
    }
    let mut before = before;
    if st.take_directory_interference() {
        // A concurrent writer got there first.
        ten.directory_version += 1;
        before.version = ten.directory_version;
        ten.directory.insert(before.id.clone(), before.clone());
    }
    if if_none_match_any(req.headers) {
        return Err(DirErr::new(
            StatusCode::PRECONDITION_FAILED,
            E_DUPLICATE,
            "A record with matching key values already exists.",
        ));
    }
    check_version_of(&cond, &before)?;
    let obj = parse_body(payload)?;
    let mut c = before.clone();
    let errs = apply(&obj, &mut c, ten);
    if !errs.is_empty() {
        return Err(DirErr::validation(errs));
    }
    duplicate(ten, &c)?;
    ten.directory_version += 1;
    c.version = ten.directory_version;
    c.modified = now_ticks().max(before.modified);
    ten.directory.insert(c.id.clone(), c.clone());
    let url = entity_url(&req.host, &c.id);
    let r = if req.prefer.representation {
        let r = entity_answer(StatusCode::OK, &c, req, select.as_deref());
        with_header(r, "preference-applied", "return=representation")
    } else {
        StatusCode::NO_CONTENT.into_response()
    };
    Ok(with_header(r, "odata-entityid", &url))
}

fn delete(st: &SimState, who: (u32, u64), req: &Req<'_>, key: &str) -> Res {
    entity_select(req)?;
    let cond = if_match(req.headers);
    st.note_if_match(req.headers);
    let mut w = st.write();
    let a = actor_in(&w, who)?;
    require(&a, "contacts:delete")?;
    let ten = w
        .tenants
        .get_mut(&who.0)
        .ok_or_else(|| DirErr::new(StatusCode::UNAUTHORIZED, E_AUTH, "unknown organization"))?;
    let c = visible(ten, &a, key).ok_or_else(|| DirErr::not_found(key))?;
    check_version_of(&cond, c)?;
    ten.directory.remove(key);
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---- reads ----------------------------------------------------------------------

fn get(st: &SimState, who: (u32, u64), req: &Req<'_>, key: &str) -> Res {
    let select = entity_select(req)?;
    let w = st.read();
    let a = actor_in(&w, who)?;
    require(&a, "contacts:view")?;
    let ten = w
        .tenants
        .get(&who.0)
        .ok_or_else(|| DirErr::new(StatusCode::UNAUTHORIZED, E_AUTH, "unknown organization"))?;
    let c = visible(ten, &a, key).ok_or_else(|| DirErr::not_found(key))?;
    let unchanged = req
        .headers
        .get_all("if-none-match")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| tag_matches(t.trim(), c));
    if unchanged {
        return Ok(with_header(
            StatusCode::NOT_MODIFIED.into_response(),
            "etag",
            &etag(c),
        ));
    }
    Ok(entity_answer(StatusCode::OK, c, req, select.as_deref()))
}

/// FNV-1a over what a `$skiptoken` is only valid with.
fn fingerprint(filter: &str, orderby: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in filter.bytes().chain([0u8]).chain(orderby.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn skiptoken(fp: u64, offset: usize) -> String {
    format!("{fp:016x}{:x}", offset as u64 ^ (fp & 0xFFFF_FFFF))
}

fn parse_skiptoken(tok: &str, fp: u64) -> Result<usize, DirErr> {
    let bad = || DirErr::query("The $skiptoken is not valid for this query.");
    if tok.len() < 17 || tok.len() > 32 || !tok.is_ascii() {
        return Err(bad());
    }
    let (f, o) = tok.split_at(16);
    let f = u64::from_str_radix(f, 16).map_err(|_| bad())?;
    let o = u64::from_str_radix(o, 16).map_err(|_| bad())?;
    if f != fp {
        return Err(bad());
    }
    usize::try_from(o ^ (fp & 0xFFFF_FFFF)).map_err(|_| bad())
}

fn count_arg(k: &str, v: &str) -> Result<usize, DirErr> {
    v.parse::<usize>().map_err(|_| {
        DirErr::query(format!(
            "Invalid value '{v}' for {k} query option found. The {k} query option requires a non-negative integer value."
        ))
    })
}

fn list(st: &SimState, who: (u32, u64), req: &Req<'_>) -> Res {
    let (mut filter, mut orderby, mut select) = (None, None, None);
    let (mut raw_filter, mut raw_orderby, mut raw_select) = ("", "", None);
    let (mut top, mut skip, mut count, mut token) = (None, None, false, None);
    for (k, v) in &req.options {
        match k.as_str() {
            "$filter" => {
                filter = Some(odata::parse_filter::<DirContact>(v).map_err(DirErr::query)?);
                raw_filter = v;
            }
            "$orderby" => {
                orderby = Some(odata::parse_orderby::<DirContact>(v).map_err(DirErr::query)?);
                raw_orderby = v;
            }
            "$select" => {
                select = Some(odata::parse_select::<DirContact>(v).map_err(DirErr::query)?);
                raw_select = Some(v.as_str());
            }
            "$top" => top = Some(count_arg(k, v)?),
            "$skip" => skip = Some(count_arg(k, v)?),
            "$count" => {
                count = match v.as_str() {
                    "true" => true,
                    "false" => false,
                    _ => return Err(DirErr::query(format!("'{v}' is not a valid count option."))),
                }
            }
            "$skiptoken" => token = Some(v.as_str()),
            o if o.starts_with('$') => {
                return Err(DirErr::query(format!(
                    "The query parameter '{o}' is not supported."
                )))
            }
            _ => {} // custom query options are ignored, as OData allows
        }
    }
    let fp = fingerprint(raw_filter, raw_orderby);
    let start = match (token, skip) {
        (Some(_), Some(_)) => {
            return Err(DirErr::query("$skip cannot be combined with $skiptoken."))
        }
        (Some(t), None) => parse_skiptoken(t, fp)?,
        (None, s) => s.unwrap_or(0),
    };
    let w = st.read();
    let a = actor_in(&w, who)?;
    require(&a, "contacts:view")?;
    let ten = w
        .tenants
        .get(&who.0)
        .ok_or_else(|| DirErr::new(StatusCode::UNAUTHORIZED, E_AUTH, "unknown organization"))?;
    let mut rows: Vec<&DirContact> = ten
        .directory
        .values()
        .filter(|c| a.sees(c.owner))
        .filter(|c| filter.as_ref().is_none_or(|f| f.matches(*c)))
        .collect();
    if let Some(o) = &orderby {
        // stable: ties keep ContactId order
        rows.sort_by(|x, y| o.cmp(*x, *y));
    }
    let total = rows.len();
    let end = top.map_or(total, |t| start.saturating_add(t).min(total));
    let page_size = req.prefer.max_page.unwrap_or(DEFAULT_PAGE);
    let from = start.min(end);
    let to = from.saturating_add(page_size).min(end);
    let sel = select.as_deref();
    let value: Vec<Value> = rows[from..to].iter().map(|c| entity_json(c, sel)).collect();
    let mut out = Map::new();
    out.insert(
        "@odata.context".into(),
        Value::String(context(&req.host, sel, false)),
    );
    if count {
        out.insert("@odata.count".into(), json!(total));
    }
    out.insert("value".into(), Value::Array(value));
    if to < end {
        let mut q: Vec<String> = Vec::new();
        if filter.is_some() {
            q.push(format!("$filter={}", odata::pct_encode(raw_filter)));
        }
        if orderby.is_some() {
            q.push(format!("$orderby={}", odata::pct_encode(raw_orderby)));
        }
        if let Some(s) = raw_select {
            q.push(format!("$select={}", odata::pct_encode(s)));
        }
        if count {
            q.push("$count=true".into());
        }
        if top.is_some() {
            q.push(format!("$top={}", end - to));
        }
        q.push(format!("$skiptoken={}", skiptoken(fp, to)));
        out.insert(
            "@odata.nextLink".into(),
            Value::String(format!(
                "http://{}{BASE}/Contacts?{}",
                req.host,
                q.join("&")
            )),
        );
    }
    let mut r = body(StatusCode::OK, &Value::Object(out));
    if req.prefer.max_page.is_some() {
        r = with_header(
            r,
            "preference-applied",
            &format!("odata.maxpagesize={page_size}"),
        );
    }
    Ok(r)
}

// ---- seed -----------------------------------------------------------------------

const FIRST: &[&str] = &[
    "James",
    "Mary",
    "Robert",
    "Patricia",
    "John",
    "Jennifer",
    "Michael",
    "Linda",
    "David",
    "Elizabeth",
    "William",
    "Barbara",
    "Richard",
    "Susan",
    "Joseph",
    "Jessica",
    "Thomas",
    "Sarah",
    "Carlos",
    "Karen",
    "Daniel",
    "Lisa",
    "Matthew",
    "Nancy",
    "Anthony",
    "Sandra",
];
const LAST: &[&str] = &[
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Hernandez",
    "Lopez",
    "Gonzalez",
    "Wilson",
    "Anderson",
    "Taylor",
    "Moore",
    "Jackson",
    "Martin",
    "Lee",
    "Perez",
    "Thompson",
    "White",
    "Harris",
    "Clark",
    "Lewis",
];
const TITLES: &[&str] = &[
    "Account Manager",
    "Buyer",
    "CFO",
    "CTO",
    "Director of Operations",
    "Engineer",
    "Procurement Lead",
    "VP Sales",
];

/// 2025-01-01T00:00:00Z and 2026-11-01T00:00:00Z in ticks: seeded times fall between.
const T0: i64 = 1_735_689_600_000 * TICKS_PER_MS;
const T_PAST: i64 = 1_793_491_200_000 * TICKS_PER_MS;
const TICKS_PER_SEC: i64 = 1000 * TICKS_PER_MS;

struct Fixture {
    id: &'static str,
    first: Option<&'static str>,
    last: Option<&'static str>,
    email: &'static str,
    phone: Option<&'static str>,
    title: Option<&'static str>,
    owner: u64,
    lifecycle: Option<i64>,
    created: &'static str,
    modified: &'static str,
}

const ACME: &[Fixture] = &[
    Fixture {
        id: "6f1d3c2a-8b4e-4f6a-9c1d-2e3f4a5b6c01",
        first: Some("Ada"),
        last: Some("Lovelace"),
        email: "ada.lovelace@example.com",
        phone: Some("+1-555-0101"),
        title: Some("Chief Analyst"),
        owner: 101,
        lifecycle: Some(100_000_001),
        created: "2025-01-02T10:00:00Z",
        modified: "2025-06-01T12:00:00.1234567Z",
    },
    Fixture {
        id: "6f1d3c2a-8b4e-4f6a-9c1d-2e3f4a5b6c02",
        first: Some("Conan"),
        last: Some("O'Brien"),
        email: "conan.obrien@example.com",
        phone: Some("+1-555-0102"),
        title: Some("Talk Show Host"),
        owner: 102,
        lifecycle: Some(100_000_003),
        created: "2025-01-03T10:00:00Z",
        modified: "2025-02-03T08:15:30.5Z",
    },
    Fixture {
        id: "6f1d3c2a-8b4e-4f6a-9c1d-2e3f4a5b6c03",
        first: Some("100%_Sure"),
        last: Some("Percent"),
        email: "sure.percent@example.com",
        phone: None,
        title: Some("Growth Hacker"),
        owner: 103,
        lifecycle: Some(100_000_000),
        created: "2025-01-04T10:00:00Z",
        modified: "2025-01-04T10:00:00Z",
    },
    Fixture {
        id: "6f1d3c2a-8b4e-4f6a-9c1d-2e3f4a5b6c04",
        first: Some("Back\\slash"),
        last: Some("Escape"),
        email: "back.slash@example.com",
        phone: None,
        title: None,
        owner: 103,
        lifecycle: None,
        created: "2025-01-05T10:00:00Z",
        modified: "2025-03-05T10:00:00.001Z",
    },
    Fixture {
        id: "6f1d3c2a-8b4e-4f6a-9c1d-2e3f4a5b6c05",
        first: Some("Grace"),
        last: Some("Hopper"),
        email: "grace.hopper@example.com",
        phone: Some("+1-555-0105"),
        title: Some("Rear Admiral"),
        owner: 104,
        lifecycle: Some(100_000_009),
        created: "2025-01-06T10:00:00Z",
        modified: "2025-01-06T10:00:00Z",
    },
    Fixture {
        id: "6f1d3c2a-8b4e-4f6a-9c1d-2e3f4a5b6c06",
        first: Some("ADA"),
        last: Some("Shouting"),
        email: "ADA.SHOUTING@EXAMPLE.COM",
        phone: None,
        title: Some("Chief Analyst"),
        owner: 101,
        lifecycle: Some(100_000_002),
        created: "2025-01-07T10:00:00Z",
        modified: "2025-01-07T10:00:00Z",
    },
    Fixture {
        id: "6f1d3c2a-8b4e-4f6a-9c1d-2e3f4a5b6c07",
        first: Some("Fifty%"),
        last: Some("Discount"),
        email: "fifty.discount@example.com",
        phone: None,
        title: None,
        owner: 102,
        lifecycle: None,
        created: "2025-01-08T10:00:00Z",
        modified: "2025-01-08T10:00:00Z",
    },
    Fixture {
        id: "6f1d3c2a-8b4e-4f6a-9c1d-2e3f4a5b6c08",
        first: Some("Snake_Case"),
        last: Some("Python"),
        email: "snake.case@example.com",
        phone: None,
        title: Some("Engineer"),
        owner: 103,
        lifecycle: Some(100_000_001),
        created: "2025-01-09T10:00:00Z",
        modified: "2025-01-09T10:00:00Z",
    },
];

const GLOBEX: &[Fixture] = &[
    Fixture {
        id: "9a0b1c2d-3e4f-4a5b-8c6d-7e8f9a0b1c01",
        first: Some("Hank"),
        last: Some("Scorpio"),
        email: "hank.scorpio@example.com",
        phone: Some("+1-555-0201"),
        title: Some("CEO"),
        owner: 201,
        lifecycle: Some(100_000_003),
        created: "2025-02-01T09:00:00Z",
        modified: "2025-02-01T09:00:00Z",
    },
    Fixture {
        id: "9a0b1c2d-3e4f-4a5b-8c6d-7e8f9a0b1c02",
        first: Some("Ada"),
        last: Some("Lovelace"),
        email: "ada.lovelace@example.com",
        phone: None,
        title: None,
        owner: 202,
        lifecycle: Some(100_000_001),
        created: "2025-02-02T09:00:00Z",
        modified: "2025-02-02T09:00:00Z",
    },
];

fn fixture_ticks(s: &str) -> i64 {
    crate::time::parse_iso(s, 7).map_or(T0, |ns| (ns / 100) as i64)
}

fn seed_tenant(t: &mut Tenant, fixtures: &[Fixture], total: usize, owners: &[u64], seed: u64) {
    let mut r = Rng(seed);
    for f in fixtures {
        t.directory_version += 1;
        let c = DirContact {
            id: f.id.to_string(),
            first_name: f.first.map(str::to_string),
            last_name: f.last.map(str::to_string),
            email: Some(f.email.to_string()),
            phone: f.phone.map(str::to_string),
            job_title: f.title.map(str::to_string),
            owner: f.owner,
            lifecycle: f.lifecycle,
            created: fixture_ticks(f.created),
            modified: fixture_ticks(f.modified),
            version: t.directory_version,
        };
        t.directory.insert(c.id.clone(), c);
    }
    let mut n = 0usize;
    while t.directory.len() < total {
        n += 1;
        let id = r.uuid();
        if t.directory.contains_key(&id) {
            continue;
        }
        let first = *r.pick(FIRST);
        let last = *r.pick(LAST);
        // a whole second, or a fraction of 1–7 digits
        let span_secs = (T_PAST - T0) / 2 / TICKS_PER_SEC;
        let created = T0 + r.below(span_secs as u64) as i64 * TICKS_PER_SEC;
        let fraction = match r.below(4) {
            0 => 0,
            1 => r.range(1, 1000) * 10_000,
            2 => r.range(1, 10_000_000),
            _ => r.range(1, 10) * 1_000_000,
        };
        let modified =
            (created + r.below(180 * 86_400) as i64 * TICKS_PER_SEC + fraction).min(T_PAST - 1);
        t.directory_version += 1;
        let c = DirContact {
            id,
            first_name: (!r.chance(5)).then(|| first.to_string()),
            last_name: Some(last.to_string()),
            email: Some(format!(
                "{}.{}.{n}@example.org",
                first.to_ascii_lowercase(),
                last.to_ascii_lowercase()
            )),
            phone: (!r.chance(30)).then(|| format!("+1-555-{:04}", r.below(10_000))),
            job_title: (!r.chance(25)).then(|| r.pick(TITLES).to_string()),
            owner: *r.pick(owners),
            lifecycle: (!r.chance(15)).then(|| *r.pick(&LIFECYCLE)),
            created,
            modified,
            version: t.directory_version,
        };
        t.directory.insert(c.id.clone(), c);
    }
    t.directory_rng = Some(Rng(seed ^ 0x00D1_7EC7));
}

/// Seeds the directory's contacts: tenant 1 holds 240, tenant 2 holds 6.
pub(crate) fn seed(w: &mut World) {
    if let Some(t) = w.tenants.get_mut(&1) {
        t.directory_version = 1_000_000;
        seed_tenant(t, ACME, 240, &[101, 102, 103, 104], 0xD1EC_0001);
    }
    if let Some(t) = w.tenants.get_mut(&2) {
        t.directory_version = 2_000_000;
        seed_tenant(t, GLOBEX, 6, &[201, 202], 0xD1EC_0002);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_is_deterministic_and_sized() {
        let mut a = crate::seed::world();
        seed(&mut a);
        let mut b = crate::seed::world();
        seed(&mut b);
        let ids = |w: &World, t: u32| -> Vec<String> {
            w.tenants[&t].directory.keys().cloned().collect()
        };
        assert_eq!(ids(&a, 1).len(), 240);
        assert_eq!(ids(&a, 2).len(), 6);
        assert_eq!(ids(&a, 1), ids(&b, 1));
        let t = &a.tenants[&1];
        let owners: std::collections::BTreeSet<u64> =
            t.directory.values().map(|c| c.owner).collect();
        assert_eq!(owners.into_iter().collect::<Vec<_>>(), [101, 102, 103, 104]);
        let mut emails: Vec<String> = t
            .directory
            .values()
            .filter_map(|c| c.email.as_ref().map(|e| e.to_lowercase()))
            .collect();
        emails.sort();
        emails.dedup();
        assert_eq!(emails.len(), 240, "emails unique per tenant");
        for c in t.directory.values() {
            assert_eq!(odata::parse_guid(&c.id).as_deref(), Some(c.id.as_str()));
            assert!(c.created <= c.modified);
        }
        let versions: std::collections::BTreeSet<i64> =
            t.directory.values().map(|c| c.version).collect();
        assert_eq!(versions.len(), 240);
    }
}
