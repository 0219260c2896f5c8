//! `crm-core`: contacts and companies (camelCase, epoch milliseconds). Errors are
//! `{"error": {"code", "message", "fieldErrors"?}}` with a proper status. Companies have
//! no PATCH, only a full-replace PUT guarded by `rowVersion`.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};

use crate::common::{
    enter, enter_mut, json_response, parse_object, path_id, Actor, Denied, Reader, Trust, F,
};
use crate::query::{self, Fv, Kind, Row};
use crate::state::{diff, Company, Contact, SimState, Tenant};
use crate::time::now_ms;

pub(crate) fn router(state: SimState) -> Router {
    Router::new()
        .route("/api/v3/contacts", post(create_contact))
        .route("/api/v3/contacts/query", post(query_contacts))
        .route(
            "/api/v3/contacts/{id}",
            get(get_contact).patch(patch_contact).delete(delete_contact),
        )
        .route("/api/v3/companies", post(create_company))
        .route("/api/v3/companies/query", post(query_companies))
        .route(
            "/api/v3/companies/{id}",
            get(get_company).put(put_company).delete(delete_company),
        )
        .fallback(|| async { CoreErr::new(StatusCode::NOT_FOUND, "NOT_FOUND", "no such resource") })
        .with_state(state)
}

pub(crate) struct CoreErr {
    status: StatusCode,
    code: &'static str,
    message: String,
    fields: Vec<(String, String)>,
}

impl CoreErr {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        CoreErr {
            status,
            code,
            message: message.into(),
            fields: Vec::new(),
        }
    }
    fn validation(fields: Vec<(String, String)>) -> Self {
        CoreErr {
            status: StatusCode::BAD_REQUEST,
            code: "VALIDATION",
            message: "request validation failed".into(),
            fields,
        }
    }
    fn bad_body(msg: String) -> Self {
        CoreErr {
            status: StatusCode::BAD_REQUEST,
            code: "VALIDATION",
            fields: vec![("body".into(), msg.clone())],
            message: msg,
        }
    }
    fn not_found(what: &str, id: u64) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            format!("{what} {id} not found"),
        )
    }
}

impl From<Denied> for CoreErr {
    fn from(d: Denied) -> Self {
        match d {
            Denied::Headers(m) => CoreErr {
                status: StatusCode::BAD_REQUEST,
                code: "VALIDATION",
                fields: vec![("headers".into(), m.clone())],
                message: m,
            },
            other => CoreErr::new(StatusCode::FORBIDDEN, "FORBIDDEN", other.message()),
        }
    }
}

impl IntoResponse for CoreErr {
    fn into_response(self) -> Response {
        let mut err = json!({"code": self.code, "message": self.message});
        if self.code == "VALIDATION" {
            err["fieldErrors"] = Value::Array(
                self.fields
                    .into_iter()
                    .map(|(f, m)| json!({"field": f, "message": m}))
                    .collect(),
            );
        }
        json_response(self.status, &json!({ "error": err }))
    }
}

type Res = Result<Response, CoreErr>;

fn id_of(raw: &str, field: &str) -> Result<u64, CoreErr> {
    path_id(raw).ok_or_else(|| {
        CoreErr::validation(vec![(field.into(), "must be a positive integer".into())])
    })
}

// ---- contacts -------------------------------------------------------------------

impl Row for Contact {
    const FIELDS: &'static [(&'static str, Kind)] = &[
        ("contactId", Kind::Int),
        ("firstName", Kind::Str),
        ("lastName", Kind::Str),
        ("emailAddress", Kind::Str),
        ("phoneNumber", Kind::Str),
        ("jobTitle", Kind::Str),
        ("companyId", Kind::Int),
        ("ownerUserId", Kind::Int),
        ("lifecycleStage", Kind::Int),
        ("createdAt", Kind::Int),
        ("modifiedAt", Kind::Int),
    ];
    const ID: &'static str = "contactId";
    fn get(&self, f: &str) -> Fv<'_> {
        let s = opt_str;
        match f {
            "contactId" => Fv::Int(self.id as i64),
            "firstName" => s(&self.first_name),
            "lastName" => s(&self.last_name),
            "emailAddress" => Fv::Str(&self.email),
            "phoneNumber" => s(&self.phone),
            "jobTitle" => s(&self.job_title),
            "companyId" => self.company_id.map_or(Fv::Null, |i| Fv::Int(i as i64)),
            "ownerUserId" => Fv::Int(self.owner as i64),
            "lifecycleStage" => Fv::Int(self.lifecycle),
            "createdAt" => Fv::Int(self.created),
            "modifiedAt" => Fv::Int(self.modified),
            _ => Fv::Null,
        }
    }
}

