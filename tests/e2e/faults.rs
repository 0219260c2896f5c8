//! Upstream faults: down, refusing, hanging, slow beyond the timeout, garbage, closing
//! mid-body, 500 storms. Each yields the exact problem within the configured bound, safe
//! reads are retried and writes are not, the circuit breaker opens and recovers, and no
//! upstream text ever reaches a problem.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{Resp, World};

/// A tiny misbehaving upstream on 127.0.0.1:0: reads one request (head and
/// `content-length` body), answers `reply` verbatim (nothing at all when `None`: it hangs)
/// and closes the connection. Counts the requests it read.
struct Fake {
    addr: SocketAddr,
    hits: Arc<AtomicU64>,
    reply: Arc<Mutex<Option<Vec<u8>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Fake {
    async fn start(reply: Option<&[u8]>) -> Fake {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake upstream");
        let addr = listener.local_addr().expect("fake addr");
        let hits = Arc::new(AtomicU64::new(0));
        let reply = Arc::new(Mutex::new(reply.map(<[u8]>::to_vec)));
        let (h, r) = (hits.clone(), reply.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let (h, r) = (h.clone(), r.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    let head_end = loop {
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    while buf.len() < head_end + len {
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    h.fetch_add(1, Ordering::SeqCst);
                    let answer = r.lock().expect("reply").clone();
                    match answer {
                        Some(bytes) => {
                            let _ = s.write_all(&bytes).await;
                            let _ = s.shutdown().await;
                        }
                        // Hang: hold the connection open without a byte.
                        None => std::future::pending::<()>().await,
                    }
                });
            }
        });
        Fake {
            addr,
            hits,
            reply,
            task,
        }
    }

    fn hits(&self) -> u64 {
        self.hits.load(Ordering::SeqCst)
    }
}

/// Rewrites the config line of upstream `name`: its URL (when `addr` is given) and extra
/// settings appended to its flow mapping.
fn set_upstream(config: &mut String, name: &str, addr: Option<SocketAddr>, extra: &str) {
    let prefix = format!("  {name}: {{ url: \"http://");
    let out: Vec<String> = config
        .lines()
        .map(|l| {
            if !l.starts_with(&prefix) {
                return l.to_string();
            }
            let mut line = l.to_string();
            if let Some(a) = addr {
                let start = prefix.len();
                let end = line[start..].find('"').map(|i| start + i).expect("url end");
                line.replace_range(start..end, &a.to_string());
            }
            if !extra.is_empty() {
                let close = line.rfind(" }").expect("flow mapping");
                line.insert_str(close, &format!(", {extra}"));
            }
            line
        })
        .collect();
    *config = out.join("\n") + "\n";
}

/// No upstream wording in the problem: only the edge's own fixed sentences.
fn assert_no_upstream_text(r: &Resp, words: &[&str]) {
    let body = String::from_utf8_lossy(&r.body).to_lowercase();
    for w in words {
        assert!(!body.contains(&w.to_lowercase()), "{w:?} leaked: {body}");
    }
}

async fn get_contact(w: &World) -> Resp {
    w.call(
        1,
        101,
        "GET",
        &format!("/v1/contacts/{}", w.id("con", 1, 1)),
        None,
    )
    .await
}

fn new_contact() -> serde_json::Value {
    json!({"first_name": "Grace", "last_name": "Hopper", "email": "grace.fault@example.com"})
}

