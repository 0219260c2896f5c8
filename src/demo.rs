//! `prospect-edge demo`: the reference legacy CRM (all six services, seeded), a dev token
//! issuer serving its JWKS, and the edge in front of them — all on loopback.

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;

use prospect_edge::server::{self, PingoraFlags};
use prospect_edge::token::{self, Mint};

struct World {
    services: Vec<(&'static str, SocketAddr)>,
    jwks_url: String,
}

/// Runs the simulator and the issuer on a runtime of their own, for the life of the process.
fn start_world(jwks: serde_json::Value) -> std::io::Result<World> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("legacy-crm".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            rt.block_on(async move {
                let started = async {
                    let sim = legacy_sim::start(legacy_sim::SimConfig::default()).await?;
                    let issuer = legacy_sim::issuer::start_issuer(jwks).await?;
                    Ok::<_, std::io::Error>((sim, issuer))
                }
                .await;
                match started {
                    Ok((sim, issuer)) => {
                        let _ = tx.send(Ok(World {
                            services: sim.services(),
                            jwks_url: issuer.jwks_url(),
                        }));
                        // Keep both alive until the process ends.
                        std::future::pending::<()>().await;
                        drop((sim, issuer));
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                }
            });
        })?;
    rx.recv()
        .map_err(|_| std::io::Error::other("the simulator thread stopped"))?
}

/// `log_file`: where the logs go (printed in the banner), or `None` when they go to stderr.
pub fn run(conf: &Path, listen: &str, admin: &str, log_file: Option<&Path>) -> ExitCode {
    let key_path = conf
        .parent()
        .unwrap_or(Path::new("."))
        .join("issuer-key.pem");
    let pem = match token::read_key(&key_path) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let (mut cfg, plan) = match server::load(conf) {
        Ok(x) => x,
        Err(d) => {
            eprint!("{}", d.render());
            return ExitCode::FAILURE;
        }
    };
    let (Ok(listen), Ok(admin)) = (listen.parse(), admin.parse()) else {
        eprintln!("--listen and --admin take addresses such as 127.0.0.1:8080");
        return ExitCode::FAILURE;
    };
    cfg.listen = listen;
    cfg.admin = admin;
    let jwks = match token::jwks(&pem, token::DEMO_KID) {
        Ok(j) => j,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let world = match start_world(jwks) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("cannot start the legacy CRM simulator: {e}");
            return ExitCode::FAILURE;
        }
    };
    for (name, addr) in &world.services {
        if let Some(u) = cfg.upstreams.get_mut(*name) {
            // The demo's simulator is the service's only instance.
            u.instances = vec![(format!("http://{addr}"), addr.to_string())];
        }
    }
    for i in &mut cfg.issuers {
        i.jwks_url = world.jwks_url.clone();
    }
    let t = match token::mint(&pem, &Mint::new(1, 101)) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let sealer = prospect_edge::seal::Sealer::new(&cfg.id_secret.0, &cfg.cursor_secret.0);
    let contact = sealer.seal_id("con", 1, 0, &prospect_edge::seal::InternalId::Int(1));
    let version = plan.versions.current.clone();
    println!("prospect-edge demo — everything on loopback; Ctrl-C stops it all");
    println!("  {:<12} http://{}", "edge", cfg.listen);
    println!("  {:<12} http://{}/docs", "reference", cfg.listen);
    println!("  {:<12} http://{}", "admin", cfg.admin);
    match log_file {
        Some(p) => println!(
            "  {:<12} {} (tail -f it; --log-json puts them on stderr)",
            "logs",
            p.display()
        ),
        None => println!("  {:<12} stderr (JSON lines)", "logs"),
    }
    println!("  {:<12} {}", "issuer-jwks", world.jwks_url);
    for (name, addr) in &world.services {
        println!("  {name:<12} http://{addr}");
    }
    println!();
    println!("Try (token for tenant 1, user 101 admin, valid one hour):");
    println!("  export TOKEN='{t}'");
    println!(
        "  curl -s http://{}/v1/contacts/{contact} -H 'Version: {version}' -H \"Authorization: Bearer $TOKEN\"",
        cfg.listen
    );
    println!(
        "  curl -s http://{}/v1/contacts/search -H 'Version: {version}' -H \"Authorization: Bearer $TOKEN\" \\\n       -H 'Content-Type: application/json' -d '{{\"limit\": 2}}'",
        cfg.listen
    );
    println!(
        "More tokens: ./target/release/prospect-edge token --tenant 1 --user 103 --scope 'contact.read'"
    );
    println!("A first walk through the API: docs/quick-start.md");
    match server::run(cfg, plan, PingoraFlags::default()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cannot start the edge: {e}");
            ExitCode::FAILURE
        }
    }
}
