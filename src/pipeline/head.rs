//! Before routing: the head-size bound and CORS (preflights answered at once, allowed
//! origins' headers remembered for every later answer).

use bytes::Bytes;
use pingora::http::RequestHeader;

use super::respond::Reply;
use super::Ctx;
use crate::config::Cors;
use crate::problem::{Kind, Problem};

/// The request target plus every header name and value must fit in `cap` bytes (431
/// otherwise). pingora's own bound (1 MiB of raw head, `head_guard`) is the outer one.
pub fn head_size(req: &RequestHeader, cap: usize) -> Result<(), Problem> {
    let size = req.raw_path().len()
        + req
            .headers
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len())
            .sum::<usize>();
    if size > cap {
        return Err(Problem::new(
            Kind::RequestHeaderFieldsTooLarge,
            format!("The request target and header fields are limited to {cap} bytes"),
        ));
    }
    Ok(())
}

/// With a `cors:` section: a preflight's answer (204, no token, no upstream), or `None`
/// after noting the allowed origin's headers for the answer to come.
pub fn cors(cors: Option<&Cors>, req: &RequestHeader, ctx: &mut Ctx) -> Option<Reply> {
    let cors = cors?;
    let headers = &req.headers;
    let origin = headers
        .get(http::header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .filter(|o| cors.allows(o))
        .map(str::to_string);
    let preflight = req.method == http::Method::OPTIONS
        && headers.contains_key(http::header::ACCESS_CONTROL_REQUEST_METHOD);
    if preflight {
        // Answered here, without a token and without any upstream.
        ctx.extra = origin.map(|o| cors.preflight(&o)).unwrap_or_default();
        ctx.route = "preflight";
        return Some(Reply {
            status: 204,
            headers: Vec::new(),
            body: Bytes::new(),
            content_type: "application/json",
        });
    }
    if let Some(o) = origin {
        ctx.extra.extend(cors.actual(&o));
    }
    None
}
