//! A service's instances: where each is, its breaker, its load and its health, and the
//! choice of the instance for each call.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use super::breaker::{Breaker, Circuit};
use super::h1::Idle;
use super::unavailable;
use crate::config::Upstream;
use crate::problem::Problem;

/// One service: its instances and its in-flight cap.
pub(super) struct Pool {
    pub(super) cfg: Upstream,
    /// The service's instances (one per configured URL), each with its own breaker.
    pub(super) instances: Vec<Instance>,
    /// Where the round robin among equally loaded instances starts next.
    next: AtomicUsize,
    /// Calls in flight to this service, at most `pool_idle_per_host` per instance, so that
    /// its connections never outnumber the idle pool: a call above it would open a
    /// connection and close it afterwards (without the cap, 1,000 concurrent clients meant
    /// ~1,400 upstream connections, connect + close per call, ~40 MiB of buffers). Waiting
    /// for a slot counts against the call's timeout.
    pub(super) slots: tokio::sync::Semaphore,
}

/// One instance of a service: where it is, its breaker, its load and its health.
pub(super) struct Instance {
    /// `http://host:port` without a trailing slash.
    pub(super) base: String,
    /// `host:port`: the `Host` of its calls and its metric label.
    pub(super) authority: String,
    pub(super) breaker: Breaker,
    /// Calls in flight to this instance (least-outstanding choice).
    pub(super) outstanding: AtomicUsize,
    /// The last active health check passed (true until a check fails).
    pub(super) healthy: AtomicBool,
    /// Its kept-alive connections (at most `pool_idle_per_host`).
    pub(super) idle: Idle,
}

/// Counts a call in flight on an instance for as long as it runs.
pub(super) struct Outstanding<'a>(pub(super) &'a AtomicUsize);

impl Drop for Outstanding<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

pub static INSTANCE_UP: std::sync::LazyLock<prometheus::IntGaugeVec> =
    std::sync::LazyLock::new(|| {
        prometheus::register_int_gauge_vec!(
            "prospect_edge_instance_up",
            "Last active health check of an instance of a legacy service: 1 passed, 0 failed.",
            &["service", "instance"]
        )
        .unwrap_or_else(|e| panic!("metric registration at start-up: {e}"))
    });

impl Pool {
    /// The instances of one configured service.
    pub(super) fn new(cfg: Upstream) -> Pool {
        let instances: Vec<Instance> = cfg
            .instances
            .iter()
            .map(|(base, authority)| {
                INSTANCE_UP
                    .with_label_values(&[cfg.name.as_str(), authority.as_str()])
                    .set(1);
                Instance {
                    breaker: Breaker::new(&cfg, authority),
                    base: base.clone(),
                    authority: authority.clone(),
                    outstanding: AtomicUsize::new(0),
                    healthy: AtomicBool::new(true),
                    idle: Idle::new(cfg.pool_idle_per_host),
                }
            })
            .collect();
        let slots =
            tokio::sync::Semaphore::new(cfg.pool_idle_per_host.max(1) * instances.len().max(1));
        Pool {
            cfg,
            instances,
            next: AtomicUsize::new(0),
            slots,
        }
    }

    /// One round of active health checks: each instance is connected to (TCP, within the
    /// connect timeout); the outcome is its `healthy` flag and its gauge.
    pub(super) async fn check_health(&self) {
        let checks = self.instances.iter().map(|i| async move {
            let addr = i.authority.as_str();
            let up = matches!(
                tokio::time::timeout(self.cfg.connect_timeout, tokio::net::TcpStream::connect(addr))
                    .await,
                Ok(Ok(_))
            );
            let was = i.healthy.swap(up, Ordering::Relaxed);
            if was != up {
                tracing::warn!(service = %self.cfg.name, instance = %addr, up, "instance health check");
            }
            INSTANCE_UP
                .with_label_values(&[self.cfg.name.as_str(), addr])
                .set(i64::from(up));
        });
        futures::future::join_all(checks).await;
    }

    /// The service's circuit: closed while any instance's is, half-open while any may
    /// probe, open when all are.
    pub(super) fn circuit(&self) -> Circuit {
        let mut best = Circuit::Open;
        for i in &self.instances {
            match i.breaker.phase() {
                Circuit::Closed => return Circuit::Closed,
                Circuit::HalfOpen => best = Circuit::HalfOpen,
                Circuit::Open => {}
            }
        }
        best
    }

    /// Publishes the service's circuit gauge (after an instance's breaker moved).
    pub(super) fn publish(&self) {
        crate::metrics::CIRCUIT
            .with_label_values(&[self.cfg.name.as_str()])
            .set(self.circuit() as i64);
    }

    /// Chooses the instance of a call: among instances whose health check passed (all, if
    /// none did) and other than `avoid` (when there is another), one whose breaker admits
    /// the call — one due for a half-open probe first, else the least outstanding, ties
    /// by round robin. `Err` (503) when every breaker refuses.
    pub(super) fn pick(&self, avoid: Option<usize>) -> Result<usize, Problem> {
        let n = self.instances.len();
        if n == 1 {
            self.instances[0].breaker.admit()?;
            return Ok(0);
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let any_healthy = self
            .instances
            .iter()
            .enumerate()
            .any(|(i, x)| Some(i) != avoid && x.healthy.load(Ordering::Relaxed));
        let order = (0..n)
            .map(|k| (start + k) % n)
            .filter(|i| Some(*i) != avoid);
        let candidates: Vec<usize> = order
            .filter(|i| !any_healthy || self.instances[*i].healthy.load(Ordering::Relaxed))
            .collect();
        // A due probe first (an instance's open period is over): that is how a failed
        // instance is tried again.
        for &i in &candidates {
            let b = &self.instances[i].breaker;
            if b.phase() == Circuit::HalfOpen && b.admit().is_ok() {
                self.publish();
                return Ok(i);
            }
        }
        let mut by_load: Vec<usize> = candidates
            .iter()
            .copied()
            .filter(|i| self.instances[*i].breaker.phase() == Circuit::Closed)
            .collect();
        by_load.sort_by_key(|i| self.instances[*i].outstanding.load(Ordering::Relaxed));
        if let Some(&i) = by_load.first() {
            return Ok(i);
        }
        // Every candidate's breaker is open (or the avoided instance is the only one left).
        let mut refusal = None;
        for i in (0..n).map(|k| (start + k) % n) {
            match self.instances[i].breaker.admit() {
                Ok(()) => {
                    self.publish();
                    return Ok(i);
                }
                Err(p) => refusal = Some(p),
            }
        }
        Err(refusal.unwrap_or_else(unavailable))
    }
}

/// One instance as `/readyz` shows it: (`host:port`, health check passed, circuit).
pub type InstanceState<'a> = (&'a str, bool, Circuit);
