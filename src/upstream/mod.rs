//! The transport to the backing services: pooled HTTP/1.1 clients, timeouts, retries and
//! circuit breakers. It sends a request prepared by the mapping side (method, path and
//! query, headers, body) and hands back the raw [`Answer`] (status, headers, bytes); what a
//! service's headers, paths and answers mean is the mapping's business (`crate::mapping::
//! dialect`), so nothing here knows a dialect. Transport failures become problems here; no
//! upstream text ever reaches a problem's `detail`.

mod attempt;
mod breaker;
mod h1;
mod pool;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};

use crate::bounds::ByteBudget;
use crate::config::Upstream;
use crate::problem::{Kind, Problem};
use attempt::{attempt_once, Attempt};
pub use breaker::{Circuit, INSTANCE_CIRCUIT};
use pool::Pool;
pub use pool::{InstanceState, INSTANCE_UP};

/// Largest upstream body the edge accepts (a 250-record engagements page fits easily).
const MAX_UPSTREAM_BODY: usize = 16 * 1024 * 1024;

/// Every call reserves this much of the answer budget before it is sent (most answers
/// fit): when the budget is full, the call waits, then fails with 503 before anything
/// reached the service.
const ANSWER_RESERVE: u64 = 16 * 1024;

/// The global budget of upstream answer bytes in flight, and how long a call waits for room.
pub const DEFAULT_ANSWER_BUDGET: u64 = 128 * 1024 * 1024;
pub const DEFAULT_ANSWER_BUDGET_WAIT: Duration = Duration::from_secs(1);

/// Every instance of every service is health-checked this often.
pub const HEALTH_INTERVAL: Duration = Duration::from_secs(2);

/// Retries one request may spend over all its upstream calls (on top of each call's first
/// attempt), so that a request fanning out to several calls cannot multiply an outage.
pub const RETRY_BUDGET_PER_REQUEST: u32 = 2;

/// What the transport accounts per public request, over all its upstream calls. The
/// identity a call carries (tenant, user) is not here: the mapping side puts it where each
/// service wants it (`crate::mapping::Trust`).
#[derive(Debug)]
pub struct Ledger {
    /// The request's trace id (32 hex), repeated in each call's `traceparent`.
    pub trace_id: String,
    /// W3C trace flags of the request's trace (`01` sampled).
    pub trace_flags: String,
    /// Upstream calls of this request that reached a service (answered or timed out):
    /// idempotency stores an answer only once a request reached the upstream.
    pub reached: std::sync::atomic::AtomicU32,
    /// Time spent in upstream calls of this request, in microseconds (the access log).
    pub upstream_us: std::sync::atomic::AtomicU64,
    /// Retries this request may still spend ([`RETRY_BUDGET_PER_REQUEST`]).
    pub retry_budget: std::sync::atomic::AtomicU32,
}

impl Ledger {
    pub fn new(trace_id: String) -> Ledger {
        Ledger {
            trace_id,
            trace_flags: "01".into(),
            reached: Default::default(),
            upstream_us: Default::default(),
            retry_budget: std::sync::atomic::AtomicU32::new(RETRY_BUDGET_PER_REQUEST),
        }
    }

    /// A `traceparent` for one upstream call: this request's trace id, a new span id.
    pub fn traceparent(&self) -> String {
        let span: u64 = rand::random::<u64>().max(1);
        crate::hex::trace_context(&self.trace_id, span.to_be_bytes(), &self.trace_flags)
    }

    /// Time spent in upstream calls so far, in milliseconds.
    pub fn upstream_ms(&self) -> f64 {
        self.upstream_us.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1000.0
    }

    pub fn reached(&self) -> u32 {
        self.reached.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn take_retry(&self) -> bool {
        self.retry_budget
            .fetch_update(
                std::sync::atomic::Ordering::Relaxed,
                std::sync::atomic::Ordering::Relaxed,
                |n| n.checked_sub(1),
            )
            .is_ok()
    }
}

/// One prepared upstream request: everything but `Host` and `traceparent`, which the
/// transport adds.
#[derive(Debug)]
pub struct Outgoing<'a> {
    pub method: http::Method,
    /// Already encoded (`/odata/v4/Contacts(…)?$top=5`).
    pub path_and_query: &'a str,
    pub headers: &'a [(HeaderName, HeaderValue)],
    pub body: Option<Bytes>,
    /// An idempotent read (GET or a search): retried after a connect failure or a 502/503.
    pub safe: bool,
}

pub struct Upstreams {
    pools: HashMap<String, Pool>,
    /// Bytes of upstream answers in flight, across every service.
    budget: Arc<ByteBudget>,
}

#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub elapsed: Duration,
}

impl Upstreams {
    pub fn new(cfgs: impl IntoIterator<Item = Upstream>) -> Upstreams {
        Upstreams::with_budget(
            cfgs,
            ByteBudget::new(DEFAULT_ANSWER_BUDGET, DEFAULT_ANSWER_BUDGET_WAIT),
        )
    }

