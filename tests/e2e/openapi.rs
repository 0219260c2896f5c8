//! The OpenAPI document and the `/docs` page, as a client sees them: served without a
//! token, generated from the mappings the edge runs (every operation, its scope, its
//! schemas), per release, and equal to what `prospect-edge openapi` prints.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::{json, Value};

use crate::harness::{repo, World, V};
use prospect_edge::mapping::model::Plan;

const OLD: &str = "2026-05-01";

/// The plan of the shipped mappings, compiled the way the edge compiles it.
fn shipped(w: &World) -> Plan {
    let names: Vec<&str> = w.sim.services().iter().map(|(n, _)| *n).collect();
    prospect_edge::mapping::load_dir(
        &repo().join("mappings"),
        &prospect_edge::mapping::Context {
            upstream_names: names,
        },
    )
    .expect("shipped mappings compile")
}

/// (method, path, operationId, scope, permission) of every operation in the document.
fn operations(doc: &Value) -> BTreeSet<(String, String, String, String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for m in ["get", "post", "patch", "put", "delete"] {
            if let Some(op) = item.get(m) {
                out.insert((
                    m.to_string(),
                    path.clone(),
                    op["operationId"].as_str().unwrap_or("").to_string(),
                    op["security"][0]["oauth2"][0]
                        .as_str()
                        .unwrap_or("")
                        .to_string(),
                    op["x-required-permission"]
                        .as_str()
                        .unwrap_or("")
                        .to_string(),
                ));
            }
        }
    }
    out
}

/// What the compiled plan says the document must hold, operation by operation.
fn expected(plan: &Plan) -> BTreeSet<(String, String, String, String, String)> {
    let mut out = BTreeSet::new();
    let mut add = |m: &str, p: String, id: String, scope: &str, perm: String| {
        out.insert((m.to_string(), p, id, scope.to_string(), perm));
    };
    for r in plan.resources.values() {
        let n = &r.name;
        let write = r.write_scope.as_deref().unwrap_or(&r.read_scope);
        let fam = &r.permissions;
        if r.create.is_some() {
            add(
                "post",
                format!("/v1/{n}"),
                format!("{n}.create"),
                write,
                format!("{fam}:edit"),
            );
        }
        if r.search.is_some() {
            add(
                "post",
                format!("/v1/{n}/search"),
                format!("{n}.search"),
                &r.read_scope,
                format!("{fam}:view"),
            );
        }
        if r.get.is_some() {
            add(
                "get",
                format!("/v1/{n}/{{id}}"),
                format!("{n}.get"),
                &r.read_scope,
                format!("{fam}:view"),
            );
        }
        if r.update.is_some() {
            add(
                "patch",
                format!("/v1/{n}/{{id}}"),
                format!("{n}.update"),
                write,
                format!("{fam}:edit"),
            );
        }
        if r.delete.is_some() {
            add(
                "delete",
                format!("/v1/{n}/{{id}}"),
                format!("{n}.delete"),
                write,
                format!("{fam}:delete"),
            );
        }
        for a in r.actions.values() {
            add(
                "post",
                format!("/v1/{n}/{{id}}/{}", a.name),
                format!("{n}.{}", a.name),
                write,
                a.permission.clone(),
            );
        }
    }
    out
}

