//! Shared request policies: Redis, rate limits, idempotency and CORS.

use std::path::Path;
use std::time::Duration;

use marked_yaml::Spanned;

use super::raw;
use crate::diag::Diags;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Memory,
    Redis,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applies {
    All,
    Search,
    Writes,
}

#[derive(Debug, Clone)]
pub struct Policy {
    pub name: String,
    pub quota: u64,
    pub window: u64,
    pub applies: Applies,
}

#[derive(Debug, Clone)]
pub struct RateLimits {
    pub backend: Backend,
    pub fail_open: bool,
    pub policies: Vec<Policy>,
    /// (tenant, policy name) → quota
    pub overrides: std::collections::HashMap<(u32, String), u64>,
}

#[derive(Debug, Clone)]
pub struct Idempotency {
    pub backend: Backend,
    pub ttl: Duration,
}

#[derive(Debug, Clone)]
pub struct Cors {
    pub origins: Vec<String>,
    pub headers: Vec<String>,
    pub max_age: u64,
}

#[derive(Debug, Clone)]
pub struct Redis {
    pub target: RedisTarget,
    pub prefix: String,
}

/// Where the shared state lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisTarget {
    /// One server.
    Single(String),
    /// Seed nodes of a Redis Cluster.
    Cluster(Vec<String>),
    /// A master named `master`, found through these sentinels.
    Sentinel { master: String, urls: Vec<String> },
}

pub(super) fn backend(
    path: &Path,
    v: &Spanned<String>,
    redis: bool,
    d: &mut Diags,
) -> Option<Backend> {
    match v.as_str() {
        "memory" => Some(Backend::Memory),
        "redis" if redis => Some(Backend::Redis),
        "redis" => {
            d.at(path, v.span(), "backend redis needs a `redis:` section");
            None
        }
        o => {
            d.at(
                path,
                v.span(),
                format!("backend `{o}` must be memory or redis"),
            );
            None
        }
    }
}

pub(super) fn rate_limits(
    path: &Path,
    raw: &raw::RawRateLimits,
    redis: bool,
    d: &mut Diags,
) -> Option<RateLimits> {
    let backend = backend(path, &raw.backend, redis, d);
    let fail_open = match raw.on_redis_failure.as_ref().map(|s| s.as_str()) {
        None | Some("open") => true,
        Some("closed") => false,
        Some(o) => {
            if let Some(s) = &raw.on_redis_failure {
                d.at(
                    path,
                    s.span(),
                    format!("on_redis_failure `{o}` must be open or closed"),
                );
            }
            true
        }
    };
    let mut policies = Vec::new();
    for p in &raw.policies {
        let applies = match p.applies_to.as_ref().map(|s| s.as_str()) {
            None | Some("all") => Applies::All,
            Some("search") => Applies::Search,
            Some("writes") => Applies::Writes,
            Some(o) => {
                if let Some(s) = &p.applies_to {
                    d.at(
                        path,
                        s.span(),
                        format!("applies_to `{o}` must be all, search or writes"),
                    );
                }
                continue;
            }
        };
        let ok_name = !p.name.is_empty()
            && p.name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !ok_name {
            d.at(
                path,
                p.name.span(),
                "a policy name is letters, digits, - and _",
            );
        }
        if *p.quota == 0 || *p.window_seconds == 0 || *p.window_seconds > 86_400 {
            d.at(
                path,
                p.quota.span(),
                "quota must be ≥ 1 and window_seconds 1..=86400",
            );
        }
        policies.push(Policy {
            name: p.name.to_string(),
            quota: *p.quota,
            window: *p.window_seconds,
            applies,
        });
    }
    let mut overrides = std::collections::HashMap::new();
    for (tenant, m) in &raw.tenant_overrides {
        let Ok(t) = tenant.parse::<u32>() else {
            d.file(
                path,
                format!("rate_limits.tenant_overrides: `{tenant}` is not a tenant id"),
            );
            continue;
        };
        for (name, q) in m {
            if !policies.iter().any(|p| &p.name == name) {
                d.file(
                    path,
                    format!("rate_limits.tenant_overrides.{tenant}: no policy `{name}`"),
                );
            }
            overrides.insert((t, name.clone()), *q);
        }
    }
    Some(RateLimits {
        backend: backend?,
        fail_open,
        policies,
        overrides,
    })
}

