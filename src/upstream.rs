//! The transport to the backing services: pooled HTTP/1.1 clients, timeouts, retries and
//! circuit breakers. It sends a request prepared by the mapping side (method, path and
//! query, headers, body) and hands back the raw [`Answer`] (status, headers, bytes); what a
//! service's headers, paths and answers mean is the mapping's business (`crate::mapping::
//! dialect`), so nothing here knows a dialect. Transport failures become problems here; no
//! upstream text ever reaches a problem's `detail`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::bounds::ByteBudget;
use crate::config::Upstream;
use crate::problem::{Kind, Problem};

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

struct Pool {
    cfg: Upstream,
    client: Client<HttpConnector, Full<Bytes>>,
    /// The service's instances (one per configured URL), each with its own breaker.
    instances: Vec<Instance>,
    /// Where the round robin among equally loaded instances starts next.
    next: AtomicUsize,
    /// Calls in flight to this service, at most `pool_idle_per_host` per instance: the client opens a
    /// new connection for every call above the idle pool and closes it afterwards, so
    /// 1,000 concurrent clients meant ~1,400 upstream connections (connect + close per
    /// call, ~40 MiB of buffers). Waiting for a slot counts against the call's timeout.
    slots: tokio::sync::Semaphore,
}

/// One instance of a service: where it is, its breaker, its load and its health.
struct Instance {
    /// `http://host:port` without a trailing slash.
    base: String,
    authority: String,
    breaker: Breaker,
    /// Calls in flight to this instance (least-outstanding choice).
    outstanding: AtomicUsize,
    /// The last active health check passed (true until a check fails).
    healthy: AtomicBool,
}

/// Counts a call in flight on an instance for as long as it runs.
struct Outstanding<'a>(&'a AtomicUsize);

impl Drop for Outstanding<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

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
        format!("00-{}-{span:016x}-{}", self.trace_id, self.trace_flags)
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

/// A circuit breaker's phase; the number is the `prospect_edge_circuit_state` gauge value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Circuit {
    Closed = 0,
    Open = 1,
    HalfOpen = 2,
}

impl Circuit {
    pub fn as_str(self) -> &'static str {
        match self {
            Circuit::Closed => "closed",
            Circuit::Open => "open",
            Circuit::HalfOpen => "half_open",
        }
    }
}

struct BreakerState {
    phase: Circuit,
    consecutive: u32,
    /// End of the open period.
    until: Instant,
    /// When the half-open probe started (a probe whose request was dropped is replaced
    /// once it is older than a whole call could take).
    probe_started: Instant,
}

/// Per-service circuit breaker: `failures` consecutive failures (connect errors, timeouts,
/// 5xx, broken answers) open it; while open every call is refused at once; after
/// `open_for` one probe is let through (half-open): success closes it, failure reopens it.
struct Breaker {
    service: String,
    /// The instance's `host:port` (a configured, bounded label).
    instance: String,
    failures: u32,
    open_for: Duration,
    probe_deadline: Duration,
    state: std::sync::Mutex<BreakerState>,
}