fn opt_str(o: &Option<String>) -> Fv<'_> {
    o.as_deref().map_or(Fv::Null, Fv::Str)
}

pub(crate) fn contact_json(c: &Contact) -> Value {
    json!({
        "contactId": c.id,
        "firstName": c.first_name,
        "lastName": c.last_name,
        "emailAddress": c.email,
        "phoneNumber": c.phone,
        "jobTitle": c.job_title,
        "companyId": c.company_id,
        "ownerUserId": c.owner,
        "lifecycleStage": c.lifecycle,
        "createdAt": c.created,
        "modifiedAt": c.modified,
    })
}

const CONTACT_KEYS: &[&str] = &[
    "firstName",
    "lastName",
    "emailAddress",
    "phoneNumber",
    "jobTitle",
    "companyId",
    "ownerUserId",
    "lifecycleStage",
    // read-only, accepted and ignored so that a read record can be written back
    "contactId",
    "createdAt",
    "modifiedAt",
];
const LIFECYCLE: [i64; 5] = [1, 2, 3, 4, 9];
const AUDIT_SKIP: &[&str] = &["contactId", "createdAt", "modifiedAt"];

fn valid_email(s: &str) -> bool {
    let mut parts = s.split('@');
    let (Some(local), Some(domain), None) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && !s.chars().any(char::is_whitespace)
        && s.len() <= 254
}

fn same_email(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
        || (!(a.is_ascii() && b.is_ascii()) && a.to_lowercase() == b.to_lowercase())
}

/// JSON merge of a write body onto a contact (absent = unchanged, null = cleared).
fn apply_contact(r: &mut Reader<'_>, c: &mut Contact, ten: &Tenant) {
    r.unknown(CONTACT_KEYS);
    let opt = |r: &mut Reader<'_>, k: &str, slot: &mut Option<String>| match r.string(k) {
        F::Val(s) => *slot = Some(s),
        F::Null => *slot = None,
        F::Absent => {}
    };
    opt(r, "firstName", &mut c.first_name);
    opt(r, "lastName", &mut c.last_name);
    opt(r, "phoneNumber", &mut c.phone);
    opt(r, "jobTitle", &mut c.job_title);
    match r.string("emailAddress") {
        F::Val(s) if valid_email(&s) => c.email = s,
        F::Val(_) => r.err("emailAddress", "must be a valid email address"),
        F::Null => r.err("emailAddress", "must not be null"),
        F::Absent => {}
    }
    match r.id("companyId") {
        F::Val(id) if ten.companies.contains_key(&id) => c.company_id = Some(id),
        F::Val(id) => r.err("companyId", format!("company {id} does not exist")),
        F::Null => c.company_id = None,
        F::Absent => {}
    }
    match r.id("ownerUserId") {
        F::Val(id) if ten.users.contains_key(&id) => c.owner = id,
        F::Val(id) => r.err("ownerUserId", format!("user {id} does not exist")),
        F::Null => r.err("ownerUserId", "must not be null"),
        F::Absent => {}
    }
    match r.int("lifecycleStage") {
        F::Val(v) if LIFECYCLE.contains(&v) => c.lifecycle = v,
        F::Val(_) => r.err("lifecycleStage", "must be one of 1, 2, 3, 4, 9"),
        F::Null => r.err("lifecycleStage", "must not be null"),
        F::Absent => {}
    }
}

fn check_duplicate(ten: &Tenant, c: &Contact) -> Result<(), CoreErr> {
    if ten
        .contacts
        .values()
        .any(|o| o.id != c.id && same_email(&o.email, &c.email))
    {
        return Err(CoreErr::new(
            StatusCode::CONFLICT,
            "DUPLICATE_EMAIL",
            format!("a contact with emailAddress {} already exists", c.email),
        ));
    }
    Ok(())
}

fn visible_contact<'t>(ten: &'t Tenant, a: &Actor, id: u64) -> Result<&'t Contact, CoreErr> {
    ten.contacts
        .get(&id)
        .filter(|c| a.sees(c.owner))
        .ok_or_else(|| CoreErr::not_found("contact", id))
}

