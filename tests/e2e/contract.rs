//! Contract fixes: what the document says a field accepts is what the edge accepts.

use serde_json::{json, Value};

use crate::dialects::{ok, world};
use crate::harness::{Resp, World};

/// `PATCH {path}` setting only `lifecycle_stage`, as tenant 1's admin.
async fn set_stage(w: &World, path: &str, stage: Value) -> Resp {
    w.call(
        1,
        101,
        "PATCH",
        path,
        Some(json!({ "lifecycle_stage": stage })),
    )
    .await
}

/// A nullable enum takes `null` on create and PATCH (the directory's option set
/// `LifecycleCode` may be empty), and the record reads it back as `null`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nullable_enum_accepts_null_on_create_and_patch() {
    let w = world("directory", "directory").await;
    let page = w
        .call(
            1,
            101,
            "POST",
            "/v1/contacts/search",
            Some(json!({"limit": 1})),
        )
        .await;
    let owner = ok(&page, 200)["data"][0]["owner_id"].clone();
    let r = w
        .call(
            1,
            101,
            "POST",
            "/v1/contacts",
            Some(json!({
                "email": "null.stage@contract.example", "owner_id": owner, "lifecycle_stage": null
            })),
        )
        .await;
    let created = ok(&r, 201)["data"].clone();
    assert_eq!(created["lifecycle_stage"], Value::Null);
    let path = format!("/v1/contacts/{}", created["id"].as_str().expect("id"));
    for stage in [json!("lead"), Value::Null] {
        let r = set_stage(&w, &path, stage.clone()).await;
        assert_eq!(ok(&r, 200)["data"]["lifecycle_stage"], stage);
    }
    let got = ok(&w.call(1, 101, "GET", &path, None).await, 200);
    assert_eq!(got["data"]["lifecycle_stage"], Value::Null);
}

/// crm-core always holds a lifecycle stage: the document does not offer `null`, and a
/// `null` is refused by the edge at its pointer (before any upstream call), on create and
/// on PATCH alike, with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_field_the_document_does_not_make_nullable_refuses_null_at_its_pointer() {
    let w = World::start().await;
    let doc = w.call(1, 101, "GET", "/v1/openapi.json", None).await.json();
    let stage = &doc["components"]["schemas"]["Contact"]["properties"]["lifecycle_stage"];
    assert!(!stage.to_string().contains("null"), "{stage}");
    let create = &doc["components"]["schemas"]["ContactCreate"]["properties"]["lifecycle_stage"];
    assert!(
        create.is_object() && !create.to_string().contains("null"),
        "{create}"
    );

    let before = w.sim.state().count(1, "contacts");
    let r = w
        .call(
            1,
            101,
            "POST",
            "/v1/contacts",
            Some(json!({
                "email": "null.stage@contract.example", "lifecycle_stage": null
            })),
        )
        .await;
    let p = r.assert_problem(400, "invalid-request");
    assert_eq!(
        p["errors"],
        json!([{"pointer": "/lifecycle_stage", "detail": "cannot be null"}])
    );
    assert_eq!(w.sim.state().count(1, "contacts"), before);

    let path = format!("/v1/contacts/{}", w.id("con", 1, 1));
    let r = set_stage(&w, &path, Value::Null).await;
    let p = r.assert_problem(400, "invalid-request");
    assert_eq!(p["errors"][0]["pointer"], "/lifecycle_stage");
}
