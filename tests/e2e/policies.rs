//! Edge policies: rate limits (memory and Redis, one node and two), idempotency keys
//! (memory and Redis, retries, races across nodes, restarts), CORS.

use std::collections::HashSet;
use std::net::SocketAddr;

use serde_json::{json, Value};

use crate::harness::{Resp, World, V};

/// A Redis key prefix of this test's own.
fn prefix(tag: &str) -> String {
    let n: u64 = rand::random();
    format!("pe-test:{tag}:{n:016x}:")
}

fn with(extra: String) -> impl FnOnce(&legacy_sim::issuer::Issuer, &mut String) {
    move |_, config| config.push_str(&extra)
}

fn rate_config(backend: &str, tag: &str) -> String {
    format!(
        "redis: {{ url: \"redis://127.0.0.1:6379\", key_prefix: \"{}\" }}\n\
         rate_limits:\n  backend: {backend}\n  policies:\n\
         \x20   - {{ name: default, quota: 5, window_seconds: 3600 }}\n\
         \x20   - {{ name: search, quota: 3, window_seconds: 3600, applies_to: search }}\n\
         \x20 tenant_overrides: {{ \"2\": {{ default: 7 }} }}\n",
        prefix(tag)
    )
}

/// `GET` of the tenant's first contact on the edge at `at`, as (tenant, user) of `client`.
pub async fn get_as(w: &World, at: SocketAddr, tenant: u32, user: u64, client: &str) -> Resp {
    let mut m = prospect_edge::token::Mint::new(tenant, user);
    m.client = client.into();
    let path = format!("/v1/contacts/{}", w.id("con", tenant, 1));
    w.get_at(at, &path, &w.token_with(&m)).await
}

