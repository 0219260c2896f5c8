//! Authentication: RFC 9068 JWT access tokens verified against each issuer's JWKS, opaque
//! tokens verified by RFC 7662 introspection, and the user's CRM permissions from `iam`.
//! Tenant and user come from the token only.
//!
//! Owns the JWKS cache (loaded at start, refreshed in the background, one rate-limited
//! refetch shared by every request naming an unknown `kid`), the cache of verified tokens
//! (keyed by a SHA-256 of the token, never past `exp`) and the permission cache per
//! (tenant, user). It does not decide which scope or permission an operation needs: the
//! mapping files do, and `edge` compares.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::config::{Introspection, Issuer};
use crate::mapping::Trust;
use crate::problem::{Kind, Problem};
use crate::upstream::Upstreams;

/// Tokens longer than this are refused before any parsing or crypto.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;
/// Bounds on how long a fetched JWKS counts as fresh, whatever its `Cache-Control` says.
pub const JWKS_TTL_MIN: Duration = Duration::from_secs(60);
pub const JWKS_TTL_MAX: Duration = Duration::from_secs(24 * 3600);
/// Freshness of a JWKS served without `max-age`.
const JWKS_TTL_DEFAULT: Duration = Duration::from_secs(300);
/// Longest wait between two attempts while an issuer's JWKS cannot be fetched.
const JWKS_RETRY_MAX: Duration = Duration::from_secs(60);
const JWKS_MAX_BYTES: usize = 1 << 20;
const JWKS_TIMEOUT: Duration = Duration::from_secs(5);
/// A verified JWT is reused at most this long (and never past its `exp`).
const VERIFIED_TTL_MAX: Duration = Duration::from_secs(300);
/// An inactive introspection answer is reused at most this long (and never past the cap).
const INACTIVE_TTL_MAX: Duration = Duration::from_secs(30);
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

/// One issuer's usable keys by `kid`.
type KeySet = HashMap<String, (Algorithm, Arc<DecodingKey>)>;

/// What is known about one issuer's JWKS fetches.
#[derive(Debug)]
struct JwksStatus {
    fetched_at: Option<Instant>,
    ttl: Duration,
    last_ok: bool,
    failures: u32,
    next_refresh: Instant,
    /// The last refetch caused by an unknown `kid` (rate limited).
    last_on_demand: Option<Instant>,
}

struct IssuerState {
    cfg: Issuer,
    keys: ArcSwap<KeySet>,
    status: Mutex<JwksStatus>,
    /// Held during every fetch of this issuer's JWKS: concurrent callers share one.
    fetching: tokio::sync::Mutex<()>,
}

impl IssuerState {
    fn status(&self) -> std::sync::MutexGuard<'_, JwksStatus> {
        self.status.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn key(&self, kid: &str) -> Option<(Algorithm, Arc<DecodingKey>)> {
        self.keys.load().get(kid).cloned()
    }
}

/// A resolved token as cached: who it is, or why it is refused, and for how long.
#[derive(Debug)]
struct Resolved {
    outcome: Result<Arc<Identity>, &'static str>,
    /// Unix time after which the identity no longer counts (exp, plus leeway for JWTs).
    valid_until: i64,
    ttl: Duration,
}

/// Entries live for their own `ttl`: a token's cache entry never outlives its `exp`.
struct PerEntry;

impl moka::Expiry<[u8; 32], Arc<Resolved>> for PerEntry {
    fn expire_after_create(
        &self,
        _key: &[u8; 32],
        value: &Arc<Resolved>,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(value.ttl)
    }
}

/// One issuer's JWKS state, for `/readyz`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct JwksReport {
    pub issuer: String,
    pub keys: usize,
    pub last_fetch_ok: bool,
    /// Seconds since the last successful fetch (`None`: never fetched).
    pub age_seconds: Option<u64>,
    /// No successful fetch for longer than the JWKS's own freshness.
    pub stale: bool,
}

