//! The public listener's guard on request heads: a whole-head deadline
//! (`client_header_timeout_ms`), pingora's head bounds and its bare 400 page answered as
//! problems, enforced under pingora's HTTP/1 parser by wrapping every accepted connection.
//!
//! Why a stream wrapper: pingora 0.9 bounds each single read of a head (60 s) but not the
//! whole head (pingora issue #447), and no `ProxyHttp` hook runs before the head is parsed,
//! so a client trickling its head a byte at a time would hold a connection for as long as
//! it likes. The wrapper watches the bytes pingora reads, from the first byte of a request
//! (from the accept, for a connection's first request) to the blank line that ends its
//! head. If the deadline passes first, it writes `408 request-timeout`; if the head grows
//! past pingora's bounds first (1 MiB, 256 fields), `431 request-header-fields-too-large`;
//! either way reads then fail, so pingora closes the connection. A connection that sent
//! nothing (or only empty lines) by the deadline is closed without an answer. Between
//! requests (keep-alive idle) no deadline runs: pingora's keep-alive timeout (60 s)
//! applies. When pingora answers a head itself (its parser refuses it: 400; `CONNECT`:
//! 405), its bare page is replaced by the problem.
//!
//! It does not own the edge's own cap on header fields (`max_request_header_bytes`): the
//! edge checks that on the parsed head in its app (`pipeline::Edge`), where it can keep the
//! connection. The body deadline is the edge's too (`pipeline::body::read_json_body`).

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, Ssl, Stream, UniqueID,
    UniqueIDType,
};
use pingora::server::ShutdownWatch;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::pipeline::Runtime;
use crate::problem::{Kind, Problem};

/// A raw head this long without its end is refused (431). One byte below pingora's own
/// `MAX_HEADER_SIZE` check, so that pingora's bare 400 is never the answer.
pub const MAX_RAW_HEAD: usize = crate::config::PINGORA_MAX_HEAD as usize;

/// pingora only parses 256 header fields (`MAX_HEADERS`); a 257th is refused here (431).
const MAX_FIELDS: usize = 256;

/// The request line is kept (up to this length) to name the `instance` of a refusal.
const MAX_LINE_KEPT: usize = 8 * 1024;

/// Wraps pingora's HTTP app (the proxy service): each accepted connection is guarded.
pub struct Guarded<A> {
    pub app: Arc<A>,
    pub rt: Arc<Runtime>,
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for Guarded<A> {
    /// Wraps the connection, then hands it to pingora's HTTP/1 session loop.
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let guarded = HeadGuard::new(stream, self.rt.clone(), self.rt.cfg.client_header_timeout);
        self.app.process_new(Box::new(guarded), shutdown).await
    }

    /// Passes the service's stop on (pingora's app wakes its idle keep-alive readers).
    async fn cleanup(&self) {
        self.app.cleanup().await;
    }
}

/// Finds the end of a request head (an empty line, CRLF or bare LF as pingora's parser
/// accepts) in bytes fed piecewise, and counts its lines.
#[derive(Debug, Default, Clone)]
struct Scan {
    /// Bytes of this head so far (leading empty lines included).
    seen: usize,
    /// A byte other than CR/LF has been seen: empty lines before the request line are
    /// skipped by the parser, so they do not end a head.
    started: bool,
    /// Completed lines (the request line and header fields).
    lines: usize,
    /// At the start of a line (just after its LF), possibly after a CR.
    at_line_start: bool,
    /// The request line, as far as kept.
    line: Vec<u8>,
}

/// What a chunk of bytes did to the head being read.
#[derive(Debug, PartialEq, Eq)]
enum Scanned {
    /// The head continues past this chunk.
    More,
    /// The head ends inside this chunk.
    Complete,
    /// The head is over pingora's bounds (size or number of fields).
    TooLarge,
}

