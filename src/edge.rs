//! The request path: one pingora `ProxyHttp` whose `request_filter` runs every `/v1`
//! operation as a pipeline of named stages and answers it itself.
//!
//! Why not proxy phases: most public operations need the whole request before the first
//! upstream call, several calls (IAM, read–merge–write, search scans) and the whole answer
//! before responding. One executor in `request_filter` keeps that uniform (see
//! `docs/architecture.md`). Stages: route → authenticate → version → authorize → read body
//! → execute (mapping plan) → respond. Every failure is a `Problem`, rendered in one place.

use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::proxy::{ProxyHttp, Session};
use serde_json::Value;

use crate::auth::{Auth, Identity};
use crate::config::EdgeConfig;
use crate::mapping::model::{Plan, Resource};
use crate::mapping::{self, exec::Exec, versions};
use crate::openapi::{self, docs};
use crate::problem::{Kind, Problem};
use crate::seal::Sealer;
use crate::upstream::{Trust, Upstreams};

/// Public request bodies are capped at 1 MiB (contract §1).
pub const MAX_BODY: usize = 1024 * 1024;

/// Long-lived state shared by every request.
pub struct Runtime {
    pub cfg: EdgeConfig,
    pub plan: ArcSwap<Plan>,
    pub sealer: Sealer,
    pub upstreams: Upstreams,
    pub auth: Auth,
    pub rate_limiter: Option<crate::policy::RateLimiter>,
    pub idempotency: Option<crate::policy::IdempotencyStore>,
    /// Set once the background task runs (signals handled, keys fetched): `/readyz`.
    pub ready: std::sync::atomic::AtomicBool,
    /// Set when an upgrade or shutdown begins: answers then carry `Connection: close`, so
    /// clients reconnect (to the new process) instead of reusing a connection pingora is
    /// about to drop while idle.
    pub draining: std::sync::atomic::AtomicBool,
    /// The public TLS listener's certificate, swapped on reload.
    pub certs: Option<Arc<crate::tls::CertStore>>,
}

impl Runtime {
    /// Builds the runtime; fails only if the TLS certificate changed on disk since `check`
    /// and no longer loads.
    pub fn new(cfg: EdgeConfig, plan: Plan) -> Result<Runtime, crate::tls::TlsError> {
        let shared = cfg
            .redis
            .clone()
            .map(|r| Arc::new(crate::policy::Shared::new(r)));
        let certs = match &cfg.tls {
            Some(t) => Some(Arc::new(crate::tls::CertStore::load(
                &t.cert_file,
                &t.key_file,
            )?)),
            None => None,
        };
        Ok(Runtime {
            certs,
            sealer: Sealer::new(&cfg.id_secret.0, &cfg.cursor_secret.0),
            upstreams: Upstreams::new(cfg.upstreams.values().cloned()),
            auth: Auth::new(
                &cfg.issuers,
                cfg.introspection.clone(),
                cfg.permissions_cache,
                cfg.auth_ca_file.as_deref(),
            )?,
            ready: std::sync::atomic::AtomicBool::new(false),
            draining: std::sync::atomic::AtomicBool::new(false),
            rate_limiter: cfg
                .rate_limits
                .clone()
                .map(|r| crate::policy::RateLimiter::new(r, shared.clone())),
            idempotency: cfg
                .idempotency
                .clone()
                .map(|i| crate::policy::IdempotencyStore::new(i, shared.clone())),
            plan: {
                crate::metrics::mapping_loaded(&mapping_digest(&cfg.mappings_dir));
                ArcSwap::from_pointee(plan)
            },
            cfg,
        })
    }

    /// Re-reads the TLS certificate and key (`Ok(false)`: no TLS listener). On error the
    /// certificate being served stays.
    pub fn reload_certificate(&self) -> Result<bool, crate::tls::TlsError> {
        let Some(certs) = &self.certs else {
            return Ok(false);
        };
        let outcome = certs.reload();
        crate::metrics::TLS_RELOADS
            .with_label_values(&[if outcome.is_ok() { "ok" } else { "refused" }])
            .inc();
        outcome.map(|()| true)
    }

