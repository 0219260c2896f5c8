//! One attempt of an upstream call on one instance: the slot, the answer budget, the
//! request, the timeout, the answer read within its bounds, and what the breaker and the
//! metrics learn from it.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use super::h1;
use super::pool::{Outstanding, Pool};
use super::{unavailable, Answer, Ledger, Outgoing, ANSWER_RESERVE, MAX_UPSTREAM_BODY};
use crate::bounds::ByteBudget;
use crate::problem::{Kind, Problem};

/// The outcome of one attempt.
pub(super) enum Attempt {
    Answered(Answer),
    /// A connect failure: nothing reached the service, a safe call may be retried.
    Refused(Problem),
    /// Timed out, broken answer, or refused by the open circuit: never retried.
    Failed(Problem),
}

/// One attempt on one instance (another than `avoid` when there is one); the outcome and
/// the instance it went to.
pub(super) async fn attempt_once(
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
    let safe = out.safe;
    let traceparent = trust.traceparent();
    let req = h1::Request {
        method: &out.method,
        path_and_query: out.path_and_query,
        authority: inst.authority.as_str(),
        traceparent: &traceparent,
        headers: out.headers,
        body: out.body.as_deref(),
    };
    let started = Instant::now();
    let service = pool.cfg.name.as_str();
    let fut = async {
        let mut resp = h1::send(&inst.idle, pool.cfg.connect_timeout, &req)
            .await
            .map_err(|f| match f {
                h1::Failure::Connect => Fail::Connect,
                _ => Fail::Broken(
                    Problem::new(
                        Kind::UpstreamError,
                        "A backing service closed the connection",
                    ),
                    "closed",
                ),
            })?;
        let status = resp.status;
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
        let announced = resp.announced();
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
        loop {
            let more = resp
                .read(&mut buf, &inst.idle)
                .await
                .map_err(|_| incomplete())?;
            let want = buf.len() as u64;
            if want > MAX_UPSTREAM_BODY as u64 {
                return Err(incomplete());
            }
            if want > reserved {
                if !reserve(&mut held, want - reserved, safe, service).await {
                    return Err(Fail::Capacity);
                }
                reserved = want;
            }
            if !more {
                break;
            }
        }
        // The answer's bytes keep their reservation until the last reference is dropped.
        let body = Bytes::from_owner(Held {
            bytes: buf,
            _held: held,
        });
        Ok::<_, Fail>((status, std::mem::take(&mut resp.headers), body))
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