pub struct Auth {
    issuers: Vec<Arc<IssuerState>>,
    introspection: Option<Introspection>,
    http: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    tokens: moka::future::Cache<[u8; 32], Arc<Resolved>>,
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

/// `max-age` of a `Cache-Control` value, bounded to [`JWKS_TTL_MIN`, `JWKS_TTL_MAX`].
pub fn jwks_ttl(cache_control: Option<&str>) -> Duration {
    let Some(cc) = cache_control else {
        return JWKS_TTL_DEFAULT;
    };
    let mut ttl = None;
    for d in cc.split(',').map(str::trim) {
        let lower = d.to_ascii_lowercase();
        if lower == "no-store" || lower == "no-cache" {
            return JWKS_TTL_MIN;
        }
        if let Some(v) = lower.strip_prefix("max-age=") {
            ttl = v
                .trim_matches('"')
                .parse::<u64>()
                .ok()
                .map(Duration::from_secs);
        }
    }
    ttl.unwrap_or(JWKS_TTL_DEFAULT)
        .clamp(JWKS_TTL_MIN, JWKS_TTL_MAX)
}

/// When to try again after `failures` failed fetches in a row: 1 s, 2 s, 4 s … 60 s.
fn retry_after(failures: u32) -> Duration {
    let secs = 1u64 << failures.saturating_sub(1).min(6);
    Duration::from_secs(secs).min(JWKS_RETRY_MAX)
}

/// The usable keys of a JWKS: signing keys with a `kid`, of an algorithm the issuer allows.
fn usable_keys(set: &JwkSet, allowed: &[Algorithm]) -> KeySet {
    let mut keys = HashMap::new();
    for jwk in &set.keys {
        if matches!(jwk.common.public_key_use, Some(ref u) if *u != PublicKeyUse::Signature) {
            continue;
        }
        let Some(kid) = jwk.common.key_id.clone() else {
            continue;
        };
        let alg = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => Algorithm::RS256,
            AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => {
                Algorithm::ES256
            }
            AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
                Algorithm::EdDSA
            }
            _ => continue,
        };
        // A key published for another algorithm (e.g. PS256) is not used for this one.
        let declared = match jwk.common.key_algorithm {
            None => Some(alg),
            Some(KeyAlgorithm::RS256) => Some(Algorithm::RS256),
            Some(KeyAlgorithm::ES256) => Some(Algorithm::ES256),
            Some(KeyAlgorithm::EdDSA) => Some(Algorithm::EdDSA),
            Some(_) => None,
        };
        if declared != Some(alg) || !allowed.contains(&alg) {
            continue;
        }
        if let Ok(key) = DecodingKey::from_jwk(jwk) {
            keys.insert(kid, (alg, Arc::new(key)));
        }
    }
    keys
}

