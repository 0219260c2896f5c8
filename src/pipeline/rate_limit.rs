//! Stage `rate_limit`: the configured policies per (tenant, app). Its `RateLimit-*`
//! headers go on every later answer, a refusal included.

use super::route::Operation;
use crate::auth::Identity;
use crate::policy::{Class, RateLimiter};
use crate::problem::Problem;

pub async fn rate_limit(
    limiter: Option<&RateLimiter>,
    identity: &Identity,
    op: &Operation,
    extra: &mut Vec<(&'static str, String)>,
) -> Result<(), Problem> {
    let Some(rl) = limiter else {
        return Ok(());
    };
    let class = match op {
        Operation::Get(_) => Class::Read,
        Operation::Search => Class::Search,
        _ => Class::Write,
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    // Boxed: a shared limiter's Redis futures stay out of every request's future.
    let d = Box::pin(rl.check(identity.tenant, &identity.client_id, class, now)).await;
    extra.extend(d.headers);
    match d.refused {
        Some(p) => Err(p),
        None => Ok(()),
    }
}
