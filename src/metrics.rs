//! Prometheus metrics, registered once in the default registry and served on the admin
//! listener. Labels are bounded: route kind, method, status class, configured service
//! names, fixed outcome sets — never a path, a tenant or a token.

use std::sync::LazyLock;

use prometheus::{
    register_gauge, register_histogram_vec, register_int_counter_vec, register_int_gauge,
    register_int_gauge_vec, Gauge, Histogram, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec,
};

pub static REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "prospect_edge_requests_total",
        "Public requests answered, by route kind, method and status class.",
        &["route", "method", "status_class"]
    )
    .unwrap_or_else(|e| panic!("metric registration at start-up: {e}"))
});

pub static DURATION: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "prospect_edge_request_duration_seconds",
        "Time to answer a public request, by route kind.",
        &["route"],
        vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0]
    )
    .unwrap_or_else(|e| panic!("metric registration at start-up: {e}"))
});

pub static RELOADS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "prospect_edge_mapping_reloads_total",
        "Mapping reloads, by outcome (ok or refused).",
        &["outcome"]
    )
    .unwrap_or_else(|e| panic!("metric registration at start-up: {e}"))
});

pub static TLS_RELOADS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "prospect_edge_tls_certificate_reloads_total",
        "Reloads of the public TLS listener's certificate, by outcome (ok or refused).",
        &["outcome"]
    )
    .unwrap_or_else(|e| panic!("metric registration at start-up: {e}"))
});

pub static TLS_HANDSHAKES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "prospect_edge_tls_handshakes_total",
        "TLS handshakes on the public TLS listener, by outcome (ok, failed, timeout).",
        &["outcome"]
    )
    .unwrap_or_else(|e| panic!("metric registration at start-up: {e}"))
});

pub static RATE_LIMIT: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "prospect_edge_rate_limit_decisions_total",
        "Rate-limit decisions, by outcome (allowed, refused, redis_error).",
        &["outcome"]
    )
    .unwrap_or_else(|e| panic!("metric registration at start-up: {e}"))
});

pub static IDEMPOTENCY: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "prospect_edge_idempotency_total",
        "Idempotency-Key outcomes (fresh, replayed, in_flight, mismatch).",
        &["outcome"]
    )
    .unwrap_or_else(|e| panic!("metric registration at start-up: {e}"))
});

pub static UPSTREAM_DURATION: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "prospect_edge_upstream_duration_seconds",
        "Time of one call to a legacy service (until its whole answer is read), by service.",
        &["service"],
        vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0]
    )
    .unwrap_or_else(|e| panic!("metric registration at start-up: {e}"))
});

pub static UPSTREAM_ERRORS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "prospect_edge_upstream_errors_total",
        "Failed calls to a legacy service, by service and kind (unavailable, closed, \
         incomplete, timeout, status_5xx).",
        &["service", "kind"]
    )
    .unwrap_or_else(|e| panic!("metric registration at start-up: {e}"))
});

pub static AUTH: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "prospect_edge_auth_total",
        "Authentication outcomes of routed requests (ok, invalid, missing, error).",
        &["outcome"]
    )
    .unwrap_or_else(|e| panic!("metric registration at start-up: {e}"))
});

pub static CACHE: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "prospect_edge_cache_lookups_total",
        "Cache lookups by cache (token, jwks, permissions) and result (hit, miss).",
        &["cache", "result"]
    )
    .unwrap_or_else(|e| panic!("metric registration at start-up: {e}"))
});

pub static TOKEN_CACHE_BYTES: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!(
        "prospect_edge_token_cache_bytes",
        "Estimated bytes held by the verified-token cache (bounded by token_cache_max_bytes)."
    )
    .unwrap_or_else(|e| panic!("metric registration at start-up: {e}"))
});

pub static IN_FLIGHT: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!(
        "prospect_edge_requests_in_flight",
        "Public requests being processed now."
    )
    .unwrap_or_else(|e| panic!("metric registration at start-up: {e}"))
});

pub static MAPPING_INFO: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        "prospect_edge_mapping_info",
        "The mapping set being served: 1 for the short hash of its files.",
        &["version"]
    )
    .unwrap_or_else(|e| panic!("metric registration at start-up: {e}"))
});

pub static CIRCUIT: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        "prospect_edge_circuit_state",
        "Circuit breaker state per legacy service: 0 closed, 1 open, 2 half-open.",
        &["service"]
    )
    .unwrap_or_else(|e| panic!("metric registration at start-up: {e}"))
});

pub static MAPPING_LOADED: LazyLock<Gauge> = LazyLock::new(|| {
    register_gauge!(
        "prospect_edge_mapping_loaded_timestamp_seconds",
        "Unix time at which the mapping set being served was loaded."
    )
    .unwrap_or_else(|e| panic!("metric registration at start-up: {e}"))
});

