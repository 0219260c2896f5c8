//! Hostile input: slow clients, oversized headers and bodies, deep or ambiguous JSON,
//! invalid UTF-8, numbers out of range, path tricks and control characters. Every one is
//! a 4xx (a problem wherever the edge itself answers), never a 5xx or a crash.

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_trickling_its_body_gets_400_at_the_deadline() {
    let w = World::start_custom(|_| {}, |_, c| c.push_str("client_body_timeout_ms: 400\n")).await;
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
    assert_eq!(status_of(&answer), 400, "{answer}");
    assert_eq!(slug_of(&answer), "invalid-request");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    // The edge still serves everyone else.
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
async fn oversized_headers_and_bodies_are_refused() {
    let w = World::start().await;
    let addr = w.edge.public;

    // A 2 MiB header: pingora answers 400 past 1 MiB and closes, possibly while the
    // client is still writing (then the answer is lost in the reset): never a 5xx.
    let big = "a".repeat(2 * 1024 * 1024);
    let head = format!("GET /v1/contacts HTTP/1.1\r\nhost: edge\r\nx-big: {big}\r\n\r\n");
    let answer =
        tokio::task::block_in_place(|| raw_tcp(addr, head.as_bytes(), b"", Duration::from_secs(5)));
    if !answer.is_empty() {
        let s = status_of(&answer);
        assert!((400..500).contains(&s), "{answer:.200}");
    }

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
    assert_eq!(status_of(&answer), 413, "{answer:.300}");
    assert_eq!(slug_of(&answer), "payload-too-large");

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
    assert_eq!(status_of(&answer), 413, "{answer:.300}");
    assert_eq!(slug_of(&answer), "payload-too-large");
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
async fn path_tricks_and_control_characters_are_404_problems() {
    let w = World::start().await;
    let id = w.id("con", 1, 1);
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

    // Raw control characters and spaces in the request line never reach routing: the
    // HTTP parser (pingora) refuses them with a plain 400 or lets them through encoded.
    let addr = w.edge.public;
    for target in [
        &b"/v1/contacts/con_\x01abc"[..],
        b"/v1/contacts/con_\x7fabc",
        b"/v1/contacts/a b",
    ] {
        let mut head = b"GET ".to_vec();
        head.extend_from_slice(target);
        head.extend_from_slice(b" HTTP/1.1\r\nhost: edge\r\n\r\n");
        let answer =
            tokio::task::block_in_place(|| raw_tcp(addr, &head, b"", Duration::from_secs(5)));
        // Either the parser refuses the line (400), or it percent-encodes the byte and
        // routing finds no such id (404 problem).
        match status_of(&answer) {
            400 => {}
            404 => assert_eq!(slug_of(&answer), "not-found", "{answer}"),
            other => panic!("{other}: {answer}"),
        }
    }
    // Still serving.
    let r = w
        .call(1, 101, "GET", &format!("/v1/contacts/{id}"), None)
        .await;
    assert_eq!(r.status, 200);
}
