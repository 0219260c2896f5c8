//! Hostile input: slow clients (head and body), oversized heads and bodies, deep or
//! ambiguous JSON, invalid UTF-8, numbers out of range, path tricks and control
//! characters. Each one gets its exact 4xx problem (never a 5xx, a bare error page or a
//! crash), and none reaches a legacy service.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::{World, V};

/// Sends `head` (and then `body`) on a fresh connection and reads until the server closes
/// or `wait` passes; returns the whole answer as text ("" if none came).
fn raw_tcp(addr: SocketAddr, head: &[u8], body: &[u8], wait: Duration) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(wait)).expect("timeout");
    let _ = s.write_all(head);
    let _ = s.write_all(body);
    let mut out = Vec::new();
    let mut chunk = [0u8; 8192];
    while let Ok(n) = s.read(&mut chunk) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&chunk[..n]);
        // One complete answer is enough (keep-alive connections stay open).
        if answer_complete(&out) {
            break;
        }
    }
    String::from_utf8_lossy(&out).to_string()
}

fn answer_complete(out: &[u8]) -> bool {
    let text = String::from_utf8_lossy(out);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    head.lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .and_then(|v| v.trim().parse::<usize>().ok())
        })
        .is_some_and(|n| body.len() >= n)
}

fn status_of(answer: &str) -> u16 {
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {answer:?}"))
}

fn slug_of(answer: &str) -> String {
    let body = answer.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
    serde_json::from_str::<serde_json::Value>(body).unwrap_or_default()["type"]
        .as_str()
        .unwrap_or_default()
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_string()
}

fn auth_head(w: &World, method: &str, path: &str, extra: &str) -> Vec<u8> {
    format!(
        "{method} {path} HTTP/1.1\r\nhost: edge\r\nauthorization: Bearer {}\r\nversion: {V}\r\n{extra}\r\n",
        w.token(1, 101)
    )
    .into_bytes()
}

/// Every call the simulator's services received so far (the IAM included).
fn all_calls(w: &World) -> u64 {
    let state = w.sim.state();
    w.sim
        .services()
        .iter()
        .map(|(name, _)| state.calls(name))
        .sum()
}

/// Reads until the server closes the connection (or `wait` passes, then `closed` is
/// false); the whole text that came.
fn read_to_close(s: &mut TcpStream, wait: Duration) -> (String, bool) {
    s.set_read_timeout(Some(wait)).expect("timeout");
    let mut out = Vec::new();
    let mut chunk = [0u8; 8192];
    let closed = loop {
        match s.read(&mut chunk) {
            Ok(0) => break true,
            Ok(n) => out.extend_from_slice(&chunk[..n]),
            // A reset after the answer (the client kept writing) is a close too.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break true,
            Err(_) => break false,
        }
    };
    (String::from_utf8_lossy(&out).to_string(), closed)
}

fn header_of<'a>(answer: &'a str, name: &str) -> Option<&'a str> {
    let head = answer.split_once("\r\n\r\n")?.0;
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Asserts a problem+json answer of this status and slug on the wire, with its trace id.
fn assert_raw_problem(answer: &str, status: u16, slug: &str) -> serde_json::Value {
    assert_eq!(status_of(answer), status, "{answer:.400}");
    assert_eq!(
        header_of(answer, "content-type"),
        Some("application/problem+json"),
        "{answer:.400}"
    );
    let body = answer.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
    let v: serde_json::Value = serde_json::from_str(body).expect("problem body");
    assert_eq!(
        v["type"],
        format!("https://papi.trendev.in/problems/{slug}")
    );
    assert_eq!(v["status"], status);
    assert_eq!(v["trace_id"].as_str().map(str::len), Some(32));
    assert_eq!(header_of(answer, "trace-id"), v["trace_id"].as_str());
    v
}