    /// Re-reads and recompiles the mappings; an invalid set is refused and the old plan stays.
    pub fn reload(&self) -> Result<usize, crate::diag::Diags> {
        let names: Vec<&str> = self.cfg.upstreams.keys().map(String::as_str).collect();
        let ctx = mapping::Context {
            upstream_names: names,
        };
        match mapping::load_dir(&self.cfg.mappings_dir, &ctx) {
            Ok(plan) => {
                let n = plan.resources.len();
                self.plan.store(Arc::new(plan));
                crate::metrics::mapping_loaded(&mapping_digest(&self.cfg.mappings_dir));
                crate::metrics::RELOADS.with_label_values(&["ok"]).inc();
                Ok(n)
            }
            Err(d) => {
                crate::metrics::RELOADS
                    .with_label_values(&["refused"])
                    .inc();
                Err(d)
            }
        }
    }
}

/// A short hash (12 hex digits) of the mapping files' names and contents: the mapping
/// version shown in `/metrics` and `/readyz`. Read right after a load; an edit racing the
/// load shows up at the next reload at the latest.
pub fn mapping_digest(dir: &std::path::Path) -> String {
    use sha2::{Digest, Sha256};
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    let mut h = Sha256::new();
    for f in files {
        h.update(
            f.file_name()
                .map(|n| n.as_encoded_bytes())
                .unwrap_or_default(),
        );
        h.update([0]);
        h.update(std::fs::read(&f).unwrap_or_default());
        h.update([0]);
    }
    crate::hex::encode(&h.finalize()[..6])
}

/// Per-request state (pingora's typed CTX).
pub struct Ctx {
    pub trace_id: String,
    /// W3C trace flags sent upstream: the caller's, or `01` for a trace started here.
    pub trace_flags: String,
    /// Counted in `prospect_edge_requests_in_flight` until the CTX is dropped.
    pub in_flight: crate::metrics::InFlight,
    /// Time this request spent in upstream calls (IAM included), for the access log.
    pub upstream_ms: f64,
    pub started: Instant,
    pub route: &'static str,
    pub status: u16,
    pub identity: Option<Arc<Identity>>,
    /// Headers every answer of this request carries (rate limits, CORS).
    pub extra: Vec<(&'static str, String)>,
}

pub struct Edge {
    pub rt: Arc<Runtime>,
}

/// A finished answer, before it is written.
#[derive(Clone)]
struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Bytes,
    content_type: &'static str,
}

/// The public operation a path and method name.
enum Operation {
    Create,
    Search,
    Get(String),
    Update(String),
    Delete(String),
    Action(String, String),
}

/// A new W3C trace id: 16 random bytes in lowercase hex.
pub fn new_trace_id() -> String {
    let bytes: [u8; 16] = rand::random();
    crate::hex::encode(&bytes)
}

/// W3C `traceparent`: continue the caller's trace (its id and flags) when well formed.
fn trace_from(header: Option<&str>) -> Option<(String, String)> {
    let parts: Vec<&str> = header?.trim().split('-').collect();
    match parts.as_slice() {
        [ver, trace, span, flags]
            if ver.len() == 2
                && trace.len() == 32
                && span.len() == 16
                && flags.len() == 2
                && trace
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
                && *trace != "00000000000000000000000000000000"
                && flags.bytes().all(|b| b.is_ascii_hexdigit()) =>
        {
            Some((trace.to_string(), flags.to_ascii_lowercase()))
        }
        _ => None,
    }
}

