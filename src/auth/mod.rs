//! Authentication: RFC 9068 JWT access tokens verified against each issuer's JWKS, opaque
//! tokens verified by RFC 7662 introspection, and the user's CRM permissions from `iam`.
//! Tenant and user come from the token only.
//!
//! Owns the JWKS cache (`jwks`: loaded at start, refreshed in the background, one
//! rate-limited refetch shared by every request naming an unknown `kid`), the cache of
//! verified tokens (`token_cache`: keyed by a keyed hash of the token, never past `exp`) and
//! the permission cache per (tenant, user) (`permissions`). `jwt` and `introspection`
//! verify the two kinds of token. It does not decide which scope or permission an operation needs: the
//! mapping files do, and `edge` compares.

mod introspection;
mod jwks;
mod jwt;
mod permissions;
mod token_cache;
pub use token_cache::DEFAULT_CACHE_BYTES as DEFAULT_TOKEN_CACHE_BYTES;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use serde_json::{Map, Value};

use crate::config::{Introspection, Issuer};
use crate::problem::{Kind, Problem};
use jwks::IssuerState;
pub use jwks::{jwks_ttl, JwksReport, JWKS_TTL_MAX, JWKS_TTL_MIN};
use token_cache::{Resolved, TokenCache};

/// Tokens longer than this are refused before any parsing or crypto.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;
const JWKS_MAX_BYTES: usize = 1 << 20;
/// A verified JWT is reused at most this long (and never past its `exp`).
const VERIFIED_TTL_MAX: Duration = Duration::from_secs(300);
/// An inactive introspection answer is reused at most this long (and never past the cap).
const INACTIVE_TTL_MAX: Duration = Duration::from_secs(30);
/// Permissions of at most this many (tenant, user) pairs are remembered.
const CACHE_CAPACITY: u64 = 100_000;

/// Who is calling, from a verified token.
#[derive(Debug, Clone)]
pub struct Identity {
    pub tenant: u32,
    pub user: u64,
    pub client_id: String,
    pub scopes: Vec<String>,
    pub expires_at: i64,
}

impl Identity {
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }
}

pub struct Auth {
    issuers: Vec<Arc<IssuerState>>,
    introspection: Option<Introspection>,
    http: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    tokens: TokenCache,
    permissions: moka::future::Cache<(u32, u64), Arc<Vec<String>>>,
}

pub fn unauthenticated(detail: &str, had_token: bool) -> Problem {
    let challenge = if had_token {
        r#"Bearer realm="prospectconnect", error="invalid_token""#
    } else {
        r#"Bearer realm="prospectconnect""#
    };
    Problem::new(Kind::Unauthenticated, detail).with_header("www-authenticate", challenge)
}

fn invalid(detail: &str) -> Problem {
    unauthenticated(detail, true)
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A NumericDate claim (RFC 7519 §2): a JSON number of seconds.
fn numeric_date(claims: &Map<String, Value>, name: &str) -> Result<Option<i64>, Problem> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))
            .map(Some)
            .ok_or_else(|| invalid("The token has an invalid time claim")),
        Some(_) => Err(invalid("The token has an invalid time claim")),
    }
}

fn tenant_of(v: Option<&Value>) -> Option<u32> {
    match v? {
        Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// sub, client_id, tid and scope: the claims both kinds of token must carry.
fn identity_of(claims: &Map<String, Value>, expires_at: i64) -> Result<Identity, &'static str> {
    let sub = claims
        .get("sub")
        .and_then(Value::as_str)
        .ok_or("The token lacks the `sub` claim")?;
    let client_id = claims
        .get("client_id")
        .and_then(Value::as_str)
        .ok_or("The token lacks the `client_id` claim")?;
    let scope = claims
        .get("scope")
        .and_then(Value::as_str)
        .ok_or("The token lacks the `scope` claim")?;
    if !claims.contains_key("tid") {
        return Err("The token lacks the `tid` claim");
    }
    let tenant = tenant_of(claims.get("tid")).ok_or("The token's tenant is invalid")?;
    let user: u64 = sub.parse().map_err(|_| "The token's subject is invalid")?;
    if client_id.is_empty() || client_id.len() > 255 {
        return Err("The token's client_id is invalid");
    }
    Ok(Identity {
        tenant,
        user,
        client_id: client_id.to_string(),
        scopes: scope.split_ascii_whitespace().map(str::to_string).collect(),
        expires_at,
    })
}

/// The rule [`scan_jwt`] implements (its test checks every byte against this).
#[cfg(test)]
fn is_jwt_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.'
}

