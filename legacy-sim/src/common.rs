//! What every service shares: the trust headers, the acting user and its role's
//! permissions, request-body field readers and response helpers. Error *formats* are
//! not here: each service renders [`Denied`] and field errors in its own dialect.

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};

use crate::state::{Tenant, World};

/// The trust headers of one call.
pub(crate) struct Trust {
    pub tenant: u32,
    pub user: u64,
}

/// Why a call is refused before the service looks at it.
pub(crate) enum Denied {
    /// `X-PC-Tenant` / `X-PC-User` missing or not a number (400).
    Headers(String),
    /// The acting user is not a member of the tenant (403).
    UnknownUser(u64),
    /// The role lacks a permission (403).
    Permission(&'static str),
}

impl Denied {
    pub fn message(&self) -> String {
        match self {
            Denied::Headers(m) => m.clone(),
            Denied::UnknownUser(u) => format!("user {u} is not a member of this tenant"),
            Denied::Permission(p) => format!("permission {p} required"),
        }
    }
}

fn header_num<T: std::str::FromStr>(h: &HeaderMap, name: &str) -> Result<T, Denied> {
    let v = h
        .get(name)
        .ok_or_else(|| Denied::Headers(format!("missing header {name}")))?;
    v.to_str()
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| Denied::Headers(format!("header {name} is not a valid number")))
}

impl Trust {
    pub fn from_headers(h: &HeaderMap) -> Result<Trust, Denied> {
        let tenant = header_num::<u32>(h, "x-pc-tenant")?;
        let user = header_num::<u64>(h, "x-pc-user")?;
        Ok(Trust { tenant, user })
    }
}

/// The acting user, resolved in its tenant.
pub(crate) struct Actor {
    pub user: u64,
    pub role: String,
}

impl Actor {
    pub fn can(&self, perm: &str) -> bool {
        role_allows(&self.role, perm)
    }

    pub fn require(&self, perm: &'static str) -> Result<(), Denied> {
        if self.can(perm) {
            Ok(())
        } else {
            Err(Denied::Permission(perm))
        }
    }

    /// Record visibility: a `sales_rep` sees only what it owns.
    pub fn sees(&self, owner: u64) -> bool {
        self.role != "sales_rep" || owner == self.user
    }
}

pub(crate) fn enter<'w>(w: &'w World, t: &Trust) -> Result<(&'w Tenant, Actor), Denied> {
    let ten = w
        .tenants
        .get(&t.tenant)
        .ok_or(Denied::UnknownUser(t.user))?;
    let role = ten.users.get(&t.user).ok_or(Denied::UnknownUser(t.user))?;
    let actor = Actor {
        user: t.user,
        role: role.clone(),
    };
    Ok((ten, actor))
}

pub(crate) fn enter_mut<'w>(
    w: &'w mut World,
    t: &Trust,
) -> Result<(&'w mut Tenant, Actor), Denied> {
    let ten = w
        .tenants
        .get_mut(&t.tenant)
        .ok_or(Denied::UnknownUser(t.user))?;
    let role = ten.users.get(&t.user).ok_or(Denied::UnknownUser(t.user))?;
    let actor = Actor {
        user: t.user,
        role: role.clone(),
    };
    Ok((ten, actor))
}

/// Every permission name, in the order iam lists them.
pub(crate) const PERMISSIONS: [&str; 18] = [
    "contacts:view",
    "contacts:edit",
    "contacts:delete",
    "companies:view",
    "companies:edit",
    "companies:delete",
    "deals:view",
    "deals:edit",
    "deals:delete",
    "tasks:view",
    "tasks:edit",
    "tasks:delete",
    "notes:view",
    "notes:edit",
    "notes:delete",
    "deals:move_stage",
    "activities:view",
    "activities:log",
];

pub(crate) fn role_allows(role: &str, perm: &str) -> bool {
    let view = perm.ends_with(":view");
    let edit = perm.ends_with(":edit");
    match role {
        "admin" => true,
        "sales_manager" => {
            !perm.ends_with(":delete") || perm == "tasks:delete" || perm == "notes:delete"
        }
        "sales_rep" => {
            view || edit
                || matches!(
                    perm,
                    "deals:move_stage" | "activities:log" | "tasks:delete" | "notes:delete"
                )
        }
        "read_only" => view,
        _ => false,
    }
}

pub(crate) fn permissions_of(role: &str) -> Vec<&'static str> {
    PERMISSIONS
        .iter()
        .copied()
        .filter(|p| role_allows(role, p))
        .collect()
}

pub(crate) fn json_response(status: StatusCode, body: &impl serde::Serialize) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"null".to_vec());
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        )],
        bytes,
    )
        .into_response()
}

pub(crate) fn text_response(status: StatusCode, body: String) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        )],
        body,
    )
        .into_response()
}

/// Query-string pairs, percent-decoded, in order.
pub(crate) fn query_pairs(raw: Option<&str>) -> Vec<(String, String)> {
    raw.map(|q| {
        form_urlencoded::parse(q.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    })
    .unwrap_or_default()
}

pub(crate) fn parse_json(body: &[u8]) -> Result<Value, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err("request body is required".into());
    }
    serde_json::from_slice(body).map_err(|e| format!("malformed JSON: {e}"))
}

pub(crate) fn parse_object(body: &[u8]) -> Result<Map<String, Value>, String> {
    match parse_json(body)? {
        Value::Object(m) => Ok(m),
        _ => Err("request body must be a JSON object".into()),
    }
}

/// A field of a write: absent, explicitly null, or a value.
pub(crate) enum F<T> {
    Absent,
    Null,
    Val(T),
}