    /// Upstreams whose answers in flight share `budget`.
    pub fn with_budget(
        cfgs: impl IntoIterator<Item = Upstream>,
        budget: Arc<ByteBudget>,
    ) -> Upstreams {
        let pools = cfgs
            .into_iter()
            .map(|cfg| (cfg.name.clone(), Pool::new(cfg)))
            .collect();
        Upstreams { pools, budget }
    }

    /// The origins (`http://host:port`) of a service's instances: a next link is followed
    /// only to one of them.
    pub fn origins(&self, service: &str) -> Vec<&str> {
        self.pools.get(service).map_or_else(Vec::new, |p| {
            p.instances.iter().map(|i| i.base.as_str()).collect()
        })
    }

    /// Each service's circuit state, for `/readyz`: closed while any instance's is.
    pub fn circuits(&self) -> Vec<(&str, Circuit)> {
        let mut v: Vec<(&str, Circuit)> = self
            .pools
            .iter()
            .map(|(n, p)| (n.as_str(), p.circuit()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(b.0));
        v
    }

    /// Each service's instances, for `/readyz`: (service, [(instance, health check
    /// passed, circuit)]).
    pub fn instances(&self) -> Vec<(&str, Vec<InstanceState<'_>>)> {
        let mut v: Vec<_> = self
            .pools
            .iter()
            .map(|(n, p)| {
                let list = p
                    .instances
                    .iter()
                    .map(|i| {
                        (
                            i.authority.as_str(),
                            i.healthy.load(Ordering::Relaxed),
                            i.breaker.phase(),
                        )
                    })
                    .collect();
                (n.as_str(), list)
            })
            .collect();
        v.sort_by(|a, b| a.0.cmp(b.0));
        v
    }

    /// Every service has an instance whose last health check passed.
    pub fn reachable(&self) -> bool {
        self.pools.values().all(|p| {
            p.instances
                .iter()
                .any(|i| i.healthy.load(Ordering::Relaxed))
        })
    }

    /// Active health checks until the process ends: every `interval`, each instance of
    /// each service is connected to (TCP, within its connect timeout). An instance that
    /// fails its check is skipped by new calls while another instance passes; it is used
    /// again once a check passes.
    pub async fn health_checks(&self, interval: Duration) {
        loop {
            tokio::time::sleep(interval).await;
            let checks = self.pools.values().map(Pool::check_health);
            futures::future::join_all(checks).await;
        }
    }

    /// One HTTP call. Transport failures become the matching problem here. A `safe` call
    /// (an idempotent read: GET or a search) is retried after a connect failure or a
    /// 502/503 answer, up to the service's `retries` and the request's retry budget, with
    /// jittered exponential backoff; writes are never retried.
    pub async fn send(
        &self,
        service: &str,
        req: Outgoing<'_>,
        trust: &Ledger,
    ) -> Result<Answer, Problem> {
        let Some(pool) = self.pools.get(service) else {
            return Err(Problem::new(
                Kind::Internal,
                "No upstream is configured for this operation",
            ));
        };
        let safe = req.safe;
        let retries = if safe { pool.cfg.retries } else { 0 };
        // A write whose connection could not be made (nothing reached the service) may
        // fail over to each other instance once.
        let failovers = pool.instances.len().saturating_sub(1) as u32;
        let several = pool.instances.len() > 1;
        let mut attempt = 0u32;
        let mut avoid = None;
        loop {
            let (outcome, used) = attempt_once(pool, &self.budget, avoid, &req, trust).await;
            let retryable = match &outcome {
                Attempt::Answered(a) => safe && matches!(a.status, 502 | 503),
                Attempt::Refused(_) => true,
                // A read that broke on one instance is read again from another.
                Attempt::Failed(_) => safe && several && used.is_some(),
            };
            let allowed = if safe {
                attempt < retries.max(failovers.min(1))
            } else {
                attempt < failovers
            };
            if retryable && allowed && trust.take_retry() {
                avoid = used.or(avoid);
                let base = pool.cfg.retry_backoff.saturating_mul(1 << attempt.min(6));
                let jittered = {
                    use rand::Rng;
                    let half = base / 2;
                    half + base
                        .saturating_sub(half)
                        .mul_f64(rand::thread_rng().gen::<f64>())
                };
                tracing::debug!(
                    service,
                    attempt,
                    backoff_ms = jittered.as_millis() as u64,
                    "retrying an upstream call"
                );
                crate::metrics::UPSTREAM_RETRIES
                    .with_label_values(&[service])
                    .inc();
                // Another instance is tried at once; the same one after a backoff.
                if !several {
                    tokio::time::sleep(jittered).await;
                }
                attempt += 1;
                continue;
            }
            return match outcome {
                Attempt::Answered(a) => Ok(a),
                Attempt::Refused(p) | Attempt::Failed(p) => Err(p),
            };
        }
    }
}

pub fn unavailable() -> Problem {
    Problem::new(
        Kind::UpstreamUnavailable,
        "A backing service is unavailable; retry later",
    )
    .with_header("retry-after", "5")
}