async fn get_contact(State(st): State<SimState>, h: HeaderMap, Path(id): Path<String>) -> Res {
    let t = Trust::from_headers(&h)?;
    let id = id_of(&id, "contactId")?;
    let w = st.read();
    let (ten, a) = enter(&w, &t)?;
    a.require("contacts:view")?;
    let c = visible_contact(ten, &a, id)?;
    Ok(json_response(StatusCode::OK, &contact_json(c)))
}

async fn create_contact(State(st): State<SimState>, h: HeaderMap, body: Bytes) -> Res {
    let t = Trust::from_headers(&h)?;
    let mut w = st.write();
    let (ten, a) = enter_mut(&mut w, &t)?;
    a.require("contacts:edit")?;
    let obj = parse_object(&body).map_err(CoreErr::bad_body)?;
    let now = now_ms();
    let mut c = Contact {
        id: 0,
        first_name: None,
        last_name: None,
        email: String::new(),
        phone: None,
        job_title: None,
        company_id: None,
        owner: a.user,
        lifecycle: 1,
        created: now,
        modified: now,
    };
    let mut r = Reader::new(&obj);
    apply_contact(&mut r, &mut c, ten);
    if !obj.contains_key("emailAddress") {
        r.err("emailAddress", "is required");
    }
    if !r.errors.is_empty() {
        return Err(CoreErr::validation(r.errors));
    }
    check_duplicate(ten, &c)?;
    ten.next_contact += 1;
    c.id = ten.next_contact;
    let out = contact_json(&c);
    ten.contacts.insert(c.id, c);
    let changes = diff(&json!({}), &out, AUDIT_SKIP);
    ten.audit_write(
        "contact.created",
        "contact",
        ten.next_contact,
        a.user,
        changes,
    );
    Ok(json_response(StatusCode::CREATED, &out))
}

async fn patch_contact(
    State(st): State<SimState>,
    h: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Res {
    let t = Trust::from_headers(&h)?;
    let id = id_of(&id, "contactId")?;
    let mut w = st.write();
    let (ten, a) = enter_mut(&mut w, &t)?;
    a.require("contacts:edit")?;
    let before = visible_contact(ten, &a, id)?.clone();
    let obj = parse_object(&body).map_err(CoreErr::bad_body)?;
    let mut c = before.clone();
    let mut r = Reader::new(&obj);
    apply_contact(&mut r, &mut c, ten);
    if !r.errors.is_empty() {
        return Err(CoreErr::validation(r.errors));
    }
    check_duplicate(ten, &c)?;
    c.modified = now_ms().max(before.modified);
    let out = contact_json(&c);
    ten.contacts.insert(id, c);
    let changes = diff(&contact_json(&before), &out, AUDIT_SKIP);
    ten.audit_write("contact.updated", "contact", id, a.user, changes);
    Ok(json_response(StatusCode::OK, &out))
}

async fn delete_contact(State(st): State<SimState>, h: HeaderMap, Path(id): Path<String>) -> Res {
    let t = Trust::from_headers(&h)?;
    let id = id_of(&id, "contactId")?;
    let mut w = st.write();
    let (ten, a) = enter_mut(&mut w, &t)?;
    a.require("contacts:delete")?;
    visible_contact(ten, &a, id)?;
    ten.contacts.remove(&id);
    for d in ten.deals.values_mut() {
        d.contacts.retain(|c| *c != id);
    }
    ten.audit_write("contact.deleted", "contact", id, a.user, json!({}));
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn query_contacts(State(st): State<SimState>, h: HeaderMap, body: Bytes) -> Res {
    let t = Trust::from_headers(&h)?;
    let w = st.read();
    let (ten, a) = enter(&w, &t)?;
    a.require("contacts:view")?;
    let obj = parse_object(&body).map_err(CoreErr::bad_body)?;
    let q = query::parse::<Contact>(&obj).map_err(CoreErr::validation)?;
    let (page, total) = query::run(&q, ten.contacts.values().filter(|c| a.sees(c.owner)));
    let records: Vec<Value> = page.into_iter().map(contact_json).collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({"records": records, "totalCount": total}),
    ))
}

// ---- companies ------------------------------------------------------------------