fn valid_segment(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 80
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Route matching: `Err` is 404 or 405 (with `Allow`).
fn route(plan: &Plan, method: &str, path: &str) -> Result<(Arc<Resource>, Operation), Problem> {
    let segs: Vec<&str> = path
        .strip_prefix("/v1/")
        .ok_or_else(Problem::not_found)?
        .split('/')
        .collect();
    if segs.iter().any(|s| !valid_segment(s)) {
        return Err(Problem::not_found());
    }
    let res = plan
        .resources
        .get(segs[0])
        .ok_or_else(Problem::not_found)?
        .clone();
    let deny = |allow: Vec<&str>| {
        if allow.is_empty() {
            Problem::not_found()
        } else {
            Problem::new(Kind::MethodNotAllowed, format!("Use {}", allow.join(", ")))
                .with_header("allow", allow.join(", "))
        }
    };
    let op = match (segs.as_slice(), method) {
        ([_], "POST") if res.create.is_some() => Operation::Create,
        ([_], _) => {
            return Err(deny(if res.create.is_some() {
                vec!["POST"]
            } else {
                vec![]
            }))
        }
        ([_, "search"], "POST") if res.search.is_some() => Operation::Search,
        ([_, "search"], _) if res.search.is_some() => return Err(deny(vec!["POST"])),
        ([_, id], m) => {
            let mut allow = Vec::new();
            if res.get.is_some() {
                allow.extend(["GET", "HEAD"]);
            }
            if res.update.is_some() {
                allow.push("PATCH");
            }
            if res.delete.is_some() {
                allow.push("DELETE");
            }
            match m {
                "GET" | "HEAD" if res.get.is_some() => Operation::Get(id.to_string()),
                "PATCH" if res.update.is_some() => Operation::Update(id.to_string()),
                "DELETE" if res.delete.is_some() => Operation::Delete(id.to_string()),
                _ => return Err(deny(allow)),
            }
        }
        ([_, id, action], m) => match res.actions.contains_key(*action) {
            true if m == "POST" => Operation::Action(id.to_string(), action.to_string()),
            true => return Err(deny(vec!["POST"])),
            false => return Err(Problem::not_found()),
        },
        _ => return Err(Problem::not_found()),
    };
    Ok((res, op))
}

fn scope_problem(scope: &str) -> Problem {
    Problem::new(
        Kind::InsufficientScope,
        format!("This operation needs the `{scope}` scope"),
    )
    .with_ext("required_scope", scope)
    .with_header(
        "www-authenticate",
        format!(r#"Bearer realm="prospectconnect", error="insufficient_scope", scope="{scope}""#),
    )
}

impl Edge {
    /// The whole `/v1` pipeline for one request.
    async fn handle(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        version_out: &mut String,
    ) -> Result<Reply, Problem> {
        let rt = &self.rt;
        let plan = rt.plan.load_full();
        // Echo the client's release when it is one, even on errors before the version stage.
        *version_out = session
            .req_header()
            .headers
            .get("version")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| plan.versions.find(v.trim()))
            .map(|r| r.date.clone())
            .unwrap_or_else(|| plan.versions.current.clone());
        let req = session.req_header();
        let method = req.method.as_str().to_string();
        let path = req.uri.path().to_string();

        // public documents: the OpenAPI document and /docs need no token and no Version
        if docs::is_document(&path) {
            ctx.route = if path == docs::OPENAPI_PATH {
                "openapi"
            } else {
                "docs"
            };
            let settings = openapi::Settings::from_config(&rt.cfg);
            let served = docs::serve(&plan, &settings, &method, &path, req.uri.query())?;
            if let Some(v) = served.version {
                *version_out = v;
            }
            return Ok(Reply {
                status: 200,
                headers: served.headers,
                body: served.body,
                content_type: served.content_type,
            });
        }

        // route
        let (res, op) = route(&plan, &method, &path)?;
        ctx.route = match op {
            Operation::Create => "create",
            Operation::Search => "search",
            Operation::Get(_) => "get",
            Operation::Update(_) => "update",
            Operation::Delete(_) => "delete",
            Operation::Action(..) => "action",
        };

        // authenticate
        let auth_headers: Vec<&[u8]> = req
            .headers
            .get_all("authorization")
            .iter()
            .map(|v| v.as_bytes())
            .collect();
        let identity = rt.auth.authenticate(&auth_headers).await;
        let outcome = match &identity {
            Ok(_) => "ok",
            Err(_) if auth_headers.is_empty() => "missing",
            Err(p) if p.status() >= 500 => "error",
            Err(_) => "invalid",
        };
        crate::metrics::AUTH.with_label_values(&[outcome]).inc();
        let identity = identity?;
        ctx.identity = Some(identity.clone());

        // rate limit, per (tenant, app)
        if let Some(rl) = &rt.rate_limiter {
            let class = match op {
                Operation::Get(_) => crate::policy::Class::Read,
                Operation::Search => crate::policy::Class::Search,
                _ => crate::policy::Class::Write,
            };
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            let d = rl
                .check(identity.tenant, &identity.client_id, class, now)
                .await;
            ctx.extra.extend(d.headers);
            if let Some(p) = d.refused {
                return Err(p);
            }
        }

        // version
        let version = match req.headers.get("version").map(|v| v.to_str().unwrap_or("")) {
            None => {
                return Err(Problem::new(
                    Kind::VersionRequired,
                    "Send a Version header, e.g. Version: 2026-11-01",
                ))
            }
            Some(v) => v.trim().to_string(),
        };
        let release = plan.versions.find(&version).ok_or_else(|| {
            Problem::new(
                Kind::UnsupportedVersion,
                "The Version header names no supported release",
            )
            .with_ext("supported_versions", plan.versions.supported())
        })?;
        *version_out = release.date.clone();
        // Deprecation and Sunset go on every answer from here on, errors included.
        let extra = &mut ctx.extra;
        if release.deprecated {
            // RFC 9745: the date it was deprecated, i.e. when the current release came out.
            let since = chrono::NaiveDate::parse_from_str(&plan.versions.current, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(|t| t.and_utc().timestamp())
                .unwrap_or(0);
            extra.push(("deprecation", format!("@{since}")));
            if let Some(s) = &release.sunset {
                if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
                    if let Some(t) = d.and_hms_opt(0, 0, 0) {
                        extra.push((
                            "sunset",
                            t.and_utc().format("%a, %d %b %Y %H:%M:%S GMT").to_string(),
                        ));
                    }
                }
            }
        }

        // authorize: the app's scope and the user's CRM permission
        let (scope, permission) = match &op {
            Operation::Get(_) | Operation::Search => (
                Some(res.read_scope.clone()),
                format!("{}:view", res.permissions),
            ),
            Operation::Create => (
                res.write_scope.clone(),
                res.create_permission
                    .clone()
                    .unwrap_or_else(|| format!("{}:edit", res.permissions)),
            ),
            Operation::Update(_) => (res.write_scope.clone(), format!("{}:edit", res.permissions)),
            Operation::Delete(_) => (
                res.write_scope.clone(),
                format!("{}:delete", res.permissions),
            ),
            Operation::Action(_, a) => (
                res.write_scope.clone(),
                res.actions
                    .get(a)
                    .map(|x| x.permission.clone())
                    .unwrap_or_default(),
            ),
        };
        let scope = scope.unwrap_or_else(|| res.read_scope.clone());
        if !identity.has_scope(&scope) {
            return Err(scope_problem(&scope));
        }
        let trust = Trust::new(identity.tenant, identity.user, ctx.trace_id.clone())
            .with_trace_flags(&ctx.trace_flags);
        let perms = rt.auth.permissions(&rt.upstreams, &trust).await;
        ctx.upstream_ms = trust.upstream_ms();
        let perms = perms?;
        if !perms.iter().any(|p| p == &permission) {
            return Err(Problem::new(
                Kind::PermissionDenied,
                format!("The user's role lacks `{permission}`"),
            )
            .with_ext("required_permission", permission));
        }

        // read body, and bring an older release's request to the current shape
        let mut body = read_json_body(session, &method, rt.cfg.client_body_timeout).await?;
        // A key is checked on every POST and PATCH; searches are reads, so theirs is not stored.
        let idem_key = match (
            method.as_str(),
            session.req_header().headers.get("idempotency-key"),
        ) {
            ("POST" | "PATCH", Some(k)) if crate::policy::valid_key(k.as_bytes()) => {
                Some(k.as_bytes().to_vec())
            }
            ("POST" | "PATCH", Some(_)) => {
                return Err(Problem::invalid(vec![crate::problem::FieldError::new(
                    "",
                    "the Idempotency-Key header must be 1 to 255 visible ASCII characters",
                )]))
            }
            _ => None,
        };
        let idem = match (&rt.idempotency, idem_key) {
            (Some(store), Some(key)) if !matches!(op, Operation::Search) => {
                let fp = crate::policy::fingerprint(&method, &path, body.as_ref(), &release.date);
                Some((store, key, fp))
            }
            _ => None,
        };
        let changes = versions::pending(&plan.versions, &release.date, &res.name);
        if !changes.is_empty() {
            match (&op, body.as_mut()) {
                (Operation::Search, Some(b)) => versions::forward_search(&changes, b),
                (Operation::Create | Operation::Update(_), Some(Value::Object(rec))) => {
                    let mut errors = Vec::new();
                    versions::forward_record(&changes, rec, &mut errors);
                    if !errors.is_empty() {
                        return Err(Problem::invalid(errors));
                    }
                }
                _ => {}
            }
        }

        if let Some((store, key, fp)) = &idem {
            use crate::policy::Claim;
            let claim = store
                .claim(identity.tenant, &identity.client_id, key, fp)
                .await?;
            let outcome = match &claim {
                Claim::Fresh => "fresh",
                Claim::Replay(_) => "replayed",
                Claim::InFlight => "in_flight",
                Claim::Mismatch => "mismatch",
            };
            crate::metrics::IDEMPOTENCY
                .with_label_values(&[outcome])
                .inc();
            match claim {
                Claim::Fresh => {}
                Claim::InFlight => {
                    return Err(Problem::new(
                        Kind::IdempotencyKeyInUse,
                        "A request with this Idempotency-Key is still being processed",
                    )
                    .with_header("retry-after", "1"))
                }
                Claim::Mismatch => {
                    return Err(Problem::new(
                        Kind::IdempotencyKeyReused,
                        "This Idempotency-Key was used with a different request",
                    ))
                }
                Claim::Replay(stored) => {
                    let mut headers: Vec<(&'static str, String)> = stored
                        .headers
                        .iter()
                        .filter_map(|(k, v)| replay_header(k).map(|k| (k, v.clone())))
                        .collect();
                    headers.push(("idempotent-replayed", "true".into()));
                    return Ok(Reply {
                        status: stored.status,
                        headers,
                        body: Bytes::from(stored.body),
                        content_type: if stored.content_type == "application/problem+json" {
                            "application/problem+json"
                        } else {
                            "application/json"
                        },
                    });
                }
            }
        }
        let reached_before = trust.reached();
        let result = self
            .execute(
                &plan,
                &res,
                &op,
                &trust,
                &identity,
                release,
                &changes,
                body.as_ref(),
            )
            .await;
        ctx.upstream_ms = trust.upstream_ms();
        let result = result.map(|(status, headers, body)| Reply {
            status,
            headers,
            body,
            content_type: "application/json",
        });
        if let Some((store, key, fp)) = &idem {
            if trust.reached() > reached_before {
                let reply = match &result {
                    Ok(r) => r.clone(),
                    Err(p) => self.problem_reply(p, &path, &ctx.trace_id),
                };
                let stored = crate::policy::Stored {
                    status: reply.status,
                    content_type: reply.content_type.to_string(),
                    headers: reply
                        .headers
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.clone()))
                        .collect(),
                    body: reply.body.to_vec(),
                };
                store
                    .complete(identity.tenant, &identity.client_id, key, fp, &stored)
                    .await;
                return Ok(reply);
            }
            store
                .release(identity.tenant, &identity.client_id, key)
                .await;
        }
        result
    }

    /// Runs the operation on the plan and brings the answer back to the client's release.
    #[allow(clippy::too_many_arguments)]
    async fn execute(
        &self,
        plan: &Plan,
        res: &Resource,
        op: &Operation,
        trust: &Trust,
        identity: &Identity,
        release: &mapping::model::Release,
        changes: &[&mapping::model::Change],
        body: Option<&Value>,
    ) -> Result<(u16, Vec<(&'static str, String)>, Bytes), Problem> {
        let rt = &self.rt;
        // execute
        let exec = Exec {
            plan,
            res,
            sealer: &rt.sealer,
            upstreams: &rt.upstreams,
            trust,
            client_id: &identity.client_id,
            version: &release.date,
        };
        let done = match op {
            Operation::Create => exec.create(body).await,
            Operation::Search => exec.search(body).await,
            Operation::Get(id) => exec.get(id).await,
            Operation::Update(id) => exec.update(id, body).await,
            Operation::Delete(id) => exec.delete(id).await,
            Operation::Action(id, a) => match res.actions.get(a) {
                Some(action) => exec.action(action, id, body).await,
                None => Err(Problem::not_found()),
            },
        };
        // and the answer back to the client's release
        let mut done = done.map_err(|mut p| {
            for e in &mut p.errors {
                e.pointer = versions::backward_pointer(changes, &e.pointer);
            }
            p
        })?;
        if let Some(b) = done.body.as_mut() {
            versions::backward_body(changes, b);
        }
        let mut headers = Vec::new();
        if let Some(l) = done.location {
            headers.push(("location", l));
        }
        let body = done
            .body
            .map(|b| Bytes::from(serde_json::to_vec(&b).unwrap_or_default()))
            .unwrap_or_default();
        Ok((done.status, headers, body))
    }

    async fn write(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        reply: Reply,
        version: &str,
    ) -> Result<()> {
        // The representation: ETag / 304 and the content coding (src/representation.rs).
        let req = session.req_header();
        let value = |n: &str| req.headers.get(n).and_then(|v| v.to_str().ok());
        let asked = crate::representation::Asked {
            method: req.method.as_str(),
            if_none_match: value("if-none-match"),
            accept_encoding: value("accept-encoding"),
        };
        let out = crate::representation::prepare(
            asked,
            ctx.route,
            reply.status,
            reply.content_type,
            reply.body,
        );
        let no_body = out.status == 204 || out.status == 304;
        let mut h = ResponseHeader::build(out.status, Some(8))?;
        h.insert_header("trace-id", ctx.trace_id.as_str())?;
        // W3C Trace Context level 2: the trace this answer belongs to, and this hop's span.
        let span: [u8; 8] = rand::random();
        let flags = if ctx.trace_flags.is_empty() {
            "01"
        } else {
            ctx.trace_flags.as_str()
        };
        h.insert_header(
            "traceresponse",
            format!("00-{}-{}-{flags}", ctx.trace_id, crate::hex::encode(&span)),
        )?;
        h.insert_header("version", version)?;
        h.insert_header("cache-control", "no-store")?;
        if !no_body {
            h.insert_header("content-type", reply.content_type)?;
            h.insert_header("content-length", out.body.len().to_string())?;
        }
        for (k, v) in reply
            .headers
            .iter()
            .chain(ctx.extra.iter())
            .chain(out.headers.iter())
        {
            h.append_header(*k, v.as_str())?;
        }
        ctx.status = out.status;
        if self.rt.draining.load(std::sync::atomic::Ordering::Relaxed) {
            session.set_keepalive(None);
        }
        let head_only = session.req_header().method == http::Method::HEAD;
        session
            .write_response_header(Box::new(h), no_body || head_only)
            .await?;
        if !no_body && !head_only {
            session.write_response_body(Some(out.body), true).await?;
        }
        Ok(())
    }

    fn problem_reply(&self, p: &Problem, instance: &str, trace_id: &str) -> Reply {
        Reply {
            status: p.status(),
            headers: p.headers.clone(),
            body: Bytes::from(p.body(&self.rt.cfg.problem_type_base, instance, trace_id)),
            content_type: "application/problem+json",
        }
    }
}

/// The headers of a stored answer that a replay repeats (per-request ones are fresh).
fn replay_header(name: &str) -> Option<&'static str> {
    ["location", "deprecation", "sunset"]
        .into_iter()
        .find(|h| *h == name)
}

