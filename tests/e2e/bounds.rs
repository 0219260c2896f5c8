//! Bounds on what a client can pin, each attack reproduced against a real edge: HTTP/2
//! streams whose flow-control window stays at 0, HTTP/1 clients that never read their
//! answer, pipelined HTTP/1.1 requests, many large upstream answers at once. Outcomes are
//! asserted within generous deadlines (connections closed, streams reset, RSS growth
//! bounded), never timings.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{sample, World};
use crate::tls::{client_config, start_tls_world_with, Ca};

/// The edge's resident set, in MiB.
pub fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

async fn sessions(w: &World, protocol: &str) -> f64 {
    let m = w.metrics().await;
    sample(
        &m,
        &format!("prospect_edge_downstream_sessions{{protocol=\"{protocol}\"}}"),
    )
    .unwrap_or(-1.0)
}

/// Polls until the `protocol` session gauge is at most `left` (the test client's own
/// pooled keep-alive connections), or panics after `within`.
async fn until_sessions_at_most(
    w: &World,
    protocol: &str,
    left: f64,
    within: Duration,
    what: &str,
) {
    let until = Instant::now() + within;
    loop {
        let n = sessions(w, protocol).await;
        if (0.0..=left).contains(&n) {
            return;
        }
        assert!(
            Instant::now() < until,
            "{what}: {n} {protocol} sessions still open"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// HTTP/2 over TLS with an initial stream window of 0 that is never opened: every answer
/// stays in the edge. 20 connections × 100 streams on `/v1/openapi.json` (no token needed)
/// pinned 670 MB for as long as the client liked; now each stream's write fails at the
/// write deadline, at most `h2_streams_in_flight` streams are served at once, and the edge
/// gives everything back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_streams_with_a_zero_window_are_reset_and_memory_stays_bounded() {
    let ca = Ca::new("bounds CA");
    let leaf = ca.leaf("edge");
    let (w, _certs) = start_tls_world_with(&leaf, BOUNDS_CONFIG).await;
    let tls = w.edge.tls.expect("tls listener");
    let pid = w.edge.pid();
    let doc = w.raw("GET", "/v1/openapi.json", &[], None).await;
    assert_eq!(doc.status, 200);
    let rss_before = rss_mib(pid);

    let cfg = Arc::new(client_config(&ca.pem(), &[b"h2"]));
    let (conns, streams) = (20, 100);
    let mut pending = Vec::new();
    let mut drivers = Vec::new();
    for _ in 0..conns {
        let tcp = tokio::net::TcpStream::connect(tls).await.expect("connect");
        let stream = tokio_rustls::TlsConnector::from(cfg.clone())
            .connect(ServerName::IpAddress(Ipv4Addr::LOCALHOST.into()), tcp)
            .await
            .expect("handshake");
        let (sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .initial_stream_window_size(0)
            .handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
            .await
            .expect("h2 handshake");
        drivers.push(tokio::spawn(conn));
        for _ in 0..streams {
            let mut sender = sender.clone();
            pending.push(tokio::spawn(async move {
                let req = http::Request::get(format!("https://{tls}/v1/openapi.json"))
                    .body(Empty::<Bytes>::new())
                    .expect("request");
                sender.ready().await.ok()?;
                let resp = sender.send_request(req).await.ok()?;
                // Never read: the window stays at 0. Poll the body only to see it end.
                let mut body = resp.into_body();
                let mut got = 0usize;
                while let Some(frame) = body.frame().await {
                    match frame {
                        Ok(f) => got += f.data_ref().map_or(0, |d| d.len()),
                        Err(_) => return Some(got),
                    }
                }
                Some(got)
            }));
        }
    }
    // The attack holds: poll the RSS while the streams are open (the peak is what matters).
    let mut peak = rss_before;
    let until = Instant::now() + Duration::from_secs(90);
    let mut ended = 0;
    while ended < pending.len() {
        peak = peak.max(rss_mib(pid));
        ended = pending.iter().filter(|t| t.is_finished()).count();
        assert!(
            Instant::now() < until,
            "{} of {} zero-window streams still open after 90 s",
            pending.len() - ended,
            pending.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut delivered = 0;
    for t in pending {
        delivered += t.await.ok().flatten().unwrap_or(0);
    }
    assert!(
        delivered < doc.body.len(),
        "a zero window let {delivered} bytes out"
    );
    until_sessions_at_most(&w, "h2", 0.0, Duration::from_secs(30), "after the attack").await;
    let growth = peak - rss_before;
    eprintln!(
        "h2 zero-window: {conns}x{streams} streams on a {} KiB document, RSS {rss_before:.0} MiB -> peak {peak:.0} MiB, after {:.0} MiB",
        doc.body.len() / 1024,
        rss_mib(pid)
    );
    // At most h2_streams_in_flight (200 here) answers are held at once.
    let bound = 200.0 * doc.body.len() as f64 / (1024.0 * 1024.0) * 2.0 + 64.0;
    assert!(
        growth < bound,
        "RSS grew {growth:.0} MiB under the attack (bound {bound:.0} MiB)"
    );
    for d in drivers {
        d.abort();
    }
    // Still serving.
    assert_eq!(
        w.raw("GET", "/v1/openapi.json", &[], None).await.status,
        200
    );
}

/// Config of the bounds tests: short deadlines so that the attacks end within the test.
const BOUNDS_CONFIG: &str =
    "client_write_timeout_ms: 2000\nh2_streams_in_flight: 200\nupstream_answer_budget_bytes: 67108864\n";

/// HTTP/1 clients that send a request and never read the answer (a 4 KiB receive
/// buffer): each is closed at the write deadline instead of held for good, and the
/// kernel lets go of the answer it had queued (the connection is reset rather than left
/// as an orphan behind a zero window).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_clients_that_never_read_are_closed_at_the_write_deadline() {
    let w = World::start_custom(|_| {}, |_, c| c.push_str(BOUNDS_CONFIG)).await;
    let doc = w.raw("GET", "/v1/openapi.json", &[], None).await;
    assert_eq!(doc.status, 200);
    // The test client's own keep-alive connection stays open (idle, not an attacker's).
    let baseline = sessions(&w, "h1").await;
    let pid = w.edge.pid();
    let rss_before = rss_mib(pid);
    let mut socks = Vec::new();
    for _ in 0..20 {
        let s = tokio::net::TcpSocket::new_v4().expect("socket");
        s.set_recv_buffer_size(4096).expect("rcvbuf");
        let mut tcp = s.connect(w.edge.public).await.expect("connect");
        // Several requests, so that the answers exceed what the kernel buffers hold.
        for _ in 0..8 {
            tcp.write_all(b"GET /v1/openapi.json HTTP/1.1\r\nhost: edge\r\n\r\n")
                .await
                .expect("write");
        }
        socks.push(tcp);
    }
    // Figures for the closing note (not asserted): while the answers are stuck.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let tcp_mem_during = tcp_mem_kib();
    let rss_during = rss_mib(pid);
    until_sessions_at_most(
        &w,
        "h1",
        baseline,
        Duration::from_secs(50),
        "clients that never read",
    )
    .await;
    eprintln!(
        "h1 never-read: 20 clients x 8 answers of {} KiB: edge RSS {rss_before:.0} -> {rss_during:.0} MiB; \
         kernel TCP memory {tcp_mem_during} KiB while they hung",
        doc.body.len() / 1024
    );
    // Each connection was closed by the edge: what is left in the socket, then the end.
    for mut tcp in socks {
        let mut got = 0usize;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(n)) => got += n,
                Err(_) => panic!("the connection is still open"),
            }
        }
        assert!(
            got < 8 * doc.body.len(),
            "every answer was delivered ({got} bytes)"
        );
    }
    eprintln!(
        "h1 never-read: all 20 closed; kernel TCP memory afterwards {} KiB",
        tcp_mem_kib()
    );
    assert!(
        w.counter("prospect_edge_downstream_sessions_ended_total{protocol=\"h1\"}")
            .await
            >= 20
    );
}

/// The kernel's TCP buffer memory, all sockets (`/proc/net/sockstat`, pages of 4 KiB).
fn tcp_mem_kib() -> u64 {
    std::fs::read_to_string("/proc/net/sockstat")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("TCP:"))?.to_string();
            let mut it = line.split_whitespace();
            it.position(|w| w == "mem")?;
            it.next()?.parse::<u64>().ok()
        })
        .map_or(0, |pages| pages * 4)
}

