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

/// A free port below 55536 (a cluster's bus port defaults to the port + 10000; we name
/// it explicitly, but keep both low anyway).
fn free_low_port() -> u16 {
    loop {
        let p = free_port();
        if p < 55536 {
            return p;
        }
    }
}

/// One `redis-server` process.
pub struct OwnRedis {
    pub port: u16,
    child: Child,
    killed: bool,
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
        let port = free_low_port();
        let child = spawn(dir.path(), port, extra);
        OwnRedis::answering(port, child, dir, "redis-server")
    }

    /// The server just started on `port`, once it answers PING.
    fn answering(port: u16, child: Child, dir: tempdir::Dir, what: &str) -> OwnRedis {
        let r = OwnRedis {
            port,
            child,
            killed: false,
            _dir: dir,
        };
        assert!(
            r.wait_ping(Duration::from_secs(10)),
            "{what} on {port} did not answer PING"
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
        self.killed = true;
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

/// The value of `field` in an `INFO`-style answer (`field:value` lines).
pub fn info_field(answer: &str, field: &str) -> Option<String> {
    answer.lines().find_map(|l| {
        l.strip_prefix(field)
            .and_then(|r| r.strip_prefix(':'))
            .map(|v| v.trim().to_string())
    })
}

/// Polls `f` every 50 ms until it holds or the deadline passes.
pub fn wait_until(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + within;
    while Instant::now() < until {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// A Redis Cluster of this test's own: 3 masters and 3 replicas on free ports, every
/// process killed on drop (even when the test panics).
pub struct OwnCluster {
    pub nodes: Vec<OwnRedis>,
}

impl OwnCluster {
    pub fn start() -> OwnCluster {
        let nodes: Vec<OwnRedis> = (0..6)
            .map(|_| {
                let bus = free_low_port().to_string();
                OwnRedis::start_with(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "1000",
                    "--cluster-port",
                    &bus,
                ])
            })
            .collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("redis-cli --cluster create (is redis-tools installed?)");
        assert!(
            out.status.success(),
            "cluster create: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let c = OwnCluster { nodes };
        let ok = wait_until(Duration::from_secs(30), || {
            c.nodes.iter().all(|n| {
                command(n.port, &["CLUSTER", "INFO"])
                    .and_then(|i| info_field(&i, "cluster_state"))
                    .as_deref()
                    == Some("ok")
            }) && c.masters().len() == 3
                && c.masters().iter().all(|m| c.replica_of(*m).is_some())
        });
        assert!(ok, "the cluster did not reach cluster_state:ok");
        c
    }

    /// Seed URLs for the edge (every node).
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.url()).collect()
    }

    fn role(&self, port: u16) -> Option<String> {
        command(port, &["INFO", "replication"]).and_then(|i| info_field(&i, "role"))
    }

    /// Ports of the nodes that are masters now (a killed node is not asked).
    pub fn masters(&self) -> Vec<u16> {
        self.nodes
            .iter()
            .filter(|n| n.alive())
            .filter(|n| self.role(n.port).as_deref() == Some("master"))
            .map(|n| n.port)
            .collect()
    }

    /// The port of the replica that follows the master on `port`.
    pub fn replica_of(&self, port: u16) -> Option<u16> {
        let i = command(port, &["INFO", "replication"])?;
        let slave = info_field(&i, "slave0")?;
        slave
            .split(',')
            .find_map(|kv| kv.strip_prefix("port="))
            .and_then(|p| p.parse().ok())
    }

    pub fn node(&mut self, port: u16) -> &mut OwnRedis {
        self.nodes
            .iter_mut()
            .find(|n| n.port == port)
            .expect("a node of the cluster")
    }
}

/// A Sentinel group of this test's own: one master, one replica and three sentinels,
/// every process killed on drop.
pub struct OwnSentinels {
    pub master: OwnRedis,
    pub replica: OwnRedis,
    pub sentinels: Vec<OwnRedis>,
    pub name: String,
}

impl OwnSentinels {
    pub fn start(name: &str) -> OwnSentinels {
        let master = OwnRedis::start();
        let replica = OwnRedis::start_with(&["--replicaof", "127.0.0.1", &master.port.to_string()]);
        let sentinels: Vec<OwnRedis> = (0..3)
            .map(|_| OwnRedis::sentinel(name, master.port))
            .collect();
        let g = OwnSentinels {
            master,
            replica,
            sentinels,
            name: name.to_string(),
        };
        // Every sentinel knows the replica and the two other sentinels before a failover
        // is asked of them.
        let ok = wait_until(Duration::from_secs(30), || {
            g.sentinels.iter().all(|s| {
                let replicas = command(s.port, &["SENTINEL", "REPLICAS", name]);
                let peers = command(s.port, &["SENTINEL", "SENTINELS", name]);
                replicas.is_some_and(|r| r.starts_with("*1"))
                    && peers.is_some_and(|p| p.starts_with("*2"))
            })
        });
        assert!(
            ok,
            "the sentinels did not discover each other and the replica"
        );
        g
    }

    pub fn urls(&self) -> Vec<String> {
        self.sentinels.iter().map(|s| s.url()).collect()
    }

    /// The master's port as the first sentinel that answers sees it.
    pub fn master_port(&self) -> Option<u16> {
        self.sentinels.iter().find_map(|s| {
            let a = command(s.port, &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", &self.name])?;
            a.lines().nth(4)?.trim().parse().ok()
        })
    }
}

impl OwnRedis {
    /// A sentinel watching `name` at `master_port` (quorum 2, quick to decide).
    pub fn sentinel(name: &str, master_port: u16) -> OwnRedis {
        let dir = tempdir::Dir::new("sentinel");
        let port = free_low_port();
        let conf = dir.path().join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {}\n\
                 sentinel monitor {name} 127.0.0.1 {master_port} 2\n\
                 sentinel down-after-milliseconds {name} 500\n\
                 sentinel failover-timeout {name} 3000\n\
                 sentinel parallel-syncs {name} 1\n",
                dir.path().display()
            ),
        )
        .expect("sentinel.conf");
        let child = Command::new("redis-server")
            .arg(&conf)
            .arg("--sentinel")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server --sentinel");
        OwnRedis::answering(port, child, dir, "sentinel")
    }

    /// Whether the process still runs (not killed by the test).
    pub fn alive(&self) -> bool {
        !self.killed
    }
}
