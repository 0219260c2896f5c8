//! The transport to the backing services: pooled HTTP/1.1 clients, timeouts, retries and
//! circuit breakers. It sends a request prepared by the mapping side (method, path and
//! query, headers, body) and hands back the raw [`Answer`] (status, headers, bytes); what a
//! service's headers, paths and answers mean is the mapping's business (`crate::mapping::
//! dialect`), so nothing here knows a dialect. Transport failures become problems here; no
//! upstream text ever reaches a problem's `detail`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::config::Upstream;
use crate::problem::{Kind, Problem};

/// Largest upstream body the edge accepts (a 250-record engagements page fits easily).
const MAX_UPSTREAM_BODY: usize = 16 * 1024 * 1024;

struct Pool {
    cfg: Upstream,
    client: Client<HttpConnector, Full<Bytes>>,
    breaker: Breaker,
    /// Calls in flight to this service, at most `pool_idle_per_host`: the client opens a
    /// new connection for every call above the idle pool and closes it afterwards, so
    /// 1,000 concurrent clients meant ~1,400 upstream connections (connect + close per
    /// call, ~40 MiB of buffers). Waiting for a slot counts against the call's timeout.
    slots: tokio::sync::Semaphore,
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
    failures: u32,
    open_for: Duration,
    probe_deadline: Duration,
    state: std::sync::Mutex<BreakerState>,
}

impl Breaker {
    fn new(cfg: &Upstream) -> Breaker {
        let now = Instant::now();
        crate::metrics::CIRCUIT
            .with_label_values(&[cfg.name.as_str()])
            .set(Circuit::Closed as i64);
        Breaker {
            service: cfg.name.clone(),
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
            tracing::warn!(service = %self.service, from = st.phase.as_str(), to = phase.as_str(), "circuit breaker");
        }
        st.phase = phase;
        crate::metrics::CIRCUIT
            .with_label_values(&[self.service.as_str()])
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
                let breaker = Breaker::new(&cfg);
                let slots = tokio::sync::Semaphore::new(cfg.pool_idle_per_host.max(1));
                (
                    cfg.name.clone(),
                    Pool {
                        cfg,
                        client,
                        breaker,
                        slots,
                    },
                )
            })
            .collect();
        Upstreams { pools }
    }

    pub fn base(&self, service: &str) -> Option<&str> {
        self.pools.get(service).map(|p| p.cfg.base.as_str())
    }

    /// Each service's circuit state, for `/readyz`.
    pub fn circuits(&self) -> Vec<(&str, Circuit)> {
        let mut v: Vec<(&str, Circuit)> = self
            .pools
            .iter()
            .map(|(n, p)| (n.as_str(), p.breaker.phase()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(b.0));
        v
    }

    /// One HTTP call. Transport failures become the matching problem here. A `safe` call
    /// is retried after a connect failure or a 502/503 answer, up to the service's
    /// `retries` and the request's retry budget, with jittered exponential backoff; writes
    /// are never retried.
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
        let retries = if req.safe { pool.cfg.retries } else { 0 };
        let mut attempt = 0u32;
        loop {
            let outcome = attempt_once(pool, &req, trust).await;
            let retryable = match &outcome {
                Attempt::Answered(a) => matches!(a.status, 502 | 503),
                Attempt::Refused(_) => true,
                Attempt::Failed(_) => false,
            };
            if retryable && attempt < retries && trust.take_retry() {
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
                    "retrying a safe upstream call"
                );
                crate::metrics::UPSTREAM_RETRIES
                    .with_label_values(&[service])
                    .inc();
                tokio::time::sleep(jittered).await;
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

async fn attempt_once(pool: &Pool, out: &Outgoing<'_>, trust: &Ledger) -> Attempt {
    let timed_out = || {
        Problem::new(
            Kind::UpstreamTimeout,
            "A backing service did not answer in time",
        )
    };
    // Nothing reached the service while waiting: neither the breaker nor `reached` counts it.
    let Ok(Ok(_slot)) = tokio::time::timeout(pool.cfg.timeout, pool.slots.acquire()).await else {
        return Attempt::Failed(timed_out());
    };
    if let Err(p) = pool.breaker.admit() {
        return Attempt::Failed(p);
    }
    let uri = format!("{}{}", pool.cfg.base, out.path_and_query);
    const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
    let mut req = http::Request::builder()
        .method(out.method.clone())
        .uri(uri)
        .header(http::header::HOST, pool.cfg.authority.as_str())
        .header(TRACEPARENT, trust.traceparent());
    for (k, v) in out.headers {
        req = req.header(k, v);
    }
    let bytes = out.body.clone().unwrap_or_default();
    let Ok(req) = req.body(Full::new(bytes)) else {
        return Attempt::Failed(Problem::new(
            Kind::Internal,
            "Could not build the upstream request",
        ));
    };
    let started = Instant::now();
    let fut = async {
        let resp = pool.client.request(req).await.map_err(|e| {
            if e.is_connect() {
                None
            } else {
                Some(Problem::new(
                    Kind::UpstreamError,
                    "A backing service closed the connection",
                ))
            }
        })?;
        let status = resp.status().as_u16();
        let (parts, body) = resp.into_parts();
        let body = Limited::new(body, MAX_UPSTREAM_BODY)
            .collect()
            .await
            .map_err(|_| {
                Some(Problem::new(
                    Kind::UpstreamError,
                    "A backing service sent an incomplete answer",
                ))
            })?
            .to_bytes();
        Ok::<_, Option<Problem>>((status, parts.headers, body))
    };
    let outcome = tokio::time::timeout(pool.cfg.timeout, fut).await;
    let service = pool.cfg.name.as_str();
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
        Ok(Ok(_)) => {}
        Ok(Err(None)) => errors("unavailable"),
        Ok(Err(Some(p))) if p.detail.contains("incomplete") => errors("incomplete"),
        Ok(Err(Some(_))) => errors("closed"),
        Err(_) => errors("timeout"),
    }
    if matches!(outcome, Ok(Ok(_)) | Err(_)) {
        trust
            .reached
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    match outcome {
        Ok(Ok((status, headers, body))) => {
            if status >= 500 {
                pool.breaker.failure();
            } else {
                pool.breaker.success();
            }
            Attempt::Answered(Answer {
                status,
                headers,
                body,
                elapsed: started.elapsed(),
            })
        }
        Ok(Err(None)) => {
            pool.breaker.failure();
            Attempt::Refused(unavailable())
        }
        Ok(Err(Some(p))) => {
            pool.breaker.failure();
            Attempt::Failed(p)
        }
        Err(_) => {
            pool.breaker.failure();
            Attempt::Failed(timed_out())
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
