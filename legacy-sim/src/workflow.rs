//! `workflow`: tasks over JSON-RPC-ish HTTP. Every call is `POST /rpc/{Method}` and
//! every answer is HTTP 200 — `{"success": true, "result"}` or `{"success": false,
//! "errorCode", "errorMessage", "errorDetails"}` — except a call without the trust
//! headers (400, same body shape). Dates are `yyyy-MM-dd HH:mm:ss` UTC.

use std::cmp::Ordering;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use serde_json::{json, Map, Value};

use crate::common::{
    enter, enter_mut, json_response, parse_object, Actor, Denied, Reader, Trust, F,
};
use crate::state::{diff, SimState, Task, Tenant};
use crate::time::{fmt_wf, now_ms, parse_wf};

pub(crate) fn router(state: SimState) -> Router {
    Router::new()
        .route("/rpc/{method}", post(rpc))
        .fallback(|| async {
            let mut r = fail(
                "VALIDATION_ERROR",
                "no such endpoint; use POST /rpc/{Method}",
                vec![],
            );
            *r.status_mut() = StatusCode::NOT_FOUND;
            r
        })
        .with_state(state)
}

fn ok(result: Value) -> Response {
    json_response(StatusCode::OK, &json!({"success": true, "result": result}))
}

fn fail(code: &str, msg: &str, details: Vec<(String, String)>) -> Response {
    let details: Vec<Value> = details
        .into_iter()
        .map(|(f, r)| json!({"field": f, "reason": r}))
        .collect();
    json_response(
        StatusCode::OK,
        &json!({"success": false, "errorCode": code, "errorMessage": msg, "errorDetails": details}),
    )
}

enum Err {
    NotFound(u64),
    Invalid(String, Vec<(String, String)>),
    Denied(Denied),
}

impl From<Denied> for Err {
    fn from(d: Denied) -> Self {
        Err::Denied(d)
    }
}

fn invalid(msg: &str, details: Vec<(String, String)>) -> Err {
    Err::Invalid(msg.to_string(), details)
}

impl Err {
    fn into_response(self) -> Response {
        match self {
            Err::NotFound(id) => fail("TASK_NOT_FOUND", &format!("task {id} not found"), vec![]),
            Err::Invalid(m, d) => fail("VALIDATION_ERROR", &m, d),
            Err::Denied(d) => fail("PERMISSION_DENIED", &d.message(), vec![]),
        }
    }
}

pub(crate) fn task_json(t: &Task) -> Value {
    json!({
        "taskId": t.id,
        "subject": t.subject,
        "notes": t.notes,
        "state": if t.done { "DONE" } else { "OPEN" },
        "priority": t.priority,
        "dueDate": t.due.map(fmt_wf),
        "completedDate": t.completed.map(fmt_wf),
        "relatedType": t.related.map(|r| r.0),
        "relatedId": t.related.map(|r| r.1),
        "ownerId": t.owner,
        "createdDate": fmt_wf(t.created),
        "modifiedDate": fmt_wf(t.modified),
    })
}

const AUDIT_SKIP: &[&str] = &["taskId", "createdDate", "modifiedDate"];

async fn rpc(
    State(st): State<SimState>,
    h: HeaderMap,
    Path(method): Path<String>,
    body: Bytes,
) -> Response {
    let t = match Trust::from_headers(&h) {
        Ok(t) => t,
        Err(d) => {
            let mut r = fail("VALIDATION_ERROR", &d.message(), vec![]);
            *r.status_mut() = StatusCode::BAD_REQUEST;
            return r;
        }
    };
    let known = [
        "Task.get",
        "Task.create",
        "Task.update",
        "Task.delete",
        "Task.complete",
        "Task.reopen",
        "Task.list",
    ];
    if !known.contains(&method.as_str()) {
        return fail(
            "VALIDATION_ERROR",
            &format!("unknown method {method}"),
            vec![],
        );
    }
    let params = match parse_object(&body) {
        Ok(p) => p,
        Err(m) => return fail("VALIDATION_ERROR", &m, vec![]),
    };
    let res = if matches!(method.as_str(), "Task.get" | "Task.list") {
        let w = st.read();
        enter(&w, &t)
            .map_err(Err::from)
            .and_then(|(ten, a)| match method.as_str() {
                "Task.get" => get(ten, &a, &params),
                _ => list(ten, &a, &params),
            })
    } else {
        let mut w = st.write();
        enter_mut(&mut w, &t)
            .map_err(Err::from)
            .and_then(|(ten, a)| match method.as_str() {
                "Task.create" => create(ten, &a, &params),
                "Task.update" => update(ten, &a, &params),
                "Task.delete" => delete(ten, &a, &params),
                "Task.complete" => set_done(ten, &a, &params, true),
                _ => set_done(ten, &a, &params, false),
            })
    };
    match res {
        Ok(v) => ok(v),
        Err(e) => e.into_response(),
    }
}

