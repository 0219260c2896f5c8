//! The request and answer header names the pipeline uses that `http::header` lacks, as
//! constants: a lookup by `&str` parses and lowercases the name first (~300 instructions
//! each, several per request).

use http::HeaderName;

pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
pub const TRACE_ID: HeaderName = HeaderName::from_static("trace-id");
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
pub const TRACERESPONSE: HeaderName = HeaderName::from_static("traceresponse");
pub const VERSION: HeaderName = HeaderName::from_static("version");