impl<T> F<T> {
    pub fn present(&self) -> bool {
        !matches!(self, F::Absent)
    }
}

/// Reads typed fields out of a JSON object, collecting `(field, message)` errors.
pub(crate) struct Reader<'a> {
    pub obj: &'a Map<String, Value>,
    pub prefix: String,
    pub errors: Vec<(String, String)>,
}

impl<'a> Reader<'a> {
    pub fn new(obj: &'a Map<String, Value>) -> Self {
        Reader {
            obj,
            prefix: String::new(),
            errors: Vec::new(),
        }
    }

    pub fn err(&mut self, field: &str, msg: impl Into<String>) {
        self.errors
            .push((format!("{}{field}", self.prefix), msg.into()));
    }

    pub fn unknown(&mut self, allowed: &[&str]) {
        let bad: Vec<String> = self
            .obj
            .keys()
            .filter(|k| !allowed.contains(&k.as_str()))
            .cloned()
            .collect();
        for k in bad {
            self.err(&k, "unknown field");
        }
    }

    fn raw(&self, k: &str) -> F<&'a Value> {
        match self.obj.get(k) {
            None => F::Absent,
            Some(Value::Null) => F::Null,
            Some(v) => F::Val(v),
        }
    }

    pub fn string(&mut self, k: &str) -> F<String> {
        match self.raw(k) {
            F::Val(Value::String(s)) => F::Val(s.clone()),
            F::Val(_) => {
                self.err(k, "must be a string");
                F::Absent
            }
            F::Null => F::Null,
            F::Absent => F::Absent,
        }
    }

    pub fn int(&mut self, k: &str) -> F<i64> {
        match self.raw(k) {
            F::Val(v) => match v.as_i64() {
                Some(i) => F::Val(i),
                None => {
                    self.err(k, "must be an integer");
                    F::Absent
                }
            },
            F::Null => F::Null,
            F::Absent => F::Absent,
        }
    }

    pub fn id(&mut self, k: &str) -> F<u64> {
        match self.int(k) {
            F::Val(i) if i > 0 => F::Val(i as u64),
            F::Val(_) => {
                self.err(k, "must be a positive integer");
                F::Absent
            }
            F::Null => F::Null,
            F::Absent => F::Absent,
        }
    }

    pub fn number(&mut self, k: &str) -> F<f64> {
        match self.raw(k) {
            F::Val(Value::Number(n)) => match n.as_f64() {
                Some(f) if f.is_finite() => F::Val(f),
                _ => {
                    self.err(k, "must be a number");
                    F::Absent
                }
            },
            F::Val(_) => {
                self.err(k, "must be a number");
                F::Absent
            }
            F::Null => F::Null,
            F::Absent => F::Absent,
        }
    }

    pub fn bool(&mut self, k: &str) -> F<bool> {
        match self.raw(k) {
            F::Val(Value::Bool(b)) => F::Val(*b),
            F::Val(_) => {
                self.err(k, "must be a boolean");
                F::Absent
            }
            F::Null => F::Null,
            F::Absent => F::Absent,
        }
    }

    pub fn ids(&mut self, k: &str) -> F<Vec<u64>> {
        match self.raw(k) {
            F::Val(Value::Array(xs)) => {
                let ids: Option<Vec<u64>> =
                    xs.iter().map(|x| x.as_u64().filter(|i| *i > 0)).collect();
                match ids {
                    Some(ids) => F::Val(ids),
                    None => {
                        self.err(k, "must be an array of positive integers");
                        F::Absent
                    }
                }
            }
            F::Val(_) => {
                self.err(k, "must be an array of positive integers");
                F::Absent
            }
            F::Null => F::Null,
            F::Absent => F::Absent,
        }
    }

    pub fn strings(&mut self, k: &str) -> F<Vec<String>> {
        match self.raw(k) {
            F::Val(Value::Array(xs)) => {
                let v: Option<Vec<String>> =
                    xs.iter().map(|x| x.as_str().map(str::to_string)).collect();
                match v {
                    Some(v) => F::Val(v),
                    None => {
                        self.err(k, "must be an array of strings");
                        F::Absent
                    }
                }
            }
            F::Val(_) => {
                self.err(k, "must be an array of strings");
                F::Absent
            }
            F::Null => F::Null,
            F::Absent => F::Absent,
        }
    }

    pub fn object(&mut self, k: &str) -> F<&'a Map<String, Value>> {
        match self.raw(k) {
            F::Val(Value::Object(m)) => F::Val(m),
            F::Val(_) => {
                self.err(k, "must be an object");
                F::Absent
            }
            F::Null => F::Null,
            F::Absent => F::Absent,
        }
    }
}

/// Parses a path id; `None` when it is not a positive integer.
pub(crate) fn path_id(s: &str) -> Option<u64> {
    s.parse::<u64>().ok().filter(|i| *i > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles() {
        assert_eq!(permissions_of("admin").len(), 18);
        let m = permissions_of("sales_manager");
        assert!(m.contains(&"tasks:delete") && m.contains(&"notes:delete"));
        assert!(!m.contains(&"contacts:delete") && !m.contains(&"deals:delete"));
        assert!(m.contains(&"deals:move_stage") && m.contains(&"activities:log"));
        let r = permissions_of("sales_rep");
        assert!(r.contains(&"contacts:edit") && r.contains(&"tasks:delete"));
        assert!(!r.contains(&"companies:delete"));
        let ro = permissions_of("read_only");
        assert!(ro.iter().all(|p| p.ends_with(":view")));
        assert_eq!(ro.len(), 6);
        assert!(permissions_of("nobody").is_empty());
    }
}
