//! The access log: one JSON line per public request on stderr, in the same shape as the
//! rest of the logs (`tracing-subscriber`'s JSON), written by hand. Formatting it through
//! `tracing` cost about 24k instructions a request, ~10 % of a cached GET
//! (benches/README.md); this costs a small fraction of that. `RUST_LOG` still decides
//! whether it is written (target `access`, level INFO).
//!
//! Never a token, never a body: the line is built from the fields below only.

use std::io::Write;

use crate::json::write_str;

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

/// `YYYY-MM-DDTHH:MM:SS.ffffffZ` of now (UTC): the date and time of day are formatted
/// once a second per thread, the microseconds by hand (chrono's `%.6f` formatting was
/// ~2.5k instructions a line).
fn timestamp(out: &mut Vec<u8>) {
    thread_local! {
        static SECOND: std::cell::Cell<(u64, [u8; 19])> = const { std::cell::Cell::new((u64::MAX, [0; 19])) };
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs();
    let (cached, mut text) = SECOND.get();
    if cached != secs {
        let t = chrono::DateTime::from_timestamp(i64::try_from(secs).unwrap_or(0), 0)
            .unwrap_or_default();
        let mut buf = Vec::with_capacity(19);
        let _ = write!(buf, "{}", t.format("%Y-%m-%dT%H:%M:%S"));
        if buf.len() == 19 {
            text.copy_from_slice(&buf);
            SECOND.set((secs, text));
        } else {
            // Years beyond 9999: not cached, written as chrono writes them.
            out.extend_from_slice(&buf);
            out.push(b'.');
            digits(out, u64::from(now.subsec_micros()), 6);
            out.push(b'Z');
            return;
        }
    }
    out.extend_from_slice(&text);
    out.push(b'.');
    digits(out, u64::from(now.subsec_micros()), 6);
    out.push(b'Z');
}

/// `n` in decimal, zero-padded to at least `width` digits.
fn digits(out: &mut Vec<u8>, mut n: u64, width: usize) {
    let mut buf = [b'0'; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let start = i.min(buf.len() - width.min(buf.len()));
    out.extend_from_slice(&buf[start..]);
}

/// A number of milliseconds with three decimals, as `{:.3}` writes it (negative and
/// non-finite values, which durations never are, are written as 0.000).
fn millis(out: &mut Vec<u8>, ms: f64) {
    let us = if ms.is_finite() && ms > 0.0 {
        (ms * 1000.0).round() as u64
    } else {
        0
    };
    digits(out, us / 1000, 1);
    out.push(b'.');
    digits(out, us % 1000, 3);
}

/// The line, newline included.
pub fn line(e: &Entry<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(320);
    out.extend_from_slice(b"{\"timestamp\":\"");
    timestamp(&mut out);
    out.extend_from_slice(b"\",\"level\":\"INFO\",\"fields\":{\"trace_id\":");
    write_str(&mut out, e.trace_id);
    out.extend_from_slice(b",\"method\":");
    write_str(&mut out, e.method);
    out.extend_from_slice(b",\"route\":");
    write_str(&mut out, e.route);
    out.extend_from_slice(b",\"status\":");
    digits(&mut out, u64::from(e.status), 1);
    out.extend_from_slice(b",\"duration_ms\":");
    millis(&mut out, e.duration_ms);
    out.extend_from_slice(b",\"upstream_ms\":");
    millis(&mut out, e.upstream_ms);
    out.extend_from_slice(b",\"bytes_in\":");
    digits(&mut out, e.bytes_in as u64, 1);
    out.extend_from_slice(b",\"bytes_out\":");
    digits(&mut out, e.bytes_out as u64, 1);
    out.extend_from_slice(b",\"tenant\":");
    digits(&mut out, u64::from(e.tenant), 1);
    out.extend_from_slice(b",\"client\":");
    write_str(&mut out, e.client);
    out.extend_from_slice(b",\"user\":");
    digits(&mut out, e.user, 1);
    out.extend_from_slice(b"},\"target\":\"access\"}\n");
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
        assert_eq!(ts.len(), 27, "{ts}");
    }

    #[test]
    fn numbers_are_written_as_the_formatter_writes_them() {
        for n in [0u64, 7, 10, 999, 1000, 123_456, u64::MAX] {
            let mut out = Vec::new();
            digits(&mut out, n, 1);
            assert_eq!(out, n.to_string().into_bytes());
            let mut out = Vec::new();
            digits(&mut out, n, 6);
            assert_eq!(out, format!("{n:06}").into_bytes());
        }
        for ms in [
            0.0, 0.0004, 0.0005, 0.9327, 1.0, 12.3456, 1234.5678, 99999.9999,
        ] {
            let mut out = Vec::new();
            millis(&mut out, ms);
            assert_eq!(String::from_utf8_lossy(&out), format!("{ms:.3}"), "{ms}");
        }
    }

    #[test]
    fn the_timestamp_is_now_with_microseconds() {
        let before = chrono::Utc::now();
        let mut out = Vec::new();
        timestamp(&mut out);
        timestamp(&mut out); // the second from the per-thread cache
        let after = chrono::Utc::now();
        let text = String::from_utf8_lossy(&out).to_string();
        let (a, b) = text.split_at(27);
        for ts in [a, b] {
            let t = chrono::DateTime::parse_from_rfc3339(ts).map(|t| t.to_utc());
            assert!(
                matches!(t, Ok(t) if t >= before - chrono::Duration::microseconds(1) && t <= after),
                "{ts}"
            );
            assert_eq!(&ts[19..20], ".");
        }
    }
}
