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

use super::names::{TRACERESPONSE, TRACE_ID, VERSION};

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
    let value = |n: HeaderName| req.headers.get(n).and_then(|v| v.to_str().ok());
    let asked = crate::representation::Asked {
        method: req.method.as_str(),
        if_none_match: value(http::header::IF_NONE_MATCH),
        accept_encoding: value(http::header::ACCEPT_ENCODING),
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
    // The head is built as `http` parts and handed to pingora whole, with no case map:
    // every name here is lowercase already, and that is how HTTP/1 writes them without one
    // (h2 lowercases anyway). pingora's own `insert_header` turns even a `HeaderName` back
    // into bytes and parses it again (~700 instructions a header, ~5.8k an answer).
    let (mut parts, ()) = http::Response::new(()).into_parts();
    parts.status = http::StatusCode::from_u16(out.status)
        .or_err(ErrorType::InvalidHTTPHeader, "invalid status")?;
    let h = &mut parts.headers;
    h.reserve(16);
    h.insert(TRACE_ID, text(&ctx.trace_id)?);
    // W3C Trace Context level 2: the trace this answer belongs to, and this hop's span.
    let span: [u8; 8] = rand::random();
    let flags = if ctx.trace_flags.is_empty() {
        "01"
    } else {
        ctx.trace_flags.as_str()
    };
    h.insert(
        TRACERESPONSE,
        // The built string becomes the value as it is (no copy, unlike `text`).
        HeaderValue::try_from(crate::hex::trace_context(&ctx.trace_id, span, flags))
            .or_err(ErrorType::InvalidHTTPHeader, "invalid header value")?,
    );
    h.insert(VERSION, text(&ctx.version)?);
    h.insert(http::header::CACHE_CONTROL, NO_STORE);
    if !no_body {
        h.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static(reply.content_type),
        );
        h.insert(
            http::header::CONTENT_LENGTH,
            HeaderValue::from(out.body.len()),
        );
    }
    for (k, v) in reply
        .headers
        .iter()
        .chain(ctx.extra.iter())
        .chain(out.headers.iter())
    {
        let name = HeaderName::from_bytes(k.as_bytes())
            .or_err(ErrorType::InvalidHTTPHeader, "invalid header name")?;
        h.append(name, text(v)?);
    }
    let h = ResponseHeader::from(parts);
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

/// A header value of text, refused as pingora refuses one (`InvalidHTTPHeader`).
fn text(v: &str) -> Result<HeaderValue> {
    HeaderValue::from_str(v).or_err(ErrorType::InvalidHTTPHeader, "invalid header value")
}
