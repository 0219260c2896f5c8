//! Each issuer's JWKS: loaded at start, refreshed in the background before it expires
//! (its `Cache-Control` freshness, bounded), one rate-limited refetch shared by every
//! request naming an unknown `kid`. On a failed fetch the last good keys stay.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};

use super::{Auth, JWKS_MAX_BYTES};
use crate::config::Issuer;

/// Bounds on how long a fetched JWKS counts as fresh, whatever its `Cache-Control` says.
pub const JWKS_TTL_MIN: Duration = Duration::from_secs(60);
pub const JWKS_TTL_MAX: Duration = Duration::from_secs(24 * 3600);
/// Freshness of a JWKS served without `max-age`.
const JWKS_TTL_DEFAULT: Duration = Duration::from_secs(300);
/// Longest wait between two attempts while an issuer's JWKS cannot be fetched.
const JWKS_RETRY_MAX: Duration = Duration::from_secs(60);
const JWKS_TIMEOUT: Duration = Duration::from_secs(5);

/// One issuer's usable keys by `kid`.
pub(super) type KeySet = HashMap<String, (Algorithm, Arc<DecodingKey>)>;

/// What is known about one issuer's JWKS fetches.
#[derive(Debug)]
pub(super) struct JwksStatus {
    fetched_at: Option<Instant>,
    ttl: Duration,
    last_ok: bool,
    failures: u32,
    next_refresh: Instant,
    /// The last refetch caused by an unknown `kid` (rate limited).
    last_on_demand: Option<Instant>,
}

pub(super) struct IssuerState {
    pub(super) cfg: Issuer,
    pub(super) keys: ArcSwap<KeySet>,
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

impl IssuerState {
    pub(super) fn new(cfg: &Issuer, started: Instant) -> IssuerState {
        IssuerState {
            cfg: cfg.clone(),
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
        }
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

impl Auth {
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
    pub(super) async fn key(
        &self,
        i: &IssuerState,
        kid: &str,
    ) -> Option<(Algorithm, Arc<DecodingKey>)> {
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
}
