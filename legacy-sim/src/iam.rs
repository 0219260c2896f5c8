//! `iam`: who may do what. `GET /iam/v2/users/{userId}/permissions` answers the user's
//! role and permissions in the tenant of `X-PC-Tenant`, or 404 when the user is not a
//! member. Errors are `{"status", "error", "message"}` (a Spring-style body).

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use serde_json::json;

use crate::common::{json_response, path_id, permissions_of, Trust};
use crate::state::SimState;

pub(crate) fn router(state: SimState) -> Router {
    Router::new()
        .route("/iam/v2/users/{user}/permissions", get(permissions))
        .fallback(|| async { err(StatusCode::NOT_FOUND, "no such resource".into()) })
        .with_state(state)
}

fn err(status: StatusCode, message: String) -> Response {
    json_response(
        status,
        &json!({
            "status": status.as_u16(),
            "error": status.canonical_reason().unwrap_or("Error"),
            "message": message,
        }),
    )
}

async fn permissions(
    State(st): State<SimState>,
    h: HeaderMap,
    Path(user): Path<String>,
) -> Response {
    let t = match Trust::from_headers(&h) {
        Ok(t) => t,
        Err(d) => return err(StatusCode::BAD_REQUEST, d.message()),
    };
    let w = st.read();
    let not_member = || {
        err(
            StatusCode::NOT_FOUND,
            format!("user {user} is not a member of tenant {}", t.tenant),
        )
    };
    let Some(uid) = path_id(&user) else {
        return not_member();
    };
    let Some(ten) = w.tenants.get(&t.tenant) else {
        return not_member();
    };
    let Some(role) = ten.users.get(&uid) else {
        return not_member();
    };
    // the acting user must belong to the tenant too (it usually asks about itself)
    if !ten.users.contains_key(&t.user) {
        return err(
            StatusCode::FORBIDDEN,
            format!("user {} is not a member of tenant {}", t.user, t.tenant),
        );
    }
    json_response(
        StatusCode::OK,
        &json!({
            "userId": uid,
            "tenantId": t.tenant,
            "role": role,
            "permissions": permissions_of(role),
        }),
    )
}

pub(crate) fn internal() -> Response {
    err(StatusCode::INTERNAL_SERVER_ERROR, "internal error".into())
}
