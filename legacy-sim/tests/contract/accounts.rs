//! Contract of the JSON:API 1.1 `accounts` service (`BACKENDS.md`).

use std::collections::BTreeSet;

use serde_json::{json, Value};

use super::{send, sim, Resp};
use legacy_sim::Sim;

const MEDIA: &str = "application/vnd.api+json";

async fn acc(
    sim: &Sim,
    method: &str,
    path: &str,
    actor: Option<u64>,
    extra: &[(&str, &str)],
    body: Option<Value>,
) -> Resp {
    let mut h: Vec<(&str, String)> = actor
        .map(|a| ("X-Actor-Id", a.to_string()))
        .into_iter()
        .collect();
    h.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
    let b = body.map(|v| v.to_string());
    if b.is_some()
        && !extra
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
    {
        h.push(("Content-Type", MEDIA.into()));
    }
    send(sim.addr("accounts"), method, path, &h, b.as_deref()).await
}

async fn get(sim: &Sim, path: &str, actor: u64) -> Resp {
    acc(sim, "GET", path, Some(actor), &[], None).await
}

#[track_caller]
fn assert_errors(r: &Resp, status: u16, expected: &[(&str, &str)]) {
    assert_eq!(r.status, status, "{}", r.body);
    assert_eq!(r.header("content-type"), Some(MEDIA));
    let j = r.json();
    let errs = j["errors"].as_array().expect("errors array");
    // JSON:API gives the entries no order (and the body's member order depends on
    // serde_json's `preserve_order`, which the workspace build turns on): compare sorted.
    let mut got: Vec<(String, String)> = errs
        .iter()
        .map(|e| {
            assert!(e["title"].as_str().is_some_and(|t| !t.is_empty()));
            assert!(e["detail"].as_str().is_some_and(|t| !t.is_empty()));
            let src = e["source"]["pointer"]
                .as_str()
                .or(e["source"]["parameter"].as_str())
                .or(e["source"]["header"].as_str())
                .unwrap_or("")
                .to_string();
            (e["code"].as_str().unwrap().to_string(), src)
        })
        .collect();
    let mut want: Vec<(String, String)> = expected
        .iter()
        .map(|(c, s)| (c.to_string(), s.to_string()))
        .collect();
    got.sort();
    want.sort();
    assert_eq!(got, want, "{}", r.body);
    for e in errs {
        assert!(e["status"].is_string(), "status is a string in JSON:API");
    }
}

fn names(v: &Value) -> Vec<String> {
    v["data"]
        .as_array()
        .expect("data array")
        .iter()
        .map(|e| e["attributes"]["name"].as_str().unwrap().to_string())
        .collect()
}

fn ids(v: &Value) -> Vec<u64> {
    v["data"]
        .as_array()
        .expect("data array")
        .iter()
        .map(|e| e["id"].as_str().unwrap().parse().unwrap())
        .collect()
}

/// Encodes a query value as a client would (brackets and `+` included).
fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn orgs(params: &[(&str, &str)]) -> String {
    let q: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect();
    format!("/tenants/1/organizations?{}", q.join("&"))
}

/// Follows `links.next` to the end: the resources in order and the number of pages.
async fn collect_docs(sim: &Sim, first: &str, actor: u64) -> (Vec<Value>, usize) {
    let mut path = first.to_string();
    let mut out = Vec::new();
    let mut pages = 0;
    loop {
        let r = get(sim, &path, actor).await;
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        pages += 1;
        let j = r.json();
        assert!(j["meta"].get("total").is_none() && j["meta"]["page"].get("total").is_none());
        let size = j["meta"]["page"]["size"].as_u64().unwrap() as usize;
        let data = j["data"].as_array().expect("data").clone();
        let n = data.len();
        out.extend(data);
        match &j["links"]["next"] {
            Value::String(next) => {
                assert!(next.starts_with("/tenants/"), "relative: {next}");
                assert_eq!(n, size, "a full page before a link");
                path = next.clone();
            }
            Value::Null => break,
            other => panic!("links.next {other}"),
        }
        assert!(pages < 500, "runaway paging");
    }
    (out, pages)
}

/// Follows `links.next` to the end: the ids in order and the number of pages.
async fn collect(sim: &Sim, first: &str, actor: u64) -> (Vec<u64>, usize) {
    let (docs, pages) = collect_docs(sim, first, actor).await;
    let ids = docs
        .iter()
        .map(|d| d["id"].as_str().unwrap().parse().unwrap())
        .collect();
    (ids, pages)
}

