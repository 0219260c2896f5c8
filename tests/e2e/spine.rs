//! The first slice through the edge: identity from a verified token, trust headers set only
//! by the edge, the data envelope, problems for every failure, and `check`.

use crate::harness::{repo, tempdir, World, V};
use prospect_edge::token::Mint;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_token_gets_the_contact_in_public_shape() {
    let w = World::start().await;
    let id = w.id("con", 1, 1);
    let r = w
        .call(1, 101, "GET", &format!("/v1/contacts/{id}"), None)
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("version"), Some(V));
    assert_eq!(r.header("trace-id").map(str::len), Some(32));
    let d = &r.json()["data"];
    assert_eq!(d["id"], id.as_str());
    assert!(d["id"]
        .as_str()
        .is_some_and(|s| s.starts_with("con_") && s.len() <= 64));
    assert_eq!(d["first_name"], "Ada");
    assert_eq!(d["last_name"], "Lovelace");
    assert_eq!(d["email"], "ada.lovelace1@example.com");
    assert_eq!(d["job_title"], "Chief Analyst");
    assert_eq!(d["lifecycle_stage"], "lead");
    assert_eq!(d["company_id"], w.id("cmp", 1, 1).as_str());
    assert_eq!(d["owner_id"], w.id("usr", 1, 101).as_str());
    assert_eq!(d["created_at"], "2025-01-02T10:00:00.000Z");
    assert_eq!(d["updated_at"], "2025-06-01T12:00:00.000Z");
    // Nothing of the upstream's own vocabulary leaks.
    let keys: Vec<&String> = d.as_object().expect("object").keys().collect();
    assert_eq!(
        keys,
        [
            "id",
            "first_name",
            "last_name",
            "email",
            "phone",
            "job_title",
            "company_id",
            "owner_id",
            "lifecycle_stage",
            "created_at",
            "updated_at"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_expired_and_foreign_tokens_are_401_with_a_challenge() {
    let w = World::start().await;
    let path = format!("/v1/contacts/{}", w.id("con", 1, 1));
    let calls_before = w.sim.state().calls("crm-core");

    let r = w.raw("GET", &path, &[("version", V)], None).await;
    r.assert_problem(401, "unauthenticated");
    assert_eq!(
        r.header("www-authenticate"),
        Some(r#"Bearer realm="prospectconnect""#)
    );

    let mut expired = Mint::new(1, 101);
    expired.ttl = -3600;
    let mut wrong_aud = Mint::new(1, 101);
    wrong_aud.aud = "https://someone-else.example".into();
    let mut wrong_iss = Mint::new(1, 101);
    wrong_iss.iss = "https://evil.example".into();
    for m in [expired, wrong_aud, wrong_iss] {
        let auth = format!("Bearer {}", w.token_with(&m));
        let r = w
            .raw(
                "GET",
                &path,
                &[("authorization", &auth), ("version", V)],
                None,
            )
            .await;
        r.assert_problem(401, "unauthenticated");
        assert_eq!(
            r.header("www-authenticate"),
            Some(r#"Bearer realm="prospectconnect", error="invalid_token""#)
        );
    }
    let r = w
        .raw(
            "GET",
            &path,
            &[("authorization", "Bearer not.a.jwt"), ("version", V)],
            None,
        )
        .await;
    r.assert_problem(401, "unauthenticated");
    assert_eq!(
        w.sim.state().calls("crm-core"),
        calls_before,
        "refused requests never reach the upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_trust_headers_are_ignored() {
    let w = World::start().await;
    let token = format!("Bearer {}", w.token(1, 101));
    let path = format!("/v1/contacts/{}", w.id("con", 1, 1));
    for (h, v) in [
        ("X-PC-Tenant", "2"),
        ("x-pc-tenant", "2"),
        ("X-Pc-User", "201"),
        ("X-PC-Request-Id", "forged"),
    ] {
        let r = w
            .raw(
                "GET",
                &path,
                &[
                    ("authorization", &token),
                    ("version", V),
                    (h, v),
                    ("x-pc-tenant", "2"),
                ],
                None,
            )
            .await;
        assert_eq!(r.status, 200);
        assert_eq!(
            r.json()["data"]["first_name"],
            "Ada",
            "tenant 1's record, never tenant 2's"
        );
    }
    // Tenant 2's contact 1 exists, but a tenant-1 token can never reach it: its id does not
    // open for tenant 1, and a tenant-1 id does not open for tenant 2.
    let t2 = format!("/v1/contacts/{}", w.id("con", 2, 1));
    let r = w
        .raw(
            "GET",
            &t2,
            &[
                ("authorization", &token),
                ("version", V),
                ("x-pc-tenant", "2"),
            ],
            None,
        )
        .await;
    r.assert_problem(404, "not-found");
    let r2 = w.call(2, 201, "GET", &path, None).await;
    r2.assert_problem(404, "not-found");
    let own = w.call(2, 201, "GET", &t2, None).await;
    assert_eq!(own.status, 200);
    assert_ne!(own.json()["data"]["first_name"], "Ada");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_routes_wrong_methods_and_bad_ids_are_problems() {
    let w = World::start().await;
    for path in [
        "/v1/nothing",
        "/",
        "/v1/contacts/a/b/c",
        "/v2/contacts",
        "/v1/contacts/con_forged",
    ] {
        let r = w.call(1, 101, "GET", path, None).await;
        let p = r.assert_problem(404, "not-found");
        assert_eq!(p["instance"], path);
    }
    let r = w
        .call(
            1,
            101,
            "PUT",
            &format!("/v1/contacts/{}", w.id("con", 1, 1)),
            None,
        )
        .await;
    r.assert_problem(405, "method-not-allowed");
    assert_eq!(r.header("allow"), Some("GET, HEAD, PATCH, DELETE"));
    // A contact id is not a company id.
    let r = w
        .call(
            1,
            101,
            "GET",
            &format!("/v1/companies/{}", w.id("con", 1, 1)),
            None,
        )
        .await;
    r.assert_problem(404, "not-found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_upstream_is_503_with_retry_after() {
    let w = World::start().await;
    let path = format!("/v1/contacts/{}", w.id("con", 1, 1));
    assert_eq!(w.call(1, 101, "GET", &path, None).await.status, 200);
    w.sim.stop_service("crm-core").await;
    let r = w.call(1, 101, "GET", &path, None).await;
    let p = r.assert_problem(503, "upstream-unavailable");
    assert!(r.header("retry-after").is_some());
    let text = p.to_string();
    assert!(
        !text.contains("127.0.0.1") && !text.contains("crm-core"),
        "no internals leak: {text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_header_is_required_and_checked() {
    let w = World::start().await;
    let auth = format!("Bearer {}", w.token(1, 101));
    let path = format!("/v1/contacts/{}", w.id("con", 1, 1));
    w.raw("GET", &path, &[("authorization", &auth)], None)
        .await
        .assert_problem(400, "version-required");
    for bad in ["2026-13-01", "yesterday", "2025-01-01"] {
        let r = w
            .raw(
                "GET",
                &path,
                &[("authorization", &auth), ("version", bad)],
                None,
            )
            .await;
        let p = r.assert_problem(400, "unsupported-version");
        assert_eq!(
            p["supported_versions"],
            serde_json::json!(["2026-05-01", "2026-11-01"])
        );
    }
    let r = w
        .raw(
            "GET",
            &path,
            &[("authorization", &auth), ("version", "2026-05-01")],
            None,
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("version"), Some("2026-05-01"));
    assert_eq!(
        r.header("deprecation"),
        Some("@1793491200"),
        "2026-11-01, RFC 9745"
    );
    assert_eq!(r.header("sunset"), Some("Sat, 01 May 2027 00:00:00 GMT"));
}

#[test]
fn check_reports_every_mistake_with_its_location() {
    let dir = tempdir::Dir::new("check");
    let maps = dir.path().join("mappings");
    crate::harness::copy_mappings(&maps);
    let contacts = maps.join("contacts.yaml");
    let text = std::fs::read_to_string(&contacts).expect("read");
    // Mistake 1: an unknown key in a field; mistake 2: an operator that does not exist.
    let text = text
        .replace(
            "phone: { from: phoneNumber, nullable: true }",
            "phone: { from: phoneNumber, nullable: true, colour: red }",
        )
        .replace(
            "filter: [eq, contains, has_value]",
            "filter: [eq, contains, sounds_like]",
        );
    std::fs::write(&contacts, text).expect("write");
    // Mistake 3: a listener that is not an address.
    let conf = dir.path().join("edge.yaml");
    let base = std::fs::read_to_string(repo().join("conf/demo/edge.yaml")).expect("demo config");
    let base = base
        .replace(
            "mappings: ../../mappings",
            &format!("mappings: {}", maps.display()),
        )
        .replace("listen: 127.0.0.1:8080", "listen: localhost-eight-thousand");
    std::fs::write(&conf, base).expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_prospect-edge"))
        .args(["check", "-c"])
        .arg(&conf)
        .output()
        .expect("run check");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("edge.yaml:4:9: listen `localhost-eight-thousand` is not an address"),
        "{err}"
    );
    assert!(
        err.contains("contacts.yaml:18:") && err.contains("unknown key `colour`"),
        "{err}"
    );
    assert!(
        err.contains("contacts.yaml:") && err.contains("operator `sounds_like` is unknown"),
        "{err}"
    );
    assert!(err.contains("3 error(s)"), "{err}");

    let ok = std::process::Command::new(env!("CARGO_BIN_EXE_prospect-edge"))
        .args(["check", "-c"])
        .arg(repo().join("conf/demo/edge.yaml"))
        .output()
        .expect("run check");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).starts_with("ok: "));
}

/// A configured public address that is already taken stops the start with a clear error
/// (pingora alone would leave the process up, its admin listener ready and no public one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_listen_address_stops_the_start() {
    let w = World::start().await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr");
    let config = w
        .config
        .replace("listen: 127.0.0.1:0", &format!("listen: {addr}"));
    assert_ne!(config, w.config, "the test config names its listen address");
    let dir = tempdir::Dir::new("taken");
    let log = dir.path().join("stderr.log");
    let mut child = crate::harness::edge_command(dir.path(), &config)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("run");
    // The outcome within a generous deadline: it exits on its own, or it is still up.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break Some(st);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let stderr = std::fs::read_to_string(&log).unwrap_or_default();
    let status = status.unwrap_or_else(|| panic!("still running on a taken address: {stderr}"));
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot listen on {addr}")),
        "{stderr}"
    );
    drop(taken);
}
