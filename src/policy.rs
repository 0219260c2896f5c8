//! Edge policies shared by every route: rate limits (per tenant and app, in memory or in
//! Redis for several nodes), idempotency keys (moka or Redis), and CORS.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::config::{Applies, Backend, Cors, Idempotency, Policy, RateLimits};
use crate::problem::{Kind, Problem};

mod store;

pub use store::Shared;
use store::REDIS_TIMEOUT;

// ------------------------------------------------------------------ rate limits

/// What a request is, for the policies that apply to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Read,
    Search,
    Write,
}

pub struct RateLimiter {
    cfg: RateLimits,
    memory: Mutex<HashMap<String, (u64, u64)>>,
    redis: Option<Arc<Shared>>,
    script: redis::Script,
}

/// The outcome, with the headers every authenticated response carries.
pub struct Decision {
    pub headers: Vec<(&'static str, String)>,
    pub refused: Option<Problem>,
}

/// One round trip: count the request in every applicable window and read how long each
/// window still runs. A window opens with the first request of the (tenant, app).
const INCR_SCRIPT: &str = r#"
local out = {}
for i, key in ipairs(KEYS) do
  local n = redis.call('INCR', key)
  if n == 1 then redis.call('EXPIRE', key, ARGV[i]) end
  local ttl = redis.call('TTL', key)
  if ttl < 0 then redis.call('EXPIRE', key, ARGV[i]); ttl = tonumber(ARGV[i]) end
  out[2 * i - 1] = n
  out[2 * i] = ttl
end
return out
"#;

impl RateLimiter {
    pub fn new(cfg: RateLimits, redis: Option<Arc<Shared>>) -> RateLimiter {
        RateLimiter {
            cfg,
            memory: Mutex::new(HashMap::new()),
            redis,
            script: redis::Script::new(INCR_SCRIPT),
        }
    }

    fn quota(&self, p: &Policy, tenant: u32) -> u64 {
        self.cfg
            .overrides
            .get(&(tenant, p.name.clone()))
            .copied()
            .unwrap_or(p.quota)
    }

    fn applies(p: &Policy, class: Class) -> bool {
        match p.applies {
            Applies::All => true,
            Applies::Search => class == Class::Search,
            Applies::Writes => class == Class::Write,
        }
    }

