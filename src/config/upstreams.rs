//! The legacy services the edge calls: base URL, timeouts, pool, retries and breaker.

use std::path::Path;
use std::time::Duration;

use http::Uri;
use marked_yaml::Spanned;

use super::raw;
use crate::diag::Diags;

/// A compiled upstream service.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub name: String,
    /// Every instance of the service, at least one: (`http://host:port` without a
    /// trailing slash, `host:port`).
    pub instances: Vec<(String, String)>,
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

pub(super) fn upstream(
    path: &Path,
    name: &str,
    raw: &raw::RawUpstream,
    d: &mut Diags,
) -> Option<Upstream> {
    let urls = raw.url.list();
    if urls.is_empty() {
        d.at(
            path,
            raw.url.span(),
            format!("upstreams.{name}.url: at least one URL is required"),
        );
        return None;
    }
    let mut instances: Vec<(String, String)> = Vec::new();
    for url in urls {
        let url = url.trim_end_matches('/');
        let uri: Uri = match url.parse() {
            Ok(u) => u,
            Err(_) => {
                d.at(
                    path,
                    raw.url.span(),
                    format!("upstreams.{name}.url `{url}` is not a URL"),
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
        let authority = uri.authority().map(|a| a.to_string()).unwrap_or_default();
        if instances.iter().any(|(_, a)| *a == authority) {
            d.at(
                path,
                raw.url.span(),
                format!("upstreams.{name}.url lists `{url}` twice"),
            );
            return None;
        }
        instances.push((url.to_string(), authority));
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
        instances,
        connect_timeout: connect_timeout?,
        timeout: timeout?,
        pool_idle_per_host: raw.pool_idle_per_host.as_ref().map(|s| **s).unwrap_or(64),
        retries: retries?,
        retry_backoff: retry_backoff?,
        breaker_failures: breaker_failures?,
        breaker_open: breaker_open?,
    })
}
