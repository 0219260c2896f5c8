//! `prospect-edge demo`, as a newcomer runs it: the banner's own commands work (a regression
//! once sent every demo call to a placeholder URL, and only the CI scripts noticed).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

use crate::harness::repo;

struct Demo(Child);

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One HTTP/1.1 exchange on a fresh connection: (status, body).
fn get(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Value) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut req = format!("{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("content-length: {}\r\n\r\n{body}", body.len()));
    s.write_all(req.as_bytes()).expect("write");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read");
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").expect("a head");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status");
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

#[test]
fn the_demo_serves_what_its_banner_says() {
    let log = std::env::temp_dir().join(format!("pe-demo-{:x}.log", rand::random::<u64>()));
    let mut child = Command::new(env!("CARGO_BIN_EXE_prospect-edge"))
        .current_dir(repo())
        .args([
            "demo",
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            "--log-file",
        ])
        .arg(&log)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the demo");
    let stdout = child.stdout.take().expect("stdout");
    let demo = Demo(child);
    // The banner, up to the line the server prints once it listens.
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let done = line.contains("listening public=");
            if tx.send(line).is_err() || done {
                break;
            }
        }
    });
    let mut banner = Vec::new();
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(60)) {
        let done = line.contains("listening public=");
        banner.push(line);
        if done {
            break;
        }
    }
    let text = banner.join("\n");
    let after = |key: &str| -> String {
        let i = text
            .find(key)
            .unwrap_or_else(|| panic!("no {key} in the banner:\n{text}"));
        text[i + key.len()..]
            .split(|c: char| c.is_whitespace() || c == '\'')
            .next()
            .expect("value")
            .to_string()
    };
    let token = after("export TOKEN='");
    let version = after("-H 'Version: ");
    let public: SocketAddr = after("public=http://").parse().expect("public address");
    let admin: SocketAddr = after("admin=http://").parse().expect("admin address");
    let contact_url = after("curl -s http://");
    let contact_path = &contact_url[contact_url.find('/').expect("a path")..];

    // Readiness: polled, not slept on.
    let ready = (0..600).any(|_| {
        let ok =
            TcpStream::connect(admin).is_ok() && get(admin, "GET", "/readyz", &[], "").0 == 200;
        if !ok {
            std::thread::sleep(Duration::from_millis(50));
        }
        ok
    });
    assert!(ready, "the demo never became ready:\n{text}");
    let auth = format!("Bearer {token}");
    let h = [
        ("authorization", auth.as_str()),
        ("version", version.as_str()),
    ];
    let (status, got) = get(public, "GET", contact_path, &h, "");
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["data"]["email"], "ada.lovelace1@example.com");
    let mut hj = h.to_vec();
    hj.push(("content-type", "application/json"));
    let (status, page) = get(
        public,
        "POST",
        "/v1/contacts/search",
        &hj,
        r#"{"limit": 2}"#,
    );
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["data"].as_array().map(Vec::len), Some(2));
    assert!(page["meta"]["cursor"].is_string());
    let (status, doc) = get(public, "GET", "/v1/openapi.json", &[], "");
    assert_eq!(status, 200);
    assert!(doc["paths"].as_object().is_some_and(|p| !p.is_empty()));
    // The logs went to the file the banner names, not over the banner.
    assert!(text.contains(&log.display().to_string()), "{text}");
    drop(demo);
    let _ = std::fs::remove_file(&log);
}
