//! What people write in `edge.yaml`: serde structs that refuse unknown keys.

use indexmap::IndexMap;
use marked_yaml::Spanned;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEdge {
    /// Public listener, e.g. `0.0.0.0:8080`.
    pub listen: Spanned<String>,
    /// Admin listener (metrics, health): never public.
    pub admin: Spanned<String>,
    #[serde(default)]
    pub threads: Option<Spanned<usize>>,
    #[serde(default)]
    pub grace_period_seconds: Option<Spanned<u64>>,
    #[serde(default)]
    pub problem_type_base: Option<Spanned<String>>,
    /// Directory of the mapping files, relative to this file.
    pub mappings: Spanned<String>,
    pub secrets: RawSecrets,
    pub upstreams: IndexMap<String, RawUpstream>,
    pub issuers: Vec<RawIssuer>,
    #[serde(default)]
    pub permissions_cache_seconds: Option<Spanned<u64>>,
    /// Shared state between edge nodes (rate limits, idempotency).
    #[serde(default)]
    pub redis: Option<Spanned<RawRedis>>,
    #[serde(default)]
    pub rate_limits: Option<RawRateLimits>,
    #[serde(default)]
    pub idempotency: Option<RawIdempotency>,
    #[serde(default)]
    pub cors: Option<RawCors>,
    /// RFC 7662 introspection of opaque (non-JWT) access tokens; absent: JWTs only.
    #[serde(default)]
    pub introspection: Option<RawIntrospection>,
    /// Deadline for receiving a whole request body (slow clients): default 10000.
    #[serde(default)]
    pub client_body_timeout_ms: Option<Spanned<u64>>,
    /// Deadline for receiving a whole request head (slow clients): default 10000.
    #[serde(default)]
    pub client_header_timeout_ms: Option<Spanned<u64>>,
    /// Cap on the request target plus header names and values: default 32768.
    #[serde(default)]
    pub max_request_header_bytes: Option<Spanned<u64>>,
    /// Each write of an answer to a client must complete within this: default 15000.
    #[serde(default)]
    pub client_write_timeout_ms: Option<Spanned<u64>>,
    /// Concurrent streams per HTTP/2 connection: default 100.
    #[serde(default)]
    pub h2_max_concurrent_streams: Option<Spanned<u64>>,
    /// HTTP/2 streams served at once over all connections: default 1024.
    #[serde(default)]
    pub h2_streams_in_flight: Option<Spanned<u64>>,
    /// Bytes the verified-token cache may hold: default 67108864 (64 MiB).
    #[serde(default)]
    pub token_cache_max_bytes: Option<Spanned<u64>>,
    /// Access lines kept for one write, up to this many bytes: default 0 (a write a line).
    #[serde(default)]
    pub access_log_buffer_bytes: Option<Spanned<u64>>,
    /// A buffered access log is written at least this often: default 1000.
    #[serde(default)]
    pub access_log_flush_ms: Option<Spanned<u64>>,
    /// Bytes of upstream answers in flight over all services: default 134217728.
    #[serde(default)]
    pub upstream_answer_budget_bytes: Option<Spanned<u64>>,
    /// A second public listener speaking TLS (the edge hostname served directly).
    #[serde(default)]
    pub tls: Option<RawTls>,
    /// Extra CA certificates (PEM) trusted for HTTPS calls to the issuers' JWKS and the
    /// introspection endpoint, on top of the system's store. Relative to this file.
    #[serde(default)]
    pub auth_ca_file: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// e.g. `0.0.0.0:443`.
    pub listen: Spanned<String>,
    /// PEM certificate chain, leaf first. Relative to this file.
    pub cert_file: Spanned<String>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1). Relative to this file.
    pub key_file: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRedis {
    /// One Redis server (`redis://host:port`). Exactly one of `url`, `cluster`, `sentinel`.
    #[serde(default)]
    pub url: Option<Spanned<String>>,
    /// A Redis Cluster: some of its nodes (`redis://host:port`); the rest are discovered.
    #[serde(default)]
    pub cluster: Option<Vec<Spanned<String>>>,
    /// A master found through Redis Sentinel.
    #[serde(default)]
    pub sentinel: Option<RawSentinel>,
    /// Every key the edge writes starts with this (one prefix per deployment or test).
    #[serde(default)]
    pub key_prefix: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSentinel {
    /// The master's name as the sentinels know it (`sentinel monitor <name> …`).
    pub master: Spanned<String>,
    /// The sentinels (`redis://host:port`).
    pub urls: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRateLimits {
    /// `memory` (one node) or `redis` (several nodes).
    pub backend: Spanned<String>,
    /// When Redis is unreachable: allow (`open`, the default) or refuse (`closed`).
    #[serde(default)]
    pub on_redis_failure: Option<Spanned<String>>,
    pub policies: Vec<RawPolicy>,
    /// Per-tenant quotas: tenant id → policy name → quota.
    #[serde(default)]
    pub tenant_overrides: IndexMap<String, IndexMap<String, u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    pub name: Spanned<String>,
    pub quota: Spanned<u64>,
    pub window_seconds: Spanned<u64>,
    /// `all`, `search` or `writes`.
    #[serde(default)]
    pub applies_to: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIdempotency {
    /// `memory` (one node) or `redis` (several nodes).
    pub backend: Spanned<String>,
    #[serde(default)]
    pub ttl_hours: Option<Spanned<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCors {
    pub allowed_origins: Vec<Spanned<String>>,
    #[serde(default)]
    pub allowed_headers: Option<Vec<String>>,
    #[serde(default)]
    pub max_age_seconds: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIntrospection {
    pub url: Spanned<String>,
    pub client_id: Spanned<String>,
    pub client_secret: RawSecret,
    #[serde(default)]
    pub cache_max_seconds: Option<Spanned<u64>>,
    #[serde(default)]
    pub timeout_ms: Option<Spanned<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSecrets {
    pub ids: RawSecret,
    pub cursors: RawSecret,
}

/// A secret comes from the environment, a file, or (demo only) inline.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSecret {
    #[serde(default)]
    pub env: Option<Spanned<String>>,
    #[serde(default)]
    pub file: Option<Spanned<String>>,
    #[serde(default)]
    pub demo_value: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    /// One URL, or a list of them: the instances of the service.
    pub url: Spanned<RawUrls>,
    #[serde(default)]
    pub connect_timeout_ms: Option<Spanned<u64>>,
    #[serde(default)]
    pub timeout_ms: Option<Spanned<u64>>,
    #[serde(default)]
    pub pool_idle_per_host: Option<Spanned<usize>>,
    /// Extra attempts of a safe call (GET, search) after a connect failure or a 502/503.
    #[serde(default)]
    pub retries: Option<Spanned<u32>>,
    /// Base of the jittered exponential backoff between attempts.
    #[serde(default)]
    pub retry_backoff_ms: Option<Spanned<u64>>,
    /// Consecutive failures (connect errors, timeouts, 5xx) that open the circuit.
    #[serde(default)]
    pub breaker_failures: Option<Spanned<u32>>,
    /// How long an open circuit refuses calls before one half-open probe.
    #[serde(default)]
    pub breaker_open_ms: Option<Spanned<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIssuer {
    pub issuer: Spanned<String>,
    pub jwks_url: Spanned<String>,
    pub audience: Spanned<String>,
    #[serde(default)]
    pub algorithms: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    pub leeway_seconds: Option<Spanned<u64>>,
    /// Least time between two JWKS refetches caused by tokens naming an unknown `kid`.
    #[serde(default)]
    pub jwks_refetch_interval_seconds: Option<Spanned<u64>>,
}

/// `url: "http://…"` or `url: ["http://…", "http://…"]`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawUrls {
    One(String),
    Many(Vec<String>),
}

impl RawUrls {
    pub fn list(&self) -> Vec<&str> {
        match self {
            RawUrls::One(u) => vec![u.as_str()],
            RawUrls::Many(v) => v.iter().map(String::as_str).collect(),
        }
    }
}
