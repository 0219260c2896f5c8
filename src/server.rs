//! Starting the edge: config + mappings compiled, the pingora server with the public and
//! admin listeners, the background task that loads JWKS and reloads mappings on SIGHUP.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::listeners::{L4BufferSettings, ListenerConfig};
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::{ExecutionPhase, Server, ShutdownWatch};
use pingora::services::background::{background_service, BackgroundService};
use pingora::services::listening::Service;

use crate::admin::Admin;
use crate::bounds::Bounded;
use crate::config::EdgeConfig;
use crate::diag::Diags;
use crate::head_guard::Guarded;
use crate::mapping;
use crate::pipeline::{Edge, Runtime};

/// Flags passed through to pingora (systemd uses them for upgrades and daemons).
#[derive(Debug, Clone, Default)]
pub struct PingoraFlags {
    pub upgrade: bool,
    pub daemon: bool,
    pub pid_file: Option<String>,
    pub upgrade_sock: Option<String>,
}

/// Loads the edge config and its mappings, reporting every error of both.
pub fn load(path: &Path) -> Result<(EdgeConfig, mapping::Plan), Diags> {
    let cfg = EdgeConfig::load(path);
    // Even when the edge config has errors, its mappings are checked too: all at once.
    let (dir, names): (_, Vec<String>) = match &cfg {
        Ok(c) => (
            c.mappings_dir.clone(),
            c.upstreams.keys().cloned().collect(),
        ),
        Err(_) => match crate::config::mapping_hint(path) {
            Some(h) => h,
            None => return Err(cfg.err().unwrap_or_default()),
        },
    };
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let plan = mapping::load_dir(
        &dir,
        &mapping::Context {
            upstream_names: names,
        },
    );
    match (cfg, plan) {
        (Ok(c), Ok(p)) => Ok((c, p)),
        (c, p) => {
            let mut d = c.err().unwrap_or_default();
            if let Err(pd) = p {
                d.extend(pd);
            }
            Err(d)
        }
    }
}

/// A configured port 0 becomes a free port now, so it can be printed and reached.
/// A free port for an address with port 0. The probe listener is kept in `held` until every
/// listener's port is chosen: closed at once, the next probe could be given the same port
/// (seen in the e2e suite: public and admin on one port, the public bind failing).
fn concrete(addr: SocketAddr, held: &mut Vec<TcpListener>) -> std::io::Result<SocketAddr> {
    if addr.port() != 0 {
        return Ok(addr);
    }
    let l = TcpListener::bind(addr)?;
    let a = l.local_addr();
    held.push(l);
    a
}

struct Background {
    rt: Arc<Runtime>,
    /// pingora's execution phases, watched from this service's runtime (so that it also
    /// works after `-d` forked: a thread started before would not survive the fork).
    phases: std::sync::Mutex<Option<tokio::sync::broadcast::Receiver<ExecutionPhase>>>,
}

/// The next SIGHUP; never, when signals could not be set up.
async fn next_hup(hup: &mut Option<tokio::signal::unix::Signal>) -> Option<()> {
    match hup {
        Some(h) => h.recv().await,
        None => std::future::pending().await,
    }
}

#[async_trait]
impl BackgroundService for Background {
    /// Loads the issuers' keys, then until shutdown: reloads the mappings on every SIGHUP
    /// and refreshes each issuer's JWKS before it expires.
    async fn start(&self, mut shutdown: ShutdownWatch) {
        // The handler goes in first: SIGHUP's default action would end the process.
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .map_err(|_| tracing::error!("cannot listen for SIGHUP; mapping reload is disabled"))
            .ok();
        let phases = self.phases.lock().ok().and_then(|mut p| p.take());
        if let Some(phases) = phases {
            tokio::spawn(watch_draining(phases, self.rt.clone()));
        }
        // Active health checks of every instance of every legacy service.
        let rt = self.rt.clone();
        let checks = tokio::spawn(async move {
            rt.upstreams
                .health_checks(crate::upstream::HEALTH_INTERVAL)
                .await
        });
        let n = self.rt.auth.refresh_all().await;
        tracing::info!(issuers_with_keys = n, "JWKS loaded");
        self.rt
            .ready
            .store(true, std::sync::atomic::Ordering::Release);
        loop {
            tokio::select! {
                Some(()) = next_hup(&mut hup) => {
                    match self.rt.reload() {
                        Ok(n) => tracing::info!(resources = n, "mappings reloaded"),
                        Err(d) => tracing::error!(errors = %d.render(), "mapping reload refused; the previous mappings keep serving"),
                    }
                    match self.rt.reload_certificate() {
                        Ok(true) => tracing::info!("TLS certificate reloaded"),
                        Ok(false) => {}
                        Err(e) => tracing::error!(error = %e, "TLS certificate reload refused; the previous certificate keeps serving"),
                    }
                }
                _ = tokio::time::sleep(self.rt.auth.next_refresh_in()) => {
                    self.rt.auth.refresh_due().await;
                }
                _ = shutdown.changed() => {
                    checks.abort();
                    return;
                }
            }
        }
    }
}

