//! `legacy-sim`: runs the six simulated legacy services and the two reference backends
//! of other families standalone (for the demo and for manual testing) until Ctrl-C.
#![forbid(unsafe_code)]

use std::net::IpAddr;
use std::time::Duration;

use clap::Parser;

#[derive(Parser, Debug)]
#[command(
    name = "legacy-sim",
    about = "In-memory simulator of the legacy CRM platform"
)]
struct Args {
    /// Address to bind every service on.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// First port: services listen on N..N+7 (crm-core, sales, workflow, engagements,
    /// audit, iam, then directory and accounts); 0 picks ephemeral ports.
    #[arg(long, default_value_t = 0)]
    base_port: u16,
    /// Latency added before every answer, in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let sim = legacy_sim::start(legacy_sim::SimConfig {
        latency: Duration::from_millis(args.latency_ms),
        host: args.host,
        base_port: args.base_port,
    })
    .await?;
    for (name, addr) in sim.services().into_iter().chain(sim.dialect_services()) {
        println!("{name:<12} http://{addr}");
    }
    tokio::signal::ctrl_c().await?;
    sim.shutdown().await;
    Ok(())
}
