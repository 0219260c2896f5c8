//! The edge configuration: `edge.yaml` compiled into types that cannot hold an invalid value.
//!
//! Owns listeners, upstream services, issuers and secrets. The public API itself (routes,
//! fields, versions) is not here: it lives in the mapping files (`crate::mapping`).

mod raw;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::Uri;
use indexmap::IndexMap;
use jsonwebtoken::Algorithm;
use marked_yaml::Spanned;

use crate::diag::{self, Diags};
pub use raw::RawEdge;

pub const DEFAULT_PROBLEM_BASE: &str = "https://papi.trendev.in/problems/";

/// A compiled upstream service.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub name: String,
    /// `http://host:port` without a trailing slash.
    pub base: String,
    pub authority: String,
    pub connect_timeout: Duration,
    pub timeout: Duration,
    pub pool_idle_per_host: usize,
    /// Extra attempts of a safe call (GET, search) after a connect failure or a 502/503.
    pub retries: u32,
    pub retry_backoff: Duration,
    /// Consecutive failures that open the circuit breaker.
    pub breaker_failures: u32,
    pub breaker_open: Duration,
}

#[derive(Debug, Clone)]
pub struct Issuer {
    pub issuer: String,
    pub jwks_url: String,
    pub audience: String,
    pub algorithms: Vec<Algorithm>,
    pub leeway: Duration,
    /// Least time between two JWKS refetches caused by an unknown `kid`.
    pub jwks_refetch_interval: Duration,
}

/// RFC 7662 token introspection for opaque access tokens.
#[derive(Debug, Clone)]
pub struct Introspection {
    pub url: String,
    pub client_id: String,
    pub client_secret: Secret,
    /// Upper bound on how long an answer is reused (never past the token's `exp`).
    pub cache_max: Duration,
    pub timeout: Duration,
}

/// A secret's bytes. Never printed.
#[derive(Clone)]
pub struct Secret(pub Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

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
    pub url: String,
    pub prefix: String,
}

#[derive(Debug, Clone)]
pub struct EdgeConfig {
    pub path: PathBuf,
    pub listen: SocketAddr,
    pub admin: SocketAddr,
    pub threads: usize,
    pub grace_period: Duration,
    pub problem_type_base: String,
    pub mappings_dir: PathBuf,
    pub id_secret: Secret,
    pub cursor_secret: Secret,
    pub upstreams: IndexMap<String, Upstream>,
    pub issuers: Vec<Issuer>,
    pub permissions_cache: Duration,
    pub redis: Option<Redis>,
    pub rate_limits: Option<RateLimits>,
    pub idempotency: Option<Idempotency>,
    pub cors: Option<Cors>,
    pub introspection: Option<Introspection>,
    /// Deadline for receiving a whole request body (slow clients).
    pub client_body_timeout: Duration,
    /// Deadline for receiving a whole request head, from its first byte (from the accept
    /// for a connection's first request).
    pub client_header_timeout: Duration,
    /// Cap on the request target plus every header name and value, in bytes.
    pub max_request_header_bytes: usize,
    /// The public TLS listener, if any (its certificate was loaded once by `check`).
    pub tls: Option<Tls>,
    /// Extra CAs trusted for the issuers' JWKS and introspection over HTTPS.
    pub auth_ca_file: Option<PathBuf>,
}

