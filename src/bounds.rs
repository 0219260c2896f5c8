//! Bounds on what a client can pin on the public listeners, and on upstream answers held
//! in memory at once.
//!
//! - [`Bounded`] wraps pingora's HTTP app (the proxy) as an `HttpServerApp`: every
//!   session, HTTP/1 request or HTTP/2 stream, gets a downstream write deadline (a client
//!   that stops reading — an HTTP/1 reader that never reads, an HTTP/2 stream whose flow
//!   control window stays at 0 — fails its write after `write_timeout` and the
//!   stream/connection is closed), HTTP/1.1 pipelining is answered in order (RFC 9112
//!   §9.3.2), and HTTP/2 connections get a bounded number of concurrent streams and a
//!   bounded send buffer per stream.
//! - [`ByteBudget`] caps the bytes of upstream answers being read at once, across every
//!   service: each call reserves its answer's bytes before reading them; beyond the
//!   budget it waits briefly, then fails (503).
//!
//! It does not own the head deadline (`head_guard`) or the body deadline (`edge`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::{HttpServerApp, HttpServerOptions, ReusedHttpStream};
use pingora::protocols::http::ServerSession;
use pingora::server::ShutdownWatch;
use prometheus::{register_int_counter_vec, register_int_gauge_vec, IntCounterVec, IntGaugeVec};

/// The listener bounds, from the edge config.
#[derive(Debug, Clone)]
pub struct ClientBounds {
    /// Each write of an answer to a client must complete within this (HTTP/1 and HTTP/2).
    pub write_timeout: Duration,
    /// Concurrent streams per HTTP/2 connection.
    pub h2_max_streams: u32,
    /// Bytes an HTTP/2 stream may queue beyond what the client's window lets out.
    pub h2_send_buffer: usize,
    /// HTTP/2 streams served at once across all connections: each holds its answer until
    /// the client's window lets it out, so this and `write_timeout` bound what stalled
    /// readers can pin. A stream beyond it waits [`STREAM_WAIT`], then is refused.
    pub h2_streams_in_flight: usize,
}

/// How long an HTTP/2 stream waits for a place among `h2_streams_in_flight`.
pub const STREAM_WAIT: Duration = Duration::from_secs(1);

impl Default for ClientBounds {
    fn default() -> ClientBounds {
        ClientBounds {
            write_timeout: Duration::from_secs(15),
            h2_max_streams: 100,
            h2_send_buffer: 64 * 1024,
            h2_streams_in_flight: 1024,
        }
    }
}

pub static SESSIONS: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        "prospect_edge_downstream_sessions",
        "Requests being served now, by protocol (h1: one per connection, h2: one per stream).",
        &["protocol"]
    )
    .unwrap_or_else(|e| panic!("metric registration at start-up: {e}"))
});

pub static SESSIONS_CLOSED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "prospect_edge_downstream_sessions_ended_total",
        "Requests whose connection (h1) or stream (h2) was not kept, by protocol: a write that \
         missed its deadline, a client that went away, or a `Connection: close`.",
        &["protocol"]
    )
    .unwrap_or_else(|e| panic!("metric registration at start-up: {e}"))
});

pub static STREAMS_REFUSED: LazyLock<prometheus::IntCounter> = LazyLock::new(|| {
    prometheus::register_int_counter!(
        "prospect_edge_h2_streams_refused_total",
        "HTTP/2 streams reset because `h2_streams_in_flight` streams were being served."
    )
    .unwrap_or_else(|e| panic!("metric registration at start-up: {e}"))
});

pub static UPSTREAM_BYTES: LazyLock<prometheus::IntGauge> = LazyLock::new(|| {
    prometheus::register_int_gauge!(
        "prospect_edge_upstream_answer_bytes_in_flight",
        "Bytes of upstream answers being read or held by calls in flight (the global budget)."
    )
    .unwrap_or_else(|e| panic!("metric registration at start-up: {e}"))
});

pub static UPSTREAM_BUDGET_REFUSED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "prospect_edge_upstream_budget_refused_total",
        "Upstream calls answered 503 because the in-flight answer byte budget stayed full, by service.",
        &["service"]
    )
    .unwrap_or_else(|e| panic!("metric registration at start-up: {e}"))
});

