//! The request path: one pingora HTTP app (`HttpServerApp`) that runs every `/v1`
//! operation as a pipeline of named stages and answers it itself.
//!
//! Why not proxy phases: most public operations need the whole request before the first
//! upstream call, several calls (IAM, read–merge–write, search scans) and the whole answer
//! before responding. One executor for every route keeps that uniform (see
//! `docs/architecture.md`). Each stage is a file with a typed input and output that fails
//! with a `Problem`; [`Edge::handle`] composes them in the order of the architecture table,
//! and `respond` writes every answer.

mod authenticate;
mod authorize;
mod body;
mod ctx;
mod execute;
mod head;
mod idempotency;
mod names;
mod rate_limit;
mod respond;
mod route;
mod runtime;
mod version;

use std::sync::Arc;

use async_trait::async_trait;
use pingora::apps::{HttpPersistentSettings, HttpServerApp, ReusedHttpStream};
use pingora::prelude::*;
use pingora::protocols::http::ServerSession;
use pingora::server::ShutdownWatch;

use crate::mapping::versions;
use crate::mapping::Trust;
use crate::problem::{Kind, Problem};

pub use body::MAX_BODY;
pub use ctx::{new_trace_id, Ctx};
use idempotency::Claimed;
use respond::Reply;
pub use runtime::{mapping_digest, Runtime};

/// Runs one stage and records its time under `Stage::$stage`, whatever its outcome.
macro_rules! stage {
    ($ctx:ident, $stage:ident, $run:expr) => {{
        let out = $run;
        $ctx.clock.lap(crate::metrics::Stage::$stage);
        out
    }};
}

pub struct Edge {
    pub rt: Arc<Runtime>,
    /// Set (and `stopped` notified) when the service stops.
    stop: std::sync::atomic::AtomicBool,
    stopped: tokio::sync::Notify,
}

impl Edge {
    pub fn new(rt: Arc<Runtime>) -> Edge {
        Edge {
            rt,
            stop: Default::default(),
            stopped: tokio::sync::Notify::new(),
        }
    }

    /// The whole `/v1` pipeline for one request, stage by stage.
    async fn handle(&self, session: &mut ServerSession, ctx: &mut Ctx) -> Result<Reply, Problem> {
        let rt = &*self.rt;
        let plan = rt.plan.load_full();
        // Echo the client's release when it is one, even on errors before the version stage.
        ctx.version = version::echo(&plan, session.req_header());
        let req = session.req_header();
        if let Some(doc) = route::document(rt, &plan, req, &mut ctx.route, &mut ctx.version)? {
            return Ok(doc);
        }
        let method = req.method.as_str().to_string();
        let path = req.uri.path().to_string();

        let target = stage!(ctx, Route, route::route(&plan, &method, &path))?;
        ctx.route = target.op.label();
        let identity = stage!(
            ctx,
            Authenticate,
            authenticate::authenticate(&rt.auth, req).await
        )?;
        ctx.identity = Some(identity.clone());
        let limiter = rt.rate_limiter.as_ref();
        let limited = rate_limit::rate_limit(limiter, &identity, &target.op, &mut ctx.extra).await;
        stage!(ctx, RateLimit, limited)?;
        let release = stage!(ctx, Version, version::version(&plan, req, &mut ctx.extra))?;
        ctx.version = release.date.clone();
        let trust = Trust::new(identity.tenant, identity.user, ctx.trace_id.clone())
            .with_trace_flags(&ctx.trace_flags);
        let authorized =
            authorize::authorize(rt, &target, &identity, &trust, &mut ctx.upstream_ms).await;
        stage!(ctx, Authorize, authorized)?;
        let read = async {
            let deadline = rt.cfg.client_body_timeout;
            let mut body = body::read_json_body(session, &method, deadline).await?;
            let pending = idempotency::key(
                rt.idempotency.as_ref(),
                session.req_header(),
                &method,
                &path,
                &target.op,
                body.as_ref(),
                &release.date,
            )?;
            let changes = versions::pending(&plan.versions, &release.date, &target.res.name);
            body::forward(&changes, &target.op, &mut body)?;
            Ok::<_, Problem>((body, pending, changes))
        };
        let (body, pending, changes) = stage!(ctx, Body, read.await)?;
        let pending = match stage!(
            ctx,
            IdempotencyClaim,
            idempotency::claim(pending, &identity).await
        )? {
            Claimed::Replay(stored) => return Ok(stored),
            Claimed::Go(pending) => pending,
        };
        let reached_before = trust.reached();
        let call = execute::Call {
            rt,
            plan: &plan,
            target: &target,
            trust: &trust,
            identity: &identity,
            release,
            changes: &changes,
        };
        let result = stage!(ctx, Execute, execute::execute(call, body.as_ref()).await);
        ctx.upstream_ms = trust.upstream_ms();
        let reached = trust.reached() > reached_before;
        let type_base = &rt.cfg.problem_type_base;
        let trace_id = &ctx.trace_id;
        let problem_reply = |p: &Problem| respond::problem_reply(p, type_base, &path, trace_id);
        let stored = idempotency::store(pending, &identity, reached, result, problem_reply).await;
        stage!(ctx, IdempotencyStore, stored)
    }

