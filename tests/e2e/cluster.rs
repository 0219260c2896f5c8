//! Redis beyond one healthy box: a stalled Redis (SIGSTOP/SIGCONT) must not lock
//! idempotency keys; a Redis Cluster (3 masters, 3 replicas) and a Sentinel group share
//! the state of several edges and fail over under them. Every test here runs Redis
//! servers of its own ([`OwnRedis`], [`OwnCluster`], [`OwnSentinels`]), killed on drop.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::{Resp, World, V};
use crate::own_redis::{command, OwnCluster, OwnRedis, OwnSentinels};

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

async fn get_as(w: &World, at: SocketAddr, tenant: u32, client: &str) -> Resp {
    crate::policies::get_as(w, at, tenant, 201, client).await
}

fn with(extra: String) -> impl FnOnce(&legacy_sim::issuer::Issuer, &mut String) {
    move |_, config| config.push_str(&extra)
}

fn test_prefix(tag: &str) -> String {
    format!("pe-{tag}-{:016x}:", rand::random::<u64>())
}

/// `:N` of an integer answer.
fn int_answer(port: u16, args: &[&str]) -> Option<i64> {
    command(port, args)?.trim().strip_prefix(':')?.parse().ok()
}

/// Rate limits and idempotency on Redis; tenant 1 (the POSTs) has a quota it never meets.
fn policies(redis: String, quota: u64, on_failure: &str) -> String {
    format!(
        "{redis}\
         rate_limits:\n  backend: redis\n  on_redis_failure: {on_failure}\n  policies:\n\
         \x20   - {{ name: default, quota: {quota}, window_seconds: 3600 }}\n\
         \x20 tenant_overrides: {{ \"1\": {{ default: 1000000 }} }}\n\
         idempotency: {{ backend: redis }}\n"
    )
}

/// Until a replica holds as many keys as its master (replication is asynchronous).
fn replicated(master: u16, replica: u16) -> bool {
    crate::own_redis::wait_until(Duration::from_secs(10), || {
        let m = int_answer(master, &["DBSIZE"]);
        m.is_some() && m == int_answer(replica, &["DBSIZE"])
    })
}

