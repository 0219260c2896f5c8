//! Prometheus metrics, registered once in the default registry and served on the admin
//! listener. Labels are bounded: route kind, method, status class — never a path or tenant.

use std::sync::LazyLock;

use prometheus::{
    register_histogram_vec, register_int_counter_vec, register_int_gauge_vec, HistogramVec,
    IntCounterVec, IntGaugeVec,
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

pub static CIRCUIT: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        "prospect_edge_circuit_state",
        "Circuit breaker state per legacy service: 0 closed, 1 open, 2 half-open.",
        &["service"]
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

/// Registers every metric so that `/metrics` lists them before the first request.
pub fn init() {
    LazyLock::force(&REQUESTS);
    LazyLock::force(&DURATION);
    LazyLock::force(&RELOADS);
    LazyLock::force(&RATE_LIMIT);
    LazyLock::force(&IDEMPOTENCY);
    LazyLock::force(&CIRCUIT);
    LazyLock::force(&UPSTREAM_RETRIES);
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
