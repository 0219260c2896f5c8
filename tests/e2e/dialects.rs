//! Backends of other families fronted through mapping files alone (issue 13): the OData
//! v4 `directory` and the JSON:API `accounts` of `legacy-sim/BACKENDS.md`, each through
//! its fixture mapping dir in `tests/mappings/`. The same scenarios as the reference
//! contacts: get, every declared operator (wildcards and quotes literal), paging to the
//! end at several limits, create, PATCH semantics, no upsert, conflicts, mapped errors,
//! tamper-proof cursors, and the OpenAPI document of each plan.

use std::collections::BTreeSet;
use std::path::Path;

use prospect_edge::seal::InternalId;
use serde_json::{json, Value};

use crate::harness::{repo, Resp, World};

/// A world whose edge serves only the fixture mappings of `dir`, with the dialect
/// backend `service` added to its upstreams.
pub(crate) async fn world(dir: &'static str, service: &'static str) -> World {
    World::start_full(
        |m: &Path| {
            for e in std::fs::read_dir(m).expect("mappings") {
                std::fs::remove_file(e.expect("entry").path()).expect("rm");
            }
            let src = repo().join("tests/mappings").join(dir);
            for e in std::fs::read_dir(src).expect("fixture") {
                let e = e.expect("entry");
                std::fs::copy(e.path(), m.join(e.file_name())).expect("copy");
            }
        },
        move |sim, _, config| {
            let line = format!(
                "upstreams:\n  {service}: {{ url: \"http://{}\", connect_timeout_ms: 500, timeout_ms: 5000 }}\n",
                sim.addr(service)
            );
            *config = config.replacen("upstreams:\n", &line, 1);
        },
    )
    .await
}

