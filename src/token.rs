//! Dev access tokens and the demo issuer's JWKS, from `conf/demo/issuer-key.pem`.
//! The demo key is for the demo and tests only; production trusts real issuers' JWKS.

use std::path::Path;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use ed25519_dalek::pkcs8::DecodePrivateKey;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

pub const DEMO_ISSUER: &str = "https://issuer.demo.prospect-edge.invalid";
pub const DEMO_AUDIENCE: &str = "https://api.prospectconnect.example";
pub const DEMO_KID: &str = "demo-ed25519-1";
pub const ALL_SCOPES: &str = "contact.read contact.write company.read company.write deal.read deal.write task.read task.write note.read note.write activity.read activity.write";

#[derive(Debug, Clone)]
pub struct Mint {
    pub tenant: u32,
    pub user: u64,
    pub client: String,
    pub scope: String,
    pub ttl: i64,
    pub aud: String,
    pub iss: String,
    pub kid: String,
}

impl Mint {
    pub fn new(tenant: u32, user: u64) -> Mint {
        Mint {
            tenant,
            user,
            client: "demo-app".into(),
            scope: ALL_SCOPES.into(),
            ttl: 3600,
            aud: DEMO_AUDIENCE.into(),
            iss: DEMO_ISSUER.into(),
            kid: DEMO_KID.into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("cannot read the key {0}: {1}")]
    Read(String, std::io::Error),
    #[error("the key is not an Ed25519 PKCS#8 PEM key")]
    Key,
    #[error("signing failed: {0}")]
    Sign(#[from] jsonwebtoken::errors::Error),
}

pub fn read_key(path: &Path) -> Result<String, TokenError> {
    std::fs::read_to_string(path).map_err(|e| TokenError::Read(path.display().to_string(), e))
}

/// Signs an RFC 9068 access token (`typ: at+jwt`, EdDSA).
pub fn mint(pem: &str, m: &Mint) -> Result<String, TokenError> {
    let key = EncodingKey::from_ed_pem(pem.as_bytes()).map_err(|_| TokenError::Key)?;
    let mut header = Header::new(Algorithm::EdDSA);
    header.typ = Some("at+jwt".into());
    header.kid = Some(m.kid.clone());
    let now = chrono::Utc::now().timestamp();
    let jti: [u8; 12] = rand::random();
    let claims = json!({
        "iss": m.iss, "aud": m.aud, "sub": m.user.to_string(), "client_id": m.client,
        "scope": m.scope, "tid": m.tenant, "iat": now, "nbf": now, "exp": now + m.ttl,
        "jti": B64.encode(jti),
    });
    Ok(jsonwebtoken::encode(&header, &claims, &key)?)
}

/// The JWKS publishing the demo key's public half.
pub fn jwks(pem: &str, kid: &str) -> Result<Value, TokenError> {
    let sk = ed25519_dalek::SigningKey::from_pkcs8_pem(pem).map_err(|_| TokenError::Key)?;
    let x = B64.encode(sk.verifying_key().to_bytes());
    Ok(
        json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "use": "sig", "alg": "EdDSA"}]}),
    )
}
