//! `sales`: deals and pipelines (.NET shop: PascalCase, ASP.NET `"/Date(ms)/"` dates,
//! `POST` for updates, 200 on create). Errors are `{"Message", "ErrorCode"}` with codes
//! 400xxx (validation), 403001, 404001, 500001. Like ASP.NET it ignores JSON properties
//! and query parameters it does not know, and binds query parameter names
//! case-insensitively.
//!
//! Validation codes: 400001 trust headers, 400002 malformed body, 400010 required field
//! missing, 400011 invalid field value, 400012 unknown pipeline, 400013 unknown stage,
//! 400017 stage not in the deal's pipeline, 400020 `StageId` in Update, 400021
//! `PipelineId` changed in Update, 400030 invalid search parameter.

use std::cmp::Ordering;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};

use crate::common::{
    enter, enter_mut, json_response, parse_object, path_id, query_pairs, Actor, Denied, Reader,
    Trust, F,
};
use crate::state::{diff, Deal, Pipeline, SimState, Tenant};
use crate::time::{fmt_aspnet, midnight, now_ms, parse_aspnet, parse_ymd, DAY_MS};

pub(crate) fn router(state: SimState) -> Router {
    Router::new()
        .route("/Sales/Deals", post(create_deal))
        .route("/Sales/Deals/Search", get(search))
        .route("/Sales/Deals/{id}", get(get_deal).delete(delete_deal))
        .route("/Sales/Deals/{id}/Update", post(update_deal))
        .route("/Sales/Deals/{id}/MoveStage", post(move_stage))
        .route("/Sales/Pipelines", get(list_pipelines))
        .route("/Sales/Pipelines/{id}", get(get_pipeline))
        .fallback(|| async {
            SalesErr::new(
                StatusCode::NOT_FOUND,
                404_001,
                "No HTTP resource was found that matches the request URI.",
            )
        })
        .with_state(state)
}

pub(crate) struct SalesErr {
    status: StatusCode,
    code: u32,
    message: String,
}

impl SalesErr {
    fn new(status: StatusCode, code: u32, message: impl Into<String>) -> Self {
        SalesErr {
            status,
            code,
            message: message.into(),
        }
    }
    fn bad(code: u32, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
    fn not_found(what: &str, id: u64) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            404_001,
            format!("{what} {id} was not found."),
        )
    }
    fn fields(errors: Vec<(String, String)>) -> Self {
        let msg = errors
            .iter()
            .map(|(f, m)| format!("{f}: {m}"))
            .collect::<Vec<_>>()
            .join("; ");
        Self::bad(400_011, format!("The request is invalid. {msg}"))
    }
}

impl From<Denied> for SalesErr {
    fn from(d: Denied) -> Self {
        match d {
            Denied::Headers(m) => Self::bad(400_001, m),
            other => Self::new(StatusCode::FORBIDDEN, 403_001, other.message()),
        }
    }
}

impl IntoResponse for SalesErr {
    fn into_response(self) -> Response {
        json_response(
            self.status,
            &json!({"Message": self.message, "ErrorCode": self.code}),
        )
    }
}

type Res = Result<Response, SalesErr>;

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct DealOut {
    deal_id: u64,
    deal_name: String,
    amount: Option<Box<RawValue>>,
    currency_code: String,
    pipeline_id: u64,
    stage_id: u64,
    status: &'static str,
    close_date: Option<String>,
    company_id: Option<u64>,
    contact_ids: Vec<u64>,
    owner_id: u64,
    created: String,
    modified: String,
}

/// Two decimal places, as the decimal(18,2) column gives them.
fn money(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let a = cents.unsigned_abs();
    format!("{sign}{}.{:02}", a / 100, a % 100)
}

fn status_of(ten: &Tenant, stage: u64) -> &'static str {
    match ten.stage(stage).map(|(_, s)| s.stage_type) {
        Some(1) => "Won",
        Some(2) => "Lost",
        _ => "Open",
    }
}

