//! `audit`: read-only system events, newest first, `from`/`to` in epoch seconds,
//! continued by an opaque `cursor` string. Errors are plain text with the status.
//! Reading requires `activities:view`.

use std::ops::Bound;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};

use crate::common::{enter, json_response, query_pairs, text_response, Denied, Trust};
use crate::state::{AuditEvent, SimState};

const MAX_SIZE: usize = 100;
const DEFAULT_SIZE: usize = 50;

pub(crate) fn router(state: SimState) -> Router {
    Router::new()
        .route("/audit/events", get(list))
        .route("/audit/events/{id}", get(get_one))
        .fallback(|| async { text_response(StatusCode::NOT_FOUND, "Not Found".into()) })
        .with_state(state)
}

pub(crate) struct AuditErr(StatusCode, String);

impl From<Denied> for AuditErr {
    fn from(d: Denied) -> Self {
        match d {
            Denied::Headers(m) => AuditErr(StatusCode::BAD_REQUEST, m),
            other => AuditErr(
                StatusCode::FORBIDDEN,
                format!("Forbidden: {}", other.message()),
            ),
        }
    }
}

impl IntoResponse for AuditErr {
    fn into_response(self) -> Response {
        text_response(self.0, self.1)
    }
}

pub(crate) fn event_json(e: &AuditEvent) -> Value {
    json!({
        "eventId": e.event_id,
        "eventType": e.event_type,
        "entityType": e.entity_type,
        "entityId": e.entity_id,
        "actorUserId": e.actor,
        "occurredAt": e.occurred,
        "changes": e.changes,
    })
}

// The cursor is the (occurredAt, sequence) key of the last event served, packed and
// scrambled by an invertible map so that it reads as an opaque string.
const SCRAMBLE_XOR: u64 = 0x5A17_C3D2_9E4B_0F61;
const SCRAMBLE_MUL: u64 = 0x9E37_79B9_7F4A_7C15; // odd, hence invertible mod 2^64
const SEQ_BITS: u32 = 28;

fn mul_inverse(a: u64) -> u64 {
    let mut x = a; // Newton's iteration doubles the correct low bits each round
    for _ in 0..6 {
        x = x.wrapping_mul(2u64.wrapping_sub(a.wrapping_mul(x)));
    }
    x
}

fn encode_cursor(key: (i64, u64)) -> String {
    let packed = ((key.0.max(0) as u64) << SEQ_BITS) | (key.1 & ((1 << SEQ_BITS) - 1));
    format!(
        "{:016x}",
        (packed ^ SCRAMBLE_XOR).wrapping_mul(SCRAMBLE_MUL)
    )
}

fn decode_cursor(s: &str) -> Option<(i64, u64)> {
    if s.len() != 16 {
        return None;
    }
    let v = u64::from_str_radix(s, 16).ok()?;
    let packed = v.wrapping_mul(mul_inverse(SCRAMBLE_MUL)) ^ SCRAMBLE_XOR;
    let ts = (packed >> SEQ_BITS) as i64;
    if ts > 32_503_680_000 {
        return None; // past year 3000: not a cursor this service wrote
    }
    Some((ts, packed & ((1 << SEQ_BITS) - 1)))
}

async fn get_one(
    State(st): State<SimState>,
    h: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, AuditErr> {
    let t = Trust::from_headers(&h)?;
    let w = st.read();
    let (ten, a) = enter(&w, &t)?;
    a.require("activities:view")?;
    let e = ten
        .audit_ids
        .get(&id)
        .and_then(|k| ten.audit.get(k))
        .ok_or_else(|| AuditErr(StatusCode::NOT_FOUND, format!("Event {id} not found")))?;
    Ok(json_response(StatusCode::OK, &event_json(e)))
}

async fn list(
    State(st): State<SimState>,
    h: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Response, AuditErr> {
    let t = Trust::from_headers(&h)?;
    let w = st.read();
    let (ten, a) = enter(&w, &t)?;
    a.require("activities:view")?;
    let bad = |m: String| AuditErr(StatusCode::BAD_REQUEST, m);
    let (mut etype, mut eid, mut from, mut to, mut cursor) = (None, None, None, None, None);
    let mut size = DEFAULT_SIZE;
    for (k, v) in query_pairs(q.as_deref()) {
        match k.as_str() {
            "entityType" => {
                etype = Some(match v.as_str() {
                    "contact" => "contact",
                    "company" => "company",
                    "deal" => "deal",
                    "task" => "task",
                    _ => {
                        return Err(bad(format!(
                            "Invalid entityType '{v}': expected contact, company, deal or task"
                        )))
                    }
                })
            }
            "entityId" => {
                eid = Some(
                    v.parse::<u64>()
                        .map_err(|_| bad(format!("Invalid entityId '{v}'")))?,
                )
            }
            "from" => {
                from = Some(
                    v.parse::<i64>()
                        .map_err(|_| bad(format!("Invalid from '{v}': expected epoch seconds")))?,
                )
            }
            "to" => {
                to = Some(
                    v.parse::<i64>()
                        .map_err(|_| bad(format!("Invalid to '{v}': expected epoch seconds")))?,
                )
            }
            "cursor" => {
                cursor = Some(decode_cursor(&v).ok_or_else(|| bad("Invalid cursor".into()))?)
            }
            "size" => match v.parse::<usize>() {
                Ok(s) if (1..=MAX_SIZE).contains(&s) => size = s,
                _ => {
                    return Err(bad(format!(
                        "Invalid size '{v}': must be between 1 and {MAX_SIZE}"
                    )))
                }
            },
            _ => {}
        }
    }
    let upper = match cursor {
        Some(c) => Bound::Excluded(c),
        None => Bound::Unbounded,
    };
    let mut hits = ten
        .audit
        .range((Bound::Unbounded, upper))
        .rev()
        .skip_while(|(k, _)| to.is_some_and(|t| k.0 > t))
        .take_while(|(k, _)| from.is_none_or(|f| k.0 >= f))
        .filter(|(_, e)| etype.is_none_or(|t| e.entity_type == t))
        .filter(|(_, e)| eid.is_none_or(|i| e.entity_id == i));
    let page: Vec<(&(i64, u64), &AuditEvent)> = hits.by_ref().take(size).collect();
    let more = hits.next().is_some();
    let next = if more {
        page.last().map(|(k, _)| encode_cursor(**k))
    } else {
        None
    };
    let events: Vec<Value> = page.into_iter().map(|(_, e)| event_json(e)).collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({"events": events, "nextCursor": next}),
    ))
}

pub(crate) fn internal() -> Response {
    text_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Internal Server Error".into(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trip() {
        for key in [(0i64, 0u64), (1_767_225_600, 1), (1_798_761_599, 200_000)] {
            let c = encode_cursor(key);
            assert_eq!(c.len(), 16);
            assert_eq!(decode_cursor(&c), Some(key));
        }
        assert_eq!(decode_cursor("zz"), None);
    }
}
