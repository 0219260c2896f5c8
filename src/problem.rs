//! RFC 9457 problem details: the one shape every error of the public API takes.
//!
//! Owns the catalogue of problem types (slug, status, fixed title) and the rendering of a
//! [`Problem`] into `application/problem+json`. It does not decide *when* a problem happens:
//! the pipeline stages do, and they hand a `Problem` to the single responder in `pipeline::respond`.

use serde_json::{json, Map, Value};

/// Every problem type of the public contract (`public-api.md` §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    InvalidRequest,
    MalformedJson,
    VersionRequired,
    UnsupportedVersion,
    InvalidCursor,
    Unauthenticated,
    InsufficientScope,
    PermissionDenied,
    NotFound,
    MethodNotAllowed,
    RequestTimeout,
    Conflict,
    IdempotencyKeyInUse,
    PayloadTooLarge,
    UnsupportedMediaType,
    IdempotencyKeyReused,
    Unprocessable,
    RateLimited,
    RequestHeaderFieldsTooLarge,
    Internal,
    UpstreamError,
    UpstreamUnavailable,
    UpstreamTimeout,
}

impl Kind {
    pub const ALL: [Kind; 23] = [
        Kind::InvalidRequest,
        Kind::MalformedJson,
        Kind::VersionRequired,
        Kind::UnsupportedVersion,
        Kind::InvalidCursor,
        Kind::Unauthenticated,
        Kind::InsufficientScope,
        Kind::PermissionDenied,
        Kind::NotFound,
        Kind::MethodNotAllowed,
        Kind::RequestTimeout,
        Kind::Conflict,
        Kind::IdempotencyKeyInUse,
        Kind::PayloadTooLarge,
        Kind::UnsupportedMediaType,
        Kind::IdempotencyKeyReused,
        Kind::Unprocessable,
        Kind::RateLimited,
        Kind::RequestHeaderFieldsTooLarge,
        Kind::Internal,
        Kind::UpstreamError,
        Kind::UpstreamUnavailable,
        Kind::UpstreamTimeout,
    ];

    pub fn slug(self) -> &'static str {
        match self {
            Kind::InvalidRequest => "invalid-request",
            Kind::MalformedJson => "malformed-json",
            Kind::VersionRequired => "version-required",
            Kind::UnsupportedVersion => "unsupported-version",
            Kind::InvalidCursor => "invalid-cursor",
            Kind::Unauthenticated => "unauthenticated",
            Kind::InsufficientScope => "insufficient-scope",
            Kind::PermissionDenied => "permission-denied",
            Kind::NotFound => "not-found",
            Kind::MethodNotAllowed => "method-not-allowed",
            Kind::RequestTimeout => "request-timeout",
            Kind::Conflict => "conflict",
            Kind::IdempotencyKeyInUse => "idempotency-key-in-use",
            Kind::PayloadTooLarge => "payload-too-large",
            Kind::UnsupportedMediaType => "unsupported-media-type",
            Kind::IdempotencyKeyReused => "idempotency-key-reused",
            Kind::Unprocessable => "unprocessable",
            Kind::RateLimited => "rate-limited",
            Kind::RequestHeaderFieldsTooLarge => "request-header-fields-too-large",
            Kind::Internal => "internal",
            Kind::UpstreamError => "upstream-error",
            Kind::UpstreamUnavailable => "upstream-unavailable",
            Kind::UpstreamTimeout => "upstream-timeout",
        }
    }

    pub fn from_slug(slug: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.slug() == slug)
    }

    pub fn status(self) -> u16 {
        match self {
            Kind::InvalidRequest
            | Kind::MalformedJson
            | Kind::VersionRequired
            | Kind::UnsupportedVersion
            | Kind::InvalidCursor => 400,
            Kind::Unauthenticated => 401,
            Kind::InsufficientScope | Kind::PermissionDenied => 403,
            Kind::NotFound => 404,
            Kind::MethodNotAllowed => 405,
            Kind::RequestTimeout => 408,
            Kind::Conflict | Kind::IdempotencyKeyInUse => 409,
            Kind::PayloadTooLarge => 413,
            Kind::UnsupportedMediaType => 415,
            Kind::IdempotencyKeyReused | Kind::Unprocessable => 422,
            Kind::RateLimited => 429,
            Kind::RequestHeaderFieldsTooLarge => 431,
            Kind::Internal => 500,
            Kind::UpstreamError => 502,
            Kind::UpstreamUnavailable => 503,
            Kind::UpstreamTimeout => 504,
        }
    }

    /// The fixed, human title of the type (RFC 9457 §3.1.3: the same for every occurrence).
    pub fn title(self) -> &'static str {
        match self {
            Kind::InvalidRequest => "The request is invalid",
            Kind::MalformedJson => "The request body is not valid JSON",
            Kind::VersionRequired => "A Version header is required",
            Kind::UnsupportedVersion => "The requested version is not supported",
            Kind::InvalidCursor => "The cursor is not valid for this query",
            Kind::Unauthenticated => "Authentication is required",
            Kind::InsufficientScope => "The token lacks a required scope",
            Kind::PermissionDenied => "The user's role does not allow this operation",
            Kind::NotFound => "Not found",
            Kind::MethodNotAllowed => "Method not allowed",
            Kind::RequestTimeout => "The request was not received in time",
            Kind::Conflict => "The request conflicts with the current state",
            Kind::IdempotencyKeyInUse => "A request with this idempotency key is in progress",
            Kind::PayloadTooLarge => "The request body is too large",
            Kind::UnsupportedMediaType => "The request body must be application/json",
            Kind::IdempotencyKeyReused => "The idempotency key was used for another request",
            Kind::Unprocessable => "The request was refused by a business rule",
            Kind::RateLimited => "Too many requests",
            Kind::RequestHeaderFieldsTooLarge => "The request header fields are too large",
            Kind::Internal => "Internal error",
            Kind::UpstreamError => "A backing service answered with an error",
            Kind::UpstreamUnavailable => "A backing service is unavailable",
            Kind::UpstreamTimeout => "A backing service did not answer in time",
        }
    }
}