fn deal_out(ten: &Tenant, d: &Deal) -> DealOut {
    DealOut {
        deal_id: d.id,
        deal_name: d.name.clone(),
        amount: d
            .amount_cents
            .and_then(|c| RawValue::from_string(money(c)).ok()),
        currency_code: d.currency.clone(),
        pipeline_id: d.pipeline,
        stage_id: d.stage,
        status: status_of(ten, d.stage),
        close_date: d.close_date.map(fmt_aspnet),
        company_id: d.company,
        contact_ids: d.contacts.clone(),
        owner_id: d.owner,
        created: fmt_aspnet(d.created),
        modified: fmt_aspnet(d.modified),
    }
}

/// What the audit trail records of a deal (audit speaks camelCase and epoch ms).
fn deal_audit(ten: &Tenant, d: &Deal) -> Value {
    json!({
        "dealName": d.name,
        "amount": d.amount_cents.map(|c| c as f64 / 100.0),
        "currencyCode": d.currency,
        "pipelineId": d.pipeline,
        "stageId": d.stage,
        "status": status_of(ten, d.stage),
        "closeDate": d.close_date,
        "companyId": d.company,
        "contactIds": d.contacts,
        "ownerId": d.owner,
    })
}

pub(crate) fn pipeline_json(p: &Pipeline) -> Value {
    let mut stages: Vec<_> = p.stages.iter().collect();
    stages.sort_by_key(|s| (s.sort_order, s.id));
    json!({
        "PipelineId": p.id,
        "Name": p.name,
        "SortOrder": p.sort_order,
        "Stages": stages.iter().map(|s| json!({
            "StageId": s.id,
            "Name": s.name,
            "SortOrder": s.sort_order,
            "Probability": s.probability,
            "StageType": s.stage_type,
        })).collect::<Vec<_>>(),
    })
}

fn visible<'t>(ten: &'t Tenant, a: &Actor, id: u64) -> Result<&'t Deal, SalesErr> {
    ten.deals
        .get(&id)
        .filter(|d| a.sees(d.owner))
        .ok_or_else(|| SalesErr::not_found("Deal", id))
}

fn deal_id(raw: &str) -> Result<u64, SalesErr> {
    path_id(raw).ok_or_else(|| {
        SalesErr::bad(
            400_011,
            format!("The value '{raw}' is not valid for DealId."),
        )
    })
}

/// Applies the writable fields other than `PipelineId`/`StageId`.
fn apply_common(r: &mut Reader<'_>, d: &mut Deal, ten: &Tenant) {
    match r.string("DealName") {
        F::Val(s) if !s.trim().is_empty() => d.name = s,
        F::Val(_) | F::Null => r.err("DealName", "The DealName field is required."),
        F::Absent => {}
    }
    match r.number("Amount") {
        F::Val(f) if f.abs() < 1e16 => d.amount_cents = Some((f * 100.0).round() as i64),
        F::Val(_) => r.err("Amount", "The value is out of range."),
        F::Null => d.amount_cents = None,
        F::Absent => {}
    }
    match r.string("CurrencyCode") {
        F::Val(s) if s.len() == 3 && s.bytes().all(|b| b.is_ascii_uppercase()) => d.currency = s,
        F::Val(_) | F::Null => r.err("CurrencyCode", "must be an ISO 4217 code such as EUR."),
        F::Absent => {}
    }
    match r.string("CloseDate") {
        F::Val(s) => match parse_aspnet(&s) {
            Some(ms) => d.close_date = Some(midnight(ms)),
            None => r.err(
                "CloseDate",
                format!("'{s}' is not a valid ASP.NET date (/Date(ms)/)."),
            ),
        },
        F::Null => d.close_date = None,
        F::Absent => {}
    }
    match r.id("CompanyId") {
        F::Val(id) => d.company = Some(id),
        F::Null => d.company = None,
        F::Absent => {}
    }
    match r.ids("ContactIds") {
        F::Val(ids) => d.contacts = ids,
        F::Null => d.contacts = Vec::new(),
        F::Absent => {}
    }
    match r.id("OwnerId") {
        F::Val(id) if ten.users.contains_key(&id) => d.owner = id,
        F::Val(id) => r.err("OwnerId", format!("User {id} does not exist.")),
        F::Null => r.err("OwnerId", "The OwnerId field is required."),
        F::Absent => {}
    }
}

