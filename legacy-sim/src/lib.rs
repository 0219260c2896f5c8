//! `legacy-sim`: an in-memory, faithful simulator of the legacy CRM platform that
//! prospect-edge fronts (see `shared/spec/legacy-crm.md`): six HTTP/1.1 services, each
//! on its own listener, sharing one deterministically seeded world. It is what the
//! edge's end-to-end tests and its demo talk to; it is not friendlier than the real
//! platform, quirks and error dialects included.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! let sim = legacy_sim::start(legacy_sim::SimConfig::default()).await?;
//! let crm = sim.addr("crm-core"); // GET http://{crm}/api/v3/contacts/1 with X-PC-Tenant/X-PC-User
//! # let _ = crm;
//! sim.shutdown().await;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod audit;
mod common;
mod crm_core;
mod engagements;
mod iam;
pub mod issuer;
mod query;
mod sales;
mod seed;
mod server;
mod state;
mod time;
mod workflow;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;

pub use state::{SimState, SERVICES};

/// How to run the simulator.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Added before every answer of every service.
    pub latency: Duration,
    pub host: IpAddr,
    /// 0: every service on an ephemeral port; N: services on N..N+5 in [`SERVICES`] order.
    pub base_port: u16,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            latency: Duration::ZERO,
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            base_port: 0,
        }
    }
}

/// The running simulator. Dropping it stops every service as well.
pub struct Sim {
    state: SimState,
    services: Vec<(&'static str, server::Listener)>,
}

/// Seeds the world and binds all six services; returns once they accept connections.
pub async fn start(cfg: SimConfig) -> std::io::Result<Sim> {
    let world = seed::world();
    for (id, t) in &world.tenants {
        tracing::debug!(tenant = id, name = %t.name, contacts = t.contacts.len(), "seeded tenant");
    }
    let state = SimState::new(world, cfg.latency);
    let mut services = Vec::with_capacity(SERVICES.len());
    for (i, name) in SERVICES.iter().enumerate() {
        let port = if cfg.base_port == 0 {
            0
        } else {
            cfg.base_port.checked_add(i as u16).ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::InvalidInput, "base port too high")
            })?
        };
        let app = router(name, state.clone());
        let hook_state = state.clone();
        let hook: server::Hook = Arc::new(move || {
            hook_state.count_call(i);
            server::Pre {
                delay: hook_state.latency(),
                fail: hook_state.failing(i),
            }
        });
        let listener =
            server::Listener::bind(SocketAddr::new(cfg.host, port), app, hook, internal(name))
                .await?;
        tracing::debug!(service = name, addr = %listener.addr, "legacy service listening");
        services.push((*name, listener));
    }
    Ok(Sim { state, services })
}

fn internal(name: &str) -> server::Internal {
    match name {
        "crm-core" => crm_core::internal,
        "sales" => sales::internal,
        "workflow" => workflow::internal,
        "engagements" => engagements::internal,
        "audit" => audit::internal,
        _ => iam::internal,
    }
}

fn router(name: &str, state: SimState) -> Router {
    match name {
        "crm-core" => crm_core::router(state),
        "sales" => sales::router(state),
        "workflow" => workflow::router(state),
        "engagements" => engagements::router(state),
        "audit" => audit::router(state),
        _ => iam::router(state),
    }
}

impl Sim {
    /// The address of a service; panics on an unknown name.
    pub fn addr(&self, service: &str) -> SocketAddr {
        self.services
            .iter()
            .find(|(n, _)| *n == service)
            .map(|(_, l)| l.addr)
            .unwrap_or_else(|| panic!("unknown service {service:?}; known: {SERVICES:?}"))
    }

    /// Every service and its address, in [`SERVICES`] order.
    pub fn services(&self) -> Vec<(&'static str, SocketAddr)> {
        self.services.iter().map(|(n, l)| (*n, l.addr)).collect()
    }

    /// A cheap clone handle on the shared world.
    pub fn state(&self) -> SimState {
        self.state.clone()
    }

    /// Stops one service: its listener closes (connections are refused afterwards) and
    /// its open connections are dropped. Panics on an unknown name.
    pub async fn stop_service(&self, service: &str) {
        let (_, l) = self
            .services
            .iter()
            .find(|(n, _)| *n == service)
            .unwrap_or_else(|| panic!("unknown service {service:?}; known: {SERVICES:?}"));
        l.stop().await;
    }

    /// Stops every service.
    pub async fn shutdown(self) {
        for (_, l) in &self.services {
            l.stop().await;
        }
    }
}