/// Two requests in one write (pipelining): both are answered, in order (RFC 9112 §9.3.2),
/// and the connection stays usable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_answered_in_order() {
    let w = World::start().await;
    let mut tcp = tokio::net::TcpStream::connect(w.edge.public)
        .await
        .expect("connect");
    tcp.write_all(
        b"GET /v1/openapi.json HTTP/1.1\r\nhost: edge\r\n\r\nGET /v1/nowhere HTTP/1.1\r\nhost: edge\r\nversion: 2026-11-01\r\n\r\nGET /docs HTTP/1.1\r\nhost: edge\r\n\r\n",
    )
    .await
    .expect("write");
    let mut buf = Vec::new();
    let mut answers = Vec::new();
    while answers.len() < 3 {
        if let Some((status, head, len)) = next_answer(&buf) {
            answers.push((status, head));
            buf.drain(..len);
            continue;
        }
        let mut chunk = [0u8; 64 * 1024];
        let n = tokio::time::timeout(Duration::from_secs(20), tcp.read(&mut chunk))
            .await
            .expect("answers in time")
            .expect("read");
        assert!(n > 0, "closed after {} answers: {answers:?}", answers.len());
        buf.extend_from_slice(&chunk[..n]);
    }
    assert_eq!(answers[0].0, 200);
    assert!(answers[0].1.contains("content-type: application/json"));
    assert_eq!(answers[1].0, 404);
    assert!(answers[1].1.contains("application/problem+json"));
    assert_eq!(answers[2].0, 200);
    assert!(answers[2].1.contains("text/html"));
}