fn task_id(p: &Map<String, Value>) -> Result<u64, Err> {
    let mut r = Reader::new(p);
    match r.id("taskId") {
        F::Val(id) => Ok(id),
        _ if !r.errors.is_empty() => Err(invalid("invalid taskId", r.errors)),
        _ => Err(invalid(
            "taskId is required",
            vec![("taskId".into(), "required".into())],
        )),
    }
}

fn visible<'t>(ten: &'t Tenant, a: &Actor, id: u64) -> Result<&'t Task, Err> {
    ten.tasks
        .get(&id)
        .filter(|t| a.sees(t.owner))
        .ok_or(Err::NotFound(id))
}

fn get(ten: &Tenant, a: &Actor, p: &Map<String, Value>) -> Result<Value, Err> {
    a.require("tasks:view")?;
    let id = task_id(p)?;
    Ok(task_json(visible(ten, a, id)?))
}

const WRITABLE: &[&str] = &[
    "subject",
    "notes",
    "priority",
    "dueDate",
    "relatedType",
    "relatedId",
    "ownerId",
];

/// Applies writable fields (absent = unchanged, null = cleared).
fn apply(r: &mut Reader<'_>, t: &mut Task, ten: &Tenant) {
    for k in r.obj.keys() {
        if matches!(
            k.as_str(),
            "state" | "completedDate" | "createdDate" | "modifiedDate"
        ) {
            r.errors.push((
                k.clone(),
                "read-only; use Task.complete / Task.reopen".into(),
            ));
        }
    }
    match r.string("subject") {
        F::Val(s) if !s.trim().is_empty() => t.subject = s,
        F::Val(_) | F::Null => r.err("subject", "must not be empty"),
        F::Absent => {}
    }
    match r.string("notes") {
        F::Val(s) => t.notes = Some(s),
        F::Null => t.notes = None,
        F::Absent => {}
    }
    match r.int("priority") {
        F::Val(p) if (0..=2).contains(&p) => t.priority = p,
        F::Val(_) | F::Null => r.err("priority", "must be 0 (low), 1 (normal) or 2 (high)"),
        F::Absent => {}
    }
    match r.string("dueDate") {
        F::Val(s) => match parse_wf(&s) {
            Some(ms) => t.due = Some(ms),
            None => r.err("dueDate", "must be formatted yyyy-MM-dd HH:mm:ss"),
        },
        F::Null => t.due = None,
        F::Absent => {}
    }
    match r.id("ownerId") {
        F::Val(id) if ten.users.contains_key(&id) => t.owner = id,
        F::Val(id) => r.err("ownerId", format!("user {id} does not exist")),
        F::Null => r.err("ownerId", "must not be null"),
        F::Absent => {}
    }
    let rtype = r.string("relatedType");
    let rid = r.id("relatedId");
    let cur = t.related;
    let new_type: Option<Option<&'static str>> = match rtype {
        F::Val(s) => match s.as_str() {
            "CONTACT" => Some(Some("CONTACT")),
            "COMPANY" => Some(Some("COMPANY")),
            "DEAL" => Some(Some("DEAL")),
            _ => {
                r.err("relatedType", "must be CONTACT, COMPANY or DEAL");
                None
            }
        },
        F::Null => Some(None),
        F::Absent => None,
    };
    let new_id: Option<Option<u64>> = match rid {
        F::Val(id) => Some(Some(id)),
        F::Null => Some(None),
        F::Absent => None,
    };
    let ty = new_type.unwrap_or(cur.map(|c| c.0));
    let id = new_id.unwrap_or(cur.map(|c| c.1));
    match (ty, id) {
        (Some(ty), Some(id)) => t.related = Some((ty, id)),
        (None, None) => t.related = None,
        (Some(_), None) => r.err("relatedId", "required when relatedType is set"),
        (None, Some(_)) => r.err("relatedType", "required when relatedId is set"),
    }
}

