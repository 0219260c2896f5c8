//! A tiny OAuth token-issuer stand-in for tests and the demo: it serves a JWKS
//! (`GET /.well-known/jwks.json`, `Cache-Control: max-age=300`, counting fetches) and
//! answers RFC 7662 introspection (`POST /introspect`, form body `token=…`, counting
//! calls, optionally requiring the caller's client credentials) from answers set by the
//! test. It signs nothing: tests mint their own tokens.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};

use crate::common::json_response;
use crate::server::{Hook, Listener, Pre};

struct Shared {
    jwks: RwLock<Value>,
    fetches: AtomicU64,
    answers: RwLock<HashMap<String, Value>>,
    introspections: AtomicU64,
    /// The exact `Authorization` value introspection requires (None: anything goes).
    client_auth: RwLock<Option<String>>,
}

/// The running issuer.
pub struct Issuer {
    shared: Arc<Shared>,
    listener: Listener,
}

/// Binds the issuer on 127.0.0.1:0, serving `jwks`.
pub async fn start_issuer(jwks: Value) -> std::io::Result<Issuer> {
    let shared = Arc::new(Shared {
        jwks: RwLock::new(jwks),
        fetches: AtomicU64::new(0),
        answers: RwLock::new(HashMap::new()),
        introspections: AtomicU64::new(0),
        client_auth: RwLock::new(None),
    });
    let app = Router::new()
        .route("/.well-known/jwks.json", get(jwks_handler))
        .route("/introspect", post(introspect))
        .with_state(shared.clone());
    let hook: Hook = Arc::new(|| Pre {
        delay: Duration::ZERO,
        fail: false,
    });
    let internal = || {
        json_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            &json!({"error": "server_error"}),
        )
    };
    let listener = Listener::bind(
        SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        app,
        hook,
        internal,
    )
    .await?;
    Ok(Issuer { shared, listener })
}

async fn jwks_handler(State(s): State<Arc<Shared>>) -> Response {
    s.fetches.fetch_add(1, Ordering::Relaxed);
    let jwks = s.jwks.read().unwrap_or_else(|e| e.into_inner()).clone();
    let mut r = json_response(StatusCode::OK, &jwks);
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=300"),
    );
    r
}

async fn introspect(State(s): State<Arc<Shared>>, h: HeaderMap, body: Bytes) -> Response {
    s.introspections.fetch_add(1, Ordering::Relaxed);
    let required = s
        .client_auth
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    if let Some(required) = required {
        let given = h.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        if given != Some(required.as_str()) {
            let mut r = json_response(
                StatusCode::UNAUTHORIZED,
                &json!({"error": "invalid_client"}),
            );
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"introspection\""),
            );
            return r;
        }
    }
    let token = form_urlencoded::parse(&body)
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned());
    let Some(token) = token else {
        return json_response(
            StatusCode::BAD_REQUEST,
            &json!({"error": "invalid_request", "error_description": "token is required"}),
        );
    };
    let answer = s
        .answers
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .get(&token)
        .cloned()
        .unwrap_or_else(|| json!({"active": false}));
    json_response(StatusCode::OK, &answer).into_response()
}

impl Issuer {
    pub fn addr(&self) -> SocketAddr {
        self.listener.addr
    }

    /// `http://{addr}/.well-known/jwks.json`
    pub fn jwks_url(&self) -> String {
        format!("http://{}/.well-known/jwks.json", self.listener.addr)
    }

    /// `http://{addr}/introspect`
    pub fn introspection_url(&self) -> String {
        format!("http://{}/introspect", self.listener.addr)
    }

    /// Replaces the served key set (key rotation).
    pub fn set_jwks(&self, jwks: Value) {
        *self.shared.jwks.write().unwrap_or_else(|e| e.into_inner()) = jwks;
    }

    /// How many times the JWKS has been fetched.
    pub fn fetches(&self) -> u64 {
        self.shared.fetches.load(Ordering::Relaxed)
    }

    /// What `POST /introspect` answers for `token` (unknown tokens: `{"active": false}`).
    pub fn set_introspection(&self, token: &str, answer: Value) {
        self.shared
            .answers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(token.to_string(), answer);
    }

    /// How many introspection requests have been received.
    pub fn introspections(&self) -> u64 {
        self.shared.introspections.load(Ordering::Relaxed)
    }

    /// From now on introspection answers 401 `invalid_client` unless the request's
    /// `Authorization` header is exactly `value` (e.g. `Basic …` of the client credentials).
    pub fn require_authorization(&self, value: &str) {
        *self
            .shared
            .client_auth
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Some(value.to_string());
    }

    /// Stops answering (connections refused from now on), as an issuer outage would.
    pub async fn stop(&self) {
        self.listener.stop().await;
    }

    pub async fn shutdown(self) {
        self.listener.stop().await;
    }
}