/// Three edges on one Redis Cluster: together they admit the quota (within 10 %) and
/// create one record per idempotency key. Then the master holding the rate-limit counter
/// and one idempotency key is SIGKILLed: until its replica takes over, rate limits fail
/// open (`on_redis_failure: open`, answers without `RateLimit`) and a POST whose key lives
/// on the dead master answers 503 `upstream-unavailable` with `Retry-After: 1`; after the
/// failover the edges serve as before, the replica's copy replays the stored answer and
/// the counter carries on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_edges_on_a_redis_cluster_share_quota_and_keys_and_survive_a_master_kill() {
    let mut cluster = tokio::task::spawn_blocking(OwnCluster::start)
        .await
        .expect("cluster");
    let prefix = test_prefix("cluster");
    let seeds: Vec<String> = cluster.urls().iter().map(|u| format!("\"{u}\"")).collect();
    let redis = format!(
        "redis: {{ cluster: [{}], key_prefix: \"{prefix}\" }}\n",
        seeds.join(", ")
    );
    let quota = 60;
    let w = World::start_custom(|_| {}, with(policies(redis, quota, "open"))).await;
    let (e2, e3) = (w.another_edge(), w.another_edge());
    let edges = [w.edge.public, e2.public, e3.public];
    let w = std::sync::Arc::new(w);

    // The quota, shared: 90 concurrent reads spread over the three edges.
    let mut tasks = Vec::new();
    for i in 0..90 {
        let (w, at) = (w.clone(), edges[i % 3]);
        tasks.push(tokio::spawn(async move {
            get_as(&w, at, 2, "cluster-app").await.status
        }));
    }
    let (mut admitted, mut limited) = (0u64, 0u64);
    for t in tasks {
        match t.await.expect("task") {
            200 | 404 => admitted += 1,
            429 => limited += 1,
            s => panic!("unexpected {s}"),
        }
    }
    eprintln!("cluster quota {quota}: admitted {admitted} of 90");
    assert!(
        admitted.abs_diff(quota) <= quota / 10,
        "admitted {admitted} for a quota of {quota}"
    );
    assert_eq!(admitted + limited, 90);

    // One record per key: 30 concurrent POSTs of one key over the three edges.
    let before = w.sim.state().count(1, "contacts");
    let body = json!({"email": "cluster-race@example.com", "first_name": "Race"});
    let mut tasks = Vec::new();
    for i in 0..30 {
        let (w, at, body) = (w.clone(), edges[i % 3], body.clone());
        tasks.push(tokio::spawn(async move {
            post_with_key(&w, at, "cluster-race", &body).await
        }));
    }
    let mut bodies = std::collections::HashSet::new();
    for t in tasks {
        let r = t.await.expect("task");
        match r.status {
            201 => {
                bodies.insert(r.body.clone());
            }
            409 => {
                r.assert_problem(409, "idempotency-key-in-use");
            }
            s => panic!("unexpected {s}: {}", String::from_utf8_lossy(&r.body)),
        }
    }
    assert_eq!(bodies.len(), 1, "every 201 is the same answer");
    assert_eq!(w.sim.state().count(1, "contacts"), before + 1, "one record");

    // The victim: the master that holds the rate-limit counter of (tenant 2, cluster-app).
    let pattern = format!("{prefix}{{rl:2:*");
    let victim = cluster
        .masters()
        .into_iter()
        .find(|m| command(*m, &["KEYS", &pattern]).is_some_and(|r| !r.starts_with("*0")))
        .expect("a master holds the counter");
    let replica = cluster.replica_of(victim).expect("the victim's replica");
    // An idempotency key whose record lives on the victim too.
    let mut on_victim = None;
    for i in 0..40 {
        let key = format!("pre-kill-{i}");
        let n = int_answer(victim, &["DBSIZE"]).expect("dbsize");
        let b = json!({"email": format!("pre{i}@example.com")});
        let r = post_with_key(&w, edges[i % 3], &key, &b).await;
        assert_eq!(r.status, 201);
        if int_answer(victim, &["DBSIZE"]).expect("dbsize") > n {
            on_victim = Some((key, b, r.body));
            break;
        }
    }
    let (key, b, stored) = on_victim.expect("one of 40 keys hashes to the victim");
    assert!(replicated(victim, replica), "the replica caught up");
    let records = w.sim.state().count(1, "contacts");
    let errors = r#"prospect_edge_rate_limit_decisions_total{outcome="redis_error"}"#;
    let errors_before = w.counter(errors).await;

    let killed_at = Instant::now();
    cluster.node(victim).kill();

    // The failover window (the cluster needs its node timeout, 1 s, to even notice).
    let r = get_as(&w, edges[0], 2, "cluster-app").await;
    assert!(
        matches!(r.status, 200 | 404),
        "rate limits fail open while the counter's master is gone: {}",
        r.status
    );
    assert!(r.header("ratelimit").is_none(), "no count to report");
    assert!(
        w.counter(errors).await > errors_before,
        "counted as redis_error"
    );
    let r = post_with_key(&w, edges[1], &key, &b).await;
    r.assert_problem(503, "upstream-unavailable");
    assert_eq!(r.header("retry-after"), Some("1"));

    // After the failover: the replay comes from the promoted replica, on every edge.
    let deadline = Instant::now() + Duration::from_secs(45);
    let mut window = None;
    for at in edges.iter().cycle() {
        let r = post_with_key(&w, *at, &key, &b).await;
        match r.status {
            201 => {
                assert_eq!(r.header("idempotent-replayed"), Some("true"));
                assert_eq!(r.body, stored, "the stored answer, from the replica");
                window.get_or_insert(killed_at.elapsed());
                break;
            }
            503 => {
                r.assert_problem(503, "upstream-unavailable");
            }
            s => panic!("unexpected {s}: {}", String::from_utf8_lossy(&r.body)),
        }
        assert!(Instant::now() < deadline, "no failover within 45 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("cluster failover window seen by the edge: {window:?}");
    assert_eq!(cluster.replica_of(replica), None);
    assert!(
        cluster.masters().contains(&replica),
        "the replica took over"
    );
    for at in edges {
        let r = post_with_key(&w, at, &key, &b).await;
        assert_eq!(r.status, 201);
        assert_eq!(r.body, stored);
        // The counter was replicated too: the quota is still used up.
        let g = get_as(&w, at, 2, "cluster-app").await;
        assert_eq!(g.status, 429, "the replicated counter still refuses");
    }
    assert_eq!(
        w.sim.state().count(1, "contacts"),
        records,
        "nothing ran twice"
    );
    let r = post_with_key(
        &w,
        edges[2],
        "after-failover",
        &json!({"email": "after@example.com"}),
    )
    .await;
    assert_eq!(r.status, 201);
    assert_eq!(w.sim.state().count(1, "contacts"), records + 1);
    drop((e2, e3));
}

/// One edge on a Sentinel group (1 master, 1 replica, 3 sentinels), rate limits
/// `on_redis_failure: closed`. The master is SIGKILLed: until the sentinels promote the
/// replica, both policies answer 503 `upstream-unavailable` with `Retry-After: 1`; after
/// it the edge finds the new master through the sentinels, replays the stored answer and
/// creates again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_on_sentinel_follows_the_master_through_a_failover() {
    let mut group = tokio::task::spawn_blocking(|| OwnSentinels::start("pe-master"))
        .await
        .expect("sentinels");
    let prefix = test_prefix("sentinel");
    let urls: Vec<String> = group.urls().iter().map(|u| format!("\"{u}\"")).collect();
    let redis = format!(
        "redis: {{ sentinel: {{ master: pe-master, urls: [{}] }}, key_prefix: \"{prefix}\" }}\n",
        urls.join(", ")
    );
    let w = World::start_custom(|_| {}, with(policies(redis, 1000, "closed"))).await;
    let at = w.edge.public;
    let body = json!({"email": "sentinel@example.com"});
    let first = post_with_key(&w, at, "sentinel-key", &body).await;
    assert_eq!(first.status, 201);
    assert_eq!(get_as(&w, at, 2, "sentinel-app").await.status, 200);
    let (old, new) = (group.master.port, group.replica.port);
    assert_eq!(group.master_port(), Some(old));
    assert!(replicated(old, new), "the replica caught up");
    let records = w.sim.state().count(1, "contacts");

    let killed_at = Instant::now();
    group.master.kill();
    // The window: the sentinels wait 500 ms before they even call the master down.
    let r = get_as(&w, at, 2, "sentinel-app").await;
    r.assert_problem(503, "upstream-unavailable");
    assert_eq!(r.header("retry-after"), Some("1"));
    let r = post_with_key(&w, at, "sentinel-key", &body).await;
    r.assert_problem(503, "upstream-unavailable");

    let deadline = Instant::now() + Duration::from_secs(45);
    let window = loop {
        let r = post_with_key(&w, at, "sentinel-key", &body).await;
        match r.status {
            201 => {
                assert_eq!(r.header("idempotent-replayed"), Some("true"));
                assert_eq!(r.body, first.body);
                break killed_at.elapsed();
            }
            503 => {
                r.assert_problem(503, "upstream-unavailable");
            }
            s => panic!("unexpected {s}: {}", String::from_utf8_lossy(&r.body)),
        }
        assert!(Instant::now() < deadline, "no failover within 45 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    eprintln!("sentinel failover window seen by the edge: {window:?}");
    assert_eq!(group.master_port(), Some(new), "the replica was promoted");
    assert_eq!(get_as(&w, at, 2, "sentinel-app").await.status, 200);
    let r = post_with_key(
        &w,
        at,
        "after-sentinel",
        &json!({"email": "s2@example.com"}),
    )
    .await;
    assert_eq!(r.status, 201);
    assert_eq!(
        w.sim.state().count(1, "contacts"),
        records + 1,
        "one new record"
    );
}