/// The public TLS listener: certificate and key files, re-read on reload.
#[derive(Debug, Clone)]
pub struct Tls {
    pub listen: SocketAddr,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

fn tls(path: &Path, raw: &raw::RawTls, d: &mut Diags) -> Option<Tls> {
    let listen = addr(path, &raw.listen, "tls.listen", d);
    let cert_file = resolve(path, raw.cert_file.as_str());
    let key_file = resolve(path, raw.key_file.as_str());
    // The files are loaded now, so that `check` (systemd's ExecStartPre) catches a missing
    // or mismatched certificate before the listener would.
    if let Err(e) = crate::tls::load_certified_key(&cert_file, &key_file) {
        let span = match e {
            crate::tls::TlsError::Read { ref path, .. }
            | crate::tls::TlsError::NoCertificate { ref path }
                if Path::new(path) == cert_file =>
            {
                raw.cert_file.span()
            }
            _ => raw.key_file.span(),
        };
        d.at(path, span, format!("tls: {e}"));
        return None;
    }
    Some(Tls {
        listen: listen?,
        cert_file,
        key_file,
    })
}

fn auth_ca_file(path: &Path, raw: &Spanned<String>, d: &mut Diags) -> Option<PathBuf> {
    let file = resolve(path, raw.as_str());
    match crate::tls::client_config(Some(&file)) {
        Ok(_) => Some(file),
        Err(e) => {
            d.at(path, raw.span(), format!("auth_ca_file: {e}"));
            None
        }
    }
}

/// Pingora's own bound on a raw request head (`MAX_HEADER_SIZE` in pingora-core 0.9):
/// `max_request_header_bytes` must stay below it to be reachable.
pub const PINGORA_MAX_HEAD: u64 = 1_048_575;

/// A top-level numeric setting: its default when absent, an error naming the range when
/// out of it.
fn top_level(
    path: &Path,
    v: &Option<Spanned<u64>>,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
    key: &str,
    d: &mut Diags,
) -> Option<u64> {
    match v {
        None => Some(default),
        Some(s) if range.contains(&**s) => Some(**s),
        Some(s) => {
            d.at(
                path,
                s.span(),
                format!("{key} must be {}..={}", range.start(), range.end()),
            );
            None
        }
    }
}

fn addr(path: &Path, v: &Spanned<String>, what: &str, d: &mut Diags) -> Option<SocketAddr> {
    match v.parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            d.at(
                path,
                v.span(),
                format!(
                    "{what} `{}` is not an address like 127.0.0.1:8080",
                    v.as_str()
                ),
            );
            None
        }
    }
}

fn secret(path: &Path, name: &str, raw: &raw::RawSecret, d: &mut Diags) -> Option<Secret> {
    secret_at(path, &format!("secrets.{name}"), 16, raw, d)
}

/// A secret (called `name` in messages), from exactly one source, at least `min_len` bytes.
fn secret_at(
    path: &Path,
    name: &str,
    min_len: usize,
    raw: &raw::RawSecret,
    d: &mut Diags,
) -> Option<Secret> {
    let sources = [
        raw.env.is_some(),
        raw.file.is_some(),
        raw.demo_value.is_some(),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if sources != 1 {
        d.file(
            path,
            format!("{name}: give exactly one of `env`, `file` or `demo_value`"),
        );
        return None;
    }
    let bytes = if let Some(env) = &raw.env {
        match std::env::var(env.as_str()) {
            Ok(v) => v.into_bytes(),
            Err(_) => {
                d.at(
                    path,
                    env.span(),
                    format!("{name}: environment variable `{}` is not set", env.as_str()),
                );
                return None;
            }
        }
    } else if let Some(file) = &raw.file {
        let p = resolve(path, file.as_str());
        match std::fs::read(&p) {
            Ok(v) => v,
            Err(e) => {
                d.at(
                    path,
                    file.span(),
                    format!("{name}: cannot read `{}`: {e}", p.display()),
                );
                return None;
            }
        }
    } else {
        raw.demo_value
            .as_ref()
            .map(|v| v.as_bytes().to_vec())
            .unwrap_or_default()
    };
    let trimmed: Vec<u8> = bytes.trim_ascii().to_vec();
    if trimmed.len() < min_len {
        d.file(
            path,
            format!("{name}: a secret must be at least {min_len} bytes"),
        );
        return None;
    }
    Some(Secret(trimmed))
}

/// Paths in the config are relative to the config file.
pub fn resolve(config: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        config.parent().unwrap_or(Path::new(".")).join(p)
    }
}

