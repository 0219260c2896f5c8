//! Contract tests: real HTTP/1.1 against `legacy_sim::start(SimConfig::default())`,
//! one simulator per test, asserting each service's quirks and dialects exactly.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use legacy_sim::{start, Sim, SimConfig};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}), status {}: {:?}", self.status, self.body))
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A minimal HTTP/1.1 client: one request per connection.
async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: Option<&str>,
) -> Resp {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    match body {
        Some(b) => req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}",
            b.len()
        )),
        None if method == "POST" || method == "PUT" || method == "PATCH" => {
            req.push_str("Content-Length: 0\r\n\r\n")
        }
        None => req.push_str("\r\n"),
    }
    s.write_all(req.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.expect("read");
    let text = String::from_utf8(buf).expect("utf-8 response");
    let (head, rest) = text.split_once("\r\n\r\n").expect("header end");
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .expect("status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked {
        let mut out = String::new();
        let mut rest = rest;
        loop {
            let (size, after) = rest.split_once("\r\n").expect("chunk size");
            let n = usize::from_str_radix(size.trim(), 16).expect("hex size");
            if n == 0 {
                break;
            }
            out.push_str(&after[..n]);
            rest = &after[n + 2..];
        }
        out
    } else {
        rest.to_string()
    };
    Resp {
        status,
        headers,
        body,
    }
}

fn who(tenant: u32, user: u64) -> Vec<(&'static str, String)> {
    vec![
        ("X-PC-Tenant", tenant.to_string()),
        ("X-PC-User", user.to_string()),
    ]
}

async fn call(
    sim: &Sim,
    svc: &str,
    method: &str,
    path: &str,
    as_: (u32, u64),
    body: Option<Value>,
) -> Resp {
    let b = body.map(|v| v.to_string());
    http(
        sim.addr(svc),
        method,
        path,
        &who(as_.0, as_.1),
        b.as_deref(),
    )
    .await
}

async fn rpc(sim: &Sim, method: &str, as_: (u32, u64), params: Value) -> Value {
    let r = call(
        sim,
        "workflow",
        "POST",
        &format!("/rpc/{method}"),
        as_,
        Some(params),
    )
    .await;
    assert_eq!(r.status, 200, "workflow answers 200: {}", r.body);
    r.json()
}

const ADMIN: (u32, u64) = (1, 101);
const MANAGER: (u32, u64) = (1, 102);
const REP: (u32, u64) = (1, 103);
const READER: (u32, u64) = (1, 104);
const GLOBEX: (u32, u64) = (2, 201);

async fn sim() -> Sim {
    start(SimConfig::default()).await.expect("simulator starts")
}

#[tokio::test]
async fn missing_trust_headers_are_400_in_every_dialect() {
    let sim = sim().await;
    let r = http(sim.addr("crm-core"), "GET", "/api/v3/contacts/1", &[], None).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["code"], "VALIDATION");

    let only_tenant = [("X-PC-Tenant", "1".to_string())];
    let r = http(
        sim.addr("sales"),
        "GET",
        "/Sales/Deals/1",
        &only_tenant,
        None,
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["ErrorCode"], 400_001);
    assert!(
        r.json()["Message"].as_str().unwrap().contains("X-PC-User")
            || r.json()["Message"].as_str().unwrap().contains("x-pc-user")
    );

    let r = http(
        sim.addr("workflow"),
        "POST",
        "/rpc/Task.get",
        &[],
        Some(r#"{"taskId":1}"#),
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["success"], false);
    assert_eq!(r.json()["errorCode"], "VALIDATION_ERROR");

    let bad = [
        ("X-PC-Tenant", "acme".to_string()),
        ("X-PC-User", "101".to_string()),
    ];
    let r = http(
        sim.addr("engagements"),
        "GET",
        "/engagements/v1/engagements/1",
        &bad,
        None,
    )
    .await;
    assert_eq!(r.status, 400);
    let j = r.json();
    assert_eq!(j["status"], "error");
    assert_eq!(j["category"], "VALIDATION_ERROR");
    assert!(j["correlationId"].as_str().is_some_and(|c| !c.is_empty()));

    let r = http(sim.addr("audit"), "GET", "/audit/events", &[], None).await;
    assert_eq!(r.status, 400);
    assert!(r.header("content-type").unwrap().starts_with("text/plain"));
    assert!(
        serde_json::from_str::<Value>(&r.body).is_err(),
        "audit errors are plain text"
    );

    let r = http(
        sim.addr("iam"),
        "GET",
        "/iam/v2/users/101/permissions",
        &[],
        None,
    )
    .await;
    assert_eq!(r.status, 400);

    // the crm-core header check happens before anything else, even a bad id
    let r = http(
        sim.addr("crm-core"),
        "GET",
        "/api/v3/contacts/abc",
        &bad,
        None,
    )
    .await;
    assert_eq!(r.status, 400);
    sim.shutdown().await;
}

#[tokio::test]
async fn tenants_are_isolated_and_ids_overlap() {
    let sim = sim().await;
    let a = call(&sim, "crm-core", "GET", "/api/v3/contacts/1", ADMIN, None).await;
    let g = call(&sim, "crm-core", "GET", "/api/v3/contacts/1", GLOBEX, None).await;
    assert_eq!((a.status, g.status), (200, 200));
    assert_eq!(a.json()["firstName"], "Ada");
    assert_eq!(a.json()["emailAddress"], "ada.lovelace1@example.com");
    assert_eq!(g.json()["firstName"], "Hank");
    assert_eq!(g.json()["contactId"], 1);

    // tenant 1 has contact 42, tenant 2 does not
    let r = call(&sim, "crm-core", "GET", "/api/v3/contacts/42", GLOBEX, None).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"]["code"], "NOT_FOUND");
    let r = call(&sim, "sales", "GET", "/Sales/Deals/4000", GLOBEX, None).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["ErrorCode"], 404_001);
    let r = rpc(&sim, "Task.get", GLOBEX, json!({"taskId": 1000})).await;
    assert_eq!(r["errorCode"], "TASK_NOT_FOUND");
    let r = call(
        &sim,
        "engagements",
        "GET",
        "/engagements/v1/engagements/1000",
        GLOBEX,
        None,
    )
    .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["category"], "OBJECT_NOT_FOUND");

    // a user of tenant 1 acting in tenant 2 is unknown there
    let r = call(
        &sim,
        "crm-core",
        "GET",
        "/api/v3/contacts/1",
        (2, 101),
        None,
    )
    .await;
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["error"]["code"], "FORBIDDEN");

    assert_eq!(sim.state().count(1, "contacts"), 10_000);
    assert_eq!(sim.state().count(2, "contacts"), 5);
    assert_eq!(sim.state().count(1, "engagements"), 50_000);
    assert_eq!(sim.state().count(1, "audit"), 50_000);
    assert_eq!(sim.state().count(1, "pipelines"), 3);
    sim.shutdown().await;
}

