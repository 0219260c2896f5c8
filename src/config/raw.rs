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
    /// RFC 7662 introspection of opaque (non-JWT) access tokens; absent: JWTs only.
    #[serde(default)]
    pub introspection: Option<RawIntrospection>,
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
    pub url: Spanned<String>,
    #[serde(default)]
    pub connect_timeout_ms: Option<Spanned<u64>>,
    #[serde(default)]
    pub timeout_ms: Option<Spanned<u64>>,
    #[serde(default)]
    pub pool_idle_per_host: Option<Spanned<usize>>,
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