fn op(
    m: &str,
    p: &str,
    id: &str,
    scope: &str,
    perm: &str,
) -> (String, String, String, String, String) {
    (
        m.to_string(),
        p.to_string(),
        id.to_string(),
        scope.to_string(),
        perm.to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_serves_without_a_token_and_lists_every_operation_with_its_scope() {
    let w = World::start().await;
    let r = w.raw("GET", "/v1/openapi.json", &[], None).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("version"), Some(V));
    assert_eq!(r.header("trace-id").map(str::len), Some(32));
    let doc = r.json();
    assert_eq!(doc["openapi"], "3.1.0");
    // A package version for generated clients; the release itself in `x-api-version`.
    assert_eq!(doc["info"]["version"], "2026.11.1");
    assert_eq!(doc["info"]["x-api-version"], V);
    assert_eq!(doc["info"]["x-current-version"], V);
    assert_eq!(doc["info"]["x-supported-versions"], json!([OLD, V]));

    // Every operation of every shipped resource, with the plan's scope and permission.
    let plan = shipped(&w);
    let got = operations(&doc);
    assert_eq!(got, expected(&plan));
    // And, spelled out, the ones the contract names (§8).
    for want in [
        op(
            "post",
            "/v1/contacts",
            "contacts.create",
            "contact.write",
            "contacts:edit",
        ),
        op(
            "post",
            "/v1/contacts/search",
            "contacts.search",
            "contact.read",
            "contacts:view",
        ),
        op(
            "get",
            "/v1/contacts/{id}",
            "contacts.get",
            "contact.read",
            "contacts:view",
        ),
        op(
            "patch",
            "/v1/contacts/{id}",
            "contacts.update",
            "contact.write",
            "contacts:edit",
        ),
        op(
            "delete",
            "/v1/contacts/{id}",
            "contacts.delete",
            "contact.write",
            "contacts:delete",
        ),
        op(
            "post",
            "/v1/companies",
            "companies.create",
            "company.write",
            "companies:edit",
        ),
        op(
            "post",
            "/v1/deals/{id}/stage",
            "deals.stage",
            "deal.write",
            "deals:move_stage",
        ),
        op(
            "get",
            "/v1/pipelines/{id}",
            "pipelines.get",
            "deal.read",
            "deals:view",
        ),
        op(
            "post",
            "/v1/pipelines/search",
            "pipelines.search",
            "deal.read",
            "deals:view",
        ),
        op(
            "post",
            "/v1/tasks/{id}/complete",
            "tasks.complete",
            "task.write",
            "tasks:edit",
        ),
        op(
            "post",
            "/v1/tasks/{id}/reopen",
            "tasks.reopen",
            "task.write",
            "tasks:edit",
        ),
        op(
            "post",
            "/v1/notes/search",
            "notes.search",
            "note.read",
            "notes:view",
        ),
    ] {
        assert!(got.contains(&want), "missing {want:?}");
    }
    // Pipelines are read only: no create, update or delete.
    assert!(doc["paths"].get("/v1/pipelines").is_none());
    assert_eq!(
        doc["paths"]["/v1/pipelines/{id}"]
            .as_object()
            .map(|o| o.keys().cloned().collect::<Vec<_>>()),
        Some(vec!["get".to_string(), "parameters".to_string()])
    );

    // The OAuth 2.0 scheme declares every scope an operation uses, in both flows.
    let scheme = &doc["components"]["securitySchemes"]["oauth2"];
    assert_eq!(scheme["type"], "oauth2");
    let cc = &scheme["flows"]["clientCredentials"];
    let ac = &scheme["flows"]["authorizationCode"];
    assert_eq!(
        cc["tokenUrl"],
        "https://issuer.demo.prospect-edge.invalid/oauth2/token"
    );
    assert_eq!(
        ac["authorizationUrl"],
        "https://issuer.demo.prospect-edge.invalid/oauth2/authorize"
    );
    let declared: BTreeSet<&str> = cc["scopes"]
        .as_object()
        .expect("scopes")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        declared,
        BTreeSet::from([
            "activity.read",
            "activity.write",
            "company.read",
            "company.write",
            "contact.read",
            "contact.write",
            "deal.read",
            "deal.write",
            "note.read",
            "note.write",
            "task.read",
            "task.write"
        ])
    );
    assert_eq!(ac["scopes"], cc["scopes"]);
    assert_eq!(
        cc["scopes"]["deal.read"],
        "Read and search deals and pipelines"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_carry_their_headers_bodies_and_problems() {
    let w = World::start().await;
    let doc = w.raw("GET", "/v1/openapi.json", &[], None).await.json();
    let create = &doc["paths"]["/v1/contacts"]["post"];
    assert_eq!(
        create["parameters"],
        json!([
            {"$ref": "#/components/parameters/Version"},
            {"$ref": "#/components/parameters/Idempotency-Key"}
        ])
    );
    assert_eq!(
        doc["paths"]["/v1/contacts/{id}"]["get"]["parameters"],
        json!([{"$ref": "#/components/parameters/Version"}])
    );
    // One shared schema for the header (not one enum per operation in generated clients).
    assert_eq!(
        doc["components"]["parameters"]["Version"]["schema"],
        json!({"$ref": "#/components/schemas/ApiVersion"})
    );
    assert_eq!(
        doc["components"]["schemas"]["ApiVersion"]["enum"],
        json!([V])
    );
    assert_eq!(doc["components"]["parameters"]["Version"]["required"], true);
    let statuses: Vec<&String> = create["responses"]
        .as_object()
        .expect("responses")
        .keys()
        .collect();
    assert_eq!(
        statuses,
        [
            "201", "400", "401", "403", "404", "408", "409", "413", "415", "422", "429", "431",
            "500", "502", "503", "504"
        ]
    );
    let get_statuses: Vec<&String> = doc["paths"]["/v1/contacts/{id}"]["get"]["responses"]
        .as_object()
        .expect("responses")
        .keys()
        .collect();
    assert_eq!(
        get_statuses,
        ["200", "400", "401", "403", "404", "408", "429", "431", "500", "502", "503", "504"]
    );
    let created = &create["responses"]["201"];
    let headers: Vec<&String> = created["headers"]
        .as_object()
        .expect("headers")
        .keys()
        .collect();
    assert_eq!(
        headers,
        [
            "Trace-Id",
            "Version",
            "RateLimit",
            "RateLimit-Policy",
            "Location",
            "Idempotent-Replayed"
        ]
    );
    assert_eq!(created["headers"]["Location"]["required"], true);
    assert_eq!(
        created["headers"]["Location"]["schema"]["pattern"],
        "^/v1/contacts/con_[A-Za-z0-9_-]+$"
    );
    assert_eq!(
        created["content"]["application/json"]["schema"],
        json!({"$ref": "#/components/schemas/ContactResponse"})
    );
    assert_eq!(
        created["links"]["GetContact"],
        json!({"operationId": "contacts.get", "parameters": {"id": "$response.body#/data/id"}})
    );
    assert_eq!(
        create["requestBody"]["content"]["application/json"]["schema"],
        json!({"$ref": "#/components/schemas/ContactCreate"})
    );

    // Problems: application/problem+json, one schema per slug with its type URL and title.
    let p403 = &doc["components"]["responses"]["Problem403"];
    assert_eq!(
        p403["content"]["application/problem+json"]["schema"],
        json!({"oneOf": [
            {"$ref": "#/components/schemas/Problem.insufficient-scope"},
            {"$ref": "#/components/schemas/Problem.permission-denied"}
        ]})
    );
    let scope = &doc["components"]["schemas"]["Problem.insufficient-scope"];
    assert_eq!(
        scope["properties"]["type"]["const"],
        "https://papi.trendev.in/problems/insufficient-scope"
    );
    assert_eq!(scope["properties"]["status"]["const"], 403);
    assert_eq!(
        scope["required"],
        json!([
            "type",
            "title",
            "status",
            "detail",
            "instance",
            "trace_id",
            "required_scope"
        ])
    );
    assert_eq!(
        doc["components"]["responses"]["Problem401"]["headers"]["WWW-Authenticate"]["required"],
        true
    );
    let slugs = doc["components"]["schemas"]
        .as_object()
        .expect("schemas")
        .keys()
        .filter(|k| k.starts_with("Problem."))
        .count();
    assert_eq!(slugs, 23);

    // The search body: per-field operators, limits, and the page envelope.
    let s = &doc["components"]["schemas"];
    let email: Vec<&Value> = s["ContactFilter"]["oneOf"]
        .as_array()
        .expect("variants")
        .iter()
        .filter_map(|v| v["$ref"].as_str())
        .map(|r| &s[r.trim_start_matches("#/components/schemas/")])
        .filter(|v| v["properties"]["field"]["const"] == "email")
        .collect();
    assert_eq!(
        email
            .iter()
            .map(|v| v["properties"]["operator"].clone())
            .collect::<Vec<_>>(),
        [
            json!({"type": "string", "const": "eq"}),
            json!({"type": "string", "const": "contains"}),
            json!({"type": "string", "const": "has_value"}),
        ]
    );
    assert_eq!(s["ContactSearch"]["properties"]["filters"]["maxItems"], 18);
    assert_eq!(
        s["ContactSearch"]["properties"]["limit"],
        json!({"type": ["integer", "null"], "minimum": 1, "maximum": 100,
               "description": "Records per page; absent or null: 25."})
    );
    assert_eq!(
        s["ContactPage"]["properties"]["meta"]["required"],
        json!(["cursor", "total"])
    );
    assert_eq!(
        s["TaskPage"]["properties"]["meta"]["required"],
        json!(["cursor"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_schemas_match_what_the_edge_answers() {
    let w = World::start().await;
    let doc = w.raw("GET", "/v1/openapi.json", &[], None).await.json();
    let s = &doc["components"]["schemas"];
    let cases = [
        ("Contact", format!("/v1/contacts/{}", w.id("con", 1, 1))),
        ("Deal", format!("/v1/deals/{}", w.id("deal", 1, 3))),
        ("Pipeline", format!("/v1/pipelines/{}", w.id("pipe", 1, 1))),
        ("Task", format!("/v1/tasks/{}", w.id("task", 1, 3))),
    ];
    for (schema, path) in cases {
        let r = w.call(1, 101, "GET", &path, None).await;
        assert_eq!(
            r.status,
            200,
            "{path}: {}",
            String::from_utf8_lossy(&r.body)
        );
        let data = &r.json()["data"];
        let keys: Vec<Value> = data
            .as_object()
            .expect("record")
            .keys()
            .map(|k| Value::from(k.as_str()))
            .collect();
        // Every member, in order, and nothing else.
        assert_eq!(
            s[schema]["required"],
            Value::Array(keys.clone()),
            "{schema}"
        );
        // Open for members a later release adds (docs/versioning.md).
        assert!(s[schema].get("additionalProperties").is_none(), "{schema}");
        let props: Vec<Value> = s[schema]["properties"]
            .as_object()
            .expect("properties")
            .keys()
            .map(|k| Value::from(k.as_str()))
            .collect();
        assert_eq!(props, keys, "{schema}");
    }
    // Deal 3 has no amount: the schema says an object or null, and so does the answer.
    assert_eq!(
        s["Deal"]["properties"]["amount"]["type"],
        json!(["object", "null"])
    );
    assert_eq!(
        s["Deal"]["properties"]["amount"]["required"],
        json!(["value", "currency"])
    );
    assert_eq!(s["Deal"]["properties"]["status"]["readOnly"], true);
    // Known values, or any string a later release adds.
    assert_eq!(
        s["Deal"]["properties"]["status"]["anyOf"][0]["enum"],
        json!(["open", "won", "lost"])
    );
    assert_eq!(
        s["Deal"]["properties"]["status"]["anyOf"][1]["type"],
        "string"
    );
    assert_eq!(
        s["DealCreate"]["additionalProperties"], false,
        "requests stay strict"
    );
    assert_eq!(
        s["Contact"]["properties"]["updated_at"],
        json!({
            "type": "string", "format": "date-time",
            "description": "RFC 3339, UTC with milliseconds in responses.",
            "examples": ["2026-11-28T09:30:00.000Z"],
            "readOnly": true,
        })
    );
    assert_eq!(s["DealCreate"]["required"], json!(["name", "pipeline_id"]));
    // A request default is said in words: a `default` makes generated clients require it.
    assert!(s["TaskCreate"]["properties"]["priority"]
        .get("default")
        .is_none());
    assert!(s["TaskCreate"]["properties"]["priority"]["description"]
        .as_str()
        .is_some_and(|d| d.contains("Default: `normal`.")));
    assert_eq!(s["DealStageInput"]["required"], json!(["stage_id"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_release_has_its_document_and_an_unknown_one_is_a_problem() {
    let w = World::start().await;
    let r = w
        .raw("GET", &format!("/v1/openapi.json?version={OLD}"), &[], None)
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("version"), Some(OLD));
    let doc = r.json();
    assert_eq!(doc["info"]["version"], "2026.5.1");
    assert_eq!(doc["info"]["x-api-version"], OLD);
    assert_eq!(doc["info"]["x-deprecated"], true);
    assert_eq!(doc["info"]["x-sunset"], "2027-05-01");
    assert_eq!(
        doc["components"]["schemas"]["ApiVersion"]["enum"],
        json!([OLD])
    );
    assert_eq!(
        doc["components"]["headers"]["Deprecation"]["required"],
        true
    );
    assert_eq!(doc["components"]["headers"]["Sunset"]["required"], true);
    let current = w.raw("GET", "/v1/openapi.json", &[], None).await.json();
    // The current release's answers carry no Deprecation/Sunset: no such components.
    assert!(current["components"]["headers"]["RateLimit"].is_object());
    assert!(current["components"]["headers"]
        .get("Deprecation")
        .is_none());
    assert!(current["components"]["headers"].get("Sunset").is_none());
    assert_eq!(operations(&doc), operations(&current));

    // A bearer token is not needed, and a bad one does not matter either.
    let r = w
        .raw(
            "GET",
            "/v1/openapi.json",
            &[
                ("authorization", "Bearer not.a.jwt"),
                ("version", "1999-01-01"),
            ],
            None,
        )
        .await;
    assert_eq!(r.status, 200);

    for bad in ["2020-01-01", "", "latest", "2026-11-01%00"] {
        let r = w
            .raw("GET", &format!("/v1/openapi.json?version={bad}"), &[], None)
            .await;
        let p = r.assert_problem(400, "unsupported-version");
        assert_eq!(p["supported_versions"], json!([OLD, V]));
        assert_eq!(p["instance"], "/v1/openapi.json");
    }
    let r = w.raw("POST", "/v1/openapi.json", &[], None).await;
    r.assert_problem(405, "method-not-allowed");
    assert_eq!(r.header("allow"), Some("GET, HEAD"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_served_document_is_what_the_cli_prints() {
    let w = World::start().await;
    let conf = w.edge.dir.path().join("edge.yaml");
    for v in [OLD, V] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_prospect-edge"))
            .args(["openapi", "-c"])
            .arg(&conf)
            .args(["--version", v])
            .output()
            .expect("run prospect-edge openapi");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let printed: Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
        let served = w
            .raw("GET", &format!("/v1/openapi.json?version={v}"), &[], None)
            .await
            .json();
        assert_eq!(printed, served, "{v}");
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_prospect-edge"))
        .args(["openapi", "-c"])
        .arg(&conf)
        .arg("--list-versions")
        .output()
        .expect("run prospect-edge openapi");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("{OLD}\n{V}\n")
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_prospect-edge"))
        .args(["openapi", "-c"])
        .arg(&conf)
        .args(["--version", "2020-01-01"])
        .output()
        .expect("run prospect-edge openapi");
    assert!(!out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "unsupported version `2020-01-01` (supported: 2026-05-01, 2026-11-01)\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_field_added_to_a_mapping_appears_in_the_document() {
    let w = World::start_with(|dir: &Path| {
        let path = dir.join("contacts.yaml");
        let text = std::fs::read_to_string(&path).expect("read");
        let text = text.replace(
            "  phone: { from: phoneNumber, nullable: true }\n",
            "  phone: { from: phoneNumber, nullable: true }\n  \
             nickname: { description: What friends call them., from: nickName, nullable: true, filter: [eq] }\n",
        );
        std::fs::write(&path, text).expect("write");
    })
    .await;
    let doc = w.raw("GET", "/v1/openapi.json", &[], None).await.json();
    let s = &doc["components"]["schemas"];
    assert_eq!(
        s["Contact"]["properties"]["nickname"],
        json!({"type": ["string", "null"], "description": "What friends call them."})
    );
    assert_eq!(
        s["ContactUpdate"]["properties"]["nickname"],
        json!({"type": ["string", "null"], "description": "What friends call them."})
    );
    assert!(s["ContactFilter"]["oneOf"]
        .as_array()
        .expect("variants")
        .iter()
        .any(|v| v["$ref"] == "#/components/schemas/ContactFilterNicknameEq"));
    assert_eq!(
        s["ContactFilterNicknameEq"]["properties"]["field"]["const"],
        "nickname"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_docs_page_and_its_assets_are_served_by_the_edge() {
    let w = World::start().await;
    let r = w.raw("GET", "/docs", &[], None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(
        r.header("content-security-policy"),
        Some(prospect_edge::openapi::docs::CSP)
    );
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    let html = String::from_utf8_lossy(&r.body);
    assert!(
        html.contains(r#"<script src="/docs/docs.js" defer></script>"#),
        "{html}"
    );
    assert!(html.contains(r#"<link rel="stylesheet" href="/docs/docs.css">"#));
    // Nothing is fetched from anywhere but the edge itself.
    assert!(!html.contains("http://") && !html.contains("https://"));

    let js = w.raw("GET", "/docs/docs.js", &[], None).await;
    assert_eq!(js.status, 200);
    assert_eq!(
        js.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
    let js_text = String::from_utf8_lossy(&js.body);
    assert!(js_text.contains(r#""/v1/openapi.json""#));
    assert!(js_text.contains("Try it"));
    assert!(!js_text.contains("http://") && !js_text.contains("https://"));
    let css = w.raw("GET", "/docs/docs.css", &[], None).await;
    assert_eq!(css.status, 200);
    assert_eq!(css.header("content-type"), Some("text/css; charset=utf-8"));
    assert!(!css.body.is_empty());

    let head = w.raw("HEAD", "/docs", &[], None).await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    w.raw("GET", "/docs/missing.js", &[], None)
        .await
        .assert_problem(404, "not-found");
    let post = w.raw("POST", "/docs", &[], None).await;
    post.assert_problem(405, "method-not-allowed");
    assert_eq!(post.header("allow"), Some("GET, HEAD"));
}