fn upstream(path: &Path, name: &str, raw: &raw::RawUpstream, d: &mut Diags) -> Option<Upstream> {
    let url = raw.url.as_str().trim_end_matches('/');
    let uri: Uri = match url.parse() {
        Ok(u) => u,
        Err(_) => {
            d.at(
                path,
                raw.url.span(),
                format!("upstreams.{name}.url is not a URL"),
            );
            return None;
        }
    };
    if uri.scheme_str() != Some("http") || uri.authority().is_none() || uri.path().len() > 1 {
        d.at(
            path,
            raw.url.span(),
            format!("upstreams.{name}.url must be http://host:port (the legacy services speak plain HTTP on the private network)"),
        );
        return None;
    }
    let ms = |v: &Option<Spanned<u64>>, default: u64, what: &str, d: &mut Diags| {
        let n = v.as_ref().map(|s| **s).unwrap_or(default);
        if n == 0 || n > 300_000 {
            if let Some(s) = v {
                d.at(
                    path,
                    s.span(),
                    format!("upstreams.{name}.{what} must be 1..=300000"),
                );
            }
            return None;
        }
        Some(Duration::from_millis(n))
    };
    let connect_timeout = ms(&raw.connect_timeout_ms, 1_000, "connect_timeout_ms", d);
    let timeout = ms(&raw.timeout_ms, 10_000, "timeout_ms", d);
    let retry_backoff = ms(&raw.retry_backoff_ms, 50, "retry_backoff_ms", d);
    let breaker_open = ms(&raw.breaker_open_ms, 5_000, "breaker_open_ms", d);
    let count = |v: &Option<Spanned<u32>>,
                 default: u32,
                 range: std::ops::RangeInclusive<u32>,
                 what: &str,
                 d: &mut Diags| {
        let n = v.as_ref().map(|s| **s).unwrap_or(default);
        if !range.contains(&n) {
            if let Some(s) = v {
                d.at(
                    path,
                    s.span(),
                    format!(
                        "upstreams.{name}.{what} must be {}..={}",
                        range.start(),
                        range.end()
                    ),
                );
            }
            return None;
        }
        Some(n)
    };
    let retries = count(&raw.retries, 1, 0..=5, "retries", d);
    let breaker_failures = count(&raw.breaker_failures, 5, 1..=10_000, "breaker_failures", d);
    Some(Upstream {
        name: name.to_string(),
        base: url.to_string(),
        authority: uri.authority().map(|a| a.to_string()).unwrap_or_default(),
        connect_timeout: connect_timeout?,
        timeout: timeout?,
        pool_idle_per_host: raw.pool_idle_per_host.as_ref().map(|s| **s).unwrap_or(64),
        retries: retries?,
        retry_backoff: retry_backoff?,
        breaker_failures: breaker_failures?,
        breaker_open: breaker_open?,
    })
}

fn issuer(path: &Path, raw: &raw::RawIssuer, d: &mut Diags) -> Option<Issuer> {
    let mut algorithms = Vec::new();
    let names = raw.algorithms.clone().unwrap_or_default();
    for a in &names {
        match a.as_str() {
            "RS256" => algorithms.push(Algorithm::RS256),
            "ES256" => algorithms.push(Algorithm::ES256),
            "EdDSA" => algorithms.push(Algorithm::EdDSA),
            other => d.at(
                path,
                a.span(),
                format!("algorithm `{other}` is not allowed (use RS256, ES256 or EdDSA; never none or HMAC)"),
            ),
        }
    }
    if names.is_empty() {
        algorithms = vec![Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA];
    }
    if !raw.jwks_url.starts_with("http://") && !raw.jwks_url.starts_with("https://") {
        d.at(path, raw.jwks_url.span(), "jwks_url must be an http(s) URL");
        return None;
    }
    let jwks_refetch_interval = raw
        .jwks_refetch_interval_seconds
        .as_ref()
        .map(|s| **s)
        .unwrap_or(10);
    if !(1..=3600).contains(&jwks_refetch_interval) {
        if let Some(s) = &raw.jwks_refetch_interval_seconds {
            d.at(
                path,
                s.span(),
                "jwks_refetch_interval_seconds must be 1..=3600",
            );
        }
        return None;
    }
    Some(Issuer {
        issuer: raw.issuer.to_string(),
        jwks_url: raw.jwks_url.to_string(),
        audience: raw.audience.to_string(),
        algorithms,
        leeway: Duration::from_secs(raw.leeway_seconds.as_ref().map(|s| **s).unwrap_or(60)),
        jwks_refetch_interval: Duration::from_secs(jwks_refetch_interval),
    })
}

