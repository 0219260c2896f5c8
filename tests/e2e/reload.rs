//! Hot reload: SIGHUP recompiles the mappings; a broken set is refused and the old one
//! keeps serving.

use std::time::Duration;

use crate::harness::World;

async fn reloads(w: &World, outcome: &str) -> u64 {
    w.admin("/readyz").await.json()["mapping_reloads"][outcome]
        .as_u64()
        .unwrap_or(0)
}

async fn wait_for(w: &World, outcome: &str, n: u64) {
    for _ in 0..500 {
        if reloads(w, outcome).await >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no {outcome} reload seen");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_field_is_served_after_sighup_and_a_broken_set_is_refused() {
    let w = World::start().await;
    let path = format!("/v1/contacts/{}", w.id("con", 1, 1));
    let before = w.call(1, 101, "GET", &path, None).await.json();
    assert!(before["data"].get("role").is_none());

    let contacts = w.edge.dir.path().join("mappings/contacts.yaml");
    let text = std::fs::read_to_string(&contacts).expect("read");
    let added = text.replacen(
        "\nfields:\n",
        "\nfields:\n  role: { from: jobTitle, read_only: true }\n",
        1,
    );
    assert_ne!(added, text);
    std::fs::write(&contacts, &added).expect("write");
    w.hup();
    wait_for(&w, "ok", 1).await;
    let after = w.call(1, 101, "GET", &path, None).await.json();
    assert_eq!(after["data"]["role"], "Chief Analyst");

    // Broken: an unknown type. Refused; the previous plan (with `role`) keeps serving.
    std::fs::write(
        &contacts,
        added.replace(
            "role: { from: jobTitle, read_only: true }",
            "role: { from: jobTitle, type: colour }",
        ),
    )
    .expect("write");
    w.hup();
    wait_for(&w, "refused", 1).await;
    let still = w.call(1, 101, "GET", &path, None).await;
    assert_eq!(still.status, 200);
    assert_eq!(still.json()["data"]["role"], "Chief Analyst");
    // Request counters are written after each answer: wait until the last one shows.
    let third = r#"prospect_edge_requests_total{method="GET",route="get",status_class="2xx"} 3"#;
    let mut metrics = String::new();
    for _ in 0..200 {
        metrics = String::from_utf8_lossy(&w.admin("/metrics").await.body).to_string();
        if metrics.contains(third) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        metrics.contains(r#"prospect_edge_mapping_reloads_total{outcome="refused"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            r#"prospect_edge_requests_total{method="GET",route="get",status_class="2xx"} 3"#
        ),
        "{metrics}"
    );
}
