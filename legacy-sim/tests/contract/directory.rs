//! Contract of the OData v4 `directory` service (`BACKENDS.md`).

use std::collections::BTreeSet;

use serde_json::{json, Value};

use super::{send, sim, Resp};
use legacy_sim::Sim;

const ADA: &str = "6f1d3c2a-8b4e-4f6a-9c1d-2e3f4a5b6c01";
const OBRIEN: &str = "6f1d3c2a-8b4e-4f6a-9c1d-2e3f4a5b6c02";
const SURE: &str = "6f1d3c2a-8b4e-4f6a-9c1d-2e3f4a5b6c03";
const BACKSLASH: &str = "6f1d3c2a-8b4e-4f6a-9c1d-2e3f4a5b6c04";
const GRACE: &str = "6f1d3c2a-8b4e-4f6a-9c1d-2e3f4a5b6c05";
const SHOUTING: &str = "6f1d3c2a-8b4e-4f6a-9c1d-2e3f4a5b6c06";
const FIFTY: &str = "6f1d3c2a-8b4e-4f6a-9c1d-2e3f4a5b6c07";
const SNAKE: &str = "6f1d3c2a-8b4e-4f6a-9c1d-2e3f4a5b6c08";
const HANK: &str = "9a0b1c2d-3e4f-4a5b-8c6d-7e8f9a0b1c01";
const UNKNOWN: &str = "0badc0de-0000-4000-8000-000000000001";

fn who(tenant: u32, user: u64) -> Vec<(&'static str, String)> {
    vec![
        ("X-Directory-Tenant", tenant.to_string()),
        ("X-Directory-Principal", user.to_string()),
    ]
}

async fn dir(
    sim: &Sim,
    method: &str,
    path: &str,
    as_: (u32, u64),
    extra: &[(&str, &str)],
    body: Option<Value>,
) -> Resp {
    let mut h = who(as_.0, as_.1);
    h.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
    let b = body.map(|v| v.to_string());
    if b.is_some()
        && !extra
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
    {
        h.push(("Content-Type", "application/json".into()));
    }
    send(sim.addr("directory"), method, path, &h, b.as_deref()).await
}

async fn get(sim: &Sim, path: &str, as_: (u32, u64)) -> Resp {
    dir(sim, "GET", path, as_, &[], None).await
}

fn code(r: &Resp) -> String {
    r.json()["error"]["code"].as_str().unwrap_or("").to_string()
}

#[track_caller]
fn assert_err(r: &Resp, status: u16, c: &str) {
    assert_eq!(r.status, status, "{}", r.body);
    assert_eq!(code(r), c, "{}", r.body);
    assert!(r.json()["error"]["message"]
        .as_str()
        .is_some_and(|m| !m.is_empty()));
    assert_eq!(r.header("odata-version"), Some("4.0"));
    assert_eq!(
        r.header("content-type"),
        Some("application/json; odata.metadata=minimal")
    );
}

/// The ContactIds of a page's `value`, in order.
fn ids(v: &Value) -> Vec<String> {
    v["value"]
        .as_array()
        .expect("value array")
        .iter()
        .map(|e| e["ContactId"].as_str().unwrap().to_string())
        .collect()
}

const ADMIN: (u32, u64) = (1, 101);
const MANAGER: (u32, u64) = (1, 102);
const REP: (u32, u64) = (1, 103);
const READER: (u32, u64) = (1, 104);
const GLOBEX: (u32, u64) = (2, 201);

fn q(filter: &str) -> String {
    // encode what a URL cannot carry raw; `'`, `(`, `)`, `,`, `:` and `$` stay as they are
    let mut enc = String::new();
    for b in filter.bytes() {
        if b.is_ascii_alphanumeric() || b"'(),:$-._~".contains(&b) {
            enc.push(b as char);
        } else {
            enc.push_str(&format!("%{b:02X}"));
        }
    }
    format!("/odata/v4/Contacts?$filter={enc}")
}

async fn count(sim: &Sim, filter: &str) -> u64 {
    let r = get(sim, &format!("{}&$count=true&$top=0", q(filter)), ADMIN).await;
    assert_eq!(r.status, 200, "{filter}: {}", r.body);
    r.json()["@odata.count"].as_u64().expect("count")
}

async fn matches(sim: &Sim, filter: &str) -> Vec<String> {
    let r = get(sim, &q(filter), ADMIN).await;
    assert_eq!(r.status, 200, "{filter}: {}", r.body);
    ids(&r.json())
}

