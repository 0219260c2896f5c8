//! Stage `route`: path and method → a resource of the plan and the public operation.
//! Also the public documents (OpenAPI, `/docs`), which need no token and no `Version`.

use std::sync::Arc;

use pingora::http::RequestHeader;

use super::respond::Reply;
use super::Runtime;
use crate::mapping::model::{Plan, Resource};
use crate::openapi::{self, docs};
use crate::problem::{Kind, Problem};

/// The public operation a path and method name.
pub enum Operation {
    Create,
    Search,
    Get(String),
    Update(String),
    Delete(String),
    Action(String, String),
}

impl Operation {
    /// The `route` label of metrics and the access log.
    pub fn label(&self) -> &'static str {
        match self {
            Operation::Create => "create",
            Operation::Search => "search",
            Operation::Get(_) => "get",
            Operation::Update(_) => "update",
            Operation::Delete(_) => "delete",
            Operation::Action(..) => "action",
        }
    }
}

/// What `route` found: the resource and what to do with it.
pub struct Target {
    pub res: Arc<Resource>,
    pub op: Operation,
}

/// The OpenAPI document and `/docs`, answered without token or `Version`; `None` for
/// every other path.
pub fn document(
    rt: &Runtime,
    plan: &Arc<Plan>,
    req: &RequestHeader,
    route_out: &mut &'static str,
    version_out: &mut String,
) -> Result<Option<Reply>, Problem> {
    let path = req.uri.path();
    if !docs::is_document(path) {
        return Ok(None);
    }
    *route_out = if path == docs::OPENAPI_PATH {
        "openapi"
    } else {
        "docs"
    };
    let settings = openapi::Settings::from_config(&rt.cfg);
    let served = docs::serve(
        plan,
        &rt.documents,
        &settings,
        req.method.as_str(),
        path,
        req.uri.query(),
    )?;
    if let Some(v) = served.version {
        *version_out = v;
    }
    Ok(Some(Reply {
        status: 200,
        headers: served.headers,
        body: served.body,
        content_type: served.content_type,
    }))
}

fn valid_segment(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 80
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Route matching: `Err` is 404 or 405 (with `Allow`).
pub fn route(plan: &Plan, method: &str, path: &str) -> Result<Target, Problem> {
    // No operation has more than three segments; a path with more is not found (after each
    // segment is checked, as every path's are).
    let mut found = [""; 3];
    let mut n = 0;
    for seg in path
        .strip_prefix("/v1/")
        .ok_or_else(Problem::not_found)?
        .split('/')
    {
        if !valid_segment(seg) {
            return Err(Problem::not_found());
        }
        if let Some(slot) = found.get_mut(n) {
            *slot = seg;
        }
        n += 1;
    }
    if n > found.len() {
        return Err(Problem::not_found());
    }
    let segs = &found[..n];
    let res = plan
        .resources
        .get(segs[0])
        .ok_or_else(Problem::not_found)?
        .clone();
    let deny = |allow: Vec<&str>| {
        if allow.is_empty() {
            Problem::not_found()
        } else {
            Problem::new(Kind::MethodNotAllowed, format!("Use {}", allow.join(", ")))
                .with_header("allow", allow.join(", "))
        }
    };
    let op = match (segs, method) {
        ([_], "POST") if res.create.is_some() => Operation::Create,
        ([_], _) => {
            return Err(deny(if res.create.is_some() {
                vec!["POST"]
            } else {
                vec![]
            }))
        }
        ([_, "search"], "POST") if res.search.is_some() => Operation::Search,
        ([_, "search"], _) if res.search.is_some() => return Err(deny(vec!["POST"])),
        ([_, id], m) => match m {
            "GET" | "HEAD" if res.get.is_some() => Operation::Get(id.to_string()),
            "PATCH" if res.update.is_some() => Operation::Update(id.to_string()),
            "DELETE" if res.delete.is_some() => Operation::Delete(id.to_string()),
            _ => {
                let mut allow = Vec::new();
                if res.get.is_some() {
                    allow.extend(["GET", "HEAD"]);
                }
                if res.update.is_some() {
                    allow.push("PATCH");
                }
                if res.delete.is_some() {
                    allow.push("DELETE");
                }
                return Err(deny(allow));
            }
        },
        ([_, id, action], m) => match res.actions.contains_key(*action) {
            true if m == "POST" => Operation::Action(id.to_string(), action.to_string()),
            true => return Err(deny(vec!["POST"])),
            false => return Err(Problem::not_found()),
        },
        _ => return Err(Problem::not_found()),
    };
    Ok(Target { res, op })
}