async fn get_deal(State(st): State<SimState>, h: HeaderMap, Path(id): Path<String>) -> Res {
    let t = Trust::from_headers(&h)?;
    let id = deal_id(&id)?;
    let w = st.read();
    let (ten, a) = enter(&w, &t)?;
    a.require("deals:view")?;
    let d = visible(ten, &a, id)?;
    Ok(json_response(StatusCode::OK, &deal_out(ten, d)))
}

async fn create_deal(State(st): State<SimState>, h: HeaderMap, body: Bytes) -> Res {
    let t = Trust::from_headers(&h)?;
    let mut w = st.write();
    let (ten, a) = enter_mut(&mut w, &t)?;
    a.require("deals:edit")?;
    let obj = parse_object(&body).map_err(|m| SalesErr::bad(400_002, m))?;
    let now = now_ms();
    let mut d = Deal {
        id: 0,
        name: String::new(),
        amount_cents: None,
        currency: "USD".into(),
        pipeline: 0,
        stage: 0,
        close_date: None,
        company: None,
        contacts: Vec::new(),
        owner: a.user,
        created: now,
        modified: now,
    };
    let mut r = Reader::new(&obj);
    apply_common(&mut r, &mut d, ten);
    let pipeline = r.id("PipelineId");
    let stage = r.id("StageId");
    if !r.errors.is_empty() {
        return Err(SalesErr::fields(r.errors));
    }
    if d.name.is_empty() {
        return Err(SalesErr::bad(400_010, "The DealName field is required."));
    }
    let F::Val(pid) = pipeline else {
        return Err(SalesErr::bad(400_010, "The PipelineId field is required."));
    };
    let p = ten
        .pipeline(pid)
        .ok_or_else(|| SalesErr::bad(400_012, format!("Pipeline {pid} does not exist.")))?;
    d.pipeline = pid;
    d.stage = match stage {
        F::Val(sid) => match ten.stage(sid) {
            None => {
                return Err(SalesErr::bad(
                    400_013,
                    format!("Stage {sid} does not exist."),
                ))
            }
            Some((sp, _)) if sp.id != pid => {
                return Err(SalesErr::bad(
                    400_017,
                    format!("Stage {sid} does not belong to pipeline {pid}."),
                ))
            }
            Some(_) => sid,
        },
        _ => match p.stages.iter().min_by_key(|s| (s.sort_order, s.id)) {
            Some(s) => s.id,
            None => {
                return Err(SalesErr::bad(
                    400_013,
                    format!("Pipeline {pid} has no stages."),
                ))
            }
        },
    };
    ten.next_deal += 1;
    d.id = ten.next_deal;
    let out = deal_out(ten, &d);
    let changes = diff(&json!({}), &deal_audit(ten, &d), &[]);
    ten.deals.insert(d.id, d);
    ten.audit_write("deal.created", "deal", ten.next_deal, a.user, changes);
    Ok(json_response(StatusCode::OK, &out))
}