/// Every id matching the filters, as admin 101.
async fn hits(sim: &Sim, params: &[(&str, &str)]) -> Vec<u64> {
    let mut p: Vec<(&str, &str)> = params.to_vec();
    p.push(("page[size]", "100"));
    collect(sim, &orgs(&p), 101).await.0
}

#[tokio::test]
async fn accounts_resource_shape_and_headers() {
    let sim = sim().await;
    let r = acc(
        &sim,
        "GET",
        "/tenants/1/organizations/1",
        Some(101),
        &[("X-Request-ID", "req-7"), ("Accept", MEDIA)],
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("content-type"), Some(MEDIA));
    assert_eq!(r.header("x-request-id"), Some("req-7"));
    assert_eq!(
        r.json(),
        json!({"data": {
            "type": "organizations",
            "id": "1",
            "attributes": {
                "name": "Acme Corporation",
                "domain": "acme.example.com",
                "industry": "SOFTWARE",
                "employee-count": 250,
                "city": "Springfield",
                "country": "US",
                "created-at": "2025-01-02T10:00:00.000+0000",
                "updated-at": "2025-01-02T10:00:00.000+0000",
            },
            "relationships": {"owner": {"data": {"type": "users", "id": "101"}}},
            "links": {"self": "/tenants/1/organizations/1"},
        }})
    );
    let j = get(&sim, "/tenants/1/organizations/5", 101).await.json();
    let a = &j["data"]["attributes"];
    assert_eq!(a["name"], "Back\\Slash Systems");
    assert_eq!(a["domain"], Value::Null);
    assert_eq!(a["employee-count"], Value::Null);
    assert_eq!(a["created-at"], "2025-01-06T10:00:00.999+0000");
    // Accept: */*, application/json or a profile are fine
    for accept in [
        "*/*",
        "application/json",
        "application/vnd.api+json; profile=\"https://example.com/p\"",
        "application/vnd.api+json; q=0.9",
    ] {
        let r = acc(
            &sim,
            "GET",
            "/tenants/1/organizations/1",
            Some(101),
            &[("Accept", accept)],
            None,
        )
        .await;
        assert_eq!(r.status, 200, "{accept}: {}", r.body);
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn accounts_error_table() {
    let sim = sim().await;
    let st = sim.state();
    let one = "/tenants/1/organizations/1";
    let list = "/tenants/1/organizations";

    // 401: no actor, or not a number
    let r = acc(&sim, "GET", one, None, &[], None).await;
    assert_errors(&r, 401, &[("unauthorized", "X-Actor-Id")]);
    let r = acc(&sim, "GET", one, None, &[("X-Actor-Id", "alice")], None).await;
    assert_errors(&r, 401, &[("unauthorized", "X-Actor-Id")]);
    let r = acc(
        &sim,
        "GET",
        one,
        None,
        &[("X-PC-User", "101"), ("X-PC-Tenant", "1")],
        None,
    )
    .await;
    assert_eq!(r.status, 401, "X-PC-* mean nothing here");

    // 400: malformed queries, each with source.parameter
    for (path, param) in [
        (orgs(&[("filter[nope]", "x")]), "filter[nope]"),
        (orgs(&[("filter[name][like]", "x")]), "filter[name][like]"),
        (
            orgs(&[("filter[employee-count][contains]", "1")]),
            "filter[employee-count][contains]",
        ),
        (
            orgs(&[("filter[employee-count][gt]", "many")]),
            "filter[employee-count][gt]",
        ),
        (
            orgs(&[("filter[domain][null]", "maybe")]),
            "filter[domain][null]",
        ),
        (orgs(&[("filter[name", "x")]), "filter[name"),
        (orgs(&[("page[size]", "0")]), "page[size]"),
        (orgs(&[("page[size]", "101")]), "page[size]"),
        (orgs(&[("page[size]", "ten")]), "page[size]"),
        (orgs(&[("page[number]", "2")]), "page[number]"),
        (orgs(&[("page[cursor]", "nonsense")]), "page[cursor]"),
        (orgs(&[("sort", "nope")]), "sort"),
        (orgs(&[("sort", "name,-name")]), "sort"),
        (orgs(&[("sort", "")]), "sort"),
        (orgs(&[("include", "owner")]), "include"),
        (
            orgs(&[("fields[organizations]", "name")]),
            "fields[organizations]",
        ),
        (orgs(&[("name", "Acme")]), "name"),
        (
            orgs(&[("filter[name]", "a"), ("filter[name]", "b")]),
            "filter[name]",
        ),
        (
            "/tenants/1/organizations/1?include=owner".to_string(),
            "include",
        ),
    ] {
        let r = get(&sim, &path, 101).await;
        assert_errors(&r, 400, &[("bad_request", param)]);
    }
    // several wrong parameters: one entry each
    let r = get(
        &sim,
        &orgs(&[("filter[nope]", "x"), ("page[size]", "0"), ("sort", "zzz")]),
        101,
    )
    .await;
    assert_errors(
        &r,
        400,
        &[
            ("bad_request", "filter[nope]"),
            ("bad_request", "page[size]"),
            ("bad_request", "sort"),
        ],
    );

    // 400: malformed documents, with source.pointer
    for (body, ptr) in [
        ("{", ""),
        ("[]", ""),
        ("{}", ""),
        ("{\"data\": []}", "/data"),
        ("{\"data\": {\"attributes\": {\"name\": \"x\"}}}", "/data/type"),
        ("{\"data\": {\"type\": 5}}", "/data/type"),
        ("{\"data\": {\"type\": \"organizations\", \"attributes\": []}}", "/data/attributes"),
        ("{\"data\": {\"type\": \"organizations\", \"attributes\": {\"name\": \"x\", \"size\": 1}}}", "/data/attributes/size"),
        ("{\"data\": {\"type\": \"organizations\", \"attributes\": {\"name\": \"x\", \"created-at\": \"2026-01-01T00:00:00.000+0000\"}}}", "/data/attributes/created-at"),
        ("{\"data\": {\"type\": \"organizations\", \"attributes\": {\"name\": \"x\"}, \"relationships\": {\"parent\": {\"data\": null}}}}", "/data/relationships/parent"),
        ("{\"data\": {\"type\": \"organizations\", \"attributes\": {\"name\": \"x\"}, \"relationships\": {\"owner\": {}}}}", "/data/relationships/owner"),
    ] {
        let r = send(
            sim.addr("accounts"),
            "POST",
            list,
            &[("X-Actor-Id", "101".into()), ("Content-Type", MEDIA.into())],
            Some(body),
        )
        .await;
        assert_errors(&r, 400, &[("bad_request", ptr)]);
    }

    // 403: a client-generated id, a read_only writer, an actor of another tenant
    let r = acc(
        &sim,
        "POST",
        list,
        Some(101),
        &[],
        Some(json!({"data": {"type": "organizations", "id": "999", "attributes": {"name": "x"}}})),
    )
    .await;
    assert_errors(&r, 403, &[("forbidden", "/data/id")]);
    let r = acc(
        &sim,
        "POST",
        list,
        Some(104),
        &[],
        Some(json!({"data": {"type": "organizations", "attributes": {"name": "x"}}})),
    )
    .await;
    assert_errors(&r, 403, &[("forbidden", "")]);
    let r = get(&sim, one, 201).await;
    assert_errors(&r, 403, &[("forbidden", "")]);
    let r = get(&sim, "/tenants/3/organizations/1", 101).await;
    assert_errors(&r, 403, &[("forbidden", "")]);
    let r = acc(&sim, "DELETE", one, Some(102), &[], None).await;
    assert_errors(&r, 403, &[("forbidden", "")]);

    // 404: no such organization, not an id, no such route
    for path in [
        "/tenants/1/organizations/9999",
        "/tenants/1/organizations/abc",
        "/tenants/1/organizations/0",
        "/tenants/x/organizations",
        "/tenants/1/companies",
        "/tenants/1/organizations/1/relationships/owner",
        "/organizations/1",
    ] {
        let r = get(&sim, path, 101).await;
        assert_errors(&r, 404, &[("not_found", "")]);
    }
    // 405 with Allow
    let r = acc(&sim, "PUT", one, Some(101), &[], Some(json!({}))).await;
    assert_errors(&r, 405, &[("method_not_allowed", "")]);
    assert_eq!(r.header("allow"), Some("GET, PATCH, DELETE"));

    // 415: another media type, or parameters other than ext/profile, or an extension
    for ct in [
        "application/json",
        "application/vnd.api+json; charset=utf-8",
        "application/vnd.api+json; ext=\"https://jsonapi.org/ext/atomic\"",
        "text/plain",
    ] {
        let r = acc(
            &sim,
            "POST",
            list,
            Some(101),
            &[("Content-Type", ct)],
            Some(json!({"data": {"type": "organizations", "attributes": {"name": "x"}}})),
        )
        .await;
        assert_errors(&r, 415, &[("unsupported_media_type", "Content-Type")]);
    }
    let r = send(
        sim.addr("accounts"),
        "PATCH",
        one,
        &[("X-Actor-Id", "101".into())],
        Some("{}"),
    )
    .await;
    assert_errors(&r, 415, &[("unsupported_media_type", "Content-Type")]);
    let r = acc(
        &sim,
        "POST",
        list,
        Some(101),
        &[(
            "Content-Type",
            "application/vnd.api+json; profile=\"https://example.com/p\"",
        )],
        Some(json!({"data": {"type": "organizations", "attributes": {"name": "Profiled"}}})),
    )
    .await;
    assert_eq!(r.status, 201, "a profile parameter is fine: {}", r.body);
    // 406: every JSON:API instance in Accept has a parameter the server cannot honour
    for accept in [
        "application/vnd.api+json; charset=utf-8",
        "application/vnd.api+json; version=1, application/vnd.api+json; ext=\"https://x\"",
        "application/vnd.api+json; charset=utf-8, */*",
    ] {
        let r = acc(&sim, "GET", one, Some(101), &[("Accept", accept)], None).await;
        assert_errors(&r, 406, &[("not_acceptable", "Accept")]);
    }
    let r = acc(
        &sim,
        "GET",
        one,
        Some(101),
        &[(
            "Accept",
            "application/vnd.api+json; charset=utf-8, application/vnd.api+json",
        )],
        None,
    )
    .await;
    assert_eq!(r.status, 200, "one usable instance is enough");

    // 409: duplicate domain (case-insensitive), a wrong type, a wrong id
    let r = acc(&sim, "POST", list, Some(101), &[], Some(json!({"data": {"type": "organizations", "attributes": {"name": "Copy", "domain": "ACME.example.com"}}}))).await;
    assert_errors(&r, 409, &[("taken", "/data/attributes/domain")]);
    let r = acc(
        &sim,
        "POST",
        list,
        Some(101),
        &[],
        Some(json!({"data": {"type": "companies", "attributes": {"name": "x"}}})),
    )
    .await;
    assert_errors(&r, 409, &[("type_mismatch", "/data/type")]);
    let r = acc(
        &sim,
        "PATCH",
        one,
        Some(101),
        &[],
        Some(json!({"data": {"type": "people", "id": "1", "attributes": {}}})),
    )
    .await;
    assert_errors(&r, 409, &[("type_mismatch", "/data/type")]);
    let r = acc(
        &sim,
        "PATCH",
        one,
        Some(101),
        &[],
        Some(json!({"data": {"type": "organizations", "id": "2", "attributes": {}}})),
    )
    .await;
    assert_errors(&r, 409, &[("type_mismatch", "/data/id")]);
    let r = acc(
        &sim,
        "PATCH",
        one,
        Some(101),
        &[],
        Some(json!({"data": {"type": "organizations", "attributes": {}}})),
    )
    .await;
    assert_errors(&r, 400, &[("bad_request", "/data/id")]);
    let r = acc(
        &sim,
        "PATCH",
        one,
        Some(101),
        &[],
        Some(json!({"data": {"type": "organizations", "id": 1, "attributes": {}}})),
    )
    .await;
    assert_errors(&r, 400, &[("bad_request", "/data/id")]);

    // 422: one entry per attribute
    let r = acc(
        &sim,
        "POST",
        list,
        Some(101),
        &[],
        Some(json!({"data": {"type": "organizations", "attributes": {
            "name": "   ",
            "domain": "not a domain",
            "industry": "x".repeat(101),
            "employee-count": -1,
            "country": "usa",
            "city": 7,
        }, "relationships": {"owner": {"data": {"type": "users", "id": "999"}}}}})),
    )
    .await;
    assert_errors(
        &r,
        422,
        &[
            ("invalid", "/data/attributes/city"),
            ("invalid", "/data/attributes/country"),
            ("invalid", "/data/attributes/domain"),
            ("invalid", "/data/attributes/employee-count"),
            ("too_long", "/data/attributes/industry"),
            ("blank", "/data/attributes/name"),
            ("invalid", "/data/relationships/owner/data/id"),
        ],
    );
    let r = acc(
        &sim,
        "POST",
        list,
        Some(101),
        &[],
        Some(json!({"data": {"type": "organizations", "attributes": {"name": "x".repeat(256)}}})),
    )
    .await;
    assert_errors(&r, 422, &[("too_long", "/data/attributes/name")]);
    let r = acc(
        &sim,
        "POST",
        list,
        Some(101),
        &[],
        Some(json!({"data": {"type": "organizations", "attributes": {"city": "Paris"}}})),
    )
    .await;
    assert_errors(&r, 422, &[("blank", "/data/attributes/name")]);
    let r = acc(&sim, "PATCH", one, Some(101), &[], Some(json!({"data": {"type": "organizations", "id": "1", "attributes": {"name": null}, "relationships": {"owner": {"data": null}}}}))).await;
    assert_errors(
        &r,
        422,
        &[
            ("blank", "/data/attributes/name"),
            ("blank", "/data/relationships/owner/data"),
        ],
    );
    let r = acc(&sim, "PATCH", one, Some(101), &[], Some(json!({"data": {"type": "organizations", "id": "1", "relationships": {"owner": {"data": {"type": "groups", "id": "101"}}}}}))).await;
    assert_errors(
        &r,
        422,
        &[("invalid", "/data/relationships/owner/data/type")],
    );
    // a 400 and a 422 at once: the 400s are answered
    let r = acc(
        &sim,
        "POST",
        list,
        Some(101),
        &[],
        Some(json!({"data": {"type": "organizations", "attributes": {"name": "", "size": 1}}})),
    )
    .await;
    assert_errors(&r, 400, &[("bad_request", "/data/attributes/size")]);

    // 500: an injected failure, as a document
    st.fail_service("accounts", true);
    let r = get(&sim, one, 101).await;
    assert_errors(&r, 500, &[("internal", "")]);
    st.fail_service("accounts", false);
    assert_eq!(get(&sim, one, 101).await.status, 200);
    sim.shutdown().await;
}

#[tokio::test]
async fn accounts_writes() {
    let sim = sim().await;
    let st = sim.state();
    let list = "/tenants/1/organizations";
    assert_eq!(st.count(1, "organizations"), 130);
    assert_eq!(st.count(2, "organizations"), 4);

    let r = acc(
        &sim,
        "POST",
        list,
        Some(103),
        &[("X-Request-ID", "create-1")],
        Some(json!({"data": {"type": "organizations", "attributes": {
            "name": "Nova Labs", "domain": "nova.example.com", "employee-count": 0}}})),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.header("x-request-id"), Some("create-1"));
    let j = r.json();
    let id = j["data"]["id"].as_str().unwrap().to_string();
    assert_eq!(id, "131");
    assert_eq!(
        r.header("location"),
        Some(format!("/tenants/1/organizations/{id}").as_str())
    );
    assert_eq!(
        j["data"]["links"]["self"],
        format!("/tenants/1/organizations/{id}")
    );
    assert_eq!(
        j["data"]["relationships"]["owner"]["data"],
        json!({"type": "users", "id": "103"}),
        "owner defaults to the actor"
    );
    let a = &j["data"]["attributes"];
    assert_eq!(a["industry"], Value::Null);
    assert_eq!(a["employee-count"], 0);
    assert_eq!(a["created-at"], a["updated-at"]);
    let created = a["created-at"].as_str().unwrap().to_string();
    assert!(
        created.ends_with("+0000") && created.len() == 28,
        "{created}"
    );
    assert_eq!(st.count(1, "organizations"), 131);
    let path = format!("{list}/{id}");
    assert_eq!(get(&sim, &path, 103).await.json(), j);

    // PATCH: absent = unchanged, null = cleared, relationships too
    let r = acc(
        &sim,
        "PATCH",
        &path,
        Some(101),
        &[],
        Some(json!({"data": {"type": "organizations", "id": id, "attributes": {"domain": null, "city": "Lyon"},
                    "relationships": {"owner": {"data": {"type": "users", "id": "102"}}}}})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let a = r.json()["data"]["attributes"].clone();
    assert_eq!(a["name"], "Nova Labs");
    assert_eq!(a["domain"], Value::Null);
    assert_eq!(a["city"], "Lyon");
    assert_eq!(a["employee-count"], 0);
    assert_eq!(a["created-at"], created.as_str());
    assert_eq!(
        r.json()["data"]["relationships"]["owner"]["data"]["id"],
        "102"
    );
    assert_eq!(
        get(&sim, &path, 103).await.status,
        404,
        "103 no longer owns it"
    );
    // a PATCH with no attributes is fine too
    let r = acc(
        &sim,
        "PATCH",
        &path,
        Some(101),
        &[],
        Some(json!({"data": {"type": "organizations", "id": id}})),
    )
    .await;
    assert_eq!(r.status, 200);

    // PATCH and DELETE of an unknown id: 404, nothing created
    let r = acc(&sim, "PATCH", &format!("{list}/5000"), Some(101), &[], Some(json!({"data": {"type": "organizations", "id": "5000", "attributes": {"name": "Ghost"}}}))).await;
    assert_errors_code(&r, 404, "not_found");
    assert_eq!(st.count(1, "organizations"), 131);
    let r = acc(
        &sim,
        "DELETE",
        &format!("{list}/5000"),
        Some(101),
        &[],
        None,
    )
    .await;
    assert_errors_code(&r, 404, "not_found");

    // the domain is free again once cleared; then taken on PATCH
    let r = acc(&sim, "PATCH", "/tenants/1/organizations/2", Some(101), &[], Some(json!({"data": {"type": "organizations", "id": "2", "attributes": {"domain": "Initech.Example.com"}}}))).await;
    assert_errors_code(&r, 409, "taken");

    // DELETE: 204 without a body, then 404
    let r = acc(&sim, "DELETE", &path, Some(101), &[], None).await;
    assert_eq!(r.status, 204);
    assert_eq!(r.body, "");
    assert_eq!(get(&sim, &path, 101).await.status, 404);
    assert_eq!(st.count(1, "organizations"), 130);
    sim.shutdown().await;
}

#[track_caller]
fn assert_errors_code(r: &Resp, status: u16, code: &str) {
    assert_eq!(r.status, status, "{}", r.body);
    assert_eq!(r.json()["errors"][0]["code"], code, "{}", r.body);
    assert_eq!(r.json()["errors"][0]["status"], status.to_string());
}

#[tokio::test]
async fn accounts_paging_to_the_end() {
    let sim = sim().await;
    let (all, pages) = collect(&sim, "/tenants/1/organizations", 101).await;
    assert_eq!(
        all,
        (1..=130).collect::<Vec<u64>>(),
        "default order id ascending"
    );
    assert_eq!(pages, 7, "20 a page by default");
    for size in [1usize, 7, 20, 100, 130 % 100] {
        let (got, pages) = collect(&sim, &orgs(&[("page[size]", &size.to_string())]), 101).await;
        assert_eq!(got, all, "size {size}");
        assert_eq!(pages, 130usize.div_ceil(size), "size {size}");
    }
    // a sort with many ties and nulls (last ascending, first descending)
    for sort in [
        "-industry,name",
        "industry",
        "employee-count",
        "-country,-created-at",
        "updated-at",
        "-id",
    ] {
        let (full, _) = collect(&sim, &orgs(&[("sort", sort), ("page[size]", "100")]), 101).await;
        let (paged, _) = collect(&sim, &orgs(&[("sort", sort), ("page[size]", "9")]), 101).await;
        assert_eq!(paged, full, "{sort}");
        assert_eq!(
            paged.iter().collect::<BTreeSet<_>>().len(),
            130,
            "{sort}: no duplicate"
        );
    }
    let (docs, _) = collect_docs(
        &sim,
        &orgs(&[("sort", "industry"), ("page[size]", "100")]),
        101,
    )
    .await;
    let industries: Vec<Value> = docs
        .iter()
        .map(|d| d["attributes"]["industry"].clone())
        .collect();
    let first_null = industries.iter().position(Value::is_null).unwrap();
    assert!(first_null > 0);
    assert!(
        industries[first_null..].iter().all(Value::is_null),
        "nulls last ascending"
    );
    let j = get(&sim, &orgs(&[("sort", "-industry")]), 101).await.json();
    assert!(
        j["data"][0]["attributes"]["industry"].is_null(),
        "nulls first descending"
    );

    // the next link is relative and carries the query; links.self is the request
    let path = orgs(&[
        ("filter[country]", "US"),
        ("sort", "-created-at"),
        ("page[size]", "3"),
    ]);
    let r = get(&sim, &path, 101).await;
    let j = r.json();
    assert_eq!(j["links"]["self"], path);
    assert_eq!(j["meta"], json!({"page": {"size": 3}}));
    let next = j["links"]["next"].as_str().unwrap().to_string();
    assert!(next.starts_with("/tenants/1/organizations?"), "{next}");
    assert!(next.contains("page%5Bcursor%5D="));
    let (us, _) = collect(&sim, &path, 101).await;
    for id in &us {
        let o = get(&sim, &format!("/tenants/1/organizations/{id}"), 101)
            .await
            .json();
        assert_eq!(o["data"]["attributes"]["country"], "US");
    }
    // the cursor is bound to the filters and the sort; a tampered one is refused
    let cursor = next.split("page%5Bcursor%5D=").nth(1).unwrap().to_string();
    for other in [
        orgs(&[
            ("filter[country]", "GB"),
            ("sort", "-created-at"),
            ("page[cursor]", &cursor),
        ]),
        orgs(&[("filter[country]", "US"), ("page[cursor]", &cursor)]),
        orgs(&[
            ("filter[country]", "US"),
            ("sort", "-created-at"),
            ("page[cursor]", &cursor[2..]),
        ]),
        orgs(&[
            ("filter[country]", "US"),
            ("sort", "-created-at"),
            ("page[cursor]", &format!("{cursor}00")),
        ]),
    ] {
        let r = get(&sim, &other, 101).await;
        assert_errors(&r, 400, &[("bad_request", "page[cursor]")]);
    }
    let r = get(
        &sim,
        &orgs(&[
            ("sort", "-created-at"),
            ("filter[country]", "US"),
            ("page[size]", "50"),
            ("page[cursor]", &cursor),
        ]),
        101,
    )
    .await;
    assert_eq!(
        r.status, 200,
        "the page size and the order of parameters may change"
    );
    assert_eq!(
        ids(&r.json()),
        us[3..].iter().copied().take(50).collect::<Vec<_>>()
    );
    // the last page's next is null, also on an exact multiple
    let r = get(&sim, &orgs(&[("page[size]", "65")]), 101).await;
    let next = r.json()["links"]["next"].as_str().unwrap().to_string();
    let r = get(&sim, &next, 101).await;
    assert_eq!(ids(&r.json()).len(), 65);
    assert_eq!(r.json()["links"]["next"], Value::Null);
    // an empty result
    let r = get(&sim, &orgs(&[("filter[name]", "no such name")]), 101).await;
    assert_eq!(r.json()["data"], json!([]));
    assert_eq!(r.json()["links"]["next"], Value::Null);
    sim.shutdown().await;
}

#[tokio::test]
async fn accounts_filters() {
    let sim = sim().await;
    // contains: case-insensitive, every character literal
    assert_eq!(hits(&sim, &[("filter[name][contains]", "ACME")]).await, [1]);
    assert_eq!(
        hits(&sim, &[("filter[name][contains]", "organic")]).await,
        [3]
    );
    assert_eq!(hits(&sim, &[("filter[name][contains]", "%")]).await, [3]);
    assert_eq!(hits(&sim, &[("filter[name][contains]", "_")]).await, [4]);
    assert_eq!(hits(&sim, &[("filter[name][contains]", "'")]).await, [2]);
    assert_eq!(hits(&sim, &[("filter[name][contains]", "\\")]).await, [5]);
    assert_eq!(hits(&sim, &[("filter[name][contains]", "o'r")]).await, [2]);
    assert_eq!(
        hits(&sim, &[("filter[name][contains]", "100% o")]).await,
        [3]
    );
    assert_eq!(
        hits(&sim, &[("filter[name][contains]", "*")]).await,
        Vec::<u64>::new()
    );
    // equality is exact (case-sensitive)
    assert_eq!(hits(&sim, &[("filter[name]", "Initech")]).await, [6]);
    assert_eq!(
        hits(&sim, &[("filter[name][eq]", "initech")]).await,
        Vec::<u64>::new()
    );
    assert_eq!(
        hits(&sim, &[("filter[name]", "Fifty_Fifty Ltd")]).await,
        [4]
    );
    // in, null, ne (SQL: a null never matches a comparison), owner, numbers
    assert_eq!(
        hits(
            &sim,
            &[("filter[domain][in]", "acme.example.com,initech.example.com")]
        )
        .await,
        [1, 6]
    );
    let nulls = hits(&sim, &[("filter[domain][null]", "true")]).await;
    let not_nulls = hits(&sim, &[("filter[domain][null]", "false")]).await;
    assert!(nulls.contains(&5));
    assert_eq!(nulls.len() + not_nulls.len(), 130);
    let ne = hits(&sim, &[("filter[domain][ne]", "acme.example.com")]).await;
    assert_eq!(ne.len(), not_nulls.len() - 1);
    let mine = hits(&sim, &[("filter[owner]", "104")]).await;
    assert!(mine.contains(&6) && !mine.contains(&1));
    let small = hits(
        &sim,
        &[
            ("filter[employee-count][lt]", "100"),
            ("filter[industry]", "SOFTWARE"),
        ],
    )
    .await;
    assert!(small.contains(&6) && !small.contains(&1));
    assert_eq!(
        hits(
            &sim,
            &[
                ("filter[employee-count][ge]", "250"),
                ("filter[employee-count][le]", "250"),
                ("filter[country]", "US")
            ]
        )
        .await,
        [1]
    );
    // timestamps: any ISO 8601 with a zone; the + of an offset must arrive as %2B
    let window = hits(
        &sim,
        &[
            ("filter[created-at][ge]", "2025-01-06T10:00:00.999+0000"),
            ("filter[created-at][le]", "2025-01-07T11:00:00+01:00"),
        ],
    )
    .await;
    assert!(window.contains(&5) && window.contains(&6), "{window:?}");
    assert!(!window.iter().any(|id| (1..=4).contains(id)), "{window:?}");
    let after = hits(
        &sim,
        &[
            ("filter[created-at][gt]", "2025-01-06T10:00:00.999Z"),
            ("filter[created-at][lt]", "2025-01-07T10:00:00Z"),
        ],
    )
    .await;
    assert!(
        !after.contains(&5) && !after.contains(&6),
        "bounds are exact to the millisecond"
    );
    assert_eq!(
        hits(&sim, &[("filter[created-at]", "2025-01-03T10:00:00.25Z")]).await,
        [2]
    );
    let raw_plus =
        "/tenants/1/organizations?filter%5Bcreated-at%5D%5Bgt%5D=2025-01-06T10:00:00.000+0000";
    let r = get(&sim, raw_plus, 101).await;
    assert_errors(&r, 400, &[("bad_request", "filter[created-at][gt]")]);
    // unencoded brackets are read the same
    let r = get(&sim, "/tenants/1/organizations?filter[name]=Initech", 101).await;
    assert_eq!(ids(&r.json()), [6]);
    // + is a space in a query value, as form decoding has it
    let r = get(
        &sim,
        "/tenants/1/organizations?filter%5Bname%5D=Acme+Corporation",
        101,
    )
    .await;
    assert_eq!(ids(&r.json()), [1]);
    sim.shutdown().await;
}

#[tokio::test]
async fn accounts_tenants_and_roles() {
    let sim = sim().await;
    let st = sim.state();
    // tenant 2 has its own ids and may reuse tenant 1's domain
    let r = get(&sim, "/tenants/2/organizations/1", 201).await;
    assert_eq!(r.json()["data"]["attributes"]["name"], "Globex Corporation");
    assert_eq!(
        r.json()["data"]["links"]["self"],
        "/tenants/2/organizations/1"
    );
    let (ids2, _) = collect(&sim, "/tenants/2/organizations", 201).await;
    assert_eq!(ids2, [1, 2, 3, 4]);
    let r = get(
        &sim,
        "/tenants/2/organizations?filter%5Bdomain%5D=acme.example.com",
        201,
    )
    .await;
    assert_eq!(ids(&r.json()), [2]);
    assert_eq!(
        get(&sim, "/tenants/2/organizations/5", 201).await.status,
        404
    );
    // a tenant 1 user cannot reach tenant 2 by changing the path
    assert_eq!(
        get(&sim, "/tenants/2/organizations/1", 101).await.status,
        403
    );

    // a sales_rep sees only what it owns
    let (mine, _) = collect(&sim, "/tenants/1/organizations?page%5Bsize%5D=100", 103).await;
    assert!(!mine.is_empty() && mine.len() < 130);
    for id in &mine {
        let o = get(&sim, &format!("/tenants/1/organizations/{id}"), 103)
            .await
            .json();
        assert_eq!(o["data"]["relationships"]["owner"]["data"]["id"], "103");
    }
    assert!(mine.contains(&3) && mine.contains(&4) && !mine.contains(&1));
    assert_eq!(
        get(&sim, "/tenants/1/organizations/1", 103).await.status,
        404
    );
    let r = acc(&sim, "PATCH", "/tenants/1/organizations/1", Some(103), &[], Some(json!({"data": {"type": "organizations", "id": "1", "attributes": {"name": "Mine now"}}}))).await;
    assert_eq!(r.status, 404);
    assert_eq!(
        get(&sim, "/tenants/1/organizations/1", 101).await.json()["data"]["attributes"]["name"],
        "Acme Corporation"
    );
    let names_seen = names(
        &get(
            &sim,
            "/tenants/1/organizations?filter%5Bname%5D%5Bcontains%5D=a",
            103,
        )
        .await
        .json(),
    );
    assert!(!names_seen.contains(&"Acme Corporation".to_string()));
    st.set_role(1, 103, "admin");
    assert_eq!(
        get(&sim, "/tenants/1/organizations/1", 103).await.status,
        200
    );
    sim.shutdown().await;
}