/// One whole answer at the start of `buf`: (status, lower-cased head, its length).
fn next_answer(buf: &[u8]) -> Option<(u16, String, usize)> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())?;
    if buf.len() < end + 4 + len {
        return None;
    }
    let status = head.get(9..12)?.parse().ok()?;
    Some((status, head, end + 4 + len))
}

/// Many large upstream answers at once: each is under the per-answer cap, their sum is not.
/// The global budget makes calls beyond it wait, then fail 503, and RSS stays bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_large_upstream_answers_stay_within_the_answer_budget() {
    let big = BigUpstream::start(15 * 1024 * 1024).await;
    let w = World::start_custom(
        |_| {},
        move |_, c| {
            let prefix = "  crm-core: { url: \"http://";
            let out: Vec<String> = c
                .lines()
                .map(|l| {
                    if l.starts_with(prefix) {
                        format!(
                            "  crm-core: {{ url: \"http://{}\", connect_timeout_ms: 500, timeout_ms: 30000, pool_idle_per_host: 128 }}",
                            big.addr
                        )
                    } else {
                        l.to_string()
                    }
                })
                .collect();
            *c = out.join("\n") + "\n";
            c.push_str(BOUNDS_CONFIG);
        },
    )
    .await;
    let pid = w.edge.pid();
    let rss_before = rss_mib(pid);
    let w = Arc::new(w);
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let w = w.clone();
        tasks.push(tokio::spawn(async move {
            let path = format!("/v1/contacts/{}", w.id("con", 1, 1));
            w.call(1, 101, "GET", &path, None).await
        }));
    }
    let mut peak = rss_before;
    while !tasks.iter().all(|t| t.is_finished()) {
        peak = peak.max(rss_mib(pid));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut statuses = std::collections::BTreeMap::new();
    for t in tasks {
        let r = t.await.expect("task");
        if r.status == 503 {
            r.assert_problem(503, "upstream-unavailable");
        }
        *statuses.entry(r.status).or_insert(0) += 1;
    }
    eprintln!(
        "64 x 15 MiB upstream answers: RSS {rss_before:.0} MiB -> peak {peak:.0} MiB; answers {statuses:?}"
    );
    let refused = w
        .counter("prospect_edge_upstream_budget_refused_total{service=\"crm-core\"}")
        .await;
    assert!(refused > 0, "the budget refused nothing: {statuses:?}");
    assert!(
        peak - rss_before < 450.0,
        "RSS grew {:.0} MiB",
        peak - rss_before
    );
}

