//! `engagements`: notes, emails, calls and meetings in HubSpot-v1 shape. Errors are
//! `{"status": "error", "message", "correlationId", "category"}`. The paged listing is
//! newest `timestamp` first (ties: higher id first) and continues from an `offset`
//! token: `timestamp * 1_000_000 + id` of the last item returned, passed back as is.
//! Notes are governed by `notes:*`, the other types by `activities:view`/`log`.

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Map, Value};

use crate::common::{
    enter, enter_mut, json_response, parse_object, path_id, query_pairs, Actor, Denied, Reader,
    Trust, F,
};
use crate::state::{Engagement, SimState, Tenant};
use crate::time::now_ms;

const TOKEN_SPLIT: u64 = 1_000_000;
const MAX_LIMIT: usize = 250;
const DEFAULT_LIMIT: usize = 100;

pub(crate) fn router(state: SimState) -> Router {
    Router::new()
        .route("/engagements/v1/engagements", post(create))
        .route("/engagements/v1/engagements/paged", get(paged))
        .route(
            "/engagements/v1/engagements/{id}",
            get(get_one).patch(patch).delete(delete),
        )
        .fallback(|h: HeaderMap| async move {
            EngErr::new(
                StatusCode::NOT_FOUND,
                "OBJECT_NOT_FOUND",
                "resource not found",
            )
            .with(&h)
        })
        .with_state(state)
}

pub(crate) struct EngErr {
    status: StatusCode,
    category: &'static str,
    message: String,
    correlation: String,
}

impl EngErr {
    fn new(status: StatusCode, category: &'static str, message: impl Into<String>) -> Self {
        EngErr {
            status,
            category,
            message: message.into(),
            correlation: String::new(),
        }
    }
    fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", message)
    }
    fn fields(errors: Vec<(String, String)>) -> Self {
        let m = errors
            .iter()
            .map(|(f, m)| format!("{f}: {m}"))
            .collect::<Vec<_>>()
            .join("; ");
        Self::invalid(format!("Invalid input: {m}"))
    }
    fn not_found(id: u64) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "OBJECT_NOT_FOUND",
            format!("Engagement {id} does not exist"),
        )
    }
    fn with(mut self, h: &HeaderMap) -> Self {
        self.correlation = correlation(h);
        self
    }
}

fn correlation(h: &HeaderMap) -> String {
    h.get("x-pc-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .unwrap_or_else(|| {
            let mut r = crate::state::Rng(now_ms() as u64 ^ 0x5EED);
            r.uuid()
        })
}

impl From<Denied> for EngErr {
    fn from(d: Denied) -> Self {
        match d {
            Denied::Headers(m) => Self::invalid(m),
            other => Self::new(StatusCode::FORBIDDEN, "FORBIDDEN", other.message()),
        }
    }
}

impl IntoResponse for EngErr {
    fn into_response(self) -> Response {
        json_response(
            self.status,
            &json!({"status": "error", "message": self.message, "correlationId": self.correlation, "category": self.category}),
        )
    }
}

type Res = Result<Response, EngErr>;

pub(crate) fn engagement_json(e: &Engagement) -> Value {
    json!({
        "engagement": {
            "id": e.id,
            "type": e.kind,
            "ownerId": e.owner,
            "timestamp": e.timestamp,
            "createdAt": e.created,
            "lastUpdated": e.updated,
        },
        "associations": {
            "contactIds": e.contacts,
            "companyIds": e.companies,
            "dealIds": e.deals,
        },
        "metadata": e.metadata,
    })
}

fn token(e: &Engagement) -> u64 {
    (e.timestamp.max(0) as u64)
        .saturating_mul(TOKEN_SPLIT)
        .saturating_add(e.id % TOKEN_SPLIT)
}

fn perm(kind: &str, action: &str) -> &'static str {
    match (kind == "NOTE", action) {
        (true, "view") => "notes:view",
        (true, "edit") => "notes:edit",
        (true, _) => "notes:delete",
        (false, "view") => "activities:view",
        // there is no activities:delete: whoever may log an activity may remove it
        (false, _) => "activities:log",
    }
}

fn kind_of(s: &str) -> Option<&'static str> {
    match s {
        "NOTE" => Some("NOTE"),
        "EMAIL" => Some("EMAIL"),
        "CALL" => Some("CALL"),
        "MEETING" => Some("MEETING"),
        _ => None,
    }
}