impl Scan {
    /// Feeds the next bytes read, a line at a time (`memchr` for each LF): the bytes of a
    /// header line are not looked at one by one. Same result as a byte-at-a-time scan
    /// (the property test below compares them).
    fn feed(&mut self, bytes: &[u8]) -> Scanned {
        let mut rest = bytes;
        while !rest.is_empty() {
            if !self.started {
                // Empty lines before the request line are skipped by the parser.
                let skip = rest
                    .iter()
                    .position(|b| *b != b'\r' && *b != b'\n')
                    .unwrap_or(rest.len());
                self.seen += skip;
                if self.seen > MAX_RAW_HEAD {
                    return Scanned::TooLarge;
                }
                rest = &rest[skip..];
                if rest.is_empty() {
                    break;
                }
                self.started = true;
            }
            let (segment, newline) = match memchr::memchr(b'\n', rest) {
                Some(i) => (&rest[..i], true),
                None => (rest, false),
            };
            self.seen += segment.len() + usize::from(newline);
            if self.seen > MAX_RAW_HEAD {
                return Scanned::TooLarge;
            }
            if self.at_line_start {
                if segment.iter().all(|b| *b == b'\r') {
                    // An empty line (CRs only): the end of the head once its LF is here.
                    if newline {
                        return Scanned::Complete;
                    }
                } else {
                    if self.lines > MAX_FIELDS {
                        return Scanned::TooLarge;
                    }
                    self.at_line_start = false;
                }
            }
            if self.lines == 0 {
                let room = MAX_LINE_KEPT.saturating_sub(self.line.len());
                self.line.reserve(segment.len().min(room));
                let kept = segment.iter().copied().filter(|b| *b != b'\r').take(room);
                self.line.extend(kept);
            }
            if newline {
                self.lines += 1;
                self.at_line_start = true;
                rest = &rest[segment.len() + 1..];
            } else {
                rest = &[];
            }
        }
        Scanned::More
    }

    /// The path of the request line, once it came whole (for the problem's `instance`).
    fn path(&self) -> String {
        if self.lines == 0 {
            return "/".to_string();
        }
        path_of(&self.line)
    }
}

/// The path of a request line (without the query), when it is one printable ASCII path;
/// `/` otherwise.
fn path_of(line: &[u8]) -> String {
    line.split(|&b| b == b' ')
        .nth(1)
        .and_then(|target| target.split(|&b| b == b'?').next())
        .filter(|p| p.starts_with(b"/") && p.iter().all(|b| b.is_ascii_graphic()))
        .map(|p| String::from_utf8_lossy(p).to_string())
        .unwrap_or_else(|| "/".to_string())
}

enum State {
    /// Reading a request head.
    Head(Scan),
    /// The head is complete: the body (the edge bounds its time) and the answer.
    Request { line: Vec<u8> },
    /// Answered: the next byte read starts the next request's head.
    Idle,
    /// Writing the refusal, then every read fails.
    Refusing { answer: Vec<u8>, written: usize },
    /// Writing a problem in place of pingora's bare error page (`swallowed`: the length of
    /// pingora's write, reported as written once the problem is out).
    Replacing {
        answer: Vec<u8>,
        written: usize,
        swallowed: usize,
    },
    /// Refused or closed: every read fails.
    Done,
}

/// A connection whose request heads must arrive whole within the deadline.
pub struct HeadGuard {
    inner: Stream,
    rt: Arc<Runtime>,
    timeout: Duration,
    state: State,
    deadline: Pin<Box<Sleep>>,
}

impl fmt::Debug for HeadGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeadGuard")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

fn refused() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "request head refused by the edge")
}

impl HeadGuard {
    /// The first request's deadline runs from now (the accept).
    pub fn new(inner: Stream, rt: Arc<Runtime>, timeout: Duration) -> HeadGuard {
        HeadGuard {
            inner,
            rt,
            timeout,
            state: State::Head(Scan::default()),
            deadline: Box::pin(tokio::time::sleep(timeout)),
        }
    }

    /// Starts writing the refusal of the head being read, or gives up silently when the
    /// client sent nothing at all.
    fn refuse(&mut self, kind: Kind) {
        let State::Head(scan) = &self.state else {
            self.state = State::Done;
            return;
        };
        if !scan.started {
            // Nothing but empty lines (or nothing at all) came: there is no request to
            // answer, the connection is just closed.
            self.state = State::Done;
            return;
        }
        let detail = match kind {
            Kind::RequestTimeout => format!(
                "The request head was not received within {} ms",
                self.timeout.as_millis()
            ),
            _ => "The request head is over 1 MiB or has more than 256 header fields".to_string(),
        };
        let answer = self.refusal(kind, &scan.path(), &detail, "");
        self.state = State::Refusing { answer, written: 0 };
    }