/// The request target plus every header name and value must fit in `cap` bytes (431
/// otherwise). pingora's own bound (1 MiB of raw head, `head_guard`) is the outer one.
fn head_size(req: &pingora::http::RequestHeader, cap: usize) -> Result<(), Problem> {
    let size = req.raw_path().len()
        + req
            .headers
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len())
            .sum::<usize>();
    if size > cap {
        return Err(Problem::new(
            Kind::RequestHeaderFieldsTooLarge,
            format!("The request target and header fields are limited to {cap} bytes"),
        ));
    }
    Ok(())
}

/// Reads the whole request body (bounded in size and in time: a client that trickles it
/// gets 408 once `deadline` has passed) and parses it as strict JSON (`crate::json`) when
/// the method carries one.
async fn read_json_body(
    session: &mut Session,
    method: &str,
    deadline: std::time::Duration,
) -> Result<Option<Value>, Problem> {
    let declared = session
        .req_header()
        .headers
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_BODY) {
        return Err(Problem::new(
            Kind::PayloadTooLarge,
            "Request bodies are limited to 1 MiB",
        ));
    }
    let mut buf = Vec::new();
    let until = tokio::time::Instant::now() + deadline;
    loop {
        let Ok(read) = tokio::time::timeout_at(until, session.read_request_body()).await else {
            return Err(Problem::new(
                Kind::RequestTimeout,
                format!(
                    "The request body was not received within {} ms",
                    deadline.as_millis()
                ),
            )
            .with_header("connection", "close"));
        };
        match read {
            Ok(Some(chunk)) => {
                if buf.len() + chunk.len() > MAX_BODY {
                    return Err(Problem::new(
                        Kind::PayloadTooLarge,
                        "Request bodies are limited to 1 MiB",
                    ));
                }
                buf.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Err(_) => {
                return Err(Problem::new(
                    Kind::InvalidRequest,
                    "The request body could not be read",
                ))
            }
        }
    }
    if buf.is_empty() || !matches!(method, "POST" | "PATCH" | "PUT") {
        return Ok(None);
    }
    let ct = session
        .req_header()
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let media = ct.split(';').next().unwrap_or("").trim();
    if media != "application/json"
        && !(media.starts_with("application/") && media.ends_with("+json"))
    {
        return Err(Problem::new(
            Kind::UnsupportedMediaType,
            "Send the body as application/json",
        ));
    }
    crate::json::parse(&buf).map(Some)
}