    /// One request: head checks, the `/v1` pipeline, the answer written.
    async fn serve(&self, session: &mut ServerSession, ctx: &mut Ctx) -> Result<()> {
        let req = session.req_header();
        ctx.start_trace(
            req.headers
                .get(names::TRACEPARENT)
                .and_then(|v| v.to_str().ok()),
        );
        let instance = req.uri.path().to_string();
        // head size: the first check, so nothing else reads an oversized head
        if let Err(p) = head::head_size(req, self.rt.cfg.max_request_header_bytes) {
            // An over-long path is not echoed back in full.
            let instance = if instance.len() > 2048 {
                "/"
            } else {
                &instance
            };
            let reply = self.problem_reply(&p, instance, &ctx.trace_id);
            ctx.version = self.rt.plan.load().versions.current.clone();
            return respond::write(session, ctx, reply, self.draining()).await;
        }
        if let Some(preflight) = head::cors(self.rt.cfg.cors.as_ref(), req, ctx) {
            ctx.version = self.rt.plan.load().versions.current.clone();
            return respond::write(session, ctx, preflight, self.draining()).await;
        }
        ctx.clock.lap(crate::metrics::Stage::Head);
        let reply = match self.handle(session, ctx).await {
            Ok(r) => r,
            Err(p) => {
                if p.kind == Kind::PayloadTooLarge {
                    // The rest of an oversized body is not read: the connection cannot be reused.
                    session.set_keepalive(None);
                }
                self.problem_reply(&p, &instance, &ctx.trace_id)
            }
        };
        respond::write(session, ctx, reply, self.draining()).await?;
        ctx.clock.lap(crate::metrics::Stage::Respond);
        Ok(())
    }

    /// Resolves once the service is stopping.
    async fn stopping(&self) {
        let notified = self.stopped.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if self.stop.load(std::sync::atomic::Ordering::Acquire) {
            return;
        }
        notified.await;
    }

    /// One structured access-log line per request: never a token, never a body.
    fn log(&self, session: &ServerSession, ctx: &Ctx) {
        let (tenant, client, user) = match &ctx.identity {
            Some(i) => (i.tenant, i.client_id.as_str(), i.user),
            None => (0, "", 0),
        };
        let status = ctx.status;
        let method = crate::metrics::method_label(&session.req_header().method);
        crate::metrics::REQUESTS
            .with_label_values(&[ctx.route, method, crate::metrics::status_class(status)])
            .inc();
        crate::metrics::DURATION
            .with_label_values(&[ctx.route])
            .observe(ctx.started.elapsed().as_secs_f64());
        if crate::access_log::enabled() {
            crate::access_log::write(&crate::access_log::Entry {
                trace_id: ctx.trace_id.as_str(),
                method: session.req_header().method.as_str(),
                route: ctx.route,
                status: ctx.status,
                duration_ms: ctx.started.elapsed().as_secs_f64() * 1000.0,
                upstream_ms: ctx.upstream_ms,
                bytes_in: session.body_bytes_read(),
                bytes_out: session.body_bytes_sent(),
                tenant,
                client,
                user,
            });
        }
    }

    fn problem_reply(&self, p: &Problem, instance: &str, trace_id: &str) -> Reply {
        respond::problem_reply(p, &self.rt.cfg.problem_type_base, instance, trace_id)
    }

    fn draining(&self) -> bool {
        self.rt.draining.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// The public listener's HTTP app: reads each request head, runs [`Edge::serve`], logs
/// it and hands the connection back for the next request.
///
/// Why not pingora's `HttpProxy` with a `ProxyHttp` whose `request_filter` answers
/// everything (sessions 1–5): the edge never used its proxy phases, but paid for them on
/// every request — its per-request `Session` (downstream modules, cache and subrequest
/// state) and the proxy's futures, large enough to move into their boxes: ~11.7k of a GET's
/// ~196.8k instructions under callgrind (`benches/README.md`). This app does
/// what `HttpProxy` did around `request_filter` for a request answered there: the head is
/// read unless the service is stopping (then the connection is dropped), a head pingora's
/// parser refuses gets its 400 and `CONNECT` its 405 (both replaced by problems in
/// `head_guard`), keep-alive ends when the service stops, the access line is written
/// whatever happened, and a session whose answer could not be written is not reused.
#[async_trait]
impl HttpServerApp for Edge {
    async fn process_new_http(
        self: &Arc<Self>,
        mut session: ServerSession,
        shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        let read = tokio::select! {
            biased; // a head already buffered is served before a stop is noticed
            read = session.read_request() => read,
            _ = self.stopping() => return None,
        };
        match read {
            Ok(true) => {}
            Ok(false) => return None,
            Err(e) => {
                if matches!(e.etype, ErrorType::InvalidHTTPHeader) {
                    let _ = session.respond_error(400).await;
                }
                session.shutdown().await;
                return None;
            }
        }
        if session.req_header().method == http::Method::CONNECT {
            let _ = session.respond_error(405).await;
            session.shutdown().await;
            return None;
        }
        if *shutdown.borrow() {
            session.set_keepalive(None);
        }
        let mut ctx = Ctx::new();
        let served = self.serve(&mut session, &mut ctx).await;
        self.log(&session, &ctx);
        if let Err(e) = served {
            // Nothing more can be written on a broken connection; anything else failed
            // before the answer's head went out.
            if !matches!(
                e.etype,
                ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed
            ) {
                let _ = session.respond_error(500).await;
            }
            return None;
        }
        let settings = HttpPersistentSettings::for_session(&session);
        let reusable = session.finish().await.ok().flatten()?;
        Some(ReusedHttpStream::from_reusable_stream(reusable, settings))
    }

    /// The service stops: idle keep-alive connections waiting for a head are dropped.
    async fn http_cleanup(&self) {
        self.stop.store(true, std::sync::atomic::Ordering::Release);
        self.stopped.notify_waiters();
    }
}
