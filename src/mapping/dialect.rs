//! A service's dialect on the wire: where the trust values go, the static headers and
//! media type, RFC 3986 encoding of template values, and the reading of answers (RPC
//! envelopes, error codes, plain-text errors) into a payload or a [`Problem`]. The
//! transport (`crate::upstream`) only sends what this builds. No upstream text ever
//! reaches a problem's `detail`.

use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC};
use serde_json::Value;

use super::model::*;
use super::view::Node;
use crate::problem::{FieldError, Kind, Problem};
use crate::seal::InternalId;
use crate::upstream::{Answer, Ledger, Outgoing, Upstreams};

/// The identity every upstream call carries, set only from the verified token, plus the
/// transport's per-request accounting.
#[derive(Debug)]
pub struct Trust {
    pub tenant: u32,
    pub user: u64,
    pub request_id: String,
    pub ledger: Ledger,
}

impl Trust {
    pub fn new(tenant: u32, user: u64, request_id: String) -> Trust {
        Trust {
            tenant,
            user,
            ledger: Ledger::new(request_id.clone()),
            request_id,
        }
    }

    /// Keeps the caller's trace flags (the request continued a W3C trace).
    pub fn with_trace_flags(mut self, flags: &str) -> Trust {
        self.ledger.trace_flags = flags.to_string();
        self
    }

    /// Time spent in upstream calls so far, in milliseconds.
    pub fn upstream_ms(&self) -> f64 {
        self.ledger.upstream_ms()
    }

    pub fn reached(&self) -> u32 {
        self.ledger.reached()
    }
}

/// RFC 3986 path segment: everything but the unreserved characters is escaped.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// RFC 3986 query component: unreserved characters and the sub-delimiters that cannot end
/// a key or value (`$ ' ( ) , ! * ; : @ /`) stay as they are; `& = + #` and the rest are
/// escaped.
const QUERY: &AsciiSet = &SEGMENT
    .remove(b'$')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')')
    .remove(b',')
    .remove(b'!')
    .remove(b'*')
    .remove(b';')
    .remove(b':')
    .remove(b'@')
    .remove(b'/');

pub fn enc_segment(s: &str, out: &mut String) {
    out.extend(percent_encoding::utf8_percent_encode(s, SEGMENT));
}

pub fn enc_query(s: &str, out: &mut String) {
    out.extend(percent_encoding::utf8_percent_encode(s, QUERY));
}

/// The values a call template's holes take.
pub struct Vars<'a> {
    pub id: Option<&'a str>,
    pub trust: &'a Trust,
    pub size: Option<u32>,
}

impl Vars<'_> {
    fn text(&self, v: Var) -> String {
        match v {
            Var::Id => self.id.unwrap_or_default().to_string(),
            Var::Tenant => self.trust.tenant.to_string(),
            Var::User => self.trust.user.to_string(),
            Var::RequestId => self.trust.request_id.clone(),
            Var::Size => self.size.map(|s| s.to_string()).unwrap_or_default(),
        }
    }

    /// Renders a template, each value through `enc` (literal text is written as it is).
    pub fn render(&self, t: &Tpl, enc: fn(&str, &mut String), out: &mut String) {
        for p in &t.0 {
            match p {
                Piece::Lit(s) => out.push_str(s),
                Piece::Var(v) => enc(&self.text(*v), out),
            }
        }
    }
}

fn raw(s: &str, out: &mut String) {
    out.push_str(s);
}

/// The text of an internal id in a path or a header.
pub fn id_text(id: &InternalId) -> String {
    id.to_text()
}

fn push_param(q: &mut String, k: &str, v: &str) {
    q.push(if q.contains('?') { '&' } else { '?' });
    enc_query(k, q);
    q.push('=');
    enc_query(v, q);
}

/// A prepared call: the encoded target and every header, ready for the transport.
pub struct Prepared {
    pub method: http::Method,
    pub target: String,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Option<Bytes>,
}

