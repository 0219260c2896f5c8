//! The HTTP/1.1 client of the upstream pools: one call at a time on a kept-alive
//! connection, driven in the calling request's own task.
//!
//! Why not hyper-util's pooled client (used before): it runs every connection
//! in a task of its own, so each call crossed tasks twice through channels, and it built an
//! `http::Request` and a body per call — ~22.7k of a GET's ~196k instructions under
//! callgrind (`benches/README.md`). Here the request head is written from one buffer, the
//! answer is read into one buffer and parsed with `httparse` (the parser hyper and
//! pingora use), and each instance keeps its idle connections (at most
//! `pool_idle_per_host`, for 30 s; a connection the service closed meanwhile is noticed
//! before it is reused). Framing follows RFC 9112 §6.3: no body for `HEAD`, 1xx, 204 and
//! 304; `Transfer-Encoding: chunked`; `Content-Length`; else until the connection closes
//! (never reused). Interim 1xx answers are skipped.
//!
//! Deadlines are the caller's (the call's timeout wraps connect, write and read); a call
//! dropped half-way drops its connection with it.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// An idle connection is closed after this long unused.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// An answer's head (status line and fields) longer than this is refused.
const MAX_HEAD: usize = 64 * 1024;
/// Header fields an answer may have (hyper's default too).
const MAX_FIELDS: usize = 100;
/// A chunk-size line or the trailer section longer than this is refused.
const MAX_CHUNK_LINE: usize = 4 * 1024;
/// Bytes read from the socket at a time.
const READ_SIZE: usize = 16 * 1024;
/// A request body up to this size goes out in the head's write.
const SMALL_BODY: usize = 16 * 1024;

/// Why a call got no (whole) answer.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Failure {
    /// No connection could be made: nothing reached the service.
    Connect,
    /// The request could not be written or no whole, valid answer head came back.
    Closed,
    /// The answer's body broke off or was malformed.
    Incomplete,
}

/// One connection to an instance, with the bytes read from it and not used yet.
pub(super) struct Conn {
    stream: TcpStream,
    buf: BytesMut,
}

/// An instance's idle connections, most recently used last.
pub(super) struct Idle {
    conns: Mutex<VecDeque<(Conn, Instant)>>,
    max: usize,
}

impl Idle {
    pub(super) fn new(max: usize) -> Idle {
        Idle {
            conns: Mutex::new(VecDeque::new()),
            max,
        }
    }