/// Checks a (merged) metadata object against its type's fields.
fn check_metadata(kind: &str, m: &Map<String, Value>) -> Vec<(String, String)> {
    let mut r = Reader::new(m);
    r.prefix = "metadata.".into();
    let enum_of = |r: &mut Reader<'_>, k: &str, allowed: &[&str]| {
        if let F::Val(s) = r.string(k) {
            if !allowed.contains(&s.as_str()) {
                r.err(k, format!("must be one of {}", allowed.join(", ")));
            }
        }
    };
    match kind {
        "NOTE" => {
            r.unknown(&["body"]);
            if !matches!(r.string("body"), F::Val(_)) {
                r.err("body", "is required");
            }
        }
        "EMAIL" => {
            r.unknown(&["direction", "from", "to", "subject", "text"]);
            enum_of(&mut r, "direction", &["INBOUND", "OUTBOUND"]);
            r.string("from");
            r.strings("to");
            r.string("subject");
            r.string("text");
        }
        "CALL" => {
            r.unknown(&["direction", "durationMilliseconds", "disposition", "body"]);
            enum_of(&mut r, "direction", &["INBOUND", "OUTBOUND"]);
            if let F::Val(d) = r.int("durationMilliseconds") {
                if d < 0 {
                    r.err("durationMilliseconds", "must be 0 or more");
                }
            }
            enum_of(
                &mut r,
                "disposition",
                &["CONNECTED", "NO_ANSWER", "BUSY", "LEFT_VOICEMAIL"],
            );
            r.string("body");
        }
        _ => {
            r.unknown(&["title", "startTime", "endTime", "location", "body"]);
            r.string("title");
            let s = r.int("startTime");
            let e = r.int("endTime");
            if let (F::Val(s), F::Val(e)) = (s, e) {
                if e < s {
                    r.err("endTime", "must not be before startTime");
                }
            }
            r.string("location");
            r.string("body");
        }
    }
    r.errors
}

fn apply_associations(r: &mut Reader<'_>, e: &mut Engagement) {
    if let F::Val(obj) = r.object("associations") {
        let mut ar = Reader::new(obj);
        ar.prefix = "associations.".into();
        ar.unknown(&["contactIds", "companyIds", "dealIds"]);
        for (k, slot) in [
            ("contactIds", &mut e.contacts),
            ("companyIds", &mut e.companies),
            ("dealIds", &mut e.deals),
        ] {
            match ar.ids(k) {
                F::Val(ids) => *slot = ids,
                F::Null => slot.clear(),
                F::Absent => {}
            }
        }
        r.errors.append(&mut ar.errors);
    }
}

fn apply_head(r: &mut Reader<'_>, head: &Map<String, Value>, e: &mut Engagement, ten: &Tenant) {
    let mut hr = Reader::new(head);
    hr.prefix = "engagement.".into();
    hr.unknown(&[
        "id",
        "type",
        "ownerId",
        "timestamp",
        "createdAt",
        "lastUpdated",
    ]);
    match hr.id("ownerId") {
        F::Val(o) if ten.users.contains_key(&o) => e.owner = o,
        F::Val(o) => hr.err("ownerId", format!("owner {o} does not exist")),
        F::Null => hr.err("ownerId", "must not be null"),
        F::Absent => {}
    }
    match hr.int("timestamp") {
        F::Val(t) if t >= 0 => e.timestamp = t,
        F::Val(_) | F::Null => hr.err("timestamp", "must be epoch milliseconds"),
        F::Absent => {}
    }
    r.errors.append(&mut hr.errors);
}

fn visible<'t>(ten: &'t Tenant, a: &Actor, id: u64) -> Result<&'t Engagement, EngErr> {
    ten.engagement(id)
        .filter(|e| a.sees(e.owner))
        .ok_or_else(|| EngErr::not_found(id))
}

fn eid(raw: &str) -> Result<u64, EngErr> {
    path_id(raw).ok_or_else(|| EngErr::invalid(format!("'{raw}' is not a valid engagement id")))
}

async fn get_one(State(st): State<SimState>, h: HeaderMap, Path(id): Path<String>) -> Res {
    inner_get(&st, &h, &id).map_err(|e| e.with(&h))
}

