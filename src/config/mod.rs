//! The edge configuration: `edge.yaml` compiled into types that cannot hold an invalid value.
//!
//! Owns the whole config: `listeners` (addresses, TLS, client limits), `secrets`,
//! `upstreams`, `issuers` (and introspection) and `policies` (Redis, rate limits,
//! idempotency, CORS); `raw` is what people write. The public API itself (routes,
//! fields, versions) is not here: it lives in the mapping files (`crate::mapping`).

mod issuers;
mod listeners;
mod policies;
mod raw;
mod secrets;
mod upstreams;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use indexmap::IndexMap;

use crate::diag::{self, Diags};
use issuers::{auth_ca_file, introspection, issuer};
pub use issuers::{Introspection, Issuer};
use listeners::{addr, tls, top_level};
pub use listeners::{Tls, PINGORA_MAX_HEAD};
pub use policies::{Applies, Backend, Cors, Idempotency, Policy, RateLimits, Redis, RedisTarget};
pub use raw::RawEdge;
use secrets::secret;
pub use secrets::Secret;
use upstreams::upstream;
pub use upstreams::Upstream;

pub const DEFAULT_PROBLEM_BASE: &str = "https://papi.trendev.in/problems/";
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
    /// What a client can pin on the public listeners (`bounds`).
    pub client_bounds: crate::bounds::ClientBounds,
    /// Bytes of upstream answers in flight over all services.
    pub upstream_answer_budget: u64,
    /// Bytes the verified-token cache may hold.
    pub token_cache_max_bytes: u64,
    /// Access lines kept for one write (0: a write a line), written at least every
    /// `access_log_flush` (`access_log::buffer`).
    pub access_log_buffer_bytes: usize,
    pub access_log_flush: Duration,
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
        let access_log_buffer = top_level(
            path,
            &raw.access_log_buffer_bytes,
            0,
            0..=1_048_576,
            "access_log_buffer_bytes",
            d,
        );
        let access_log_flush = top_level(
            path,
            &raw.access_log_flush_ms,
            1000,
            1..=60_000,
            "access_log_flush_ms",
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
        let write_timeout = top_level(
            path,
            &raw.client_write_timeout_ms,
            15_000,
            1..=300_000,
            "client_write_timeout_ms",
            d,
        );
        let h2_streams = top_level(
            path,
            &raw.h2_max_concurrent_streams,
            100,
            1..=1_000,
            "h2_max_concurrent_streams",
            d,
        );
        let h2_in_flight = top_level(
            path,
            &raw.h2_streams_in_flight,
            1024,
            1..=1_000_000,
            "h2_streams_in_flight",
            d,
        );
        let answer_budget = top_level(
            path,
            &raw.upstream_answer_budget_bytes,
            128 * 1024 * 1024,
            1024 * 1024..=64 * 1024 * 1024 * 1024,
            "upstream_answer_budget_bytes",
            d,
        );
        let token_cache_bytes = top_level(
            path,
            &raw.token_cache_max_bytes,
            crate::auth::DEFAULT_TOKEN_CACHE_BYTES,
            1024 * 1024..=64 * 1024 * 1024 * 1024,
            "token_cache_max_bytes",
            d,
        );
        let client_bounds = crate::bounds::ClientBounds {
            write_timeout: Duration::from_millis(write_timeout?),
            h2_max_streams: u32::try_from(h2_streams?).ok()?,
            h2_streams_in_flight: usize::try_from(h2_in_flight?).ok()?,
            ..Default::default()
        };
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
            redis: raw.redis.as_ref().and_then(|r| policies::redis(path, r, d)),
            rate_limits: raw
                .rate_limits
                .as_ref()
                .and_then(|r| policies::rate_limits(path, r, raw.redis.is_some(), d)),
            idempotency: raw
                .idempotency
                .as_ref()
                .and_then(|i| policies::idempotency(path, i, raw.redis.is_some(), d)),
            cors: raw.cors.as_ref().map(policies::cors),
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
            client_bounds,
            upstream_answer_budget: answer_budget?,
            token_cache_max_bytes: token_cache_bytes?,
            access_log_buffer_bytes: usize::try_from(access_log_buffer?).ok()?,
            access_log_flush: Duration::from_millis(access_log_flush?),
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
    fn redis_takes_one_server_a_cluster_or_a_sentinel_group_and_check_says_where_it_is_wrong() {
        let ok = |extra: &str| load_with(ISSUER, extra).map(|c| c.redis.map(|r| r.target));
        let errors = |extra: &str| match load_with(ISSUER, extra) {
            Ok(_) => String::from("ok"),
            Err(d) => d.render(),
        };
        assert_eq!(
            ok("redis: { cluster: [\"redis://127.0.0.1:7000\", \"redis://127.0.0.1:7001\"] }\n")
                .ok(),
            Some(Some(RedisTarget::Cluster(vec![
                "redis://127.0.0.1:7000".into(),
                "redis://127.0.0.1:7001".into()
            ])))
        );
        assert_eq!(
            ok("redis: { sentinel: { master: edge, urls: [\"redis://127.0.0.1:26379\"] } }\n").ok(),
            Some(Some(RedisTarget::Sentinel {
                master: "edge".into(),
                urls: vec!["redis://127.0.0.1:26379".into()]
            }))
        );
        let e = errors(
            "redis:\n  url: redis://127.0.0.1:6379\n  cluster: [\"redis://127.0.0.1:7000\"]\n",
        );
        assert!(
            e.contains("exactly one of `url`, `cluster` or `sentinel`"),
            "{e}"
        );
        let e = errors(
            "redis:\n  cluster:\n    - redis://127.0.0.1:7000\n    - http://127.0.0.1:7001\n",
        );
        assert!(
            e.contains("`http://127.0.0.1:7001` must be a redis:// URL"),
            "{e}"
        );
        let line = e
            .lines()
            .find(|l| l.contains("http://127.0.0.1:7001"))
            .unwrap_or("");
        assert!(
            line.contains(".yaml:"),
            "reported with file:line:column: {line}"
        );
        let e = errors("redis: { url: \"redis://127.0.0.1:6379\", key_prefix: \"a{b}:\" }\n");
        assert!(e.contains("must not contain"), "{e}");
        let e = errors("redis: { sentinel: { master: edge, urls: [] } }\n");
        assert!(e.contains("list of Redis URLs is empty"), "{e}");
    }

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
        let log = cfg
            .as_ref()
            .ok()
            .map(|c| (c.access_log_buffer_bytes, c.access_log_flush));
        assert_eq!(
            log,
            Some((0, Duration::from_secs(1))),
            "unbuffered by default"
        );
        let err = load_with(
            ISSUER,
            "client_header_timeout_ms: 0\nclient_body_timeout_ms: 300001\nmax_request_header_bytes: 1048575\naccess_log_buffer_bytes: 1048577\naccess_log_flush_ms: 0\n",
        )
        .err()
        .map(|d| d.render())
        .unwrap_or_default();
        for expected in [
            "client_header_timeout_ms must be 1..=300000",
            "client_body_timeout_ms must be 1..=300000",
            "max_request_header_bytes must be 1024..=1048574",
            "access_log_buffer_bytes must be 0..=1048576",
            "access_log_flush_ms must be 1..=60000",
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