/// Marks the runtime as draining as soon as pingora starts an upgrade (SIGQUIT: the 5 s
/// socket handover window comes before its own shutdown broadcast) or a graceful stop.
async fn watch_draining(
    mut phases: tokio::sync::broadcast::Receiver<ExecutionPhase>,
    rt: Arc<Runtime>,
) {
    loop {
        match phases.recv().await {
            Ok(
                ExecutionPhase::GracefulUpgradeTransferringFds
                | ExecutionPhase::GracefulUpgradeCloseTimeout
                | ExecutionPhase::GracefulTerminate
                | ExecutionPhase::ShutdownStarted,
            ) => {
                rt.draining
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                // The buffered access lines are written before the process can exit.
                crate::access_log::unbuffer();
                tracing::info!("draining: answers now close their connections");
            }
            Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// Runs the edge until SIGTERM/SIGINT (or SIGQUIT for an upgrade).
pub fn run(mut cfg: EdgeConfig, plan: mapping::Plan, flags: PingoraFlags) -> std::io::Result<()> {
    crate::access_log::buffer(cfg.access_log_buffer_bytes, cfg.access_log_flush);
    if !flags.upgrade {
        // pingora builds each listener in its service's own thread and only that thread
        // dies when a bind fails: the process would stay up, the admin listener ready, the
        // public one absent. A configured address that is taken stops the start here. (An
        // upgrade inherits the old process's sockets instead of binding.)
        let tls = cfg.tls.as_ref().map(|t| t.listen);
        for addr in [Some(cfg.listen), Some(cfg.admin), tls]
            .into_iter()
            .flatten()
        {
            if addr.port() != 0 {
                TcpListener::bind(addr).map_err(|e| {
                    std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}"))
                })?;
            }
        }
    }
    let mut held = Vec::new();
    cfg.listen = concrete(cfg.listen, &mut held)?;
    cfg.admin = concrete(cfg.admin, &mut held)?;
    if let Some(t) = cfg.tls.as_mut() {
        t.listen = concrete(t.listen, &mut held)?;
    }
    drop(held);
    let conf = ServerConf {
        threads: cfg.threads,
        grace_period_seconds: Some(cfg.grace_period.as_secs()),
        graceful_shutdown_timeout_seconds: Some(cfg.grace_period.as_secs().max(1)),
        pid_file: flags
            .pid_file
            .clone()
            .unwrap_or_else(|| "/tmp/prospect-edge.pid".into()),
        upgrade_sock: flags
            .upgrade_sock
            .clone()
            .unwrap_or_else(|| "/tmp/prospect-edge-upgrade.sock".into()),
        daemon: flags.daemon,
        ..ServerConf::default()
    };
    let opt = Opt {
        upgrade: flags.upgrade,
        daemon: flags.daemon,
        ..Opt::default()
    };
    crate::metrics::init();
    let mut server = Server::new_with_opt_and_conf(opt, conf);
    server.bootstrap();
    let (listen, admin_addr) = (cfg.listen, cfg.admin);
    let rt = Arc::new(Runtime::new(cfg, plan).map_err(|e| std::io::Error::other(e.to_string()))?);
    // The proxy app runs with the listener bounds (write deadlines, HTTP/2 streams and
    // buffers, pipelining: see `bounds`) behind the head guard (whole-head deadline, see
    // `head_guard`).
    crate::bounds::init_metrics();
    let bounds = rt.cfg.client_bounds.clone();
    let h2_streams = crate::bounds::h2_stream_slots(&bounds);
    let proxy = Arc::new(Bounded::new(
        Edge::new(rt.clone()),
        bounds.clone(),
        h2_streams.clone(),
    ));
    let mut public = Service::new(
        "public".to_string(),
        Guarded {
            app: proxy,
            rt: rt.clone(),
        },
    );
    // No L4 read buffer: pingora's default is 64 KiB per connection and one more copy of
    // every request (−6 MiB peak RSS at 1,000 connections); HTTP/1 headers are read into
    // pingora's own 4 KiB buffer anyway.
    // Keep-alive probes and the kernel's own write deadline on every accepted socket
    // (`bounds::accepted_socket_options`).
    let socket_options = crate::bounds::accepted_socket_options(&bounds);
    public.add_listener(
        ListenerConfig::tcp(listen.to_string())
            .tcp_socket_options(socket_options.clone())
            .l4_buffer(L4BufferSettings::default().read(0)),
    );
    let mut public_tls = None;
    if let (Some(t), Some(certs)) = (&rt.cfg.tls, &rt.certs) {
        // A plain TCP listener whose connections the edge's TLS front handshakes (with a
        // deadline) before pingora's HTTP app reads them.
        let acceptor = crate::tls::acceptor(certs.clone())
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let proxy = Arc::new(Bounded::new(Edge::new(rt.clone()), bounds, h2_streams));
        let mut service = Service::new(
            "public-tls".to_string(),
            crate::tls::TlsFront {
                h1: Arc::new(Guarded {
                    app: proxy.clone(),
                    rt: rt.clone(),
                }),
                h2: proxy,
                acceptor,
                handshake_timeout: rt.cfg.client_header_timeout,
            },
        );
        service.add_listener(
            ListenerConfig::tcp(t.listen.to_string())
                .tcp_socket_options(socket_options)
                .l4_buffer(L4BufferSettings::default().read(0)),
        );
        public_tls = Some((service, t.listen));
    }
    let mut admin = Service::new("admin".to_string(), Admin { rt: rt.clone() });
    admin.add_tcp(&admin_addr.to_string());
    server.add_service(public);
    let mut tls_note = String::new();
    if let Some((service, addr)) = public_tls {
        server.add_service(service);
        tls_note = format!(" tls=https://{addr}");
    }
    server.add_service(admin);
    let phases = std::sync::Mutex::new(Some(server.watch_execution_phase()));
    server.add_service(background_service("background", Background { rt, phases }));
    println!("prospect-edge listening public=http://{listen} admin=http://{admin_addr}{tls_note}");
    server.run(pingora::server::RunArgs::default());
    // Give pingora's runtimes a moment to wind down their last connections.
    std::thread::sleep(Duration::from_millis(10));
    Ok(())
}