fn b64_json(part: &str) -> Option<Map<String, Value>> {
    let bytes = URL_SAFE_NO_PAD.decode(part).ok()?;
    match serde_json::from_slice::<Value>(&bytes).ok()? {
        Value::Object(m) => Some(m),
        _ => None,
    }
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

fn is_jwt_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.'
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
                .map(|c| {
                    Arc::new(IssuerState {
                        cfg: c.clone(),
                        keys: ArcSwap::from_pointee(KeySet::new()),
                        status: Mutex::new(JwksStatus {
                            fetched_at: None,
                            ttl: JWKS_TTL_DEFAULT,
                            last_ok: false,
                            failures: 0,
                            next_refresh: started,
                            last_on_demand: None,
                        }),
                        fetching: tokio::sync::Mutex::new(()),
                    })
                })
                .collect(),
            introspection,
            http: Client::builder(hyper_util::rt::TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(30))
                .build(conn),
            tokens: moka::future::Cache::builder()
                .max_capacity(CACHE_CAPACITY)
                .expire_after(PerEntry)
                .build(),
            permissions: moka::future::Cache::builder()
                .max_capacity(CACHE_CAPACITY)
                .time_to_live(permissions_ttl.min(Duration::from_secs(60)))
                .build(),
        })
    }

    /// Fetches every issuer's JWKS; returns how many issuers have keys.
    pub async fn refresh_all(&self) -> usize {
        for i in &self.issuers {
            self.fetch_jwks(i).await;
        }
        self.issuers
            .iter()
            .filter(|i| !i.keys.load().is_empty())
            .count()
    }

    /// How long until the next issuer's JWKS is due for a background refresh.
    pub fn next_refresh_in(&self) -> Duration {
        let now = Instant::now();
        self.issuers
            .iter()
            .map(|i| i.status().next_refresh.saturating_duration_since(now))
            .min()
            .unwrap_or(JWKS_TTL_MAX)
    }

    /// Refreshes, in the background, every issuer whose JWKS is due (before it expires).
    pub async fn refresh_due(&self) {
        let now = Instant::now();
        for i in &self.issuers {
            if i.status().next_refresh <= now {
                self.fetch_jwks(i).await;
            }
        }
    }

    /// Whether every issuer has keys (the edge can verify tokens).
    pub fn jwks_loaded(&self) -> bool {
        self.issuers.iter().all(|i| !i.keys.load().is_empty())
    }

    pub fn jwks_report(&self) -> Vec<JwksReport> {
        self.issuers
            .iter()
            .map(|i| {
                let st = i.status();
                let age = st.fetched_at.map(|t| t.elapsed());
                JwksReport {
                    issuer: i.cfg.issuer.clone(),
                    keys: i.keys.load().len(),
                    last_fetch_ok: st.last_ok,
                    age_seconds: age.map(|a| a.as_secs()),
                    stale: age.is_none_or(|a| a > st.ttl),
                }
            })
            .collect()
    }

    /// One fetch of an issuer's JWKS, shared by every concurrent caller.
    async fn fetch_jwks(&self, i: &IssuerState) {
        let _one = i.fetching.lock().await;
        self.fetch_jwks_locked(i).await;
    }

    /// Fetches and installs an issuer's keys; on any failure the last good keys stay.
    async fn fetch_jwks_locked(&self, i: &IssuerState) {
        let got = match i.cfg.jwks_url.parse::<http::Uri>() {
            Ok(uri) => {
                let fut = async {
                    let req = http::Request::get(uri)
                        .header("accept", "application/json")
                        .body(Full::new(Bytes::new()))
                        .ok()?;
                    let resp = self.http.request(req).await.ok()?;
                    if !resp.status().is_success() {
                        return None;
                    }
                    let cc = resp
                        .headers()
                        .get(http::header::CACHE_CONTROL)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string);
                    let body = Limited::new(resp.into_body(), JWKS_MAX_BYTES)
                        .collect()
                        .await
                        .ok()?
                        .to_bytes();
                    let set = serde_json::from_slice::<JwkSet>(&body).ok()?;
                    Some((set, cc))
                };
                tokio::time::timeout(JWKS_TIMEOUT, fut).await.ok().flatten()
            }
            Err(_) => None,
        };
        let usable = got.map(|(set, cc)| (usable_keys(&set, &i.cfg.algorithms), cc));
        let now = Instant::now();
        match usable {
            Some((keys, cc)) if !keys.is_empty() => {
                let ttl = jwks_ttl(cc.as_deref());
                let removed = i.keys.load().keys().any(|k| !keys.contains_key(k));
                let n = keys.len();
                i.keys.store(Arc::new(keys));
                if removed {
                    // A key the issuer no longer publishes must not keep tokens alive.
                    self.tokens.invalidate_all();
                }
                let mut st = i.status();
                st.fetched_at = Some(now);
                st.ttl = ttl;
                st.last_ok = true;
                st.failures = 0;
                st.next_refresh = now + ttl.mul_f64(0.8);
                tracing::debug!(issuer = %i.cfg.issuer, keys = n, ttl_s = ttl.as_secs(), "JWKS fetched");
            }
            _ => {
                let mut st = i.status();
                st.last_ok = false;
                st.failures = st.failures.saturating_add(1);
                st.next_refresh = now + retry_after(st.failures);
                tracing::warn!(issuer = %i.cfg.issuer, failures = st.failures, "JWKS fetch failed; keeping the last good keys");
            }
        }
    }

    /// Looks a key up; an unknown `kid` triggers one refetch shared by every concurrent
    /// request, at most once per the issuer's `jwks_refetch_interval`.
    async fn key(&self, i: &IssuerState, kid: &str) -> Option<(Algorithm, Arc<DecodingKey>)> {
        let found = i.key(kid);
        crate::metrics::cache("jwks", found.is_some());
        if found.is_some() {
            return found;
        }
        let _one = i.fetching.lock().await;
        // Whoever held the lock may have fetched the key meanwhile.
        if let Some(k) = i.key(kid) {
            return Some(k);
        }
        {
            let mut st = i.status();
            if st
                .last_on_demand
                .is_some_and(|t| t.elapsed() < i.cfg.jwks_refetch_interval)
            {
                return None;
            }
            st.last_on_demand = Some(Instant::now());
        }
        self.fetch_jwks_locked(i).await;
        i.key(kid)
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
        let jwt = token.bytes().filter(|b| *b == b'.').count() == 2;
        if jwt && !token.bytes().all(is_jwt_char) {
            return Err(invalid("The token is malformed"));
        }
        if !jwt && (self.introspection.is_none() || !is_b64token(token)) {
            return Err(invalid("The token is malformed"));
        }
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        // Concurrent requests with the same token share one verification (a hit for all
        // but the one that ran it).
        let ran = std::sync::atomic::AtomicBool::new(false);
        let resolved = self
            .tokens
            .try_get_with(digest, async {
                ran.store(true, std::sync::atomic::Ordering::Relaxed);
                self.resolve(token, jwt).await
            })
            .await
            .map_err(|e| (*e).clone());
        crate::metrics::cache("token", !ran.load(std::sync::atomic::Ordering::Relaxed));
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

    /// RFC 9068 / RFC 8725 checks, cheapest first; the signature is checked last, with a
    /// key from the issuer's JWKS only.
    async fn verify_jwt(&self, token: &str) -> Result<Resolved, Problem> {
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(sig)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(invalid("The token is malformed"));
        };
        let header = b64_json(h).ok_or_else(|| invalid("The token is malformed"))?;
        let alg = match header.get("alg").and_then(Value::as_str) {
            Some("RS256") => Algorithm::RS256,
            Some("ES256") => Algorithm::ES256,
            Some("EdDSA") => Algorithm::EdDSA,
            // none, HMAC (a public key used as a shared secret) and everything else.
            _ => return Err(invalid("The token's algorithm is not accepted")),
        };
        let typ = header
            .get("typ")
            .and_then(Value::as_str)
            .map(str::to_ascii_lowercase);
        if !matches!(typ.as_deref(), Some("at+jwt" | "application/at+jwt")) {
            return Err(invalid("The token is not an access token (typ at+jwt)"));
        }
        // Keys come from the configured JWKS only; `crit` names extensions we do not know.
        if ["jku", "jwk", "x5u", "x5c", "crit"]
            .iter()
            .any(|k| header.contains_key(*k))
        {
            return Err(invalid(
                "Key references in the token header are not accepted",
            ));
        }
        let kid = match header.get("kid").and_then(Value::as_str) {
            Some(k) if !k.is_empty() && k.len() <= 256 => k,
            _ => return Err(invalid("The token names no key (kid)")),
        };
        if sig.is_empty() {
            return Err(invalid("The token is not signed"));
        }

        let claims = b64_json(p).ok_or_else(|| invalid("The token is malformed"))?;
        let iss = claims
            .get("iss")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid("The token lacks the `iss` claim"))?;
        let issuer = self
            .issuers
            .iter()
            .find(|i| i.cfg.issuer == iss)
            .ok_or_else(|| invalid("The token's issuer is not trusted"))?;
        if !issuer.cfg.algorithms.contains(&alg) {
            return Err(invalid("The token's algorithm is not accepted"));
        }
        let audience = issuer.cfg.audience.as_str();
        let aud_ok = match claims.get("aud") {
            Some(Value::String(a)) => a == audience,
            Some(Value::Array(a)) => a.iter().any(|x| x.as_str() == Some(audience)),
            _ => false,
        };
        if !aud_ok {
            return Err(invalid("The token is not meant for this API"));
        }
        let leeway = issuer.cfg.leeway.as_secs() as i64;
        let now = now();
        let exp = numeric_date(&claims, "exp")?
            .ok_or_else(|| invalid("The token lacks the `exp` claim"))?;
        if now > exp.saturating_add(leeway) {
            return Err(invalid("The token has expired"));
        }
        if numeric_date(&claims, "nbf")?.is_some_and(|nbf| nbf > now.saturating_add(leeway)) {
            return Err(invalid("The token is not valid yet"));
        }
        let iat = numeric_date(&claims, "iat")?
            .ok_or_else(|| invalid("The token lacks the `iat` claim"))?;
        if iat > now.saturating_add(leeway) {
            return Err(invalid("The token was issued in the future"));
        }
        if claims
            .get("jti")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            return Err(invalid("The token lacks the `jti` claim"));
        }
        let identity = identity_of(&claims, exp).map_err(invalid)?;

        let (key_alg, key) = self
            .key(issuer, kid)
            .await
            .ok_or_else(|| invalid("The token's key is unknown"))?;
        if key_alg != alg {
            return Err(invalid("The token's algorithm does not match its key"));
        }
        let signed = &token[..h.len() + 1 + p.len()];
        match jsonwebtoken::crypto::verify(sig, signed.as_bytes(), &key, alg) {
            Ok(true) => {}
            _ => return Err(invalid("The token's signature is invalid")),
        }
        let left = u64::try_from(exp - now).unwrap_or(0);
        Ok(Resolved {
            outcome: Ok(Arc::new(identity)),
            valid_until: exp.saturating_add(leeway),
            ttl: Duration::from_secs(left).min(VERIFIED_TTL_MAX),
        })
    }

    /// RFC 7662 introspection with the edge's client credentials. An inactive token is an
    /// answer (cached briefly); an unreachable or failing endpoint is a problem (not cached).
    async fn introspect(&self, cfg: &Introspection, token: &str) -> Result<Resolved, Problem> {
        use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
        // application/x-www-form-urlencoded, as RFC 6749 §2.3.1 asks for the credentials too.
        const FORM: &AsciiSet = &NON_ALPHANUMERIC
            .remove(b'*')
            .remove(b'-')
            .remove(b'.')
            .remove(b'_');
        let enc = |s: &str| utf8_percent_encode(s, FORM).to_string();
        let secret = String::from_utf8_lossy(&cfg.client_secret.0);
        let basic = STANDARD.encode(format!("{}:{}", enc(&cfg.client_id), enc(&secret)));
        let body = format!("token={}&token_type_hint=access_token", enc(token));
        let req = http::Request::post(cfg.url.as_str())
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json")
            .header("authorization", format!("Basic {basic}"))
            .body(Full::new(Bytes::from(body)))
            .map_err(|_| {
                Problem::new(
                    Kind::Internal,
                    "The introspection request could not be built",
                )
            })?;
        let fut = async {
            let resp = self
                .http
                .request(req)
                .await
                .map_err(|_| crate::upstream::unavailable())?;
            let status = resp.status();
            let body = Limited::new(resp.into_body(), JWKS_MAX_BYTES)
                .collect()
                .await
                .map_err(|_| {
                    Problem::new(
                        Kind::UpstreamError,
                        "The token introspection service sent an incomplete answer",
                    )
                })?
                .to_bytes();
            Ok::<_, Problem>((status, body))
        };
        let (status, body) = match tokio::time::timeout(cfg.timeout, fut).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(Problem::new(
                    Kind::UpstreamTimeout,
                    "The token introspection service did not answer in time",
                ))
            }
        };
        let answer = match serde_json::from_slice::<Value>(&body) {
            Ok(Value::Object(m)) if status.is_success() => m,
            _ => {
                tracing::warn!(status = status.as_u16(), "token introspection failed");
                return Err(Problem::new(
                    Kind::UpstreamError,
                    "The token introspection service could not answer",
                ));
            }
        };
        let now = now();
        let inactive = |why: &'static str| Resolved {
            outcome: Err(why),
            valid_until: now,
            ttl: cfg.cache_max.min(INACTIVE_TTL_MAX),
        };
        if answer.get("active") != Some(&Value::Bool(true)) {
            return Ok(inactive("The token is not active"));
        }
        let exp = match numeric_date(&answer, "exp") {
            Ok(e) => e,
            Err(_) => return Ok(inactive("The token has an invalid time claim")),
        };
        if exp.is_some_and(|e| e <= now) {
            return Ok(inactive("The token has expired"));
        }
        if matches!(numeric_date(&answer, "nbf"), Ok(Some(nbf)) if nbf > now + 60) {
            return Ok(inactive("The token is not valid yet"));
        }
        let valid_until = exp.unwrap_or(i64::MAX);
        let identity = match identity_of(&answer, valid_until) {
            Ok(i) => i,
            Err(why) => return Ok(inactive(why)),
        };
        let left = exp.map_or(cfg.cache_max, |e| {
            Duration::from_secs(u64::try_from(e - now).unwrap_or(0))
        });
        Ok(Resolved {
            outcome: Ok(Arc::new(identity)),
            valid_until,
            ttl: left.min(cfg.cache_max),
        })
    }

    /// The user's CRM permissions, cached per (tenant, user) for the configured lifetime;
    /// concurrent requests of one user share one `iam` call. Nothing cached and `iam`
    /// unreachable: 503, never "allow".
    pub async fn permissions(
        &self,
        upstreams: &Upstreams,
        trust: &Trust,
    ) -> Result<Arc<Vec<String>>, Problem> {
        let ran = std::sync::atomic::AtomicBool::new(false);
        let perms = self
            .permissions
            .try_get_with((trust.tenant, trust.user), async {
                ran.store(true, std::sync::atomic::Ordering::Relaxed);
                fetch_permissions(upstreams, trust).await
            })
            .await
            .map_err(|e| (*e).clone());
        crate::metrics::cache(
            "permissions",
            !ran.load(std::sync::atomic::Ordering::Relaxed),
        );
        perms
    }
}