/// One offending input, named by RFC 6901 JSON pointer into the request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub pointer: String,
    pub detail: String,
}

impl FieldError {
    pub fn new(pointer: impl Into<String>, detail: impl Into<String>) -> Self {
        FieldError {
            pointer: pointer.into(),
            detail: detail.into(),
        }
    }
}

/// A problem on its way to the client. Only safe, edge-written text goes in `detail`.
/// Boxed: errors are the cold path, and a small `Result` keeps the hot path lean.
#[derive(Debug, Clone)]
pub struct Problem(Box<ProblemDoc>);

impl std::ops::Deref for Problem {
    type Target = ProblemDoc;
    fn deref(&self) -> &ProblemDoc {
        &self.0
    }
}

impl std::ops::DerefMut for Problem {
    fn deref_mut(&mut self) -> &mut ProblemDoc {
        &mut self.0
    }
}

#[derive(Debug, Clone)]
pub struct ProblemDoc {
    pub kind: Kind,
    pub detail: String,
    pub errors: Vec<FieldError>,
    /// Extension members (`required_scope`, `supported_versions`, …).
    pub extensions: Map<String, Value>,
    /// Extra response headers (`WWW-Authenticate`, `Allow`, `Retry-After`, …).
    pub headers: Vec<(&'static str, String)>,
}

impl Problem {
    pub fn new(kind: Kind, detail: impl Into<String>) -> Self {
        Problem(Box::new(ProblemDoc {
            kind,
            detail: detail.into(),
            errors: Vec::new(),
            extensions: Map::new(),
            headers: Vec::new(),
        }))
    }

    pub fn invalid(errors: Vec<FieldError>) -> Self {
        let n = errors.len();
        let mut p = Problem::new(
            Kind::InvalidRequest,
            if n == 1 {
                "1 field is invalid".to_string()
            } else {
                format!("{n} fields are invalid")
            },
        );
        p.errors = errors;
        p
    }

    pub fn not_found() -> Self {
        Problem::new(Kind::NotFound, "No such resource")
    }

    pub fn with_ext(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.extensions.insert(key.to_string(), value.into());
        self
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub fn status(&self) -> u16 {
        self.kind.status()
    }

    /// The problem+json document. `instance` is the request path (never the query string,
    /// which may carry user data).
    pub fn body(&self, type_base: &str, instance: &str, trace_id: &str) -> Vec<u8> {
        let mut doc = Map::new();
        doc.insert(
            "type".into(),
            json!(format!("{}{}", type_base, self.kind.slug())),
        );
        doc.insert("title".into(), json!(self.kind.title()));
        doc.insert("status".into(), json!(self.kind.status()));
        doc.insert("detail".into(), json!(self.detail));
        doc.insert("instance".into(), json!(instance));
        doc.insert("trace_id".into(), json!(trace_id));
        if !self.errors.is_empty() {
            let errors: Vec<Value> = self
                .errors
                .iter()
                .map(|e| json!({"pointer": e.pointer, "detail": e.detail}))
                .collect();
            doc.insert("errors".into(), Value::Array(errors));
        }
        for (k, v) in &self.extensions {
            doc.insert(k.clone(), v.clone());
        }
        serde_json::to_vec(&Value::Object(doc)).unwrap_or_default()
    }
}

/// Escape one reference token of a JSON pointer (RFC 6901 §3).
pub fn pointer_token(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_round_trip_and_statuses_match_the_contract() {
        for k in Kind::ALL {
            assert_eq!(Kind::from_slug(k.slug()), Some(k));
        }
        assert_eq!(Kind::IdempotencyKeyReused.status(), 422);
        assert_eq!(Kind::UpstreamTimeout.status(), 504);
        assert_eq!(Kind::RequestTimeout.status(), 408);
        assert_eq!(Kind::RequestHeaderFieldsTooLarge.status(), 431);
    }

    #[test]
    fn body_has_every_member() {
        let p = Problem::invalid(vec![FieldError::new("/email", "is required")]).with_ext("x", "y");
        let v: Value =
            serde_json::from_slice(&p.body("https://t/p/", "/v1/contacts", "ab")).unwrap();
        assert_eq!(v["type"], "https://t/p/invalid-request");
        assert_eq!(v["status"], 400);
        assert_eq!(v["instance"], "/v1/contacts");
        assert_eq!(v["trace_id"], "ab");
        assert_eq!(v["errors"][0]["pointer"], "/email");
        assert_eq!(v["x"], "y");
    }
}
