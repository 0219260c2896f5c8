//! Stage `respond`: the one writer through which every answer's status, headers and body
//! pass (success, problem, replay, preflight, documents), and the one function that turns
//! a `Problem` into its `application/problem+json` answer.

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::proxy::Session;

use super::Ctx;
use crate::problem::Problem;

/// A finished answer, before it is written.
#[derive(Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Bytes,
    pub content_type: &'static str,
}

/// A problem as its answer: status, the problem's own headers and its JSON document.
pub fn problem_reply(p: &Problem, type_base: &str, instance: &str, trace_id: &str) -> Reply {
    Reply {
        status: p.status(),
        headers: p.headers.clone(),
        body: Bytes::from(p.body(type_base, instance, trace_id)),
        content_type: "application/problem+json",
    }
}

/// Writes an answer: status, `Trace-Id`, `Version` (`ctx.version`), `Cache-Control`,
/// the reply's own headers and the request's extra ones (rate limits, deprecation, CORS).
/// `draining`: the connection is not kept alive.
pub async fn write(
    session: &mut Session,
    ctx: &mut Ctx,
    reply: Reply,
    draining: bool,
) -> Result<()> {
    let mut h = ResponseHeader::build(reply.status, Some(8))?;
    h.insert_header("trace-id", ctx.trace_id.as_str())?;
    h.insert_header("version", ctx.version.as_str())?;
    h.insert_header("cache-control", "no-store")?;
    if reply.status != 204 {
        h.insert_header("content-type", reply.content_type)?;
        h.insert_header("content-length", reply.body.len().to_string())?;
    }
    for (k, v) in reply.headers.iter().chain(ctx.extra.iter()) {
        h.append_header(*k, v.as_str())?;
    }
    ctx.status = reply.status;
    if draining {
        session.set_keepalive(None);
    }
    let head_only = session.req_header().method == http::Method::HEAD;
    session
        .write_response_header(Box::new(h), reply.status == 204 || head_only)
        .await?;
    if reply.status != 204 && !head_only {
        session.write_response_body(Some(reply.body), true).await?;
    }
    Ok(())
}