pub static UPSTREAM_RETRIES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "prospect_edge_upstream_retries_total",
        "Retries of safe upstream calls, by legacy service.",
        &["service"]
    )
    .unwrap_or_else(|e| panic!("metric registration at start-up: {e}"))
});

pub static STAGE_SECONDS: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "prospect_edge_stage_seconds",
        "Time spent in each stage of the request pipeline (docs/architecture.md), by stage.",
        &["stage"],
        vec![
            0.000_005, 0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5,
            0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0
        ]
    )
    .unwrap_or_else(|e| panic!("metric registration at start-up: {e}"))
});

/// The stages of the request pipeline, in order: the `stage` label of
/// `prospect_edge_stage_seconds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Head size and CORS, from the start of the request.
    Head,
    Route,
    Authenticate,
    RateLimit,
    Version,
    Authorize,
    Body,
    IdempotencyClaim,
    Execute,
    IdempotencyStore,
    Respond,
}

impl Stage {
    pub const ALL: [Stage; 11] = [
        Stage::Head,
        Stage::Route,
        Stage::Authenticate,
        Stage::RateLimit,
        Stage::Version,
        Stage::Authorize,
        Stage::Body,
        Stage::IdempotencyClaim,
        Stage::Execute,
        Stage::IdempotencyStore,
        Stage::Respond,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Stage::Head => "head",
            Stage::Route => "route",
            Stage::Authenticate => "authenticate",
            Stage::RateLimit => "rate_limit",
            Stage::Version => "version",
            Stage::Authorize => "authorize",
            Stage::Body => "body",
            Stage::IdempotencyClaim => "idempotency_claim",
            Stage::Execute => "execute",
            Stage::IdempotencyStore => "idempotency_store",
            Stage::Respond => "respond",
        }
    }

    /// This stage's histogram (looked up once: no label hashing per request).
    pub fn histogram(self) -> &'static Histogram {
        static HANDLES: LazyLock<Vec<Histogram>> = LazyLock::new(|| {
            Stage::ALL
                .iter()
                .map(|s| STAGE_SECONDS.with_label_values(&[s.label()]))
                .collect()
        });
        &HANDLES[self as usize]
    }
}

/// Times the stages of one request back to back: each [`StageClock::lap`] records the time
/// since the previous one under its stage (one clock read a stage).
pub struct StageClock {
    last: std::time::Instant,
}

impl StageClock {
    pub fn start(at: std::time::Instant) -> StageClock {
        StageClock { last: at }
    }

    pub fn lap(&mut self, stage: Stage) {
        let now = std::time::Instant::now();
        stage
            .histogram()
            .observe(now.saturating_duration_since(self.last).as_secs_f64());
        self.last = now;
    }
}

/// Counts one public request as in flight for as long as it lives (kept in the CTX).
pub struct InFlight(());

impl InFlight {
    pub fn start() -> InFlight {
        IN_FLIGHT.inc();
        InFlight(())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        IN_FLIGHT.dec();
    }
}

/// Records a cache lookup.
pub fn cache(name: &'static str, hit: bool) {
    CACHE
        .with_label_values(&[name, if hit { "hit" } else { "miss" }])
        .inc();
}

/// Marks `version` as the mapping set being served.
pub fn mapping_loaded(version: &str) {
    MAPPING_INFO.reset();
    MAPPING_INFO.with_label_values(&[version]).set(1);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    MAPPING_LOADED.set(now);
}

/// Registers every metric so that `/metrics` lists them before the first request.
pub fn init() {
    LazyLock::force(&REQUESTS);
    LazyLock::force(&DURATION);
    LazyLock::force(&RELOADS);
    LazyLock::force(&RATE_LIMIT);
    LazyLock::force(&IDEMPOTENCY);
    LazyLock::force(&UPSTREAM_DURATION);
    LazyLock::force(&UPSTREAM_ERRORS);
    LazyLock::force(&AUTH);
    LazyLock::force(&CACHE);
    LazyLock::force(&IN_FLIGHT);
    LazyLock::force(&TOKEN_CACHE_BYTES);
    LazyLock::force(&MAPPING_INFO);
    LazyLock::force(&MAPPING_LOADED);
    LazyLock::force(&CIRCUIT);
    LazyLock::force(&UPSTREAM_RETRIES);
    for s in Stage::ALL {
        s.histogram();
    }
}

/// The method label: the standard methods, anything else is `other` (labels stay bounded).
pub fn method_label(m: &http::Method) -> &'static str {
    match *m {
        http::Method::GET => "GET",
        http::Method::HEAD => "HEAD",
        http::Method::POST => "POST",
        http::Method::PUT => "PUT",
        http::Method::PATCH => "PATCH",
        http::Method::DELETE => "DELETE",
        http::Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

pub fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}
