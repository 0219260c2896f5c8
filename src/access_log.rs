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

/// Writes the line: in one `write` (lines of concurrent requests never interleave), or
/// into the buffer when the access log is buffered ([`buffer`]).
pub fn write(e: &Entry<'_>) {
    let line = line(e);
    match BUFFER.get() {
        Some(b) => b.keep(&line, &mut emit),
        None => emit(&line),
    }
}

/// One `write` of whole lines to the sink.
fn emit(bytes: &[u8]) {
    if bytes.is_empty() {
        return;
    }
    match SINK.get() {
        Some(f) => {
            let _ = (&**f).write_all(bytes);
        }
        None => {
            let _ = std::io::stderr().lock().write_all(bytes);
        }
    }
}

static BUFFER: std::sync::OnceLock<Buffer> = std::sync::OnceLock::new();

/// Buffers the access log from now on (`access_log_buffer_bytes`, once; 0 leaves it
/// unbuffered): lines are kept, at most `bytes` of them, and written together when the next
/// one would not fit and at least every `every` (a thread of its own), as nginx's
/// `access_log … buffer= flush=` and Envoy's file sink (flushed every second by default)
/// do. A write a line was one `write` syscall per request in system time. Lines already
/// kept are lost only if the process dies without draining: a graceful stop or upgrade
/// calls [`unbuffer`] first.
pub fn buffer(bytes: usize, every: std::time::Duration) {
    if bytes == 0 || BUFFER.set(Buffer::new(bytes)).is_err() {
        return;
    }
    let flusher = std::thread::Builder::new()
        .name("access-log".into())
        .spawn(move || loop {
            std::thread::sleep(every);
            if let Some(b) = BUFFER.get() {
                b.flush(&mut emit);
            }
        });
    if let Err(e) = flusher {
        // Without its flusher the buffer would hold lines indefinitely.
        tracing::warn!(error = %e, "no access-log flush thread: the access log stays unbuffered");
        if let Some(b) = BUFFER.get() {
            b.unbuffer(&mut emit);
        }
    }
}

/// The edge is draining: what the buffer holds is written now, and every later line at
/// once, so that none is lost when the process exits.
pub fn unbuffer() {
    if let Some(b) = BUFFER.get() {
        b.unbuffer(&mut emit);
    }
}

/// The lines kept for one write (see [`buffer`]).
struct Buffer {
    lines: std::sync::Mutex<Vec<u8>>,
    cap: usize,
    /// Set once draining: lines go straight to the sink.
    direct: std::sync::atomic::AtomicBool,
}

impl Buffer {
    fn new(cap: usize) -> Buffer {
        Buffer {
            lines: std::sync::Mutex::new(Vec::with_capacity(cap)),
            cap,
            direct: Default::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<u8>> {
        self.lines
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Keeps `line`, writing what is kept first when it would not fit; straight to `out`
    /// once draining. Checked under the lock: a line never lands in a buffer that
    /// [`Buffer::unbuffer`] has already written out.
    fn keep(&self, line: &[u8], out: &mut dyn FnMut(&[u8])) {
        let mut lines = self.lock();
        if self.direct.load(std::sync::atomic::Ordering::Acquire) {
            return out(line);
        }
        if !lines.is_empty() && lines.len() + line.len() > self.cap {
            out(&lines);
            lines.clear();
        }
        if line.len() >= self.cap {
            return out(line);
        }
        lines.extend_from_slice(line);
    }

    fn flush(&self, out: &mut dyn FnMut(&[u8])) {
        let mut lines = self.lock();
        if !lines.is_empty() {
            out(&lines);
            lines.clear();
        }
    }

    fn unbuffer(&self, out: &mut dyn FnMut(&[u8])) {
        self.direct
            .store(true, std::sync::atomic::Ordering::Release);
        self.flush(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_writes_whole_lines_when_full_flushed_or_draining_and_loses_none() {
        let b = Buffer::new(64);
        let mut written: Vec<Vec<u8>> = Vec::new();
        let line = |n: usize| format!("{{\"line\":{n:02}}}\n").into_bytes(); // 12 bytes
        let mut sent = Vec::new();
        for n in 0..12 {
            sent.extend(line(n));
            b.keep(&line(n), &mut |w: &[u8]| written.push(w.to_vec()));
        }
        // 5 lines fit in 64 bytes: two writes of five lines so far, two lines kept.
        assert_eq!(written.len(), 2, "{written:?}");
        assert!(written.iter().all(|w| w.len() == 60));
        b.flush(&mut |w: &[u8]| written.push(w.to_vec()));
        assert_eq!(written.concat(), sent, "every line once, in order");
        // A line longer than the buffer is written on its own, after what is kept.
        let long = vec![b'x'; 100];
        b.keep(&line(12), &mut |w: &[u8]| written.push(w.to_vec()));
        b.keep(&long, &mut |w: &[u8]| written.push(w.to_vec()));
        assert_eq!(written[written.len() - 2], line(12));
        assert_eq!(written[written.len() - 1], long);
        // Draining: what is kept is written, and every later line at once.
        b.keep(&line(13), &mut |w: &[u8]| written.push(w.to_vec()));
        let before = written.len();
        b.unbuffer(&mut |w: &[u8]| written.push(w.to_vec()));
        assert_eq!(written[before..], [line(13)]);
        b.keep(&line(14), &mut |w: &[u8]| written.push(w.to_vec()));
        assert_eq!(written.last(), Some(&line(14)));
        b.flush(&mut |w: &[u8]| written.push(w.to_vec()));
        assert_eq!(written.last(), Some(&line(14)), "nothing left behind");
    }

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
