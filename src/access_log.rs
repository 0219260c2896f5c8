//! The access log: one JSON line per public request on stderr, in the same shape as the
//! rest of the logs (`tracing-subscriber`'s JSON), written by hand. Formatting it through
//! `tracing` cost about 24k instructions a request, ~10 % of a cached GET
//! (benches/README.md); this costs a small fraction of that. `RUST_LOG` still decides
//! whether it is written (target `access`, level INFO).
//!
//! Never a token, never a body: the line is built from the fields below only.

use std::io::Write;

/// What one line records.
pub struct Entry<'a> {
    pub trace_id: &'a str,
    pub method: &'a str,
    pub route: &'a str,
    pub status: u16,
    pub duration_ms: f64,
    pub upstream_ms: f64,
    pub bytes_in: usize,
    pub bytes_out: usize,
    pub tenant: u32,
    pub client: &'a str,
    pub user: u64,
}

/// Whether `RUST_LOG` lets access lines through.
pub fn enabled() -> bool {
    tracing::enabled!(target: "access", tracing::Level::INFO)
}

/// A JSON string (quotes included) of `s`, escaped.
fn string(out: &mut Vec<u8>, s: &str) {
    // Plain ASCII without quotes, backslashes or controls (every field here but the
    // client id, which comes from a token) needs no escaping.
    if s.bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
    {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else if serde_json::to_writer(&mut *out, s).is_err() {
        out.extend_from_slice(b"\"\"");
    }
}

/// The line, newline included.
pub fn line(e: &Entry<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(320);
    let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.6fZ");
    let _ = write!(
        out,
        "{{\"timestamp\":\"{now}\",\"level\":\"INFO\",\"fields\":{{\"trace_id\":"
    );
    string(&mut out, e.trace_id);
    out.extend_from_slice(b",\"method\":");
    string(&mut out, e.method);
    out.extend_from_slice(b",\"route\":");
    string(&mut out, e.route);
    let _ = write!(
        out,
        ",\"status\":{},\"duration_ms\":{:.3},\"upstream_ms\":{:.3},\"bytes_in\":{},\"bytes_out\":{},\"tenant\":{},\"client\":",
        e.status, e.duration_ms, e.upstream_ms, e.bytes_in, e.bytes_out, e.tenant
    );
    string(&mut out, e.client);
    let _ = writeln!(out, ",\"user\":{}}},\"target\":\"access\"}}", e.user);
    out
}

/// Where lines go instead of stderr, once set (the demo's log file).
static SINK: std::sync::OnceLock<std::sync::Arc<std::fs::File>> = std::sync::OnceLock::new();

/// Sends the access log to `file` from now on (once; later calls are ignored).
pub fn write_to(file: std::sync::Arc<std::fs::File>) {
    let _ = SINK.set(file);
}

/// Writes the line in one `write` (lines of concurrent requests never interleave).
pub fn write(e: &Entry<'_>) {
    let line = line(e);
    match SINK.get() {
        Some(f) => {
            let _ = (&**f).write_all(&line);
        }
        None => {
            let _ = std::io::stderr().lock().write_all(&line);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_one_json_object_in_the_log_shape_with_hostile_strings_escaped() {
        let e = Entry {
            trace_id: "4bf92f3577b34da6a3ce929d0e0e4736",
            method: "GET",
            route: "get",
            status: 200,
            duration_ms: 0.9327,
            upstream_ms: 0.5,
            bytes_in: 0,
            bytes_out: 372,
            tenant: 1,
            client: "evil\"\n\\app\u{1}",
            user: 101,
        };
        let bytes = line(&e);
        assert_eq!(bytes.last(), Some(&b'\n'));
        assert_eq!(bytes.iter().filter(|b| **b == b'\n').count(), 1);
        let v: serde_json::Value =
            serde_json::from_slice(&bytes).unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(v["level"], "INFO");
        assert_eq!(v["target"], "access");
        let f = &v["fields"];
        assert_eq!(f["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(f["method"], "GET");
        assert_eq!(f["route"], "get");
        assert_eq!(f["status"], 200);
        assert_eq!(f["duration_ms"], 0.933);
        assert_eq!(f["upstream_ms"], 0.5);
        assert_eq!(f["bytes_out"], 372);
        assert_eq!(f["tenant"], 1);
        assert_eq!(f["client"], "evil\"\n\\app\u{1}");
        assert_eq!(f["user"], 101);
        let ts = v["timestamp"].as_str().unwrap_or_default();
        assert!(chrono::DateTime::parse_from_rfc3339(ts).is_ok(), "{ts}");
    }
}
