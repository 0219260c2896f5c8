//! Authentication: RFC 9068 JWT access tokens verified against each issuer's JWKS, and the
//! user's CRM permissions from `iam`. Tenant and user come from the token only.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::sync::{Mutex, RwLock};

use crate::config::Issuer;
use crate::problem::{Kind, Problem};
use crate::upstream::{Trust, Upstreams};

/// Tokens longer than this are refused before any parsing or crypto.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;
/// An unknown `kid` refetches the JWKS at most this often.
const JWKS_REFETCH_INTERVAL: Duration = Duration::from_secs(10);

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

#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    client_id: String,
    tid: serde_json::Value,
    scope: String,
    exp: i64,
    #[serde(default)]
    iat: Option<i64>,
}

struct Keys {
    keys: HashMap<String, (Algorithm, DecodingKey)>,
    fetched: Option<Instant>,
}

struct IssuerState {
    cfg: Issuer,
    keys: RwLock<Keys>,
    refetch: Mutex<()>,
}

pub struct Auth {
    issuers: Vec<Arc<IssuerState>>,
    http: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        http_body_util::Empty<bytes::Bytes>,
    >,
    verified: moka::future::Cache<[u8; 32], Arc<Identity>>,
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

impl Auth {
    pub fn new(issuers: &[Issuer], permissions_ttl: Duration) -> Auth {
        let mut conn = hyper_util::client::legacy::connect::HttpConnector::new();
        conn.set_connect_timeout(Some(Duration::from_secs(2)));
        Auth {
            issuers: issuers
                .iter()
                .map(|c| {
                    Arc::new(IssuerState {
                        cfg: c.clone(),
                        keys: RwLock::new(Keys {
                            keys: HashMap::new(),
                            fetched: None,
                        }),
                        refetch: Mutex::new(()),
                    })
                })
                .collect(),
            http: hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build(conn),
            verified: moka::future::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(300))
                .build(),
            permissions: moka::future::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(permissions_ttl)
                .build(),
        }
    }

    /// Fetches every issuer's JWKS; returns how many issuers have keys.
    pub async fn refresh_all(&self) -> usize {
        let mut ok = 0;
        for i in &self.issuers {
            if self.fetch_jwks(i).await {
                ok += 1;
            }
        }
        ok
    }

