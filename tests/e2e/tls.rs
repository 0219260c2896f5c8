//! TLS with a CA made at test time: the public TLS listener (HTTP/1.1 and HTTP/2 by ALPN,
//! the same answers as plain HTTP, the certificate re-read on SIGHUP without dropping
//! established connections) and the edge's own HTTPS calls to the issuer.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{Resp, World, V};

/// A certificate authority made for one test.
pub(crate) struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

/// A leaf certificate for 127.0.0.1: (chain PEM, key PEM, leaf DER).
pub(crate) struct Leaf {
    chain: String,
    key: String,
    der: Vec<u8>,
}

impl Ca {
    pub(crate) fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().expect("ca key");
        let cert = params.self_signed(&key).expect("ca cert");
        Ca { cert, key }
    }

    pub(crate) fn pem(&self) -> String {
        self.cert.pem()
    }

    pub(crate) fn leaf(&self, common_name: &str) -> Leaf {
        let mut params = CertificateParams::new(vec!["localhost".to_string()]).expect("params");
        params
            .subject_alt_names
            .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        let key = KeyPair::generate().expect("leaf key");
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("leaf cert");
        Leaf {
            chain: format!("{}{}", cert.pem(), self.cert.pem()),
            key: key.serialize_pem(),
            der: cert.der().to_vec(),
        }
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

pub(crate) fn client_config(ca_pem: &str, alpn: &[&[u8]]) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.expect("ca pem")).expect("ca");
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    cfg
}

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// A client that trusts only `ca_pem` and speaks HTTP/2 (`h2`) or HTTP/1.1 over TLS.
fn https_client(ca_pem: &str, h2: bool) -> HttpsClient {
    let builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(client_config(ca_pem, &[]))
        .https_only();
    let conn = if h2 {
        builder.enable_http2().build()
    } else {
        builder.enable_http1().build()
    };
    Client::builder(TokioExecutor::new())
        .http2_only(h2)
        .build(conn)
}

async fn send(
    client: &HttpsClient,
    url: &str,
    method: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> (http::Version, Resp) {
    let mut req = http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let body = body
        .map(|b| Bytes::from(serde_json::to_vec(&b).expect("json")))
        .unwrap_or_default();
    let resp = client
        .request(req.body(Full::new(body)).expect("request"))
        .await
        .expect("edge answered over TLS");
    let version = resp.version();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (
        version,
        Resp {
            status,
            headers,
            body,
        },
    )
}

/// The body without what differs per request by design (the trace id; a cursor's random
/// nonce), to compare answers across transports.
fn comparable(r: &Resp) -> (u16, Value) {
    let mut v = r.json();
    if let Some(o) = v.as_object_mut() {
        o.remove("trace_id");
    }
    if let Some(c) = v.pointer_mut("/meta/cursor") {
        if c.is_string() {
            *c = Value::from("(a cursor)");
        }
    }
    (r.status, v)
}

fn write_pair(dir: &Path, leaf: &Leaf) {
    std::fs::write(dir.join("edge.crt"), &leaf.chain).expect("write cert");
    std::fs::write(dir.join("edge.key"), &leaf.key).expect("write key");
}

/// A world whose edge also listens with TLS, serving the pair in the returned directory
/// (the test swaps files there, as certbot would).
async fn start_tls_world(leaf: &Leaf) -> (World, crate::harness::tempdir::Dir) {
    start_tls_world_with(leaf, "").await
}

/// The same, with `extra` appended to the edge's config.
pub(crate) async fn start_tls_world_with(
    leaf: &Leaf,
    extra: &str,
) -> (World, crate::harness::tempdir::Dir) {
    let tls_dir = crate::harness::tempdir::Dir::new("tls");
    write_pair(tls_dir.path(), leaf);
    let dir = tls_dir.path().to_path_buf();
    let w = World::start_custom(
        |_| {},
        |_, config| {
            config.push_str(&format!(
                "tls:\n  listen: 127.0.0.1:0\n  cert_file: {}\n  key_file: {}\n",
                dir.join("edge.crt").display(),
                dir.join("edge.key").display()
            ));
            config.push_str(extra);
        },
    )
    .await;
    (w, tls_dir)
}

/// The certificate a fresh TLS handshake with the edge is served, and the ALPN chosen.
async fn served(addr: SocketAddr, ca_pem: &str) -> (Vec<u8>, Option<Vec<u8>>) {
    let cfg = client_config(ca_pem, &[b"h2", b"http/1.1"]);
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::IpAddress(Ipv4Addr::LOCALHOST.into()), tcp)
        .await
        .expect("handshake");
    let (_, conn) = tls.get_ref();
    let cert = conn
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.to_vec())
        .unwrap_or_default();
    (cert, conn.alpn_protocol().map(<[u8]>::to_vec))
}