    /// The whole HTTP/1.1 answer: the edge's usual headers, `extra` ones (whole lines), a
    /// problem body, and `Connection: close` (the rest of the head is never read).
    fn refusal(&self, kind: Kind, instance: &str, detail: &str, extra: &str) -> Vec<u8> {
        let trace_id = crate::pipeline::new_trace_id();
        let status_text = http::StatusCode::from_u16(kind.status())
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("Error");
        let body =
            Problem::new(kind, detail).body(&self.rt.cfg.problem_type_base, instance, &trace_id);
        let version = self.rt.plan.load().versions.current.clone();
        let date = chrono::Utc::now().format("%a, %d %b %Y %H:%M:%S GMT");
        crate::metrics::REQUESTS
            .with_label_values(&["none", "other", "4xx"])
            .inc();
        tracing::info!(
            target: "access",
            trace_id = %trace_id,
            route = "none",
            status = kind.status(),
            "request refused before the edge saw it"
        );
        let mut out = format!(
            "HTTP/1.1 {} {status_text}\r\ncontent-type: application/problem+json\r\ncontent-length: {}\r\ntrace-id: {trace_id}\r\nversion: {version}\r\ncache-control: no-store\r\ndate: {date}\r\n{extra}connection: close\r\n\r\n",
            kind.status(),
            body.len()
        )
        .into_bytes();
        out.extend_from_slice(&body);
        out
    }