    /// `RateLimit-Policy` for this tenant (draft-ietf-httpapi-ratelimit-headers structured form).
    fn policy_header(&self, tenant: u32) -> String {
        self.cfg
            .policies
            .iter()
            .map(|p| format!("\"{}\";q={};w={}", p.name, self.quota(p, tenant), p.window))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Counts the request against every policy that applies; one Redis round trip.
    pub async fn check(&self, tenant: u32, client: &str, class: Class, now: u64) -> Decision {
        let applicable: Vec<&Policy> = self
            .cfg
            .policies
            .iter()
            .filter(|p| Self::applies(p, class))
            .collect();
        let counted = match self.cfg.backend {
            Backend::Memory => Some(self.count_memory(&applicable, tenant, client, now)),
            Backend::Redis => self.count_redis(&applicable, tenant, client).await,
        };
        let mut headers = vec![("ratelimit-policy", self.policy_header(tenant))];
        let Some(counted) = counted else {
            crate::metrics::RATE_LIMIT
                .with_label_values(&["redis_error"])
                .inc();
            tracing::warn!(
                fail_open = self.cfg.fail_open,
                "rate-limit store unreachable"
            );
            if self.cfg.fail_open {
                return Decision {
                    headers,
                    refused: None,
                };
            }
            let p = Problem::new(
                Kind::UpstreamUnavailable,
                "The rate-limit store is unavailable; retry later",
            )
            .with_header("retry-after", "1");
            return Decision {
                headers,
                refused: Some(p),
            };
        };
        let mut violated = Vec::new();
        let mut tightest: Option<(u64, &str, u64)> = None;
        let mut retry = 0;
        for (p, (n, reset)) in applicable.iter().zip(&counted) {
            let quota = self.quota(p, tenant);
            let remaining = quota.saturating_sub(*n);
            if *n > quota {
                violated.push(p.name.clone());
                retry = retry.max(*reset);
            }
            if tightest.is_none_or(|(r, _, _)| remaining < r) {
                tightest = Some((remaining, p.name.as_str(), *reset));
            }
        }
        if let Some((r, name, t)) = tightest {
            headers.push(("ratelimit", format!("\"{name}\";r={r};t={t}")));
        }
        if violated.is_empty() {
            crate::metrics::RATE_LIMIT
                .with_label_values(&["allowed"])
                .inc();
            return Decision {
                headers,
                refused: None,
            };
        }
        crate::metrics::RATE_LIMIT
            .with_label_values(&["refused"])
            .inc();
        let p = Problem::new(
            Kind::RateLimited,
            "The quota of this app for this tenant is used up",
        )
        .with_ext("violated_policies", violated)
        .with_header("retry-after", retry.max(1).to_string());
        Decision {
            headers,
            refused: Some(p),
        }
    }

    /// (count, seconds until the window ends) per policy.
    fn count_memory(&self, ps: &[&Policy], tenant: u32, client: &str, now: u64) -> Vec<(u64, u64)> {
        let mut m = self.memory.lock().unwrap_or_else(|e| e.into_inner());
        if m.len() > 100_000 {
            // Ended windows are dead weight; a sweep is rare and cheap next to the quota.
            let longest = self
                .cfg
                .policies
                .iter()
                .map(|p| p.window)
                .max()
                .unwrap_or(0);
            m.retain(|_, (start, _)| *start + longest > now);
        }
        ps.iter()
            .map(|p| {
                let e = m
                    .entry(format!("{}:{tenant}:{client}", p.name))
                    .or_insert((now, 0));
                if now >= e.0 + p.window {
                    *e = (now, 0);
                }
                e.1 += 1;
                (e.1, e.0 + p.window - now)
            })
            .collect()
    }

    async fn count_redis(
        &self,
        ps: &[&Policy],
        tenant: u32,
        client: &str,
    ) -> Option<Vec<(u64, u64)>> {
        let shared = self.redis.as_ref()?;
        let mut conn = shared.conn().await?;
        let tenant = tenant.to_string();
        let client_hash = hex8(client);
        let mut inv = self.script.prepare_invoke();
        for p in ps {
            inv.key(shared.key(&["rl", &tenant, &client_hash], &[&p.name]));
            inv.arg(p.window);
        }
        match tokio::time::timeout(REDIS_TIMEOUT, inv.invoke_async::<Vec<i64>>(&mut conn)).await {
            Ok(Ok(v)) if v.len() == 2 * ps.len() => Some(
                v.chunks(2)
                    .map(|c| (c[0].max(0) as u64, c[1].max(1) as u64))
                    .collect(),
            ),
            _ => None,
        }
    }
}

/// A short stable digest for key material that may hold any characters.
fn hex8(s: &str) -> String {
    crate::hex::encode(&Sha256::digest(s.as_bytes())[..8])
}

// ------------------------------------------------------------------ idempotency

/// A stored answer, replayed byte for byte.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    pub status: u16,
    pub content_type: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

pub enum Claim {
    Fresh,
    InFlight,
    Mismatch,
    Replay(Stored),
}

pub struct IdempotencyStore {
    cfg: Idempotency,
    memory: moka::future::Cache<String, Arc<Value>>,
    redis: Option<Arc<Shared>>,
    /// Claims this node holds in Redis, by scope: the claim's token (only its holder may
    /// release it) and the task that keeps it alive while the request runs.
    held: Arc<Mutex<HashMap<String, Held>>>,
}

struct Held {
    token: String,
    renew: tokio::task::JoinHandle<()>,
}

/// A claim in Redis lives this long unless its holder renews it (every third of it) while
/// the upstream call runs: a claim the edge lost track of — its `SET NX` landed after the
/// edge gave up on it, or the node died — frees the key within this time.
const CLAIM_TTL: Duration = Duration::from_secs(10);

/// A claim is renewed at most this long (the request's own deadline, with margin).
const IN_FLIGHT_MAX: Duration = Duration::from_secs(120);

/// A timed-out claim's clean-up waits this long for a stalled Redis (it runs queued behind
/// the claim on the same connection, so it lands after it whenever the claim lands).
const CLEANUP_WAIT: Duration = Duration::from_secs(60);

/// Deletes the key only if it still holds the caller's claim (ARGV[1] is the token's
/// exact JSON member, unique per claim).
const RELEASE_SCRIPT: &str = r#"
local v = redis.call('GET', KEYS[1])
if v and string.find(v, ARGV[1], 1, true) then return redis.call('DEL', KEYS[1]) end
return 0
"#;

static RELEASE: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(RELEASE_SCRIPT));

/// Extends the claim's life only while it is still the caller's.
const RENEW_SCRIPT: &str = r#"
local v = redis.call('GET', KEYS[1])
if v and string.find(v, ARGV[1], 1, true) then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"#;

/// The token's member as it appears in the stored claim.
fn token_member(token: &str) -> String {
    format!("\"t\":\"{token}\"")
}

/// Validates an `Idempotency-Key`: 1–255 visible ASCII characters.
pub fn valid_key(k: &[u8]) -> bool {
    !k.is_empty() && k.len() <= 255 && k.iter().all(|b| (0x21..=0x7e).contains(b))
}

/// Canonical JSON: object keys sorted, no insignificant white space.
pub fn canonical(v: &Value) -> String {
    fn sort(v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                Value::Object(keys.into_iter().map(|k| (k.clone(), sort(&m[k]))).collect())
            }
            Value::Array(a) => Value::Array(a.iter().map(sort).collect()),
            other => other.clone(),
        }
    }
    sort(v).to_string()
}