async fn update_deal(
    State(st): State<SimState>,
    h: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Res {
    let t = Trust::from_headers(&h)?;
    let id = deal_id(&id)?;
    let mut w = st.write();
    let (ten, a) = enter_mut(&mut w, &t)?;
    a.require("deals:edit")?;
    let before = visible(ten, &a, id)?.clone();
    let obj = parse_object(&body).map_err(|m| SalesErr::bad(400_002, m))?;
    if obj.contains_key("StageId") {
        return Err(SalesErr::bad(
            400_020,
            "StageId cannot be set by Update; use MoveStage.",
        ));
    }
    let mut d = before.clone();
    let mut r = Reader::new(&obj);
    apply_common(&mut r, &mut d, ten);
    let pipeline = r.id("PipelineId");
    if !r.errors.is_empty() {
        return Err(SalesErr::fields(r.errors));
    }
    if let F::Val(p) = pipeline {
        if p != before.pipeline {
            return Err(SalesErr::bad(400_021, "PipelineId cannot be changed."));
        }
    } else if pipeline.present() {
        return Err(SalesErr::bad(400_021, "PipelineId cannot be changed."));
    }
    d.modified = now_ms().max(before.modified);
    let out = deal_out(ten, &d);
    let changes = diff(&deal_audit(ten, &before), &deal_audit(ten, &d), &[]);
    ten.deals.insert(id, d);
    ten.audit_write("deal.updated", "deal", id, a.user, changes);
    Ok(json_response(StatusCode::OK, &out))
}

async fn move_stage(
    State(st): State<SimState>,
    h: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Res {
    let t = Trust::from_headers(&h)?;
    let id = deal_id(&id)?;
    let mut w = st.write();
    let (ten, a) = enter_mut(&mut w, &t)?;
    a.require("deals:move_stage")?;
    let before = visible(ten, &a, id)?.clone();
    let obj = parse_object(&body).map_err(|m| SalesErr::bad(400_002, m))?;
    let mut r = Reader::new(&obj);
    let stage = r.id("StageId");
    if !r.errors.is_empty() {
        return Err(SalesErr::fields(r.errors));
    }
    let F::Val(sid) = stage else {
        return Err(SalesErr::bad(400_010, "The StageId field is required."));
    };
    match ten.stage(sid) {
        None => {
            return Err(SalesErr::bad(
                400_013,
                format!("Stage {sid} does not exist."),
            ))
        }
        Some((p, _)) if p.id != before.pipeline => {
            return Err(SalesErr::bad(
                400_017,
                format!(
                    "Stage {sid} does not belong to pipeline {} of deal {id}.",
                    before.pipeline
                ),
            ))
        }
        Some(_) => {}
    }
    let mut d = before.clone();
    d.stage = sid;
    d.modified = now_ms().max(before.modified);
    let out = deal_out(ten, &d);
    let changes = diff(&deal_audit(ten, &before), &deal_audit(ten, &d), &[]);
    ten.deals.insert(id, d);
    ten.audit_write("deal.stage_changed", "deal", id, a.user, changes);
    Ok(json_response(StatusCode::OK, &out))
}

async fn delete_deal(State(st): State<SimState>, h: HeaderMap, Path(id): Path<String>) -> Res {
    let t = Trust::from_headers(&h)?;
    let id = deal_id(&id)?;
    let mut w = st.write();
    let (ten, a) = enter_mut(&mut w, &t)?;
    a.require("deals:delete")?;
    visible(ten, &a, id)?;
    ten.deals.remove(&id);
    ten.audit_write("deal.deleted", "deal", id, a.user, json!({}));
    Ok(json_response(StatusCode::OK, &json!({"Deleted": true})))
}

#[derive(Clone, Copy)]
enum SortBy {
    Id,
    CloseDate,
    Created,
    Amount,
}

async fn search(State(st): State<SimState>, h: HeaderMap, RawQuery(q): RawQuery) -> Res {
    let t = Trust::from_headers(&h)?;
    let w = st.read();
    let (ten, a) = enter(&w, &t)?;
    a.require("deals:view")?;
    let (mut pipeline, mut stage, mut owner, mut company) = (None, None, None, None);
    let (mut status, mut from, mut to) = (None, None, None);
    let (mut sort, mut desc, mut page, mut size) = (SortBy::Id, false, 1u64, 50u64);
    let invalid =
        |k: &str, v: &str| SalesErr::bad(400_030, format!("The value '{v}' is not valid for {k}."));
    for (k, v) in query_pairs(q.as_deref()) {
        if v.is_empty() {
            continue; // ASP.NET binds an empty value to null
        }
        let id = || v.parse::<u64>().map_err(|_| invalid(&k, &v));
        let date = || {
            parse_aspnet(&v)
                .or_else(|| parse_ymd(&v))
                .ok_or_else(|| invalid(&k, &v))
        };
        match k.to_ascii_lowercase().as_str() {
            "pipelineid" => pipeline = Some(id()?),
            "stageid" => stage = Some(id()?),
            "ownerid" => owner = Some(id()?),
            "companyid" => company = Some(id()?),
            "status" => {
                status = Some(match v.to_ascii_lowercase().as_str() {
                    "open" => "Open",
                    "won" => "Won",
                    "lost" => "Lost",
                    _ => return Err(invalid(&k, &v)),
                })
            }
            "closedatefrom" => from = Some(date()?),
            "closedateto" => to = Some(date()?),
            "sortby" => {
                sort = match v.to_ascii_lowercase().as_str() {
                    "closedate" => SortBy::CloseDate,
                    "created" => SortBy::Created,
                    "amount" => SortBy::Amount,
                    _ => return Err(invalid(&k, &v)),
                }
            }
            "desc" => {
                desc = match v.to_ascii_lowercase().as_str() {
                    "true" => true,
                    "false" => false,
                    _ => return Err(invalid(&k, &v)),
                }
            }
            "page" => match v.parse::<u64>() {
                Ok(p) if p >= 1 => page = p,
                _ => return Err(SalesErr::bad(400_030, "Page must be 1 or greater.")),
            },
            "pagesize" => match v.parse::<u64>() {
                Ok(s) if (1..=100).contains(&s) => size = s,
                _ => {
                    return Err(SalesErr::bad(
                        400_030,
                        "PageSize must be between 1 and 100.",
                    ))
                }
            },
            _ => {}
        }
    }
    let mut hits: Vec<&Deal> = ten
        .deals
        .values()
        .filter(|d| a.sees(d.owner))
        .filter(|d| pipeline.is_none_or(|p| d.pipeline == p))
        .filter(|d| stage.is_none_or(|s| d.stage == s))
        .filter(|d| owner.is_none_or(|o| d.owner == o))
        .filter(|d| company.is_none_or(|c| d.company == Some(c)))
        .filter(|d| status.is_none_or(|s| status_of(ten, d.stage) == s))
        .filter(|d| from.is_none_or(|f| d.close_date.is_some_and(|c| c >= f)))
        .filter(|d| to.is_none_or(|t| d.close_date.is_some_and(|c| c < midnight(t) + DAY_MS)))
        .collect();
    hits.sort_by(|x, y| {
        let o = match sort {
            SortBy::Id => x.id.cmp(&y.id),
            SortBy::CloseDate => x.close_date.cmp(&y.close_date),
            SortBy::Created => x.created.cmp(&y.created),
            SortBy::Amount => x.amount_cents.cmp(&y.amount_cents),
        };
        let o = if desc { o.reverse() } else { o };
        if o == Ordering::Equal {
            x.id.cmp(&y.id)
        } else {
            o
        }
    });
    let total = hits.len();
    let items: Vec<DealOut> = hits
        .into_iter()
        .skip(((page - 1).saturating_mul(size)) as usize)
        .take(size as usize)
        .map(|d| deal_out(ten, d))
        .collect();
    #[derive(Serialize)]
    #[serde(rename_all = "PascalCase")]
    struct Page {
        items: Vec<DealOut>,
        total_count: usize,
        page: u64,
        page_size: u64,
    }
    Ok(json_response(
        StatusCode::OK,
        &Page {
            items,
            total_count: total,
            page,
            page_size: size,
        },
    ))
}

async fn list_pipelines(State(st): State<SimState>, h: HeaderMap) -> Res {
    let t = Trust::from_headers(&h)?;
    let w = st.read();
    let (ten, a) = enter(&w, &t)?;
    a.require("deals:view")?;
    let mut ps: Vec<&Pipeline> = ten.pipelines.iter().collect();
    ps.sort_by_key(|p| (p.sort_order, p.id));
    let out: Vec<Value> = ps.into_iter().map(pipeline_json).collect();
    Ok(json_response(StatusCode::OK, &out))
}

async fn get_pipeline(State(st): State<SimState>, h: HeaderMap, Path(id): Path<String>) -> Res {
    let t = Trust::from_headers(&h)?;
    let id = path_id(&id).ok_or_else(|| {
        SalesErr::bad(
            400_011,
            format!("The value '{id}' is not valid for PipelineId."),
        )
    })?;
    let w = st.read();
    let (ten, a) = enter(&w, &t)?;
    a.require("deals:view")?;
    let p = ten
        .pipeline(id)
        .ok_or_else(|| SalesErr::not_found("Pipeline", id))?;
    Ok(json_response(StatusCode::OK, &pipeline_json(p)))
}

pub(crate) fn internal() -> Response {
    SalesErr::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        500_001,
        "An error has occurred.",
    )
    .into_response()
}

#[cfg(test)]
mod tests {
    #[test]
    fn money_has_two_places() {
        assert_eq!(super::money(123_450), "1234.50");
        assert_eq!(super::money(5), "0.05");
        assert_eq!(super::money(-199), "-1.99");
        assert_eq!(super::money(0), "0.00");
    }
}