fn introspection(path: &Path, raw: &raw::RawIntrospection, d: &mut Diags) -> Option<Introspection> {
    let mut ok = true;
    let url = raw.url.as_str();
    if url.parse::<Uri>().is_err() || !url.starts_with("http://") && !url.starts_with("https://") {
        d.at(
            path,
            raw.url.span(),
            "introspection.url must be an http(s) URL",
        );
        ok = false;
    }
    if raw.client_id.is_empty() {
        d.at(
            path,
            raw.client_id.span(),
            "introspection.client_id must not be empty",
        );
        ok = false;
    }
    let client_secret = secret_at(
        path,
        "introspection.client_secret",
        1,
        &raw.client_secret,
        d,
    );
    let cache_max = raw.cache_max_seconds.as_ref().map(|s| **s).unwrap_or(60);
    if cache_max > 3600 {
        if let Some(s) = &raw.cache_max_seconds {
            d.at(
                path,
                s.span(),
                "introspection.cache_max_seconds must be 0..=3600",
            );
        }
        ok = false;
    }
    let timeout = raw.timeout_ms.as_ref().map(|s| **s).unwrap_or(3_000);
    if timeout == 0 || timeout > 60_000 {
        if let Some(s) = &raw.timeout_ms {
            d.at(path, s.span(), "introspection.timeout_ms must be 1..=60000");
        }
        ok = false;
    }
    if !ok {
        return None;
    }
    Some(Introspection {
        url: url.to_string(),
        client_id: raw.client_id.to_string(),
        client_secret: client_secret?,
        cache_max: Duration::from_secs(cache_max),
        timeout: Duration::from_millis(timeout),
    })
}

/// Where the mappings are and which upstreams exist, read leniently from a config that
/// failed validation, so that `check` can still report the mapping files' errors.
pub fn mapping_hint(path: &Path) -> Option<(PathBuf, Vec<String>)> {
    let text = std::fs::read_to_string(path).ok()?;
    let node = marked_yaml::parse_yaml(0, text).ok()?;
    let map = node.as_mapping()?;
    let dir = map.get_scalar("mappings")?.as_str().to_string();
    let names = map
        .get_mapping("upstreams")
        .map(|u| u.keys().map(|k| k.as_str().to_string()).collect())
        .unwrap_or_default();
    Some((resolve(path, &dir), names))
}