/// The dots of a token and whether every byte is a JWT character, in one branch-free pass
/// over 32-byte blocks with byte-wide counters, which the compiler vectorizes (a
/// byte-at-a-time `&&` chain cost ~8,500 of a GET's instructions for a 600-byte token
/// under callgrind, and a fold with a `usize` counter, which does not vectorize, ~15,000).
fn scan_jwt(token: &[u8]) -> (usize, bool) {
    let mut dots = 0usize;
    let mut bad = 0u8;
    for block in token.chunks(32) {
        let mut d = 0u8;
        for &b in block {
            let letter = (b | 0x20).wrapping_sub(b'a') < 26;
            let digit = b.wrapping_sub(b'0') < 10;
            let ok = letter | digit | (b == b'-') | (b == b'_') | (b == b'.');
            d += u8::from(b == b'.');
            bad |= u8::from(!ok);
        }
        dots += usize::from(d);
    }
    (dots, bad == 0)
}

/// RFC 6750 `b64token`: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
fn is_b64token(t: &str) -> bool {
    let body = t.trim_end_matches('=');
    !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
}

impl Auth {
    pub fn new(
        issuers: &[Issuer],
        introspection: Option<Introspection>,
        permissions_ttl: Duration,
        ca_file: Option<&std::path::Path>,
        token_cache_bytes: u64,
    ) -> Result<Auth, crate::tls::TlsError> {
        let mut conn = HttpConnector::new();
        conn.set_connect_timeout(Some(Duration::from_secs(2)));
        conn.set_nodelay(true);
        conn.enforce_http(false);
        // JWKS and introspection URLs may be https (the system's CAs plus `auth_ca_file`)
        // or, on a private network or in tests, plain http.
        let conn = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(crate::tls::client_config(ca_file)?)
            .https_or_http()
            .enable_http1()
            .wrap_connector(conn);
        let started = Instant::now();
        Ok(Auth {
            issuers: issuers
                .iter()
                .map(|c| Arc::new(IssuerState::new(c, started)))
                .collect(),
            introspection,
            http: Client::builder(hyper_util::rt::TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(30))
                .build(conn),
            tokens: TokenCache::new(token_cache_bytes),
            permissions: moka::future::Cache::builder()
                .max_capacity(CACHE_CAPACITY)
                .time_to_live(permissions_ttl.min(Duration::from_secs(60)))
                .build(),
        })
    }

