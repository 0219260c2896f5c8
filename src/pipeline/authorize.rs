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
    // The permission is `<resource permissions>:<verb>` unless the mapping names one.
    let (scope, named, verb) = match &target.op {
        Operation::Get(_) | Operation::Search => (Some(&res.read_scope), None, "view"),
        Operation::Create => (
            res.write_scope.as_ref(),
            res.create_permission.as_deref(),
            "edit",
        ),
        Operation::Update(_) => (res.write_scope.as_ref(), None, "edit"),
        Operation::Delete(_) => (res.write_scope.as_ref(), None, "delete"),
        Operation::Action(_, a) => (
            res.write_scope.as_ref(),
            Some(
                res.actions
                    .get(a)
                    .map(|x| x.permission.as_str())
                    .unwrap_or_default(),
            ),
            "",
        ),
    };
    let scope = scope.unwrap_or(&res.read_scope);
    if !identity.has_scope(scope) {
        return Err(scope_problem(scope));
    }
    let perms = rt.auth.permissions(&rt.upstreams, trust).await;
    *upstream_ms = trust.upstream_ms();
    let perms = perms?;
    let granted = |p: &str| match named {
        Some(n) => p == n,
        None => {
            p.strip_prefix(res.permissions.as_str())
                .and_then(|rest| rest.strip_prefix(':'))
                == Some(verb)
        }
    };
    if !perms.iter().any(|p| granted(p)) {
        let permission = match named {
            Some(n) => n.to_string(),
            None => format!("{}:{verb}", res.permissions),
        };
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
