//! The user's CRM permissions from `iam`, cached per (tenant, user).

use std::sync::Arc;

use serde_json::Value;

use super::{invalid, Auth};
use crate::mapping::Trust;
use crate::problem::{Kind, Problem};
use crate::upstream::Upstreams;

impl Auth {
    /// The user's CRM permissions, cached per (tenant, user) for the configured lifetime;
    /// concurrent requests of one user share one `iam` call. Nothing cached and `iam`
    /// unreachable: 503, never "allow".
    pub async fn permissions(
        &self,
        upstreams: &Upstreams,
        trust: &Trust,
    ) -> Result<Arc<Vec<String>>, Problem> {
        let key = (trust.tenant, trust.user);
        let init = || fetch_permissions(upstreams, trust);
        let (perms, hit) = super::token_cache::get_or_init(&self.permissions, key, init).await;
        crate::metrics::cache("permissions", hit);
        perms
    }
}

async fn fetch_permissions(
    upstreams: &Upstreams,
    trust: &Trust,
) -> Result<Arc<Vec<String>>, Problem> {
    let path = format!("/iam/v2/users/{}/permissions", trust.user);
    let answer = upstreams
        .call(
            "iam",
            crate::mapping::model::Method::Get,
            &path,
            None,
            trust,
        )
        .await?;
    match answer.status {
        200 => {}
        // The token is genuine but its user is not (or no longer) a member of its tenant.
        403 | 404 => return Err(invalid("The token's user is not a member of its tenant")),
        _ => {
            return Err(Problem::new(
                Kind::UpstreamError,
                "The permission service could not answer",
            ))
        }
    }
    let v: Value = serde_json::from_slice(&answer.body).map_err(|_| {
        Problem::new(
            Kind::UpstreamError,
            "The permission service answered garbage",
        )
    })?;
    let perms = v
        .get("permissions")
        .and_then(Value::as_array)
        .ok_or_else(|| {
            Problem::new(
                Kind::UpstreamError,
                "The permission service answered garbage",
            )
        })?
        .iter()
        .filter_map(|x| x.as_str().map(str::to_string))
        .collect();
    Ok(Arc::new(perms))
}