fn inner_get(st: &SimState, h: &HeaderMap, id: &str) -> Res {
    let t = Trust::from_headers(h)?;
    let id = eid(id)?;
    let w = st.read();
    let (ten, a) = enter(&w, &t)?;
    let e = visible(ten, &a, id)?;
    a.require(perm(e.kind, "view"))?;
    Ok(json_response(StatusCode::OK, &engagement_json(e)))
}

async fn create(State(st): State<SimState>, h: HeaderMap, body: Bytes) -> Res {
    inner_create(&st, &h, &body).map_err(|e| e.with(&h))
}

fn inner_create(st: &SimState, h: &HeaderMap, body: &[u8]) -> Res {
    let t = Trust::from_headers(h)?;
    let mut w = st.write();
    let (ten, a) = enter_mut(&mut w, &t)?;
    let obj = parse_object(body).map_err(EngErr::invalid)?;
    let mut r = Reader::new(&obj);
    r.unknown(&["engagement", "associations", "metadata"]);
    let F::Val(head) = r.object("engagement") else {
        return Err(EngErr::invalid("engagement is required"));
    };
    let kind = match head.get("type").and_then(Value::as_str).and_then(kind_of) {
        Some(k) => k,
        None => {
            return Err(EngErr::invalid(
                "engagement.type is required: one of NOTE, EMAIL, CALL, MEETING",
            ))
        }
    };
    a.require(perm(kind, "edit"))?;
    let now = now_ms();
    let mut e = Engagement {
        id: 0,
        kind,
        owner: a.user,
        timestamp: now,
        created: now,
        updated: now,
        contacts: Vec::new(),
        companies: Vec::new(),
        deals: Vec::new(),
        metadata: Map::new(),
    };
    apply_head(&mut r, head, &mut e, ten);
    apply_associations(&mut r, &mut e);
    if let F::Val(m) = r.object("metadata") {
        e.metadata = m.clone();
    }
    let mut errors = r.errors;
    errors.extend(check_metadata(kind, &e.metadata));
    if !errors.is_empty() {
        return Err(EngErr::fields(errors));
    }
    ten.next_engagement += 1;
    e.id = ten.next_engagement;
    let out = engagement_json(&e);
    ten.insert_engagement(e);
    Ok(json_response(StatusCode::OK, &out))
}