fn create(ten: &mut Tenant, a: &Actor, p: &Map<String, Value>) -> Result<Value, Err> {
    a.require("tasks:edit")?;
    let now = now_ms();
    let mut t = Task {
        id: 0,
        subject: String::new(),
        notes: None,
        done: false,
        priority: 1,
        due: None,
        completed: None,
        related: None,
        owner: a.user,
        created: now,
        modified: now,
    };
    let mut r = Reader::new(p);
    r.unknown(WRITABLE);
    apply(&mut r, &mut t, ten);
    if t.subject.is_empty() && !r.errors.iter().any(|e| e.0 == "subject") {
        r.err("subject", "required");
    }
    if !r.errors.is_empty() {
        return Err(invalid("invalid task", r.errors));
    }
    ten.next_task += 1;
    t.id = ten.next_task;
    let out = task_json(&t);
    ten.tasks.insert(t.id, t);
    let changes = diff(&json!({}), &out, AUDIT_SKIP);
    ten.audit_write("task.created", "task", ten.next_task, a.user, changes);
    Ok(out)
}

fn update(ten: &mut Tenant, a: &Actor, p: &Map<String, Value>) -> Result<Value, Err> {
    a.require("tasks:edit")?;
    let id = task_id(p)?;
    let before = visible(ten, a, id)?.clone();
    let mut t = before.clone();
    let mut r = Reader::new(p);
    let mut allowed = WRITABLE.to_vec();
    allowed.push("taskId");
    r.unknown(&allowed);
    apply(&mut r, &mut t, ten);
    if !r.errors.is_empty() {
        return Err(invalid("invalid task", r.errors));
    }
    t.modified = now_ms().max(before.modified);
    let out = task_json(&t);
    ten.tasks.insert(id, t);
    let changes = diff(&task_json(&before), &out, AUDIT_SKIP);
    ten.audit_write("task.updated", "task", id, a.user, changes);
    Ok(out)
}

fn delete(ten: &mut Tenant, a: &Actor, p: &Map<String, Value>) -> Result<Value, Err> {
    a.require("tasks:delete")?;
    let id = task_id(p)?;
    visible(ten, a, id)?;
    ten.tasks.remove(&id);
    ten.audit_write("task.deleted", "task", id, a.user, json!({}));
    Ok(json!({"taskId": id, "deleted": true}))
}

fn set_done(ten: &mut Tenant, a: &Actor, p: &Map<String, Value>, done: bool) -> Result<Value, Err> {
    a.require("tasks:edit")?;
    let id = task_id(p)?;
    let before = visible(ten, a, id)?.clone();
    if before.done == done {
        return Ok(task_json(&before));
    }
    let mut t = before.clone();
    let now = now_ms().max(before.modified);
    t.done = done;
    t.completed = if done { Some(now) } else { None };
    t.modified = now;
    let out = task_json(&t);
    ten.tasks.insert(id, t);
    let changes = diff(&task_json(&before), &out, AUDIT_SKIP);
    let ev = if done {
        "task.completed"
    } else {
        "task.reopened"
    };
    ten.audit_write(ev, "task", id, a.user, changes);
    Ok(out)
}

