//! Stage `respond`: the one writer through which every answer's status, headers and body
//! pass (success, problem, replay, preflight, documents), and the one function that turns
//! a `Problem` into its `application/problem+json` answer.

use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::protocols::http::ServerSession as Session;

use super::Ctx;
use crate::problem::Problem;

const TRACE_ID: HeaderName = HeaderName::from_static("trace-id");
const TRACERESPONSE: HeaderName = HeaderName::from_static("traceresponse");
const VERSION: HeaderName = HeaderName::from_static("version");

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
    // The representation: ETag / 304 and the content coding (src/representation.rs).
    let req = session.req_header();
    let value = |n: &str| req.headers.get(n).and_then(|v| v.to_str().ok());
    let asked = crate::representation::Asked {
        method: req.method.as_str(),
        if_none_match: value("if-none-match"),
        accept_encoding: value("accept-encoding"),
    };
    let out = crate::representation::prepare(
        asked,
        ctx.route,
        reply.status,
        reply.content_type,
        reply.body,
    );
    let no_body = out.status == 204 || out.status == 304;
    const NO_STORE: HeaderValue = HeaderValue::from_static("no-store");
    // No case map: every name here is lowercase already, and that is how HTTP/1 writes
    // them without one (h2 lowercases anyway).
    let mut h = ResponseHeader::build_no_case(out.status, Some(8))?;
    // Names as `HeaderName`s: a `&str` name is looked up among the standard ones and
    // parsed on every insert.
    h.insert_header(TRACE_ID, ctx.trace_id.as_str())?;
    // W3C Trace Context level 2: the trace this answer belongs to, and this hop's span.
    let span: [u8; 8] = rand::random();
    let flags = if ctx.trace_flags.is_empty() {
        "01"
    } else {
        ctx.trace_flags.as_str()
    };
    h.insert_header(
        TRACERESPONSE,
        crate::hex::trace_context(&ctx.trace_id, span, flags),
    )?;
    h.insert_header(VERSION, ctx.version.as_str())?;
    h.insert_header(http::header::CACHE_CONTROL, NO_STORE)?;
    if !no_body {
        h.insert_header(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static(reply.content_type),
        )?;
        h.insert_header(
            http::header::CONTENT_LENGTH,
            HeaderValue::from(out.body.len()),
        )?;
    }
    for (k, v) in reply
        .headers
        .iter()
        .chain(ctx.extra.iter())
        .chain(out.headers.iter())
    {
        h.append_header(*k, v.as_str())?;
    }
    ctx.status = out.status;
    if draining {
        session.set_keepalive(None);
    }
    let head_only = session.req_header().method == http::Method::HEAD;
    session.write_response_header(Box::new(h)).await?;
    if !no_body && !head_only {
        session.write_response_body(out.body, true).await?;
    }
    Ok(())
}