fn backend(path: &Path, v: &Spanned<String>, redis: bool, d: &mut Diags) -> Option<Backend> {
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

fn rate_limits(
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

impl EdgeConfig {
    /// Loads and validates `edge.yaml`, collecting every error.
    pub fn load(path: &Path) -> Result<EdgeConfig, Diags> {
        let mut d = Diags::default();
        let Some(node) = diag::load(path, &mut d) else {
            return Err(d);
        };
        let Some(raw) = diag::de::<RawEdge>(path, &node, &mut d) else {
            return Err(d);
        };
        let cfg = Self::compile(path, &raw, &mut d);
        match cfg {
            Some(c) if d.is_empty() => Ok(c),
            _ => Err(d),
        }
    }

    fn compile(path: &Path, raw: &RawEdge, d: &mut Diags) -> Option<EdgeConfig> {
        let listen = addr(path, &raw.listen, "listen", d);
        let admin = addr(path, &raw.admin, "admin", d);
        let id_secret = secret(path, "ids", &raw.secrets.ids, d);
        let cursor_secret = secret(path, "cursors", &raw.secrets.cursors, d);
        let mut upstreams = IndexMap::new();
        for (name, u) in &raw.upstreams {
            if let Some(u) = upstream(path, name, u, d) {
                upstreams.insert(name.clone(), u);
            }
        }
        let issuers: Vec<Issuer> = raw
            .issuers
            .iter()
            .filter_map(|i| issuer(path, i, d))
            .collect();
        let introspection = raw
            .introspection
            .as_ref()
            .and_then(|i| introspection(path, i, d));
        if raw.issuers.is_empty() {
            d.file(path, "issuers: at least one token issuer is required");
        }
        let mappings_dir = resolve(path, raw.mappings.as_str());
        if !mappings_dir.is_dir() {
            d.at(
                path,
                raw.mappings.span(),
                format!("mappings: `{}` is not a directory", mappings_dir.display()),
            );
        }
        let client_body_timeout = top_level(
            path,
            &raw.client_body_timeout_ms,
            10_000,
            1..=300_000,
            "client_body_timeout_ms",
            d,
        );
        let client_header_timeout = top_level(
            path,
            &raw.client_header_timeout_ms,
            10_000,
            1..=300_000,
            "client_header_timeout_ms",
            d,
        );
        let max_request_header_bytes = top_level(
            path,
            &raw.max_request_header_bytes,
            32 * 1024,
            1024..=PINGORA_MAX_HEAD - 1,
            "max_request_header_bytes",
            d,
        );
        let tls = raw.tls.as_ref().map(|t| tls(path, t, d));
        let auth_ca = raw.auth_ca_file.as_ref().map(|f| auth_ca_file(path, f, d));
        let problem_type_base = raw
            .problem_type_base
            .as_ref()
            .map(|s| s.to_string())
            .unwrap_or_else(|| DEFAULT_PROBLEM_BASE.to_string());
        Some(EdgeConfig {
            path: path.to_path_buf(),
            listen: listen?,
            admin: admin?,
            threads: raw.threads.as_ref().map(|s| **s).unwrap_or(2).max(1),
            grace_period: Duration::from_secs(
                raw.grace_period_seconds.as_ref().map(|s| **s).unwrap_or(10),
            ),
            problem_type_base,
            mappings_dir,
            id_secret: id_secret?,
            cursor_secret: cursor_secret?,
            upstreams,
            issuers,
            redis: raw.redis.as_ref().map(|r| Redis {
                url: r.url.to_string(),
                prefix: r
                    .key_prefix
                    .clone()
                    .unwrap_or_else(|| "prospect-edge:".into()),
            }),
            rate_limits: raw
                .rate_limits
                .as_ref()
                .and_then(|r| rate_limits(path, r, raw.redis.is_some(), d)),
            idempotency: raw.idempotency.as_ref().and_then(|i| {
                Some(Idempotency {
                    backend: backend(path, &i.backend, raw.redis.is_some(), d)?,
                    ttl: Duration::from_secs(
                        3600 * i.ttl_hours.as_ref().map(|h| (**h).max(24)).unwrap_or(24),
                    ),
                })
            }),
            cors: raw.cors.as_ref().map(|c| Cors {
                origins: c
                    .allowed_origins
                    .iter()
                    .map(|o| o.trim_end_matches('/').to_string())
                    .collect(),
                headers: c.allowed_headers.clone().unwrap_or_else(|| {
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
                max_age: c.max_age_seconds.unwrap_or(600),
            }),
            permissions_cache: Duration::from_secs(
                raw.permissions_cache_seconds
                    .as_ref()
                    .map(|s| (**s).min(60))
                    .unwrap_or(30),
            ),
            introspection,
            client_body_timeout: Duration::from_millis(client_body_timeout?),
            client_header_timeout: Duration::from_millis(client_header_timeout?),
            max_request_header_bytes: usize::try_from(max_request_header_bytes?).ok()?,
            tls: tls.map(|t| t.ok_or(())).transpose().ok()?,
            auth_ca_file: auth_ca.map(|f| f.ok_or(())).transpose().ok()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Loads the demo config with `extra` appended and the issuer lines replaced by `issuer`.
    fn load_with(issuer: &str, extra: &str) -> Result<EdgeConfig, Diags> {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        let base = std::fs::read_to_string(repo.join("conf/demo/edge.yaml")).unwrap_or_default();
        let base = base.replace(
            "mappings: ../../mappings",
            &format!("mappings: {}", repo.join("mappings").display()),
        );
        let (head, _) = base.split_once("issuers:").unwrap_or((&base, ""));
        let text = format!("{head}issuers:\n{issuer}{extra}");
        let n: u64 = rand::random();
        let path = std::env::temp_dir().join(format!("pe-config-test-{n:x}.yaml"));
        std::fs::write(&path, text).ok();
        let cfg = EdgeConfig::load(&path);
        let _ = std::fs::remove_file(&path);
        cfg
    }

    const ISSUER: &str = "  - issuer: https://issuer.example\n    jwks_url: http://127.0.0.1:1/jwks\n    audience: https://api.example\n";

    #[test]
    fn tls_files_are_loaded_by_check_and_every_problem_is_reported_where_it_is() {
        let dir = std::env::temp_dir().join(format!("pe-tls-check-{:x}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).ok();
        let tls = |cert: &str, key: &str| {
            format!(
                "tls:\n  listen: 127.0.0.1:0\n  cert_file: {}\n  key_file: {}\n",
                dir.join(cert).display(),
                dir.join(key).display()
            )
        };
        let errors = |extra: &str| match load_with(ISSUER, extra) {
            Ok(_) => String::from("ok"),
            Err(d) => d.render(),
        };
        // Missing certificate file: reported on the cert_file line.
        let e = errors(&tls("missing.crt", "missing.key"));
        assert!(
            e.contains("tls: cannot read") && e.contains("missing.crt"),
            "{e}"
        );
        // A file that is not PEM, then a key that is not a key.
        std::fs::write(dir.join("junk.pem"), "hello").ok();
        let e = errors(&tls("junk.pem", "junk.pem"));
        assert!(e.contains("holds no PEM certificate"), "{e}");
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()])
            .unwrap_or_else(|e| panic!("{e}"));
        params.distinguished_name = rcgen::DistinguishedName::new();
        let key = rcgen::KeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
        let other = rcgen::KeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
        let cert = params.self_signed(&key).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(dir.join("edge.crt"), cert.pem()).ok();
        std::fs::write(dir.join("edge.key"), key.serialize_pem()).ok();
        std::fs::write(dir.join("other.key"), other.serialize_pem()).ok();
        let e = errors(&tls("edge.crt", "junk.pem"));
        assert!(e.contains("holds no PEM private key"), "{e}");
        let e = errors(&tls("edge.crt", "other.key"));
        assert!(e.contains("does not match the certificate"), "{e}");
        // The right pair compiles; so does an auth_ca_file with a CA in it.
        let cfg = load_with(
            ISSUER,
            &format!(
                "{}auth_ca_file: {}\n",
                tls("edge.crt", "edge.key"),
                dir.join("edge.crt").display()
            ),
        );
        assert!(matches!(&cfg, Ok(c) if c.tls.is_some() && c.auth_ca_file.is_some()));
        let e = errors(&format!(
            "auth_ca_file: {}\n",
            dir.join("junk.pem").display()
        ));
        assert!(
            e.contains("auth_ca_file:") && e.contains("no PEM certificate"),
            "{e}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn introspection_is_optional_and_compiled() {
        let cfg = load_with(ISSUER, "").map_err(|d| d.render());
        assert!(
            matches!(&cfg, Ok(c) if c.introspection.is_none()),
            "{cfg:?}"
        );
        let cfg = load_with(
            ISSUER,
            "introspection:\n  url: http://127.0.0.1:1/introspect\n  client_id: edge\n  client_secret: { demo_value: s3cret }\n  cache_max_seconds: 120\n",
        )
        .map_err(|d| d.render());
        let i = cfg.as_ref().ok().and_then(|c| c.introspection.clone());
        assert!(i.is_some(), "{cfg:?}");
        if let Some(i) = i {
            assert_eq!(i.client_id, "edge");
            assert_eq!(i.client_secret.0, b"s3cret");
            assert_eq!(i.cache_max, Duration::from_secs(120));
            assert_eq!(i.timeout, Duration::from_millis(3000));
        }
        let refetch = cfg.ok().map(|c| c.issuers[0].jwks_refetch_interval);
        assert_eq!(refetch, Some(Duration::from_secs(10)));
    }

    #[test]
    fn client_limits_have_defaults_and_their_ranges_are_reported() {
        let cfg = load_with(ISSUER, "").map_err(|d| d.render());
        let limits = cfg.as_ref().ok().map(|c| {
            (
                c.client_header_timeout,
                c.client_body_timeout,
                c.max_request_header_bytes,
            )
        });
        assert_eq!(
            limits,
            Some((Duration::from_secs(10), Duration::from_secs(10), 32 * 1024)),
            "{cfg:?}"
        );
        let err = load_with(
            ISSUER,
            "client_header_timeout_ms: 0\nclient_body_timeout_ms: 300001\nmax_request_header_bytes: 1048575\n",
        )
        .err()
        .map(|d| d.render())
        .unwrap_or_default();
        for expected in [
            "client_header_timeout_ms must be 1..=300000",
            "client_body_timeout_ms must be 1..=300000",
            "max_request_header_bytes must be 1024..=1048574",
        ] {
            assert!(err.contains(expected), "{expected} missing in {err}");
        }
    }

    #[test]
    fn bad_introspection_and_refetch_values_are_all_reported() {
        let issuer =
            format!("{ISSUER}    jwks_refetch_interval_seconds: 0\n    algorithms: [HS256]\n");
        let err = load_with(
            &issuer,
            "introspection:\n  url: ftp://x\n  client_id: \"\"\n  client_secret: { demo_value: a, env: B }\n  cache_max_seconds: 7200\n",
        )
        .err()
        .map(|d| d.render())
        .unwrap_or_default();
        for expected in [
            "jwks_refetch_interval_seconds must be 1..=3600",
            "algorithm `HS256` is not allowed",
            "introspection.url must be an http(s) URL",
            "introspection.client_id must not be empty",
            "introspection.client_secret: give exactly one of",
            "introspection.cache_max_seconds must be 0..=3600",
        ] {
            assert!(err.contains(expected), "{expected} missing in {err}");
        }
    }
}
