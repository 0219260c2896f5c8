//! Per-request state (pingora's typed `CTX`) and the W3C trace it belongs to.

use std::sync::Arc;
use std::time::Instant;

use crate::auth::Identity;

/// Per-request state (pingora's typed CTX).
pub struct Ctx {
    pub trace_id: String,
    /// W3C trace flags sent upstream: the caller's, or `01` for a trace started here.
    pub trace_flags: String,
    /// Counted in `prospect_edge_requests_in_flight` until the CTX is dropped.
    pub in_flight: crate::metrics::InFlight,
    /// Time this request spent in upstream calls (IAM included), for the access log.
    pub upstream_ms: f64,
    pub started: Instant,
    pub route: &'static str,
    pub status: u16,
    pub identity: Option<Arc<Identity>>,
    /// Headers every answer of this request carries (rate limits, CORS).
    pub extra: Vec<(&'static str, String)>,
    /// The release the answer's `Version` header names: the client's once known, the
    /// current one before.
    pub version: String,
}

impl Ctx {
    pub fn new() -> Ctx {
        Ctx {
            trace_id: String::new(),
            trace_flags: "01".into(),
            in_flight: crate::metrics::InFlight::start(),
            upstream_ms: 0.0,
            started: Instant::now(),
            route: "none",
            status: 0,
            identity: None,
            extra: Vec::new(),
            version: String::new(),
        }
    }

    /// Continues the caller's W3C trace (`traceparent`) or starts one.
    pub fn start_trace(&mut self, traceparent: Option<&str>) {
        match trace_from(traceparent) {
            Some((id, flags)) => (self.trace_id, self.trace_flags) = (id, flags),
            None => self.trace_id = new_trace_id(),
        }
    }
}

impl Default for Ctx {
    fn default() -> Ctx {
        Ctx::new()
    }
}

/// A new W3C trace id: 16 random bytes in lowercase hex.
pub fn new_trace_id() -> String {
    let bytes: [u8; 16] = rand::random();
    crate::hex::encode(&bytes)
}

/// W3C `traceparent`: continue the caller's trace (its id and flags) when well formed.
fn trace_from(header: Option<&str>) -> Option<(String, String)> {
    let parts: Vec<&str> = header?.trim().split('-').collect();
    match parts.as_slice() {
        [ver, trace, span, flags]
            if ver.len() == 2
                && trace.len() == 32
                && span.len() == 16
                && flags.len() == 2
                && trace
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
                && *trace != "00000000000000000000000000000000"
                && flags.bytes().all(|b| b.is_ascii_hexdigit()) =>
        {
            Some((trace.to_string(), flags.to_ascii_lowercase()))
        }
        _ => None,
    }
}