impl Breaker {
    fn new(cfg: &Upstream, instance: &str) -> Breaker {
        let now = Instant::now();
        crate::metrics::CIRCUIT
            .with_label_values(&[cfg.name.as_str()])
            .set(Circuit::Closed as i64);
        INSTANCE_CIRCUIT
            .with_label_values(&[cfg.name.as_str(), instance])
            .set(Circuit::Closed as i64);
        Breaker {
            service: cfg.name.clone(),
            instance: instance.to_string(),
            failures: cfg.breaker_failures,
            open_for: cfg.breaker_open,
            probe_deadline: cfg.connect_timeout + cfg.timeout,
            state: std::sync::Mutex::new(BreakerState {
                phase: Circuit::Closed,
                consecutive: 0,
                until: now,
                probe_started: now,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BreakerState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set(&self, st: &mut BreakerState, phase: Circuit) {
        if st.phase != phase {
            tracing::warn!(service = %self.service, instance = %self.instance, from = st.phase.as_str(), to = phase.as_str(), "circuit breaker");
        }
        st.phase = phase;
        INSTANCE_CIRCUIT
            .with_label_values(&[self.service.as_str(), self.instance.as_str()])
            .set(phase as i64);
    }

    fn phase(&self) -> Circuit {
        let st = self.lock();
        if st.phase == Circuit::Open && Instant::now() >= st.until {
            // Reported as half-open: the next call is the probe.
            return Circuit::HalfOpen;
        }
        st.phase
    }

    /// Lets a call through, or refuses it with 503 and a `Retry-After` while open.
    fn admit(&self) -> Result<(), Problem> {
        let mut st = self.lock();
        let now = Instant::now();
        match st.phase {
            Circuit::Closed => Ok(()),
            Circuit::Open if now < st.until => Err(open_circuit(st.until - now)),
            Circuit::Open => {
                st.probe_started = now;
                self.set(&mut st, Circuit::HalfOpen);
                Ok(())
            }
            Circuit::HalfOpen if now.duration_since(st.probe_started) > self.probe_deadline => {
                st.probe_started = now;
                Ok(())
            }
            Circuit::HalfOpen => Err(open_circuit(self.open_for)),
        }
    }

    fn success(&self) {
        let mut st = self.lock();
        st.consecutive = 0;
        if st.phase != Circuit::Closed {
            self.set(&mut st, Circuit::Closed);
        }
    }

    fn failure(&self) {
        let mut st = self.lock();
        st.consecutive = st.consecutive.saturating_add(1);
        if st.phase == Circuit::HalfOpen || st.consecutive >= self.failures {
            st.until = Instant::now() + self.open_for;
            self.set(&mut st, Circuit::Open);
        }
    }
}

pub static INSTANCE_CIRCUIT: std::sync::LazyLock<prometheus::IntGaugeVec> =
    std::sync::LazyLock::new(|| {
        prometheus::register_int_gauge_vec!(
            "prospect_edge_instance_circuit_state",
            "Circuit breaker state per instance of a legacy service: 0 closed, 1 open, 2 half-open.",
            &["service", "instance"]
        )
        .unwrap_or_else(|e| panic!("metric registration at start-up: {e}"))
    });

pub static INSTANCE_UP: std::sync::LazyLock<prometheus::IntGaugeVec> =
    std::sync::LazyLock::new(|| {
        prometheus::register_int_gauge_vec!(
            "prospect_edge_instance_up",
            "Last active health check of an instance of a legacy service: 1 passed, 0 failed.",
            &["service", "instance"]
        )
        .unwrap_or_else(|e| panic!("metric registration at start-up: {e}"))
    });

fn open_circuit(left: Duration) -> Problem {
    let secs = left.as_millis().div_ceil(1000).max(1);
    Problem::new(
        Kind::UpstreamUnavailable,
        "A backing service is unavailable; retry later",
    )
    .with_header("retry-after", secs.to_string())
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

/// The outcome of one attempt.
enum Attempt {
    Answered(Answer),
    /// A connect failure: nothing reached the service, a safe call may be retried.
    Refused(Problem),
    /// Timed out, broken answer, or refused by the open circuit: never retried.
    Failed(Problem),
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
            .map(|cfg| {
                let mut conn = HttpConnector::new();
                conn.set_connect_timeout(Some(cfg.connect_timeout));
                conn.set_nodelay(true);
                conn.enforce_http(true);
                let client = Client::builder(TokioExecutor::new())
                    .pool_idle_timeout(Duration::from_secs(30))
                    .pool_max_idle_per_host(cfg.pool_idle_per_host)
                    .build(conn);
                let instances: Vec<Instance> = instances_of(&cfg)
                    .into_iter()
                    .map(|(base, authority)| {
                        INSTANCE_UP
                            .with_label_values(&[cfg.name.as_str(), authority.as_str()])
                            .set(1);
                        Instance {
                            breaker: Breaker::new(&cfg, &authority),
                            base,
                            authority,
                            outstanding: AtomicUsize::new(0),
                            healthy: AtomicBool::new(true),
                        }
                    })
                    .collect();
                let slots = tokio::sync::Semaphore::new(
                    cfg.pool_idle_per_host.max(1) * instances.len().max(1),
                );
                (
                    cfg.name.clone(),
                    Pool {
                        cfg,
                        client,
                        instances,
                        next: AtomicUsize::new(0),
                        slots,
                    },
                )
            })
            .collect();
        Upstreams { pools, budget }
    }

    pub fn base(&self, service: &str) -> Option<&str> {
        self.pools.get(service).map(|p| p.cfg.base.as_str())
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
            let checks = self.pools.values().flat_map(|p| {
                p.instances.iter().map(move |i| async move {
                    let addr = i.authority.as_str();
                    let up = matches!(
                        tokio::time::timeout(
                            p.cfg.connect_timeout,
                            tokio::net::TcpStream::connect(addr)
                        )
                        .await,
                        Ok(Ok(_))
                    );
                    let was = i.healthy.swap(up, Ordering::Relaxed);
                    if was != up {
                        tracing::warn!(service = %p.cfg.name, instance = %addr, up, "instance health check");
                    }
                    INSTANCE_UP
                        .with_label_values(&[p.cfg.name.as_str(), addr])
                        .set(i64::from(up));
                })
            });
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

impl Pool {
    /// The service's circuit: closed while any instance's is, half-open while any may
    /// probe, open when all are.
    fn circuit(&self) -> Circuit {
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
    fn publish(&self) {
        crate::metrics::CIRCUIT
            .with_label_values(&[self.cfg.name.as_str()])
            .set(self.circuit() as i64);
    }

    /// Chooses the instance of a call: among instances whose health check passed (all, if
    /// none did) and other than `avoid` (when there is another), one whose breaker admits
    /// the call — one due for a half-open probe first, else the least outstanding, ties
    /// by round robin. `Err` (503) when every breaker refuses.
    fn pick(&self, avoid: Option<usize>) -> Result<usize, Problem> {
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

/// The instances configured for a service: (`http://host:port`, `host:port`).
fn instances_of(cfg: &Upstream) -> Vec<(String, String)> {
    if cfg.instances.is_empty() {
        return vec![(cfg.base.clone(), cfg.authority.clone())];
    }
    cfg.instances.clone()
}

/// One instance as `/readyz` shows it: (`host:port`, health check passed, circuit).
pub type InstanceState<'a> = (&'a str, bool, Circuit);

/// One attempt on one instance (another than `avoid` when there is one); the outcome and
/// the instance it went to.
async fn attempt_once(
    pool: &Pool,
    budget: &Arc<ByteBudget>,
    avoid: Option<usize>,
    out: &Outgoing<'_>,
    trust: &Ledger,
) -> (Attempt, Option<usize>) {
    let timed_out = || {
        Problem::new(
            Kind::UpstreamTimeout,
            "A backing service did not answer in time",
        )
    };
    // Nothing reached the service while waiting: neither the breaker nor `reached` counts it.
    let Ok(Ok(_slot)) = tokio::time::timeout(pool.cfg.timeout, pool.slots.acquire()).await else {
        return (Attempt::Failed(timed_out()), None);
    };
    // Room for the answer first: a full budget refuses the call before it is sent.
    let mut held = budget.start();
    if !held.grow(ANSWER_RESERVE).await {
        crate::bounds::UPSTREAM_BUDGET_REFUSED
            .with_label_values(&[pool.cfg.name.as_str()])
            .inc();
        return (Attempt::Failed(at_capacity()), None);
    }
    let idx = match pool.pick(avoid) {
        Ok(i) => i,
        Err(p) => return (Attempt::Failed(p), None),
    };
    let inst = &pool.instances[idx];
    inst.outstanding.fetch_add(1, Ordering::Relaxed);
    let _outstanding = Outstanding(&inst.outstanding);
    let uri = format!("{}{}", inst.base, out.path_and_query);
    const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
    let safe = out.safe;
    let mut req = http::Request::builder()
        .method(out.method.clone())
        .uri(uri)
        .header(http::header::HOST, inst.authority.as_str())
        .header(TRACEPARENT, trust.traceparent());
    for (k, v) in out.headers {
        req = req.header(k, v);
    }
    let bytes = out.body.clone().unwrap_or_default();
    let Ok(req) = req.body(Full::new(bytes)) else {
        return (
            Attempt::Failed(Problem::new(
                Kind::Internal,
                "Could not build the upstream request",
            )),
            Some(idx),
        );
    };
    let started = Instant::now();
    let service = pool.cfg.name.as_str();
    let fut = async {
        let resp = pool.client.request(req).await.map_err(|e| {
            if e.is_connect() {
                Fail::Connect
            } else {
                Fail::Broken(
                    Problem::new(
                        Kind::UpstreamError,
                        "A backing service closed the connection",
                    ),
                    "closed",
                )
            }
        })?;
        let status = resp.status().as_u16();
        let incomplete = || {
            Fail::Broken(
                Problem::new(
                    Kind::UpstreamError,
                    "A backing service sent an incomplete answer",
                ),
                "incomplete",
            )
        };
        // An announced length is reserved at once; a chunked answer as it arrives.
        let announced = resp
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if announced.is_some_and(|n| n > MAX_UPSTREAM_BODY as u64) {
            return Err(incomplete());
        }
        let mut reserved = ANSWER_RESERVE;
        let mut buf: Vec<u8> = Vec::new();
        if let Some(n) = announced {
            if n > reserved && !reserve(&mut held, n - reserved, safe, service).await {
                return Err(Fail::Capacity);
            }
            reserved = reserved.max(n);
            buf.reserve_exact(usize::try_from(n).unwrap_or(0));
        }
        let (parts, mut body) = resp.into_parts();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|_| incomplete())?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            let want = (buf.len() + data.len()) as u64;
            if want > MAX_UPSTREAM_BODY as u64 {
                return Err(incomplete());
            }
            if want > reserved {
                if !reserve(&mut held, want - reserved, safe, service).await {
                    return Err(Fail::Capacity);
                }
                reserved = want;
            }
            buf.extend_from_slice(&data);
        }
        // The answer's bytes keep their reservation until the last reference is dropped.
        let body = Bytes::from_owner(Held {
            bytes: buf,
            _held: held,
        });
        Ok::<_, Fail>((status, parts.headers, body))
    };
    let outcome = tokio::time::timeout(pool.cfg.timeout, fut).await;
    let took = started.elapsed();
    crate::metrics::UPSTREAM_DURATION
        .with_label_values(&[service])
        .observe(took.as_secs_f64());
    trust.upstream_us.fetch_add(
        u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
        std::sync::atomic::Ordering::Relaxed,
    );
    let errors = |kind: &str| {
        crate::metrics::UPSTREAM_ERRORS
            .with_label_values(&[service, kind])
            .inc()
    };
    match &outcome {
        Ok(Ok((status, _, _))) if *status >= 500 => errors("status_5xx"),
        Ok(Ok(_)) | Ok(Err(Fail::Capacity)) => {}
        Ok(Err(Fail::Connect)) => errors("unavailable"),
        Ok(Err(Fail::Broken(_, kind))) => errors(kind),
        Err(_) => errors("timeout"),
    }
    if matches!(outcome, Ok(Ok(_)) | Ok(Err(Fail::Capacity)) | Err(_)) {
        trust
            .reached
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    let breaker = &inst.breaker;
    let attempt = match outcome {
        Ok(Ok((status, headers, body))) => {
            if status >= 500 {
                breaker.failure();
            } else {
                breaker.success();
            }
            Attempt::Answered(Answer {
                status,
                headers,
                body,
                elapsed: started.elapsed(),
            })
        }
        // The service answered; the edge had no room for it (not the service's fault).
        Ok(Err(Fail::Capacity)) => Attempt::Failed(at_capacity()),
        Ok(Err(Fail::Connect)) => {
            breaker.failure();
            Attempt::Refused(unavailable())
        }
        Ok(Err(Fail::Broken(p, _))) => {
            breaker.failure();
            Attempt::Failed(p)
        }
        Err(_) => {
            breaker.failure();
            Attempt::Failed(timed_out())
        }
    };
    pool.publish();
    (attempt, Some(idx))
}

/// Why an attempt got no whole answer.
enum Fail {
    /// The connection could not be made: nothing reached the service.
    Connect,
    /// A broken connection or answer, with its metric label.
    Broken(Problem, &'static str),
    /// No room in the answer budget for a read's answer.
    Capacity,
}

/// Grows a call's reservation; a write's answer (the service already acted) is never
/// refused for room, only a read's.
async fn reserve(held: &mut crate::bounds::Reserved, n: u64, safe: bool, service: &str) -> bool {
    if held.grow(n).await {
        return true;
    }
    if !safe {
        held.force(n);
        return true;
    }
    crate::bounds::UPSTREAM_BUDGET_REFUSED
        .with_label_values(&[service])
        .inc();
    false
}

/// An upstream answer's bytes and their share of the answer budget.
struct Held {
    bytes: Vec<u8>,
    _held: crate::bounds::Reserved,
}

impl AsRef<[u8]> for Held {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

fn at_capacity() -> Problem {
    Problem::new(
        Kind::UpstreamUnavailable,
        "The edge is at capacity; retry later",
    )
    .with_header("retry-after", "1")
}

pub fn unavailable() -> Problem {
    Problem::new(
        Kind::UpstreamUnavailable,
        "A backing service is unavailable; retry later",
    )
    .with_header("retry-after", "5")
}
