//! A world per test: the legacy CRM simulator and a dev issuer in this process, the real
//! `prospect-edge` binary as a child process on ephemeral ports, and a small HTTP client.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use prospect_edge::seal::{InternalId, Sealer};
use prospect_edge::token::{self, Mint};
use serde_json::Value;

pub const ID_SECRET: &str = "test-only id secret, 32+ bytes long";
pub const CURSOR_SECRET: &str = "test-only cursor secret, 32+ bytes";
pub const V: &str = "2026-11-01";

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn demo_key() -> String {
    token::read_key(&repo().join("conf/demo/issuer-key.pem")).expect("demo key")
}

pub struct Edge {
    child: Child,
    pub public: SocketAddr,
    pub admin: SocketAddr,
    /// The public TLS listener, when the config has one.
    pub tls: Option<SocketAddr>,
    pub dir: tempdir::Dir,
}

impl Drop for Edge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Edge {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Polls until the process has exited (reaping it), or `None` after `within`.
    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let until = std::time::Instant::now() + within;
        while std::time::Instant::now() < until {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }
}

/// A minimal temp dir (removed on drop) so the tests need no extra crate.
pub mod tempdir {
    use std::path::{Path, PathBuf};

    pub struct Dir(PathBuf);

    impl Dir {
        pub fn new(tag: &str) -> Dir {
            let n: u64 = rand::random();
            let p = std::env::temp_dir().join(format!("prospect-edge-{tag}-{n:016x}"));
            std::fs::create_dir_all(&p).expect("temp dir");
            Dir(p)
        }
        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

pub struct World {
    /// The edge's config, to start more edges like it (several nodes, restarts).
    pub config: String,
    pub sim: legacy_sim::Sim,
    #[allow(dead_code)] // kept alive for the edge's JWKS fetches
    pub issuer: legacy_sim::issuer::Issuer,
    pub edge: Edge,
    pub sealer: Sealer,
    key: String,
    http: Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
}

/// Copies the shipped mappings into `dst` (tests that edit mappings work on the copy).
pub fn copy_mappings(dst: &Path) {
    std::fs::create_dir_all(dst).expect("mkdir");
    for e in std::fs::read_dir(repo().join("mappings")).expect("mappings") {
        let e = e.expect("entry");
        std::fs::copy(e.path(), dst.join(e.file_name())).expect("copy");
    }
}

pub fn edge_config(sim: &legacy_sim::Sim, jwks_url: &str, mappings: &Path) -> String {
    let mut ups = String::new();
    for (name, addr) in sim.services() {
        ups.push_str(&format!(
            "  {name}: {{ url: \"http://{addr}\", connect_timeout_ms: 500, timeout_ms: 5000 }}\n"
        ));
    }
    format!(
        "listen: 127.0.0.1:0\nadmin: 127.0.0.1:0\nthreads: 1\ngrace_period_seconds: 1\n\
         mappings: {}\npermissions_cache_seconds: 2\n\
         secrets:\n  ids: {{ demo_value: \"{ID_SECRET}\" }}\n  cursors: {{ demo_value: \"{CURSOR_SECRET}\" }}\n\
         upstreams:\n{ups}\
         issuers:\n  - issuer: {}\n    jwks_url: {jwks_url}\n    audience: {}\n    algorithms: [EdDSA, ES256, RS256]\n",
        mappings.display(),
        token::DEMO_ISSUER,
        token::DEMO_AUDIENCE
    )
}

/// `prospect-edge run` with `config` written into `dir` (its pid file there too, its
/// upgrade socket under a unique temp name), not yet started.
pub fn edge_command(dir: &Path, config: &str) -> Command {
    let conf = dir.join("edge.yaml");
    std::fs::write(&conf, config).expect("write config");
    let n: u64 = rand::random();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_prospect-edge"));
    cmd.arg("run")
        .arg("-c")
        .arg(&conf)
        .arg("--pid-file")
        .arg(dir.join("edge.pid"))
        .arg("--upgrade-sock")
        .arg(std::env::temp_dir().join(format!("pe-upgrade-{n:x}.sock")));
    cmd
}

/// Starts the edge binary with `config` and waits until its admin listener is ready.
pub fn spawn_edge(dir: tempdir::Dir, config: &str) -> Edge {
    let log = std::fs::File::create(dir.path().join("edge.log")).expect("log file");
    let mut child = edge_command(dir.path(), config)
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .expect("spawn prospect-edge");
    let mut line = String::new();
    if let Some(stdout) = child.stdout.take() {
        let _ = BufReader::new(stdout).read_line(&mut line);
    }
    let field = |k: &str| -> Option<SocketAddr> {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(k))
            .and_then(|u| {
                u.strip_prefix("http://")
                    .or_else(|| u.strip_prefix("https://"))
            })
            .and_then(|a| a.parse().ok())
    };
    if let (Some(public), Some(admin)) = (field("public="), field("admin=")) {
        // Poll readiness: no sleeps standing in for a signal.
        for _ in 0..500 {
            if ready(admin) && std::net::TcpStream::connect(public).is_ok() {
                return Edge {
                    child,
                    public,
                    admin,
                    tls: field("tls="),
                    dir,
                };
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let log = std::fs::read_to_string(dir.path().join("edge.log")).unwrap_or_default();
    panic!("edge did not become ready: {line:?}; log: {log}");
}

/// `GET /readyz` answers 200 (a blocking one-shot request: this runs before the client exists).
fn ready(admin: SocketAddr) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(admin) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /readyz HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf.starts_with("HTTP/1.1 200")
}

/// The value of one sample, by its exact name and label set as the text format prints it.
pub fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|l| {
        l.strip_prefix(series)
            .and_then(|rest| rest.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
    })
}

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    /// Asserts a problem+json answer of this status and slug, with a trace id.
    pub fn assert_problem(&self, status: u16, slug: &str) -> Value {
        assert_eq!(
            self.status,
            status,
            "body: {}",
            String::from_utf8_lossy(&self.body)
        );
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json")
        );
        let v = self.json();
        assert_eq!(
            v["type"],
            format!("https://papi.trendev.in/problems/{slug}"),
            "{v}"
        );
        assert_eq!(v["status"], status);
        assert_eq!(v["trace_id"].as_str().map(str::len), Some(32));
        assert_eq!(self.header("trace-id"), v["trace_id"].as_str());
        v
    }
}