    async fn fetch_jwks(&self, i: &IssuerState) -> bool {
        use http_body_util::BodyExt;
        let Ok(uri) = i.cfg.jwks_url.parse::<http::Uri>() else {
            return false;
        };
        let fut = async {
            let resp = self.http.get(uri).await.ok()?;
            if !resp.status().is_success() {
                return None;
            }
            let body = http_body_util::Limited::new(resp.into_body(), 1 << 20)
                .collect()
                .await
                .ok()?
                .to_bytes();
            serde_json::from_slice::<JwkSet>(&body).ok()
        };
        let Ok(Some(set)) = tokio::time::timeout(Duration::from_secs(5), fut).await else {
            tracing::warn!(issuer = %i.cfg.issuer, "JWKS fetch failed; keeping the last good keys");
            return false;
        };
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            let (Some(kid), Ok(key)) = (jwk.common.key_id.clone(), DecodingKey::from_jwk(jwk))
            else {
                continue;
            };
            let alg = match &jwk.algorithm {
                jsonwebtoken::jwk::AlgorithmParameters::RSA(_) => Algorithm::RS256,
                jsonwebtoken::jwk::AlgorithmParameters::EllipticCurve(_) => Algorithm::ES256,
                jsonwebtoken::jwk::AlgorithmParameters::OctetKeyPair(_) => Algorithm::EdDSA,
                _ => continue,
            };
            if i.cfg.algorithms.contains(&alg) {
                keys.insert(kid, (alg, key));
            }
        }
        let mut k = i.keys.write().await;
        k.keys = keys;
        k.fetched = Some(Instant::now());
        true
    }

    /// Looks a key up; an unknown `kid` triggers one shared refetch, rate limited.
    async fn key(&self, i: &IssuerState, kid: &str) -> Option<(Algorithm, DecodingKey)> {
        if let Some(k) = i.keys.read().await.keys.get(kid) {
            return Some(k.clone());
        }
        let _guard = i.refetch.lock().await;
        let (known, recent) = {
            let k = i.keys.read().await;
            (
                k.keys.get(kid).cloned(),
                k.fetched
                    .is_some_and(|t| t.elapsed() < JWKS_REFETCH_INTERVAL),
            )
        };
        if known.is_some() || recent {
            return known;
        }
        self.fetch_jwks(i).await;
        i.keys.read().await.keys.get(kid).cloned()
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
        if token.split('.').count() != 3
            || !token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            return Err(invalid("The token is malformed"));
        }
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let now = chrono::Utc::now().timestamp();
        if let Some(id) = self.verified.get(&digest).await {
            if id.expires_at > now {
                return Ok(id);
            }
        }
        let id = Arc::new(self.verify(token).await?);
        self.verified.insert(digest, id.clone()).await;
        Ok(id)
    }

    async fn verify(&self, token: &str) -> Result<Identity, Problem> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|_| invalid("The token is malformed"))?;
        if header.typ.as_deref().map(|t| t.to_ascii_lowercase()) != Some("at+jwt".into())
            && header.typ.as_deref().map(|t| t.to_ascii_lowercase())
                != Some("application/at+jwt".into())
        {
            return Err(invalid("The token is not an access token (typ at+jwt)"));
        }
        if header.jku.is_some() || header.x5u.is_some() || header.jwk.is_some() {
            return Err(invalid(
                "Key references in the token header are not accepted",
            ));
        }
        let kid = header
            .kid
            .clone()
            .ok_or_else(|| invalid("The token names no key (kid)"))?;
        let issuer = {
            // The issuer is read (unverified) only to pick its keys; it is verified below.
            let payload = token.split('.').nth(1).unwrap_or_default();
            use base64::Engine;
            let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload)
                .map_err(|_| invalid("The token is malformed"))?;
            let v: serde_json::Value =
                serde_json::from_slice(&bytes).map_err(|_| invalid("The token is malformed"))?;
            let iss = v
                .get("iss")
                .and_then(|i| i.as_str())
                .unwrap_or_default()
                .to_string();
            self.issuers
                .iter()
                .find(|i| i.cfg.issuer == iss)
                .cloned()
                .ok_or_else(|| invalid("The token's issuer is not trusted"))?
        };
        let (alg, key) = self
            .key(&issuer, &kid)
            .await
            .ok_or_else(|| invalid("The token's key is unknown"))?;
        if header.alg != alg {
            return Err(invalid("The token's algorithm does not match its key"));
        }
        let mut v = Validation::new(alg);
        v.set_issuer(&[issuer.cfg.issuer.as_str()]);
        v.set_audience(&[issuer.cfg.audience.as_str()]);
        v.leeway = issuer.cfg.leeway.as_secs();
        v.validate_nbf = true;
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let data = jsonwebtoken::decode::<Claims>(token, &key, &v).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind as E;
            match e.kind() {
                E::ExpiredSignature => invalid("The token has expired"),
                E::ImmatureSignature => invalid("The token is not valid yet"),
                E::InvalidAudience => invalid("The token is not meant for this API"),
                E::InvalidIssuer => invalid("The token's issuer is not trusted"),
                E::MissingRequiredClaim(_) | E::Json(_) => {
                    invalid("The token lacks a required claim")
                }
                _ => invalid("The token is invalid"),
            }
        })?;
        let c = data.claims;
        let now = chrono::Utc::now().timestamp();
        if c.iat
            .is_some_and(|iat| iat > now + issuer.cfg.leeway.as_secs() as i64)
        {
            return Err(invalid("The token was issued in the future"));
        }
        let tenant = match &c.tid {
            serde_json::Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
            serde_json::Value::String(s) => s.parse().ok(),
            _ => None,
        }
        .ok_or_else(|| invalid("The token's tenant is invalid"))?;
        let user: u64 = c
            .sub
            .parse()
            .map_err(|_| invalid("The token's subject is invalid"))?;
        if c.client_id.is_empty() || c.client_id.len() > 255 {
            return Err(invalid("The token's client_id is invalid"));
        }
        Ok(Identity {
            tenant,
            user,
            client_id: c.client_id,
            scopes: c
                .scope
                .split_ascii_whitespace()
                .map(str::to_string)
                .collect(),
            expires_at: c.exp,
        })
    }

    /// The user's CRM permissions, cached per (tenant, user) for the configured lifetime.
    pub async fn permissions(
        &self,
        upstreams: &Upstreams,
        trust: &Trust,
    ) -> Result<Arc<Vec<String>>, Problem> {
        let key = (trust.tenant, trust.user);
        if let Some(p) = self.permissions.get(&key).await {
            return Ok(p);
        }
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
            404 => return Err(invalid("The token's user is not a member of its tenant")),
            _ => {
                return Err(Problem::new(
                    Kind::UpstreamError,
                    "The permission service could not answer",
                ))
            }
        }
        let v: serde_json::Value = serde_json::from_slice(&answer.body).map_err(|_| {
            Problem::new(
                Kind::UpstreamError,
                "The permission service answered garbage",
            )
        })?;
        let perms: Vec<String> = v
            .get("permissions")
            .and_then(|p| p.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let perms = Arc::new(perms);
        self.permissions.insert(key, perms.clone()).await;
        Ok(perms)
    }
}
