//! A request's authentication cost: a token already verified (the cache hit every request
//! after the first takes) against a cold verification (header and claims checks plus the
//! signature), for each accepted algorithm. Results and the command: `benches/README.md`.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use prospect_edge::auth::Auth;
use prospect_edge::config::Issuer;
use prospect_edge::token::{self, Mint, DEMO_AUDIENCE, DEMO_ISSUER, DEMO_KID};
use serde_json::json;

fn claims() -> serde_json::Value {
    let now = chrono::Utc::now().timestamp();
    let jti: u64 = rand::random();
    json!({"iss": DEMO_ISSUER, "aud": DEMO_AUDIENCE, "sub": "101", "client_id": "bench",
           "scope": token::ALL_SCOPES, "tid": 1, "iat": now, "nbf": now, "exp": now + 3600,
           "jti": format!("{jti:x}")})
}

fn signed(alg: Algorithm, kid: &str, key: &EncodingKey) -> String {
    let mut h = Header::new(alg);
    h.typ = Some("at+jwt".into());
    h.kid = Some(kid.into());
    jsonwebtoken::encode(&h, &claims(), key).expect("sign")
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let pem = token::read_key(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/demo/issuer-key.pem"),
    )
    .expect("demo key");
    let ed = EncodingKey::from_ed_pem(pem.as_bytes()).expect("ed key");

    let rsa_key = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048).expect("rsa");
    let rsa_enc = {
        use rsa::pkcs1::EncodeRsaPrivateKey;
        let pem = rsa_key.to_pkcs1_pem(Default::default()).expect("pem");
        EncodingKey::from_rsa_pem(pem.as_bytes()).expect("rsa key")
    };
    let ec_key = p256::SecretKey::random(&mut rand::thread_rng());
    let ec_enc = {
        use p256::pkcs8::EncodePrivateKey;
        let pem = ec_key.to_pkcs8_pem(Default::default()).expect("pem");
        EncodingKey::from_ec_pem(pem.as_bytes()).expect("ec key")
    };
    let mut jwks = token::jwks(&pem, DEMO_KID).expect("jwks");
    {
        use p256::elliptic_curve::sec1::ToEncodedPoint;
        use rsa::traits::PublicKeyParts;
        let point = ec_key.public_key().to_encoded_point(false);
        let keys = jwks["keys"].as_array_mut().expect("keys");
        keys.push(json!({"kty": "RSA", "kid": "rsa-1", "alg": "RS256",
            "n": B64.encode(rsa_key.n().to_bytes_be()), "e": B64.encode(rsa_key.e().to_bytes_be())}));
        keys.push(
            json!({"kty": "EC", "crv": "P-256", "kid": "ec-1", "alg": "ES256",
            "x": B64.encode(point.x().expect("x")), "y": B64.encode(point.y().expect("y"))}),
        );
    }

    let issuer = rt
        .block_on(legacy_sim::issuer::start_issuer(jwks))
        .expect("issuer");
    let auth = Auth::new(
        &[Issuer {
            issuer: DEMO_ISSUER.into(),
            jwks_url: issuer.jwks_url(),
            audience: DEMO_AUDIENCE.into(),
            algorithms: vec![Algorithm::EdDSA, Algorithm::ES256, Algorithm::RS256],
            leeway: Duration::from_secs(60),
            jwks_refetch_interval: Duration::from_secs(10),
        }],
        None,
        Duration::from_secs(30),
        None,
        prospect_edge::auth::DEFAULT_TOKEN_CACHE_BYTES,
    )
    .expect("auth");
    assert_eq!(rt.block_on(auth.refresh_all()), 1);

    let mut g = c.benchmark_group("auth");
    let minted = token::mint(&pem, &Mint::new(1, 101)).expect("mint");
    let header = format!("Bearer {minted}");
    rt.block_on(auth.authenticate(&[header.as_bytes()]))
        .expect("valid token");
    g.bench_function("cached_token", |b| {
        b.to_async(&rt)
            .iter(|| async { auth.authenticate(&[header.as_bytes()]).await.is_ok() })
    });
    for (name, alg, kid, key) in [
        ("EdDSA", Algorithm::EdDSA, DEMO_KID, &ed),
        ("ES256", Algorithm::ES256, "ec-1", &ec_enc),
        ("RS256", Algorithm::RS256, "rsa-1", &rsa_enc),
    ] {
        let t = signed(alg, kid, key);
        rt.block_on(auth.verify_uncached(&t)).expect("valid token");
        g.bench_function(format!("cold_verify_{name}"), |b| {
            b.to_async(&rt)
                .iter(|| async { auth.verify_uncached(&t).await.is_ok() })
        });
    }
    // A first request: a token never seen, verified and cached (minting is not timed).
    g.bench_function("first_request_EdDSA", |b| {
        b.to_async(&rt).iter_batched(
            || format!("Bearer {}", signed(Algorithm::EdDSA, DEMO_KID, &ed)),
            |h| {
                let auth = &auth;
                async move { auth.authenticate(&[h.as_bytes()]).await.is_ok() }
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