async fn patch(
    State(st): State<SimState>,
    h: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Res {
    inner_patch(&st, &h, &id, &body).map_err(|e| e.with(&h))
}

fn inner_patch(st: &SimState, h: &HeaderMap, id: &str, body: &[u8]) -> Res {
    let t = Trust::from_headers(h)?;
    let id = eid(id)?;
    let mut w = st.write();
    let (ten, a) = enter_mut(&mut w, &t)?;
    let before = visible(ten, &a, id)?.clone();
    a.require(perm(before.kind, "edit"))?;
    let obj = parse_object(body).map_err(EngErr::invalid)?;
    let mut r = Reader::new(&obj);
    r.unknown(&["engagement", "associations", "metadata"]);
    let mut e = before.clone();
    if let F::Val(head) = r.object("engagement") {
        if let Some(ty) = head.get("type") {
            if ty.as_str() != Some(before.kind) {
                return Err(EngErr::invalid("engagement.type cannot be changed"));
            }
        }
        apply_head(&mut r, head, &mut e, ten);
    }
    apply_associations(&mut r, &mut e);
    if let F::Val(m) = r.object("metadata") {
        for (k, v) in m {
            if v.is_null() {
                e.metadata.remove(k);
            } else {
                e.metadata.insert(k.clone(), v.clone());
            }
        }
    }
    let mut errors = r.errors;
    errors.extend(check_metadata(e.kind, &e.metadata));
    if !errors.is_empty() {
        return Err(EngErr::fields(errors));
    }
    e.updated = now_ms().max(before.updated);
    let out = engagement_json(&e);
    ten.remove_engagement(id);
    ten.insert_engagement(e);
    Ok(json_response(StatusCode::OK, &out))
}

async fn delete(State(st): State<SimState>, h: HeaderMap, Path(id): Path<String>) -> Res {
    inner_delete(&st, &h, &id).map_err(|e| e.with(&h))
}

fn inner_delete(st: &SimState, h: &HeaderMap, id: &str) -> Res {
    let t = Trust::from_headers(h)?;
    let id = eid(id)?;
    let mut w = st.write();
    let (ten, a) = enter_mut(&mut w, &t)?;
    let kind = visible(ten, &a, id)?.kind;
    a.require(perm(kind, "delete"))?;
    ten.remove_engagement(id);
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn paged(State(st): State<SimState>, h: HeaderMap, RawQuery(q): RawQuery) -> Res {
    inner_paged(&st, &h, q.as_deref()).map_err(|e| e.with(&h))
}

fn inner_paged(st: &SimState, h: &HeaderMap, q: Option<&str>) -> Res {
    let t = Trust::from_headers(h)?;
    let w = st.read();
    let (ten, a) = enter(&w, &t)?;
    let mut limit = DEFAULT_LIMIT;
    let mut offset: Option<u64> = None;
    let mut kind: Option<&'static str> = None;
    let (mut contact, mut company, mut deal) = (None, None, None);
    let (mut since, mut until) = (None, None);
    let bad = |k: &str, v: &str| EngErr::invalid(format!("invalid value '{v}' for parameter {k}"));
    for (k, v) in query_pairs(q) {
        match k.as_str() {
            "limit" => match v.parse::<usize>() {
                Ok(l) if (1..=MAX_LIMIT).contains(&l) => limit = l,
                _ => {
                    return Err(EngErr::invalid(format!(
                        "limit must be between 1 and {MAX_LIMIT}"
                    )))
                }
            },
            "offset" => offset = Some(v.parse::<u64>().map_err(|_| bad(&k, &v))?),
            "type" => kind = Some(kind_of(&v).ok_or_else(|| bad(&k, &v))?),
            "contactId" => contact = Some(v.parse::<u64>().map_err(|_| bad(&k, &v))?),
            "companyId" => company = Some(v.parse::<u64>().map_err(|_| bad(&k, &v))?),
            "dealId" => deal = Some(v.parse::<u64>().map_err(|_| bad(&k, &v))?),
            "since" => since = Some(v.parse::<i64>().map_err(|_| bad(&k, &v))?),
            "until" => until = Some(v.parse::<i64>().map_err(|_| bad(&k, &v))?),
            _ => {}
        }
    }
    if let Some(k) = kind {
        a.require(perm(k, "view"))?;
    }
    let upper = match offset {
        Some(tok) => {
            let ts = (tok / TOKEN_SPLIT) as i64;
            let id = tok % TOKEN_SPLIT;
            std::ops::Bound::Excluded((ts, id))
        }
        None => std::ops::Bound::Unbounded,
    };
    let lower = match since {
        Some(s) => std::ops::Bound::Included((s, 0)),
        None => std::ops::Bound::Unbounded,
    };
    let (lower, upper) = match (lower, upper) {
        // an empty range (cursor already below `since`) would make BTreeMap::range panic
        (std::ops::Bound::Included(lo), std::ops::Bound::Excluded(hi)) if lo >= hi => {
            return Ok(json_response(
                StatusCode::OK,
                &json!({"results": [], "hasMore": false, "offset": offset.unwrap_or(0)}),
            ))
        }
        x => x,
    };
    let mut hits = ten
        .engagements
        .range((lower, upper))
        .rev()
        .map(|(_, e)| e)
        .filter(|e| until.is_none_or(|u| e.timestamp <= u))
        .filter(|e| kind.is_none_or(|k| e.kind == k))
        .filter(|e| contact.is_none_or(|c| e.contacts.contains(&c)))
        .filter(|e| company.is_none_or(|c| e.companies.contains(&c)))
        .filter(|e| deal.is_none_or(|d| e.deals.contains(&d)))
        .filter(|e| a.sees(e.owner) && a.can(perm(e.kind, "view")));
    let page: Vec<&Engagement> = hits.by_ref().take(limit).collect();
    let has_more = hits.next().is_some();
    let next = page.last().map(|e| token(e)).or(offset).unwrap_or(0);
    let results: Vec<Value> = page.into_iter().map(engagement_json).collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({"results": results, "hasMore": has_more, "offset": next}),
    ))
}

pub(crate) fn internal() -> Response {
    let mut e = EngErr::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "INTERNAL",
        "internal error",
    );
    e.correlation = crate::state::Rng(now_ms() as u64 ^ 0x1A7E).uuid();
    e.into_response()
}
