//! Dated versions: the same records in both releases' shapes, both ways.

use serde_json::{json, Value};

use crate::harness::World;

async fn as_version(
    w: &World,
    version: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> crate::harness::Resp {
    let auth = format!("Bearer {}", w.token(1, 101));
    let mut h = vec![("authorization", auth.as_str()), ("version", version)];
    if body.is_some() {
        h.push(("content-type", "application/json"));
    }
    w.raw(
        method,
        path,
        &h,
        body.map(|b| serde_json::to_vec(&b).expect("json")),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_clients_read_and_write_the_old_shapes() {
    let w = World::start().await;
    let deal = format!("/v1/deals/{}", w.id("deal", 1, 1));
    let new = as_version(&w, "2026-11-01", "GET", &deal, None)
        .await
        .json();
    assert_eq!(
        new["data"]["amount"],
        json!({"value": "12000.00", "currency": "EUR"})
    );
    assert!(new["data"].get("currency_code").is_none());
    let old = as_version(&w, "2026-05-01", "GET", &deal, None).await;
    assert_eq!(old.header("version"), Some("2026-05-01"));
    let old = old.json();
    assert_eq!(old["data"]["amount"], json!(12000.0));
    assert_eq!(old["data"]["currency_code"], "EUR");
    assert_eq!(old["data"]["name"], new["data"]["name"]);

    // Old-shape writes.
    let r = as_version(&w, "2026-05-01", "POST", "/v1/deals", Some(json!({
        "name": "Old client deal", "pipeline_id": w.id("pipe", 1, 1), "amount": 250.5, "currency_code": "GBP"
    }))).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["data"]["amount"], json!(250.5));
    let id = r.json()["data"]["id"].as_str().expect("id").to_string();
    let now = as_version(&w, "2026-11-01", "GET", &format!("/v1/deals/{id}"), None)
        .await
        .json();
    assert_eq!(
        now["data"]["amount"],
        json!({"value": "250.50", "currency": "GBP"})
    );
    // Half of the money group: the error names the old field.
    let r = as_version(
        &w,
        "2026-05-01",
        "PATCH",
        &format!("/v1/deals/{id}"),
        Some(json!({"amount": 1})),
    )
    .await;
    assert_eq!(
        r.assert_problem(400, "invalid-request")["errors"][0]["pointer"],
        "/currency_code"
    );
    let r = as_version(
        &w,
        "2026-05-01",
        "PATCH",
        &format!("/v1/deals/{id}"),
        Some(json!({"amount": null})),
    )
    .await;
    assert_eq!(r.json()["data"]["amount"], Value::Null);

    // Contacts: `title` then, `job_title` now — reads, writes and filters.
    let contact = format!("/v1/contacts/{}", w.id("con", 1, 1));
    let old = as_version(&w, "2026-05-01", "GET", &contact, None)
        .await
        .json();
    assert_eq!(old["data"]["title"], "Chief Analyst");
    assert!(old["data"].get("job_title").is_none());
    let r = as_version(
        &w,
        "2026-05-01",
        "PATCH",
        &contact,
        Some(json!({"title": "Countess"})),
    )
    .await;
    assert_eq!(r.json()["data"]["title"], "Countess");
    let now = as_version(&w, "2026-11-01", "GET", &contact, None)
        .await
        .json();
    assert_eq!(now["data"]["job_title"], "Countess");
    let r = as_version(
        &w,
        "2026-05-01",
        "PATCH",
        &contact,
        Some(json!({"title": 5})),
    )
    .await;
    assert_eq!(
        r.assert_problem(400, "invalid-request")["errors"][0]["pointer"],
        "/title"
    );
    let p = as_version(
        &w,
        "2026-05-01",
        "POST",
        "/v1/contacts/search",
        Some(json!({"filters": [{"field": "title", "operator": "eq", "value": "Countess"}]})),
    )
    .await
    .json();
    assert_eq!(p["data"][0]["id"], w.id("con", 1, 1).as_str());
    assert_eq!(p["data"][0]["title"], "Countess");
    // The new name is not known to old clients' responses, and vice versa.
    let p = as_version(
        &w,
        "2026-11-01",
        "POST",
        "/v1/contacts/search",
        Some(json!({"filters": [{"field": "title", "operator": "eq", "value": "Countess"}]})),
    )
    .await;
    p.assert_problem(400, "invalid-request");
}
