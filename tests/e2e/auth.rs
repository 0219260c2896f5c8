//! Authentication and authorization as an attacker would test them: forged, altered and
//! malformed tokens (each 401, never reaching an upstream), key rotation and JWKS outages,
//! scopes ∩ CRM roles over the simulator's four roles, tenant isolation, and opaque tokens
//! through RFC 7662 introspection.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD as B64};
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey};
use prospect_edge::token::{self, Mint, ALL_SCOPES, DEMO_AUDIENCE, DEMO_ISSUER, DEMO_KID};
use serde_json::{json, Value};

use crate::harness::{demo_key, Resp, World, V};

const INVALID: &str = r#"Bearer realm="prospectconnect", error="invalid_token""#;
const NO_TOKEN: &str = r#"Bearer realm="prospectconnect""#;
/// Every service the edge could reach for a contact read.
const UPSTREAMS: [&str; 6] = [
    "crm-core",
    "iam",
    "sales",
    "workflow",
    "engagements",
    "audit",
];

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn part(v: &Value) -> String {
    B64.encode(serde_json::to_vec(v).expect("json"))
}

/// Valid RFC 9068 claims for (tenant, user).
fn claims(tenant: u32, user: u64) -> Value {
    let n = now();
    let jti: u64 = rand::random();
    json!({
        "iss": DEMO_ISSUER, "aud": DEMO_AUDIENCE, "sub": user.to_string(), "client_id": "attack-lab",
        "scope": ALL_SCOPES, "tid": tenant, "iat": n, "nbf": n, "exp": n + 600, "jti": format!("{jti:x}"),
    })
}

fn header(alg: &str, kid: &str) -> Value {
    json!({"alg": alg, "typ": "at+jwt", "kid": kid})
}

/// `header.claims` signed by hand, so that any header or claim can be forged.
fn sign(header: &Value, claims: &Value, key: &EncodingKey, alg: Algorithm) -> String {
    let msg = format!("{}.{}", part(header), part(claims));
    let sig = jsonwebtoken::crypto::sign(msg.as_bytes(), key, alg).expect("sign");
    format!("{msg}.{sig}")
}

fn ed_key(pem: &str) -> EncodingKey {
    EncodingKey::from_ed_pem(pem.as_bytes()).expect("ed25519 pem")
}

/// A fresh Ed25519 key as PKCS#8 PEM.
fn new_ed25519_pem() -> String {
    use ed25519_dalek::pkcs8::EncodePrivateKey;
    let sk = ed25519_dalek::SigningKey::from_bytes(&rand::random::<[u8; 32]>());
    sk.to_pkcs8_pem(Default::default())
        .expect("pem")
        .to_string()
}

/// The JWK of an Ed25519 PEM key.
fn ed_jwk(pem: &str, kid: &str) -> Value {
    token::jwks(pem, kid).expect("jwks")["keys"][0].clone()
}

struct Rsa {
    key: rsa::RsaPrivateKey,
}

impl Rsa {
    fn new() -> Rsa {
        Rsa {
            key: rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048).expect("rsa key"),
        }
    }
    fn signer(&self) -> EncodingKey {
        use rsa::pkcs1::EncodeRsaPrivateKey;
        let pem = self.key.to_pkcs1_pem(Default::default()).expect("pem");
        EncodingKey::from_rsa_pem(pem.as_bytes()).expect("rsa pem")
    }
    fn jwk(&self, kid: &str) -> Value {
        use rsa::traits::PublicKeyParts;
        json!({"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
               "n": B64.encode(self.key.n().to_bytes_be()), "e": B64.encode(self.key.e().to_bytes_be())})
    }
    fn public_pem(&self) -> String {
        use rsa::pkcs8::EncodePublicKey;
        self.key
            .to_public_key()
            .to_public_key_pem(Default::default())
            .expect("pem")
    }
}

struct Ec {
    key: p256::SecretKey,
}

impl Ec {
    fn new() -> Ec {
        Ec {
            key: p256::SecretKey::random(&mut rand::thread_rng()),
        }
    }
    fn signer(&self) -> EncodingKey {
        use p256::pkcs8::EncodePrivateKey;
        let pem = self.key.to_pkcs8_pem(Default::default()).expect("pem");
        EncodingKey::from_ec_pem(pem.as_bytes()).expect("ec pem")
    }
    fn jwk(&self, kid: &str) -> Value {
        use p256::elliptic_curve::sec1::ToEncodedPoint;
        let point = self.key.public_key().to_encoded_point(false);
        json!({"kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": "ES256",
               "x": B64.encode(point.x().expect("x")), "y": B64.encode(point.y().expect("y"))})
    }
}

fn calls(w: &World) -> Vec<u64> {
    UPSTREAMS.iter().map(|s| w.sim.state().calls(s)).collect()
}

async fn get_with(w: &World, path: &str, token: &str) -> Resp {
    let auth = format!("Bearer {token}");
    w.raw(
        "GET",
        path,
        &[("authorization", auth.as_str()), ("version", V)],
        None,
    )
    .await
}

