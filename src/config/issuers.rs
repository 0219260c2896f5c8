//! Token issuers (JWKS, audience, algorithms), opaque-token introspection and the CAs
//! trusted for both.

use std::path::{Path, PathBuf};
use std::time::Duration;

use http::Uri;
use jsonwebtoken::Algorithm;
use marked_yaml::Spanned;

use super::secrets::{secret_at, Secret};
use super::{raw, resolve};
use crate::diag::Diags;

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

pub(super) fn issuer(path: &Path, raw: &raw::RawIssuer, d: &mut Diags) -> Option<Issuer> {
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

pub(super) fn introspection(
    path: &Path,
    raw: &raw::RawIntrospection,
    d: &mut Diags,
) -> Option<Introspection> {
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

pub(super) fn auth_ca_file(path: &Path, raw: &Spanned<String>, d: &mut Diags) -> Option<PathBuf> {
    let file = resolve(path, raw.as_str());
    match crate::tls::client_config(Some(&file)) {
        Ok(_) => Some(file),
        Err(e) => {
            d.at(path, raw.span(), format!("auth_ca_file: {e}"));
            None
        }
    }
}