#[tokio::test]
async fn contacts_create_patch_delete_and_validation() {
    let sim = sim().await;
    let body = json!({"firstName": "Lin", "lastName": "Ng", "emailAddress": "lin.ng@example.com", "companyId": 1, "lifecycleStage": 3});
    let r = call(
        &sim,
        "crm-core",
        "POST",
        "/api/v3/contacts",
        ADMIN,
        Some(body),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let c = r.json();
    assert_eq!(c["contactId"], 10_001);
    assert_eq!(c["ownerUserId"], 101);
    assert_eq!(c["jobTitle"], Value::Null);
    assert!(c["createdAt"].as_i64().unwrap() > 1_700_000_000_000);
    assert_eq!(sim.state().count(1, "contacts"), 10_001);

    let dup = json!({"emailAddress": "LIN.NG@Example.com"});
    let r = call(
        &sim,
        "crm-core",
        "POST",
        "/api/v3/contacts",
        ADMIN,
        Some(dup),
    )
    .await;
    assert_eq!(r.status, 409);
    assert_eq!(r.json()["error"]["code"], "DUPLICATE_EMAIL");
    assert!(r.json()["error"].get("fieldErrors").is_none());

    let r = call(
        &sim,
        "crm-core",
        "POST",
        "/api/v3/contacts",
        ADMIN,
        Some(json!({"firstName": "No"})),
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["code"], "VALIDATION");
    assert_eq!(r.json()["error"]["fieldErrors"][0]["field"], "emailAddress");

    let bad = json!({"emailAddress": "x@example.com", "lifecycleStage": 5, "companyId": 999_999});
    let r = call(
        &sim,
        "crm-core",
        "POST",
        "/api/v3/contacts",
        ADMIN,
        Some(bad),
    )
    .await;
    assert_eq!(r.status, 400);
    let fields: Vec<String> = r.json()["error"]["fieldErrors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap().to_string())
        .collect();
    assert!(
        fields.contains(&"lifecycleStage".to_string()) && fields.contains(&"companyId".to_string()),
        "{fields:?}"
    );

    // tenant 2 may reuse the email: uniqueness is per tenant
    let r = call(
        &sim,
        "crm-core",
        "POST",
        "/api/v3/contacts",
        GLOBEX,
        Some(json!({"emailAddress": "lin.ng@example.com"})),
    )
    .await;
    assert_eq!(r.status, 201);
    assert_eq!(r.json()["contactId"], 6);

    // JSON merge: absent unchanged, null cleared
    let r = call(
        &sim,
        "crm-core",
        "PATCH",
        "/api/v3/contacts/1",
        ADMIN,
        Some(json!({"jobTitle": null, "lastName": "King"})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let c = r.json();
    assert_eq!(c["jobTitle"], Value::Null);
    assert_eq!(c["lastName"], "King");
    assert_eq!(c["firstName"], "Ada");
    assert_eq!(c["companyId"], 1);
    let r = call(
        &sim,
        "crm-core",
        "PATCH",
        "/api/v3/contacts/1",
        ADMIN,
        Some(json!({"emailAddress": "grace.hopper2@example.com"})),
    )
    .await;
    assert_eq!(r.status, 409);

    let audit_before = sim.state().count(1, "audit");
    let r = call(
        &sim,
        "crm-core",
        "DELETE",
        "/api/v3/contacts/10001",
        ADMIN,
        None,
    )
    .await;
    assert_eq!(r.status, 204);
    assert!(r.body.is_empty());
    assert_eq!(sim.state().count(1, "audit"), audit_before + 1);
    let r = call(
        &sim,
        "crm-core",
        "GET",
        "/api/v3/contacts/10001",
        ADMIN,
        None,
    )
    .await;
    assert_eq!(r.status, 404);
    sim.shutdown().await;
}

#[tokio::test]
async fn companies_full_replace_with_row_version() {
    let sim = sim().await;
    let r = call(
        &sim,
        "crm-core",
        "PATCH",
        "/api/v3/companies/1",
        ADMIN,
        Some(json!({"city": "X"})),
    )
    .await;
    assert_eq!(r.status, 405);

    let cur = call(&sim, "crm-core", "GET", "/api/v3/companies/1", ADMIN, None)
        .await
        .json();
    assert_eq!(cur["companyName"], "Acme Corporation");
    assert_eq!(cur["rowVersion"], 1);

    let mut stale = cur.clone();
    stale["rowVersion"] = json!(0);
    let r = call(
        &sim,
        "crm-core",
        "PUT",
        "/api/v3/companies/1",
        ADMIN,
        Some(stale),
    )
    .await;
    assert_eq!(r.status, 409);
    assert_eq!(r.json()["error"]["code"], "VERSION_CONFLICT");

    let mut missing = cur.clone();
    missing.as_object_mut().unwrap().remove("rowVersion");
    let r = call(
        &sim,
        "crm-core",
        "PUT",
        "/api/v3/companies/1",
        ADMIN,
        Some(missing),
    )
    .await;
    assert_eq!(r.status, 409);
    assert_eq!(r.json()["error"]["code"], "VERSION_CONFLICT");

    let mut next = cur.clone();
    next["city"] = json!("Shelbyville");
    next.as_object_mut().unwrap().remove("phone"); // full replace: absent means null
    let r = call(
        &sim,
        "crm-core",
        "PUT",
        "/api/v3/companies/1",
        ADMIN,
        Some(next.clone()),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let c = r.json();
    assert_eq!(c["rowVersion"], 2);
    assert_eq!(c["city"], "Shelbyville");
    assert_eq!(c["phone"], Value::Null);
    assert_eq!(c["numEmployees"], 250);

    // the same (now stale) version again loses
    let r = call(
        &sim,
        "crm-core",
        "PUT",
        "/api/v3/companies/1",
        ADMIN,
        Some(next),
    )
    .await;
    assert_eq!(r.status, 409);

    let r = call(
        &sim,
        "crm-core",
        "POST",
        "/api/v3/companies",
        ADMIN,
        Some(json!({"companyName": "Newco", "countryCode": "fr"})),
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["fieldErrors"][0]["field"], "countryCode");
    let r = call(
        &sim,
        "crm-core",
        "POST",
        "/api/v3/companies",
        ADMIN,
        Some(json!({"companyName": "Newco", "countryCode": "FR"})),
    )
    .await;
    assert_eq!(r.status, 201);
    assert_eq!(r.json()["companyId"], 2001);
    assert_eq!(r.json()["rowVersion"], 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn query_offset_limit_total_and_window() {
    let sim = sim().await;
    let q = json!({"offset": 0, "limit": 5});
    let r = call(
        &sim,
        "crm-core",
        "POST",
        "/api/v3/contacts/query",
        ADMIN,
        Some(q),
    )
    .await;
    assert_eq!(r.status, 200);
    let j = r.json();
    assert_eq!(j["totalCount"], 10_000);
    let ids: Vec<i64> = j["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["contactId"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, vec![1, 2, 3, 4, 5], "default order contactId ASC");

    let q = json!({"where": [{"field": "ownerUserId", "operator": "=", "value": 102}],
                   "orderBy": [{"field": "createdAt", "dir": "DESC"}], "offset": 10, "limit": 200});
    let j = call(
        &sim,
        "crm-core",
        "POST",
        "/api/v3/contacts/query",
        ADMIN,
        Some(q),
    )
    .await
    .json();
    let recs = j["records"].as_array().unwrap();
    assert_eq!(recs.len(), 200);
    let total = j["totalCount"].as_u64().unwrap();
    assert!(total > 2000 && total < 5000, "{total}");
    assert!(recs.iter().all(|c| c["ownerUserId"] == 102));
    let created: Vec<i64> = recs
        .iter()
        .map(|c| c["createdAt"].as_i64().unwrap())
        .collect();
    assert!(created.windows(2).all(|w| w[0] >= w[1]));

    let q = json!({"where": [{"field": "lifecycleStage", "operator": "IN", "value": [3, 9]},
                             {"field": "jobTitle", "operator": "NOT_NULL"}], "limit": 200});
    let j = call(
        &sim,
        "crm-core",
        "POST",
        "/api/v3/contacts/query",
        ADMIN,
        Some(q),
    )
    .await
    .json();
    assert!(j["records"]
        .as_array()
        .unwrap()
        .iter()
        .all(
            |c| (c["lifecycleStage"] == 3 || c["lifecycleStage"] == 9) && !c["jobTitle"].is_null()
        ));

    for (q, field) in [
        (json!({"offset": 9_950, "limit": 100}), "offset"),
        (json!({"offset": 0, "limit": 201}), "limit"),
        (
            json!({"where": [{"field": "email", "operator": "=", "value": "a"}]}),
            "where[0].field",
        ),
        (
            json!({"where": [{"field": "lastName", "operator": "~", "value": "a"}]}),
            "where[0].operator",
        ),
    ] {
        let r = call(
            &sim,
            "crm-core",
            "POST",
            "/api/v3/contacts/query",
            ADMIN,
            Some(q),
        )
        .await;
        assert_eq!(r.status, 400, "{}", r.body);
        assert_eq!(r.json()["error"]["code"], "VALIDATION");
        assert_eq!(r.json()["error"]["fieldErrors"][0]["field"], field);
    }
    // the last allowed window
    let r = call(
        &sim,
        "crm-core",
        "POST",
        "/api/v3/contacts/query",
        ADMIN,
        Some(json!({"offset": 9_800, "limit": 200})),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["records"].as_array().unwrap().len(), 200);
    sim.shutdown().await;
}

#[tokio::test]
async fn like_is_case_insensitive_with_escapes() {
    let sim = sim().await;
    let q = |pattern: &str| json!({"where": [{"field": "companyName", "operator": "LIKE", "value": pattern}], "limit": 200});
    let j = call(
        &sim,
        "crm-core",
        "POST",
        "/api/v3/companies/query",
        ADMIN,
        Some(q("%\\_%")),
    )
    .await
    .json();
    assert_eq!(j["totalCount"], 1);
    assert_eq!(j["records"][0]["companyName"], "Fifty_Fifty Ltd");
    let j = call(
        &sim,
        "crm-core",
        "POST",
        "/api/v3/companies/query",
        ADMIN,
        Some(q("100\\%%")),
    )
    .await
    .json();
    assert_eq!(j["totalCount"], 1);
    assert_eq!(j["records"][0]["companyId"], 4);
    // unescaped wildcards match everything
    let j = call(
        &sim,
        "crm-core",
        "POST",
        "/api/v3/companies/query",
        ADMIN,
        Some(q("%_%")),
    )
    .await
    .json();
    assert_eq!(j["totalCount"], 2000);
    let j = call(
        &sim,
        "crm-core",
        "POST",
        "/api/v3/companies/query",
        ADMIN,
        Some(q("ACME CORP%")),
    )
    .await
    .json();
    assert_eq!(j["records"][0]["companyId"], 1);
    let r = call(
        &sim,
        "crm-core",
        "POST",
        "/api/v3/companies/query",
        ADMIN,
        Some(q("abc\\")),
    )
    .await;
    assert_eq!(r.status, 400);
    sim.shutdown().await;
}

#[tokio::test]
async fn sales_aspnet_dates_and_quirks() {
    let sim = sim().await;
    let r = call(&sim, "sales", "GET", "/Sales/Deals/1", ADMIN, None).await;
    assert_eq!(r.status, 200);
    assert!(
        r.body.contains(r#""Amount":12000.00"#),
        "two decimals: {}",
        r.body
    );
    let d = r.json();
    assert_eq!(d["CloseDate"], "/Date(1774915200000)/");
    assert_eq!(d["Status"], "Open");
    assert_eq!(d["ContactIds"], json!([1, 2]));
    assert!(d["Created"].as_str().unwrap().starts_with("/Date("));

    let body = json!({"DealName": "Big one", "Amount": 1234.5, "CurrencyCode": "EUR", "PipelineId": 2, "CloseDate": "/Date(1767225600000)/"});
    let r = call(&sim, "sales", "POST", "/Sales/Deals", ADMIN, Some(body)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains(r#""Amount":1234.50"#), "{}", r.body);
    let d = r.json();
    assert_eq!(d["DealId"], 5001);
    assert_eq!(d["StageId"], 7, "first stage of pipeline 2");
    assert_eq!(d["CloseDate"], "/Date(1767225600000)/");

    let r = call(
        &sim,
        "sales",
        "POST",
        "/Sales/Deals",
        ADMIN,
        Some(json!({"DealName": "x", "PipelineId": 99})),
    )
    .await;
    assert_eq!(r.status, 400);
    assert!((400_000..401_000).contains(&r.json()["ErrorCode"].as_i64().unwrap()));
    let r = call(
        &sim,
        "sales",
        "POST",
        "/Sales/Deals",
        ADMIN,
        Some(json!({"DealName": "x", "PipelineId": 1, "CloseDate": "2026-01-01"})),
    )
    .await;
    assert_eq!(r.status, 400);

    let r = call(
        &sim,
        "sales",
        "POST",
        "/Sales/Deals/5001/Update",
        ADMIN,
        Some(json!({"StageId": 8})),
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["ErrorCode"], 400_020);
    let r = call(
        &sim,
        "sales",
        "POST",
        "/Sales/Deals/5001/Update",
        ADMIN,
        Some(json!({"Amount": null, "DealName": "Bigger"})),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["Amount"], Value::Null);
    assert_eq!(r.json()["DealName"], "Bigger");

    let r = call(
        &sim,
        "sales",
        "POST",
        "/Sales/Deals/5001/MoveStage",
        ADMIN,
        Some(json!({"StageId": 3})),
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["ErrorCode"], 400_017);
    let r = call(
        &sim,
        "sales",
        "POST",
        "/Sales/Deals/5001/MoveStage",
        ADMIN,
        Some(json!({"StageId": 9})),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["Status"], "Won");
    let r = call(
        &sim,
        "sales",
        "POST",
        "/Sales/Deals/5001/MoveStage",
        ADMIN,
        Some(json!({"StageId": 10})),
    )
    .await;
    assert_eq!(r.json()["Status"], "Lost");

    let r = call(&sim, "sales", "DELETE", "/Sales/Deals/5001", ADMIN, None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), json!({"Deleted": true}));
    let r = call(&sim, "sales", "GET", "/Sales/Deals/5001", ADMIN, None).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["ErrorCode"], 404_001);

    let r = call(&sim, "sales", "GET", "/Sales/Pipelines", ADMIN, None).await;
    assert_eq!(r.status, 200);
    let ps = r.json();
    let ps = ps.as_array().expect("a bare array");
    assert_eq!(ps.len(), 3);
    assert_eq!(ps[0]["Name"], "Sales Pipeline");
    assert_eq!(ps[0]["Stages"][4]["StageType"], 1);
    let r = call(&sim, "sales", "GET", "/Sales/Pipelines/2", ADMIN, None).await;
    assert_eq!(r.json()["Stages"].as_array().unwrap().len(), 4);
    let r = call(&sim, "sales", "GET", "/Sales/Pipelines/9", ADMIN, None).await;
    assert_eq!(r.status, 404);
    sim.shutdown().await;
}

#[tokio::test]
async fn sales_search_pages() {
    let sim = sim().await;
    let r = call(
        &sim,
        "sales",
        "GET",
        "/Sales/Deals/Search?Page=2&PageSize=10",
        ADMIN,
        None,
    )
    .await;
    assert_eq!(r.status, 200);
    let j = r.json();
    assert_eq!(j["TotalCount"], 5000);
    assert_eq!(j["Page"], 2);
    assert_eq!(j["PageSize"], 10);
    let ids: Vec<i64> = j["Items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["DealId"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, (11..=20).collect::<Vec<_>>());

    let r = call(
        &sim,
        "sales",
        "GET",
        "/Sales/Deals/Search?PageSize=101",
        ADMIN,
        None,
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["ErrorCode"], 400_030);
    let r = call(
        &sim,
        "sales",
        "GET",
        "/Sales/Deals/Search?Page=0",
        ADMIN,
        None,
    )
    .await;
    assert_eq!(r.status, 400);

    let r = call(
        &sim,
        "sales",
        "GET",
        "/Sales/Deals/Search?PipelineId=1&Status=Won&SortBy=Amount&Desc=true&PageSize=100",
        ADMIN,
        None,
    )
    .await;
    let j = r.json();
    let items = j["Items"].as_array().unwrap();
    assert!(!items.is_empty());
    assert!(items
        .iter()
        .all(|d| d["PipelineId"] == 1 && d["Status"] == "Won" && d["StageId"] == 5));
    let amounts: Vec<f64> = items.iter().filter_map(|d| d["Amount"].as_f64()).collect();
    assert!(amounts.windows(2).all(|w| w[0] >= w[1]));

    let from = "/Date(1767225600000)/"; // 2026-01-01
    let path = format!(
        "/Sales/Deals/Search?CloseDateFrom={}&CloseDateTo=2026-01-31&PageSize=100",
        from.replace('/', "%2F")
            .replace('(', "%28")
            .replace(')', "%29")
    );
    let j = call(&sim, "sales", "GET", &path, ADMIN, None).await.json();
    assert!(j["TotalCount"].as_u64().unwrap() > 0);
    for d in j["Items"].as_array().unwrap() {
        let s = d["CloseDate"].as_str().unwrap();
        let ms: i64 = s
            .trim_start_matches("/Date(")
            .trim_end_matches(")/")
            .parse()
            .unwrap();
        assert!((1_767_225_600_000..1_769_904_000_000).contains(&ms), "{s}");
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn workflow_is_always_200_and_lists_without_total() {
    let sim = sim().await;
    let r = rpc(&sim, "Task.frobnicate", ADMIN, json!({})).await;
    assert_eq!(r["success"], false);
    assert_eq!(r["errorCode"], "VALIDATION_ERROR");

    let r = rpc(&sim, "Task.get", ADMIN, json!({"taskId": 999_999})).await;
    assert_eq!(r["errorCode"], "TASK_NOT_FOUND");

    let r = rpc(&sim, "Task.get", ADMIN, json!({"taskId": 1})).await;
    assert_eq!(r["success"], true);
    assert_eq!(r["result"]["dueDate"], "2026-02-01 17:00:00");
    assert_eq!(r["result"]["relatedType"], "CONTACT");
    assert_eq!(r["result"]["state"], "OPEN");

    let r = rpc(
        &sim,
        "Task.create",
        ADMIN,
        json!({"subject": "Ring", "dueDate": "2026-12-01T17:00:00Z"}),
    )
    .await;
    assert_eq!(r["errorCode"], "VALIDATION_ERROR");
    assert_eq!(r["errorDetails"][0]["field"], "dueDate");
    let r = rpc(&sim, "Task.create", ADMIN, json!({"subject": "Ring", "dueDate": "2026-12-01 17:00:00", "relatedType": "DEAL", "relatedId": 1})).await;
    assert_eq!(r["success"], true, "{r}");
    let id = r["result"]["taskId"].as_i64().unwrap();
    assert_eq!(id, 20_001);
    assert_eq!(r["result"]["priority"], 1);
    assert_eq!(r["result"]["completedDate"], Value::Null);

    let r = rpc(&sim, "Task.complete", ADMIN, json!({"taskId": id})).await;
    assert_eq!(r["result"]["state"], "DONE");
    let done = r["result"]["completedDate"].as_str().unwrap().to_string();
    assert_eq!(done.len(), 19);
    let r = rpc(&sim, "Task.reopen", ADMIN, json!({"taskId": id})).await;
    assert_eq!(r["result"]["state"], "OPEN");
    assert_eq!(r["result"]["completedDate"], Value::Null);
    let r = rpc(
        &sim,
        "Task.update",
        ADMIN,
        json!({"taskId": id, "state": "DONE"}),
    )
    .await;
    assert_eq!(r["errorCode"], "VALIDATION_ERROR");
    let r = rpc(&sim, "Task.delete", ADMIN, json!({"taskId": id})).await;
    assert_eq!(r["success"], true);
    let r = rpc(&sim, "Task.get", ADMIN, json!({"taskId": id})).await;
    assert_eq!(r["errorCode"], "TASK_NOT_FOUND");

    let r = rpc(&sim, "Task.list", ADMIN, json!({"count": 101})).await;
    assert_eq!(r["errorCode"], "VALIDATION_ERROR");
    let r = rpc(&sim, "Task.list", ADMIN, json!({"filter": {"state": "OPEN", "ownerId": 102}, "orderBy": "dueDate", "start": 0, "count": 10})).await;
    let res = &r["result"];
    assert_eq!(res["more"], true);
    assert!(res.get("total").is_none() && res.get("totalCount").is_none());
    let items = res["items"].as_array().unwrap();
    assert_eq!(items.len(), 10);
    assert!(items
        .iter()
        .all(|t| t["state"] == "OPEN" && t["ownerId"] == 102));
    let dues: Vec<&str> = items
        .iter()
        .map(|t| t["dueDate"].as_str().unwrap())
        .collect();
    assert!(dues.windows(2).all(|w| w[0] <= w[1]));
    let r = rpc(
        &sim,
        "Task.list",
        ADMIN,
        json!({"start": 19_995, "count": 10}),
    )
    .await;
    assert_eq!(r["result"]["items"].as_array().unwrap().len(), 5);
    assert_eq!(r["result"]["more"], false);
    sim.shutdown().await;
}

#[tokio::test]
async fn engagements_page_newest_first_with_offset_token() {
    let sim = sim().await;
    let p1 = call(
        &sim,
        "engagements",
        "GET",
        "/engagements/v1/engagements/paged?limit=250",
        ADMIN,
        None,
    )
    .await;
    assert_eq!(p1.status, 200);
    let p1 = p1.json();
    assert_eq!(p1["hasMore"], true);
    let tok = p1["offset"].as_u64().expect("numeric offset token");
    let p2 = call(
        &sim,
        "engagements",
        "GET",
        &format!("/engagements/v1/engagements/paged?limit=250&offset={tok}"),
        ADMIN,
        None,
    )
    .await
    .json();
    let all: Vec<&Value> = p1["results"]
        .as_array()
        .unwrap()
        .iter()
        .chain(p2["results"].as_array().unwrap())
        .collect();
    assert_eq!(all.len(), 500);
    let keys: Vec<(i64, i64)> = all
        .iter()
        .map(|e| {
            (
                e["engagement"]["timestamp"].as_i64().unwrap(),
                e["engagement"]["id"].as_i64().unwrap(),
            )
        })
        .collect();
    assert!(
        keys.windows(2).all(|w| w[0] > w[1]),
        "strictly newest first, no duplicates"
    );

    let r = call(
        &sim,
        "engagements",
        "GET",
        "/engagements/v1/engagements/paged?limit=251",
        ADMIN,
        None,
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["category"], "VALIDATION_ERROR");

    let j = call(
        &sim,
        "engagements",
        "GET",
        "/engagements/v1/engagements/paged?contactId=1&type=MEETING",
        ADMIN,
        None,
    )
    .await
    .json();
    let res = j["results"].as_array().unwrap();
    assert!(res.iter().any(|e| e["engagement"]["id"] == 4));
    assert!(res.iter().all(|e| e["engagement"]["type"] == "MEETING"));

    let r = call(
        &sim,
        "engagements",
        "GET",
        "/engagements/v1/engagements/1",
        ADMIN,
        None,
    )
    .await;
    let e = r.json();
    assert_eq!(e["engagement"]["type"], "NOTE");
    assert_eq!(
        e["metadata"]["body"],
        "Ada is evaluating the platform license."
    );
    assert_eq!(e["associations"]["contactIds"], json!([1]));

    let body = json!({"engagement": {"type": "CALL", "timestamp": 1_790_000_000_000i64},
                      "associations": {"contactIds": [3]},
                      "metadata": {"direction": "INBOUND", "durationMilliseconds": 60_000, "disposition": "BUSY", "body": "x"}});
    let r = call(
        &sim,
        "engagements",
        "POST",
        "/engagements/v1/engagements",
        ADMIN,
        Some(body),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let id = r.json()["engagement"]["id"].as_i64().unwrap();
    let r = call(
        &sim,
        "engagements",
        "PATCH",
        &format!("/engagements/v1/engagements/{id}"),
        ADMIN,
        Some(json!({"metadata": {"disposition": "CONNECTED"}})),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["metadata"]["disposition"], "CONNECTED");
    assert_eq!(r.json()["metadata"]["body"], "x");
    let r = call(
        &sim,
        "engagements",
        "PATCH",
        &format!("/engagements/v1/engagements/{id}"),
        ADMIN,
        Some(json!({"metadata": {"disposition": "MAYBE"}})),
    )
    .await;
    assert_eq!(r.status, 400);
    let r = call(
        &sim,
        "engagements",
        "DELETE",
        &format!("/engagements/v1/engagements/{id}"),
        ADMIN,
        None,
    )
    .await;
    assert_eq!(r.status, 204);
    let mut h = who(1, 101);
    h.push(("X-PC-Request-Id", "req-123".into()));
    let r = http(
        sim.addr("engagements"),
        "GET",
        &format!("/engagements/v1/engagements/{id}"),
        &h,
        None,
    )
    .await;
    assert_eq!(r.status, 404);
    assert_eq!(
        r.json(),
        json!({"status": "error", "message": format!("Engagement {id} does not exist"), "correlationId": "req-123", "category": "OBJECT_NOT_FOUND"})
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn audit_cursor_pages_and_plain_text_errors() {
    let sim = sim().await;
    let p1 = call(&sim, "audit", "GET", "/audit/events?size=100", ADMIN, None).await;
    assert_eq!(p1.status, 200);
    let p1 = p1.json();
    let cursor = p1["nextCursor"].as_str().expect("cursor").to_string();
    let p2 = call(
        &sim,
        "audit",
        "GET",
        &format!("/audit/events?size=100&cursor={cursor}"),
        ADMIN,
        None,
    )
    .await
    .json();
    let evs: Vec<&Value> = p1["events"]
        .as_array()
        .unwrap()
        .iter()
        .chain(p2["events"].as_array().unwrap())
        .collect();
    assert_eq!(evs.len(), 200);
    let times: Vec<i64> = evs
        .iter()
        .map(|e| e["occurredAt"].as_i64().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first");
    let ids: std::collections::HashSet<&str> =
        evs.iter().map(|e| e["eventId"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 200);
    assert!(ids
        .iter()
        .all(|i| i.len() == 36 && i.chars().filter(|c| *c == '-').count() == 4));

    let j = call(
        &sim,
        "audit",
        "GET",
        "/audit/events?entityType=contact&entityId=1&from=1735000000&to=1736000000",
        ADMIN,
        None,
    )
    .await
    .json();
    assert_eq!(j["nextCursor"], Value::Null);
    let e = &j["events"][0];
    assert_eq!(e["eventId"], "7f1c0d4e-2b9a-4c1e-9f3a-5d6e7f809a1b");
    assert_eq!(e["eventType"], "contact.created");
    assert_eq!(
        e["changes"]["firstName"],
        json!({"from": null, "to": "Ada"})
    );

    let r = call(
        &sim,
        "audit",
        "GET",
        "/audit/events/2a4e6c8d-0b1f-4d3e-8a5c-7e9f1a2b3c4d",
        ADMIN,
        None,
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["entityId"], 2);
    assert_eq!(r.json()["occurredAt"], 1_763_136_000);

    let r = call(
        &sim,
        "audit",
        "GET",
        "/audit/events/00000000-0000-4000-8000-000000000000",
        ADMIN,
        None,
    )
    .await;
    assert_eq!(r.status, 404);
    assert!(r.header("content-type").unwrap().starts_with("text/plain"));
    for q in [
        "size=101",
        "entityType=lead",
        "cursor=nonsense",
        "from=yesterday",
    ] {
        let r = call(
            &sim,
            "audit",
            "GET",
            &format!("/audit/events?{q}"),
            ADMIN,
            None,
        )
        .await;
        assert_eq!(r.status, 400, "{q}");
        assert!(r.header("content-type").unwrap().starts_with("text/plain"));
    }
    // writes are audited
    call(
        &sim,
        "crm-core",
        "PATCH",
        "/api/v3/contacts/2",
        ADMIN,
        Some(json!({"jobTitle": "CTO"})),
    )
    .await;
    let j = call(
        &sim,
        "audit",
        "GET",
        "/audit/events?entityType=contact&entityId=2&size=1",
        ADMIN,
        None,
    )
    .await
    .json();
    assert_eq!(j["events"][0]["eventType"], "contact.updated");
    assert_eq!(
        j["events"][0]["changes"]["jobTitle"],
        json!({"from": "VP Engineering", "to": "CTO"})
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn iam_answers_roles_and_404_for_non_members() {
    let sim = sim().await;
    let r = call(
        &sim,
        "iam",
        "GET",
        "/iam/v2/users/101/permissions",
        ADMIN,
        None,
    )
    .await;
    assert_eq!(r.status, 200);
    let j = r.json();
    assert_eq!(j["userId"], 101);
    assert_eq!(j["tenantId"], 1);
    assert_eq!(j["role"], "admin");
    assert_eq!(j["permissions"].as_array().unwrap().len(), 18);

    let j = call(
        &sim,
        "iam",
        "GET",
        "/iam/v2/users/104/permissions",
        READER,
        None,
    )
    .await
    .json();
    assert_eq!(j["role"], "read_only");
    assert_eq!(
        j["permissions"],
        json!([
            "contacts:view",
            "companies:view",
            "deals:view",
            "tasks:view",
            "notes:view",
            "activities:view"
        ])
    );
    let j = call(
        &sim,
        "iam",
        "GET",
        "/iam/v2/users/102/permissions",
        MANAGER,
        None,
    )
    .await
    .json();
    let perms: Vec<&str> = j["permissions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert!(
        perms.contains(&"tasks:delete")
            && perms.contains(&"notes:delete")
            && !perms.contains(&"deals:delete")
    );

    let r = call(
        &sim,
        "iam",
        "GET",
        "/iam/v2/users/201/permissions",
        ADMIN,
        None,
    )
    .await;
    assert_eq!(r.status, 404);
    let r = call(
        &sim,
        "iam",
        "GET",
        "/iam/v2/users/101/permissions",
        (2, 101),
        None,
    )
    .await;
    assert_eq!(r.status, 404);
    sim.shutdown().await;
}

#[tokio::test]
async fn sales_rep_sees_only_its_own_records() {
    let sim = sim().await;
    let r = call(&sim, "crm-core", "GET", "/api/v3/contacts/1", REP, None).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"]["code"], "NOT_FOUND");
    let r = call(&sim, "crm-core", "GET", "/api/v3/contacts/3", REP, None).await;
    assert_eq!(r.status, 200);
    let r = call(
        &sim,
        "crm-core",
        "PATCH",
        "/api/v3/contacts/1",
        REP,
        Some(json!({"jobTitle": "x"})),
    )
    .await;
    assert_eq!(r.status, 404);

    let j = call(
        &sim,
        "crm-core",
        "POST",
        "/api/v3/contacts/query",
        REP,
        Some(json!({"limit": 200})),
    )
    .await
    .json();
    let total = j["totalCount"].as_u64().unwrap();
    assert!(total > 2000 && total < 5000, "{total}");
    assert!(j["records"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["ownerUserId"] == 103));

    let r = call(&sim, "sales", "GET", "/Sales/Deals/1", REP, None).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["ErrorCode"], 404_001);
    let r = call(&sim, "sales", "GET", "/Sales/Deals/2", REP, None).await;
    assert_eq!(r.status, 200);
    let j = call(
        &sim,
        "sales",
        "GET",
        "/Sales/Deals/Search?PageSize=100",
        REP,
        None,
    )
    .await
    .json();
    assert!(j["Items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|d| d["OwnerId"] == 103));
    assert!(j["TotalCount"].as_u64().unwrap() < 5000);

    let r = rpc(&sim, "Task.get", REP, json!({"taskId": 1})).await;
    assert_eq!(r["errorCode"], "TASK_NOT_FOUND");
    let r = rpc(&sim, "Task.get", REP, json!({"taskId": 2})).await;
    assert_eq!(r["success"], true);
    let r = call(
        &sim,
        "engagements",
        "GET",
        "/engagements/v1/engagements/1",
        REP,
        None,
    )
    .await;
    assert_eq!(r.status, 404);
    let r = call(
        &sim,
        "engagements",
        "GET",
        "/engagements/v1/engagements/2",
        REP,
        None,
    )
    .await;
    assert_eq!(r.status, 200);
    // a rep may not delete companies at all
    let r = call(&sim, "crm-core", "DELETE", "/api/v3/companies/2", REP, None).await;
    assert_eq!(r.status, 403);
    sim.shutdown().await;
}

#[tokio::test]
async fn read_only_cannot_write_in_any_dialect() {
    let sim = sim().await;
    let r = call(
        &sim,
        "crm-core",
        "PATCH",
        "/api/v3/contacts/1",
        READER,
        Some(json!({"jobTitle": "x"})),
    )
    .await;
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["error"]["code"], "FORBIDDEN");
    let r = call(
        &sim,
        "sales",
        "POST",
        "/Sales/Deals",
        READER,
        Some(json!({"DealName": "x", "PipelineId": 1})),
    )
    .await;
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["ErrorCode"], 403_001);
    let r = call(
        &sim,
        "sales",
        "POST",
        "/Sales/Deals/1/MoveStage",
        READER,
        Some(json!({"StageId": 2})),
    )
    .await;
    assert_eq!(r.status, 403);
    let r = rpc(&sim, "Task.create", READER, json!({"subject": "x"})).await;
    assert_eq!(r["success"], false);
    assert_eq!(r["errorCode"], "PERMISSION_DENIED");
    let body = json!({"engagement": {"type": "NOTE"}, "metadata": {"body": "x"}});
    let r = call(
        &sim,
        "engagements",
        "POST",
        "/engagements/v1/engagements",
        READER,
        Some(body),
    )
    .await;
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["category"], "FORBIDDEN");
    // reading works
    let r = call(&sim, "crm-core", "GET", "/api/v3/contacts/1", READER, None).await;
    assert_eq!(r.status, 200);
    let r = call(&sim, "audit", "GET", "/audit/events?size=1", READER, None).await;
    assert_eq!(r.status, 200);
    // a sales manager may not delete contacts, but may delete tasks
    let r = call(
        &sim,
        "crm-core",
        "DELETE",
        "/api/v3/contacts/2",
        MANAGER,
        None,
    )
    .await;
    assert_eq!(r.status, 403);
    let r = rpc(&sim, "Task.delete", MANAGER, json!({"taskId": 3})).await;
    assert_eq!(r["success"], true);
    sim.shutdown().await;
}

#[tokio::test]
async fn set_role_takes_effect_at_once() {
    let sim = sim().await;
    let r = call(
        &sim,
        "crm-core",
        "PATCH",
        "/api/v3/contacts/1",
        READER,
        Some(json!({"jobTitle": "x"})),
    )
    .await;
    assert_eq!(r.status, 403);
    sim.state().set_role(1, 104, "admin");
    let r = call(
        &sim,
        "crm-core",
        "PATCH",
        "/api/v3/contacts/1",
        READER,
        Some(json!({"jobTitle": "x"})),
    )
    .await;
    assert_eq!(r.status, 200);
    let j = call(
        &sim,
        "iam",
        "GET",
        "/iam/v2/users/104/permissions",
        READER,
        None,
    )
    .await
    .json();
    assert_eq!(j["role"], "admin");
    sim.state().set_role(1, 101, "sales_rep");
    let r = call(&sim, "crm-core", "GET", "/api/v3/contacts/2", ADMIN, None).await;
    assert_eq!(r.status, 404, "101 now only sees what it owns");
    sim.shutdown().await;
}

#[tokio::test]
async fn stop_service_refuses_connections_and_calls_are_counted() {
    let sim = sim().await;
    let st = sim.state();
    assert_eq!(st.calls("sales"), 0);
    for _ in 0..3 {
        call(&sim, "sales", "GET", "/Sales/Pipelines", ADMIN, None).await;
    }
    http(sim.addr("sales"), "GET", "/Sales/Pipelines", &[], None).await;
    assert_eq!(st.calls("sales"), 4);
    assert_eq!(st.calls("crm-core"), 0);

    let addr = sim.addr("crm-core");
    // a pooled keep-alive connection opened before the stop is dropped too
    let mut idle = TcpStream::connect(addr).await.unwrap();
    sim.stop_service("crm-core").await;
    let err = TcpStream::connect(addr)
        .await
        .expect_err("connection refused");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
    let _ = idle
        .write_all(b"GET /api/v3/contacts/1 HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let mut buf = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(5), idle.read_to_end(&mut buf)).await;
    assert!(
        matches!(n, Ok(Ok(0)) | Ok(Err(_))),
        "the old connection is closed, not answered"
    );

    let r = call(&sim, "sales", "GET", "/Sales/Pipelines", ADMIN, None).await;
    assert_eq!(r.status, 200, "other services keep running");
    let names: Vec<&str> = sim.services().iter().map(|s| s.0).collect();
    assert_eq!(
        names,
        [
            "crm-core",
            "sales",
            "workflow",
            "engagements",
            "audit",
            "iam"
        ]
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn latency_is_applied_before_answering() {
    let sim = sim().await;
    sim.state().set_latency(Duration::from_millis(150));
    let t = Instant::now();
    let r = call(
        &sim,
        "iam",
        "GET",
        "/iam/v2/users/101/permissions",
        ADMIN,
        None,
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(t.elapsed() >= Duration::from_millis(150));
    sim.state().set_latency(Duration::ZERO);
    sim.shutdown().await;
}

#[tokio::test]
async fn issuer_serves_jwks_and_introspection() {
    let jwks = json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "k1", "x": "abc"}]});
    let iss = legacy_sim::issuer::start_issuer(jwks.clone())
        .await
        .unwrap();
    assert_eq!(
        iss.jwks_url(),
        format!("http://{}/.well-known/jwks.json", iss.addr())
    );
    assert_eq!(iss.fetches(), 0);
    let r = http(iss.addr(), "GET", "/.well-known/jwks.json", &[], None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("cache-control"), Some("max-age=300"));
    assert_eq!(r.json(), jwks);
    assert_eq!(iss.fetches(), 1);
    let rotated = json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "k2", "x": "def"}]});
    iss.set_jwks(rotated.clone());
    let r = http(iss.addr(), "GET", "/.well-known/jwks.json", &[], None).await;
    assert_eq!(r.json(), rotated);
    assert_eq!(iss.fetches(), 2);

    let form = |body: &str| {
        format!("POST /introspect HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}", body.len())
    };
    async fn raw(addr: SocketAddr, req: String) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out.split_once("\r\n\r\n").unwrap().1.to_string()
    }
    let body = raw(iss.addr(), form("token=opaque-1")).await;
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"active": false})
    );
    let answer = json!({"active": true, "sub": "101", "tid": 1, "scope": "contact.read", "client_id": "app", "exp": 4_000_000_000u64});
    iss.set_introspection("opaque-1", answer.clone());
    let body = raw(
        iss.addr(),
        form("token=opaque-1&token_type_hint=access_token"),
    )
    .await;
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap(), answer);
    let addr = iss.addr();
    iss.shutdown().await;
    assert!(TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn injected_failures_answer_500_in_each_dialect() {
    let sim = sim().await;
    let st = sim.state();
    for svc in [
        "crm-core",
        "sales",
        "workflow",
        "engagements",
        "audit",
        "iam",
    ] {
        st.fail_service(svc, true);
    }
    let r = call(&sim, "crm-core", "GET", "/api/v3/contacts/1", ADMIN, None).await;
    assert_eq!(r.status, 500);
    assert_eq!(r.json()["error"]["code"], "INTERNAL");
    let r = call(&sim, "sales", "GET", "/Sales/Deals/1", ADMIN, None).await;
    assert_eq!(r.status, 500);
    assert_eq!(r.json()["ErrorCode"], 500_001);
    let r = call(
        &sim,
        "workflow",
        "POST",
        "/rpc/Task.get",
        ADMIN,
        Some(json!({"taskId": 1})),
    )
    .await;
    assert_eq!(r.status, 500);
    assert_eq!(r.json()["errorCode"], "INTERNAL");
    let r = call(
        &sim,
        "engagements",
        "GET",
        "/engagements/v1/engagements/1",
        ADMIN,
        None,
    )
    .await;
    assert_eq!(r.status, 500);
    assert_eq!(r.json()["category"], "INTERNAL");
    let r = call(&sim, "audit", "GET", "/audit/events", ADMIN, None).await;
    assert_eq!(r.status, 500);
    assert!(r.header("content-type").unwrap().starts_with("text/plain"));
    let r = call(
        &sim,
        "iam",
        "GET",
        "/iam/v2/users/101/permissions",
        ADMIN,
        None,
    )
    .await;
    assert_eq!(r.status, 500);
    assert_eq!(st.calls("crm-core"), 1, "failed calls are counted");
    st.fail_service("crm-core", false);
    let r = call(&sim, "crm-core", "GET", "/api/v3/contacts/1", ADMIN, None).await;
    assert_eq!(r.status, 200);
    sim.shutdown().await;
}

#[tokio::test]
async fn fixed_base_port_lays_services_out_in_order() {
    // find a free block of six ports by binding the first one ephemerally
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = probe
        .local_addr()
        .unwrap()
        .port()
        .saturating_sub(6)
        .max(20_000);
    drop(probe);
    let cfg = SimConfig {
        base_port: base,
        ..SimConfig::default()
    };
    let Ok(sim) = start(cfg).await else {
        return; // a port of the block is taken on this machine: nothing to check
    };
    let ports: Vec<u16> = sim.services().iter().map(|(_, a)| a.port()).collect();
    assert_eq!(ports, (base..base + 6).collect::<Vec<_>>());
    assert_eq!(sim.addr("iam").port(), base + 5);
    sim.shutdown().await;
}

#[tokio::test]
async fn extra_instances_share_the_world_and_stop_alone() {
    let mut sim = sim().await;
    let st = sim.state();
    let first = sim.addr("crm-core");
    let second = sim.start_instance("crm-core", 0).await.unwrap();
    assert_ne!(first, second);
    assert_eq!(
        sim.addr("crm-core"),
        first,
        "addr keeps naming the first instance"
    );

    // a write through one instance is read through the other: one world
    let body = json!({"emailAddress": "twin@example.com", "lastName": "Twin"}).to_string();
    let r = http(
        second,
        "POST",
        "/api/v3/contacts",
        &who(1, 101),
        Some(&body),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.json()["contactId"].as_u64().unwrap();
    let r = http(
        first,
        "GET",
        &format!("/api/v3/contacts/{id}"),
        &who(1, 101),
        None,
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["lastName"], "Twin");
    assert_eq!(sim.calls_at(second), 1);
    assert_eq!(sim.calls_at(first), 1);
    assert_eq!(st.calls("crm-core"), 2, "both count towards the service");

    // stopping the second refuses its connections and drops its idle ones; the first
    // keeps answering
    let mut idle = TcpStream::connect(second).await.unwrap();
    sim.stop_instance(second).await;
    let err = TcpStream::connect(second).await.expect_err("refused");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
    let _ = idle
        .write_all(b"GET /api/v3/contacts/1 HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let mut buf = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(5), idle.read_to_end(&mut buf)).await;
    assert!(matches!(n, Ok(Ok(0)) | Ok(Err(_))), "closed, not answered");
    let r = http(first, "GET", "/api/v3/contacts/1", &who(1, 101), None).await;
    assert_eq!(r.status, 200);

    // back on the same address, with the world as it is and its count carrying on
    let back = sim.start_instance("crm-core", second.port()).await.unwrap();
    assert_eq!(back, second);
    let r = http(
        back,
        "GET",
        &format!("/api/v3/contacts/{id}"),
        &who(1, 101),
        None,
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(sim.calls_at(back), 2);
    assert_eq!(sim.calls_at(first), 2);

    // injected failures apply to every instance of the service
    st.fail_service("crm-core", true);
    let r = http(back, "GET", "/api/v3/contacts/1", &who(1, 101), None).await;
    assert_eq!(r.status, 500);
    assert_eq!(r.json()["error"]["code"], "INTERNAL");
    st.fail_service("crm-core", false);

    // an instance of another service, and the listing of services unchanged
    let iam2 = sim.start_instance("iam", 0).await.unwrap();
    let r = http(
        iam2,
        "GET",
        "/iam/v2/users/101/permissions",
        &who(1, 101),
        None,
    )
    .await;
    assert_eq!(r.json()["role"], "admin");
    assert_eq!(sim.calls_at(iam2), 1);
    let listed = sim.services();
    assert_eq!(listed.len(), 6);
    assert!(listed.contains(&("crm-core", first)) && !listed.iter().any(|s| s.1 == back));

    // stop_service stops every instance of it
    sim.stop_service("crm-core").await;
    for a in [first, back] {
        assert!(TcpStream::connect(a).await.is_err(), "{a} refused");
    }
    assert_eq!(
        sim.calls_at(first),
        2,
        "a stopped instance still reports its count"
    );
    sim.shutdown().await;
}