    /// Verifies the `Authorization` header values of a request.
    pub async fn authenticate(&self, headers: &[&[u8]]) -> Result<Arc<Identity>, Problem> {
        let raw = match headers {
            [] => return Err(unauthenticated("A bearer token is required", false)),
            [one] => *one,
            _ => return Err(invalid("Send exactly one Authorization header")),
        };
        if raw.len() > MAX_TOKEN_LEN + 7 {
            return Err(invalid("The token is too large"));
        }
        let raw = std::str::from_utf8(raw).map_err(|_| invalid("The token is malformed"))?;
        let (scheme, token) = raw.split_once(' ').unwrap_or((raw, ""));
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(unauthenticated("Use the Bearer scheme", false));
        }
        let token = token.trim();
        if token.is_empty() {
            return Err(invalid("The bearer token is empty"));
        }
        let digest = self.tokens.key(token);
        // A remembered token passed the syntax checks when it was first seen: the same
        // bytes, as the key is a 128-bit keyed hash of them. Only a new one is scanned
        // (2.1k of a GET's instructions for a 600-byte JWT).
        let (resolved, hit) = match self.tokens.cached(&digest).await {
            Some(r) => (Ok(r), true),
            None => {
                let jwt = self.syntax(token)?;
                // Concurrent requests with the same token share one verification (a hit
                // for all but the one that ran it).
                self.tokens
                    .get_or_resolve(digest, || self.resolve(token, jwt))
                    .await
            }
        };
        crate::metrics::cache("token", hit);
        let resolved = resolved?;
        match &resolved.outcome {
            Ok(id) if resolved.valid_until > now() => Ok(id.clone()),
            Ok(_) => {
                self.tokens.invalidate(&digest).await;
                Err(invalid("The token has expired"))
            }
            Err(why) => Err(invalid(why)),
        }
    }

    /// Whether `token` may be a JWT (else it is an opaque token), refusing one that can be
    /// neither: one pass for the dots of a JWT and whether every byte may appear in one.
    fn syntax(&self, token: &str) -> Result<bool, Problem> {
        let (dots, jwt_chars) = scan_jwt(token.as_bytes());
        let jwt = dots == 2;
        if jwt && !jwt_chars {
            return Err(invalid("The token is malformed"));
        }
        if !jwt && (self.introspection.is_none() || !is_b64token(token)) {
            return Err(invalid("The token is malformed"));
        }
        Ok(jwt)
    }

    /// Verifies a token without the cache (benchmarks and diagnostics).
    pub async fn verify_uncached(&self, token: &str) -> Result<Arc<Identity>, Problem> {
        let jwt = token.bytes().filter(|b| *b == b'.').count() == 2;
        let r = self.resolve(token, jwt).await?;
        match &r.outcome {
            Ok(id) => Ok(id.clone()),
            Err(why) => Err(invalid(why)),
        }
    }

    async fn resolve(&self, token: &str, jwt: bool) -> Result<Arc<Resolved>, Problem> {
        if jwt {
            return self.verify_jwt(token).await.map(Arc::new);
        }
        match &self.introspection {
            Some(cfg) => self.introspect(cfg, token).await.map(Arc::new),
            None => Err(invalid("The token is malformed")),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_branch_free_scan_agrees_with_the_character_rule() {
        for b in 0..=255u8 {
            assert_eq!(
                super::scan_jwt(&[b]).1,
                super::is_jwt_char(b),
                "byte {b:#04x}"
            );
        }
        assert_eq!(super::scan_jwt(b"aZ0-_.bc.d"), (2, true));
        assert_eq!(super::scan_jwt(b"a.b.c\xc3\xa9"), (2, false));
        assert_eq!(super::scan_jwt(b""), (0, true));
    }

    use super::*;

    #[test]
    fn opaque_tokens_are_rfc6750_b64tokens() {
        assert!(is_b64token("abc-._~+/=="));
        assert!(!is_b64token("==="));
        assert!(!is_b64token("a b"));
        assert!(!is_b64token("a=b"));
    }

    #[test]
    fn identity_needs_sub_client_tid_and_scope() {
        let full: Map<String, Value> = serde_json::from_value(serde_json::json!({
            "sub": "101", "client_id": "app", "tid": "1", "scope": "a b"
        }))
        .unwrap_or_default();
        let id = identity_of(&full, 10).map_err(str::to_string);
        assert!(matches!(&id, Ok(i) if i.tenant == 1 && i.user == 101 && i.scopes == ["a", "b"]));
        for missing in ["sub", "client_id", "tid", "scope"] {
            let mut m = full.clone();
            m.remove(missing);
            assert!(identity_of(&m, 10).is_err(), "{missing}");
        }
        let mut m = full.clone();
        m.insert("tid".into(), serde_json::json!(-1));
        assert!(identity_of(&m, 10).is_err());
    }

    #[tokio::test]
    async fn without_introspection_an_opaque_token_is_refused_before_any_call() {
        let auth = Auth::new(&[], None, Duration::from_secs(1), None, 1 << 20).expect("auth");
        let e = auth
            .authenticate(&[b"Bearer opaque-token-123"])
            .await
            .err()
            .map(|p| p.status());
        assert_eq!(e, Some(401));
    }
}