impl Prepared {
    /// Builds a call of `svc` from its template. `path_and_query` replaces the template's
    /// path and query (a next link); `params` are appended to the query.
    #[allow(clippy::too_many_arguments)]
    pub fn build(
        svc: &Service,
        call: &Call,
        vars: &Vars,
        path_and_query: Option<&str>,
        params: &[(String, String)],
        extra_headers: &[(HeaderName, HeaderValue)],
        body: Option<&Value>,
    ) -> Result<Prepared, Problem> {
        let mut target = String::with_capacity(64);
        match path_and_query {
            Some(pq) => target.push_str(pq),
            None => {
                vars.render(&call.path, enc_segment, &mut target);
                for (k, v) in &call.query {
                    let mut val = String::new();
                    vars.render(v, raw, &mut val);
                    push_param(&mut target, k, &val);
                }
            }
        }
        for (k, v) in params {
            push_param(&mut target, k, v);
        }
        let c = &svc.conventions;
        // Sized once: the conventions' headers, the three trust values, the call's own and
        // the extra ones, and a content type.
        let mut headers =
            Vec::with_capacity(c.headers.len() + 4 + call.headers.len() + extra_headers.len());
        headers.extend(c.headers.iter().cloned());
        let mut place = |p: &Place, v: String, target: &mut String| -> Result<(), Problem> {
            match p {
                Place::Header(h) => headers.push((h.clone(), header_value(&v)?)),
                Place::Query(q) => push_param(target, q, &v),
                Place::Nowhere => {}
            }
            Ok(())
        };
        place(&c.tenant, vars.trust.tenant.to_string(), &mut target)?;
        place(&c.user, vars.trust.user.to_string(), &mut target)?;
        place(&c.request_id, vars.trust.request_id.clone(), &mut target)?;
        for (k, t) in &call.headers {
            let mut v = String::new();
            vars.render(t, raw, &mut v);
            headers.push((k.clone(), header_value(&v)?));
        }
        headers.extend(extra_headers.iter().cloned());
        let body = match body {
            Some(b) => {
                headers.push((http::header::CONTENT_TYPE, c.media_type.clone()));
                Some(Bytes::from(serde_json::to_vec(b).map_err(|_| {
                    Problem::new(Kind::Internal, "Could not build the upstream request")
                })?))
            }
            None => None,
        };
        Ok(Prepared {
            method: method(call.method),
            target,
            headers,
            body,
        })
    }

    pub async fn send(
        &self,
        upstreams: &Upstreams,
        service: &str,
        safe: bool,
        trust: &Trust,
    ) -> Result<Answer, Problem> {
        upstreams
            .send(
                service,
                Outgoing {
                    method: self.method.clone(),
                    path_and_query: &self.target,
                    headers: &self.headers,
                    body: self.body.clone(),
                    safe,
                },
                &trust.ledger,
            )
            .await
    }
}

pub fn header_value(s: &str) -> Result<HeaderValue, Problem> {
    HeaderValue::from_str(s)
        .map_err(|_| Problem::new(Kind::Internal, "Could not build the upstream request"))
}

pub fn method(m: Method) -> http::Method {
    match m {
        Method::Get => http::Method::GET,
        Method::Post => http::Method::POST,
        Method::Put => http::Method::PUT,
        Method::Patch => http::Method::PATCH,
        Method::Delete => http::Method::DELETE,
    }
}

impl Conventions {
    /// The platform's own convention (`X-PC-*` trust headers, JSON): what `iam` and the
    /// six reference services speak, and what a service declares nothing else.
    pub fn platform() -> Conventions {
        const JSON: HeaderValue = HeaderValue::from_static("application/json");
        Conventions {
            tenant: Place::Header(HeaderName::from_static("x-pc-tenant")),
            user: Place::Header(HeaderName::from_static("x-pc-user")),
            request_id: Place::Header(HeaderName::from_static("x-pc-request-id")),
            headers: vec![(http::header::ACCEPT, JSON)],
            media_type: JSON,
            in_path: Vec::new(),
        }
    }
}

impl Upstreams {
    /// A GET of the platform's own services (`iam`), with the platform's trust headers.
    pub async fn call(
        &self,
        service: &str,
        m: Method,
        path: &str,
        body: Option<Vec<u8>>,
        trust: &Trust,
    ) -> Result<Answer, Problem> {
        let c = Conventions::platform();
        let mut headers = c.headers.clone();
        for (p, v) in [
            (&c.tenant, trust.tenant.to_string()),
            (&c.user, trust.user.to_string()),
            (&c.request_id, trust.request_id.clone()),
        ] {
            if let Place::Header(h) = p {
                headers.push((h.clone(), header_value(&v)?));
            }
        }
        if body.is_some() {
            headers.push((http::header::CONTENT_TYPE, c.media_type.clone()));
        }
        self.send(
            service,
            Outgoing {
                method: method(m),
                path_and_query: path,
                headers: &headers,
                body: body.map(Bytes::from),
                safe: m == Method::Get,
            },
            &trust.ledger,
        )
        .await
    }
}

