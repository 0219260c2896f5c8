//! Every Wave-1 resource through the mapping engine: get, search (operators, sort, cursor
//! pages, last page, totals), create, PATCH, delete, actions, and each dialect's errors.

use serde_json::{json, Value};

use crate::harness::{Resp, World};

fn ok(r: &Resp, status: u16) -> Value {
    assert_eq!(
        r.status,
        status,
        "body: {}",
        String::from_utf8_lossy(&r.body)
    );
    r.json()
}

async fn search(w: &World, res: &str, body: Value) -> Value {
    ok(
        &w.call(1, 101, "POST", &format!("/v1/{res}/search"), Some(body))
            .await,
        200,
    )
}

/// Follows cursors to the end; returns every page.
async fn all_pages(w: &World, res: &str, mut body: Value, max_pages: usize) -> Vec<Value> {
    let mut pages = Vec::new();
    for _ in 0..max_pages {
        let page = search(w, res, body.clone()).await;
        let cursor = page["meta"]["cursor"].clone();
        pages.push(page);
        if cursor.is_null() {
            break;
        }
        body = json!({"cursor": cursor, "limit": body["limit"]});
    }
    pages
}

fn ids(page: &Value) -> Vec<String> {
    page["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|r| r["id"].as_str().expect("id").to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contacts_search_every_operator_sort_and_cursor() {
    let w = World::start().await;
    let p = search(&w, "contacts", json!({"filters": [{"field": "email", "operator": "eq", "value": "ada.lovelace1@example.com"}]})).await;
    assert_eq!(ids(&p), vec![w.id("con", 1, 1)]);
    assert_eq!(p["meta"], json!({"cursor": null, "total": 1}));

    let p = search(&w, "contacts", json!({"filters": [{"field": "last_name", "operator": "contains", "value": "LOVEL"}], "limit": 100})).await;
    assert!(p["data"]
        .as_array()
        .expect("data")
        .iter()
        .all(|c| c["last_name"]
            .as_str()
            .expect("name")
            .to_lowercase()
            .contains("lovel")));
    assert!(p["meta"]["total"].as_u64().expect("total") >= 1);

    // A `%` in the value is literal: no contact's first name contains "%a".
    let p = search(
        &w,
        "contacts",
        json!({"filters": [{"field": "first_name", "operator": "contains", "value": "%a"}]}),
    )
    .await;
    assert_eq!(p["meta"]["total"], 0);

    let p = search(&w, "contacts", json!({"filters": [
        {"field": "owner_id", "operator": "in", "values": [w.id("usr", 1, 101)]},
        {"field": "lifecycle_stage", "operator": "not_in", "values": ["customer", "other", "subscriber", "opportunity"]},
        {"field": "email", "operator": "has_value"},
        {"field": "company_id", "operator": "eq", "value": w.id("cmp", 1, 1)},
        {"field": "created_at", "operator": "between", "value": "2025-01-01T00:00:00.000Z", "high_value": "2025-01-03T00:00:00.000Z"},
        {"field": "created_at", "operator": "gte", "value": "2025-01-02T10:00:00.000Z"},
        {"field": "created_at", "operator": "lte", "value": "2025-01-02T10:00:00.000Z"},
        {"field": "updated_at", "operator": "gt", "value": "2025-01-01T00:00:00.000Z"},
        {"field": "updated_at", "operator": "lt", "value": "2027-01-01T00:00:00.000Z"}
    ]})).await;
    assert_eq!(ids(&p), vec![w.id("con", 1, 1)], "{p}");

    // Sort by last name, two pages by cursor, no overlap, order kept across pages.
    let filters = json!([{"field": "owner_id", "operator": "eq", "value": w.id("usr", 1, 102)}]);
    let p1 = search(&w, "contacts", json!({"filters": filters, "sort": [{"field": "last_name", "direction": "asc"}], "limit": 3})).await;
    let total = p1["meta"]["total"].as_u64().expect("total");
    assert!(total > 6, "owner 102 has many contacts");
    let c = p1["meta"]["cursor"].as_str().expect("cursor").to_string();
    let p2 = search(&w, "contacts", json!({"cursor": c, "limit": 3})).await;
    let names: Vec<String> = p1["data"]
        .as_array()
        .into_iter()
        .chain(p2["data"].as_array())
        .flatten()
        .map(|c| c["last_name"].as_str().unwrap_or("").to_string())
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    let mut all = ids(&p1);
    all.extend(ids(&p2));
    all.dedup();
    assert_eq!(all.len(), 6);

    // The last page has a null cursor.
    let pages = all_pages(&w, "contacts", json!({"filters": [{"field": "company_id", "operator": "eq", "value": w.id("cmp", 1, 1)}], "limit": 2}), 100).await;
    let last = pages.last().expect("pages");
    assert!(last["meta"]["cursor"].is_null());
    let seen: usize = pages
        .iter()
        .map(|p| p["data"].as_array().map_or(0, Vec::len))
        .sum();
    assert_eq!(seen as u64, last["meta"]["total"].as_u64().expect("total"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_requests_are_strict() {
    let w = World::start().await;
    let r = w
        .call(
            1,
            101,
            "POST",
            "/v1/contacts/search",
            Some(json!({
                "filters": [
                    {"field": "phone", "operator": "eq", "value": "x"},
                    {"field": "email", "operator": "gt", "value": "x"},
                    {"field": "lifecycle_stage", "operator": "eq", "value": "prospect"}
                ],
                "sort": [{"field": "email", "direction": "asc"}],
                "limit": 101,
                "colour": "red"
            })),
        )
        .await;
    let p = r.assert_problem(400, "invalid-request");
    let pointers: Vec<&str> = p["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| e["pointer"].as_str().expect("ptr"))
        .collect();
    for expected in [
        "/colour",
        "/limit",
        "/filters/0/field",
        "/filters/1/operator",
        "/sort/0/field",
    ] {
        assert!(
            pointers.contains(&expected),
            "{expected} missing in {pointers:?}"
        );
    }
    // Bad enum values are found once the operators are fine.
    let r = w.call(1, 101, "POST", "/v1/contacts/search", Some(json!({"filters": [{"field": "lifecycle_stage", "operator": "eq", "value": "prospect"}]}))).await;
    let p = r.assert_problem(400, "invalid-request");
    assert_eq!(p["errors"][0]["pointer"], "/filters/0/value");

    // Tampered, foreign and other-query cursors.
    let p1 = search(&w, "contacts", json!({"limit": 1})).await;
    let c = p1["meta"]["cursor"].as_str().expect("cursor").to_string();
    let mut bytes = c.clone().into_bytes();
    bytes[10] = if bytes[10] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(bytes).expect("utf8");
    w.call(
        1,
        101,
        "POST",
        "/v1/contacts/search",
        Some(json!({"cursor": tampered})),
    )
    .await
    .assert_problem(400, "invalid-cursor");
    w.call(
        1,
        102,
        "POST",
        "/v1/companies/search",
        Some(json!({"cursor": c})),
    )
    .await
    .assert_problem(400, "invalid-cursor");
    w.call(
        2,
        201,
        "POST",
        "/v1/contacts/search",
        Some(json!({"cursor": c})),
    )
    .await
    .assert_problem(400, "invalid-cursor");
    w.call(
        1,
        101,
        "POST",
        "/v1/contacts/search",
        Some(json!({"cursor": c, "filters": [{"field": "email", "operator": "has_value"}]})),
    )
    .await
    .assert_problem(400, "invalid-cursor");
    // An empty body means "all, default order" (newest first).
    let r = w
        .raw(
            "POST",
            "/v1/contacts/search",
            &[
                ("authorization", &format!("Bearer {}", w.token(1, 101))),
                ("version", crate::harness::V),
            ],
            None,
        )
        .await;
    let all = ok(&r, 200);
    assert_eq!(all["data"].as_array().map(Vec::len), Some(25));
    assert_eq!(all["meta"]["total"], 10_000);
    // Beyond crm-core's 10,000 window.
    let mut body = json!({"limit": 100});
    let mut last = Value::Null;
    for _ in 0..2 {
        last = search(&w, "contacts", body.clone()).await;
        body = json!({"cursor": last["meta"]["cursor"], "limit": 100});
    }
    assert!(last["meta"]["cursor"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contacts_create_patch_delete_and_crm_core_errors() {
    let w = World::start().await;
    let r = w.call(1, 101, "POST", "/v1/contacts", Some(json!({
        "first_name": "Katherine", "last_name": "Johnson", "email": "katherine@example.com",
        "phone": "+1-555-0199", "job_title": "Mathematician", "company_id": w.id("cmp", 1, 2),
        "lifecycle_stage": "customer"
    }))).await;
    let d = ok(&r, 201)["data"].clone();
    let id = d["id"].as_str().expect("id").to_string();
    assert_eq!(
        r.header("location"),
        Some(format!("/v1/contacts/{id}").as_str())
    );
    assert_eq!(d["lifecycle_stage"], "customer");
    assert_eq!(d["company_id"], w.id("cmp", 1, 2).as_str());
    assert_eq!(d["owner_id"], w.id("usr", 1, 101).as_str());

    // PATCH: absent = unchanged, null = cleared.
    let r = w
        .call(
            1,
            101,
            "PATCH",
            &format!("/v1/contacts/{id}"),
            Some(json!({"phone": null, "job_title": "Director"})),
        )
        .await;
    let d = ok(&r, 200)["data"].clone();
    assert_eq!(d["phone"], Value::Null);
    assert_eq!(d["job_title"], "Director");
    assert_eq!(d["first_name"], "Katherine");
    assert_eq!(d["email"], "katherine@example.com");

    // Duplicate email → 409 conflict, nothing leaks.
    let r = w
        .call(
            1,
            101,
            "POST",
            "/v1/contacts",
            Some(json!({"email": "KATHERINE@example.com"})),
        )
        .await;
    let p = r.assert_problem(409, "conflict");
    assert!(!p.to_string().contains("DUPLICATE"));

    // Edge-side strictness: every offending field by pointer, the upstream never called.
    let before = w.sim.state().calls("crm-core");
    let r = w
        .call(
            1,
            101,
            "POST",
            "/v1/contacts",
            Some(json!({
                "id": "con_x", "created_at": "2026-01-01T00:00:00.000Z", "first_name": 7,
                "lifecycle_stage": "vip", "favourite_colour": "red", "company_id": "cmp_forged"
            })),
        )
        .await;
    let p = r.assert_problem(400, "invalid-request");
    let pointers: Vec<&str> = p["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| e["pointer"].as_str().expect("ptr"))
        .collect();
    for expected in [
        "/id",
        "/created_at",
        "/first_name",
        "/lifecycle_stage",
        "/favourite_colour",
        "/company_id",
        "/email",
    ] {
        assert!(
            pointers.contains(&expected),
            "{expected} missing in {pointers:?}"
        );
    }
    assert_eq!(w.sim.state().calls("crm-core"), before);

    // Upstream validation maps its field back to the public pointer.
    let r = w
        .call(
            1,
            101,
            "POST",
            "/v1/contacts",
            Some(json!({"email": "x@example.com", "company_id": w.id("cmp", 1, 999_999)})),
        )
        .await;
    let p = r.assert_problem(400, "invalid-request");
    assert_eq!(p["errors"][0]["pointer"], "/company_id", "{p}");

    // Bodies: not JSON, wrong media type, too large.
    let auth = format!("Bearer {}", w.token(1, 101));
    let h = [
        ("authorization", auth.as_str()),
        ("version", crate::harness::V),
        ("content-type", "application/json"),
    ];
    w.raw("POST", "/v1/contacts", &h, Some(b"{not json".to_vec()))
        .await
        .assert_problem(400, "malformed-json");
    let h2 = [
        ("authorization", auth.as_str()),
        ("version", crate::harness::V),
        ("content-type", "text/plain"),
    ];
    w.raw("POST", "/v1/contacts", &h2, Some(b"{}".to_vec()))
        .await
        .assert_problem(415, "unsupported-media-type");
    // (413 for bodies over 1 MiB: tests/e2e/hostile.rs, over raw TCP.)

    // DELETE → 204, then 404.
    let r = w
        .call(1, 101, "DELETE", &format!("/v1/contacts/{id}"), None)
        .await;
    assert_eq!(r.status, 204);
    assert!(r.body.is_empty());
    w.call(1, 101, "GET", &format!("/v1/contacts/{id}"), None)
        .await
        .assert_problem(404, "not-found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_and_visibility() {
    let w = World::start().await;
    // sales_rep 103 does not own contact 1 (owner 101): not found; owns contact 3.
    w.call(
        1,
        103,
        "GET",
        &format!("/v1/contacts/{}", w.id("con", 1, 1)),
        None,
    )
    .await
    .assert_problem(404, "not-found");
    assert_eq!(
        w.call(
            1,
            103,
            "GET",
            &format!("/v1/contacts/{}", w.id("con", 1, 3)),
            None
        )
        .await
        .status,
        200
    );
    // sales_manager 102 cannot delete (no contacts:delete).
    let p = w
        .call(
            1,
            102,
            "DELETE",
            &format!("/v1/contacts/{}", w.id("con", 1, 2)),
            None,
        )
        .await
        .assert_problem(403, "permission-denied");
    assert_eq!(p["required_permission"], "contacts:delete");
    // An admin whose app lacks contact.write cannot create.
    let mut m = prospect_edge::token::Mint::new(1, 101);
    m.scope = "contact.read".into();
    let auth = format!("Bearer {}", w.token_with(&m));
    let r = w
        .raw(
            "POST",
            "/v1/contacts",
            &[
                ("authorization", &auth),
                ("version", crate::harness::V),
                ("content-type", "application/json"),
            ],
            Some(br#"{"email":"a@b.co"}"#.to_vec()),
        )
        .await;
    let p = r.assert_problem(403, "insufficient-scope");
    assert_eq!(p["required_scope"], "contact.write");
    assert_eq!(
        r.header("www-authenticate"),
        Some(
            r#"Bearer realm="prospectconnect", error="insufficient_scope", scope="contact.write""#
        )
    );
    // A user who is not a member of the tenant.
    w.call(
        1,
        201,
        "GET",
        &format!("/v1/contacts/{}", w.id("con", 1, 1)),
        None,
    )
    .await
    .assert_problem(401, "unauthenticated");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn companies_patch_is_read_merge_write_with_one_retry() {
    let w = World::start().await;
    let id = w.id("cmp", 1, 1);
    let path = format!("/v1/companies/{id}");
    let d = ok(&w.call(1, 101, "GET", &path, None).await, 200)["data"].clone();
    assert_eq!(d["name"], "Acme Corporation");
    assert_eq!(d["employee_count"], 250);
    assert!(d.get("row_version").is_none() && d.get("rowVersion").is_none());

    let d = ok(
        &w.call(1, 101, "PATCH", &path, Some(json!({"city": "Shelbyville"})))
            .await,
        200,
    )["data"]
        .clone();
    assert_eq!(d["city"], "Shelbyville");
    assert_eq!(
        d["name"], "Acme Corporation",
        "fields not in the patch are kept"
    );
    assert_eq!(d["domain"], "acme.example.com");

    // One concurrent writer: the edge reads again and succeeds.
    w.sim.state().interfere_with_company_writes(1);
    let d = ok(
        &w.call(1, 101, "PATCH", &path, Some(json!({"employee_count": 300})))
            .await,
        200,
    )["data"]
        .clone();
    assert_eq!(d["employee_count"], 300);
    assert_eq!(d["city"], "Shelbyville");
    // Two in a row: 409 conflict.
    w.sim.state().interfere_with_company_writes(2);
    w.call(1, 101, "PATCH", &path, Some(json!({"employee_count": 301})))
        .await
        .assert_problem(409, "conflict");

    // Search with a literal `_` and a range on employees, sorted.
    let p = search(
        &w,
        "companies",
        json!({"filters": [{"field": "name", "operator": "contains", "value": "fifty_"}]}),
    )
    .await;
    assert_eq!(ids(&p), vec![w.id("cmp", 1, 3)]);
    let p = search(
        &w,
        "companies",
        json!({"filters": [
        {"field": "employee_count", "operator": "between", "value": 10, "high_value": 100},
        {"field": "country", "operator": "in", "values": ["US", "GB"]},
        {"field": "industry", "operator": "eq", "value": "SOFTWARE"}
    ], "sort": [{"field": "employee_count", "direction": "desc"}], "limit": 100}),
    )
    .await;
    let counts: Vec<i64> = p["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|c| c["employee_count"].as_i64().expect("n"))
        .collect();
    assert!(
        counts.windows(2).all(|w| w[0] >= w[1]) && counts.iter().all(|n| (10..=100).contains(n)),
        "{counts:?}"
    );
    assert!(p["data"]
        .as_array()
        .expect("data")
        .iter()
        .any(|c| c["id"] == w.id("cmp", 1, 2).as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deals_money_dates_search_stage_action_and_sales_errors() {
    let w = World::start().await;
    let d = ok(
        &w.call(
            1,
            101,
            "GET",
            &format!("/v1/deals/{}", w.id("deal", 1, 1)),
            None,
        )
        .await,
        200,
    )["data"]
        .clone();
    assert_eq!(d["amount"], json!({"value": "12000.00", "currency": "EUR"}));
    assert_eq!(d["close_date"], "2026-03-31");
    assert_eq!(d["status"], "open");
    assert_eq!(d["pipeline_id"], w.id("pipe", 1, 1).as_str());
    assert_eq!(d["stage_id"], w.id("stage", 1, 1).as_str());
    assert_eq!(
        d["contact_ids"],
        json!([w.id("con", 1, 1), w.id("con", 1, 2)])
    );
    let d3 = ok(
        &w.call(
            1,
            101,
            "GET",
            &format!("/v1/deals/{}", w.id("deal", 1, 3)),
            None,
        )
        .await,
        200,
    )["data"]
        .clone();
    assert_eq!(d3["amount"], Value::Null);
    assert_eq!(d3["status"], "lost");

    // Create (the upstream answers 200; the edge answers 201), default first stage.
    let r = w.call(1, 101, "POST", "/v1/deals", Some(json!({
        "name": "Big one", "pipeline_id": w.id("pipe", 1, 2), "amount": {"value": "1234.50", "currency": "USD"},
        "close_date": "2026-12-24", "contact_ids": [w.id("con", 1, 4)]
    }))).await;
    let d = ok(&r, 201)["data"].clone();
    let id = d["id"].as_str().expect("id").to_string();
    assert_eq!(d["stage_id"], w.id("stage", 1, 7).as_str());
    assert_eq!(d["amount"], json!({"value": "1234.50", "currency": "USD"}));
    assert_eq!(d["close_date"], "2026-12-24");

    // stage_id is read-only in PATCH; other fields change.
    let r = w
        .call(
            1,
            101,
            "PATCH",
            &format!("/v1/deals/{id}"),
            Some(json!({"stage_id": w.id("stage", 1, 8)})),
        )
        .await;
    assert_eq!(
        r.assert_problem(400, "invalid-request")["errors"][0]["pointer"],
        "/stage_id"
    );
    let d = ok(
        &w.call(
            1,
            101,
            "PATCH",
            &format!("/v1/deals/{id}"),
            Some(json!({"name": "Bigger one", "amount": null})),
        )
        .await,
        200,
    )["data"]
        .clone();
    assert_eq!(d["name"], "Bigger one");
    assert_eq!(d["amount"], Value::Null);

    // The stage action; a stage of another pipeline is 422.
    let stage = format!("/v1/deals/{id}/stage");
    let d = ok(
        &w.call(
            1,
            101,
            "POST",
            &stage,
            Some(json!({"stage_id": w.id("stage", 1, 9)})),
        )
        .await,
        200,
    )["data"]
        .clone();
    assert_eq!(d["status"], "won");
    w.call(
        1,
        101,
        "POST",
        &stage,
        Some(json!({"stage_id": w.id("stage", 1, 1)})),
    )
    .await
    .assert_problem(422, "unprocessable");
    w.call(1, 101, "POST", &stage, Some(json!({})))
        .await
        .assert_problem(400, "invalid-request");
    // read_only users cannot move stages.
    w.call(
        1,
        104,
        "POST",
        &stage,
        Some(json!({"stage_id": w.id("stage", 1, 10)})),
    )
    .await
    .assert_problem(403, "permission-denied");

    // Search: pipeline + status + close-date range, sorted by amount, two pages with total.
    let body = json!({"filters": [
        {"field": "pipeline_id", "operator": "eq", "value": w.id("pipe", 1, 1)},
        {"field": "status", "operator": "eq", "value": "open"},
        {"field": "close_date", "operator": "between", "value": "2025-01-01", "high_value": "2026-12-31"}
    ], "sort": [{"field": "amount", "direction": "desc"}], "limit": 5});
    let p1 = search(&w, "deals", body).await;
    let total = p1["meta"]["total"].as_u64().expect("total");
    assert!(total > 5);
    let p2 = search(
        &w,
        "deals",
        json!({"cursor": p1["meta"]["cursor"], "limit": 5}),
    )
    .await;
    let mut all: Vec<Value> = p1["data"].as_array().expect("d").clone();
    all.extend(p2["data"].as_array().expect("d").clone());
    assert_eq!(all.len(), 10);
    let amounts: Vec<f64> = all
        .iter()
        .map(|d| {
            d["amount"]["value"]
                .as_str()
                .and_then(|v| v.parse().ok())
                .unwrap_or(-1.0)
        })
        .collect();
    assert!(amounts.windows(2).all(|w| w[0] >= w[1]), "{amounts:?}");
    assert!(all
        .iter()
        .all(|d| d["status"] == "open" && d["pipeline_id"] == w.id("pipe", 1, 1).as_str()));

    // Delete (the upstream answers 200 {"Deleted": true}; the edge answers 204).
    assert_eq!(
        w.call(1, 101, "DELETE", &format!("/v1/deals/{id}"), None)
            .await
            .status,
        204
    );
    w.call(1, 101, "GET", &format!("/v1/deals/{id}"), None)
        .await
        .assert_problem(404, "not-found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelines_are_paged_by_the_edge() {
    let w = World::start().await;
    let d = ok(
        &w.call(
            1,
            101,
            "GET",
            &format!("/v1/pipelines/{}", w.id("pipe", 1, 1)),
            None,
        )
        .await,
        200,
    )["data"]
        .clone();
    assert_eq!(d["name"], "Sales Pipeline");
    assert_eq!(
        d["stages"][0],
        json!({"id": w.id("stage", 1, 1), "name": "Qualification", "display_order": 1, "probability": 0.1, "kind": "open"})
    );
    assert_eq!(d["stages"][4]["kind"], "won");
    let p1 = search(&w, "pipelines", json!({"limit": 2})).await;
    assert_eq!(p1["meta"]["total"], 3);
    let names: Vec<&str> = p1["data"]
        .as_array()
        .expect("d")
        .iter()
        .map(|p| p["name"].as_str().expect("n"))
        .collect();
    assert_eq!(names, ["Sales Pipeline", "Renewals"]);
    let p2 = search(&w, "pipelines", json!({"cursor": p1["meta"]["cursor"]})).await;
    assert_eq!(ids(&p2), vec![w.id("pipe", 1, 3)]);
    assert!(p2["meta"]["cursor"].is_null());
    // Read only: no create.
    w.call(1, 101, "POST", "/v1/pipelines", Some(json!({})))
        .await
        .assert_problem(404, "not-found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_rpc_dialect_local_filters_and_actions() {
    let w = World::start().await;
    let d = ok(
        &w.call(
            1,
            101,
            "GET",
            &format!("/v1/tasks/{}", w.id("task", 1, 1)),
            None,
        )
        .await,
        200,
    )["data"]
        .clone();
    assert_eq!(d["title"], "Call Ada Lovelace about the platform license");
    assert_eq!(d["priority"], "high");
    assert_eq!(d["status"], "open");
    assert_eq!(d["due_at"], "2026-02-01T17:00:00.000Z");
    assert_eq!(
        d["attached_to"],
        json!({"type": "contact", "id": w.id("con", 1, 1)})
    );
    // workflow's success:false inside HTTP 200 → a real 404.
    w.call(
        1,
        101,
        "GET",
        &format!("/v1/tasks/{}", w.id("task", 1, 9_999_999)),
        None,
    )
    .await
    .assert_problem(404, "not-found");

    // Create with the default priority, attached to a deal.
    let r = w.call(1, 101, "POST", "/v1/tasks", Some(json!({"title": "Follow up", "due_at": "2026-12-01T17:00:00.000Z", "attached_to": {"type": "deal", "id": w.id("deal", 1, 1)}}))).await;
    let d = ok(&r, 201)["data"].clone();
    let id = d["id"].as_str().expect("id").to_string();
    assert_eq!(d["priority"], "normal");
    assert_eq!(d["status"], "open");
    assert_eq!(d["attached_to"]["type"], "deal");
    // Validation errors: status is read-only; bad date.
    let p = w
        .call(
            1,
            101,
            "PATCH",
            &format!("/v1/tasks/{id}"),
            Some(json!({"status": "completed", "due_at": "tomorrow"})),
        )
        .await
        .assert_problem(400, "invalid-request");
    assert_eq!(p["errors"].as_array().map(Vec::len), Some(2));
    let d = ok(
        &w.call(
            1,
            101,
            "PATCH",
            &format!("/v1/tasks/{id}"),
            Some(json!({"body": "Bring the contract", "attached_to": null})),
        )
        .await,
        200,
    )["data"]
        .clone();
    assert_eq!(d["body"], "Bring the contract");
    assert_eq!(d["attached_to"], Value::Null);
    // Actions.
    let d = ok(
        &w.call(1, 101, "POST", &format!("/v1/tasks/{id}/complete"), None)
            .await,
        200,
    )["data"]
        .clone();
    assert_eq!(d["status"], "completed");
    assert!(d["completed_at"].is_string());
    let d = ok(
        &w.call(1, 101, "POST", &format!("/v1/tasks/{id}/reopen"), None)
            .await,
        200,
    )["data"]
        .clone();
    assert_eq!(d["status"], "open");
    assert_eq!(d["completed_at"], Value::Null);

    // Search: native (status, owner, attached_to.id) and edge-side (priority in) filters,
    // cursor pages, no total.
    let body = json!({"filters": [
        {"field": "status", "operator": "eq", "value": "open"},
        {"field": "owner_id", "operator": "eq", "value": w.id("usr", 1, 102)},
        {"field": "priority", "operator": "in", "values": ["high", "low"]}
    ], "sort": [{"field": "due_at", "direction": "asc"}], "limit": 10});
    let pages = all_pages(&w, "tasks", body, 3).await;
    let mut seen = std::collections::HashSet::new();
    for p in &pages {
        assert!(p["meta"].get("total").is_none(), "workflow has no total");
        for t in p["data"].as_array().expect("data") {
            assert_eq!(t["status"], "open");
            assert_eq!(t["owner_id"], w.id("usr", 1, 102).as_str());
            assert!(t["priority"] == "high" || t["priority"] == "low");
            assert!(
                seen.insert(t["id"].as_str().expect("id").to_string()),
                "no duplicates across pages"
            );
        }
    }
    assert!(seen.len() > 10, "more than one page");
    let p = search(&w, "tasks", json!({"filters": [{"field": "attached_to.id", "operator": "eq", "value": w.id("con", 1, 1)}], "limit": 100})).await;
    assert!(ids(&p).contains(&w.id("task", 1, 1)));
    assert!(p["data"]
        .as_array()
        .expect("d")
        .iter()
        .all(|t| t["attached_to"]["id"] == w.id("con", 1, 1).as_str()));
    let p = search(&w, "tasks", json!({"filters": [{"field": "due_at", "operator": "between", "value": "2026-02-01T00:00:00.000Z", "high_value": "2026-02-01T23:59:59.000Z"}], "limit": 100})).await;
    assert!(p["data"].as_array().expect("d").iter().all(|t| t["due_at"]
        .as_str()
        .is_some_and(|d| d.starts_with("2026-02-01"))));

    assert_eq!(
        w.call(1, 101, "DELETE", &format!("/v1/tasks/{id}"), None)
            .await
            .status,
        204
    );
    w.call(1, 101, "DELETE", &format!("/v1/tasks/{id}"), None)
        .await
        .assert_problem(404, "not-found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notes_on_engagements_with_token_paging() {
    let w = World::start().await;
    let contact = w.id("con", 1, 1);
    let r = w.call(1, 101, "POST", "/v1/notes", Some(json!({"body": "Met at the conference", "attached_to": {"type": "contact", "id": contact}}))).await;
    let d = ok(&r, 201)["data"].clone();
    let id = d["id"].as_str().expect("id").to_string();
    assert!(id.starts_with("note_"));
    assert_eq!(d["attached_to"], json!({"type": "contact", "id": contact}));
    assert_eq!(d["author_id"], w.id("usr", 1, 101).as_str());
    w.call(1, 101, "POST", "/v1/notes", Some(json!({"body": "x"})))
        .await
        .assert_problem(400, "invalid-request");

    let d = ok(
        &w.call(
            1,
            101,
            "PATCH",
            &format!("/v1/notes/{id}"),
            Some(json!({"body": "Met at the conference in Berlin"})),
        )
        .await,
        200,
    )["data"]
        .clone();
    assert_eq!(d["body"], "Met at the conference in Berlin");

    let p = search(
        &w,
        "notes",
        json!({"filters": [{"field": "attached_to.id", "operator": "eq", "value": contact}]}),
    )
    .await;
    assert_eq!(ids(&p)[0], id, "newest first");
    assert!(p["data"]
        .as_array()
        .expect("d")
        .iter()
        .all(|n| n["attached_to"]["id"] == contact.as_str()));

    // Token paging over every note: three pages, no duplicates.
    let pages = all_pages(&w, "notes", json!({"limit": 50}), 3).await;
    let mut seen = std::collections::HashSet::new();
    for p in &pages {
        for n in p["data"].as_array().expect("d") {
            assert!(seen.insert(n["id"].as_str().expect("id").to_string()));
        }
    }
    assert_eq!(seen.len(), 150);

    assert_eq!(
        w.call(1, 101, "DELETE", &format!("/v1/notes/{id}"), None)
            .await
            .status,
        204
    );
    w.call(1, 101, "GET", &format!("/v1/notes/{id}"), None)
        .await
        .assert_problem(404, "not-found");
}
