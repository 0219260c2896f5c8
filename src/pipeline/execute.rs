//! Stages `execute` and `versions back`: the resource's plan (`crate::mapping::exec`)
//! runs the operation, then the answer (records and error pointers) is brought back to
//! the client's release.

use bytes::Bytes;
use serde_json::Value;

use super::respond::Reply;
use super::route::{Operation, Target};
use super::Runtime;
use crate::auth::Identity;
use crate::mapping::exec::{Body, Exec};
use crate::mapping::model::{Change, Plan, Release};
use crate::mapping::versions;
use crate::mapping::Trust;
use crate::problem::Problem;

/// Everything the plan needs to run one operation.
pub struct Call<'a> {
    pub rt: &'a Runtime,
    pub plan: &'a Plan,
    pub target: &'a Target,
    pub trust: &'a Trust,
    pub identity: &'a Identity,
    pub release: &'a Release,
    /// The version changes between the client's release and the current one.
    pub changes: &'a [&'a Change],
}

/// Runs the operation on the plan and brings the answer back to the client's release.
pub async fn execute(call: Call<'_>, body: Option<&Value>) -> Result<Reply, Problem> {
    let Call {
        rt,
        plan,
        target,
        trust,
        identity,
        release,
        changes,
    } = call;
    let res = &*target.res;
    let exec = Exec {
        plan,
        res,
        sealer: &rt.sealer,
        upstreams: &rt.upstreams,
        trust,
        client_id: &identity.client_id,
        version: &release.date,
    };
    let done = match &target.op {
        Operation::Create => exec.create(body).await,
        Operation::Search => exec.search(body).await,
        Operation::Get(id) => exec.get(id).await,
        Operation::Update(id) => exec.update(id, body).await,
        Operation::Delete(id) => exec.delete(id).await,
        Operation::Action(id, a) => match res.actions.get(a) {
            Some(action) => exec.action(action, id, body).await,
            None => Err(Problem::not_found()),
        },
    };
    // versions back
    let done = done.map_err(|mut p| {
        for e in &mut p.errors {
            e.pointer = versions::backward_pointer(changes, &e.pointer);
        }
        p
    })?;
    let mut headers = Vec::new();
    if let Some(l) = done.location {
        headers.push(("location", l));
    }
    let body = match done.body {
        None => Bytes::new(),
        // Written already: the current release's shape.
        Some(Body::Json(json)) if changes.is_empty() => Bytes::from(json),
        Some(b) => {
            let mut v = match b {
                Body::Value(v) => v,
                // An older release: back to a value to bring it back (rare).
                Body::Json(json) => serde_json::from_slice(&json).unwrap_or_default(),
            };
            versions::backward_body(changes, &mut v);
            Bytes::from(serde_json::to_vec(&v).unwrap_or_default())
        }
    };
    Ok(Reply {
        status: done.status,
        headers,
        body,
        content_type: "application/json",
    })
}
