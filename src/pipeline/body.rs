//! Stage `body`: the whole request body, bounded in size and time, parsed as strict JSON;
//! then an older release's body brought forwards to the current shape.

use pingora::protocols::http::ServerSession as Session;
use serde_json::Value;

use super::route::Operation;
use crate::mapping::model::Change;
use crate::mapping::versions;
use crate::problem::{Kind, Problem};

/// Public request bodies are capped at 1 MiB (contract §1).
pub const MAX_BODY: usize = 1024 * 1024;

/// Reads the whole request body (bounded in size and in time: a client that trickles it
/// gets 408 once `deadline` has passed) and parses it as strict JSON (`crate::json`) when
/// the method carries one.
pub async fn read_json_body(
    session: &mut Session,
    method: &str,
    deadline: std::time::Duration,
) -> Result<Option<Value>, Problem> {
    let declared = session
        .req_header()
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_BODY) {
        return Err(Problem::new(
            Kind::PayloadTooLarge,
            "Request bodies are limited to 1 MiB",
        ));
    }
    let mut buf = Vec::new();
    let until = tokio::time::Instant::now() + deadline;
    loop {
        let Ok(read) = tokio::time::timeout_at(until, session.read_request_body()).await else {
            return Err(Problem::new(
                Kind::RequestTimeout,
                format!(
                    "The request body was not received within {} ms",
                    deadline.as_millis()
                ),
            )
            .with_header("connection", "close"));
        };
        match read {
            Ok(Some(chunk)) => {
                if buf.len() + chunk.len() > MAX_BODY {
                    return Err(Problem::new(
                        Kind::PayloadTooLarge,
                        "Request bodies are limited to 1 MiB",
                    ));
                }
                buf.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Err(_) => {
                return Err(Problem::new(
                    Kind::InvalidRequest,
                    "The request body could not be read",
                ))
            }
        }
    }
    if buf.is_empty() || !matches!(method, "POST" | "PATCH" | "PUT") {
        return Ok(None);
    }
    let ct = session
        .req_header()
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let media = ct.split(';').next().unwrap_or("").trim();
    if media != "application/json"
        && !(media.starts_with("application/") && media.ends_with("+json"))
    {
        return Err(Problem::new(
            Kind::UnsupportedMediaType,
            "Send the body as application/json",
        ));
    }
    crate::json::parse(&buf).map(Some)
}

/// An older release's body (and search field names) in the current shape.
pub fn forward(
    changes: &[&Change],
    op: &Operation,
    body: &mut Option<Value>,
) -> Result<(), Problem> {
    if changes.is_empty() {
        return Ok(());
    }
    match (op, body.as_mut()) {
        (Operation::Search, Some(b)) => versions::forward_search(changes, b),
        (Operation::Create | Operation::Update(_), Some(Value::Object(rec))) => {
            let mut errors = Vec::new();
            versions::forward_record(changes, rec, &mut errors);
            if !errors.is_empty() {
                return Err(Problem::invalid(errors));
            }
        }
        _ => {}
    }
    Ok(())
}