/// A success's answer as a borrowed view, parsed as [`interpret`] parses it: `None` for
/// anything else (an error status, a failure inside a 200, an empty or unparsable body),
/// which `interpret` reads.
pub fn success_view<'a>(svc: &Service, a: &'a Answer) -> Option<Node<'a>> {
    if !(200..300).contains(&a.status) || a.body.is_empty() {
        return None;
    }
    let root = Node::parse(&a.body).ok()?;
    let ok = svc
        .success
        .as_ref()
        .is_none_or(|p| root.pointer(p).and_then(Node::as_bool) == Some(true));
    ok.then_some(root)
}

/// Reads one service's answer: the payload of a success, or the problem its error means.
pub fn interpret(svc: &Service, res: Option<&Resource>, a: &Answer) -> Result<Value, Problem> {
    let ok_status = (200..300).contains(&a.status);
    if svc.text_errors && !ok_status {
        return Err(by_status(svc, a.status));
    }
    let json: Option<Value> = if a.body.is_empty() {
        Some(Value::Null)
    } else {
        serde_json::from_slice(&a.body).ok()
    };
    let Some(json) = json else {
        return Err(if ok_status {
            Problem::new(
                Kind::UpstreamError,
                "A backing service answered with something that is not JSON",
            )
        } else {
            by_status(svc, a.status)
        });
    };
    let failed_in_200 = svc
        .success
        .as_ref()
        .is_some_and(|p| json.pointer(p).and_then(Value::as_bool) != Some(true));
    if ok_status && !failed_in_200 {
        // Taken out of the envelope, not cloned (a deep copy of every record otherwise).
        let payload = match &svc.result {
            Some(p) => {
                let mut json = json;
                json.pointer_mut(p).map(Value::take).unwrap_or(Value::Null)
            }
            None => json,
        };
        return Ok(payload);
    }
    let code = error_code_of(svc, &json);
    let kind = code
        .as_deref()
        .and_then(|c| svc.codes.get(c).copied())
        .or_else(|| svc.statuses.get(&a.status).copied())
        .unwrap_or_else(|| default_kind(a.status));
    let mut p = Problem::new(kind, safe_detail(kind));
    if kind == Kind::InvalidRequest {
        let mut errors = Vec::new();
        if let Some((at, member)) = &svc.field_errors {
            for e in json
                .pointer(at)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let up = member.get(e).and_then(Value::as_str).unwrap_or_default();
                let pointer = res
                    .and_then(|r| r.pointer_of_upstream(up))
                    .unwrap_or_default();
                errors.push(FieldError::new(pointer, "was refused by validation"));
            }
        }
        if errors.is_empty() {
            errors.push(FieldError::new("", "was refused by validation"));
        }
        p.errors = errors;
    }
    Err(p)
}

/// The error code of an answer as text: strings as they are, numbers in decimal.
fn error_code_of(svc: &Service, json: &Value) -> Option<String> {
    svc.code
        .as_ref()
        .and_then(|p| json.pointer(p))
        .and_then(|c| match c {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
}

/// The raw error code of a failed answer, for strategies that react to one code.
pub fn error_code(svc: &Service, a: &Answer) -> Option<String> {
    let json: Value = serde_json::from_slice(&a.body).ok()?;
    let failed = !(200..300).contains(&a.status)
        || svc
            .success
            .as_ref()
            .is_some_and(|p| json.pointer(p).and_then(Value::as_bool) != Some(true));
    if !failed {
        return None;
    }
    error_code_of(svc, &json)
}

fn by_status(svc: &Service, status: u16) -> Problem {
    let kind = svc
        .statuses
        .get(&status)
        .copied()
        .unwrap_or_else(|| default_kind(status));
    Problem::new(kind, safe_detail(kind))
}

fn default_kind(status: u16) -> Kind {
    match status {
        404 => Kind::NotFound,
        409 => Kind::Conflict,
        _ => Kind::UpstreamError,
    }
}

fn safe_detail(kind: Kind) -> &'static str {
    match kind {
        Kind::NotFound => "No such resource",
        Kind::Conflict => "The request conflicts with the current state of the resource",
        Kind::Unprocessable => "The request was refused by a business rule",
        Kind::InvalidRequest => "The request was refused by validation",
        Kind::PermissionDenied => "The user's role does not allow this operation",
        _ => "A backing service could not complete the request",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreserved_characters_are_never_escaped() {
        let mut s = String::new();
        enc_segment("a-b.c_d~e/f g%", &mut s);
        assert_eq!(s, "a-b.c_d~e%2Ff%20g%25");
        let mut q = String::new();
        enc_query("$filter", &mut q);
        q.push('=');
        enc_query("contains(tolower(A),'x+y&z=1#')", &mut q);
        assert_eq!(q, "$filter=contains(tolower(A),'x%2By%26z%3D1%23')");
    }
}