/// method + path + canonical body + version.
pub fn fingerprint(method: &str, path: &str, body: Option<&Value>, version: &str) -> String {
    let mut h = Sha256::new();
    for part in [
        method,
        path,
        &body.map(canonical).unwrap_or_default(),
        version,
    ] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    crate::hex::encode(&h.finalize())
}

fn entry_state(v: &Value, fp: &str) -> Claim {
    if v["fp"].as_str() != Some(fp) {
        return Claim::Mismatch;
    }
    if v["s"] == "i" {
        return Claim::InFlight;
    }
    let stored = Stored {
        status: v["st"].as_u64().unwrap_or(500) as u16,
        content_type: v["ct"].as_str().unwrap_or("application/json").to_string(),
        headers: v["h"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|p| Some((p[0].as_str()?.to_string(), p[1].as_str()?.to_string())))
                    .collect()
            })
            .unwrap_or_default(),
        body: v["b"]
            .as_str()
            .and_then(|b| B64.decode(b).ok())
            .unwrap_or_default(),
    };
    Claim::Replay(stored)
}

fn unavailable() -> Problem {
    Problem::new(
        Kind::UpstreamUnavailable,
        "The idempotency store is unavailable; retry later",
    )
    .with_header("retry-after", "1")
}

impl IdempotencyStore {
    pub fn new(cfg: Idempotency, redis: Option<Arc<Shared>>) -> IdempotencyStore {
        IdempotencyStore {
            memory: moka::future::Cache::builder()
                .max_capacity(1_000_000)
                .time_to_live(cfg.ttl)
                .build(),
            cfg,
            redis,
            held: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<String, Held>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The claim this node holds on `scope`, if any; its renewal stops.
    fn take_held(&self, scope: &str) -> Option<String> {
        let h = self.held().remove(scope)?;
        h.renew.abort();
        Some(h.token)
    }

    /// Keeps a won claim alive every third of [`CLAIM_TTL`] until the request completes
    /// or releases it, at most [`IN_FLIGHT_MAX`].
    fn hold(&self, shared: &Arc<Shared>, scope: String, k: String, token: String) {
        let (shared, held, member) = (shared.clone(), self.held.clone(), token_member(&token));
        let (scope2, token2) = (scope.clone(), token.clone());
        let renew = tokio::spawn(async move {
            let script = redis::Script::new(RENEW_SCRIPT);
            let until = tokio::time::Instant::now() + IN_FLIGHT_MAX;
            loop {
                tokio::time::sleep(CLAIM_TTL / 3).await;
                if tokio::time::Instant::now() >= until {
                    break;
                }
                let Some(mut conn) = shared.conn().await else {
                    continue;
                };
                let mut inv = script.prepare_invoke();
                inv.key(&k).arg(&member).arg(CLAIM_TTL.as_millis() as u64);
                match tokio::time::timeout(REDIS_TIMEOUT, inv.invoke_async::<i64>(&mut conn)).await
                {
                    // No longer ours (expired and taken, or completed): stop renewing.
                    Ok(Ok(0)) => break,
                    Ok(Ok(_)) => {}
                    _ => crate::metrics::IDEMPOTENCY
                        .with_label_values(&["renew_failed"])
                        .inc(),
                }
            }
            let mut m = held.lock().unwrap_or_else(|e| e.into_inner());
            if m.get(&scope2).is_some_and(|h| h.token == token2) {
                m.remove(&scope2);
            }
        });
        if let Some(old) = self.held().insert(scope, Held { token, renew }) {
            old.renew.abort();
        }
    }

    /// Deletes the claim `token` made on `k` if it is still there, in the background: it
    /// is queued behind the claim itself, so a claim that lands late is undone right after.
    fn forget(shared: &Arc<Shared>, k: String, token: String) {
        let shared = shared.clone();
        tokio::spawn(async move {
            let Some(mut conn) = shared.conn().await else {
                return;
            };
            let mut inv = RELEASE.prepare_invoke();
            inv.key(&k).arg(token_member(&token));
            let r = tokio::time::timeout(CLEANUP_WAIT, inv.invoke_async::<i64>(&mut conn)).await;
            let outcome = if matches!(r, Ok(Ok(_))) {
                "abandoned_released"
            } else {
                "abandoned_expires"
            };
            crate::metrics::IDEMPOTENCY
                .with_label_values(&[outcome])
                .inc();
        });
    }

    fn scope(tenant: u32, client: &str, key: &[u8]) -> String {
        let mut h = Sha256::new();
        h.update(client.as_bytes());
        h.update([0]);
        h.update(key);
        let d = crate::hex::encode(&h.finalize()[..16]);
        format!("{tenant}:{d}")
    }

    /// Claims the key for this request, atomically across nodes with Redis.
    pub async fn claim(
        &self,
        tenant: u32,
        client: &str,
        key: &[u8],
        fp: &str,
    ) -> Result<Claim, Problem> {
        let scope = Self::scope(tenant, client, key);
        match self.cfg.backend {
            Backend::Memory => {
                let inflight = json!({"s": "i", "fp": fp});
                let entry = self
                    .memory
                    .entry(scope)
                    .or_insert_with(async { Arc::new(inflight) })
                    .await;
                if entry.is_fresh() {
                    return Ok(Claim::Fresh);
                }
                Ok(entry_state(entry.value(), fp))
            }
            Backend::Redis => {
                let shared = self.redis.as_ref().ok_or_else(unavailable)?;
                let mut conn = shared.conn().await.ok_or_else(unavailable)?;
                let k = shared.key(&["idem", &scope], &[]);
                let token = crate::hex::encode(&rand::random::<[u8; 16]>());
                let claim = json!({"s": "i", "fp": fp, "t": token});
                let set: redis::Cmd = redis::cmd("SET")
                    .arg(&k)
                    .arg(claim.to_string())
                    .arg("NX")
                    .arg("PX")
                    .arg(CLAIM_TTL.as_millis() as u64)
                    .clone();
                let won: Option<String> =
                    match tokio::time::timeout(REDIS_TIMEOUT, set.query_async(&mut conn)).await {
                        Ok(Ok(won)) => won,
                        // The edge gives up on the claim, but the `SET` may still land (a
                        // stalled Redis answers later): undo it then, so that the key is
                        // not locked by a request that is not running.
                        _ => {
                            Self::forget(shared, k, token);
                            return Err(unavailable());
                        }
                    };
                if won.is_some() {
                    self.hold(shared, scope, k, token);
                    return Ok(Claim::Fresh);
                }
                let got: Option<String> = tokio::time::timeout(
                    REDIS_TIMEOUT,
                    redis::cmd("GET").arg(&k).query_async(&mut conn),
                )
                .await
                .map_err(|_| unavailable())?
                .map_err(|_| unavailable())?;
                match got.and_then(|s| serde_json::from_str::<Value>(&s).ok()) {
                    Some(v) => Ok(entry_state(&v, fp)),
                    // Expired between the two calls: the caller may simply retry.
                    None => Ok(Claim::InFlight),
                }
            }
        }
    }

    /// Stores the answer for replays (the request reached the upstream).
    pub async fn complete(&self, tenant: u32, client: &str, key: &[u8], fp: &str, s: &Stored) {
        let scope = Self::scope(tenant, client, key);
        let v = json!({
            "s": "d", "fp": fp, "st": s.status, "ct": s.content_type,
            "h": s.headers.iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>(),
            "b": B64.encode(&s.body),
        });
        match self.cfg.backend {
            Backend::Memory => self.memory.insert(scope, Arc::new(v)).await,
            Backend::Redis => {
                self.take_held(&scope);
                if let Some(shared) = self.redis.as_ref() {
                    if let Some(mut conn) = shared.conn().await {
                        let k = shared.key(&["idem", &scope], &[]);
                        let cmd = redis::cmd("SET")
                            .arg(&k)
                            .arg(v.to_string())
                            .arg("EX")
                            .arg(self.cfg.ttl.as_secs())
                            .clone();
                        let r: Result<Result<(), _>, _> =
                            tokio::time::timeout(REDIS_TIMEOUT, cmd.query_async(&mut conn)).await;
                        if !matches!(r, Ok(Ok(()))) {
                            tracing::error!("could not store an idempotent answer");
                        }
                    }
                }
            }
        }
    }

    /// Forgets a claim whose request never reached the upstream (only this request's own
    /// claim: one that expired and was taken by another request stays).
    pub async fn release(&self, tenant: u32, client: &str, key: &[u8]) {
        let scope = Self::scope(tenant, client, key);
        match self.cfg.backend {
            Backend::Memory => self.memory.invalidate(&scope).await,
            Backend::Redis => {
                let (Some(shared), Some(token)) = (self.redis.as_ref(), self.take_held(&scope))
                else {
                    return;
                };
                if let Some(mut conn) = shared.conn().await {
                    let k = shared.key(&["idem", &scope], &[]);
                    let mut inv = RELEASE.prepare_invoke();
                    inv.key(&k).arg(token_member(&token));
                    let r = tokio::time::timeout(REDIS_TIMEOUT, inv.invoke_async::<i64>(&mut conn))
                        .await;
                    if !matches!(r, Ok(Ok(_))) {
                        // It expires within CLAIM_TTL on its own.
                        tracing::warn!("could not release an idempotency claim");
                    }
                }
            }
        }
    }
}

// ------------------------------------------------------------------ CORS

pub const EXPOSED: &str = "Trace-Id, Version, RateLimit, RateLimit-Policy, Retry-After, Location, Idempotent-Replayed, Deprecation, Sunset";

impl Cors {
    pub fn allows(&self, origin: &str) -> bool {
        self.origins.iter().any(|o| o == "*" || o == origin)
    }

    /// Headers of a preflight answer for an allowed origin.
    pub fn preflight(&self, origin: &str) -> Vec<(&'static str, String)> {
        vec![
            ("access-control-allow-origin", origin.to_string()),
            (
                "access-control-allow-methods",
                "GET, POST, PATCH, DELETE, OPTIONS".into(),
            ),
            ("access-control-allow-headers", self.headers.join(", ")),
            ("access-control-max-age", self.max_age.to_string()),
            ("vary", "Origin".into()),
        ]
    }

    /// Headers of an actual answer to an allowed origin.
    pub fn actual(&self, origin: &str) -> Vec<(&'static str, String)> {
        vec![
            ("access-control-allow-origin", origin.to_string()),
            ("access-control-expose-headers", EXPOSED.into()),
            ("vary", "Origin".into()),
        ]
    }
}
