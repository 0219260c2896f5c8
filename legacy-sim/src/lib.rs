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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;

pub use state::{SimState, DIALECT_SERVICES, SERVICES};

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
    host: IpAddr,
    /// Every listener ever started, the ones of [`start`] first (in service order);
    /// a stopped one stays here until an instance is started again on its address.
    instances: Vec<Instance>,
}

struct Instance {
    service: &'static str,
    listener: server::Listener,
    /// Requests this address received (it survives a stop and a restart on the address).
    calls: Arc<AtomicU64>,
}

/// Seeds the world and binds all six services; returns once they accept connections.
pub async fn start(cfg: SimConfig) -> std::io::Result<Sim> {
    let world = seed::world();
    for (id, t) in &world.tenants {
        tracing::debug!(tenant = id, name = %t.name, contacts = t.contacts.len(), "seeded tenant");
    }
    let state = SimState::new(world, cfg.latency);
    let mut sim = Sim {
        state,
        host: cfg.host,
        instances: Vec::with_capacity(SERVICES.len()),
    };
    for (i, name) in SERVICES.iter().enumerate() {
        let port = if cfg.base_port == 0 {
            0
        } else {
            cfg.base_port.checked_add(i as u16).ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::InvalidInput, "base port too high")
            })?
        };
        sim.start_instance(name, port).await?;
    }
    Ok(sim)
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
        "iam" => iam::router(state),
        _ => Router::new(),
    }
}

fn unknown(service: &str) -> ! {
    panic!("unknown service {service:?}; known: {SERVICES:?} and {DIALECT_SERVICES:?}")
}

impl Sim {
    /// The address of a service (its first instance, the one [`start`] bound); panics on
    /// an unknown name.
    pub fn addr(&self, service: &str) -> SocketAddr {
        self.instances
            .iter()
            .find(|i| i.service == service)
            .map(|i| i.listener.addr)
            .unwrap_or_else(|| unknown(service))
    }

    /// The six services of the reference CRM and their addresses, in [`SERVICES`] order
    /// (the first instance of each).
    pub fn services(&self) -> Vec<(&'static str, SocketAddr)> {
        self.first_instances(&SERVICES)
    }

    fn first_instances(&self, names: &[&'static str]) -> Vec<(&'static str, SocketAddr)> {
        names
            .iter()
            .filter_map(|n| {
                self.instances
                    .iter()
                    .find(|i| i.service == *n)
                    .map(|i| (i.service, i.listener.addr))
            })
            .collect()
    }

    /// A cheap clone handle on the shared world.
    pub fn state(&self) -> SimState {
        self.state.clone()
    }

    /// Starts one more listener of a service, sharing the same world (another replica
    /// of it behind the same database), and returns its address. `port` 0 picks an
    /// ephemeral port; a fixed port brings a stopped instance back on its address (its
    /// [`Sim::calls_at`] count carries on). Requests to it count towards
    /// [`SimState::calls`] of the service, injected failures and latency apply to it.
    /// Panics on an unknown service name.
    pub async fn start_instance(
        &mut self,
        service: &str,
        port: u16,
    ) -> std::io::Result<SocketAddr> {
        let index = state::service_index(service).unwrap_or_else(|| unknown(service));
        let name = state::service_name(index).unwrap_or_else(|| unknown(service));
        let addr = SocketAddr::new(self.host, port);
        let previous = if port == 0 {
            None
        } else {
            self.instances.iter().position(|i| i.listener.addr == addr)
        };
        let calls = match previous {
            Some(p) if self.instances[p].service == name => self.instances[p].calls.clone(),
            _ => Arc::new(AtomicU64::new(0)),
        };
        let app = router(name, self.state.clone());
        let hook_state = self.state.clone();
        let hook_calls = calls.clone();
        let hook: server::Hook = Arc::new(move || {
            hook_calls.fetch_add(1, Ordering::Relaxed);
            hook_state.count_call(index);
            server::Pre {
                delay: hook_state.latency(),
                fail: hook_state.failing(index),
            }
        });
        let listener = server::Listener::bind(addr, app, hook, internal(name)).await?;
        let addr = listener.addr;
        tracing::debug!(service = name, addr = %addr, "legacy service listening");
        let instance = Instance {
            service: name,
            listener,
            calls,
        };
        match previous {
            // the old one is stopped (its address was free to bind): take its place
            Some(p) => self.instances[p] = instance,
            None => self.instances.push(instance),
        }
        Ok(addr)
    }

    fn instance(&self, addr: SocketAddr) -> &Instance {
        self.instances
            .iter()
            .find(|i| i.listener.addr == addr)
            .unwrap_or_else(|| panic!("no simulator instance listens on {addr}"))
    }

    /// Stops one instance, as [`Sim::stop_service`] does for a whole service: its
    /// listener closes and its open connections are dropped; the other instances of the
    /// service keep answering. Panics on an address no instance was started on.
    pub async fn stop_instance(&self, addr: SocketAddr) {
        self.instance(addr).listener.stop().await;
    }

    /// How many requests the instance on `addr` has received (also while it was failing;
    /// across a stop and a restart on the same address). Panics on an unknown address.
    pub fn calls_at(&self, addr: SocketAddr) -> u64 {
        self.instance(addr).calls.load(Ordering::Relaxed)
    }

    /// Stops one service (every instance of it): its listeners close (connections are
    /// refused afterwards) and its open connections are dropped. Panics on an unknown
    /// name.
    pub async fn stop_service(&self, service: &str) {
        if state::service_index(service).is_none() {
            unknown(service);
        }
        for i in self.instances.iter().filter(|i| i.service == service) {
            i.listener.stop().await;
        }
    }

    /// Stops every service.
    pub async fn shutdown(self) {
        for i in &self.instances {
            i.listener.stop().await;
        }
    }
}