    /// The most recently used idle connection that is still open, if any.
    fn take(&self) -> Option<Conn> {
        let mut stale = Vec::new();
        let found = {
            let mut idle = self.conns.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                match idle.pop_back() {
                    Some((c, since)) if since.elapsed() < IDLE_TIMEOUT && c.open() => {
                        break Some(c)
                    }
                    Some((c, _)) => stale.push(c),
                    None => break None,
                }
            }
        };
        drop(stale); // closed outside the lock
        found
    }

    /// Keeps a connection whose last answer was read whole, unless the pool is full.
    fn put(&self, conn: Conn) {
        let now = Instant::now();
        let mut idle = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        while idle
            .front()
            .is_some_and(|(_, since)| now.duration_since(*since) >= IDLE_TIMEOUT)
        {
            idle.pop_front();
        }
        if idle.len() < self.max {
            idle.push_back((conn, now));
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.conns.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

impl Conn {
    /// Still open and silent: a service that closed it (or sent anything unasked) has
    /// made it unusable.
    fn open(&self) -> bool {
        let mut probe = [0u8; 1];
        matches!(self.stream.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
    }

    /// Reads what the service sent next into `buf`; 0 at the end of the connection.
    async fn fill(&mut self) -> std::io::Result<usize> {
        self.buf.reserve(READ_SIZE);
        self.stream.read_buf(&mut self.buf).await
    }

    /// [`Conn::fill`] where more bytes must come: a failed read or the connection's end is
    /// `fail`.
    async fn more(&mut self, fail: Failure) -> Result<(), Failure> {
        match self.fill().await {
            Ok(n) if n > 0 => Ok(()),
            _ => Err(fail),
        }
    }

    /// Moves up to `left` body bytes (at least one, reading if none is buffered) to `out`;
    /// how many.
    async fn take_into(&mut self, left: u64, out: &mut Vec<u8>) -> Result<u64, Failure> {
        if self.buf.is_empty() {
            self.more(Failure::Incomplete).await?;
        }
        let take = self
            .buf
            .len()
            .min(usize::try_from(left).unwrap_or(usize::MAX));
        out.extend_from_slice(&self.buf[..take]);
        self.buf.advance(take);
        Ok(take as u64)
    }
}

/// One request, as the transport sends it.
pub(super) struct Request<'a> {
    pub(super) method: &'a Method,
    pub(super) path_and_query: &'a str,
    pub(super) authority: &'a str,
    pub(super) traceparent: &'a str,
    pub(super) headers: &'a [(HeaderName, HeaderValue)],
    pub(super) body: Option<&'a [u8]>,
}

impl Request<'_> {
    /// The request head (and a small body) in one buffer.
    fn encode(&self) -> Vec<u8> {
        let body = self.body.unwrap_or_default();
        let fields: usize = self
            .headers
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len() + 4)
            .sum();
        let small_body = body.len() <= SMALL_BODY;
        let mut out = Vec::with_capacity(
            self.path_and_query.len()
                + self.authority.len()
                + self.traceparent.len()
                + fields
                + 96
                + if small_body { body.len() } else { 0 },
        );
        out.extend_from_slice(self.method.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.path_and_query.as_bytes());
        out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
        out.extend_from_slice(self.authority.as_bytes());
        out.extend_from_slice(b"\r\ntraceparent: ");
        out.extend_from_slice(self.traceparent.as_bytes());
        out.extend_from_slice(b"\r\n");
        for (k, v) in self.headers {
            out.extend_from_slice(k.as_str().as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(v.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        // A body's length; `0` where the method expects a body and there is none.
        let expects_body = matches!(*self.method, Method::POST | Method::PUT | Method::PATCH);
        if !body.is_empty() || expects_body {
            out.extend_from_slice(b"content-length: ");
            out.extend_from_slice(body.len().to_string().as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        if small_body {
            out.extend_from_slice(body);
        }
        out
    }
}

/// How an answer's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Empty,
    Length(u64),
    Chunked(Chunk),
    /// Until the connection closes.
    Close,
}

/// Where a chunked body's reader is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    Size,
    Data(u64),
    DataEnd,
    Trailers,
}

/// An answer's head, and the reader of its body.
pub(super) struct Answer {
    pub(super) status: u16,
    pub(super) headers: HeaderMap,
    framing: Framing,
    /// The connection may carry another call once the body is read.
    reusable: bool,
    conn: Option<Conn>,
}

/// Sends one request on an idle connection of the instance or a new one (made within
/// `connect_timeout`) and reads the answer's head.
pub(super) async fn send(
    idle: &Idle,
    connect_timeout: Duration,
    req: &Request<'_>,
) -> Result<Answer, Failure> {
    let mut conn = match idle.take() {
        Some(c) => c,
        None => connect(req.authority, connect_timeout).await?,
    };
    let head = req.encode();
    conn.stream
        .write_all(&head)
        .await
        .map_err(|_| Failure::Closed)?;
    if let Some(body) = req.body.filter(|b| b.len() > SMALL_BODY) {
        conn.stream
            .write_all(body)
            .await
            .map_err(|_| Failure::Closed)?;
    }
    read_head(conn, req.method == Method::HEAD).await
}

async fn connect(authority: &str, timeout: Duration) -> Result<Conn, Failure> {
    let stream = match tokio::time::timeout(timeout, TcpStream::connect(authority)).await {
        Ok(Ok(s)) => s,
        _ => return Err(Failure::Connect),
    };
    let _ = stream.set_nodelay(true);
    Ok(Conn {
        stream,
        buf: BytesMut::with_capacity(READ_SIZE),
    })
}

/// Reads the answer's head (skipping interim 1xx answers) and decides its framing.
async fn read_head(mut conn: Conn, head_request: bool) -> Result<Answer, Failure> {
    loop {
        let (len, status, http10, headers) = loop {
            if let Some(head) = parse_head(&conn.buf)? {
                break head;
            }
            conn.more(Failure::Closed).await?;
        };
        conn.buf.advance(len);
        if (100..200).contains(&status) {
            if status == 101 {
                return Err(Failure::Closed);
            }
            continue; // interim answer: the final one follows
        }
        let framing = framing(&headers, status, head_request)?;
        let close = http10 || has_token(&headers, "close");
        return Ok(Answer {
            status,
            headers,
            framing,
            reusable: !close && framing != Framing::Close,
            conn: Some(conn),
        });
    }
}

/// A whole head at the start of `buf`: its length, status, whether it is HTTP/1.0, and
/// its fields; `None` while it is incomplete. (Not async: the parser's field array is
/// never held across an `.await`, which would grow every request's future by 3 KiB.)
fn parse_head(buf: &[u8]) -> Result<Option<(usize, u16, bool, HeaderMap)>, Failure> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
    let mut resp = httparse::Response::new(&mut fields);
    match resp.parse(buf) {
        Ok(httparse::Status::Complete(len)) => {
            let status = resp.code.ok_or(Failure::Closed)?;
            let http10 = resp.version == Some(0);
            let mut headers = HeaderMap::with_capacity(resp.headers.len());
            for f in resp.headers.iter() {
                let name =
                    HeaderName::from_bytes(f.name.as_bytes()).map_err(|_| Failure::Closed)?;
                let value = HeaderValue::from_bytes(f.value).map_err(|_| Failure::Closed)?;
                headers.append(name, value);
            }
            Ok(Some((len, status, http10, headers)))
        }
        Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => Ok(None),
        _ => Err(Failure::Closed),
    }
}

/// RFC 9112 §6.3.
fn framing(headers: &HeaderMap, status: u16, head_request: bool) -> Result<Framing, Failure> {
    if head_request || status == 204 || status == 304 {
        return Ok(Framing::Empty);
    }
    if let Some(te) = headers
        .get_all(http::header::TRANSFER_ENCODING)
        .iter()
        .next_back()
    {
        let last = te
            .to_str()
            .map_err(|_| Failure::Closed)?
            .rsplit(',')
            .next()
            .unwrap_or_default()
            .trim();
        return Ok(if last.eq_ignore_ascii_case("chunked") {
            Framing::Chunked(Chunk::Size)
        } else {
            Framing::Close
        });
    }
    let mut length = None;
    for v in headers.get_all(http::header::CONTENT_LENGTH) {
        let n = v
            .to_str()
            .ok()
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or(Failure::Closed)?;
        if length.is_some_and(|m| m != n) {
            return Err(Failure::Closed);
        }
        length = Some(n);
    }
    Ok(match length {
        Some(0) => Framing::Empty,
        Some(n) => Framing::Length(n),
        None => Framing::Close,
    })
}

/// A `Connection` field lists `token`.
fn has_token(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

impl Answer {
    /// The body's length when the answer announces it.
    pub(super) fn announced(&self) -> Option<u64> {
        match self.framing {
            Framing::Empty => Some(0),
            Framing::Length(n) => Some(n),
            _ => None,
        }
    }

    /// Appends the next piece of the body to `out`; `Ok(false)` once the body is whole
    /// (the connection then goes back to `idle` when it can carry another call).
    pub(super) async fn read(&mut self, out: &mut Vec<u8>, idle: &Idle) -> Result<bool, Failure> {
        let Some(conn) = self.conn.as_mut() else {
            return Ok(false);
        };
        let more = match &mut self.framing {
            Framing::Empty => false,
            Framing::Length(left) => {
                *left -= conn.take_into(*left, out).await?;
                *left > 0
            }
            Framing::Close => {
                let ended =
                    conn.buf.is_empty() && conn.fill().await.map_err(|_| Failure::Incomplete)? == 0;
                if ended {
                    false
                } else {
                    out.extend_from_slice(&conn.buf);
                    conn.buf.clear();
                    true
                }
            }
            Framing::Chunked(state) => chunked(conn, state, out).await?,
        };
        if !more {
            let conn = self.conn.take();
            // Bytes past the answer's end: the service is out of step; never reused.
            if let Some(c) = conn.filter(|c| self.reusable && c.buf.is_empty()) {
                idle.put(c);
            }
        }
        Ok(more)
    }
}

/// One step of a chunked body: `Ok(false)` after the last chunk and its trailers.
async fn chunked(conn: &mut Conn, state: &mut Chunk, out: &mut Vec<u8>) -> Result<bool, Failure> {
    loop {
        match *state {
            Chunk::Size => {
                let size = line(conn, chunk_size).await?.ok_or(Failure::Incomplete)?;
                *state = if size == 0 {
                    Chunk::Trailers
                } else {
                    Chunk::Data(size)
                };
            }
            Chunk::Data(left) => {
                let left = left - conn.take_into(left, out).await?;
                *state = if left == 0 {
                    Chunk::DataEnd
                } else {
                    Chunk::Data(left)
                };
                return Ok(true);
            }
            Chunk::DataEnd => {
                if !line(conn, <[u8]>::is_empty).await? {
                    return Err(Failure::Incomplete);
                }
                *state = Chunk::Size;
            }
            Chunk::Trailers => {
                let mut total = 0;
                loop {
                    let len = line(conn, <[u8]>::len).await?;
                    if len == 0 {
                        return Ok(false);
                    }
                    total += len;
                    if total > MAX_CHUNK_LINE {
                        return Err(Failure::Incomplete);
                    }
                }
            }
        }
    }
}

/// The next line of the body's framing (CRLF or bare LF), without its end, given to
/// `read` and then consumed.
async fn line<R>(conn: &mut Conn, read: impl FnOnce(&[u8]) -> R) -> Result<R, Failure> {
    loop {
        if let Some(end) = memchr::memchr(b'\n', &conn.buf) {
            let l = &conn.buf[..end];
            let got = read(l.strip_suffix(b"\r").unwrap_or(l));
            conn.buf.advance(end + 1);
            return Ok(got);
        }
        if conn.buf.len() > MAX_CHUNK_LINE {
            return Err(Failure::Incomplete);
        }
        conn.more(Failure::Incomplete).await?;
    }
}

/// A chunk-size line's size (hex, extensions after `;` ignored).
fn chunk_size(line: &[u8]) -> Option<u64> {
    let digits = line.split(|b| *b == b';').next().unwrap_or_default();
    let digits = std::str::from_utf8(digits).ok()?;
    let digits = digits.trim_matches(|c| c == ' ' || c == '\t');
    if digits.is_empty() || digits.len() > 15 {
        return None;
    }
    u64::from_str_radix(digits, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A one-connection server that answers each request (read up to its blank line)
    /// with the next of `answers`, then closes.
    async fn serve(answers: Vec<&'static [u8]>) -> (String, tokio::task::JoinHandle<usize>) {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = l.local_addr().expect("addr").to_string();
        let task = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.expect("accept");
            let mut served = 0;
            for a in answers {
                let mut got = Vec::new();
                let mut b = [0u8; 1024];
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = s.read(&mut b).await.expect("read");
                    if n == 0 {
                        return served;
                    }
                    got.extend_from_slice(&b[..n]);
                }
                s.write_all(a).await.expect("write");
                served += 1;
            }
            served
        });
        (addr, task)
    }

    async fn call(idle: &Idle, addr: &str, method: &Method) -> Result<(u16, Vec<u8>), Failure> {
        let req = Request {
            method,
            path_and_query: "/x",
            authority: addr,
            traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            headers: &[],
            body: None,
        };
        let mut a = send(idle, Duration::from_secs(1), &req).await?;
        let mut out = Vec::new();
        while a.read(&mut out, idle).await? {}
        Ok((a.status, out))
    }

    #[tokio::test]
    async fn length_chunked_and_interim_answers_share_one_kept_alive_connection() {
        let (addr, server) = serve(vec![
            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello",
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\ntransfer-encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nx-trailer: 1\r\n\r\n",
            b"HTTP/1.1 204 No Content\r\ncontent-length: 3\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\n",
        ])
        .await;
        let idle = Idle::new(4);
        assert_eq!(
            call(&idle, &addr, &Method::GET).await,
            Ok((200, b"hello".to_vec()))
        );
        assert_eq!(idle.len(), 1, "the connection is kept");
        assert_eq!(
            call(&idle, &addr, &Method::POST).await,
            Ok((201, b"abcde".to_vec()))
        );
        assert_eq!(
            call(&idle, &addr, &Method::DELETE).await,
            Ok((204, Vec::new()))
        );
        // HEAD: the length describes the body a GET would get; none follows.
        assert_eq!(
            call(&idle, &addr, &Method::HEAD).await,
            Ok((200, Vec::new()))
        );
        assert_eq!(
            server.await.expect("server"),
            4,
            "all four on one connection"
        );
    }

    #[tokio::test]
    async fn a_closed_idle_connection_is_not_reused_and_close_framing_is_never_kept() {
        let (addr, server) = serve(vec![b"HTTP/1.1 200 OK\r\n\r\nuntil close"]).await;
        let idle = Idle::new(4);
        let mut out = Vec::new();
        let req = Request {
            method: &Method::GET,
            path_and_query: "/",
            authority: &addr,
            traceparent: "t",
            headers: &[],
            body: None,
        };
        let mut a = send(&idle, Duration::from_secs(1), &req)
            .await
            .expect("answer");
        // The server closes after its answer: the body ends there.
        assert_eq!(server.await.expect("server"), 1);
        while a.read(&mut out, &idle).await.expect("body") {}
        assert_eq!(out, b"until close");
        assert_eq!(
            idle.len(),
            0,
            "a close-delimited answer's connection is not kept"
        );

        // A kept connection the service closed is noticed before reuse.
        let (addr, server) = serve(vec![b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"]).await;
        assert_eq!(
            call(&idle, &addr, &Method::GET).await,
            Ok((200, Vec::new()))
        );
        assert_eq!(idle.len(), 1);
        assert_eq!(server.await.expect("server"), 1); // the server task ends: its socket closes
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(idle.take().is_none(), "the closed connection is dropped");
    }

    #[tokio::test]
    async fn broken_answers_are_failures_of_their_kind() {
        let cases: [(&'static [u8], Failure); 6] = [
            (
                b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort",
                Failure::Incomplete,
            ),
            (
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
                Failure::Incomplete,
            ),
            (
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabcX\r\n",
                Failure::Incomplete,
            ),
            (
                b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\nab",
                Failure::Closed,
            ),
            (
                b"HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n",
                Failure::Closed,
            ),
            (b"not http at all\r\n\r\n", Failure::Closed),
        ];
        for (answer, want) in cases {
            let (addr, _server) = serve(vec![answer]).await;
            let idle = Idle::new(4);
            let got = call(&idle, &addr, &Method::GET).await;
            assert_eq!(got, Err(want), "{}", String::from_utf8_lossy(answer));
            assert_eq!(idle.len(), 0);
        }
        // Nothing listening: a connect failure.
        let port = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        let idle = Idle::new(4);
        let got = call(&idle, &format!("127.0.0.1:{port}"), &Method::GET).await;
        assert_eq!(got, Err(Failure::Connect));
    }

    #[test]
    fn the_request_head_names_host_trace_fields_and_length() {
        let headers = [(
            HeaderName::from_static("x-pc-tenant"),
            HeaderValue::from_static("1"),
        )];
        let req = Request {
            method: &Method::POST,
            path_and_query: "/api/v3/contacts?a=1",
            authority: "127.0.0.1:9",
            traceparent: "00-t-s-01",
            headers: &headers,
            body: Some(b"{}"),
        };
        assert_eq!(
            String::from_utf8(req.encode()).expect("utf8"),
            "POST /api/v3/contacts?a=1 HTTP/1.1\r\nhost: 127.0.0.1:9\r\ntraceparent: 00-t-s-01\r\nx-pc-tenant: 1\r\ncontent-length: 2\r\n\r\n{}"
        );
        let get = Request {
            method: &Method::GET,
            body: None,
            ..req
        };
        assert!(!String::from_utf8(get.encode())
            .expect("utf8")
            .contains("content-length"));
    }
}
