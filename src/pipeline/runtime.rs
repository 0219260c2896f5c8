//! Long-lived state shared by every request: config, the compiled plan (swapped on
//! SIGHUP), the sealer, upstream clients, authentication and the shared policies.
//! Per-request state is not here: it lives in [`super::Ctx`].

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::auth::Auth;
use crate::config::EdgeConfig;
use crate::mapping;
use crate::mapping::model::Plan;
use crate::seal::Sealer;
use crate::upstream::Upstreams;

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
    /// The OpenAPI documents rendered for the current plan.
    pub documents: crate::openapi::docs::Rendered,
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
            documents: Default::default(),
            sealer: Sealer::new(&cfg.id_secret.0, &cfg.cursor_secret.0),
            upstreams: Upstreams::with_budget(
                cfg.upstreams.values().cloned(),
                crate::bounds::ByteBudget::new(
                    cfg.upstream_answer_budget,
                    crate::upstream::DEFAULT_ANSWER_BUDGET_WAIT,
                ),
            ),
            auth: Auth::new(
                &cfg.issuers,
                cfg.introspection.clone(),
                cfg.permissions_cache,
                cfg.auth_ca_file.as_deref(),
                cfg.token_cache_max_bytes,
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