impl Row for Company {
    const FIELDS: &'static [(&'static str, Kind)] = &[
        ("companyId", Kind::Int),
        ("companyName", Kind::Str),
        ("webDomain", Kind::Str),
        ("industryCode", Kind::Str),
        ("numEmployees", Kind::Int),
        ("phone", Kind::Str),
        ("city", Kind::Str),
        ("countryCode", Kind::Str),
        ("ownerUserId", Kind::Int),
        ("createdAt", Kind::Int),
        ("modifiedAt", Kind::Int),
        ("rowVersion", Kind::Int),
    ];
    const ID: &'static str = "companyId";
    fn get(&self, f: &str) -> Fv<'_> {
        let s = opt_str;
        match f {
            "companyId" => Fv::Int(self.id as i64),
            "companyName" => Fv::Str(&self.name),
            "webDomain" => s(&self.domain),
            "industryCode" => s(&self.industry),
            "numEmployees" => self.employees.map_or(Fv::Null, Fv::Int),
            "phone" => s(&self.phone),
            "city" => s(&self.city),
            "countryCode" => s(&self.country),
            "ownerUserId" => Fv::Int(self.owner as i64),
            "createdAt" => Fv::Int(self.created),
            "modifiedAt" => Fv::Int(self.modified),
            "rowVersion" => Fv::Int(self.row_version),
            _ => Fv::Null,
        }
    }
}

pub(crate) fn company_json(c: &Company) -> Value {
    json!({
        "companyId": c.id,
        "companyName": c.name,
        "webDomain": c.domain,
        "industryCode": c.industry,
        "numEmployees": c.employees,
        "phone": c.phone,
        "city": c.city,
        "countryCode": c.country,
        "ownerUserId": c.owner,
        "createdAt": c.created,
        "modifiedAt": c.modified,
        "rowVersion": c.row_version,
    })
}

const COMPANY_KEYS: &[&str] = &[
    "companyName",
    "webDomain",
    "industryCode",
    "numEmployees",
    "phone",
    "city",
    "countryCode",
    "ownerUserId",
    "rowVersion",
    "companyId",
    "createdAt",
    "modifiedAt",
];

/// Full-replace semantics (create and PUT alike): an absent nullable field is null.
/// `default_owner` is the creator on POST; on PUT `ownerUserId` is required.
fn read_company(r: &mut Reader<'_>, c: &mut Company, ten: &Tenant, default_owner: Option<u64>) {
    r.unknown(COMPANY_KEYS);
    let opt = |r: &mut Reader<'_>, k: &str, slot: &mut Option<String>| {
        *slot = match r.string(k) {
            F::Val(s) => Some(s),
            _ => None,
        }
    };
    opt(r, "webDomain", &mut c.domain);
    opt(r, "industryCode", &mut c.industry);
    opt(r, "phone", &mut c.phone);
    opt(r, "city", &mut c.city);
    match r.string("companyName") {
        F::Val(s) if !s.trim().is_empty() => c.name = s,
        F::Val(_) => r.err("companyName", "must not be blank"),
        F::Null | F::Absent => r.err("companyName", "is required"),
    }
    c.employees = match r.int("numEmployees") {
        F::Val(n) if n >= 0 => Some(n),
        F::Val(_) => {
            r.err("numEmployees", "must be zero or more");
            None
        }
        _ => None,
    };
    c.country = match r.string("countryCode") {
        F::Val(s) if s.len() == 2 && s.bytes().all(|b| b.is_ascii_uppercase()) => Some(s),
        F::Val(_) => {
            r.err("countryCode", "must be an ISO 3166-1 alpha-2 code");
            None
        }
        _ => None,
    };
    match (r.id("ownerUserId"), default_owner) {
        (F::Val(id), _) if ten.users.contains_key(&id) => c.owner = id,
        (F::Val(id), _) => r.err("ownerUserId", format!("user {id} does not exist")),
        (F::Absent, Some(d)) => c.owner = d,
        (F::Null, _) => r.err("ownerUserId", "must not be null"),
        (F::Absent, None) => r.err("ownerUserId", "is required"),
    }
}

fn visible_company<'t>(ten: &'t Tenant, a: &Actor, id: u64) -> Result<&'t Company, CoreErr> {
    ten.companies
        .get(&id)
        .filter(|c| a.sees(c.owner))
        .ok_or_else(|| CoreErr::not_found("company", id))
}

async fn get_company(State(st): State<SimState>, h: HeaderMap, Path(id): Path<String>) -> Res {
    let t = Trust::from_headers(&h)?;
    let id = id_of(&id, "companyId")?;
    let w = st.read();
    let (ten, a) = enter(&w, &t)?;
    a.require("companies:view")?;
    let c = visible_company(ten, &a, id)?;
    Ok(json_response(StatusCode::OK, &company_json(c)))
}

