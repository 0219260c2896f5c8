//! Operations: exact counters on `/metrics` after known traffic, W3C trace context in and
//! out (response `Trace-Id`, upstream `traceparent` and `X-PC-Request-Id`), and a SIGTERM
//! that lets an in-flight request finish within the grace period.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{sample, World, V};

async fn scrape(w: &World) -> String {
    let r = w.admin("/metrics").await;
    assert_eq!(r.status, 200);
    String::from_utf8_lossy(&r.body).to_string()
}

/// The edge's permission cache outlives the test (the harness's 2 s could expire mid-test).
fn long_permission_cache(_: &legacy_sim::issuer::Issuer, config: &mut String) {
    *config = config.replace(
        "permissions_cache_seconds: 2",
        "permissions_cache_seconds: 300",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn known_traffic_gives_exact_counters() {
    let w = World::start_custom(|_| {}, long_permission_cache).await;
    let path = format!("/v1/contacts/{}", w.id("con", 1, 1));
    let bearer = format!("Bearer {}", w.token(1, 101));
    let with_token = [("authorization", bearer.as_str()), ("version", V)];

    // 1: token, permissions: miss; the key is in the loaded JWKS: hit.
    assert_eq!(w.raw("GET", &path, &with_token, None).await.status, 200);
    // 2: the same token again: token and permission cache hits.
    assert_eq!(w.raw("GET", &path, &with_token, None).await.status, 200);
    // 3: no token.
    w.raw("GET", &path, &[("version", V)], None)
        .await
        .assert_problem(401, "unauthenticated");
    // 4: a malformed JWT: a token cache miss that verifies nothing.
    let bad = [("authorization", "Bearer a.b.c"), ("version", V)];
    assert_eq!(w.raw("GET", &path, &bad, None).await.status, 401);
    // 5: no route: nothing authenticated.
    assert_eq!(
        w.raw("GET", "/v1/nothing-here", &with_token, None)
            .await
            .status,
        404
    );
    // 6: crm-core fails: one upstream error, a 502.
    w.sim.state().fail_service("crm-core", true);
    assert_eq!(w.raw("GET", &path, &with_token, None).await.status, 502);
    w.sim.state().fail_service("crm-core", false);

    // The access log and its counters are written after the answer: wait for the last one.
    let last = r#"prospect_edge_requests_total{method="GET",route="get",status_class="5xx"}"#;
    let mut m = scrape(&w).await;
    for _ in 0..200 {
        if sample(&m, last).is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        m = scrape(&w).await;
    }
    let expect = |series: &str, v: f64| {
        assert_eq!(sample(&m, series), Some(v), "{series}\n{m}");
    };
    expect(
        r#"prospect_edge_requests_total{method="GET",route="get",status_class="2xx"}"#,
        2.0,
    );
    expect(
        r#"prospect_edge_requests_total{method="GET",route="get",status_class="4xx"}"#,
        2.0,
    );
    expect(
        r#"prospect_edge_requests_total{method="GET",route="get",status_class="5xx"}"#,
        1.0,
    );
    expect(
        r#"prospect_edge_requests_total{method="GET",route="none",status_class="4xx"}"#,
        1.0,
    );
    expect(
        r#"prospect_edge_request_duration_seconds_count{route="get"}"#,
        5.0,
    );
    expect(r#"prospect_edge_auth_total{outcome="ok"}"#, 3.0);
    expect(r#"prospect_edge_auth_total{outcome="missing"}"#, 1.0);
    expect(r#"prospect_edge_auth_total{outcome="invalid"}"#, 1.0);
    assert_eq!(
        sample(&m, r#"prospect_edge_auth_total{outcome="error"}"#),
        None
    );
    expect(
        r#"prospect_edge_cache_lookups_total{cache="token",result="miss"}"#,
        2.0,
    );
    expect(
        r#"prospect_edge_cache_lookups_total{cache="token",result="hit"}"#,
        2.0,
    );
    expect(
        r#"prospect_edge_cache_lookups_total{cache="jwks",result="hit"}"#,
        1.0,
    );
    expect(
        r#"prospect_edge_cache_lookups_total{cache="permissions",result="miss"}"#,
        1.0,
    );
    expect(
        r#"prospect_edge_cache_lookups_total{cache="permissions",result="hit"}"#,
        2.0,
    );
    // Every call the simulator counted was timed, and the one failure counted.
    let crm = w.sim.state().calls("crm-core") as f64;
    assert_eq!(crm, 3.0);
    expect(
        r#"prospect_edge_upstream_duration_seconds_count{service="crm-core"}"#,
        crm,
    );
    expect(
        r#"prospect_edge_upstream_duration_seconds_count{service="iam"}"#,
        1.0,
    );
    expect(
        r#"prospect_edge_upstream_errors_total{kind="status_5xx",service="crm-core"}"#,
        1.0,
    );
    expect("prospect_edge_requests_in_flight", 0.0);
    // The mapping version: exactly one series, the hash of the files being served.
    let version = prospect_edge::pipeline::mapping_digest(&w.edge.dir.path().join("mappings"));
    assert_eq!(version.len(), 12);
    expect(
        &format!(r#"prospect_edge_mapping_info{{version="{version}"}}"#),
        1.0,
    );
    assert_eq!(
        m.lines()
            .filter(|l| l.starts_with("prospect_edge_mapping_info{"))
            .count(),
        1
    );
    assert!(sample(&m, "prospect_edge_mapping_loaded_timestamp_seconds").is_some_and(|t| t > 1.7e9));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mapping_version_changes_on_reload() {
    let w = World::start().await;
    let dir = w.edge.dir.path().join("mappings");
    let before = prospect_edge::pipeline::mapping_digest(&dir);
    let m = scrape(&w).await;
    assert_eq!(
        sample(
            &m,
            &format!(r#"prospect_edge_mapping_info{{version="{before}"}}"#)
        ),
        Some(1.0)
    );
    let contacts = dir.join("contacts.yaml");
    let text = std::fs::read_to_string(&contacts).expect("read");
    std::fs::write(&contacts, format!("{text}\n# edited\n")).expect("write");
    let after = prospect_edge::pipeline::mapping_digest(&dir);
    assert_ne!(before, after);
    let ok = std::process::Command::new("kill")
        .args(["-HUP", &w.edge.pid().to_string()])
        .status()
        .expect("kill");
    assert!(ok.success());
    let series = format!(r#"prospect_edge_mapping_info{{version="{after}"}}"#);
    for _ in 0..500 {
        let m = scrape(&w).await;
        if sample(&m, &series) == Some(1.0) {
            assert_eq!(
                sample(
                    &m,
                    &format!(r#"prospect_edge_mapping_info{{version="{before}"}}"#)
                ),
                None
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the new mapping version never showed");
}

/// A stand-in `iam` service that records each request's head and grants contact reads.
async fn spy_iam() -> (std::net::SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                log.lock()
                    .expect("lock")
                    .push(String::from_utf8_lossy(&head).to_lowercase());
                let body = r#"{"permissions":["contacts:view"]}"#;
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    (addr, seen)
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(':')))
        .map(str::trim)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callers_trace_is_continued_in_the_answer_and_upstream() {
    let (iam, seen) = spy_iam().await;
    let w = World::start_custom(
        |_| {},
        |_, config| {
            *config = config
                .lines()
                .map(|l| match l.starts_with("  iam: ") {
                    true => format!("  iam: {{ url: \"http://{iam}\", timeout_ms: 5000 }}"),
                    false => l.to_string(),
                })
                .collect::<Vec<_>>()
                .join("\n")
                + "\n";
        },
    )
    .await;
    let path = format!("/v1/contacts/{}", w.id("con", 1, 1));
    let bearer = format!("Bearer {}", w.token(1, 101));
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent = format!("00-{trace}-00f067aa0ba902b7-01");
    let r = w
        .raw(
            "GET",
            &path,
            &[
                ("authorization", bearer.as_str()),
                ("version", V),
                ("traceparent", parent.as_str()),
            ],
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("trace-id"), Some(trace));

    let heads = seen.lock().expect("lock").clone();
    assert_eq!(heads.len(), 1, "{heads:?}");
    let head = &heads[0];
    assert!(
        head.starts_with("get /iam/v2/users/101/permissions "),
        "{head}"
    );
    assert_eq!(header(head, "x-pc-request-id"), Some(trace));
    let tp = header(head, "traceparent").expect("traceparent sent upstream");
    let parts: Vec<&str> = tp.split('-').collect();
    assert_eq!(parts.len(), 4, "{tp}");
    assert_eq!((parts[0], parts[1], parts[3]), ("00", trace, "01"));
    // A span of the edge's own: 16 hex digits, not the caller's, not all zero.
    assert_eq!(parts[2].len(), 16);
    assert!(parts[2].bytes().all(|b| b.is_ascii_hexdigit()));
    assert_ne!(parts[2], "00f067aa0ba902b7");
    assert_ne!(parts[2], "0000000000000000");

    // A malformed traceparent starts a new trace.
    let r = w
        .raw(
            "GET",
            &path,
            &[
                ("authorization", bearer.as_str()),
                ("version", V),
                ("traceparent", "00-not-a-trace-01"),
            ],
            None,
        )
        .await;
    assert_eq!(r.status, 200);
    let fresh = r.header("trace-id").expect("trace id");
    assert_eq!(fresh.len(), 32);
    assert_ne!(fresh, trace);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_an_in_flight_request_finish() {
    let w = Arc::new(World::start_custom(|_| {}, long_permission_cache).await);
    let path = format!("/v1/contacts/{}", w.id("con", 1, 1));
    let bearer = format!("Bearer {}", w.token(1, 101));
    // Warm the caches so the slow request makes exactly one upstream call.
    let headers = [("authorization", bearer.as_str()), ("version", V)];
    assert_eq!(w.raw("GET", &path, &headers, None).await.status, 200);

    // The harness sets grace_period_seconds: 1; the request takes 600 ms upstream.
    w.sim.state().set_latency(Duration::from_millis(600));
    let slow = {
        let (w, path, bearer) = (w.clone(), path.clone(), bearer.clone());
        tokio::spawn(async move {
            w.raw(
                "GET",
                &path,
                &[("authorization", bearer.as_str()), ("version", V)],
                None,
            )
            .await
        })
    };
    // Poll until the edge holds it in flight, then ask it to stop.
    let mut in_flight = false;
    for _ in 0..500 {
        if sample(&scrape(&w).await, "prospect_edge_requests_in_flight") == Some(1.0) {
            in_flight = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(in_flight, "the slow request never showed as in flight");
    let ok = std::process::Command::new("kill")
        .args(["-TERM", &w.edge.pid().to_string()])
        .status()
        .expect("kill");
    assert!(ok.success());

    let r = slow.await.expect("task");
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["data"]["id"], w.id("con", 1, 1));
    w.sim.state().set_latency(Duration::ZERO);

    // And the process then exits on its own, well within grace + shutdown timeout.
    let mut w = Arc::into_inner(w).expect("sole owner");
    let status = tokio::task::block_in_place(|| w.edge.wait_exit(Duration::from_secs(10)));
    assert!(status.is_some(), "the edge did not exit after SIGTERM");
}

/// The access-log line of the request with this trace id, once the edge has written it.
async fn access_line(w: &World, trace_id: &str) -> serde_json::Value {
    let log = w.edge.dir.path().join("edge.log");
    for _ in 0..500 {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let found = text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["target"] == "access" && v["fields"]["trace_id"] == trace_id);
        if let Some(v) = found {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no access line for {trace_id}");
}

/// A buffered access log (`access_log_buffer_bytes`) keeps its lines until the buffer is
/// full or the flush is due, and writes every one of them when the edge is stopped: a
/// graceful stop loses none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_buffered_access_log_loses_no_line_on_a_graceful_stop() {
    let w = World::start_custom(
        |_| {},
        |_, config| {
            config.push_str("\naccess_log_buffer_bytes: 65536\naccess_log_flush_ms: 60000\n")
        },
    )
    .await;
    let path = format!("/v1/contacts/{}", w.id("con", 1, 1));
    let mut traces = Vec::new();
    for _ in 0..3 {
        let r = w.call(1, 101, "GET", &path, None).await;
        assert_eq!(r.status, 200);
        traces.push(r.header("trace-id").expect("trace id").to_string());
    }
    // Three lines are far from 64 KiB and the first flush is a minute away: all kept.
    for t in &traces {
        assert_eq!(access_lines(&w, t), 0, "a buffered line was written early");
    }
    let ok = std::process::Command::new("kill")
        .args(["-TERM", &w.edge.pid().to_string()])
        .status()
        .expect("kill");
    assert!(ok.success());
    let mut w = w;
    let status = tokio::task::block_in_place(|| w.edge.wait_exit(Duration::from_secs(10)));
    assert!(status.is_some(), "the edge did not exit after SIGTERM");
    for t in &traces {
        assert_eq!(access_lines(&w, t), 1, "the line of {t} after the stop");
    }
}

/// How many access lines the edge has written for this trace id so far.
fn access_lines(w: &World, trace_id: &str) -> usize {
    let text = std::fs::read_to_string(w.edge.dir.path().join("edge.log")).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["target"] == "access" && v["fields"]["trace_id"] == trace_id)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_log_has_one_line_per_request_with_ids_and_never_a_token() {
    let w = World::start().await;
    let token = w.token(1, 101);
    let path = format!("/v1/contacts/{}", w.id("con", 1, 1));
    let ok = w.call(1, 101, "GET", &path, None).await;
    assert_eq!(ok.status, 200);
    let line = access_line(&w, ok.header("trace-id").expect("trace id")).await;
    let f = &line["fields"];
    assert_eq!(line["level"], "INFO");
    assert_eq!(f["method"], "GET");
    assert_eq!(f["route"], "get");
    assert_eq!(f["status"], 200);
    assert_eq!(f["tenant"], 1);
    assert_eq!(f["user"], 101);
    assert_eq!(f["client"], prospect_edge::token::Mint::new(1, 101).client);
    assert_eq!(f["bytes_in"], 0);
    assert_eq!(f["bytes_out"].as_u64(), Some(ok.body.len() as u64));
    assert!(f["duration_ms"].as_f64().is_some_and(|d| d > 0.0));
    assert!(f["upstream_ms"].as_f64().is_some_and(|d| d > 0.0));

    // Refused before authentication: no identity, and still one line.
    let bad = format!("Bearer {token}x");
    let refused = w
        .raw(
            "GET",
            &path,
            &[("authorization", bad.as_str()), ("version", V)],
            None,
        )
        .await;
    assert_eq!(refused.status, 401);
    let line = access_line(&w, refused.header("trace-id").expect("trace id")).await;
    assert_eq!(line["fields"]["status"], 401);
    assert_eq!(line["fields"]["tenant"], 0);
    assert_eq!(line["fields"]["client"], "");

    // A write with a body: the body is counted, never logged; the token never appears.
    let created = w
        .call(
            1,
            101,
            "POST",
            "/v1/contacts",
            Some(serde_json::json!({"email": "logged-never@example.com", "first_name": "Lo", "last_name": "G"})),
        )
        .await;
    assert_eq!(created.status, 201);
    let line = access_line(&w, created.header("trace-id").expect("trace id")).await;
    assert!(line["fields"]["bytes_in"].as_u64().is_some_and(|n| n > 0));
    let log = std::fs::read_to_string(w.edge.dir.path().join("edge.log")).expect("log");
    let signature = token.rsplit('.').next().expect("signature");
    assert!(!log.contains(signature), "a token reached the log");
    assert!(
        !log.contains("logged-never@example.com"),
        "a body reached the log"
    );
}

/// Every stage a request passes is timed in `prospect_edge_stage_seconds{stage}`; a request
/// refused at `authenticate` is timed up to there only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_stage_of_a_request_is_timed() {
    const STAGES: [&str; 11] = [
        "head",
        "route",
        "authenticate",
        "rate_limit",
        "version",
        "authorize",
        "body",
        "idempotency_claim",
        "execute",
        "idempotency_store",
        "respond",
    ];
    let w = World::start().await;
    let count = |m: &str, stage: &str| {
        sample(
            m,
            &format!("prospect_edge_stage_seconds_count{{stage=\"{stage}\"}}"),
        )
        .unwrap_or(0.0)
    };
    let id = w.id("con", 1, 1);
    let r = w
        .call(1, 101, "GET", &format!("/v1/contacts/{id}"), None)
        .await;
    assert_eq!(r.status, 200);
    // `respond` is recorded once the answer is written, which may be after it arrived.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut m = scrape(&w).await;
    while count(&m, "respond") < 1.0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        m = scrape(&w).await;
    }
    for stage in STAGES {
        assert!(count(&m, stage) >= 1.0, "{stage}");
    }
    let r = w
        .raw(
            "GET",
            &format!("/v1/contacts/{id}"),
            &[("version", V)],
            None,
        )
        .await;
    assert_eq!(r.status, 401);
    let mut after = scrape(&w).await;
    while count(&after, "respond") < count(&m, "respond") + 1.0
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
        after = scrape(&w).await;
    }
    for stage in STAGES {
        let expected = match stage {
            "head" | "route" | "authenticate" | "respond" => 1.0,
            _ => 0.0,
        };
        assert_eq!(count(&after, stage) - count(&m, stage), expected, "{stage}");
    }
}