/// Registers this module's metrics (so that `/metrics` lists them before any traffic).
pub fn init_metrics() {
    for p in ["h1", "h2"] {
        SESSIONS.with_label_values(&[p]).set(0);
        SESSIONS_CLOSED.with_label_values(&[p]).inc_by(0);
    }
    LazyLock::force(&STREAMS_REFUSED);
    LazyLock::force(&UPSTREAM_BYTES);
    LazyLock::force(&UPSTREAM_BUDGET_REFUSED);
}

/// pingora's HTTP app with the listener bounds applied to every session.
pub struct Bounded<A> {
    app: Arc<A>,
    bounds: ClientBounds,
    h2_streams: Arc<tokio::sync::Semaphore>,
}

impl<A> Bounded<A> {
    /// `h2_streams` is shared by the listeners that serve HTTP/2 (one budget per process).
    pub fn new(app: A, bounds: ClientBounds, h2_streams: Arc<tokio::sync::Semaphore>) -> Self {
        Bounded {
            app: Arc::new(app),
            bounds,
            h2_streams,
        }
    }
}

/// The socket options of every connection a public listener accepts: TCP keep-alive (a
/// peer that vanished without a FIN is found within `idle + interval × count`) and
/// `TCP_USER_TIMEOUT` = the write deadline.
///
/// Why the kernel's timeout as well as pingora's write deadline: without it, HTTP/1
/// clients that never read kept their sessions and connections (the test
/// `bounds::http1_clients_that_never_read_are_closed_at_the_write_deadline` saw all 20
/// still open after 50 s, and an unsent answer left in a closed socket's send queue keeps
/// an orphan alive under zero-window probes for minutes). With `TCP_USER_TIMEOUT`, data
/// that stays untransmitted behind a zero window that long makes the kernel reset the
/// connection (Linux ≥ 5.11 counts it from the first probe): the edge's pending write
/// fails, the session ends, and the kernel frees the buffers, whether or not the socket
/// is still open. A client that reads, however slowly, reopens the window and is not
/// affected.
pub fn accepted_socket_options(bounds: &ClientBounds) -> pingora::listeners::TcpSocketOptions {
    let mut o = pingora::listeners::TcpSocketOptions::default();
    o.tcp_keepalive = Some(pingora::protocols::l4::ext::TcpKeepalive {
        idle: Duration::from_secs(60),
        interval: Duration::from_secs(10),
        count: 6,
        user_timeout: bounds.write_timeout,
    });
    o
}

/// The semaphore of [`ClientBounds::h2_streams_in_flight`].
pub fn h2_stream_slots(bounds: &ClientBounds) -> Arc<tokio::sync::Semaphore> {
    Arc::new(tokio::sync::Semaphore::new(
        bounds.h2_streams_in_flight.max(1),
    ))
}

/// Decrements the session gauge however the session ends (also when its task is dropped).
struct Counted(&'static str);

impl Drop for Counted {
    fn drop(&mut self) {
        SESSIONS.with_label_values(&[self.0]).dec();
    }
}

#[async_trait]
impl<A: HttpServerApp + Send + Sync + 'static> HttpServerApp for Bounded<A> {
    /// Sets the write deadline and pipelining on the session, then serves it.
    async fn process_new_http(
        self: &Arc<Self>,
        mut session: ServerSession,
        shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        let protocol = if session.is_http2() { "h2" } else { "h1" };
        let _slot = if session.is_http2() {
            match tokio::time::timeout(STREAM_WAIT, self.h2_streams.clone().acquire_owned()).await {
                Ok(Ok(slot)) => Some(slot),
                _ => {
                    // Dropping the session resets the stream; the client may retry it.
                    STREAMS_REFUSED.inc();
                    return None;
                }
            }
        } else {
            None
        };
        session.set_write_timeout(Some(self.bounds.write_timeout));
        // A request sent before the previous answer is served after it, in order
        // (pingora's default drops it and resets the connection).
        session.set_pipelining_enabled(true);
        SESSIONS.with_label_values(&[protocol]).inc();
        let _counted = Counted(protocol);
        let reused = self.app.process_new_http(session, shutdown).await;
        if reused.is_none() {
            SESSIONS_CLOSED.with_label_values(&[protocol]).inc();
        }
        reused
    }

    fn h2_options(&self) -> Option<pingora::protocols::http::v2::server::H2Options> {
        let mut o = pingora::protocols::http::v2::server::default_h2_options();
        o.max_concurrent_streams(self.bounds.h2_max_streams);
        o.max_send_buffer_size(self.bounds.h2_send_buffer);
        Some(o)
    }

    fn server_options(&self) -> Option<&HttpServerOptions> {
        self.app.server_options()
    }

    async fn http_cleanup(&self) {
        self.app.http_cleanup().await;
    }
}

