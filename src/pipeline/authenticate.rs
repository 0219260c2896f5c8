//! Stage `authenticate`: the one `Authorization: Bearer` token → a verified identity
//! (`crate::auth` verifies and caches; this stage counts the outcome).

use std::sync::Arc;

use pingora::http::RequestHeader;

use crate::auth::{Auth, Identity};
use crate::problem::Problem;

pub async fn authenticate(auth: &Auth, req: &RequestHeader) -> Result<Arc<Identity>, Problem> {
    let auth_headers: Vec<&[u8]> = req
        .headers
        .get_all(http::header::AUTHORIZATION)
        .iter()
        .map(|v| v.as_bytes())
        .collect();
    let identity = auth.authenticate(&auth_headers).await;
    let outcome = match &identity {
        Ok(_) => "ok",
        Err(_) if auth_headers.is_empty() => "missing",
        Err(p) if p.status() >= 500 => "error",
        Err(_) => "invalid",
    };
    crate::metrics::AUTH.with_label_values(&[outcome]).inc();
    identity
}