/// A `redis://host:port[/db]` URL the client accepts (no TLS in the build).
fn redis_url(path: &Path, v: &Spanned<String>, d: &mut Diags) -> Option<String> {
    use redis::IntoConnectionInfo;
    if !v.starts_with("redis://") {
        d.at(
            path,
            v.span(),
            format!(
                "`{}` must be a redis:// URL (the build has no TLS for Redis)",
                **v
            ),
        );
        return None;
    }
    if v.as_str().into_connection_info().is_err() {
        d.at(
            path,
            v.span(),
            format!("`{}` is not a valid Redis URL", **v),
        );
        return None;
    }
    Some(v.to_string())
}

fn redis_urls(
    path: &Path,
    at: &Spanned<raw::RawRedis>,
    vs: &[Spanned<String>],
    d: &mut Diags,
) -> Option<Vec<String>> {
    if vs.is_empty() {
        d.at(path, at.span(), "the list of Redis URLs is empty");
        return None;
    }
    let urls: Vec<Option<String>> = vs.iter().map(|v| redis_url(path, v, d)).collect();
    urls.into_iter().collect()
}

pub(super) fn redis(path: &Path, raw: &Spanned<raw::RawRedis>, d: &mut Diags) -> Option<Redis> {
    let given = [
        raw.url.is_some(),
        raw.cluster.is_some(),
        raw.sentinel.is_some(),
    ];
    if given.iter().filter(|g| **g).count() != 1 {
        d.at(
            path,
            raw.span(),
            "`redis:` needs exactly one of `url`, `cluster` or `sentinel`",
        );
        return None;
    }
    let prefix = match &raw.key_prefix {
        // The hash tag of every key follows the prefix: braces in it would move the tag.
        Some(p) if p.contains(['{', '}']) => {
            d.at(path, p.span(), "`key_prefix` must not contain `{` or `}`");
            return None;
        }
        Some(p) => p.to_string(),
        None => "prospect-edge:".into(),
    };
    let target = if let Some(u) = &raw.url {
        RedisTarget::Single(redis_url(path, u, d)?)
    } else if let Some(c) = &raw.cluster {
        RedisTarget::Cluster(redis_urls(path, raw, c, d)?)
    } else {
        let s = raw.sentinel.as_ref()?;
        if s.master.is_empty() {
            d.at(path, s.master.span(), "`sentinel.master` is empty");
            return None;
        }
        RedisTarget::Sentinel {
            master: s.master.to_string(),
            urls: redis_urls(path, raw, &s.urls, d)?,
        }
    };
    Some(Redis { target, prefix })
}

pub(super) fn idempotency(
    path: &Path,
    raw: &raw::RawIdempotency,
    redis: bool,
    d: &mut Diags,
) -> Option<Idempotency> {
    Some(Idempotency {
        backend: backend(path, &raw.backend, redis, d)?,
        ttl: Duration::from_secs(
            3600 * raw.ttl_hours.as_ref().map(|h| (**h).max(24)).unwrap_or(24),
        ),
    })
}

pub(super) fn cors(raw: &raw::RawCors) -> Cors {
    Cors {
        origins: raw
            .allowed_origins
            .iter()
            .map(|o| o.trim_end_matches('/').to_string())
            .collect(),
        headers: raw.allowed_headers.clone().unwrap_or_else(|| {
            [
                "authorization",
                "content-type",
                "version",
                "idempotency-key",
                "traceparent",
            ]
            .map(String::from)
            .to_vec()
        }),
        max_age: raw.max_age_seconds.unwrap_or(600),
    }
}