#[tokio::test]
async fn directory_entity_shape_headers_and_reads() {
    let sim = sim().await;
    let r = dir(
        &sim,
        "GET",
        &format!("/odata/v4/Contacts({ADA})"),
        ADMIN,
        &[("X-Correlation-Id", "corr-1")],
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("odata-version"), Some("4.0"));
    assert_eq!(
        r.header("content-type"),
        Some("application/json; odata.metadata=minimal")
    );
    assert_eq!(r.header("x-correlation-id"), Some("corr-1"));
    let j = r.json();
    let addr = sim.addr("directory");
    assert_eq!(
        j,
        json!({
            "@odata.context": format!("http://{addr}/odata/v4/$metadata#Contacts/$entity"),
            "@odata.etag": j["@odata.etag"].clone(),
            "ContactId": ADA,
            "FirstName": "Ada",
            "LastName": "Lovelace",
            "EMailAddress1": "ada.lovelace@example.com",
            "Telephone1": "+1-555-0101",
            "JobTitle": "Chief Analyst",
            "OwnerId": 101,
            "LifecycleCode": 100000001,
            "CreatedOn": "2025-01-02T10:00:00Z",
            "ModifiedOn": "2025-06-01T12:00:00.1234567Z",
            "VersionNumber": j["VersionNumber"].clone(),
        })
    );
    let v = j["VersionNumber"].as_i64().unwrap();
    assert_eq!(j["@odata.etag"], format!("W/\"{v}\""));
    assert_eq!(r.header("etag"), Some(format!("W/\"{v}\"").as_str()));

    // nulls are written, and fractions only when they are not zero
    let j = get(&sim, &format!("/odata/v4/Contacts({BACKSLASH})"), ADMIN)
        .await
        .json();
    assert_eq!(j["FirstName"], "Back\\slash");
    assert_eq!(j["JobTitle"], Value::Null);
    assert_eq!(j["LifecycleCode"], Value::Null);
    assert_eq!(j["ModifiedOn"], "2025-03-05T10:00:00.001Z");

    // an uppercase key reads the same entity; $select keeps the key and the etag
    let r = get(
        &sim,
        &format!(
            "/odata/v4/Contacts({})?$select=LastName,OwnerId",
            ADA.to_uppercase()
        ),
        ADMIN,
    )
    .await;
    let j = r.json();
    let keys: BTreeSet<&str> = j.as_object().unwrap().keys().map(|k| k.as_str()).collect();
    assert_eq!(
        keys,
        BTreeSet::from([
            "@odata.context",
            "@odata.etag",
            "ContactId",
            "LastName",
            "OwnerId"
        ])
    );
    assert!(j["@odata.context"]
        .as_str()
        .unwrap()
        .ends_with("$metadata#Contacts(LastName,OwnerId)/$entity"));

    // If-None-Match with the current tag: 304
    let tag = format!("W/\"{v}\"");
    let r = dir(
        &sim,
        "GET",
        &format!("/odata/v4/Contacts({ADA})"),
        ADMIN,
        &[("If-None-Match", &tag)],
        None,
    )
    .await;
    assert_eq!(r.status, 304);
    assert_eq!(r.body, "");

    // the X-PC-* headers mean nothing here; the directory's mean nothing elsewhere
    let r = send(
        addr,
        "GET",
        &format!("/odata/v4/Contacts({ADA})"),
        &[("X-PC-Tenant", "1".into()), ("X-PC-User", "101".into())],
        None,
    )
    .await;
    assert_err(&r, 401, "0x80048306");
    sim.shutdown().await;
}

