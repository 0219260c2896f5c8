//! HTTP conventions of every answer the edge writes: content coding (gzip, brotli) by
//! `Accept-Encoding`, strong `ETag`s with `If-None-Match` → 304, `HEAD` in `Allow`, and
//! `traceresponse`.

use std::io::Read;

use serde_json::{json, Value};

use crate::harness::*;

fn gunzip(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(b)
        .read_to_end(&mut out)
        .expect("valid gzip");
    out
}

fn unbrotli(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    brotli::Decompressor::new(b, 4096)
        .read_to_end(&mut out)
        .expect("valid brotli");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_are_compressed_as_negotiated_and_decompress_to_the_identity_bytes() {
    let w = World::start().await;
    let token = format!("Bearer {}", w.token(1, 101));
    let search = |enc: &'static str| {
        let token = token.clone();
        let w = &w;
        async move {
            let mut h = vec![
                ("authorization", token.as_str()),
                ("version", V),
                ("content-type", "application/json"),
            ];
            if !enc.is_empty() {
                h.push(("accept-encoding", enc));
            }
            w.raw(
                "POST",
                "/v1/contacts/search",
                &h,
                Some(br#"{"limit": 100}"#.to_vec()),
            )
            .await
        }
    };
    let plain = search("").await;
    assert_eq!(plain.status, 200);
    assert_eq!(plain.header("content-encoding"), None);
    assert_eq!(plain.header("vary"), Some("accept-encoding"));
    assert!(plain.body.len() > 1024, "{}", plain.body.len());

    let gz = search("gzip").await;
    assert_eq!(gz.status, 200);
    assert_eq!(gz.header("content-encoding"), Some("gzip"));
    assert_eq!(gz.header("vary"), Some("accept-encoding"));
    assert_eq!(
        gz.header("content-length"),
        Some(gz.body.len().to_string().as_str())
    );
    assert!(gz.body.len() < plain.body.len());
    let data =
        |b: &[u8]| -> Value { serde_json::from_slice::<Value>(b).expect("json")["data"].clone() };
    assert_eq!(data(&gunzip(&gz.body)), data(&plain.body));

    let br = search("gzip;q=0.8, br").await;
    assert_eq!(br.header("content-encoding"), Some("br"));
    assert_eq!(data(&unbrotli(&br.body)), data(&plain.body));

    // The OpenAPI document and the /docs assets compress too.
    let doc = w
        .raw(
            "GET",
            "/v1/openapi.json",
            &[("accept-encoding", "gzip")],
            None,
        )
        .await;
    assert_eq!(doc.header("content-encoding"), Some("gzip"));
    let identity = w.raw("GET", "/v1/openapi.json", &[], None).await;
    assert_eq!(gunzip(&doc.body), identity.body.to_vec());
    assert!(
        doc.body.len() * 5 < identity.body.len(),
        "{} vs {}",
        doc.body.len(),
        identity.body.len()
    );
    let js = w
        .raw("GET", "/docs/docs.js", &[("accept-encoding", "br")], None)
        .await;
    assert_eq!(js.header("content-encoding"), Some("br"));
    let js_plain = w.raw("GET", "/docs/docs.js", &[], None).await;
    assert_eq!(unbrotli(&js.body), js_plain.body.to_vec());

    // A small problem is never compressed; q=0 refuses a coding.
    let missing = w
        .raw(
            "GET",
            &format!("/v1/contacts/{}", w.id("con", 1, 999_999)),
            &[
                ("authorization", token.as_str()),
                ("version", V),
                ("accept-encoding", "gzip, br"),
            ],
            None,
        )
        .await;
    missing.assert_problem(404, "not-found");
    assert_eq!(missing.header("content-encoding"), None);
    let refused = search("gzip;q=0, br;q=0").await;
    assert_eq!(refused.header("content-encoding"), None);
    assert_eq!(data(&refused.body), data(&plain.body));

    let m = w.metrics().await;
    assert!(
        sample(
            &m,
            "prospect_edge_response_compression_total{encoding=\"gzip\"}"
        )
        .unwrap_or(0.0)
            >= 2.0,
        "{m}"
    );
    assert!(
        sample(
            &m,
            "prospect_edge_response_compression_total{encoding=\"br\"}"
        )
        .unwrap_or(0.0)
            >= 2.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_and_the_document_revalidate_with_if_none_match() {
    let w = World::start().await;
    let token = format!("Bearer {}", w.token(1, 101));
    let path = format!("/v1/contacts/{}", w.id("con", 1, 1));
    let auth = [("authorization", token.as_str()), ("version", V)];
    let first = w.raw("GET", &path, &auth, None).await;
    assert_eq!(first.status, 200);
    let tag = first.header("etag").expect("an ETag").to_string();
    assert!(
        tag.starts_with('"') && tag.ends_with('"') && tag.len() == 34,
        "{tag}"
    );

    let cond = [auth[0], auth[1], ("if-none-match", tag.as_str())];
    let again = w.raw("GET", &path, &cond, None).await;
    assert_eq!(again.status, 304);
    assert!(again.body.is_empty());
    assert_eq!(again.header("etag"), Some(tag.as_str()));
    assert_eq!(again.header("trace-id").map(str::len), Some(32));
    let head = w.raw("HEAD", &path, &cond, None).await;
    assert_eq!(head.status, 304);

    // A change of the record changes the tag: the old one no longer matches.
    let changed = w
        .call(
            1,
            101,
            "PATCH",
            &path,
            Some(json!({"phone": "+1-555-0142"})),
        )
        .await;
    assert_eq!(
        changed.status,
        200,
        "{}",
        String::from_utf8_lossy(&changed.body)
    );
    assert!(
        changed.header("etag").is_none(),
        "writes carry no validator"
    );
    let after = w.raw("GET", &path, &cond, None).await;
    assert_eq!(after.status, 200);
    assert_ne!(after.header("etag"), Some(tag.as_str()));
    assert_eq!(after.json()["data"]["phone"], "+1-555-0142");

    // Searches have no validator: If-None-Match is ignored.
    let page = w
        .raw(
            "POST",
            "/v1/contacts/search",
            &[
                auth[0],
                auth[1],
                ("if-none-match", "*"),
                ("content-type", "application/json"),
            ],
            Some(b"{}".to_vec()),
        )
        .await;
    assert_eq!(page.status, 200);
    assert!(page.header("etag").is_none());

    // The OpenAPI document, per release; the coded representation has its own tag.
    let doc = w.raw("GET", "/v1/openapi.json", &[], None).await;
    let doc_tag = doc.header("etag").expect("document ETag").to_string();
    let old = w
        .raw("GET", "/v1/openapi.json?version=2026-05-01", &[], None)
        .await;
    assert_ne!(old.header("etag"), Some(doc_tag.as_str()));
    let gz = w
        .raw(
            "GET",
            "/v1/openapi.json",
            &[("accept-encoding", "gzip")],
            None,
        )
        .await;
    let gz_tag = gz.header("etag").expect("coded ETag").to_string();
    assert_eq!(gz_tag, format!("{}-gzip\"", doc_tag.trim_end_matches('"')));
    for inm in [doc_tag.as_str(), gz_tag.as_str()] {
        let r = w
            .raw("GET", "/v1/openapi.json", &[("if-none-match", inm)], None)
            .await;
        assert_eq!(r.status, 304, "{inm}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_is_allowed_wherever_get_is_and_a_traceresponse_is_sent() {
    let w = World::start().await;
    let token = format!("Bearer {}", w.token(1, 101));
    let path = format!("/v1/contacts/{}", w.id("con", 1, 1));
    let r = w
        .raw(
            "POST",
            &path,
            &[("authorization", token.as_str()), ("version", V)],
            None,
        )
        .await;
    r.assert_problem(405, "method-not-allowed");
    assert_eq!(r.header("allow"), Some("GET, HEAD, PATCH, DELETE"));
    let pipeline = format!("/v1/pipelines/{}", w.id("pipe", 1, 1));
    let r = w
        .raw(
            "DELETE",
            &pipeline,
            &[("authorization", token.as_str()), ("version", V)],
            None,
        )
        .await;
    assert_eq!(r.header("allow"), Some("GET, HEAD"));
    let r = w.raw("PUT", "/v1/openapi.json", &[], None).await;
    assert_eq!(r.header("allow"), Some("GET, HEAD"));

    // traceresponse: the caller's trace id and flags, this hop's own span id.
    let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let r = w
        .raw(
            "GET",
            &path,
            &[
                ("authorization", token.as_str()),
                ("version", V),
                ("traceparent", parent),
            ],
            None,
        )
        .await;
    let tr = r.header("traceresponse").expect("traceresponse");
    let parts: Vec<&str> = tr.split('-').collect();
    assert_eq!(parts.len(), 4, "{tr}");
    assert_eq!(parts[0], "00");
    assert_eq!(parts[1], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(parts[2].len(), 16);
    assert_ne!(parts[2], "00f067aa0ba902b7");
    assert_eq!(parts[3], "01");
}