async fn fetch_permissions(
    upstreams: &Upstreams,
    trust: &Trust,
) -> Result<Arc<Vec<String>>, Problem> {
    let path = format!("/iam/v2/users/{}/permissions", trust.user);
    let answer = upstreams
        .call(
            "iam",
            crate::mapping::model::Method::Get,
            &path,
            None,
            trust,
        )
        .await?;
    match answer.status {
        200 => {}
        // The token is genuine but its user is not (or no longer) a member of its tenant.
        403 | 404 => return Err(invalid("The token's user is not a member of its tenant")),
        _ => {
            return Err(Problem::new(
                Kind::UpstreamError,
                "The permission service could not answer",
            ))
        }
    }
    let v: Value = serde_json::from_slice(&answer.body).map_err(|_| {
        Problem::new(
            Kind::UpstreamError,
            "The permission service answered garbage",
        )
    })?;
    let perms = v
        .get("permissions")
        .and_then(Value::as_array)
        .ok_or_else(|| {
            Problem::new(
                Kind::UpstreamError,
                "The permission service answered garbage",
            )
        })?
        .iter()
        .filter_map(|x| x.as_str().map(str::to_string))
        .collect();
    Ok(Arc::new(perms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwks_freshness_honours_max_age_within_bounds() {
        assert_eq!(jwks_ttl(None), JWKS_TTL_DEFAULT);
        assert_eq!(jwks_ttl(Some("max-age=300")), Duration::from_secs(300));
        assert_eq!(
            jwks_ttl(Some("public, Max-Age=7200, must-revalidate")),
            Duration::from_secs(7200)
        );
        assert_eq!(jwks_ttl(Some("max-age=5")), JWKS_TTL_MIN);
        assert_eq!(jwks_ttl(Some("max-age=99999999")), JWKS_TTL_MAX);
        assert_eq!(jwks_ttl(Some("no-store")), JWKS_TTL_MIN);
        assert_eq!(jwks_ttl(Some("max-age=soon")), JWKS_TTL_DEFAULT);
    }

    #[test]
    fn failed_fetches_back_off_up_to_a_minute() {
        let waits: Vec<u64> = (1..=9).map(|f| retry_after(f).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
    }

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
        let auth = Auth::new(&[], None, Duration::from_secs(1), None).expect("auth");
        let e = auth
            .authenticate(&[b"Bearer opaque-token-123"])
            .await
            .err()
            .map(|p| p.status());
        assert_eq!(e, Some(401));
    }
}
