//! RFC 7662 introspection of opaque access tokens, with the edge's client credentials.

use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use serde_json::Value;

use super::token_cache::Resolved;
use super::{identity_of, now, numeric_date, Auth, INACTIVE_TTL_MAX, JWKS_MAX_BYTES};
use crate::config::Introspection;
use crate::problem::{Kind, Problem};

impl Auth {
    /// RFC 7662 introspection with the edge's client credentials. An inactive token is an
    /// answer (cached briefly); an unreachable or failing endpoint is a problem (not cached).
    pub(super) async fn introspect(
        &self,
        cfg: &Introspection,
        token: &str,
    ) -> Result<Resolved, Problem> {
        use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
        // application/x-www-form-urlencoded, as RFC 6749 §2.3.1 asks for the credentials too.
        const FORM: &AsciiSet = &NON_ALPHANUMERIC
            .remove(b'*')
            .remove(b'-')
            .remove(b'.')
            .remove(b'_');
        let enc = |s: &str| utf8_percent_encode(s, FORM).to_string();
        let secret = String::from_utf8_lossy(&cfg.client_secret.0);
        let basic = STANDARD.encode(format!("{}:{}", enc(&cfg.client_id), enc(&secret)));
        let body = format!("token={}&token_type_hint=access_token", enc(token));
        let req = http::Request::post(cfg.url.as_str())
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json")
            .header("authorization", format!("Basic {basic}"))
            .body(Full::new(Bytes::from(body)))
            .map_err(|_| {
                Problem::new(
                    Kind::Internal,
                    "The introspection request could not be built",
                )
            })?;
        let fut = async {
            let resp = self
                .http
                .request(req)
                .await
                .map_err(|_| crate::upstream::unavailable())?;
            let status = resp.status();
            let body = Limited::new(resp.into_body(), JWKS_MAX_BYTES)
                .collect()
                .await
                .map_err(|_| {
                    Problem::new(
                        Kind::UpstreamError,
                        "The token introspection service sent an incomplete answer",
                    )
                })?
                .to_bytes();
            Ok::<_, Problem>((status, body))
        };
        let (status, body) = match tokio::time::timeout(cfg.timeout, fut).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(Problem::new(
                    Kind::UpstreamTimeout,
                    "The token introspection service did not answer in time",
                ))
            }
        };
        let answer = match serde_json::from_slice::<Value>(&body) {
            Ok(Value::Object(m)) if status.is_success() => m,
            _ => {
                tracing::warn!(status = status.as_u16(), "token introspection failed");
                return Err(Problem::new(
                    Kind::UpstreamError,
                    "The token introspection service could not answer",
                ));
            }
        };
        let now = now();
        let inactive = |why: &'static str| Resolved {
            outcome: Err(why),
            valid_until: now,
            ttl: cfg.cache_max.min(INACTIVE_TTL_MAX),
        };
        if answer.get("active") != Some(&Value::Bool(true)) {
            return Ok(inactive("The token is not active"));
        }
        let exp = match numeric_date(&answer, "exp") {
            Ok(e) => e,
            Err(_) => return Ok(inactive("The token has an invalid time claim")),
        };
        if exp.is_some_and(|e| e <= now) {
            return Ok(inactive("The token has expired"));
        }
        if matches!(numeric_date(&answer, "nbf"), Ok(Some(nbf)) if nbf > now + 60) {
            return Ok(inactive("The token is not valid yet"));
        }
        let valid_until = exp.unwrap_or(i64::MAX);
        let identity = match identity_of(&answer, valid_until) {
            Ok(i) => i,
            Err(why) => return Ok(inactive(why)),
        };
        let left = exp.map_or(cfg.cache_max, |e| {
            Duration::from_secs(u64::try_from(e - now).unwrap_or(0))
        });
        Ok(Resolved {
            outcome: Ok(Arc::new(identity)),
            valid_until,
            ttl: left.min(cfg.cache_max),
        })
    }
}