impl World {
    pub async fn start() -> World {
        World::start_with(|_| {}).await
    }

    /// Starts everything; `edit` may change the copied mappings before the edge starts.
    pub async fn start_with(edit: impl FnOnce(&Path)) -> World {
        World::start_custom(edit, |_, _| {}).await
    }

    /// Starts everything; before the edge starts, `edit` may change the copied mappings
    /// and `prepare` may set up the issuer and append to the edge's config.
    pub async fn start_custom(
        edit: impl FnOnce(&Path),
        prepare: impl FnOnce(&legacy_sim::issuer::Issuer, &mut String),
    ) -> World {
        World::start_full(edit, |_, issuer, config| prepare(issuer, config)).await
    }

    /// Like [`World::start_custom`], `prepare` also seeing the simulator (to add upstreams
    /// of services outside the six, e.g. the dialect backends).
    pub async fn start_full(
        edit: impl FnOnce(&Path),
        prepare: impl FnOnce(&legacy_sim::Sim, &legacy_sim::issuer::Issuer, &mut String),
    ) -> World {
        let key = demo_key();
        let sim = legacy_sim::start(legacy_sim::SimConfig::default())
            .await
            .expect("simulator");
        let issuer =
            legacy_sim::issuer::start_issuer(token::jwks(&key, token::DEMO_KID).expect("jwks"))
                .await
                .expect("issuer");
        let dir = tempdir::Dir::new("edge");
        let mappings = dir.path().join("mappings");
        copy_mappings(&mappings);
        edit(&mappings);
        let mut config = edge_config(&sim, &issuer.jwks_url(), &mappings);
        prepare(&sim, &issuer, &mut config);
        // Off the runtime's threads, on a current-thread runtime (`#[tokio::test]`) too.
        let cfg = config.clone();
        let edge = tokio::task::spawn_blocking(move || spawn_edge(dir, &cfg))
            .await
            .expect("the edge starts");
        World {
            config,
            sim,
            issuer,
            edge,
            sealer: Sealer::new(ID_SECRET.as_bytes(), CURSOR_SECRET.as_bytes()),
            key,
            http: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    pub fn token(&self, tenant: u32, user: u64) -> String {
        token::mint(&self.key, &Mint::new(tenant, user)).expect("mint")
    }

    pub fn token_with(&self, m: &Mint) -> String {
        token::mint(&self.key, m).expect("mint")
    }

    /// The public id of an internal one, as the edge would seal it for `tenant`.
    pub fn id(&self, prefix: &str, tenant: u32, internal: i64) -> String {
        self.sealer
            .seal_id(prefix, tenant, 0, &InternalId::Int(internal))
    }

    /// Another edge process with the same config (same simulator, same Redis).
    pub fn another_edge(&self) -> Edge {
        let dir = tempdir::Dir::new("edge2");
        tokio::task::block_in_place(|| spawn_edge(dir, &self.config))
    }

    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Resp {
        self.raw_at(self.edge.public, method, path, headers, body)
            .await
    }

    pub async fn raw_at(
        &self,
        edge: SocketAddr,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Resp {
        let mut req = http::Request::builder()
            .method(method)
            .uri(format!("http://{edge}{path}"));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .expect("request");
        let resp = self.http.request(req).await.expect("edge answered");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        Resp {
            status,
            headers,
            body,
        }
    }

    /// `GET path` on the edge at `at` with a bearer `token` and the current version.
    pub async fn get_at(&self, at: SocketAddr, path: &str, token: &str) -> Resp {
        let auth = format!("Bearer {token}");
        self.raw_at(
            at,
            "GET",
            path,
            &[("authorization", &auth), ("version", V)],
            None,
        )
        .await
    }

    /// An authenticated JSON call as (tenant, user) with the current version.
    pub async fn call(
        &self,
        tenant: u32,
        user: u64,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Resp {
        let token = self.token(tenant, user);
        let auth = format!("Bearer {token}");
        let mut headers = vec![("authorization", auth.as_str()), ("version", V)];
        if body.is_some() {
            headers.push(("content-type", "application/json"));
        }
        self.raw(
            method,
            path,
            &headers,
            body.map(|b| serde_json::to_vec(&b).expect("json")),
        )
        .await
    }

    /// `GET /metrics` from the admin listener, as text.
    pub async fn metrics(&self) -> String {
        String::from_utf8_lossy(&self.admin("/metrics").await.body).to_string()
    }

    /// A counter's value now (0 while it has no sample yet).
    pub async fn counter(&self, series: &str) -> u64 {
        sample(&self.metrics().await, series).map_or(0, |v| v as u64)
    }

    /// Sends the edge SIGHUP (reload mappings and the TLS certificate).
    pub fn hup(&self) {
        let ok = std::process::Command::new("kill")
            .args(["-HUP", &self.edge.pid().to_string()])
            .status()
            .expect("kill");
        assert!(ok.success());
    }

    pub async fn admin(&self, path: &str) -> Resp {
        let req = http::Request::builder()
            .uri(format!("http://{}{}", self.edge.admin, path))
            .body(Full::new(Bytes::new()))
            .expect("request");
        let resp = self.http.request(req).await.expect("admin answered");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        Resp {
            status,
            headers,
            body,
        }
    }
}