async fn rate_limits_count_down_and_refuse(backend: &str) {
    let w = World::start_custom(|_| {}, with(rate_config(backend, "rl"))).await;
    let at = w.edge.public;
    for i in 1..=5u64 {
        let r = get_as(&w, at, 1, 101, "app-a").await;
        assert_eq!(r.status, 200);
        assert_eq!(
            r.header("ratelimit-policy"),
            Some(r#""default";q=5;w=3600, "search";q=3;w=3600"#)
        );
        let rl = r.header("ratelimit").expect("RateLimit");
        assert!(
            rl.starts_with(&format!("\"default\";r={};t=", 5 - i)),
            "{rl}"
        );
    }
    let r = get_as(&w, at, 1, 101, "app-a").await;
    let p = r.assert_problem(429, "rate-limited");
    assert_eq!(p["violated_policies"], json!(["default"]));
    let retry: u64 = r
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("Retry-After");
    assert!((1..=3600).contains(&retry));
    assert!(r
        .header("ratelimit")
        .is_some_and(|v| v.starts_with("\"default\";r=0;")));
    // Another app of the same tenant, and another tenant (with its override), count apart.
    assert_eq!(get_as(&w, at, 1, 101, "app-b").await.status, 200);
    let t2 = get_as(&w, at, 2, 201, "app-a").await;
    assert_eq!(t2.status, 200);
    assert!(t2
        .header("ratelimit-policy")
        .is_some_and(|v| v.starts_with(r#""default";q=7;w=3600"#)));
    // Searches meet the tighter policy first.
    let mut m = prospect_edge::token::Mint::new(1, 102);
    m.client = "app-c".into();
    let auth = format!("Bearer {}", w.token_with(&m));
    let h = [
        ("authorization", auth.as_str()),
        ("version", V),
        ("content-type", "application/json"),
    ];
    for i in 1..=3u64 {
        let r = w
            .raw(
                "POST",
                "/v1/contacts/search",
                &h,
                Some(b"{\"limit\":1}".to_vec()),
            )
            .await;
        assert_eq!(r.status, 200);
        assert!(r
            .header("ratelimit")
            .is_some_and(|v| v.starts_with(&format!("\"search\";r={};", 3 - i))));
    }
    let r = w
        .raw("POST", "/v1/contacts/search", &h, Some(b"{}".to_vec()))
        .await;
    assert_eq!(
        r.assert_problem(429, "rate-limited")["violated_policies"],
        json!(["search"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_in_memory() {
    rate_limits_count_down_and_refuse("memory").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_in_redis() {
    rate_limits_count_down_and_refuse("redis").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_edges_sharing_redis_admit_no_more_than_the_quota_together() {
    let extra = format!(
        "redis: {{ url: \"redis://127.0.0.1:6379\", key_prefix: \"{}\" }}\n\
         rate_limits:\n  backend: redis\n  policies:\n    - {{ name: default, quota: 40, window_seconds: 3600 }}\n",
        prefix("rl2")
    );
    let w = World::start_custom(|_| {}, with(extra)).await;
    let second = w.another_edge();
    let w = std::sync::Arc::new(w);
    let mut tasks = Vec::new();
    for i in 0..120 {
        let w = w.clone();
        let at = if i % 2 == 0 {
            w.edge.public
        } else {
            second.public
        };
        tasks.push(tokio::spawn(async move {
            get_as(&w, at, 1, 101, "busy-app").await.status
        }));
    }
    let mut ok = 0;
    let mut limited = 0;
    for t in tasks {
        match t.await.expect("task") {
            200 => ok += 1,
            429 => limited += 1,
            s => panic!("unexpected {s}"),
        }
    }
    assert_eq!(
        ok, 40,
        "exactly the quota across both nodes (Redis counts atomically)"
    );
    assert_eq!(limited, 80);
    drop(second);
}

fn idem_config(backend: &str) -> String {
    format!(
        "redis: {{ url: \"redis://127.0.0.1:6379\", key_prefix: \"{}\" }}\nidempotency: {{ backend: {backend} }}\n",
        prefix("idem")
    )
}

async fn post_with_key(w: &World, at: SocketAddr, key: &str, body: &Value) -> Resp {
    let auth = format!("Bearer {}", w.token(1, 101));
    let h = [
        ("authorization", auth.as_str()),
        ("version", V),
        ("content-type", "application/json"),
        ("idempotency-key", key),
    ];
    w.raw_at(
        at,
        "POST",
        "/v1/contacts",
        &h,
        Some(serde_json::to_vec(body).expect("json")),
    )
    .await
}

async fn retried_creates_are_replayed(backend: &str) {
    let w = World::start_custom(|_| {}, with(idem_config(backend))).await;
    let before = w.sim.state().count(1, "contacts");
    let body = json!({"email": format!("idem-{backend}@example.com"), "first_name": "Idem"});
    let first = post_with_key(&w, w.edge.public, "key-1", &body).await;
    assert_eq!(first.status, 201);
    assert!(first.header("idempotent-replayed").is_none());
    let again = post_with_key(&w, w.edge.public, "key-1", &body).await;
    assert_eq!(again.status, 201);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.body, first.body, "byte for byte");
    assert_eq!(again.header("location"), first.header("location"));
    assert_eq!(w.sim.state().count(1, "contacts"), before + 1);
    // Same key, another request → 422; the key of another app is its own.
    let other = json!({"email": "someone-else@example.com"});
    post_with_key(&w, w.edge.public, "key-1", &other)
        .await
        .assert_problem(422, "idempotency-key-reused");
    // A request refused before the upstream stores nothing: fixing it with the same key works.
    let bad = json!({"email": 5});
    post_with_key(&w, w.edge.public, "key-2", &bad)
        .await
        .assert_problem(400, "invalid-request");
    let fixed = post_with_key(
        &w,
        w.edge.public,
        "key-2",
        &json!({"email": format!("fixed-{backend}@example.com")}),
    )
    .await;
    assert_eq!(fixed.status, 201);
    // An upstream refusal after reaching it is stored too (409 replayed as 409).
    let dup = post_with_key(&w, w.edge.public, "key-3", &body).await;
    dup.assert_problem(409, "conflict");
    let dup2 = post_with_key(&w, w.edge.public, "key-3", &body).await;
    assert_eq!(dup2.status, 409);
    assert_eq!(dup2.body, dup.body);
    assert_eq!(dup2.header("idempotent-replayed"), Some("true"));
    // Invalid keys.
    post_with_key(&w, w.edge.public, "", &body)
        .await
        .assert_problem(400, "invalid-request");
    post_with_key(&w, w.edge.public, &"k".repeat(256), &body)
        .await
        .assert_problem(400, "invalid-request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_in_memory() {
    retried_creates_are_replayed("memory").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_in_redis() {
    retried_creates_are_replayed("redis").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_posts_across_two_edges_create_one_record_and_survive_a_restart() {
    let w = World::start_custom(|_| {}, with(idem_config("redis"))).await;
    let second = w.another_edge();
    let before = w.sim.state().count(1, "contacts");
    let body = json!({"email": "race@example.com", "first_name": "Race"});
    let w = std::sync::Arc::new(w);
    let mut tasks = Vec::new();
    for i in 0..200 {
        let (w, body) = (w.clone(), body.clone());
        let at = if i % 2 == 0 {
            w.edge.public
        } else {
            second.public
        };
        tasks.push(tokio::spawn(async move {
            post_with_key(&w, at, "race-key", &body).await
        }));
    }
    let mut bodies = HashSet::new();
    let mut created = 0;
    for t in tasks {
        let r = t.await.expect("task");
        match r.status {
            201 => {
                created += 1;
                bodies.insert(r.body.clone());
            }
            409 => {
                let p = r.assert_problem(409, "idempotency-key-in-use");
                assert!(r.header("retry-after").is_some(), "{p}");
            }
            s => panic!("unexpected {s}: {}", String::from_utf8_lossy(&r.body)),
        }
    }
    assert!(created >= 1);
    assert_eq!(bodies.len(), 1, "every 201 is the same answer");
    assert_eq!(
        w.sim.state().count(1, "contacts"),
        before + 1,
        "exactly one record"
    );
    // A new edge process (a restart) replays from Redis.
    drop(second);
    let third = w.another_edge();
    let r = post_with_key(&w, third.public, "race-key", &body).await;
    assert_eq!(r.status, 201);
    assert_eq!(r.header("idempotent-replayed"), Some("true"));
    assert!(bodies.contains(&r.body));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_preflight_and_origins() {
    let cors = "cors:\n  allowed_origins: [\"https://app.example.com\"]\n  max_age_seconds: 600\n"
        .to_string();
    let w = World::start_custom(|_| {}, with(cors)).await;
    let path = format!("/v1/contacts/{}", w.id("con", 1, 1));
    let calls = w.sim.state().calls("iam");
    let r = w
        .raw(
            "OPTIONS",
            &path,
            &[
                ("origin", "https://app.example.com"),
                ("access-control-request-method", "PATCH"),
                (
                    "access-control-request-headers",
                    "authorization, version, idempotency-key, content-type",
                ),
            ],
            None,
        )
        .await;
    assert_eq!(r.status, 204);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    let methods = r.header("access-control-allow-methods").expect("methods");
    assert!(methods.contains("PATCH"));
    let allowed = r
        .header("access-control-allow-headers")
        .expect("headers")
        .to_ascii_lowercase();
    for h in [
        "authorization",
        "version",
        "idempotency-key",
        "content-type",
    ] {
        assert!(allowed.contains(h), "{h} in {allowed}");
    }
    assert_eq!(r.header("access-control-max-age"), Some("600"));
    assert_eq!(w.sim.state().calls("iam"), calls, "no upstream, no auth");
    // A refused origin gets no CORS grant.
    let r = w
        .raw(
            "OPTIONS",
            &path,
            &[
                ("origin", "https://evil.example"),
                ("access-control-request-method", "GET"),
            ],
            None,
        )
        .await;
    assert!(r.header("access-control-allow-origin").is_none());
    // Actual requests: the grant and the exposed headers.
    let auth = format!("Bearer {}", w.token(1, 101));
    let r = w
        .raw(
            "GET",
            &path,
            &[
                ("authorization", &auth),
                ("version", V),
                ("origin", "https://app.example.com"),
            ],
            None,
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    let exposed = r.header("access-control-expose-headers").expect("exposed");
    for h in [
        "Trace-Id",
        "Version",
        "RateLimit",
        "RateLimit-Policy",
        "Retry-After",
        "Location",
        "Idempotent-Replayed",
    ] {
        assert!(exposed.contains(h), "{h}");
    }
    let r = w
        .raw(
            "GET",
            &path,
            &[
                ("authorization", &auth),
                ("version", V),
                ("origin", "https://evil.example"),
            ],
            None,
        )
        .await;
    assert!(r.header("access-control-allow-origin").is_none());
}
