//! The merged activity timeline: engagements and audit events in one cursor.

use std::collections::HashSet;

use serde_json::{json, Value};

use crate::harness::World;

async fn timeline(w: &World, filters: Value, limit: u32) -> (Vec<Value>, usize) {
    let mut body = json!({"filters": filters, "limit": limit});
    let mut out = Vec::new();
    let mut pages = 0;
    for _ in 0..200 {
        let r = w
            .call(1, 101, "POST", "/v1/activities/search", Some(body.clone()))
            .await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let p = r.json();
        pages += 1;
        out.extend(p["data"].as_array().expect("data").iter().cloned());
        assert!(p["meta"].get("total").is_none());
        match &p["meta"]["cursor"] {
            Value::Null => return (out, pages),
            c => body = json!({"cursor": c, "limit": limit}),
        }
    }
    panic!("the timeline did not end");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeline_merges_both_sources_newest_first_without_gaps() {
    let w = World::start().await;
    let contact = w.id("con", 1, 1);
    let filters = json!([{"field": "contact_ids", "operator": "eq", "value": contact}]);
    let (small, pages) = timeline(&w, filters.clone(), 2).await;
    let (big, _) = timeline(&w, filters, 100).await;
    assert!(pages >= 3, "{pages} pages");
    let small_ids: Vec<&str> = small
        .iter()
        .map(|a| a["id"].as_str().expect("id"))
        .collect();
    let big_ids: Vec<&str> = big.iter().map(|a| a["id"].as_str().expect("id")).collect();
    assert_eq!(
        small_ids, big_ids,
        "the same timeline whatever the page size: no gaps, no duplicates"
    );
    assert_eq!(
        small_ids.iter().collect::<HashSet<_>>().len(),
        small_ids.len()
    );
    let times: Vec<&str> = small
        .iter()
        .map(|a| a["occurred_at"].as_str().expect("t"))
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {times:?}"
    );
    let types: HashSet<&str> = small
        .iter()
        .map(|a| a["type"].as_str().expect("type"))
        .collect();
    assert!(types.contains("system_event"), "{types:?}");
    assert!(
        types
            .iter()
            .any(|t| ["email", "call", "meeting"].contains(t)),
        "{types:?}"
    );
    assert!(small.iter().all(|a| a["contact_ids"]
        .as_array()
        .expect("ids")
        .iter()
        .any(|c| c == contact.as_str())));

    // Each id finds its own source.
    for a in small.iter().take(6) {
        let r = w
            .call(
                1,
                101,
                "GET",
                &format!("/v1/activities/{}", a["id"].as_str().expect("id")),
                None,
            )
            .await;
        assert_eq!(r.status, 200);
        assert_eq!(&r.json()["data"], a);
    }
    let audit = small
        .iter()
        .find(|a| a["type"] == "system_event")
        .expect("an audit event");
    assert!(audit["details"]["event"].is_string());
    // Changes are named and valued as the public API names them, never the upstream's way.
    for (field, change) in audit["details"]["changes"].as_object().expect("changes") {
        assert!(
            field.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
            "{field}"
        );
        assert!(change.get("from").is_some() && change.get("to").is_some());
    }
    assert!(audit["id"].as_str().expect("id").starts_with("act_"));

    // Type filters select sources.
    let only_audit = json!([{"field": "contact_ids", "operator": "eq", "value": contact}, {"field": "type", "operator": "eq", "value": "system_event"}]);
    let (events, _) = timeline(&w, only_audit, 50).await;
    assert!(!events.is_empty() && events.iter().all(|a| a["type"] == "system_event"));
    let no_audit = json!([{"field": "contact_ids", "operator": "eq", "value": contact}, {"field": "type", "operator": "in", "values": ["email", "call"]}]);
    let (ec, _) = timeline(&w, no_audit, 50).await;
    assert!(ec
        .iter()
        .all(|a| a["type"] == "email" || a["type"] == "call"));
    assert_eq!(
        events.len() + ec.len() + small.iter().filter(|a| a["type"] == "meeting").count(),
        small.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logging_an_email_puts_it_first_and_system_events_cannot_be_created() {
    let w = World::start().await;
    let contact = w.id("con", 1, 2);
    let r = w.call(1, 101, "POST", "/v1/activities", Some(json!({
        "type": "email",
        "occurred_at": "2026-11-27T09:30:00.000Z",
        "details": {"direction": "outbound", "from": "me@acme.example", "to": ["grace@example.com"], "subject": "Hello", "text": "Hi Grace"},
        "contact_ids": [contact], "company_ids": [], "deal_ids": []
    }))).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let d = r.json()["data"].clone();
    assert_eq!(d["summary"], "Hello");
    assert_eq!(d["details"]["to"], json!(["grace@example.com"]));
    let (all, _) = timeline(
        &w,
        json!([{"field": "contact_ids", "operator": "eq", "value": contact}]),
        10,
    )
    .await;
    assert_eq!(all[0]["id"], d["id"]);

    let r = w.call(1, 101, "POST", "/v1/activities", Some(json!({"type": "system_event", "occurred_at": "2026-11-27T09:30:00.000Z", "details": {}}))).await;
    let p = r.assert_problem(400, "invalid-request");
    assert_eq!(p["errors"][0]["pointer"], "/type");
    // read_only users may view but not log.
    w.call(
        1,
        104,
        "POST",
        "/v1/activities",
        Some(json!({"type": "call"})),
    )
    .await
    .assert_problem(403, "permission-denied");
}

/// The contract lists `summary` as writable on create: a call's notes, a meeting's title, an
/// email's subject (then `details.subject` may be left out, and the two must agree).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_summary_is_written_on_create_and_must_agree_with_the_details() {
    let w = World::start().await;
    let contact = w.id("con", 1, 1);
    let r = w.call(1, 101, "POST", "/v1/activities", Some(json!({
        "type": "call",
        "occurred_at": "2026-11-27T09:30:00.000Z",
        "summary": "Wants a quote by Friday",
        "details": {"direction": "outbound", "duration_seconds": 240, "outcome": "connected"},
        "contact_ids": [contact], "company_ids": [], "deal_ids": []
    }))).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let id = r.json()["data"]["id"].as_str().expect("id").to_string();
    let r = w
        .call(1, 101, "GET", &format!("/v1/activities/{id}"), None)
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["data"]["summary"], "Wants a quote by Friday");

    // An email's summary is its subject: enough on its own.
    let r = w.call(1, 101, "POST", "/v1/activities", Some(json!({
        "type": "email",
        "occurred_at": "2026-11-27T09:31:00.000Z",
        "summary": "Quote",
        "details": {"direction": "outbound", "from": "me@acme.example", "to": ["grace@example.com"], "text": null},
        "contact_ids": [contact], "company_ids": [], "deal_ids": []
    }))).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["data"]["details"]["subject"], "Quote");

    // Both given and different: a 400 naming both pointers; nothing is created.
    let before = w.sim.state().count(1, "engagements");
    let r = w.call(1, 101, "POST", "/v1/activities", Some(json!({
        "type": "meeting",
        "occurred_at": "2026-11-27T09:30:00.000Z",
        "summary": "Quarterly review",
        "details": {"title": "Kick-off", "start_at": "2026-11-27T09:30:00.000Z", "end_at": "2026-11-27T10:30:00.000Z", "location": null},
        "contact_ids": [contact], "company_ids": [], "deal_ids": []
    }))).await;
    let p = r.assert_problem(400, "invalid-request");
    let pointers: Vec<&str> = p["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| e["pointer"].as_str().expect("pointer"))
        .collect();
    assert_eq!(pointers, ["/details/title", "/summary"], "{p}");
    assert!(p["errors"][1]["detail"]
        .as_str()
        .expect("detail")
        .contains("/details/title"));
    assert_eq!(w.sim.state().count(1, "engagements"), before);
}