#[async_trait]
impl ProxyHttp for Edge {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx {
            trace_id: String::new(),
            trace_flags: "01".into(),
            in_flight: crate::metrics::InFlight::start(),
            upstream_ms: 0.0,
            started: Instant::now(),
            route: "none",
            status: 0,
            identity: None,
            extra: Vec::new(),
        }
    }

    /// Never reached: every request is answered in `request_filter`.
    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        Err(Error::new(ErrorType::InternalError))
    }

    /// Runs the whole pipeline and writes the answer; `Ok(true)` ends pingora's processing.
    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        let headers = &session.req_header().headers;
        match trace_from(headers.get("traceparent").and_then(|v| v.to_str().ok())) {
            Some((id, flags)) => (ctx.trace_id, ctx.trace_flags) = (id, flags),
            None => ctx.trace_id = new_trace_id(),
        }
        let instance = session.req_header().uri.path().to_string();
        // head size: the first check, so nothing else reads an oversized head
        if let Err(p) = head_size(session.req_header(), self.rt.cfg.max_request_header_bytes) {
            // An over-long path is not echoed back in full.
            let instance = if instance.len() > 2048 {
                "/"
            } else {
                &instance
            };
            let reply = self.problem_reply(&p, instance, &ctx.trace_id);
            let current = self.rt.plan.load().versions.current.clone();
            self.write(session, ctx, reply, &current).await?;
            return Ok(true);
        }
        if let Some(cors) = &self.rt.cfg.cors {
            let origin = headers
                .get("origin")
                .and_then(|v| v.to_str().ok())
                .filter(|o| cors.allows(o))
                .map(str::to_string);
            let preflight = session.req_header().method == http::Method::OPTIONS
                && headers.contains_key("access-control-request-method");
            if preflight {
                // Answered here, without a token and without any upstream.
                ctx.extra = origin.map(|o| cors.preflight(&o)).unwrap_or_default();
                ctx.route = "preflight";
                let reply = Reply {
                    status: 204,
                    headers: Vec::new(),
                    body: Bytes::new(),
                    content_type: "application/json",
                };
                let current = self.rt.plan.load().versions.current.clone();
                self.write(session, ctx, reply, &current).await?;
                return Ok(true);
            }
            if let Some(o) = origin {
                ctx.extra.extend(cors.actual(&o));
            }
        }
        let mut version = String::new();
        let reply = match self.handle(session, ctx, &mut version).await {
            Ok(r) => r,
            Err(p) => {
                if p.kind == Kind::PayloadTooLarge {
                    // The rest of an oversized body is not read: the connection cannot be reused.
                    session.set_keepalive(None);
                }
                self.problem_reply(&p, &instance, &ctx.trace_id)
            }
        };
        self.write(session, ctx, reply, &version).await?;
        Ok(true)
    }

    /// One structured access-log line per request: never a token, never a body.
    async fn logging(&self, session: &mut Session, _e: Option<&pingora::Error>, ctx: &mut Ctx) {
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
}