async fn tls_reloads(w: &World, outcome: &str) -> u64 {
    w.counter(&format!(
        "prospect_edge_tls_certificate_reloads_total{{outcome=\"{outcome}\"}}"
    ))
    .await
}

async fn wait_for_reload(w: &World, outcome: &str, n: u64) {
    for _ in 0..500 {
        if tls_reloads(w, outcome).await >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no {outcome} TLS reload seen");
}

/// One HTTP/1.1 keep-alive exchange on an open TLS stream: the status and the body.
async fn exchange<S>(stream: &mut S, head: &str) -> (u16, Vec<u8>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    stream.write_all(head.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk))
            .await
            .expect("answer in time")
            .expect("read");
        assert!(
            n > 0,
            "connection closed: {}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .expect("content-length");
        if buf.len() >= end + 4 + len {
            let status = head[9..12].parse().expect("status");
            return (status, buf[end + 4..end + 4 + len].to_vec());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_and_http2_over_tls_answer_as_plain_http_does() {
    let ca = Ca::new("prospect-edge test CA");
    let leaf = ca.leaf("edge one");
    let (w, _certs) = start_tls_world(&leaf).await;
    let tls = w.edge.tls.expect("the edge printed its TLS listener");

    // ALPN: h2 preferred, HTTP/1.1 allowed; TLS 1.3 negotiated by a modern client.
    let (cert, alpn) = served(tls, &ca.pem()).await;
    assert_eq!(cert, leaf.der);
    assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));

    let token = w.token(1, 101);
    let auth = format!("Bearer {token}");
    let headers = [
        ("authorization", auth.as_str()),
        ("version", V),
        ("content-type", "application/json"),
    ];
    let h1 = https_client(&ca.pem(), false);
    let h2 = https_client(&ca.pem(), true);
    let base = format!("https://{tls}");
    let one = format!("/v1/contacts/{}", w.id("con", 1, 1));
    let missing = format!("/v1/contacts/{}", w.id("con", 1, 999_999_999));
    let search = json!({"filters": [{"field": "lifecycle_stage", "operator": "eq", "value": "lead"}], "limit": 3});
    // A record, a problem from the upstream's 404, a problem of the edge's own, a search.
    let cases: [(&str, &str, Option<Value>, u16); 4] = [
        ("GET", one.as_str(), None, 200),
        ("GET", missing.as_str(), None, 404),
        ("GET", "/v1/contacts", None, 405),
        ("POST", "/v1/contacts/search", Some(search), 200),
    ];
    for (method, path, body, status) in cases {
        let bytes = body.as_ref().map(|b| serde_json::to_vec(b).expect("json"));
        let plain = w.raw(method, path, &headers, bytes).await;
        assert_eq!(plain.status, status, "{plain:?}");
        let url = format!("{base}{path}");
        let (v1, r1) = send(&h1, &url, method, &headers, body.clone()).await;
        let (v2, r2) = send(&h2, &url, method, &headers, body.clone()).await;
        assert_eq!(v1, http::Version::HTTP_11);
        assert_eq!(v2, http::Version::HTTP_2);
        assert_eq!(
            comparable(&r1),
            comparable(&plain),
            "{method} {path} over HTTP/1.1"
        );
        assert_eq!(
            comparable(&r2),
            comparable(&plain),
            "{method} {path} over HTTP/2"
        );
        for r in [&r1, &r2] {
            assert_eq!(r.header("content-type"), plain.header("content-type"));
            assert_eq!(r.header("trace-id").map(str::len), Some(32));
        }
        // A cursor handed out over HTTP/2 opens the same next page as a plain one.
        if let (Some(c2), Some(cp)) = (
            r2.json()["meta"]["cursor"].as_str(),
            plain.json()["meta"]["cursor"].as_str(),
        ) {
            let (_, next2) = send(&h2, &url, method, &headers, Some(json!({"cursor": c2}))).await;
            let bytes = serde_json::to_vec(&json!({"cursor": cp})).expect("json");
            let next_plain = w.raw(method, path, &headers, Some(bytes)).await;
            assert_eq!(next2.status, 200, "{next2:?}");
            assert_eq!(comparable(&next2), comparable(&next_plain));
        }
    }

    // A write over HTTP/2 (request body in DATA frames) lands once, like over HTTP/1.1.
    let (_, created) = send(
        &h2,
        &format!("{base}/v1/contacts"),
        "POST",
        &headers,
        Some(json!({"email": "tls-h2@example.com", "first_name": "Tee", "last_name": "Ls"})),
    )
    .await;
    assert_eq!(created.status, 201, "{created:?}");
    let id = created.json()["data"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let again = w
        .call(1, 101, "GET", &format!("/v1/contacts/{id}"), None)
        .await;
    assert_eq!(again.json()["data"]["email"], "tls-h2@example.com");

    // A client without the CA is refused by its own verification: the listener serves the
    // configured chain only.
    let stranger = https_client(&Ca::new("someone else").pem(), false);
    let req = http::Request::get(format!("{base}{one}"))
        .body(Full::new(Bytes::new()))
        .expect("request");
    assert!(stranger.request(req).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_swapped_on_disk_is_served_after_reload_without_dropping_connections() {
    let ca = Ca::new("prospect-edge test CA");
    let first = ca.leaf("edge first");
    let (w, certs) = start_tls_world(&first).await;
    let tls = w.edge.tls.expect("tls listener");
    let token = w.token(1, 101);
    let one = format!("/v1/contacts/{}", w.id("con", 1, 1));
    let request = format!(
        "GET {one} HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer {token}\r\nversion: {V}\r\n\r\n"
    );

    // A keep-alive connection opened before the swap.
    let tcp = tokio::net::TcpStream::connect(tls).await.expect("connect");
    let mut open =
        tokio_rustls::TlsConnector::from(Arc::new(client_config(&ca.pem(), &[b"http/1.1"])))
            .connect(ServerName::IpAddress(Ipv4Addr::LOCALHOST.into()), tcp)
            .await
            .expect("handshake");
    let (status, before) = exchange(&mut open, &request).await;
    assert_eq!(status, 200);

    // New certificate on disk (as certbot would write it), then a reload.
    let second = ca.leaf("edge second");
    write_pair(certs.path(), &second);
    w.hup();
    wait_for_reload(&w, "ok", 1).await;
    let (cert, _) = served(tls, &ca.pem()).await;
    assert_eq!(cert, second.der, "new handshakes get the new certificate");
    assert_ne!(second.der, first.der);

    // The connection from before the reload still works, with the certificate it had.
    let (status, after) = exchange(&mut open, &request).await;
    assert_eq!(status, 200);
    assert_eq!(after, before);
    let (_, conn) = open.get_ref();
    assert_eq!(
        conn.peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.to_vec()),
        Some(first.der.clone())
    );

    // A broken key on disk: the reload is refused and the second certificate stays.
    std::fs::write(
        certs.path().join("edge.key"),
        "-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n",
    )
    .expect("write");
    w.hup();
    wait_for_reload(&w, "refused", 1).await;
    let (cert, _) = served(tls, &ca.pem()).await;
    assert_eq!(cert, second.der);
    // And a key that belongs to another certificate is refused too.
    let third = ca.leaf("edge third");
    std::fs::write(certs.path().join("edge.crt"), &third.chain).expect("write");
    std::fs::write(certs.path().join("edge.key"), &first.key).expect("write");
    w.hup();
    wait_for_reload(&w, "refused", 2).await;
    let (cert, _) = served(tls, &ca.pem()).await;
    assert_eq!(cert, second.der);
    assert_eq!(tls_reloads(&w, "ok").await, 1);
}

/// A TLS front for a plain-HTTP service (the test issuer): what an https JWKS or
/// introspection endpoint looks like to the edge.
fn tls_front(target: SocketAddr, leaf: &Leaf) -> SocketAddr {
    let certs: Vec<_> = CertificateDer::pem_slice_iter(leaf.chain.as_bytes())
        .map(|c| c.expect("cert"))
        .collect();
    let key = PrivateKeyDer::from_pem_slice(leaf.key.as_bytes()).expect("key");
    let cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    std_listener.set_nonblocking(true).expect("nonblocking");
    let addr = std_listener.local_addr().expect("addr");
    let listener = tokio::net::TcpListener::from_std(std_listener).expect("listener");
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut up) = tokio::net::TcpStream::connect(target).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_and_introspection_are_fetched_over_https_from_a_private_ca() {
    let ca = Ca::new("issuer test CA");
    let leaf = ca.leaf("issuer");
    let ca_dir = crate::harness::tempdir::Dir::new("ca");
    let ca_file = ca_dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).expect("write ca");
    let w = World::start_custom(
        |_| {},
        |issuer, config| {
            let front = tls_front(issuer.addr(), &leaf);
            let https = |url: String| {
                let path = url.splitn(4, '/').nth(3).unwrap_or_default().to_string();
                format!("https://{front}/{path}")
            };
            let jwks = issuer.jwks_url();
            *config = config.replace(&jwks, &https(jwks.clone()));
            assert!(config.contains("jwks_url: https://"), "{config}");
            config.push_str(&format!(
                "auth_ca_file: {}\nintrospection:\n  url: {}\n  client_id: edge-client\n  client_secret: {{ demo_value: s3cret }}\n",
                ca_file.display(),
                https(issuer.introspection_url())
            ));
        },
    )
    .await;
    // The edge became ready, so it loaded the keys over HTTPS; a JWT is accepted.
    let r = w
        .call(
            1,
            101,
            "GET",
            &format!("/v1/contacts/{}", w.id("con", 1, 1)),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let ready = w.admin("/readyz").await.json();
    assert_eq!(ready["jwks"][0]["last_fetch_ok"], true, "{ready}");

    // An opaque token is introspected over HTTPS too.
    let exp = chrono::Utc::now().timestamp() + 3600;
    w.issuer.set_introspection(
        "opaque-over-tls",
        json!({"active": true, "sub": "101", "client_id": "c1", "tid": 1, "scope": "contact.read", "exp": exp, "iss": prospect_edge::token::DEMO_ISSUER}),
    );
    let r = w
        .raw(
            "GET",
            &format!("/v1/contacts/{}", w.id("con", 1, 1)),
            &[("authorization", "Bearer opaque-over-tls"), ("version", V)],
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(w.issuer.introspections(), 1);
}

async fn handshakes(w: &World, outcome: &str) -> u64 {
    w.counter(&format!(
        "prospect_edge_tls_handshakes_total{{outcome=\"{outcome}\"}}"
    ))
    .await
}

/// Reads until the edge closes the connection; what it sent (nothing expected).
async fn until_closed(tcp: &mut tokio::net::TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_secs(20), tcp.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return got,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => panic!("the edge kept a stalled handshake open for 20 s"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_tls_handshake_is_dropped_at_the_header_deadline() {
    let ca = Ca::new("prospect-edge test CA");
    let leaf = ca.leaf("edge");
    let (w, _certs) = start_tls_world_with(&leaf, "client_header_timeout_ms: 300\n").await;
    let tls = w.edge.tls.expect("tls listener");

    // Connects and sends nothing; then one that stops inside its ClientHello record.
    let mut silent = tokio::net::TcpStream::connect(tls).await.expect("connect");
    let mut partial = tokio::net::TcpStream::connect(tls).await.expect("connect");
    partial
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .await
        .expect("write");
    let started = std::time::Instant::now();
    assert!(until_closed(&mut silent).await.is_empty());
    assert!(until_closed(&mut partial).await.is_empty());
    // Closed by the deadline, not by some other bound (pingora's 60 s read timeout).
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    for _ in 0..200 {
        if handshakes(&w, "timeout").await >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(handshakes(&w, "timeout").await, 2);

    // A client that completes its handshake in time is served, also past the deadline.
    let (cert, _) = served(tls, &ca.pem()).await;
    assert_eq!(cert, leaf.der);
    let h1 = https_client(&ca.pem(), false);
    let token = w.token(1, 101);
    let auth = format!("Bearer {token}");
    let (_, r) = send(
        &h1,
        &format!("https://{tls}/v1/contacts/{}", w.id("con", 1, 1)),
        "GET",
        &[("authorization", auth.as_str()), ("version", V)],
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(handshakes(&w, "ok").await >= 2);
}