// ------------------------------------------------------------------ upstream answer bytes

/// A global budget of upstream answer bytes in flight.
#[derive(Debug)]
pub struct ByteBudget {
    limit: u64,
    used: AtomicU64,
    freed: tokio::sync::Notify,
    /// How long a call waits for room before it fails.
    wait: Duration,
}

/// Bytes reserved from a [`ByteBudget`], given back on drop.
#[derive(Debug)]
pub struct Reserved {
    budget: Arc<ByteBudget>,
    bytes: u64,
}

impl Drop for Reserved {
    fn drop(&mut self) {
        if self.bytes > 0 {
            self.budget.used.fetch_sub(self.bytes, Ordering::AcqRel);
            UPSTREAM_BYTES.sub(i64::try_from(self.bytes).unwrap_or(i64::MAX));
            self.budget.freed.notify_waiters();
        }
    }
}

impl ByteBudget {
    pub fn new(limit: u64, wait: Duration) -> Arc<ByteBudget> {
        Arc::new(ByteBudget {
            limit,
            used: AtomicU64::new(0),
            freed: tokio::sync::Notify::new(),
            wait,
        })
    }

    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Acquire)
    }

    /// An empty reservation, grown as an answer's bytes arrive.
    pub fn start(self: &Arc<Self>) -> Reserved {
        Reserved {
            budget: self.clone(),
            bytes: 0,
        }
    }
}

impl Reserved {
    /// Reserves `n` more bytes, waiting up to the budget's `wait` for room; `false` when
    /// there is none by then.
    pub async fn grow(&mut self, n: u64) -> bool {
        let budget = self.budget.clone();
        let deadline = tokio::time::Instant::now() + budget.wait;
        loop {
            let freed = budget.freed.notified();
            tokio::pin!(freed);
            // Registered before the check: a release between the check and the wait wakes it.
            freed.as_mut().enable();
            let mine = self.bytes;
            // An answer alone in flight (no other bytes reserved) may always grow: each is
            // capped on its own, and a budget below that cap must not refuse everything.
            let ok = budget
                .used
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                    (u == mine || u.saturating_add(n) <= budget.limit).then_some(u + n)
                })
                .is_ok();
            if ok {
                self.bytes += n;
                UPSTREAM_BYTES.add(i64::try_from(n).unwrap_or(i64::MAX));
                return true;
            }
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                return false;
            }
        }
    }
}

impl Reserved {
    /// Reserves `n` more bytes whatever the budget says (an answer that must be read).
    pub fn force(&mut self, n: u64) {
        self.budget.used.fetch_add(n, Ordering::AcqRel);
        self.bytes += n;
        UPSTREAM_BYTES.add(i64::try_from(n).unwrap_or(i64::MAX));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_budget_refuses_beyond_its_limit_and_frees_on_drop() {
        let b = ByteBudget::new(100, Duration::from_millis(20));
        let mut a = b.start();
        assert!(a.grow(60).await);
        let mut c = b.start();
        assert!(!c.grow(60).await, "over the limit after the wait");
        assert!(c.grow(40).await);
        assert_eq!(b.used(), 100);
        drop(a);
        assert_eq!(b.used(), 40);
        assert!(c.grow(60).await);
        drop(c);
        assert_eq!(b.used(), 0);
    }

    #[tokio::test]
    async fn a_waiting_call_gets_room_freed_meanwhile() {
        let b = ByteBudget::new(100, Duration::from_secs(10));
        let mut a = b.start();
        assert!(a.grow(100).await);
        let b2 = b.clone();
        let waiter = tokio::spawn(async move {
            let mut r = b2.start();
            r.grow(50).await
        });
        tokio::task::yield_now().await;
        drop(a);
        assert!(waiter.await.unwrap_or(false));
    }

    #[tokio::test]
    async fn one_answer_alone_may_exceed_the_budget() {
        let b = ByteBudget::new(10, Duration::from_millis(5));
        let mut a = b.start();
        assert!(a.grow(50).await);
        assert!(a.grow(50).await, "the only answer in flight keeps growing");
        let mut c = b.start();
        assert!(!c.grow(1).await);
    }
}
