//! Several instances of one legacy service (`url` as a list): calls spread over them, an
//! instance that dies is skipped with no failed read, writes fail over when nothing
//! reached the dead one, and a returning instance is used again.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::{spawn_edge, tempdir, Resp, World, V};

async fn get_at(w: &World, at: SocketAddr, n: i64) -> Resp {
    let path = format!("/v1/contacts/{}", w.id("con", 1, 1 + n % 5));
    w.get_at(at, &path, &w.token(1, 101)).await
}

async fn create_at(w: &World, at: SocketAddr, i: u32) -> Resp {
    let auth = format!("Bearer {}", w.token(1, 101));
    let body = json!({"email": format!("instances-{i}@example.com"), "first_name": "Inst"});
    w.raw_at(
        at,
        "POST",
        "/v1/contacts",
        &[
            ("authorization", &auth),
            ("version", V),
            ("content-type", "application/json"),
        ],
        Some(serde_json::to_vec(&body).expect("json")),
    )
    .await
}

/// The edge's config with crm-core's `url` replaced by the list of `instances`.
fn with_instances(config: &str, instances: &[SocketAddr]) -> String {
    let list = instances
        .iter()
        .map(|a| format!("\"http://{a}\""))
        .collect::<Vec<_>>()
        .join(", ");
    config
        .lines()
        .map(|l| {
            if let Some(rest) = l.strip_prefix("  crm-core: { url: \"") {
                let after = rest.find('"').map(|i| &rest[i + 1..]).unwrap_or("");
                format!("  crm-core: {{ url: [{list}]{after}")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_crm_core_instances_share_the_load_and_fail_over() {
    let mut w = World::start().await;
    let first = w.sim.addr("crm-core");
    let second = w
        .sim
        .start_instance("crm-core", 0)
        .await
        .expect("second instance");
    let edge = tokio::task::block_in_place(|| {
        spawn_edge(
            tempdir::Dir::new("instances"),
            &with_instances(&w.config, &[first, second]),
        )
    });
    let at = edge.public;

    // Spread: both instances serve reads.
    let (a0, b0) = (w.sim.calls_at(first), w.sim.calls_at(second));
    for n in 0..40 {
        assert_eq!(get_at(&w, at, n).await.status, 200);
    }
    assert!(w.sim.calls_at(first) > a0, "the first instance was used");
    assert!(w.sim.calls_at(second) > b0, "the second instance was used");

    // Kill the second instance under load: no read fails.
    let done = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let failed = AtomicU64::new(0);
    let load = async {
        let worker = |k: i64| {
            let (done, stop, failed, w) = (&done, &stop, &failed, &w);
            async move {
                let mut n = k;
                while !stop.load(Ordering::Relaxed) {
                    let r = get_at(w, at, n).await;
                    if r.status != 200 {
                        failed.fetch_add(1, Ordering::Relaxed);
                        eprintln!(
                            "failed read: {} {}",
                            r.status,
                            String::from_utf8_lossy(&r.body)
                        );
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                    n += 4;
                }
            }
        };
        tokio::join!(worker(0), worker(1), worker(2), worker(3));
    };
    let killer = async {
        while done.load(Ordering::Relaxed) < 100 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        w.sim.stop_instance(second).await;
        let at_stop = done.load(Ordering::Relaxed);
        while done.load(Ordering::Relaxed) < at_stop + 300 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        stop.store(true, Ordering::Relaxed);
    };
    tokio::join!(load, killer);
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "reads failed while an instance died"
    );

    // Writes after the death: each is created once (a write that could not connect to
    // the dead instance fails over; nothing reached it).
    let before = w.sim.state().count(1, "contacts");
    for i in 0..10 {
        let r = create_at(&w, at, i).await;
        assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    }
    assert_eq!(w.sim.state().count(1, "contacts"), before + 10);

    // /readyz reports the dead instance once its health check failed.
    let readyz = format!("http://{}/readyz", edge.admin);
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let v = admin_json(&readyz).await;
        let list = v["instances"]["crm-core"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if list
            .iter()
            .any(|i| i["instance"] == second.to_string() && i["up"] == false)
        {
            // Still ready for the load balancer (the other instance serves), but degraded.
            assert_eq!(v["status"], "degraded", "{v}");
            break;
        }
        assert!(
            Instant::now() < until,
            "the dead instance is still reported up: {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Bring it back on its address: it is used again.
    w.sim
        .start_instance("crm-core", second.port())
        .await
        .expect("instance back");
    let back = w.sim.calls_at(second);
    let until = Instant::now() + Duration::from_secs(60);
    let mut n = 0;
    while w.sim.calls_at(second) == back {
        assert_eq!(get_at(&w, at, n).await.status, 200);
        n += 1;
        assert!(
            Instant::now() < until,
            "the instance that came back is not used"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Both instances well again: `/readyz` says ready.
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let v = admin_json(&readyz).await;
        if v["status"] == "ready" {
            break;
        }
        assert!(Instant::now() < until, "still not ready: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `GET` on the admin listener, as JSON.
async fn admin_json(url: &str) -> serde_json::Value {
    use http_body_util::{BodyExt, Full};
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<bytes::Bytes>>();
    let req = http::Request::get(url)
        .body(Full::new(bytes::Bytes::new()))
        .expect("request");
    let Ok(resp) = client.request(req).await else {
        return serde_json::Value::Null;
    };
    let body = resp
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null)
}