    /// Drives the refusal's write; `Ready` with the error pingora then sees.
    fn poll_refusal(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            let State::Refusing { answer, written } = &mut self.state else {
                return Poll::Ready(Err(refused()));
            };
            if *written == answer.len() {
                let flushed = Pin::new(&mut self.inner).poll_flush(cx);
                if flushed.is_pending() {
                    return Poll::Pending;
                }
                self.state = State::Done;
                return Poll::Ready(Err(refused()));
            }
            match Pin::new(&mut self.inner).poll_write(cx, &answer[*written..]) {
                Poll::Ready(Ok(n)) if n > 0 => *written += n,
                Poll::Ready(_) => {
                    self.state = State::Done;
                    return Poll::Ready(Err(refused()));
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

fn is_interim(buf: &[u8]) -> bool {
    buf.starts_with(b"HTTP/1.1 1") || buf.starts_with(b"HTTP/1.0 1")
}

impl HeadGuard {
    /// pingora answers some heads itself, before any `ProxyHttp` hook runs, with a bare
    /// page: 400 when its parser refuses the head, 405 for `CONNECT`. Such a page (an
    /// answer without the `trace-id` every edge answer carries) is replaced by the problem.
    fn replacement(&self, buf: &[u8]) -> Option<Vec<u8>> {
        let (kind, detail, extra) = if buf.starts_with(b"HTTP/1.1 400 ") {
            (
                Kind::InvalidRequest,
                "The request line or a header field is malformed",
                "",
            )
        } else if buf.starts_with(b"HTTP/1.1 405 ") {
            (
                Kind::MethodNotAllowed,
                "CONNECT is not supported",
                "allow: GET, HEAD, POST, PATCH, DELETE, OPTIONS\r\n",
            )
        } else {
            return None;
        };
        let path = match &self.state {
            State::Head(scan) => scan.path(),
            State::Request { line } => path_of(line),
            _ => return None,
        };
        let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
        let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
        if head.contains("\r\ntrace-id:") {
            return None;
        }
        Some(self.refusal(kind, &path, detail, extra))
    }
}

impl AsyncRead for HeadGuard {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            match this.state {
                State::Refusing { .. } | State::Replacing { .. } | State::Done => {
                    return this.poll_refusal(cx)
                }
                State::Head(_) | State::Request { .. } | State::Idle => {}
            }
            let before = buf.filled().len();
            match Pin::new(&mut this.inner).poll_read(cx, buf) {
                Poll::Ready(Ok(())) => {
                    if buf.filled().len() == before {
                        return Poll::Ready(Ok(())); // end of stream
                    }
                    if matches!(this.state, State::Idle) {
                        // Stray empty lines after a request (old clients send a CRLF after a
                        // body) do not start the next head: the connection stays idle.
                        if buf.filled()[before..]
                            .iter()
                            .all(|b| *b == b'\r' || *b == b'\n')
                        {
                            return Poll::Ready(Ok(()));
                        }
                        this.state = State::Head(Scan::default());
                        this.deadline.as_mut().reset(Instant::now() + this.timeout);
                    }
                    let State::Head(scan) = &mut this.state else {
                        return Poll::Ready(Ok(()));
                    };
                    match scan.feed(&buf.filled()[before..]) {
                        // A client whose bytes always arrive before they are polled for
                        // never lets the timer fire: its deadline is checked here too.
                        Scanned::More if this.deadline.is_elapsed() => {
                            buf.set_filled(before);
                            this.refuse(Kind::RequestTimeout);
                        }
                        Scanned::More => return Poll::Ready(Ok(())),
                        Scanned::Complete => {
                            this.state = State::Request {
                                line: std::mem::take(&mut scan.line),
                            };
                            return Poll::Ready(Ok(()));
                        }
                        Scanned::TooLarge => {
                            // pingora never sees these bytes: it gets the refusal's error.
                            buf.set_filled(before);
                            this.refuse(Kind::RequestHeaderFieldsTooLarge);
                        }
                    }
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    if !matches!(this.state, State::Head(_))
                        || this.deadline.as_mut().poll(cx).is_pending()
                    {
                        return Poll::Pending;
                    }
                    this.refuse(Kind::RequestTimeout);
                }
            }
        }
    }
}

impl AsyncWrite for HeadGuard {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Some(replacement) = this.replacement(buf) {
            this.state = State::Replacing {
                answer: replacement,
                written: 0,
                swallowed: buf.len(),
            };
        }
        match &mut this.state {
            State::Replacing {
                answer,
                written,
                swallowed,
            } => loop {
                if *written == answer.len() {
                    let n = *swallowed;
                    // Whatever pingora writes after its page is dropped: the problem is
                    // the whole answer, and the connection closes.
                    this.state = State::Done;
                    return Poll::Ready(Ok(n));
                }
                match Pin::new(&mut this.inner).poll_write(cx, &answer[*written..]) {
                    Poll::Ready(Ok(n)) if n > 0 => *written += n,
                    Poll::Ready(Ok(_)) => return Poll::Ready(Err(refused())),
                    other => return other,
                }
            },
            State::Done => return Poll::Ready(Ok(buf.len())),
            State::Head(_) | State::Request { .. } if !is_interim(buf) => {
                // An answer (not an interim 1xx) ends the request: the next read starts a
                // new head.
                this.state = State::Idle;
            }
            _ => {}
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        // Written one buffer at a time, so that `poll_write` sees where answers start.
        match bufs.iter().find(|b| !b.is_empty()) {
            Some(b) => self.poll_write(cx, b),
            None => Poll::Ready(Ok(0)),
        }
    }

    fn is_write_vectored(&self) -> bool {
        false
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[async_trait]
impl Shutdown for HeadGuard {
    async fn shutdown(&mut self) {
        self.inner.shutdown().await;
    }
}

impl UniqueID for HeadGuard {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for HeadGuard {
    fn get_ssl(&self) -> Option<&pingora::protocols::tls::TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<pingora::protocols::tls::SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<pingora::protocols::ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for HeadGuard {
    fn get_timing_digest(&self) -> Vec<Option<pingora::protocols::TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for HeadGuard {
    fn get_proxy_digest(&self) -> Option<Arc<pingora::protocols::raw_connect::ProxyDigest>> {
        self.inner.get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: pingora::protocols::raw_connect::ProxyDigest) {
        self.inner.set_proxy_digest(digest);
    }
}

impl GetSocketDigest for HeadGuard {
    fn get_socket_digest(&self) -> Option<Arc<pingora::protocols::SocketDigest>> {
        self.inner.get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: pingora::protocols::SocketDigest) {
        self.inner.set_socket_digest(digest);
    }
}

#[async_trait]
impl Peek for HeadGuard {
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        self.inner.try_peek(buf).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_all(chunks: &[&[u8]]) -> (Scanned, Scan) {
        let mut s = Scan::default();
        for c in chunks {
            match s.feed(c) {
                Scanned::More => {}
                done => return (done, s),
            }
        }
        (Scanned::More, s)
    }

    /// The byte-at-a-time scan `Scan::feed` replaced: the reference it must agree with.
    fn feed_bytewise(s: &mut Scan, bytes: &[u8]) -> Scanned {
        for &b in bytes {
            s.seen += 1;
            if s.seen > MAX_RAW_HEAD {
                return Scanned::TooLarge;
            }
            if !s.started {
                if b == b'\r' || b == b'\n' {
                    continue;
                }
                s.started = true;
            }
            if s.lines == 0 && s.line.len() < MAX_LINE_KEPT && b != b'\r' && b != b'\n' {
                s.line.push(b);
            }
            match b {
                b'\n' if s.at_line_start => return Scanned::Complete,
                b'\n' => {
                    s.lines += 1;
                    s.at_line_start = true;
                }
                b'\r' if s.at_line_start => {}
                _ => {
                    if s.at_line_start && s.lines > MAX_FIELDS {
                        return Scanned::TooLarge;
                    }
                    s.at_line_start = false;
                }
            }
        }
        Scanned::More
    }

    proptest::proptest! {
        #[test]
        fn the_line_scan_agrees_with_the_byte_scan(
            parts in proptest::collection::vec(
                proptest::collection::vec(
                    proptest::sample::select(vec![b'\r', b'\n', b'a', b':', b' ', b'/', b'?']),
                    0..40,
                ),
                1..6,
            ),
        ) {
            let (mut fast, mut slow) = (Scan::default(), Scan::default());
            for p in &parts {
                let (a, b) = (fast.feed(p), feed_bytewise(&mut slow, p));
                proptest::prop_assert_eq!(&a, &b);
                if a != Scanned::More {
                    break;
                }
                proptest::prop_assert_eq!(fast.seen, slow.seen);
                proptest::prop_assert_eq!(fast.started, slow.started);
                proptest::prop_assert_eq!(fast.lines, slow.lines);
                proptest::prop_assert_eq!(fast.at_line_start, slow.at_line_start);
                proptest::prop_assert_eq!(&fast.line, &slow.line);
            }
        }
    }

    #[test]
    fn a_head_ends_at_its_empty_line_however_it_is_split() {
        let head = b"GET /v1/contacts?limit=1 HTTP/1.1\r\nhost: e\r\n\r\n";
        for split in 0..head.len() {
            let (done, s) = feed_all(&[&head[..split], &head[split..]]);
            assert_eq!(done, Scanned::Complete, "split at {split}");
            assert_eq!(s.path(), "/v1/contacts");
        }
        // Bare LF line endings, as pingora's parser accepts them.
        assert_eq!(
            feed_all(&[b"GET / HTTP/1.1\nhost: e\n\n"]).0,
            Scanned::Complete
        );
        // Empty lines before the request line do not end a head.
        assert_eq!(
            feed_all(&[b"\r\n\r\n\r\nGET / HTTP/1.1\r\n"]).0,
            Scanned::More
        );
        assert_eq!(
            feed_all(&[b"GET / HTTP/1.1\r\nhost: e\r\n"]).0,
            Scanned::More
        );
    }

    #[test]
    fn a_head_over_the_raw_bound_or_with_too_many_fields_is_too_large() {
        let big = vec![b'a'; MAX_RAW_HEAD];
        assert_eq!(
            feed_all(&[b"GET / HTTP/1.1\r\nx: ", &big]).0,
            Scanned::TooLarge
        );
        let mut head = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..MAX_FIELDS {
            head.extend_from_slice(format!("x-{i}: 1\r\n").as_bytes());
        }
        let (done, _) = feed_all(&[&head, b"\r\n"]);
        assert_eq!(done, Scanned::Complete, "256 fields are fine");
        let (done, _) = feed_all(&[&head, b"x-last: 1\r\n\r\n"]);
        assert_eq!(done, Scanned::TooLarge);
    }

    #[test]
    fn the_instance_is_the_path_when_the_request_line_came() {
        assert_eq!(
            feed_all(&[b"GET /v1/deals/x?a=b HTTP/1.1\r\nho"]).1.path(),
            "/v1/deals/x"
        );
        // Not a whole request line yet: the path may be cut.
        assert_eq!(feed_all(&[b"GET /v1/deals/x?a=b HT"]).1.path(), "/");
        assert_eq!(feed_all(&[b"GE"]).1.path(), "/");
        assert_eq!(feed_all(&[b"GET * HTTP/1.1\r\n"]).1.path(), "/");
        assert_eq!(feed_all(&[b"GET /a\x01b HTTP/1.1\r\n"]).1.path(), "/");
    }
}
