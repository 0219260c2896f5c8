//! RFC 9068 JWT access tokens: RFC 8725 checks, cheapest first, and the signature last,
//! with a key from the issuer's JWKS only.

use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};

use super::token_cache::Resolved;
use super::{identity_of, invalid, now, numeric_date, Auth, VERIFIED_TTL_MAX};
use crate::problem::Problem;

fn b64_json(part: &str) -> Option<Map<String, Value>> {
    let bytes = URL_SAFE_NO_PAD.decode(part).ok()?;
    match serde_json::from_slice::<Value>(&bytes).ok()? {
        Value::Object(m) => Some(m),
        _ => None,
    }
}

impl Auth {
    /// RFC 9068 / RFC 8725 checks, cheapest first; the signature is checked last, with a
    /// key from the issuer's JWKS only.
    pub(super) async fn verify_jwt(&self, token: &str) -> Result<Resolved, Problem> {
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(sig)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(invalid("The token is malformed"));
        };
        let header = b64_json(h).ok_or_else(|| invalid("The token is malformed"))?;
        let alg = match header.get("alg").and_then(Value::as_str) {
            Some("RS256") => Algorithm::RS256,
            Some("ES256") => Algorithm::ES256,
            Some("EdDSA") => Algorithm::EdDSA,
            // none, HMAC (a public key used as a shared secret) and everything else.
            _ => return Err(invalid("The token's algorithm is not accepted")),
        };
        let typ = header
            .get("typ")
            .and_then(Value::as_str)
            .map(str::to_ascii_lowercase);
        if !matches!(typ.as_deref(), Some("at+jwt" | "application/at+jwt")) {
            return Err(invalid("The token is not an access token (typ at+jwt)"));
        }
        // Keys come from the configured JWKS only; `crit` names extensions we do not know.
        if ["jku", "jwk", "x5u", "x5c", "crit"]
            .iter()
            .any(|k| header.contains_key(*k))
        {
            return Err(invalid(
                "Key references in the token header are not accepted",
            ));
        }
        let kid = match header.get("kid").and_then(Value::as_str) {
            Some(k) if !k.is_empty() && k.len() <= 256 => k,
            _ => return Err(invalid("The token names no key (kid)")),
        };
        if sig.is_empty() {
            return Err(invalid("The token is not signed"));
        }

        let claims = b64_json(p).ok_or_else(|| invalid("The token is malformed"))?;
        let iss = claims
            .get("iss")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid("The token lacks the `iss` claim"))?;
        let issuer = self
            .issuers
            .iter()
            .find(|i| i.cfg.issuer == iss)
            .ok_or_else(|| invalid("The token's issuer is not trusted"))?;
        if !issuer.cfg.algorithms.contains(&alg) {
            return Err(invalid("The token's algorithm is not accepted"));
        }
        let audience = issuer.cfg.audience.as_str();
        let aud_ok = match claims.get("aud") {
            Some(Value::String(a)) => a == audience,
            Some(Value::Array(a)) => a.iter().any(|x| x.as_str() == Some(audience)),
            _ => false,
        };
        if !aud_ok {
            return Err(invalid("The token is not meant for this API"));
        }
        let leeway = issuer.cfg.leeway.as_secs() as i64;
        let now = now();
        let exp = numeric_date(&claims, "exp")?
            .ok_or_else(|| invalid("The token lacks the `exp` claim"))?;
        if now > exp.saturating_add(leeway) {
            return Err(invalid("The token has expired"));
        }
        if numeric_date(&claims, "nbf")?.is_some_and(|nbf| nbf > now.saturating_add(leeway)) {
            return Err(invalid("The token is not valid yet"));
        }
        let iat = numeric_date(&claims, "iat")?
            .ok_or_else(|| invalid("The token lacks the `iat` claim"))?;
        if iat > now.saturating_add(leeway) {
            return Err(invalid("The token was issued in the future"));
        }
        if claims
            .get("jti")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            return Err(invalid("The token lacks the `jti` claim"));
        }
        let identity = identity_of(&claims, exp).map_err(invalid)?;

        let (key_alg, key) = self
            .key(issuer, kid)
            .await
            .ok_or_else(|| invalid("The token's key is unknown"))?;
        if key_alg != alg {
            return Err(invalid("The token's algorithm does not match its key"));
        }
        let signed = &token[..h.len() + 1 + p.len()];
        match jsonwebtoken::crypto::verify(sig, signed.as_bytes(), &key, alg) {
            Ok(true) => {}
            _ => return Err(invalid("The token's signature is invalid")),
        }
        let left = u64::try_from(exp - now).unwrap_or(0);
        Ok(Resolved {
            outcome: Ok(Arc::new(identity)),
            valid_until: exp.saturating_add(leeway),
            ttl: Duration::from_secs(left).min(VERIFIED_TTL_MAX),
        })
    }
}