async fn get_contact_ok(w: &World) {
    let r = w
        .call(
            1,
            101,
            "GET",
            &format!("/v1/contacts/{}", w.id("con", 1, 1)),
            None,
        )
        .await;
    assert_eq!(r.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_trickling_its_head_gets_408_at_the_deadline() {
    let w = World::start_custom(|_| {}, |_, c| c.push_str("client_header_timeout_ms: 500\n")).await;
    let addr = w.edge.public;
    let deadline = Duration::from_millis(500);

    // The request line at once, then the headers one byte every 20 ms: the whole head
    // would take seconds, far past the deadline.
    let head = auth_head(
        &w,
        "GET",
        &format!("/v1/contacts/{}", w.id("con", 1, 1)),
        "",
    );
    let trickler = std::thread::spawn(move || {
        let started = Instant::now();
        let mut s = TcpStream::connect(addr).expect("connect");
        let mut writer = s.try_clone().expect("clone");
        let feeding = std::thread::spawn(move || {
            let line_end = head.iter().position(|&b| b == b'\n').map_or(0, |i| i + 1);
            if writer.write_all(&head[..line_end]).is_err() {
                return;
            }
            for &b in &head[line_end..] {
                if writer.write_all(&[b]).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        let (answer, closed) = read_to_close(&mut s, Duration::from_secs(10));
        let elapsed = started.elapsed();
        drop(s);
        let _ = feeding.join();
        (answer, closed, elapsed)
    });
    // Meanwhile, everyone else is served.
    for _ in 0..3 {
        get_contact_ok(&w).await;
    }
    let (answer, closed, elapsed) =
        tokio::task::block_in_place(|| trickler.join().expect("trickler"));
    let p = assert_raw_problem(&answer, 408, "request-timeout");
    assert_eq!(
        p["instance"],
        "/v1/contacts/".to_string() + &w.id("con", 1, 1)
    );
    assert_eq!(header_of(&answer, "connection"), Some("close"));
    assert!(closed, "the connection is closed after the 408");
    assert!(
        elapsed >= deadline && elapsed < deadline + Duration::from_secs(2),
        "{elapsed:?}"
    );

    // A connection that sends nothing at all is closed at the deadline, without an answer.
    let (answer, closed, elapsed) = tokio::task::block_in_place(|| {
        let started = Instant::now();
        let mut s = TcpStream::connect(addr).expect("connect");
        let (answer, closed) = read_to_close(&mut s, Duration::from_secs(10));
        (answer, closed, started.elapsed())
    });
    assert_eq!(answer, "");
    assert!(closed);
    assert!(
        elapsed >= deadline && elapsed < deadline + Duration::from_secs(2),
        "{elapsed:?}"
    );
    get_contact_ok(&w).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keep_alive_client_idle_past_the_head_deadline_is_still_served() {
    let w = World::start_custom(|_| {}, |_, c| c.push_str("client_header_timeout_ms: 300\n")).await;
    let head = auth_head(
        &w,
        "GET",
        &format!("/v1/contacts/{}", w.id("con", 1, 1)),
        "",
    );
    let addr = w.edge.public;
    let answers = tokio::task::block_in_place(|| {
        let mut s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut answers = Vec::new();
        for i in 0..3 {
            if i > 0 {
                // Idle between requests for three times the head deadline: only the
                // keep-alive timeout (60 s) applies there. Before the second idle period, a
                // stray CRLF (as old clients send after a body) does not start a head.
                if i == 2 {
                    s.write_all(b"\r\n").expect("write");
                }
                std::thread::sleep(Duration::from_millis(900));
            }
            s.write_all(&head).expect("write");
            let mut out = Vec::new();
            let mut chunk = [0u8; 8192];
            while !answer_complete(&out) {
                match s.read(&mut chunk) {
                    Ok(n) if n > 0 => out.extend_from_slice(&chunk[..n]),
                    other => panic!("request {i}: connection ended: {other:?}"),
                }
            }
            answers.push(String::from_utf8_lossy(&out).to_string());
        }
        answers
    });
    for a in answers {
        assert_eq!(status_of(&a), 200, "{a:.300}");
        assert_eq!(header_of(&a, "connection"), Some("keep-alive"), "{a:.300}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_trickling_its_body_gets_408_at_the_deadline() {
    let w = World::start_custom(|_| {}, |_, c| c.push_str("client_body_timeout_ms: 400\n")).await;
    let calls = w.sim.state().calls("crm-core");
    let head = auth_head(
        &w,
        "POST",
        "/v1/contacts",
        "content-type: application/json\r\ncontent-length: 100\r\n",
    );
    let addr = w.edge.public;
    let started = Instant::now();
    let answer = tokio::task::block_in_place(|| {
        raw_tcp(
            addr,
            &head,
            b"{\"first_name\": \"Sl",
            Duration::from_secs(5),
        )
    });
    let elapsed = started.elapsed();
    assert_raw_problem(&answer, 408, "request-timeout");
    assert_eq!(header_of(&answer, "connection"), Some("close"));
    assert!(
        elapsed >= Duration::from_millis(400) && elapsed < Duration::from_secs(3),
        "{elapsed:?}"
    );
    assert_eq!(
        w.sim.state().calls("crm-core"),
        calls,
        "nothing reached crm-core"
    );
    // The edge still serves everyone else.
    get_contact_ok(&w).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_heads_are_431_problems() {
    let w = World::start().await;
    let addr = w.edge.public;
    let token = w.token(1, 101);
    let auth = format!("Bearer {token}");
    let path = format!("/v1/contacts/{}", w.id("con", 1, 1));
    let calls = all_calls(&w);

    // Between the edge's cap (32 KiB of target and fields) and pingora's 1 MiB: 431.
    let big = "a".repeat(40 * 1024);
    let h = [
        ("authorization", auth.as_str()),
        ("version", V),
        ("x-big", big.as_str()),
    ];
    let p = w
        .raw("GET", &path, &h, None)
        .await
        .assert_problem(431, "request-header-fields-too-large");
    assert_eq!(p["instance"], path);
    // Many fields adding up past the cap.
    let many: Vec<(String, String)> = (0..200)
        .map(|i| (format!("x-field-{i}"), "b".repeat(200)))
        .collect();
    let mut h: Vec<(&str, &str)> = vec![("authorization", auth.as_str()), ("version", V)];
    h.extend(many.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    w.raw("GET", &path, &h, None)
        .await
        .assert_problem(431, "request-header-fields-too-large");
    // A request target over the cap.
    let long = format!("/v1/contacts/{}", "a".repeat(40 * 1024));
    let p = w
        .call(1, 101, "GET", &long, None)
        .await
        .assert_problem(431, "request-header-fields-too-large");
    assert_eq!(p["instance"], "/", "an over-long path is not echoed");
    assert_eq!(all_calls(&w), calls, "nothing reached a service");

    // More than the 256 header fields pingora parses: 431 from the head guard, closed.
    let mut head = format!("GET {path} HTTP/1.1\r\nhost: edge\r\n");
    for i in 0..256 {
        head.push_str(&format!("x-{i}: 1\r\n"));
    }
    head.push_str("\r\n");
    let answer = tokio::task::block_in_place(|| {
        let mut s = TcpStream::connect(addr).expect("connect");
        s.write_all(head.as_bytes()).expect("write");
        read_to_close(&mut s, Duration::from_secs(5))
    });
    let p = assert_raw_problem(&answer.0, 431, "request-header-fields-too-large");
    assert_eq!(p["instance"], path);
    assert_eq!(header_of(&answer.0, "connection"), Some("close"));
    assert!(answer.1, "closed");

    // A raw head past pingora's 1 MiB without its end: 431 from the head guard (not
    // pingora's bare 400), and closed. The client sends exactly one byte too many and then
    // waits, so every byte is read and the close cannot turn into a reset.
    let mut head = b"GET /v1/contacts HTTP/1.1\r\nhost: edge\r\nx-big: ".to_vec();
    head.resize(1_048_576, b'a');
    let answer = tokio::task::block_in_place(|| {
        let mut s = TcpStream::connect(addr).expect("connect");
        s.write_all(&head).expect("write");
        read_to_close(&mut s, Duration::from_secs(5))
    });
    let p = assert_raw_problem(&answer.0, 431, "request-header-fields-too-large");
    assert_eq!(p["instance"], "/v1/contacts");
    assert!(answer.1, "closed");
    assert_eq!(all_calls(&w), calls, "nothing reached a service");

    // Just under the cap: served.
    let fits = "a".repeat(30 * 1024);
    let h = [
        ("authorization", auth.as_str()),
        ("version", V),
        ("x-big", fits.as_str()),
    ];
    assert_eq!(w.raw("GET", &path, &h, None).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_1_mib_are_413_before_being_read() {
    let w = World::start().await;
    let addr = w.edge.public;
    let calls = w.sim.state().calls("crm-core");

    // A declared body over 1 MiB: 413 from the headers alone, without reading it (the
    // body is never sent: a client racing to write it could meet the closed connection).
    let head = auth_head(
        &w,
        "POST",
        "/v1/contacts",
        &format!(
            "content-type: application/json\r\ncontent-length: {}\r\n",
            1024 * 1024 + 1
        ),
    );
    let answer = tokio::task::block_in_place(|| raw_tcp(addr, &head, b"", Duration::from_secs(5)));
    assert_raw_problem(&answer, 413, "payload-too-large");
    assert_eq!(header_of(&answer, "connection"), Some("close"));

    // A chunked body that grows past 1 MiB: 413 once the limit is crossed.
    let head = auth_head(
        &w,
        "POST",
        "/v1/contacts",
        "content-type: application/json\r\ntransfer-encoding: chunked\r\n",
    );
    let mut chunks = Vec::new();
    for _ in 0..20 {
        chunks.extend_from_slice(format!("{:x}\r\n", 64 * 1024).as_bytes());
        chunks.extend(std::iter::repeat_n(b' ', 64 * 1024));
        chunks.extend_from_slice(b"\r\n");
    }
    let answer =
        tokio::task::block_in_place(|| raw_tcp(addr, &head, &chunks, Duration::from_secs(5)));
    assert_raw_problem(&answer, 413, "payload-too-large");
    assert_eq!(
        w.sim.state().calls("crm-core"),
        calls,
        "nothing reached crm-core"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_json_bodies_are_400_problems() {
    let w = World::start().await;
    let token = w.token(1, 101);
    let auth = format!("Bearer {token}");
    let h = [
        ("authorization", auth.as_str()),
        ("version", V),
        ("content-type", "application/json"),
    ];
    let calls = w.sim.state().calls("crm-core");
    let post = |body: Vec<u8>| w.raw("POST", "/v1/contacts", &h, Some(body));

    // Deeply nested.
    let deep = format!("{{\"first_name\": {}{}}}", "[".repeat(65), "]".repeat(65));
    let p = post(deep.into_bytes())
        .await
        .assert_problem(400, "invalid-request");
    assert!(p["errors"][0]["pointer"]
        .as_str()
        .is_some_and(|s| s.starts_with("/first_name/0/0")));
    let very_deep = "[".repeat(200_000);
    post(very_deep.into_bytes())
        .await
        .assert_problem(400, "invalid-request");
    // Huge but under 1 MiB: 200,000 members in an unknown field, a top-level array.
    let huge = format!(
        "{{\"email\": \"a@b.co\", \"extra\": [{}0]}}",
        "0,".repeat(200_000)
    );
    let p = post(huge.into_bytes())
        .await
        .assert_problem(400, "invalid-request");
    assert_eq!(p["errors"][0]["pointer"], "/extra");
    let huge = format!("[{}0]", "{},".repeat(300_000));
    post(huge.into_bytes())
        .await
        .assert_problem(400, "invalid-request");

    // Ids with control characters, in a body and in a search filter.
    let p = post(br#"{"email": "a@b.co", "owner_id": "usr_\u0000\u0001x"}"#.to_vec())
        .await
        .assert_problem(400, "invalid-request");
    assert_eq!(p["errors"][0]["pointer"], "/owner_id");
    let r = w
        .raw(
            "POST",
            "/v1/contacts/search",
            &h,
            Some(
                br#"{"filters": [{"field": "company_id", "operator": "eq", "value": "cmp_\u0007\r\n"}]}"#
                    .to_vec(),
            ),
        )
        .await;
    // In a filter, an id that does not open matches nothing (api-reference.md): an empty
    // page, answered without asking crm-core.
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json(),
        json!({"data": [], "meta": {"cursor": null, "total": 0}})
    );

    // Invalid UTF-8.
    post(b"{\"first_name\": \"Ad\xffa\", \"last_name\": \"L\"}".to_vec())
        .await
        .assert_problem(400, "malformed-json");
    // A lone surrogate escape is not a character either.
    post(br#"{"first_name": "\ud800", "last_name": "L"}"#.to_vec())
        .await
        .assert_problem(400, "malformed-json");

    // Duplicate members: refused, not "last one wins".
    let p = post(br#"{"first_name": "Ada", "last_name": "L", "first_name": "Eve"}"#.to_vec())
        .await
        .assert_problem(400, "invalid-request");
    assert_eq!(p["errors"][0]["pointer"], "/first_name");

    // Numbers out of range.
    post(br#"{"first_name": "Ada", "last_name": "L", "n": 1e400}"#.to_vec())
        .await
        .assert_problem(400, "malformed-json");
    let r = w
        .call(
            1,
            101,
            "POST",
            "/v1/contacts/search",
            Some(json!({"limit": 1e300})),
        )
        .await;
    let p = r.assert_problem(400, "invalid-request");
    assert_eq!(p["errors"][0]["pointer"], "/limit");
    let r = w
        .raw(
            "POST",
            "/v1/contacts/search",
            &h,
            Some(br#"{"limit": 340282366920938463463374607431768211456}"#.to_vec()),
        )
        .await;
    r.assert_problem(400, "invalid-request");

    assert_eq!(
        w.sim.state().calls("crm-core"),
        calls,
        "nothing reached the service"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_tricks_and_control_characters_are_4xx_problems() {
    let w = World::start().await;
    let id = w.id("con", 1, 1);
    let calls = all_calls(&w);
    for path in [
        "/v1/contacts/..%2f..".to_string(),
        "/v1/contacts/..%2F..%2Fadmin".to_string(),
        format!("/v1/contacts/{id}%2f"),
        format!("/v1/contacts%2f{id}"),
        format!("/v1//contacts/{id}"),
        format!("/v1/contacts//{id}"),
        format!("//v1/contacts/{id}"),
        format!("/v1/contacts/{id}/"),
        format!("/v1/contacts/{id}."),
        format!("/v1/contacts./{id}"),
        "/v1/contacts/..".to_string(),
        "/v1/contacts/.".to_string(),
        "/v1/./contacts".to_string(),
        "/v1/contacts/%00".to_string(),
        format!("/v1/contacts/{id}%00"),
        format!("/v1/contacts/{id}%0d%0aX-Injected:%201"),
        "/v1/contacts/%ff%fe".to_string(),
        format!("/v1/contacts/{}", "a".repeat(5000)),
    ] {
        let r = w.call(1, 101, "GET", &path, None).await;
        r.assert_problem(404, "not-found");
        assert!(r.header("x-injected").is_none());
    }

    // Raw control characters and spaces in the request line or a header never reach
    // routing: pingora's parser lets the request line's bytes through percent-encoded (and
    // routing finds no such id), and refuses bad header lines (its bare 400 page becomes
    // the `invalid-request` problem in the head guard).
    let addr = w.edge.public;
    let cases: [(&[u8], &[u8], u16, &str); 7] = [
        (b"/v1/contacts/con_\x01abc", b"", 404, "not-found"),
        (b"/v1/contacts/con_\x7fabc", b"", 404, "not-found"),
        (b"/v1/contacts/con_\x00abc", b"", 404, "not-found"),
        (b"/v1/contacts/a b", b"", 404, "not-found"),
        (b"/v1/contacts/con_\tabc", b"", 404, "not-found"),
        (
            b"/v1/contacts/con_abc",
            b"x-id: a\x01b\r\n",
            400,
            "invalid-request",
        ),
        (
            b"/v1/contacts/con_abc",
            b"no colon here\r\n",
            400,
            "invalid-request",
        ),
    ];
    let mut seen = Vec::new();
    let mut expected = Vec::new();
    for (target, header, status, slug) in cases {
        let mut head = b"GET ".to_vec();
        head.extend_from_slice(target);
        head.extend_from_slice(b" HTTP/1.1\r\nhost: edge\r\n");
        head.extend_from_slice(header);
        head.extend_from_slice(b"\r\n");
        let answer =
            tokio::task::block_in_place(|| raw_tcp(addr, &head, b"", Duration::from_secs(5)));
        let what = String::from_utf8_lossy(target).to_string();
        if status_of(&answer) == status && slug_of(&answer) == slug {
            assert_raw_problem(&answer, status, slug);
        }
        seen.push((what.clone(), status_of(&answer), slug_of(&answer)));
        expected.push((what, status, slug.to_string()));
    }
    assert_eq!(seen, expected);

    // Heads pingora answers itself, before the edge sees them: CONNECT (405, with
    // `Allow`) and an HTTP/2 preface on this HTTP/1 listener (400): problems too.
    let answer = tokio::task::block_in_place(|| {
        raw_tcp(
            addr,
            b"CONNECT crm-core.internal:8080 HTTP/1.1\r\nhost: crm-core.internal:8080\r\n\r\n",
            b"",
            Duration::from_secs(5),
        )
    });
    assert_raw_problem(&answer, 405, "method-not-allowed");
    assert_eq!(
        header_of(&answer, "allow"),
        Some("GET, HEAD, POST, PATCH, DELETE, OPTIONS")
    );
    let answer = tokio::task::block_in_place(|| {
        raw_tcp(
            addr,
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            b"",
            Duration::from_secs(5),
        )
    });
    assert_raw_problem(&answer, 400, "invalid-request");
    assert_eq!(all_calls(&w), calls, "nothing reached a service");
    // Still serving.
    let r = w
        .call(1, 101, "GET", &format!("/v1/contacts/{id}"), None)
        .await;
    assert_eq!(r.status, 200);
}