pub(crate) fn ok(r: &Resp, status: u16) -> Value {
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

/// Every record of a search, following cursors; asserts each page holds exactly `limit`
/// records but the last, and no id twice.
async fn all(w: &World, res: &str, filters: Value, limit: u64) -> (Vec<Value>, Option<u64>) {
    let mut out = Vec::new();
    let mut body = json!({"filters": filters, "limit": limit});
    for _ in 0..1000 {
        let page = search(w, res, body.clone()).await;
        let data = page["data"].as_array().expect("data").clone();
        let cursor = page["meta"]["cursor"].clone();
        let total = page["meta"]["total"].as_u64();
        if !cursor.is_null() {
            assert_eq!(data.len() as u64, limit, "a page before the last is full");
        } else {
            assert!(data.len() as u64 <= limit);
        }
        out.extend(data);
        if cursor.is_null() {
            let ids: BTreeSet<&str> = out.iter().map(|r| r["id"].as_str().expect("id")).collect();
            assert_eq!(ids.len(), out.len(), "no record twice");
            return (out, total);
        }
        body = json!({"cursor": cursor, "limit": limit});
    }
    panic!("search did not end");
}

/// A filter and the predicate the records it selects satisfy.
type Case = (Value, Box<dyn Fn(&Value) -> bool>);

fn id_set(records: &[Value]) -> BTreeSet<String> {
    records
        .iter()
        .map(|r| r["id"].as_str().expect("id").to_string())
        .collect()
}

fn text(r: &Value, f: &str) -> Option<String> {
    r[f].as_str().map(str::to_string)
}

/// Checks the edge's answer to each filter against the same filter applied to every
/// record, so nothing about the seed is hard-coded but its having such records.
async fn check_filters(w: &World, res: &str, every: &[Value], cases: Vec<Case>) {
    for (filter, pred) in cases {
        let (got, _) = all(w, res, json!([filter.clone()]), 100).await;
        let want: Vec<Value> = every.iter().filter(|r| pred(r)).cloned().collect();
        assert!(!want.is_empty(), "the seed has records for {filter}");
        assert_eq!(id_set(&got), id_set(&want), "filter {filter}");
    }
}

fn contains_ci(hay: Option<String>, needle: &str) -> bool {
    hay.is_some_and(|h| h.to_lowercase().contains(&needle.to_lowercase()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_get_search_every_operator_and_paging() {
    let w = world("directory", "directory").await;
    let (every, total) = all(&w, "contacts", json!([]), 100).await;
    assert_eq!(total, Some(every.len() as u64), "the total is exact");
    assert!(every.len() > 100, "{}", every.len());
    for limit in [7, 25, 64] {
        let (page, t) = all(&w, "contacts", json!([]), limit).await;
        assert_eq!(t, total);
        assert_eq!(
            page.iter().map(|r| r["id"].clone()).collect::<Vec<_>>(),
            every.iter().map(|r| r["id"].clone()).collect::<Vec<_>>(),
            "limit {limit}: the same records in the same order"
        );
    }
    // Newest first, as declared.
    let created: Vec<&str> = every
        .iter()
        .filter_map(|r| r["created_at"].as_str())
        .collect();
    assert!(created.windows(2).all(|p| p[0] >= p[1]));

    let one = &every[3];
    let got = ok(
        &w.call(
            1,
            101,
            "GET",
            &format!("/v1/contacts/{}", one["id"].as_str().expect("id")),
            None,
        )
        .await,
        200,
    );
    assert_eq!(&got["data"], one);
    assert!(
        one["created_at"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z') && t.len() == 24),
        "{one}"
    );

    let name = text(one, "last_name").expect("a last name");
    let email = text(one, "email").expect("email");
    let owner = one["owner_id"].clone();
    let stage = every
        .iter()
        .find_map(|r| r["lifecycle_stage"].as_str().map(str::to_string))
        .expect("a stage");
    let mut cases: Vec<Case> = Vec::new();
    let n = name.clone();
    cases.push((
        json!({"field": "last_name", "operator": "eq", "value": name}),
        Box::new(move |r| text(r, "last_name").as_deref() == Some(&n)),
    ));
    let n = name.clone();
    cases.push((
        json!({"field": "last_name", "operator": "neq", "value": name}),
        Box::new(move |r| text(r, "last_name").as_deref() != Some(&n)),
    ));
    let e = email.clone();
    cases.push((
        json!({"field": "email", "operator": "eq", "value": email}),
        Box::new(move |r| text(r, "email").as_deref() == Some(&e)),
    ));
    for needle in ["'", "%", "_", "\\", "o'b", "100%_", "BACK\\S"] {
        let nd = needle.to_string();
        if every.iter().any(|r| {
            contains_ci(text(r, "last_name"), needle) || contains_ci(text(r, "first_name"), needle)
        }) {
            let f = if every
                .iter()
                .any(|r| contains_ci(text(r, "last_name"), needle))
            {
                "last_name"
            } else {
                "first_name"
            };
            let ff = f.to_string();
            cases.push((
                json!({"field": f, "operator": "contains", "value": needle}),
                Box::new(move |r| contains_ci(text(r, &ff), &nd)),
            ));
        }
    }
    let o = owner.clone();
    cases.push((
        json!({"field": "owner_id", "operator": "eq", "value": owner}),
        Box::new(move |r| r["owner_id"] == o),
    ));
    let o = owner.clone();
    cases.push((
        json!({"field": "owner_id", "operator": "neq", "value": owner}),
        Box::new(move |r| r["owner_id"] != o),
    ));
    let s = stage.clone();
    cases.push((
        json!({"field": "lifecycle_stage", "operator": "in", "values": [stage, "other"]}),
        Box::new(move |r| r["lifecycle_stage"] == json!(s) || r["lifecycle_stage"] == "other"),
    ));
    let s = stage.clone();
    cases.push((
        json!({"field": "lifecycle_stage", "operator": "not_in", "values": [stage]}),
        Box::new(move |r| r["lifecycle_stage"] != json!(s)),
    ));
    cases.push((
        json!({"field": "job_title", "operator": "has_value"}),
        Box::new(|r| text(r, "job_title").is_some_and(|t| !t.is_empty())),
    ));
    cases.push((
        json!({"field": "job_title", "operator": "not_has_value"}),
        Box::new(|r| text(r, "job_title").is_none_or(|t| t.is_empty())),
    ));
    let first = text(one, "first_name").unwrap_or_default();
    let f2 = first.clone();
    cases.push((
        json!({"field": "first_name", "operator": "in", "values": [first, "Nobody-Such"]}),
        Box::new(move |r| text(r, "first_name").as_deref() == Some(&f2)),
    ));
    let mid = created[created.len() / 2].to_string();
    let lo = created[created.len() * 3 / 4].to_string();
    for (op, m) in [
        ("gt", mid.clone()),
        ("gte", mid.clone()),
        ("lt", mid.clone()),
        ("lte", mid.clone()),
    ] {
        let m2 = m.clone();
        let op2 = op.to_string();
        cases.push((
            json!({"field": "created_at", "operator": op, "value": m}),
            Box::new(move |r| {
                let c = r["created_at"].as_str().unwrap_or_default();
                match op2.as_str() {
                    "gt" => c > m2.as_str(),
                    "gte" => c >= m2.as_str(),
                    "lt" => c < m2.as_str(),
                    _ => c <= m2.as_str(),
                }
            }),
        ));
    }
    let (l2, h2) = (lo.clone(), mid.clone());
    cases.push((
        json!({"field": "created_at", "operator": "between", "value": lo, "high_value": mid}),
        Box::new(move |r| {
            let c = r["created_at"].as_str().unwrap_or_default();
            c >= l2.as_str() && c <= h2.as_str()
        }),
    ));
    check_filters(&w, "contacts", &every, cases).await;

    // Sort on another field, ascending.
    let p = search(
        &w,
        "contacts",
        json!({"sort": [{"field": "last_name", "direction": "asc"}], "limit": 100}),
    )
    .await;
    assert_eq!(p["data"].as_array().map(Vec::len), Some(100));

    // Cursors are sealed: a flipped character or another query is refused.
    let p = search(&w, "contacts", json!({"limit": 5})).await;
    let c = p["meta"]["cursor"].as_str().expect("cursor").to_string();
    let mut bad = c.clone().into_bytes();
    let i = bad.len() / 2;
    bad[i] = if bad[i] == b'A' { b'B' } else { b'A' };
    let r = w
        .call(
            1,
            101,
            "POST",
            "/v1/contacts/search",
            Some(json!({"cursor": String::from_utf8_lossy(&bad)})),
        )
        .await;
    r.assert_problem(400, "invalid-cursor");
    let r = w
        .call(1, 101, "POST", "/v1/contacts/search", Some(json!({"cursor": c, "filters": [{"field": "last_name", "operator": "eq", "value": "X"}]})))
        .await;
    r.assert_problem(400, "invalid-cursor");
    let r = w
        .call(
            2,
            201,
            "POST",
            "/v1/contacts/search",
            Some(json!({"cursor": c})),
        )
        .await;
    r.assert_problem(400, "invalid-cursor");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_writes_never_upsert_and_map_every_error() {
    let w = world("directory", "directory").await;
    let (before, _) = all(&w, "contacts", json!([]), 100).await;
    let owner = before[0]["owner_id"].clone();
    let body = json!({"first_name": "Grace", "last_name": "O'Hopper", "email": "grace.hopper@dialects.example",
        "phone": "+1 555 0100", "job_title": "Rear Admiral", "owner_id": owner, "lifecycle_stage": "lead"});
    let r = w
        .call(1, 101, "POST", "/v1/contacts", Some(body.clone()))
        .await;
    let created = ok(&r, 201)["data"].clone();
    let id = created["id"].as_str().expect("id").to_string();
    assert_eq!(
        r.header("location"),
        Some(format!("/v1/contacts/{id}").as_str())
    );
    for (k, v) in body.as_object().expect("obj") {
        assert_eq!(&created[k], v, "{k}");
    }
    assert!(created["created_at"].is_string() && created["updated_at"].is_string());
    let got = ok(
        &w.call(1, 101, "GET", &format!("/v1/contacts/{id}"), None)
            .await,
        200,
    );
    assert_eq!(got["data"], created);

    // PATCH: absent = unchanged, null = cleared.
    let r = w
        .call(
            1,
            101,
            "PATCH",
            &format!("/v1/contacts/{id}"),
            Some(json!({"job_title": null, "first_name": "Amazing Grace"})),
        )
        .await;
    let patched = ok(&r, 200)["data"].clone();
    assert_eq!(patched["job_title"], Value::Null);
    assert_eq!(patched["first_name"], "Amazing Grace");
    assert_eq!(patched["phone"], created["phone"]);
    assert_eq!(patched["email"], created["email"]);

    // Duplicate email (case-insensitive upstream) → 409, nothing upstream text.
    let mut dup = body.clone();
    dup["email"] = json!("GRACE.HOPPER@dialects.example");
    let r = w.call(1, 101, "POST", "/v1/contacts", Some(dup)).await;
    let p = r.assert_problem(409, "conflict");
    assert!(!String::from_utf8_lossy(&r.body).contains("0x8"), "{p}");

    // PATCH and DELETE of an unknown key: 404 and nothing created upstream.
    let ghost = w.sealer.seal_id(
        "con",
        1,
        0,
        &InternalId::Str("0b5a2a3e-9c3f-4c1e-8d77-1f2e3d4c5b6a".into()),
    );
    let upstream_before = w.sim.state().count(1, "directory");
    let r = w
        .call(
            1,
            101,
            "PATCH",
            &format!("/v1/contacts/{ghost}"),
            Some(json!({"first_name": "Nobody"})),
        )
        .await;
    r.assert_problem(404, "not-found");
    w.call(1, 101, "DELETE", &format!("/v1/contacts/{ghost}"), None)
        .await
        .assert_problem(404, "not-found");
    w.call(1, 101, "GET", &format!("/v1/contacts/{ghost}"), None)
        .await
        .assert_problem(404, "not-found");
    assert_eq!(
        w.sim.state().count(1, "directory"),
        upstream_before,
        "no upsert reached the backend's state"
    );
    let (after, total) = all(&w, "contacts", json!([]), 100).await;
    assert_eq!(
        after.len(),
        before.len() + 1,
        "only the one create reached the backend"
    );
    assert_eq!(total, Some(after.len() as u64));

    // Another tenant does not see the record.
    w.call(2, 201, "GET", &format!("/v1/contacts/{id}"), None)
        .await
        .assert_problem(404, "not-found");

    // Delete, then it is gone.
    let r = w
        .call(1, 101, "DELETE", &format!("/v1/contacts/{id}"), None)
        .await;
    assert_eq!(r.status, 204);
    w.call(1, 101, "GET", &format!("/v1/contacts/{id}"), None)
        .await
        .assert_problem(404, "not-found");

    // A backend failure is a 502 without its text.
    w.sim.state().fail_service("directory", true);
    let r = w
        .call(
            1,
            101,
            "GET",
            &format!("/v1/contacts/{}", before[0]["id"].as_str().expect("id")),
            None,
        )
        .await;
    r.assert_problem(502, "upstream-error");
    assert!(!String::from_utf8_lossy(&r.body).contains("0x8"));
    w.sim.state().fail_service("directory", false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_get_search_every_operator_and_paging() {
    let w = world("accounts", "accounts").await;
    let (every, total) = all(&w, "companies", json!([]), 100).await;
    assert_eq!(total, None, "JSON:API gives no total: none is published");
    assert!(every.len() > 100, "{}", every.len());
    for limit in [9, 25, 100] {
        let (page, _) = all(&w, "companies", json!([]), limit).await;
        assert_eq!(id_set(&page), id_set(&every), "limit {limit}");
        assert_eq!(page.len(), every.len());
    }
    let one = &every[2];
    let got = ok(
        &w.call(
            1,
            101,
            "GET",
            &format!("/v1/companies/{}", one["id"].as_str().expect("id")),
            None,
        )
        .await,
        200,
    );
    assert_eq!(&got["data"], one);
    // The owner is the same `usr_` id the reference services name (a number sent as text).
    let users: BTreeSet<String> = [101, 102, 103, 104]
        .iter()
        .map(|u| w.id("usr", 1, *u))
        .collect();
    assert!(every
        .iter()
        .all(|r| r["owner_id"].as_str().is_some_and(|o| users.contains(o))));

    let name = text(one, "name").expect("name");
    let owner = one["owner_id"].clone();
    let mut cases: Vec<Case> = Vec::new();
    let n = name.clone();
    cases.push((
        json!({"field": "name", "operator": "eq", "value": name}),
        Box::new(move |r| text(r, "name").as_deref() == Some(&n)),
    ));
    let n = name.clone();
    cases.push((
        json!({"field": "name", "operator": "neq", "value": name}),
        Box::new(move |r| text(r, "name").as_deref() != Some(&n)),
    ));
    for needle in ["'", "%", "_", "\\", "AC"] {
        let nd = needle.to_string();
        if every.iter().any(|r| contains_ci(text(r, "name"), needle)) {
            cases.push((
                json!({"field": "name", "operator": "contains", "value": needle}),
                Box::new(move |r| contains_ci(text(r, "name"), &nd)),
            ));
        }
    }
    let o = owner.clone();
    cases.push((
        json!({"field": "owner_id", "operator": "eq", "value": owner}),
        Box::new(move |r| r["owner_id"] == o),
    ));
    cases.push((
        json!({"field": "domain", "operator": "has_value"}),
        Box::new(|r| !r["domain"].is_null()),
    ));
    let country = every
        .iter()
        .find_map(|r| text(r, "country"))
        .expect("a country");
    let c2 = country.clone();
    cases.push((
        json!({"field": "country", "operator": "in", "values": [country, "ZZ"]}),
        Box::new(move |r| text(r, "country").as_deref() == Some(&c2)),
    ));
    cases.push((
        json!({"field": "employee_count", "operator": "between", "value": 10, "high_value": 500}),
        Box::new(|r| {
            r["employee_count"]
                .as_i64()
                .is_some_and(|n| (10..=500).contains(&n))
        }),
    ));
    cases.push((
        json!({"field": "employee_count", "operator": "gt", "value": 100}),
        Box::new(|r| r["employee_count"].as_i64().is_some_and(|n| n > 100)),
    ));
    let created: Vec<String> = every.iter().filter_map(|r| text(r, "created_at")).collect();
    let mid = created[created.len() / 2].clone();
    let m2 = mid.clone();
    cases.push((
        json!({"field": "created_at", "operator": "lt", "value": mid}),
        Box::new(move |r| text(r, "created_at").is_some_and(|c| c < m2)),
    ));
    check_filters(&w, "companies", &every, cases).await;

    let p = search(&w, "companies", json!({"limit": 5})).await;
    let c = p["meta"]["cursor"].as_str().expect("cursor").to_string();
    let r = w
        .call(
            1,
            102,
            "POST",
            "/v1/companies/search",
            Some(json!({"cursor": format!("{c}x")})),
        )
        .await;
    r.assert_problem(400, "invalid-cursor");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_writes_conflicts_and_errors() {
    let w = world("accounts", "accounts").await;
    let (before, _) = all(&w, "companies", json!([]), 100).await;
    let owner = w.id("usr", 1, 102);
    let body = json!({"name": "Dialects & Sons", "domain": "dialects.example", "industry": "software",
        "employee_count": 42, "city": "Lyon", "country": "FR", "owner_id": owner});
    let r = w
        .call(1, 101, "POST", "/v1/companies", Some(body.clone()))
        .await;
    let created = ok(&r, 201)["data"].clone();
    let id = created["id"].as_str().expect("id").to_string();
    assert_eq!(
        r.header("location"),
        Some(format!("/v1/companies/{id}").as_str())
    );
    for (k, v) in body.as_object().expect("obj") {
        assert_eq!(&created[k], v, "{k}");
    }
    let got = ok(
        &w.call(1, 101, "GET", &format!("/v1/companies/{id}"), None)
            .await,
        200,
    );
    assert_eq!(got["data"], created);

    let r = w
        .call(
            1,
            101,
            "PATCH",
            &format!("/v1/companies/{id}"),
            Some(json!({"city": null, "employee_count": 43})),
        )
        .await;
    let patched = ok(&r, 200)["data"].clone();
    assert_eq!(patched["city"], Value::Null);
    assert_eq!(patched["employee_count"], 43);
    assert_eq!(patched["name"], created["name"]);
    assert_eq!(patched["owner_id"], created["owner_id"]);

    let mut dup = body.clone();
    dup["domain"] = json!("DIALECTS.example");
    let r = w.call(1, 101, "POST", "/v1/companies", Some(dup)).await;
    r.assert_problem(409, "conflict");
    assert!(!String::from_utf8_lossy(&r.body).contains("taken"));

    let ghost = w.sealer.seal_id("cmp", 1, 0, &InternalId::Int(987_654));
    let upstream_before = w.sim.state().count(1, "organizations");
    w.call(
        1,
        101,
        "PATCH",
        &format!("/v1/companies/{ghost}"),
        Some(json!({"city": "Nowhere"})),
    )
    .await
    .assert_problem(404, "not-found");
    w.call(1, 101, "DELETE", &format!("/v1/companies/{ghost}"), None)
        .await
        .assert_problem(404, "not-found");
    assert_eq!(
        w.sim.state().count(1, "organizations"),
        upstream_before,
        "nothing was created upstream"
    );
    let (after, _) = all(&w, "companies", json!([]), 100).await;
    assert_eq!(after.len(), before.len() + 1);

    let r = w
        .call(1, 101, "DELETE", &format!("/v1/companies/{id}"), None)
        .await;
    assert_eq!(r.status, 204);
    w.call(1, 101, "GET", &format!("/v1/companies/{id}"), None)
        .await
        .assert_problem(404, "not-found");

    w.sim.state().fail_service("accounts", true);
    let r = w
        .call(1, 101, "POST", "/v1/companies/search", Some(json!({})))
        .await;
    r.assert_problem(502, "upstream-error");
    w.sim.state().fail_service("accounts", false);
}

#[test]
fn the_openapi_document_of_each_dialect_plan_generates() {
    for (dir, service, path) in [
        ("directory", "directory", "/v1/contacts/search"),
        ("accounts", "accounts", "/v1/companies/search"),
    ] {
        let plan = prospect_edge::mapping::load_dir(
            &repo().join("tests/mappings").join(dir),
            &prospect_edge::mapping::Context {
                upstream_names: vec![service],
            },
        )
        .unwrap_or_else(|d| panic!("{dir}: {d:?}"));
        let settings =
            prospect_edge::openapi::Settings::new("https://papi.trendev.in/problems/", None);
        let doc = prospect_edge::openapi::document(&plan, &settings, "2026-11-01")
            .unwrap_or_else(|p| panic!("{dir}: {}", p.detail));
        assert_eq!(
            doc["openapi"].as_str().map(|v| v.starts_with("3.1")),
            Some(true)
        );
        assert!(
            doc["paths"][path]["post"].is_object(),
            "{dir}: {}",
            doc["paths"]
        );
    }
}

/// `update.version` on the OData service: the PATCH carries the ETag its read returned
/// as `If-Match`; a stale tag (a concurrent writer in between) is read again and retried
/// once, twice stale is a 409 with nothing written; an unknown key never reaches a PATCH.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_patch_sends_the_etag_it_read_and_retries_a_stale_one() {
    let w = world("directory", "directory").await;
    let (records, _) = all(&w, "contacts", json!([]), 100).await;
    let id = records[0]["id"].as_str().expect("id").to_string();
    let state = w.sim.state();
    let tag_number = |t: &str| -> u64 {
        t.strip_prefix("W/\"")
            .and_then(|t| t.strip_suffix('"'))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("not a weak ETag: {t:?}"))
    };
    let patch = |name: &'static str| {
        let id = id.clone();
        let w = &w;
        async move {
            w.call(
                1,
                101,
                "PATCH",
                &format!("/v1/contacts/{id}"),
                Some(json!({ "first_name": name })),
            )
            .await
        }
    };

    // One PATCH: one upstream PATCH, carrying the tag of the version it read.
    let seen = state.directory_if_match().len();
    let r = patch("Ada").await;
    assert_eq!(ok(&r, 200)["data"]["first_name"], "Ada");
    let tags = state.directory_if_match()[seen..].to_vec();
    assert_eq!(tags.len(), 1, "{tags:?}");
    let first = tag_number(&tags[0]);

    // A concurrent writer between the read and the write: 412, read again, the second
    // PATCH names the newer version and succeeds.
    state.interfere_with_directory_writes(1);
    let r = patch("Grace").await;
    assert_eq!(ok(&r, 200)["data"]["first_name"], "Grace");
    let tags = state.directory_if_match()[seen + 1..].to_vec();
    assert_eq!(tags.len(), 2, "{tags:?}");
    let (stale, fresh) = (tag_number(&tags[0]), tag_number(&tags[1]));
    assert!(
        stale > first,
        "the read after the first PATCH saw its new version"
    );
    assert!(
        fresh > stale,
        "the retry read the concurrent writer's version"
    );

    // Stale twice: 409, and the record is as the last successful PATCH left it.
    state.interfere_with_directory_writes(2);
    let r = patch("Nobody").await;
    let p = r.assert_problem(409, "conflict");
    assert!(!String::from_utf8_lossy(&r.body).contains("0x8"), "{p}");
    assert_eq!(state.directory_if_match().len(), seen + 5);
    let got = ok(
        &w.call(1, 101, "GET", &format!("/v1/contacts/{id}"), None)
            .await,
        200,
    );
    assert_eq!(got["data"]["first_name"], "Grace");

    // An unknown key: the read's 404, and no PATCH reached the backend.
    let ghost = w.sealer.seal_id(
        "con",
        1,
        0,
        &InternalId::Str("0b5a2a3e-9c3f-4c1e-8d77-1f2e3d4c5b6b".into()),
    );
    let before = state.count(1, "directory");
    w.call(
        1,
        101,
        "PATCH",
        &format!("/v1/contacts/{ghost}"),
        Some(json!({"first_name": "Nobody"})),
    )
    .await
    .assert_problem(404, "not-found");
    assert_eq!(state.directory_if_match().len(), seen + 5);
    assert_eq!(state.count(1, "directory"), before);
}