fn list(ten: &Tenant, a: &Actor, p: &Map<String, Value>) -> Result<Value, Err> {
    a.require("tasks:view")?;
    let mut r = Reader::new(p);
    r.unknown(&["filter", "orderBy", "descending", "start", "count"]);
    let mut state = None;
    let mut owner = None;
    let mut rtype = None;
    let mut rid = None;
    let mut before = None;
    let mut after = None;
    if let F::Val(f) = r.object("filter") {
        let mut fr = Reader::new(f);
        fr.prefix = "filter.".into();
        fr.unknown(&[
            "state",
            "ownerId",
            "relatedType",
            "relatedId",
            "dueBefore",
            "dueAfter",
        ]);
        match fr.string("state") {
            F::Val(s) if s == "OPEN" || s == "DONE" => state = Some(s == "DONE"),
            F::Val(_) => fr.err("state", "must be OPEN or DONE"),
            _ => {}
        }
        if let F::Val(o) = fr.id("ownerId") {
            owner = Some(o);
        }
        match fr.string("relatedType") {
            F::Val(s) if matches!(s.as_str(), "CONTACT" | "COMPANY" | "DEAL") => rtype = Some(s),
            F::Val(_) => fr.err("relatedType", "must be CONTACT, COMPANY or DEAL"),
            _ => {}
        }
        if let F::Val(i) = fr.id("relatedId") {
            rid = Some(i);
        }
        for (k, slot) in [("dueBefore", &mut before), ("dueAfter", &mut after)] {
            match fr.string(k) {
                F::Val(s) => match parse_wf(&s) {
                    Some(ms) => *slot = Some(ms),
                    None => fr.err(k, "must be formatted yyyy-MM-dd HH:mm:ss"),
                },
                F::Null | F::Absent => {}
            }
        }
        r.errors.append(&mut fr.errors);
    }
    let by_due = match r.string("orderBy") {
        F::Val(s) if s == "dueDate" => true,
        F::Val(s) if s == "createdDate" => false,
        F::Val(_) => {
            r.err("orderBy", "must be dueDate or createdDate");
            false
        }
        _ => false,
    };
    let desc = matches!(r.bool("descending"), F::Val(true));
    let start = match r.int("start") {
        F::Val(s) if s >= 0 => s as usize,
        F::Val(_) => {
            r.err("start", "must be 0 or more");
            0
        }
        _ => 0,
    };
    let count = match r.int("count") {
        F::Val(c) if (1..=100).contains(&c) => c as usize,
        F::Val(_) => {
            r.err("count", "must be between 1 and 100");
            50
        }
        _ => 50,
    };
    if !r.errors.is_empty() {
        return Err(invalid("invalid list request", r.errors));
    }
    let mut hits: Vec<&Task> = ten
        .tasks
        .values()
        .filter(|t| a.sees(t.owner))
        .filter(|t| state.is_none_or(|s| t.done == s))
        .filter(|t| owner.is_none_or(|o| t.owner == o))
        .filter(|t| {
            rtype
                .as_deref()
                .is_none_or(|ty| t.related.is_some_and(|r| r.0 == ty))
        })
        .filter(|t| rid.is_none_or(|i| t.related.is_some_and(|r| r.1 == i)))
        .filter(|t| before.is_none_or(|b| t.due.is_some_and(|d| d < b)))
        .filter(|t| after.is_none_or(|x| t.due.is_some_and(|d| d > x)))
        .collect();
    hits.sort_by(|x, y| {
        let o = if by_due {
            // tasks without a due date come last
            match (x.due, y.due) {
                (Some(a), Some(b)) => a.cmp(&b),
                (None, None) => Ordering::Equal,
                (None, _) => Ordering::Greater,
                (_, None) => Ordering::Less,
            }
        } else {
            x.created.cmp(&y.created)
        };
        let o = o.then(x.id.cmp(&y.id));
        if desc {
            o.reverse()
        } else {
            o
        }
    });
    let more = hits.len() > start.saturating_add(count);
    let items: Vec<Value> = hits
        .into_iter()
        .skip(start)
        .take(count)
        .map(task_json)
        .collect();
    Ok(json!({"items": items, "more": more}))
}

pub(crate) fn internal() -> Response {
    let mut r = fail("INTERNAL", "internal error", vec![]);
    *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    r
}
