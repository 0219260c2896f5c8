//! Stage `authorize`: the token's scope **and** the user's CRM permission (from `iam`,
//! cached per (tenant, user) by `crate::auth`).

use super::route::{Operation, Target};
use super::Runtime;
use crate::auth::Identity;
use crate::mapping::Trust;
use crate::problem::{Kind, Problem};

/// Checks the scope, then the permission; the time `iam` took goes into `upstream_ms`
/// whatever the outcome.
pub async fn authorize(
    rt: &Runtime,
    target: &Target,
    identity: &Identity,
    trust: &Trust,
    upstream_ms: &mut f64,
) -> Result<(), Problem> {
    let res = &target.res;
    let (scope, permission) = match &target.op {
        Operation::Get(_) | Operation::Search => (
            Some(res.read_scope.clone()),
            format!("{}:view", res.permissions),
        ),
        Operation::Create => (
            res.write_scope.clone(),
            res.create_permission
                .clone()
                .unwrap_or_else(|| format!("{}:edit", res.permissions)),
        ),
        Operation::Update(_) => (res.write_scope.clone(), format!("{}:edit", res.permissions)),
        Operation::Delete(_) => (
            res.write_scope.clone(),
            format!("{}:delete", res.permissions),
        ),
        Operation::Action(_, a) => (
            res.write_scope.clone(),
            res.actions
                .get(a)
                .map(|x| x.permission.clone())
                .unwrap_or_default(),
        ),
    };
    let scope = scope.unwrap_or_else(|| res.read_scope.clone());
    if !identity.has_scope(&scope) {
        return Err(scope_problem(&scope));
    }
    let perms = rt.auth.permissions(&rt.upstreams, trust).await;
    *upstream_ms = trust.upstream_ms();
    let perms = perms?;
    if !perms.iter().any(|p| p == &permission) {
        return Err(Problem::new(
            Kind::PermissionDenied,
            format!("The user's role lacks `{permission}`"),
        )
        .with_ext("required_permission", permission));
    }
    Ok(())
}

fn scope_problem(scope: &str) -> Problem {
    Problem::new(
        Kind::InsufficientScope,
        format!("This operation needs the `{scope}` scope"),
    )
    .with_ext("required_scope", scope)
    .with_header(
        "www-authenticate",
        format!(r#"Bearer realm="prospectconnect", error="insufficient_scope", scope="{scope}""#),
    )
}