#[tokio::test]
async fn directory_error_table() {
    let sim = sim().await;
    let st = sim.state();
    let addr = sim.addr("directory");
    let ada = format!("/odata/v4/Contacts({ADA})");

    // 401: a trust header missing, not a number, or a principal not of the tenant
    for h in [
        vec![],
        vec![("X-Directory-Tenant", "1".to_string())],
        vec![("X-Directory-Principal", "101".to_string())],
        vec![
            ("X-Directory-Tenant", "acme".to_string()),
            ("X-Directory-Principal", "101".to_string()),
        ],
        who(1, 201),
        who(3, 101),
    ] {
        let r = send(addr, "GET", &ada, &h, None).await;
        assert_err(&r, 401, "0x80048306");
    }

    // 400 validation, one detail per property, target named
    let r = dir(
        &sim,
        "POST",
        "/odata/v4/Contacts",
        ADMIN,
        &[],
        Some(json!({"FirstName": "X"})),
    )
    .await;
    assert_err(&r, 400, "0x80044331");
    assert_eq!(r.json()["error"]["details"][0]["target"], "EMailAddress1");
    let r = dir(
        &sim,
        "POST",
        "/odata/v4/Contacts",
        ADMIN,
        &[],
        Some(json!({
            "EMailAddress1": "v@example.com",
            "FirstName": 5,
            "Nickname": "x",
            "LifecycleCode": 3,
            "OwnerId": 999,
            "CreatedOn": "2026-01-01T00:00:00Z",
            "JobTitle": "x".repeat(101),
            "@odata.type": "#Microsoft.Dynamics.CRM.contact",
        })),
    )
    .await;
    assert_err(&r, 400, "0x80044331");
    let targets: BTreeSet<String> = r.json()["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            assert_eq!(d["code"], "0x80044331");
            assert!(d["message"].as_str().is_some_and(|m| !m.is_empty()));
            d["target"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(
        targets,
        [
            "CreatedOn",
            "FirstName",
            "JobTitle",
            "LifecycleCode",
            "Nickname",
            "OwnerId"
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    );
    for bad in ["{", "[]", "", "\"x\""] {
        let r = send(
            addr,
            "POST",
            "/odata/v4/Contacts",
            &[
                who(1, 101),
                vec![("Content-Type", "application/json".into())],
            ]
            .concat(),
            Some(bad),
        )
        .await;
        assert_err(&r, 400, "0x80044331");
    }

    // 400 bad query
    for path in [
        "/odata/v4/Contacts?$filter=Nope%20eq%201",
        "/odata/v4/Contacts?$filter=FirstName%20eq%205",
        "/odata/v4/Contacts?$filter=contains(FirstName,'a'",
        "/odata/v4/Contacts?$orderby=Nope",
        "/odata/v4/Contacts?$orderby=LastName%20sideways",
        "/odata/v4/Contacts?$top=-1",
        "/odata/v4/Contacts?$top=x",
        "/odata/v4/Contacts?$skip=1.5",
        "/odata/v4/Contacts?$count=yes",
        "/odata/v4/Contacts?$select=Nope",
        "/odata/v4/Contacts?$expand=Owner",
        "/odata/v4/Contacts?$top=1&$top=2",
        "/odata/v4/Contacts?$skiptoken=nonsense",
        "/odata/v4/Contacts?$filter=%ZZ",
        "/odata/v4/Contacts?$filter=%FF",
        "/odata/v4/Contacts(not-a-guid)",
        "/odata/v4/Contacts(6f1d3c2a%2D8b4e%2D4f6a%2D9c1d%2D2e3f4a5b6c01)",
        "/odata/v4/Contacts('6f1d3c2a-8b4e-4f6a-9c1d-2e3f4a5b6c01')",
        "/odata/v4/Contacts(6f1d3c2a-8b4e-4f6a-9c1d-2e3f4a5b6c01)?$filter=true",
    ] {
        let r = get(&sim, path, ADMIN).await;
        assert_err(&r, 400, "0x8006088a");
    }
    let r = dir(
        &sim,
        "GET",
        &ada,
        ADMIN,
        &[("OData-MaxVersion", "3.0")],
        None,
    )
    .await;
    assert_err(&r, 400, "0x8006088a");
    let r = dir(
        &sim,
        "GET",
        &ada,
        ADMIN,
        &[("OData-MaxVersion", "4.01")],
        None,
    )
    .await;
    assert_eq!(r.status, 200);

    // 403: read_only writes nothing, a sales_manager deletes nothing
    let r = dir(
        &sim,
        "PATCH",
        &ada,
        READER,
        &[],
        Some(json!({"JobTitle": "x"})),
    )
    .await;
    assert_err(&r, 403, "0x80040220");
    let r = dir(&sim, "DELETE", &ada, MANAGER, &[], None).await;
    assert_err(&r, 403, "0x80040220");

    // 404: no such entity; a route the service does not serve
    let r = get(&sim, &format!("/odata/v4/Contacts({UNKNOWN})"), ADMIN).await;
    assert_err(&r, 404, "0x80040217");
    for path in [
        format!("/odata/v4/Contacts%28{ADA}%29"),
        "/odata/v4/Accounts".to_string(),
        "/odata/v4/contacts".to_string(),
        format!("/odata/v4/Contacts({ADA})/FirstName"),
        "/api/data/v9.2/contacts".to_string(),
    ] {
        let r = get(&sim, &path, ADMIN).await;
        assert_err(&r, 404, "0x80060888");
    }
    // 405 on a method the resource does not take
    let r = dir(&sim, "PUT", &ada, ADMIN, &[], Some(json!({}))).await;
    assert_err(&r, 405, "0x80060888");
    assert_eq!(r.header("allow"), Some("GET, PATCH, DELETE"));
    let r = dir(&sim, "DELETE", "/odata/v4/Contacts", ADMIN, &[], None).await;
    assert_err(&r, 405, "0x80060888");

    // 412: duplicate detection (case-insensitive, in the tenant) and a stale etag
    let r = dir(
        &sim,
        "POST",
        "/odata/v4/Contacts",
        ADMIN,
        &[],
        Some(json!({"EMailAddress1": "ADA.Lovelace@Example.com"})),
    )
    .await;
    assert_err(&r, 412, "0x80040237");
    let r = dir(
        &sim,
        "PATCH",
        &ada,
        ADMIN,
        &[("If-Match", "W/\"1\"")],
        Some(json!({"JobTitle": "x"})),
    )
    .await;
    assert_err(&r, 412, "0x80060882");

    // 415: a write body of another media type
    for ct in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "application/jsonx",
    ] {
        let r = dir(
            &sim,
            "PATCH",
            &ada,
            ADMIN,
            &[("Content-Type", ct)],
            Some(json!({"JobTitle": "x"})),
        )
        .await;
        assert_err(&r, 415, "0x80048d19");
    }
    let r = send(addr, "POST", "/odata/v4/Contacts", &who(1, 101), Some("{}")).await;
    assert_err(&r, 415, "0x80048d19");
    let r = dir(
        &sim,
        "PATCH",
        &ada,
        ADMIN,
        &[("Content-Type", "application/json; charset=utf-8")],
        Some(json!({"JobTitle": "Chief Analyst"})),
    )
    .await;
    assert_eq!(
        r.status, 204,
        "parameters of application/json are fine: {}",
        r.body
    );

    // 500: an injected failure
    st.fail_service("directory", true);
    let r = get(&sim, &ada, ADMIN).await;
    assert_err(&r, 500, "0x80040216");
    st.fail_service("directory", false);
    assert_eq!(get(&sim, &ada, ADMIN).await.status, 200);
    sim.shutdown().await;
}

#[tokio::test]
async fn directory_writes_etags_and_upsert() {
    let sim = sim().await;
    let st = sim.state();
    let addr = sim.addr("directory");
    let before = st.count(1, "directory");
    assert_eq!(before, 240);
    assert_eq!(st.count(2, "directory"), 6);

    // create: 204 with the new URL in OData-EntityId and Location
    let r = dir(
        &sim,
        "POST",
        "/odata/v4/Contacts",
        REP,
        &[],
        Some(
            json!({"FirstName": "Nova", "LastName": "Newman", "EMailAddress1": "nova@example.com",
                    "@odata.etag": "W/\"9\""}),
        ),
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.body);
    assert_eq!(r.body, "");
    let url = r.header("odata-entityid").unwrap().to_string();
    assert_eq!(r.header("location"), Some(url.as_str()));
    let prefix = format!("http://{addr}/odata/v4/Contacts(");
    assert!(url.starts_with(&prefix) && url.ends_with(')'), "{url}");
    let key = url[prefix.len()..url.len() - 1].to_string();
    assert_eq!(key.len(), 36);
    assert_eq!(key, key.to_lowercase());
    assert_eq!(st.count(1, "directory"), before + 1);
    let path = format!("/odata/v4/Contacts({key})");
    let j = get(&sim, &path, REP).await.json();
    assert_eq!(j["OwnerId"], 103, "owner defaults to the principal");
    assert_eq!(j["LifecycleCode"], Value::Null);
    assert_eq!(j["Telephone1"], Value::Null);
    assert_eq!(j["CreatedOn"], j["ModifiedOn"]);
    assert!(j["CreatedOn"].as_str().unwrap().ends_with('Z'));
    let v1 = j["VersionNumber"].as_i64().unwrap();

    // create with return=representation: 201 with the entity
    let r = dir(
        &sim,
        "POST",
        "/odata/v4/Contacts",
        ADMIN,
        &[("Prefer", "return=representation")],
        Some(
            json!({"EMailAddress1": "rep@example.com", "LifecycleCode": 100000002, "OwnerId": 102}),
        ),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(
        r.header("preference-applied"),
        Some("return=representation")
    );
    let j = r.json();
    assert_eq!(j["LifecycleCode"], 100000002);
    assert_eq!(j["OwnerId"], 102);
    assert!(r
        .header("location")
        .unwrap()
        .ends_with(&format!("({})", j["ContactId"].as_str().unwrap())));
    assert_eq!(r.header("etag"), j["@odata.etag"].as_str());

    // PATCH: absent = unchanged, null = cleared, the version moves on
    let r = dir(
        &sim,
        "PATCH",
        &path,
        REP,
        &[],
        Some(json!({"JobTitle": "Pilot", "FirstName": null})),
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.body);
    assert_eq!(r.header("odata-entityid"), Some(url.as_str()));
    let j = get(&sim, &path, REP).await.json();
    assert_eq!(j["JobTitle"], "Pilot");
    assert_eq!(j["FirstName"], Value::Null);
    assert_eq!(j["LastName"], "Newman");
    let v2 = j["VersionNumber"].as_i64().unwrap();
    assert!(v2 > v1);

    // If-Match: the current tag writes (200 with representation), a stale one is 412
    let stale = format!("W/\"{v1}\"");
    let current = format!("W/\"{v2}\"");
    let r = dir(
        &sim,
        "PATCH",
        &path,
        REP,
        &[("If-Match", &stale)],
        Some(json!({"JobTitle": "Late"})),
    )
    .await;
    assert_eq!(r.status, 412);
    assert_eq!(code(&r), "0x80060882");
    let r = dir(
        &sim,
        "PATCH",
        &path,
        REP,
        &[("If-Match", &current), ("Prefer", "return=representation")],
        Some(json!({"JobTitle": "Captain"})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["JobTitle"], "Captain");
    let v3 = r.json()["VersionNumber"].as_i64().unwrap();
    assert!(v3 > v2);
    assert_eq!(r.header("etag"), Some(format!("W/\"{v3}\"").as_str()));

    // a PATCH to another's address: 412 on duplicate, nothing changed
    let r = dir(
        &sim,
        "PATCH",
        &path,
        REP,
        &[],
        Some(json!({"EMailAddress1": "SURE.percent@example.com"})),
    )
    .await;
    assert_eq!(r.status, 412);
    assert_eq!(code(&r), "0x80040237");

    // upsert: PATCH of an unknown key without If-Match creates it with that key
    let count = st.count(1, "directory");
    let fresh = "1234abcd-0000-4000-8000-00000000abcd";
    let r = dir(
        &sim,
        "PATCH",
        &format!("/odata/v4/Contacts({fresh})"),
        ADMIN,
        &[],
        Some(json!({"LastName": "Upserted", "EMailAddress1": "upsert@example.com"})),
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.body);
    assert_eq!(st.count(1, "directory"), count + 1, "the upsert created it");
    let j = get(&sim, &format!("/odata/v4/Contacts({fresh})"), ADMIN)
        .await
        .json();
    assert_eq!(j["ContactId"], fresh);
    assert_eq!(j["LastName"], "Upserted");
    assert_eq!(j["OwnerId"], 101);
    // an upsert that would create without an address is a validation error
    let r = dir(
        &sim,
        "PATCH",
        "/odata/v4/Contacts(1234abcd-0000-4000-8000-00000000abce)",
        ADMIN,
        &[],
        Some(json!({"LastName": "NoMail"})),
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(st.count(1, "directory"), count + 1);

    // If-Match: * (or any tag) never upserts
    let unknown = format!("/odata/v4/Contacts({UNKNOWN})");
    for tag in ["*", "W/\"1\""] {
        let r = dir(
            &sim,
            "PATCH",
            &unknown,
            ADMIN,
            &[("If-Match", tag)],
            Some(json!({"EMailAddress1": "no@example.com"})),
        )
        .await;
        assert_eq!(r.status, 404, "{tag}: {}", r.body);
        assert_eq!(code(&r), "0x80040217");
    }
    assert_eq!(st.count(1, "directory"), count + 1, "nothing created");
    // If-Match: * on an existing key updates it
    let r = dir(
        &sim,
        "PATCH",
        &path,
        REP,
        &[("If-Match", "*")],
        Some(json!({"Telephone1": "+1-555-7777"})),
    )
    .await;
    assert_eq!(r.status, 204);
    // If-None-Match: * refuses to update an existing one
    let r = dir(
        &sim,
        "PATCH",
        &path,
        REP,
        &[("If-None-Match", "*")],
        Some(json!({"Telephone1": "x"})),
    )
    .await;
    assert_eq!(r.status, 412);
    assert_eq!(code(&r), "0x80040237");

    // DELETE: If-Match honoured, then 204, then 404
    let j = get(&sim, &path, REP).await.json();
    let tag = j["@odata.etag"].as_str().unwrap().to_string();
    let r = dir(
        &sim,
        "DELETE",
        &path,
        ADMIN,
        &[("If-Match", "W/\"2\"")],
        None,
    )
    .await;
    assert_eq!(r.status, 412);
    assert_eq!(code(&r), "0x80060882");
    let r = dir(&sim, "DELETE", &path, ADMIN, &[("If-Match", &tag)], None).await;
    assert_eq!(r.status, 204);
    assert_eq!(get(&sim, &path, ADMIN).await.status, 404);
    let r = dir(&sim, "DELETE", &path, ADMIN, &[], None).await;
    assert_eq!(r.status, 404);
    let r = dir(&sim, "DELETE", &unknown, ADMIN, &[("If-Match", "*")], None).await;
    assert_eq!(r.status, 404);
    assert_eq!(code(&r), "0x80040217");
    sim.shutdown().await;
}

#[tokio::test]
async fn directory_paging_to_the_end() {
    let sim = sim().await;
    let addr = sim.addr("directory");
    let all: Vec<String> = {
        let st_ids = collect(&sim, "/odata/v4/Contacts?$select=ContactId", None).await;
        st_ids.0
    };
    assert_eq!(all.len(), 240);
    let mut sorted = all.clone();
    sorted.sort();
    assert_eq!(all, sorted, "default order is ContactId asc");

    for size in [
        None,
        Some(1),
        Some(7),
        Some(50),
        Some(240),
        Some(500),
        Some(9999),
    ] {
        let (got, pages) = collect(&sim, "/odata/v4/Contacts", size).await;
        assert_eq!(got, all, "page size {size:?}: no gap, no duplicate");
        let per = size.unwrap_or(50).min(500);
        assert_eq!(pages, 240usize.div_ceil(per), "page size {size:?}");
    }

    // an order with many ties, a filter, $count and $top across pages
    let base = "/odata/v4/Contacts?$orderby=LifecycleCode%20desc,LastName&$filter=OwnerId%20ne%20104&$count=true";
    let (full, _) = collect(&sim, base, Some(500)).await;
    let (paged, pages) = collect(&sim, base, Some(13)).await;
    assert_eq!(paged, full);
    assert_eq!(pages, full.len().div_ceil(13));
    let uniq: BTreeSet<&String> = paged.iter().collect();
    assert_eq!(uniq.len(), paged.len());
    let r = dir(
        &sim,
        "GET",
        base,
        ADMIN,
        &[("Prefer", "odata.maxpagesize=13")],
        None,
    )
    .await;
    assert_eq!(r.json()["@odata.count"], full.len());
    assert_eq!(r.header("preference-applied"), Some("odata.maxpagesize=13"));
    let next = r.json()["@odata.nextLink"].as_str().unwrap().to_string();
    assert!(
        next.starts_with(&format!("http://{addr}/odata/v4/Contacts?")),
        "absolute: {next}"
    );
    assert!(next.contains("$skiptoken="));
    assert!(next.contains("$count=true"));

    let (top, pages) = collect(
        &sim,
        "/odata/v4/Contacts?$top=30&$skip=5&$orderby=CreatedOn",
        Some(7),
    )
    .await;
    let (all_by_created, _) =
        collect(&sim, "/odata/v4/Contacts?$orderby=CreatedOn", Some(500)).await;
    assert_eq!(top, all_by_created[5..35]);
    assert_eq!(pages, 5, "7+7+7+7+2");
    let r = get(&sim, "/odata/v4/Contacts?$top=3", ADMIN).await;
    assert_eq!(ids(&r.json()).len(), 3);
    assert!(
        r.json().get("@odata.nextLink").is_none(),
        "$top within one page: no link"
    );
    let r = get(&sim, "/odata/v4/Contacts?$skip=1000", ADMIN).await;
    assert_eq!(ids(&r.json()).len(), 0);
    let r = get(&sim, "/odata/v4/Contacts?$count=true&$top=0", ADMIN).await;
    assert_eq!(r.json()["@odata.count"], 240);
    assert_eq!(ids(&r.json()).len(), 0);

    // the skiptoken is only valid with the same query
    let r = dir(
        &sim,
        "GET",
        "/odata/v4/Contacts?$filter=OwnerId%20eq%20101",
        ADMIN,
        &[("Prefer", "odata.maxpagesize=2")],
        None,
    )
    .await;
    let next = r.json()["@odata.nextLink"].as_str().unwrap().to_string();
    let token = next.split("$skiptoken=").nth(1).unwrap().to_string();
    let r = get(
        &sim,
        &format!("/odata/v4/Contacts?$filter=OwnerId%20eq%20102&$skiptoken={token}"),
        ADMIN,
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(code(&r), "0x8006088a");
    let r = get(
        &sim,
        &format!("/odata/v4/Contacts?$filter=OwnerId%20eq%20101&$skiptoken={token}&$skip=1"),
        ADMIN,
    )
    .await;
    assert_eq!(r.status, 400);
    // out-of-range page sizes: 0 is ignored, above 500 is 500
    let r = dir(
        &sim,
        "GET",
        "/odata/v4/Contacts",
        ADMIN,
        &[("Prefer", "odata.maxpagesize=0")],
        None,
    )
    .await;
    assert_eq!(ids(&r.json()).len(), 50);
    assert_eq!(r.header("preference-applied"), None);
    let r = dir(
        &sim,
        "GET",
        "/odata/v4/Contacts",
        ADMIN,
        &[("Prefer", "return=minimal, odata.maxpagesize=9999")],
        None,
    )
    .await;
    assert_eq!(ids(&r.json()).len(), 240);
    assert_eq!(
        r.header("preference-applied"),
        Some("odata.maxpagesize=500")
    );
    sim.shutdown().await;
}

/// Follows `@odata.nextLink` to the end; returns the ids in order and the page count.
async fn collect(sim: &Sim, first: &str, size: Option<usize>) -> (Vec<String>, usize) {
    let addr = sim.addr("directory");
    let prefix = format!("http://{addr}");
    let pref = size.map(|n| format!("odata.maxpagesize={n}"));
    let mut path = first.to_string();
    let mut out = Vec::new();
    let mut pages = 0;
    loop {
        let extra: Vec<(&str, &str)> = pref.iter().map(|p| ("Prefer", p.as_str())).collect();
        let r = dir(sim, "GET", &path, ADMIN, &extra, None).await;
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        pages += 1;
        let j = r.json();
        out.extend(ids(&j));
        match j.get("@odata.nextLink").and_then(Value::as_str) {
            Some(n) => {
                assert!(
                    ids(&j).len() == size.unwrap_or(50).min(500),
                    "a full page before a link"
                );
                path = n
                    .strip_prefix(&prefix)
                    .expect("absolute, same origin")
                    .to_string();
            }
            None => break,
        }
        assert!(pages < 1000, "runaway paging");
    }
    (out, pages)
}

#[tokio::test]
async fn directory_filters_case_and_literal_characters() {
    let sim = sim().await;
    // contains/startswith/endswith are case-sensitive; tolower/toupper fold
    assert_eq!(matches(&sim, "contains(FirstName,'Ada')").await, [ADA]);
    assert_eq!(matches(&sim, "contains(FirstName,'ADA')").await, [SHOUTING]);
    assert_eq!(
        matches(&sim, "contains(FirstName,'ada')").await,
        Vec::<String>::new()
    );
    assert_eq!(
        matches(&sim, "tolower(FirstName) eq 'ada'").await,
        [ADA, SHOUTING]
    );
    assert_eq!(
        matches(&sim, "contains(toupper(FirstName),'ADA')").await,
        [ADA, SHOUTING]
    );
    assert_eq!(
        matches(&sim, "FirstName eq 'ada'").await,
        Vec::<String>::new()
    );
    assert_eq!(matches(&sim, "startswith(LastName,'Love')").await, [ADA]);
    assert_eq!(matches(&sim, "endswith(LastName,'lace')").await, [ADA]);
    // %, _, ' and \ are ordinary characters
    assert_eq!(
        matches(&sim, "contains(FirstName,'%')").await,
        [SURE, FIFTY]
    );
    assert_eq!(
        matches(&sim, "contains(FirstName,'_')").await,
        [SURE, SNAKE]
    );
    assert_eq!(matches(&sim, "contains(FirstName,'%_')").await, [SURE]);
    assert_eq!(matches(&sim, "FirstName eq '100%_Sure'").await, [SURE]);
    assert_eq!(matches(&sim, "contains(LastName,'''')").await, [OBRIEN]);
    assert_eq!(matches(&sim, "LastName eq 'O''Brien'").await, [OBRIEN]);
    assert_eq!(matches(&sim, "contains(FirstName,'\\')").await, [BACKSLASH]);
    assert_eq!(
        matches(&sim, "FirstName eq 'Back\\slash'").await,
        [BACKSLASH]
    );
    assert_eq!(
        matches(&sim, "contains(FirstName,'*')").await,
        Vec::<String>::new()
    );
    // + is a literal plus whether raw or %2B
    let r = get(
        &sim,
        "/odata/v4/Contacts?$filter=Telephone1%20eq%20'+1-555-0101'",
        ADMIN,
    )
    .await;
    assert_eq!(ids(&r.json()), [ADA]);
    let r = get(
        &sim,
        "/odata/v4/Contacts?%24filter=Telephone1%20eq%20%27%2B1-555-0101%27",
        ADMIN,
    )
    .await;
    assert_eq!(ids(&r.json()), [ADA]);
    // the other literal types and operators
    assert_eq!(
        matches(&sim, &format!("ContactId eq {}", ADA.to_uppercase())).await,
        [ADA]
    );
    assert_eq!(
        matches(&sim, &format!("ContactId in ({ADA}, {GRACE})")).await,
        [ADA, GRACE]
    );
    assert_eq!(
        matches(&sim, "LastName in ('Hopper','Python')").await,
        [GRACE, SNAKE]
    );
    assert_eq!(
        matches(
            &sim,
            "LifecycleCode eq 100000009 and OwnerId eq 104 and startswith(EMailAddress1,'grace')"
        )
        .await,
        [GRACE]
    );
    assert_eq!(
        matches(&sim, "ModifiedOn eq 2025-06-01T12:00:00.1234567Z").await,
        [ADA]
    );
    assert_eq!(
        matches(
            &sim,
            "CreatedOn ge 2025-01-02T10:00:00Z and CreatedOn lt 2025-01-04T10:00:00Z and endswith(EMailAddress1,'.com')"
        )
        .await,
        [ADA, OBRIEN]
    );
    assert_eq!(
        matches(&sim, "CreatedOn eq 2025-01-02T11:00:00+01:00").await,
        [ADA]
    );
    let nulls = matches(
        &sim,
        "JobTitle eq null and startswith(EMailAddress1,'back')",
    )
    .await;
    assert_eq!(nulls, [BACKSLASH]);
    let all_null = count(&sim, "JobTitle eq null").await;
    let not_null = count(&sim, "JobTitle ne null").await;
    assert!(all_null > 0 && not_null > 0);
    assert_eq!(all_null + not_null, 240);
    // not binds to a parenthesised expression; three-valued on nulls
    let r = get(&sim, &q("not FirstName eq 'Ada'"), ADMIN).await;
    assert_eq!(r.status, 400);
    assert_eq!(count(&sim, "not (FirstName eq 'Ada')").await, 239);
    let no_a = count(&sim, "not contains(FirstName,'a')").await;
    let with_a = count(&sim, "contains(FirstName,'a')").await;
    let null_first = count(&sim, "FirstName eq null").await;
    assert!(null_first > 0, "the seed has contacts without a first name");
    assert!(no_a > 0 && with_a > 0);
    assert_eq!(no_a + with_a + null_first, 240);
    sim.shutdown().await;
}

#[tokio::test]
async fn directory_hostile_queries_are_400() {
    let sim = sim().await;
    let deep = format!("{}true{}", "(".repeat(300), ")".repeat(300));
    let long = vec!["OwnerId eq 1"; 2500].join(" or ");
    let hostile: Vec<String> = [
        "",
        "'",
        "(",
        ")",
        "contains(",
        "contains(FirstName,'a'))",
        "FirstName eq 'unterminated",
        "FirstName eq O'Brien",
        "FirstName eq \"Ada\"",
        "FirstName like 'A%'",
        "FirstName eq 'a' and",
        "and",
        "OwnerId eq 1.0",
        "OwnerId eq 0x65",
        "OwnerId eq 99999999999999999999999",
        "OwnerId eq null eq null",
        "OwnerId gt null",
        "LifecycleCode in ()",
        "LifecycleCode in ('a')",
        "ContactId eq 'x'",
        "ContactId eq 6f1d3c2a-8b4e-4f6a-9c1d-2e3f4a5b6c0",
        "CreatedOn gt '2025-01-01T00:00:00Z'",
        "CreatedOn gt 2025-01-01",
        "CreatedOn gt 2025-01-01T00:00:00",
        "CreatedOn gt 2025-13-01T00:00:00Z",
        "CreatedOn gt 2025-01-01T00:00:00.123456789Z",
        "tolower(OwnerId) eq 'x'",
        "substringof('a',FirstName)",
        "Contains(FirstName,'a')",
        "FirstName/Length eq 1",
        "$it eq 1",
        "FirstName eq 'a';DROP TABLE contacts",
        "\u{1}",
        "é",
        "OwnerId eq --1",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([deep, long])
    .collect();
    for f in &hostile {
        let r = get(&sim, &q(f), ADMIN).await;
        assert_eq!(r.status, 400, "{f:?}");
        assert_err(&r, 400, "0x8006088a");
    }
    // raw bytes a client may send: broken escapes, non-UTF-8, a NUL
    for raw in [
        "%",
        "%4",
        "%G0",
        "%C3%28",
        "%00",
        "FirstName%20eq%20%27%E2%82%27",
    ] {
        let r = get(&sim, &format!("/odata/v4/Contacts?$filter={raw}"), ADMIN).await;
        assert_err(&r, 400, "0x8006088a");
    }
    // the service still answers afterwards
    assert_eq!(
        get(&sim, "/odata/v4/Contacts?$top=1", ADMIN).await.status,
        200
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn directory_tenants_and_roles() {
    let sim = sim().await;
    let st = sim.state();
    // tenant isolation: the other tenant's keys are not found, the same address is fine
    let r = get(&sim, &format!("/odata/v4/Contacts({ADA})"), GLOBEX).await;
    assert_eq!(r.status, 404);
    assert_eq!(code(&r), "0x80040217");
    let r = get(&sim, &format!("/odata/v4/Contacts({HANK})"), ADMIN).await;
    assert_eq!(r.status, 404);
    let r = get(&sim, "/odata/v4/Contacts?$count=true", GLOBEX).await;
    assert_eq!(r.json()["@odata.count"], 6);
    let globex = ids(&r.json());
    assert!(globex.contains(&HANK.to_string()) && !globex.contains(&ADA.to_string()));
    let r = get(
        &sim,
        &q("EMailAddress1 eq 'ada.lovelace@example.com'"),
        GLOBEX,
    )
    .await;
    assert_eq!(
        ids(&r.json()).len(),
        1,
        "the same address lives in both tenants"
    );

    // a sales_rep sees only what it owns
    let r = get(&sim, "/odata/v4/Contacts?$count=true&$select=OwnerId", REP).await;
    let j = r.json();
    let n = j["@odata.count"].as_u64().unwrap();
    assert!(n > 0 && n < 240);
    let (mine, _) = {
        let mut out = Vec::new();
        let mut path = "/odata/v4/Contacts?$select=OwnerId".to_string();
        let prefix = format!("http://{}", sim.addr("directory"));
        loop {
            let j = get(&sim, &path, REP).await.json();
            for e in j["value"].as_array().unwrap() {
                assert_eq!(e["OwnerId"], 103);
                out.push(e["ContactId"].as_str().unwrap().to_string());
            }
            match j["@odata.nextLink"].as_str() {
                Some(l) => path = l.strip_prefix(&prefix).unwrap().to_string(),
                None => break,
            }
        }
        (out, ())
    };
    assert_eq!(mine.len() as u64, n);
    let r = get(&sim, &format!("/odata/v4/Contacts({ADA})"), REP).await;
    assert_eq!(r.status, 404, "owned by 101");
    assert_eq!(
        get(&sim, &format!("/odata/v4/Contacts({SURE})"), REP)
            .await
            .status,
        200
    );
    // ... and a PATCH of another's key is a 404, never an upsert over it
    let count = st.count(1, "directory");
    let r = dir(
        &sim,
        "PATCH",
        &format!("/odata/v4/Contacts({ADA})"),
        REP,
        &[],
        Some(json!({"JobTitle": "x", "EMailAddress1": "x@example.com"})),
    )
    .await;
    assert_eq!(r.status, 404);
    assert_eq!(st.count(1, "directory"), count);
    let j = get(&sim, &format!("/odata/v4/Contacts({ADA})"), ADMIN)
        .await
        .json();
    assert_eq!(j["JobTitle"], "Chief Analyst");
    let r = dir(
        &sim,
        "DELETE",
        &format!("/odata/v4/Contacts({ADA})"),
        REP,
        &[],
        None,
    )
    .await;
    assert_eq!(
        r.status, 403,
        "a sales_rep has no delete privilege on contacts"
    );
    // the role is read at once
    st.set_role(1, 103, "admin");
    assert_eq!(
        get(&sim, &format!("/odata/v4/Contacts({ADA})"), REP)
            .await
            .status,
        200
    );
    sim.shutdown().await;
}
