//! Stages `idempotency claim` and `idempotency store`: `POST`/`PATCH` with an
//! `Idempotency-Key` claim (tenant, app, key) with the request's fingerprint, or replay the
//! stored answer; after `execute`, the answer is stored if the request reached an
//! upstream, otherwise the claim is released.

use bytes::Bytes;
use pingora::http::RequestHeader;
use serde_json::Value;

use super::respond::Reply;
use super::route::Operation;
use crate::auth::Identity;
use crate::policy::{Claim, IdempotencyStore, Stored};
use crate::problem::{FieldError, Kind, Problem};

/// A request that will claim its key: the store, the key and the request's fingerprint.
pub struct Pending<'a> {
    store: &'a IdempotencyStore,
    key: Vec<u8>,
    fp: String,
}

/// What the claim decided.
pub enum Claimed<'a> {
    /// The stored answer of an earlier request with the same key and fingerprint.
    Replay(Reply),
    /// Go on (holding the claim, if one was made).
    Go(Option<Pending<'a>>),
}

/// A key is checked on every POST and PATCH; searches are reads, so theirs is not stored.
/// The fingerprint is of the body as the client sent it (before any version translation).
pub fn key<'a>(
    store: Option<&'a IdempotencyStore>,
    req: &RequestHeader,
    method: &str,
    path: &str,
    op: &Operation,
    body: Option<&Value>,
    version: &str,
) -> Result<Option<Pending<'a>>, Problem> {
    let key = match (method, req.headers.get(super::names::IDEMPOTENCY_KEY)) {
        ("POST" | "PATCH", Some(k)) if crate::policy::valid_key(k.as_bytes()) => {
            Some(k.as_bytes().to_vec())
        }
        ("POST" | "PATCH", Some(_)) => {
            return Err(Problem::invalid(vec![FieldError::new(
                "",
                "the Idempotency-Key header must be 1 to 255 visible ASCII characters",
            )]))
        }
        _ => None,
    };
    Ok(match (store, key) {
        (Some(store), Some(key)) if !matches!(op, Operation::Search) => Some(Pending {
            store,
            key,
            fp: crate::policy::fingerprint(method, path, body, version),
        }),
        _ => None,
    })
}

pub async fn claim<'a>(
    pending: Option<Pending<'a>>,
    identity: &Identity,
) -> Result<Claimed<'a>, Problem> {
    let Some(p) = pending else {
        return Ok(Claimed::Go(None));
    };
    // Boxed: the store's futures (Redis round trips) stay out of every request's future.
    let claim = Box::pin(
        p.store
            .claim(identity.tenant, &identity.client_id, &p.key, &p.fp),
    )
    .await?;
    let outcome = match &claim {
        Claim::Fresh => "fresh",
        Claim::Replay(_) => "replayed",
        Claim::InFlight => "in_flight",
        Claim::Mismatch => "mismatch",
    };
    crate::metrics::IDEMPOTENCY
        .with_label_values(&[outcome])
        .inc();
    match claim {
        Claim::Fresh => Ok(Claimed::Go(Some(p))),
        Claim::InFlight => Err(Problem::new(
            Kind::IdempotencyKeyInUse,
            "A request with this Idempotency-Key is still being processed",
        )
        .with_header("retry-after", "1")),
        Claim::Mismatch => Err(Problem::new(
            Kind::IdempotencyKeyReused,
            "This Idempotency-Key was used with a different request",
        )),
        Claim::Replay(stored) => {
            let mut headers: Vec<(&'static str, String)> = stored
                .headers
                .iter()
                .filter_map(|(k, v)| replay_header(k).map(|k| (k, v.clone())))
                .collect();
            headers.push(("idempotent-replayed", "true".into()));
            Ok(Claimed::Replay(Reply {
                status: stored.status,
                headers,
                body: Bytes::from(stored.body),
                content_type: if stored.content_type == "application/problem+json" {
                    "application/problem+json"
                } else {
                    "application/json"
                },
            }))
        }
    }
}

/// Stores the answer (a problem too) once the request reached an upstream; releases the
/// claim otherwise.
pub async fn store(
    pending: Option<Pending<'_>>,
    identity: &Identity,
    reached_upstream: bool,
    result: Result<Reply, Problem>,
    problem_reply: impl Fn(&Problem) -> Reply,
) -> Result<Reply, Problem> {
    let Some(p) = pending else {
        return result;
    };
    if reached_upstream {
        let reply = match &result {
            Ok(r) => r.clone(),
            Err(e) => problem_reply(e),
        };
        let stored = Stored {
            status: reply.status,
            content_type: reply.content_type.to_string(),
            headers: reply
                .headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
            body: reply.body.to_vec(),
        };
        Box::pin(
            p.store
                .complete(identity.tenant, &identity.client_id, &p.key, &p.fp, &stored),
        )
        .await;
        return Ok(reply);
    }
    Box::pin(
        p.store
            .release(identity.tenant, &identity.client_id, &p.key),
    )
    .await;
    result
}

/// The headers of a stored answer that a replay repeats (per-request ones are fresh).
fn replay_header(name: &str) -> Option<&'static str> {
    ["location", "deprecation", "sunset"]
        .into_iter()
        .find(|h| *h == name)
}
