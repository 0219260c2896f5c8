//! Redis servers of a test's own (`redis-server` on free ports, removed on drop), for the
//! tests that stall, kill or cluster Redis: never the shared one on 6379.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::tempdir;

/// A free local port (bound, read, released: the server binds it right after).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// One `redis-server` process.
pub struct OwnRedis {
    pub port: u16,
    child: Child,
    _dir: tempdir::Dir,
}

impl OwnRedis {
    /// A plain server without persistence.
    pub fn start() -> OwnRedis {
        OwnRedis::start_with(&[])
    }

    /// A server with extra `redis-server` arguments (e.g. `--cluster-enabled yes`).
    pub fn start_with(extra: &[&str]) -> OwnRedis {
        let dir = tempdir::Dir::new("redis");
        let port = free_port();
        let child = spawn(dir.path(), port, extra);
        let r = OwnRedis {
            port,
            child,
            _dir: dir,
        };
        assert!(
            r.wait_ping(Duration::from_secs(10)),
            "redis-server on {port} did not answer PING"
        );
        r
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.pid().to_string()])
            .status()
            .expect("kill");
        assert!(ok.success());
    }

    /// SIGSTOP: the server stalls (its sockets stay open, nothing is answered).
    pub fn stall(&self) {
        self.signal("-STOP");
    }

    /// SIGCONT: the stalled server carries on with what was queued.
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    /// Polls `PING` until `+PONG` or the deadline.
    pub fn wait_ping(&self, within: Duration) -> bool {
        let until = Instant::now() + within;
        while Instant::now() < until {
            if command(self.port, &["PING"]).is_some_and(|r| r.starts_with("+PONG")) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Kills the server at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-CONT", &self.child.id().to_string()])
            .status();
        self.kill();
    }
}

fn spawn(dir: &Path, port: u16, extra: &[&str]) -> Child {
    Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            &dir.display().to_string(),
        ])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn redis-server (is it installed?)")
}

/// One RESP command over a fresh connection; the raw first answer, or `None`.
pub fn command(port: u16, args: &[&str]) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let mut req = format!("*{}\r\n", args.len());
    for a in args {
        req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    s.write_all(req.as_bytes()).ok()?;
    let mut buf = [0u8; 65536];
    let n = s.read(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).to_string())
}