/// An upstream whose every answer is a `len`-byte JSON record, sent slowly enough that
/// many calls overlap.
struct BigUpstream {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for BigUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl BigUpstream {
    async fn start(len: usize) -> BigUpstream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let prefix = br#"{"id":1,"first_name":""#.to_vec();
        let suffix = br#"","email":"big@example.com"}"#.to_vec();
        let pad = len - prefix.len() - suffix.len();
        let body: Arc<Vec<u8>> = Arc::new(
            prefix
                .into_iter()
                .chain(std::iter::repeat_n(b'x', pad))
                .chain(suffix)
                .collect(),
        );
        let task = tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let body = body.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 8192];
                    loop {
                        // One request head per answer (GETs: no body).
                        let mut head = Vec::new();
                        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                            match s.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => head.extend_from_slice(&buf[..n]),
                            }
                        }
                        let h = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                            body.len()
                        );
                        if s.write_all(h.as_bytes()).await.is_err() {
                            return;
                        }
                        for chunk in body.chunks(1024 * 1024) {
                            if s.write_all(chunk).await.is_err() {
                                return;
                            }
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                });
            }
        });
        BigUpstream { addr, task }
    }
}

/// Validly signed tokens that are large in memory (2,800 scopes each, just under the 8 KiB
/// a token may have),
/// each a new token: the verified-token cache keeps them within `token_cache_max_bytes`
/// (weighed by bytes, not only counted), so the edge's memory stays bounded however many
/// arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_large_valid_tokens_stay_within_the_token_cache_bytes() {
    const BOUND: u64 = 8 * 1024 * 1024;
    const TOKENS: usize = 1_000;
    let w = World::start_custom(
        |_| {},
        |_, c| c.push_str(&format!("token_cache_max_bytes: {BOUND}\n")),
    )
    .await;
    let path = format!("/v1/contacts/{}", w.id("con", 1, 1));
    let many_scopes = "x ".repeat(2_800);
    let tokens: Vec<String> = (0..TOKENS)
        .map(|i| {
            let mut m = prospect_edge::token::Mint::new(1, 101);
            m.scope = format!("contact.read {many_scopes}");
            m.client = format!("app-{i}");
            w.token_with(&m)
        })
        .collect();
    assert!(
        tokens[0].len() > 7 * 1024 && tokens[0].len() <= prospect_edge::auth::MAX_TOKEN_LEN,
        "{} bytes",
        tokens[0].len()
    );
    let pid = w.edge.pid();
    let get = |token: &str| {
        let auth = format!("Bearer {token}");
        let path = path.clone();
        let w = &w;
        async move {
            let headers = [
                ("authorization", auth.as_str()),
                ("version", crate::harness::V),
            ];
            w.raw("GET", &path, &headers, None).await
        }
    };
    let r = get(&tokens[0]).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let rss_before = rss_mib(pid);
    let mut peak = rss_before;
    for (i, t) in tokens.iter().enumerate().skip(1) {
        assert_eq!(get(t).await.status, 200, "token {i}");
        if i % 50 == 0 {
            peak = peak.max(rss_mib(pid));
        }
    }
    peak = peak.max(rss_mib(pid));
    let weighed = w.counter("prospect_edge_token_cache_bytes").await;
    eprintln!(
        "{TOKENS} large tokens ({} bytes each): RSS {rss_before:.0} MiB -> peak {peak:.0} MiB; \
         token cache {weighed} bytes for a bound of {BOUND}",
        tokens[0].len()
    );
    // Unbounded, 1,000 such identities hold ~150 MiB (2,800 heap blocks of 32 bytes and a
    // 67 KB vector each); bounded, the cache holds at most 8 MiB of them.
    assert!(weighed > 0 && weighed <= BOUND, "{weighed} bytes weighed");
    assert!(
        peak - rss_before < 64.0,
        "RSS grew {:.0} MiB for a token cache bound of 8 MiB",
        peak - rss_before
    );
}
