//! Circuit breaking per instance of a legacy service: consecutive failures open it, an
//! open circuit refuses calls at once, one probe after the open period closes or reopens it.

use std::time::{Duration, Instant};

use crate::config::Upstream;
use crate::problem::{Kind, Problem};

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
pub(super) struct Breaker {
    service: String,
    /// The instance's `host:port` (a configured, bounded label).
    instance: String,
    failures: u32,
    open_for: Duration,
    probe_deadline: Duration,
    state: std::sync::Mutex<BreakerState>,
}

impl Breaker {
    pub(super) fn new(cfg: &Upstream, instance: &str) -> Breaker {
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

    pub(super) fn phase(&self) -> Circuit {
        let st = self.lock();
        if st.phase == Circuit::Open && Instant::now() >= st.until {
            // Reported as half-open: the next call is the probe.
            return Circuit::HalfOpen;
        }
        st.phase
    }

    /// Lets a call through, or refuses it with 503 and a `Retry-After` while open.
    pub(super) fn admit(&self) -> Result<(), Problem> {
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

    pub(super) fn success(&self) {
        let mut st = self.lock();
        st.consecutive = 0;
        if st.phase != Circuit::Closed {
            self.set(&mut st, Circuit::Closed);
        }
    }

    pub(super) fn failure(&self) {
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

fn open_circuit(left: Duration) -> Problem {
    let secs = left.as_millis().div_ceil(1000).max(1);
    Problem::new(
        Kind::UpstreamUnavailable,
        "A backing service is unavailable; retry later",
    )
    .with_header("retry-after", secs.to_string())
}