/// Polls `/readyz` until every issuer's keys are loaded.
async fn wait_for_keys(w: &World) -> Value {
    for _ in 0..500 {
        let r = w.admin("/readyz").await;
        if r.status == 200 && r.json()["jwks_loaded"] == true {
            return r.json();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the edge never loaded its JWKS");
}

/// Asserts a 401 `unauthenticated` with exactly `challenge`, and that no upstream was called.
async fn assert_refused(w: &World, what: &str, headers: &[(&str, &str)], challenge: &str) {
    let path = format!("/v1/contacts/{}", w.id("con", 1, 1));
    let before = calls(w);
    let r = w.raw("GET", &path, headers, None).await;
    assert_eq!(
        r.status,
        401,
        "{what}: {}",
        String::from_utf8_lossy(&r.body)
    );
    r.assert_problem(401, "unauthenticated");
    assert_eq!(r.header("www-authenticate"), Some(challenge), "{what}");
    assert_eq!(calls(w), before, "{what}: an upstream was reached");
}

async fn assert_token_refused(w: &World, what: &str, token: &str) {
    let auth = format!("Bearer {token}");
    assert_refused(
        w,
        what,
        &[("authorization", auth.as_str()), ("version", V)],
        INVALID,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attacks_are_refused_with_401_before_any_upstream() {
    let demo_pem = demo_key();
    let demo = ed_key(&demo_pem);
    let (rsa_real, rsa_foreign) = (Rsa::new(), Rsa::new());
    let (ec_real, ec_foreign) = (Ec::new(), Ec::new());
    let jwks =
        json!({"keys": [ed_jwk(&demo_pem, DEMO_KID), rsa_real.jwk("rsa-1"), ec_real.jwk("ec-1")]});
    let w = World::start_custom(|_| {}, |issuer, _| issuer.set_jwks(jwks)).await;
    wait_for_keys(&w).await;
    let path = format!("/v1/contacts/{}", w.id("con", 1, 1));

    // Controls: each algorithm, properly signed with a published key, is accepted.
    for (what, token) in [
        (
            "EdDSA",
            sign(
                &header("EdDSA", DEMO_KID),
                &claims(1, 101),
                &demo,
                Algorithm::EdDSA,
            ),
        ),
        (
            "RS256",
            sign(
                &header("RS256", "rsa-1"),
                &claims(1, 101),
                &rsa_real.signer(),
                Algorithm::RS256,
            ),
        ),
        (
            "ES256",
            sign(
                &header("ES256", "ec-1"),
                &claims(1, 101),
                &ec_real.signer(),
                Algorithm::ES256,
            ),
        ),
    ] {
        let r = get_with(&w, &path, &token).await;
        assert_eq!(
            r.status,
            200,
            "{what}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert_eq!(r.json()["data"]["first_name"], "Ada");
    }

    let good = |c: &Value| sign(&header("EdDSA", DEMO_KID), c, &demo, Algorithm::EdDSA);
    let mut cases: Vec<(String, String)> = Vec::new();
    let mut add = |what: &str, token: String| cases.push((what.to_string(), token));

    // alg none, in any spelling, with or without a signature.
    for alg in ["none", "None", "NONE"] {
        let h = json!({"alg": alg, "typ": "at+jwt", "kid": DEMO_KID});
        add(
            &format!("alg {alg}"),
            format!("{}.{}.", part(&h), part(&claims(1, 101))),
        );
    }
    let valid = good(&claims(1, 101));
    let valid_sig = valid.rsplit('.').next().expect("sig").to_string();
    add(
        "alg none with a copied signature",
        format!(
            "{}.{}.{valid_sig}",
            part(&json!({"alg": "none", "typ": "at+jwt", "kid": DEMO_KID})),
            part(&claims(1, 101))
        ),
    );
    // HMAC keyed with the issuer's public key material.
    let ed_public = B64
        .decode(ed_jwk(&demo_pem, DEMO_KID)["x"].as_str().expect("x"))
        .expect("x bytes");
    add(
        "HS256 keyed with the Ed25519 public key",
        sign(
            &header("HS256", DEMO_KID),
            &claims(1, 101),
            &EncodingKey::from_secret(&ed_public),
            Algorithm::HS256,
        ),
    );
    add(
        "HS256 keyed with the RSA public key PEM",
        sign(
            &header("HS256", "rsa-1"),
            &claims(1, 101),
            &EncodingKey::from_secret(rsa_real.public_pem().as_bytes()),
            Algorithm::HS256,
        ),
    );
    add(
        "HS512 keyed with the JWKS",
        sign(
            &header("HS512", "rsa-1"),
            &claims(1, 101),
            &EncodingKey::from_secret(rsa_real.jwk("rsa-1").to_string().as_bytes()),
            Algorithm::HS512,
        ),
    );
    // Foreign keys claiming a kid that exists.
    add(
        "RS256 by a foreign key with kid rsa-1",
        sign(
            &header("RS256", "rsa-1"),
            &claims(1, 101),
            &rsa_foreign.signer(),
            Algorithm::RS256,
        ),
    );
    add(
        "ES256 by a foreign key with kid ec-1",
        sign(
            &header("ES256", "ec-1"),
            &claims(1, 101),
            &ec_foreign.signer(),
            Algorithm::ES256,
        ),
    );
    add(
        "EdDSA by a foreign key with the demo kid",
        sign(
            &header("EdDSA", DEMO_KID),
            &claims(1, 101),
            &ed_key(&new_ed25519_pem()),
            Algorithm::EdDSA,
        ),
    );
    add(
        "RS256 by the real RSA key naming the Ed25519 kid",
        sign(
            &header("RS256", DEMO_KID),
            &claims(1, 101),
            &rsa_real.signer(),
            Algorithm::RS256,
        ),
    );
    add(
        "ES256 naming the RSA kid",
        sign(
            &header("ES256", "rsa-1"),
            &claims(1, 101),
            &ec_real.signer(),
            Algorithm::ES256,
        ),
    );
    add(
        "no kid",
        sign(
            &json!({"alg": "EdDSA", "typ": "at+jwt"}),
            &claims(1, 101),
            &demo,
            Algorithm::EdDSA,
        ),
    );
    // typ
    for typ in [json!("JWT"), json!("jwt"), json!(null), json!(["at+jwt"])] {
        let mut h = header("EdDSA", DEMO_KID);
        h["typ"] = typ.clone();
        add(
            &format!("typ {typ}"),
            sign(&h, &claims(1, 101), &demo, Algorithm::EdDSA),
        );
    }
    let mut h = header("EdDSA", DEMO_KID);
    h.as_object_mut().expect("obj").remove("typ");
    add(
        "typ missing",
        sign(&h, &claims(1, 101), &demo, Algorithm::EdDSA),
    );
    // Claims, each token properly signed by the issuer's key.
    let n = now();
    let mut claim_cases: Vec<(&str, Value)> = Vec::new();
    let with = |k: &str, v: Value| {
        let mut c = claims(1, 101);
        c[k] = v;
        c
    };
    let without = |k: &str| {
        let mut c = claims(1, 101);
        c.as_object_mut().expect("obj").remove(k);
        c
    };
    claim_cases.push(("expired", {
        let mut c = with("exp", json!(n - 3600));
        c["iat"] = json!(n - 7200);
        c["nbf"] = json!(n - 7200);
        c
    }));
    claim_cases.push(("expired beyond the leeway", with("exp", json!(n - 61))));
    claim_cases.push(("nbf in the future", with("nbf", json!(n + 3600))));
    claim_cases.push(("iat in the future", with("iat", json!(n + 3600))));
    claim_cases.push(("exp as a string", with("exp", json!((n + 600).to_string()))));
    claim_cases.push(("wrong iss", with("iss", json!("https://evil.example"))));
    claim_cases.push((
        "iss with a trailing slash",
        with("iss", json!(format!("{DEMO_ISSUER}/"))),
    ));
    claim_cases.push((
        "wrong aud",
        with("aud", json!("https://someone-else.example")),
    ));
    claim_cases.push((
        "aud list without ours",
        with("aud", json!(["https://a.example", "https://b.example"])),
    ));
    claim_cases.push(("sub not a CRM user id", with("sub", json!("alice"))));
    claim_cases.push(("tid not a tenant id", with("tid", json!("acme"))));
    claim_cases.push(("empty client_id", with("client_id", json!(""))));
    for k in [
        "tid",
        "sub",
        "client_id",
        "scope",
        "exp",
        "iat",
        "jti",
        "iss",
        "aud",
    ] {
        claim_cases.push((k, without(k)));
    }
    for (what, c) in &claim_cases {
        add(&format!("claims: {what}"), good(c));
    }
    // The payload altered after signing: tenant 1 → tenant 2.
    let signed = good(&claims(1, 101));
    let mut parts: Vec<&str> = signed.split('.').collect();
    let forged_payload = part(&claims(2, 201));
    parts[1] = &forged_payload;
    add("payload altered after signing", parts.join("."));
    let mut tampered_sig = signed.clone();
    let last = tampered_sig.pop().expect("char");
    tampered_sig.push(if last == 'A' { 'B' } else { 'A' });
    add("signature altered", tampered_sig);
    // Size and shape.
    // (Under the edge's 32 KiB head cap; a larger one is refused before auth, below.)
    add(
        "30 KB token",
        format!(
            "{}.{}.{valid_sig}",
            part(&header("EdDSA", DEMO_KID)),
            "A".repeat(30 * 1024)
        ),
    );
    add("garbage base64", "!!!$$$.@@@###.%%%^^^".to_string());
    add("base64 of nothing useful", "abc.def.ghi".to_string());
    add(
        "empty JSON objects",
        format!("{}.{}.{}", part(&json!({})), part(&json!({})), "e30"),
    );
    add(
        "header not an object",
        format!(
            "{}.{}.{valid_sig}",
            part(&json!(["EdDSA"])),
            part(&claims(1, 101))
        ),
    );
    add("four parts", format!("{valid}.{valid_sig}"));
    add(
        "opaque token without introspection",
        "opaque-token-123".to_string(),
    );

    // Key references in the header: never followed, even when they point at the issuer.
    let fetches = w.issuer.fetches();
    for (k, v) in [
        ("jku", json!(w.issuer.jwks_url())),
        ("x5u", json!(w.issuer.jwks_url())),
        ("jwk", ed_jwk(&demo_pem, DEMO_KID)),
        (
            "x5c",
            json!(["MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"]),
        ),
        ("crit", json!(["exp"])),
    ] {
        let mut h = header("EdDSA", DEMO_KID);
        h[k] = v;
        assert_token_refused(
            &w,
            &format!("header {k}"),
            &sign(&h, &claims(1, 101), &demo, Algorithm::EdDSA),
        )
        .await;
    }
    assert_eq!(w.issuer.fetches(), fetches, "no key reference was followed");

    for (what, token) in &cases {
        assert_token_refused(&w, what, token).await;
    }
    // A 100 KB token is over the head cap: 431 before authentication, no upstream call.
    let huge = format!(
        "Bearer {}.{}.{valid_sig}",
        part(&header("EdDSA", DEMO_KID)),
        "A".repeat(100 * 1024)
    );
    let before = calls(&w);
    w.raw(
        "GET",
        &path,
        &[("authorization", huge.as_str()), ("version", V)],
        None,
    )
    .await
    .assert_problem(431, "request-header-fields-too-large");
    assert_eq!(calls(&w), before, "100 KB token: an upstream was reached");
    // An unknown kid (a refetch may happen, but the key stays unknown).
    assert_token_refused(
        &w,
        "unknown kid",
        &sign(
            &header("EdDSA", "nobody-knows-me"),
            &claims(1, 101),
            &demo,
            Algorithm::EdDSA,
        ),
    )
    .await;

    // The Authorization header itself.
    let one = format!("Bearer {valid}");
    let two = format!("Bearer {}", good(&claims(1, 101)));
    for (what, headers, challenge) in [
        ("no Authorization header", vec![("version", V)], NO_TOKEN),
        (
            "Basic scheme",
            vec![("authorization", "Basic dXNlcjpwYXNz"), ("version", V)],
            NO_TOKEN,
        ),
        (
            "Bearer with no token",
            vec![("authorization", "Bearer"), ("version", V)],
            INVALID,
        ),
        (
            "Bearer and spaces",
            vec![("authorization", "Bearer    "), ("version", V)],
            INVALID,
        ),
        (
            "two Authorization headers",
            vec![
                ("authorization", one.as_str()),
                ("authorization", two.as_str()),
                ("version", V),
            ],
            INVALID,
        ),
        (
            "a token with a space inside",
            vec![("authorization", "Bearer abc def.ghi.jkl"), ("version", V)],
            INVALID,
        ),
    ] {
        assert_refused(&w, what, &headers, challenge).await;
    }
    // The controls still pass: nothing above poisoned a cache.
    assert_eq!(get_with(&w, &path, &valid).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_key_works_at_once_with_one_shared_jwks_fetch() {
    let w = Arc::new(World::start().await);
    wait_for_keys(&w).await;
    let path = format!("/v1/contacts/{}", w.id("con", 1, 1));
    let fetched = w.issuer.fetches();
    assert!(fetched >= 1);

    // The issuer publishes a second key and signs with it from now on.
    let new_pem = new_ed25519_pem();
    w.issuer
        .set_jwks(json!({"keys": [ed_jwk(&demo_key(), DEMO_KID), ed_jwk(&new_pem, "rotated-2")]}));
    let mut m = Mint::new(1, 101);
    m.kid = "rotated-2".into();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..100 {
        // 100 distinct tokens (each has its own jti), all naming the new kid.
        let token = token::mint(&new_pem, &m).expect("mint");
        let (w, path) = (w.clone(), path.clone());
        tasks.spawn(async move { get_with(&w, &path, &token).await.status });
    }
    let mut statuses = Vec::new();
    while let Some(s) = tasks.join_next().await {
        statuses.push(s.expect("task"));
    }
    assert_eq!(statuses, vec![200; 100]);
    assert_eq!(
        w.issuer.fetches(),
        fetched + 1,
        "exactly one shared JWKS fetch"
    );

    // Both keys keep working without further fetches.
    let r = get_with(&w, &path, &token::mint(&new_pem, &m).expect("mint")).await;
    assert_eq!(r.status, 200);
    assert_eq!(get_with(&w, &path, &w.token(1, 101)).await.status, 200);
    // Unknown kids right after a refetch do not trigger more (rate limited).
    for i in 0..20 {
        let mut m = Mint::new(1, 101);
        m.kid = format!("made-up-{i}");
        let r = get_with(&w, &path, &w.token_with(&m)).await;
        r.assert_problem(401, "unauthenticated");
    }
    assert_eq!(
        w.issuer.fetches(),
        fetched + 1,
        "unknown kids are rate limited"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_good_keys_keep_working_while_the_jwks_is_down() {
    let w = World::start().await;
    let ready = wait_for_keys(&w).await;
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["jwks"][0]["issuer"], DEMO_ISSUER);
    assert_eq!(ready["jwks"][0]["keys"], 1);
    assert_eq!(ready["jwks"][0]["last_fetch_ok"], true);
    assert_eq!(ready["jwks"][0]["stale"], false);
    let path = format!("/v1/contacts/{}", w.id("con", 1, 1));

    w.issuer.stop().await;
    // An unknown kid makes the edge try the JWKS again, which fails.
    let mut m = Mint::new(1, 101);
    m.kid = "rotated-but-unreachable".into();
    get_with(&w, &path, &w.token_with(&m))
        .await
        .assert_problem(401, "unauthenticated");
    // A token never seen before, signed with a known key: verified with the kept keys.
    let r = get_with(&w, &path, &w.token(1, 101)).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let ready = w.admin("/readyz").await;
    assert_eq!(ready.status, 200, "stale keys still serve");
    let ready = ready.json();
    assert_eq!(ready["jwks_loaded"], true);
    assert_eq!(ready["jwks"][0]["keys"], 1);
    assert_eq!(ready["jwks"][0]["last_fetch_ok"], false);
}

/// Expected permission of each role: admin, sales_manager, sales_rep, read_only.
const MATRIX: [(&str, [bool; 4]); 16] = [
    ("contacts:view", [true, true, true, true]),
    ("contacts:edit", [true, true, true, false]),
    ("contacts:delete", [true, false, false, false]),
    ("companies:view", [true, true, true, true]),
    ("companies:edit", [true, true, true, false]),
    ("companies:delete", [true, false, false, false]),
    ("deals:view", [true, true, true, true]),
    ("deals:edit", [true, true, true, false]),
    ("deals:delete", [true, false, false, false]),
    ("deals:move_stage", [true, true, true, false]),
    ("tasks:view", [true, true, true, true]),
    ("tasks:edit", [true, true, true, false]),
    ("tasks:delete", [true, true, true, false]),
    ("notes:view", [true, true, true, true]),
    ("notes:edit", [true, true, true, false]),
    ("notes:delete", [true, true, true, false]),
];
const ROLES: [(u64, &str); 4] = [
    (101, "admin"),
    (102, "sales_manager"),
    (103, "sales_rep"),
    (104, "read_only"),
];

fn allowed(permission: &str, role: usize) -> bool {
    MATRIX
        .iter()
        .find(|(p, _)| *p == permission)
        .map(|(_, r)| r[role])
        .unwrap_or_else(|| panic!("{permission} not in the matrix"))
}

/// Asserts `want` when the role has the permission, else 403 `permission-denied` naming it
/// without any call to the resource's service.
async fn expect(
    w: &World,
    role: usize,
    permission: &str,
    service: &str,
    want: u16,
    req: (&str, String, Option<Value>),
) -> Resp {
    let (user, name) = ROLES[role];
    let (method, path, body) = req;
    let before = w.sim.state().calls(service);
    let r = w.call(1, user, method, &path, body).await;
    if allowed(permission, role) {
        assert_eq!(
            r.status,
            want,
            "{name} {method} {path}: {}",
            String::from_utf8_lossy(&r.body)
        );
    } else {
        let p = r.assert_problem(403, "permission-denied");
        assert_eq!(
            p["required_permission"], permission,
            "{name} {method} {path}"
        );
        assert_eq!(
            w.sim.state().calls(service),
            before,
            "{name} {method} {path}"
        );
    }
    r
}

fn created_id(r: &Resp) -> String {
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    r.json()["data"]["id"].as_str().expect("id").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_role_matrix_of_the_four_roles() {
    let w = World::start().await;
    let rep = 103;
    let con3 = w.id("con", 1, 3);
    // Records owned by the sales rep, so every role can see them.
    let create = |res: &str, n: usize| -> Value {
        match res {
            "contacts" => {
                json!({"email": format!("matrix{n}@example.com"), "first_name": "Matrix"})
            }
            "companies" => json!({"name": format!("Matrix {n}")}),
            "deals" => json!({"name": format!("Matrix {n}"), "pipeline_id": w.id("pipe", 1, 1)}),
            "tasks" => json!({"title": format!("Matrix {n}")}),
            _ => {
                json!({"body": format!("Matrix {n}"), "attached_to": {"type": "contact", "id": con3}})
            }
        }
    };
    let patch = |res: &str| -> Value {
        match res {
            "contacts" => json!({"job_title": "Tester"}),
            "companies" => json!({"city": "Testville"}),
            "deals" => json!({"name": "Renamed"}),
            "tasks" => json!({"title": "Renamed"}),
            _ => json!({"body": "Edited"}),
        }
    };
    let resources = [
        ("contacts", "crm-core"),
        ("companies", "crm-core"),
        ("deals", "sales"),
        ("tasks", "workflow"),
        ("notes", "engagements"),
    ];
    let mut n = 0;
    for (res, service) in resources {
        let shared = created_id(
            &w.call(1, rep, "POST", &format!("/v1/{res}"), Some(create(res, n)))
                .await,
        );
        n += 1;
        let plural = res;
        let perm = |op: &str| format!("{plural}:{op}");
        for role in 0..4 {
            let doomed = created_id(
                &w.call(1, rep, "POST", &format!("/v1/{res}"), Some(create(res, n)))
                    .await,
            );
            n += 1;
            let one = format!("/v1/{res}/{shared}");
            expect(
                &w,
                role,
                &perm("view"),
                service,
                200,
                ("GET", one.clone(), None),
            )
            .await;
            expect(
                &w,
                role,
                &perm("view"),
                service,
                200,
                (
                    "POST",
                    format!("/v1/{res}/search"),
                    Some(json!({"limit": 1})),
                ),
            )
            .await;
            expect(
                &w,
                role,
                &perm("edit"),
                service,
                201,
                ("POST", format!("/v1/{res}"), Some(create(res, n))),
            )
            .await;
            n += 1;
            expect(
                &w,
                role,
                &perm("edit"),
                service,
                200,
                ("PATCH", one.clone(), Some(patch(res))),
            )
            .await;
            expect(
                &w,
                role,
                &perm("delete"),
                service,
                204,
                ("DELETE", format!("/v1/{res}/{doomed}"), None),
            )
            .await;
            if res == "deals" {
                let stage = w.id("stage", 1, 2 + role as i64);
                expect(
                    &w,
                    role,
                    "deals:move_stage",
                    service,
                    200,
                    (
                        "POST",
                        format!("{one}/stage"),
                        Some(json!({"stage_id": stage})),
                    ),
                )
                .await;
            }
            if res == "tasks" {
                expect(
                    &w,
                    role,
                    "tasks:edit",
                    service,
                    200,
                    ("POST", format!("{one}/complete"), None),
                )
                .await;
                expect(
                    &w,
                    role,
                    "tasks:edit",
                    service,
                    200,
                    ("POST", format!("{one}/reopen"), None),
                )
                .await;
            }
        }
    }
    // Pipelines need deals:view, which every role has.
    for role in 0..4 {
        let r = expect(
            &w,
            role,
            "deals:view",
            "sales",
            200,
            ("GET", format!("/v1/pipelines/{}", w.id("pipe", 1, 1)), None),
        )
        .await;
        assert_eq!(r.json()["data"]["name"], "Sales Pipeline");
    }

    // A sales rep does not see records it does not own: 404, as if they did not exist.
    for (res, prefix) in [
        ("contacts", "con"),
        ("companies", "cmp"),
        ("deals", "deal"),
        ("tasks", "task"),
    ] {
        let path = format!("/v1/{res}/{}", w.id(prefix, 1, 1));
        w.call(1, rep, "GET", &path, None)
            .await
            .assert_problem(404, "not-found");
        // The admin sees the same record.
        assert_eq!(w.call(1, 101, "GET", &path, None).await.status, 200);
    }
    w.call(
        1,
        rep,
        "PATCH",
        &format!("/v1/contacts/{}", w.id("con", 1, 1)),
        Some(json!({"job_title": "Hijacked"})),
    )
    .await
    .assert_problem(404, "not-found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scopes_and_roles_are_both_required() {
    let w = Arc::new(World::start().await);
    let contact = format!("/v1/contacts/{}", w.id("con", 1, 2));
    let as_token = |tenant: u32, user: u64, scope: &str| {
        let mut m = Mint::new(tenant, user);
        m.scope = scope.into();
        format!("Bearer {}", w.token_with(&m))
    };

    // A sales manager whose app may write contacts still cannot delete one.
    let auth = as_token(1, 102, "contact.read contact.write");
    let before = w.sim.state().calls("crm-core");
    let r = w
        .raw(
            "DELETE",
            &contact,
            &[("authorization", &auth), ("version", V)],
            None,
        )
        .await;
    let p = r.assert_problem(403, "permission-denied");
    assert_eq!(p["required_permission"], "contacts:delete");
    assert_eq!(w.sim.state().calls("crm-core"), before);

    // An admin whose app only reads contacts cannot create one; iam is not even asked.
    let auth = as_token(1, 101, "contact.read");
    let iam = w.sim.state().calls("iam");
    let r = w
        .raw(
            "POST",
            "/v1/contacts",
            &[
                ("authorization", &auth),
                ("version", V),
                ("content-type", "application/json"),
            ],
            Some(br#"{"email":"scope@example.com"}"#.to_vec()),
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
    assert_eq!(w.sim.state().calls("iam"), iam);
    assert_eq!(w.sim.state().calls("crm-core"), before);
    // Scopes are per resource: deal.write does not read contacts; deal.read reads pipelines.
    let auth = as_token(1, 101, "deal.read deal.write");
    let r = w
        .raw(
            "GET",
            &contact,
            &[("authorization", &auth), ("version", V)],
            None,
        )
        .await;
    assert_eq!(
        r.assert_problem(403, "insufficient-scope")["required_scope"],
        "contact.read"
    );
    let pipe = format!("/v1/pipelines/{}", w.id("pipe", 1, 1));
    let r = w
        .raw(
            "GET",
            &pipe,
            &[("authorization", &auth), ("version", V)],
            None,
        )
        .await;
    assert_eq!(r.status, 200);
    // The stage move needs deal.write, not only deals:move_stage.
    let auth = as_token(1, 101, "deal.read");
    let r = w
        .raw(
            "POST",
            &format!("/v1/deals/{}/stage", w.id("deal", 1, 1)),
            &[
                ("authorization", &auth),
                ("version", V),
                ("content-type", "application/json"),
            ],
            Some(
                json!({"stage_id": w.id("stage", 1, 2)})
                    .to_string()
                    .into_bytes(),
            ),
        )
        .await;
    assert_eq!(
        r.assert_problem(403, "insufficient-scope")["required_scope"],
        "deal.write"
    );

    // A genuine token for a user who is not a member of its tenant.
    let before = w.sim.state().calls("crm-core");
    let r = w.call(1, 999, "GET", &contact, None).await;
    r.assert_problem(401, "unauthenticated");
    assert_eq!(r.header("www-authenticate"), Some(INVALID));
    assert_eq!(w.sim.state().calls("crm-core"), before);

    // Concurrent first requests of one user (not seen yet) share one iam call.
    let iam = w.sim.state().calls("iam");
    let token = w.token(1, 104);
    let auth = format!("Bearer {token}");
    let mut all = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let (w, contact, auth) = (w.clone(), contact.clone(), auth.clone());
        all.spawn(async move {
            w.raw(
                "GET",
                &contact,
                &[("authorization", &auth), ("version", V)],
                None,
            )
            .await
            .status
        });
    }
    let mut statuses = Vec::new();
    while let Some(s) = all.join_next().await {
        statuses.push(s.expect("task"));
    }
    assert_eq!(statuses, vec![200; 20]);
    assert_eq!(w.sim.state().calls("iam"), iam + 1);

    // iam unreachable and nothing cached for this user: 503, never "allow".
    w.sim.state().set_role(1, 105, "admin");
    w.sim.stop_service("iam").await;
    let before = w.sim.state().calls("crm-core");
    let r = w.call(1, 105, "GET", &contact, None).await;
    r.assert_problem(503, "upstream-unavailable");
    assert_eq!(r.header("retry-after"), Some("5"));
    assert_eq!(w.sim.state().calls("crm-core"), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_change_takes_effect_within_the_cache_lifetime() {
    let w = World::start().await;
    let path = format!("/v1/contacts/{}", w.id("con", 1, 3));
    let body = || Some(json!({"job_title": "Promoted"}));
    let p = w
        .call(1, 104, "PATCH", &path, body())
        .await
        .assert_problem(403, "permission-denied");
    assert_eq!(p["required_permission"], "contacts:edit");

    // Poll: the new role must show within the permissions cache lifetime (2 s in tests).
    let poll = |want: u16| {
        let w = &w;
        let path = &path;
        async move {
            let started = Instant::now();
            loop {
                let r = w.call(1, 104, "PATCH", path, body()).await;
                if r.status == want {
                    return started.elapsed();
                }
                assert!(
                    started.elapsed() < Duration::from_secs(6),
                    "still {} after 6 s",
                    r.status
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    w.sim.state().set_role(1, 104, "sales_manager");
    let took = poll(200).await;
    assert!(took <= Duration::from_millis(4000), "{took:?}");
    // And back: a downgrade is what matters most.
    w.sim.state().set_role(1, 104, "read_only");
    let took = poll(403).await;
    assert!(took <= Duration::from_millis(4000), "{took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_tenants_ids_are_not_found_whatever_the_headers_say() {
    let w = World::start().await;
    let resources = [
        ("contacts", "con"),
        ("companies", "cmp"),
        ("deals", "deal"),
        ("pipelines", "pipe"),
        ("tasks", "task"),
        ("notes", "note"),
    ];
    let token = format!("Bearer {}", w.token(2, 201));
    let forged: [(&str, &str); 6] = [
        ("X-PC-Tenant", "1"),
        ("x-pc-tenant", "1"),
        ("X-Pc-Tenant", "1"),
        ("X-PC-USER", "101"),
        ("x-pc-user", "101"),
        ("X-PC-Request-Id", "forged"),
    ];
    let data_services = ["crm-core", "sales", "workflow", "engagements", "audit"];
    let data_calls = |w: &World| -> Vec<u64> {
        data_services
            .iter()
            .map(|s| w.sim.state().calls(s))
            .collect()
    };
    for (res, prefix) in resources {
        let id = w.id(prefix, 1, 1);
        let one = format!("/v1/{res}/{id}");
        let mut attempts: Vec<(&str, String, Option<Value>)> = vec![("GET", one.clone(), None)];
        let edit = match res {
            "contacts" => Some(json!({"job_title": "x"})),
            "companies" | "deals" => Some(json!({"name": "x"})),
            "tasks" => Some(json!({"title": "x"})),
            "notes" => Some(json!({"body": "x"})),
            _ => None,
        };
        if let Some(edit) = edit {
            attempts.push(("PATCH", one.clone(), Some(edit)));
            attempts.push(("DELETE", one.clone(), None));
        }
        match res {
            "deals" => attempts.push((
                "POST",
                format!("{one}/stage"),
                Some(json!({"stage_id": w.id("stage", 2, 2)})),
            )),
            "tasks" => attempts.push(("POST", format!("{one}/complete"), None)),
            _ => {}
        }
        for (method, path, body) in attempts {
            for headers in [&forged[..0], &forged[..]] {
                let before = data_calls(&w);
                let mut h: Vec<(&str, &str)> = vec![("authorization", &token), ("version", V)];
                if body.is_some() {
                    h.push(("content-type", "application/json"));
                }
                h.extend_from_slice(headers);
                let bytes = body.as_ref().map(|b| b.to_string().into_bytes());
                let r = w.raw(method, &path, &h, bytes).await;
                r.assert_problem(404, "not-found");
                assert_eq!(data_calls(&w), before, "{method} {path} reached a service");
            }
        }
    }
    // With the same forged headers, tenant 2 sees exactly its own records.
    let mut h: Vec<(&str, &str)> = vec![("authorization", &token), ("version", V)];
    h.extend_from_slice(&forged);
    let r = w
        .raw(
            "GET",
            &format!("/v1/contacts/{}", w.id("con", 2, 1)),
            &h,
            None,
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["data"]["first_name"], "Hank");
    h.push(("content-type", "application/json"));
    let r = w
        .raw("POST", "/v1/contacts/search", &h, Some(b"{}".to_vec()))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json()["meta"]["total"],
        5,
        "tenant 2's five contacts only"
    );
    // And a tenant-1 user is not a member of tenant 2, whatever it claims in headers.
    let t1_in_t2 = format!("Bearer {}", w.token(2, 101));
    let r = w
        .raw(
            "GET",
            &format!("/v1/contacts/{}", w.id("con", 2, 1)),
            &[
                ("authorization", &t1_in_t2),
                ("version", V),
                ("x-pc-tenant", "1"),
            ],
            None,
        )
        .await;
    r.assert_problem(401, "unauthenticated");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opaque_tokens_are_introspected_and_cached_within_bounds() {
    let basic = format!(
        "Basic {}",
        STANDARD.encode("edge-client:s3cret%2Fwith%3Achars")
    );
    let w = World::start_custom(
        |_| {},
        |issuer, config| {
            issuer.require_authorization(&basic);
            config.push_str(&format!(
                "introspection:\n  url: {}\n  client_id: edge-client\n  client_secret: {{ demo_value: \"s3cret/with:chars\" }}\n  cache_max_seconds: 5\n",
                issuer.introspection_url()
            ));
        },
    )
    .await;
    let path = format!("/v1/contacts/{}", w.id("con", 1, 1));
    let answer = |tenant: u32, user: u64, exp: i64| {
        json!({"active": true, "sub": user.to_string(), "client_id": "partner-app", "tid": tenant,
               "scope": ALL_SCOPES, "exp": exp, "token_type": "Bearer"})
    };
    let n = now();
    w.issuer
        .set_introspection("opaque-good-1", answer(1, 101, n + 3600));

    let r = get_with(&w, &path, "opaque-good-1").await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["data"]["first_name"], "Ada");
    assert_eq!(w.issuer.introspections(), 1);
    // Cached: the revocation is not seen at once, and the issuer is not asked again.
    w.issuer
        .set_introspection("opaque-good-1", json!({"active": false}));
    assert_eq!(get_with(&w, &path, "opaque-good-1").await.status, 200);
    assert_eq!(w.issuer.introspections(), 1);
    // …but no longer than the configured cap (5 s).
    let started = Instant::now();
    loop {
        let r = get_with(&w, &path, "opaque-good-1").await;
        if r.status == 401 {
            r.assert_problem(401, "unauthenticated");
            assert_eq!(r.header("www-authenticate"), Some(INVALID));
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "revocation never seen"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(w.issuer.introspections(), 2);

    // The tenant and user come from the introspection answer.
    w.issuer
        .set_introspection("opaque-globex", answer(2, 201, n + 3600));
    let r = get_with(
        &w,
        &format!("/v1/contacts/{}", w.id("con", 2, 1)),
        "opaque-globex",
    )
    .await;
    assert_eq!(r.json()["data"]["first_name"], "Hank");
    get_with(&w, &path, "opaque-globex")
        .await
        .assert_problem(404, "not-found");

    // Inactive, unknown, incomplete or expired answers: 401, no upstream reached.
    let mut incomplete = answer(1, 101, n + 3600);
    incomplete.as_object_mut().expect("obj").remove("tid");
    w.issuer.set_introspection("opaque-no-tid", incomplete);
    w.issuer
        .set_introspection("opaque-expired", answer(1, 101, n - 10));
    w.issuer.set_introspection(
        "opaque-active-string",
        json!({"active": "true", "sub": "101", "client_id": "x", "tid": 1, "scope": ALL_SCOPES}),
    );
    for token in [
        "opaque-revoked-never-issued",
        "opaque-no-tid",
        "opaque-expired",
        "opaque-active-string",
    ] {
        assert_token_refused(&w, token, token).await;
    }
    // A token that expires is refused from its exp on, whatever the cache holds.
    w.issuer
        .set_introspection("opaque-short", answer(1, 101, now() + 2));
    assert_eq!(get_with(&w, &path, "opaque-short").await.status, 200);
    let started = Instant::now();
    while get_with(&w, &path, "opaque-short").await.status == 200 {
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "served past exp"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The introspection endpoint down: the token cannot be checked, 503 (not 401).
    w.issuer
        .set_introspection("opaque-late", answer(1, 101, n + 3600));
    w.issuer.stop().await;
    let r = get_with(&w, &path, "opaque-late").await;
    r.assert_problem(503, "upstream-unavailable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_kb_token_under_a_raised_head_cap_is_refused_by_authentication() {
    // An operator who raises `max_request_header_bytes` past 100 KB still gets the
    // token's own size check: 401, before any crypto and any upstream call.
    let w = World::start_custom(
        |_| {},
        |_, config| config.push_str("max_request_header_bytes: 262144\n"),
    )
    .await;
    let valid = w.token(1, 101);
    let sig = valid.rsplit('.').next().expect("signature");
    let head = valid.split('.').next().expect("header");
    let huge = format!("{head}.{}.{sig}", "A".repeat(100 * 1024));
    let before = calls(&w);
    assert_token_refused(&w, "100 KB token", &huge).await;
    assert_eq!(calls(&w), before, "100 KB token: an upstream was reached");
}
