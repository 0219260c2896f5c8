//! Redis beyond one healthy box: a stalled Redis (SIGSTOP/SIGCONT) must not lock
//! idempotency keys. Every test here runs Redis servers of its own ([`OwnRedis`]).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::{Resp, World, V};
use crate::own_redis::OwnRedis;

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

fn idem_on(url: &str) -> impl FnOnce(&legacy_sim::issuer::Issuer, &mut String) {
    let extra = format!(
        "redis: {{ url: \"{url}\", key_prefix: \"pe-stall:\" }}\nidempotency: {{ backend: redis }}\n"
    );
    move |_, config| config.push_str(&extra)
}

/// A POST whose claim times out against a stalled Redis answers 503; once Redis resumes,
/// the late claim is undone, so the client's retry runs (once) instead of meeting
/// `409 idempotency-key-in-use` for the claim's whole life.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_given_up_during_a_redis_stall_does_not_lock_the_key() {
    let redis = OwnRedis::start();
    let w = World::start_custom(|_| {}, idem_on(&redis.url())).await;
    let at = w.edge.public;
    // The edge's connection to Redis is up before the stall.
    let warm = post_with_key(&w, at, "warm", &json!({"email": "warm@example.com"})).await;
    assert_eq!(warm.status, 201);
    let before = w.sim.state().count(1, "contacts");
    let body = json!({"email": "stalled@example.com", "first_name": "Stall"});

    redis.stall();
    let r = post_with_key(&w, at, "stall-key", &body).await;
    redis.resume();
    r.assert_problem(503, "upstream-unavailable");
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(w.sim.state().count(1, "contacts"), before, "nothing ran");

    // Retries as a client would (honouring Retry-After loosely): within a generous
    // deadline the key is free, and the create runs exactly once.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut in_use = 0;
    let first = loop {
        let r = post_with_key(&w, at, "stall-key", &body).await;
        match r.status {
            201 => break r,
            409 => {
                r.assert_problem(409, "idempotency-key-in-use");
                in_use += 1;
            }
            503 => {}
            s => panic!("unexpected {s}: {}", String::from_utf8_lossy(&r.body)),
        }
        assert!(
            Instant::now() < deadline,
            "the key stayed locked after the stall ({in_use} answers 409)"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(first.header("idempotent-replayed").is_none());
    let again = post_with_key(&w, at, "stall-key", &body).await;
    assert_eq!(again.status, 201);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.body, first.body);
    assert_eq!(
        w.sim.state().count(1, "contacts"),
        before + 1,
        "one record for the key"
    );
}