async fn create_company(State(st): State<SimState>, h: HeaderMap, body: Bytes) -> Res {
    let t = Trust::from_headers(&h)?;
    let mut w = st.write();
    let (ten, a) = enter_mut(&mut w, &t)?;
    a.require("companies:edit")?;
    let obj = parse_object(&body).map_err(CoreErr::bad_body)?;
    let now = now_ms();
    let mut c = Company {
        id: 0,
        name: String::new(),
        domain: None,
        industry: None,
        employees: None,
        phone: None,
        city: None,
        country: None,
        owner: a.user,
        created: now,
        modified: now,
        row_version: 1,
    };
    let mut r = Reader::new(&obj);
    read_company(&mut r, &mut c, ten, Some(a.user));
    if !r.errors.is_empty() {
        return Err(CoreErr::validation(r.errors));
    }
    ten.next_company += 1;
    c.id = ten.next_company;
    let out = company_json(&c);
    ten.companies.insert(c.id, c);
    let changes = diff(
        &json!({}),
        &out,
        &["companyId", "createdAt", "modifiedAt", "rowVersion"],
    );
    ten.audit_write(
        "company.created",
        "company",
        ten.next_company,
        a.user,
        changes,
    );
    Ok(json_response(StatusCode::CREATED, &out))
}

async fn put_company(
    State(st): State<SimState>,
    h: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Res {
    let t = Trust::from_headers(&h)?;
    let id = id_of(&id, "companyId")?;
    let mut w = st.write();
    let (ten, a) = enter_mut(&mut w, &t)?;
    a.require("companies:edit")?;
    let mut before = visible_company(ten, &a, id)?.clone();
    if st.take_interference() {
        // A concurrent writer got there first (fault injection for read–merge–write tests).
        before.row_version += 1;
        ten.companies.insert(id, before.clone());
    }
    let obj = parse_object(&body).map_err(CoreErr::bad_body)?;
    let mut c = before.clone();
    let mut r = Reader::new(&obj);
    read_company(&mut r, &mut c, ten, None);
    let version = r.int("rowVersion");
    if !r.errors.is_empty() {
        return Err(CoreErr::validation(r.errors));
    }
    match version {
        F::Val(v) if v == before.row_version => {}
        F::Val(v) => {
            return Err(CoreErr::new(
                StatusCode::CONFLICT,
                "VERSION_CONFLICT",
                format!(
                    "rowVersion {v} is stale; the current rowVersion is {}",
                    before.row_version
                ),
            ))
        }
        F::Null | F::Absent => {
            return Err(CoreErr::new(
                StatusCode::CONFLICT,
                "VERSION_CONFLICT",
                "rowVersion is required for a full replace",
            ))
        }
    }
    c.row_version = before.row_version + 1;
    c.modified = now_ms().max(before.modified);
    let out = company_json(&c);
    ten.companies.insert(id, c);
    let changes = diff(
        &company_json(&before),
        &out,
        &["companyId", "createdAt", "modifiedAt", "rowVersion"],
    );
    ten.audit_write("company.updated", "company", id, a.user, changes);
    Ok(json_response(StatusCode::OK, &out))
}

async fn delete_company(State(st): State<SimState>, h: HeaderMap, Path(id): Path<String>) -> Res {
    let t = Trust::from_headers(&h)?;
    let id = id_of(&id, "companyId")?;
    let mut w = st.write();
    let (ten, a) = enter_mut(&mut w, &t)?;
    a.require("companies:delete")?;
    visible_company(ten, &a, id)?;
    ten.companies.remove(&id);
    // the database's ON DELETE SET NULL
    for c in ten.contacts.values_mut() {
        if c.company_id == Some(id) {
            c.company_id = None;
        }
    }
    for d in ten.deals.values_mut() {
        if d.company == Some(id) {
            d.company = None;
        }
    }
    ten.audit_write("company.deleted", "company", id, a.user, json!({}));
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn query_companies(State(st): State<SimState>, h: HeaderMap, body: Bytes) -> Res {
    let t = Trust::from_headers(&h)?;
    let w = st.read();
    let (ten, a) = enter(&w, &t)?;
    a.require("companies:view")?;
    let obj = parse_object(&body).map_err(CoreErr::bad_body)?;
    let q = query::parse::<Company>(&obj).map_err(CoreErr::validation)?;
    let (page, total) = query::run(&q, ten.companies.values().filter(|c| a.sees(c.owner)));
    let records: Vec<Value> = page.into_iter().map(company_json).collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({"records": records, "totalCount": total}),
    ))
}

pub(crate) fn internal() -> Response {
    CoreErr::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "INTERNAL",
        "internal server error",
    )
    .into_response()
}