/// A service's circuit state as `/readyz` reports it.
async fn circuit(w: &World, service: &str) -> String {
    w.admin("/readyz").await.json()["circuits"][service]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn metric(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name_and_labels))
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn safe_reads_are_retried_on_503_and_writes_are_not() {
    let fake = Fake::start(Some(
        b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
    ))
    .await;
    let addr = fake.addr;
    let w = World::start_custom(
        |_| {},
        |_, c| {
            set_upstream(
                c,
                "crm-core",
                Some(addr),
                "retries: 1, retry_backoff_ms: 5, breaker_failures: 1000",
            )
        },
    )
    .await;

    // A GET: first attempt and one retry, then 502 (an upstream 5xx).
    let r = get_contact(&w).await;
    r.assert_problem(502, "upstream-error");
    assert_eq!(fake.hits(), 2, "a GET is retried once");

    // A search (a POST on crm-core, but a read): retried as well.
    let r = w
        .call(1, 101, "POST", "/v1/contacts/search", Some(json!({})))
        .await;
    r.assert_problem(502, "upstream-error");
    assert_eq!(fake.hits(), 4, "a search is retried once");

    // A create is never retried.
    let r = w
        .call(1, 101, "POST", "/v1/contacts", Some(new_contact()))
        .await;
    r.assert_problem(502, "upstream-error");
    assert_eq!(fake.hits(), 5, "a write is sent exactly once");

    let m = w.admin("/metrics").await;
    let text = String::from_utf8_lossy(&m.body).to_string();
    assert_eq!(
        metric(
            &text,
            "prospect_edge_upstream_retries_total{service=\"crm-core\"}"
        ),
        Some(2.0),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn down_and_refusing_services_answer_503_with_retry_after() {
    let w = World::start().await;
    // Warm the permission cache so that only crm-core is in play.
    assert_eq!(get_contact(&w).await.status, 200);
    w.sim.stop_service("crm-core").await;
    let started = Instant::now();
    let r = get_contact(&w).await;
    r.assert_problem(503, "upstream-unavailable");
    assert_eq!(r.header("retry-after"), Some("5"));
    assert!(started.elapsed() < Duration::from_secs(2), "fast failure");

    // Refusing: a port nobody listens on (bound, then released).
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port");
    let w = World::start_custom(|_| {}, |_, c| set_upstream(c, "crm-core", Some(free), "")).await;
    let r = w
        .call(1, 101, "POST", "/v1/contacts", Some(new_contact()))
        .await;
    r.assert_problem(503, "upstream-unavailable");
    assert_eq!(r.header("retry-after"), Some("5"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_hanging_services_answer_504_within_the_timeout() {
    let hang = Fake::start(None).await;
    let addr = hang.addr;
    let w = World::start_custom(
        |_| {},
        |_, c| {
            *c = c.replace("timeout_ms: 5000", "timeout_ms: 300");
            set_upstream(c, "sales", Some(addr), "");
        },
    )
    .await;
    // Hanging (accepts, never answers).
    let started = Instant::now();
    let r = w
        .call(
            1,
            101,
            "GET",
            &format!("/v1/deals/{}", w.id("deal", 1, 1)),
            None,
        )
        .await;
    r.assert_problem(504, "upstream-timeout");
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(hang.hits(), 1, "a timed-out read is not retried");

    // Slow beyond the timeout (the simulator's latency is above 300 ms).
    assert_eq!(get_contact(&w).await.status, 200);
    w.sim.state().set_latency(Duration::from_millis(1500));
    let started = Instant::now();
    get_contact(&w)
        .await
        .assert_problem(504, "upstream-timeout");
    // The timeout bounds each call (permissions may need one more): well below the latency.
    assert!(
        started.elapsed() < Duration::from_millis(1200),
        "{:?}",
        started.elapsed()
    );

    // Back to normal: requests succeed again at once.
    w.sim.state().set_latency(Duration::ZERO);
    let back = Instant::now();
    loop {
        let r = get_contact(&w).await;
        if r.status == 200 {
            break;
        }
        r.assert_problem(504, "upstream-timeout");
        assert!(
            back.elapsed() < Duration::from_secs(1),
            "not recovered within 1 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_truncated_answers_are_502_without_upstream_text() {
    let garbage = Fake::start(Some(
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 28\r\n\r\nSECRET stack trace: not json",
    ))
    .await;
    let addr = garbage.addr;
    let w = World::start_custom(
        |_| {},
        |_, c| set_upstream(c, "crm-core", Some(addr), "breaker_failures: 1000"),
    )
    .await;
    let r = get_contact(&w).await;
    r.assert_problem(502, "upstream-error");
    assert_no_upstream_text(&r, &["SECRET", "stack trace"]);
    assert_eq!(garbage.hits(), 1, "a garbage answer is not retried");

    // Closing mid-body: a Content-Length larger than what is sent.
    *garbage.reply.lock().expect("reply") = Some(
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{\"SECRET\": \"partial"
            .to_vec(),
    );
    let r = get_contact(&w).await;
    r.assert_problem(502, "upstream-error");
    assert_no_upstream_text(&r, &["SECRET", "partial"]);

    // Not HTTP at all.
    *garbage.reply.lock().expect("reply") = Some(b"SECRET garbage\r\n\r\n".to_vec());
    let r = get_contact(&w).await;
    r.assert_problem(502, "upstream-error");
    assert_no_upstream_text(&r, &["SECRET"]);

    // A 500 with the service's own text.
    *garbage.reply.lock().expect("reply") = Some(
        b"HTTP/1.1 500 Internal Server Error\r\ncontent-type: text/plain\r\ncontent-length: 25\r\n\r\nSECRET NullPointerExcepti"
            .to_vec(),
    );
    let r = get_contact(&w).await;
    r.assert_problem(502, "upstream-error");
    assert_no_upstream_text(&r, &["SECRET", "NullPointer"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_500_storm_opens_the_breaker_which_recovers_after_the_open_duration() {
    let open_ms = 800;
    let w = World::start_custom(
        |_| {},
        |_, c| {
            set_upstream(
                c,
                "crm-core",
                None,
                &format!("retries: 0, breaker_failures: 3, breaker_open_ms: {open_ms}"),
            )
        },
    )
    .await;
    assert_eq!(get_contact(&w).await.status, 200);
    assert_eq!(circuit(&w, "crm-core").await, "closed");

    w.sim.state().fail_service("crm-core", true);
    for _ in 0..3 {
        let r = get_contact(&w).await;
        r.assert_problem(502, "upstream-error");
        assert_no_upstream_text(&r, &["Internal", "exception"]);
    }
    // Open: answered at once, without calling the service.
    let calls = w.sim.state().calls("crm-core");
    let r = get_contact(&w).await;
    r.assert_problem(503, "upstream-unavailable");
    let retry_after: u64 = r
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("retry-after");
    assert_eq!(retry_after, 1, "the rest of the open duration, rounded up");
    w.call(1, 101, "POST", "/v1/contacts", Some(new_contact()))
        .await
        .assert_problem(503, "upstream-unavailable");
    assert_eq!(w.sim.state().calls("crm-core"), calls, "no call while open");
    assert_eq!(circuit(&w, "crm-core").await, "open");
    let m = String::from_utf8_lossy(&w.admin("/metrics").await.body).to_string();
    assert_eq!(
        metric(&m, "prospect_edge_circuit_state{service=\"crm-core\"}"),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        metric(&m, "prospect_edge_circuit_state{service=\"sales\"}"),
        Some(0.0)
    );

    // The service comes back: the first request after the open duration probes and closes.
    w.sim.state().fail_service("crm-core", false);
    let back = Instant::now();
    loop {
        let r = get_contact(&w).await;
        if r.status == 200 {
            break;
        }
        r.assert_problem(503, "upstream-unavailable");
        assert!(
            back.elapsed() < Duration::from_millis(open_ms + 1000),
            "not recovered within 1 s of the open duration"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(circuit(&w, "crm-core").await, "closed");
    let m = String::from_utf8_lossy(&w.admin("/metrics").await.body).to_string();
    assert_eq!(
        metric(&m, "prospect_edge_circuit_state{service=\"crm-core\"}"),
        Some(0.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_half_open_probe_reopens_the_breaker() {
    let w = World::start_custom(
        |_| {},
        |_, c| {
            set_upstream(
                c,
                "crm-core",
                None,
                "retries: 0, breaker_failures: 2, breaker_open_ms: 300",
            )
        },
    )
    .await;
    assert_eq!(get_contact(&w).await.status, 200);
    w.sim.state().fail_service("crm-core", true);
    for _ in 0..2 {
        get_contact(&w).await.assert_problem(502, "upstream-error");
    }
    let calls = w.sim.state().calls("crm-core");
    // Poll until the probe is let through (a 502 from the still failing service).
    let started = Instant::now();
    loop {
        let r = get_contact(&w).await;
        if r.status == 502 {
            break;
        }
        r.assert_problem(503, "upstream-unavailable");
        assert!(started.elapsed() < Duration::from_secs(2), "no probe");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        w.sim.state().calls("crm-core"),
        calls + 1,
        "exactly one probe"
    );
    // The failed probe reopened it.
    get_contact(&w)
        .await
        .assert_problem(503, "upstream-unavailable");
    assert_eq!(w.sim.state().calls("crm-core"), calls + 1);
}
