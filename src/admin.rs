//! The admin listener (never public): `/healthz`, `/readyz`, `/metrics`.

use std::sync::Arc;

use async_trait::async_trait;
use http::Response;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use serde_json::json;

use crate::pipeline::Runtime;

pub struct Admin {
    pub rt: Arc<Runtime>,
}

/// `/readyz`'s `status`: `not_ready` (503) without keys; else `degraded` while an instance
/// of some service failed its health check or has its circuit not closed (still 200:
/// every node shares the same services, so failing readiness for them would take every
/// node out of the load balancer at once; alert on it instead), else `ready`.
fn readiness(jwks_loaded: bool, upstreams: &crate::upstream::Upstreams) -> &'static str {
    if !jwks_loaded {
        return "not_ready";
    }
    let all_well = upstreams.instances().iter().all(|(_, list)| {
        list.iter()
            .all(|(_, up, c)| *up && *c == crate::upstream::Circuit::Closed)
    });
    if all_well {
        "ready"
    } else {
        "degraded"
    }
}

fn reply(status: u16, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .header("content-length", body.len())
        .body(body)
        .unwrap_or_default()
}

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        match session.req_header().uri.path() {
            "/healthz" => reply(
                200,
                "application/json",
                json!({"status": "ok"}).to_string().into_bytes(),
            ),
            "/readyz" if !self.rt.ready.load(std::sync::atomic::Ordering::Acquire) => reply(
                503,
                "application/json",
                json!({"status": "starting"}).to_string().into_bytes(),
            ),
            "/readyz" => {
                let plan = self.rt.plan.load();
                // Without keys no token can be verified: not ready. Stale keys keep serving.
                let jwks_loaded = self.rt.auth.jwks_loaded();
                let status = readiness(jwks_loaded, &self.rt.upstreams);
                let body = json!({
                    "status": status,
                    "jwks_loaded": jwks_loaded,
                    "jwks": self.rt.auth.jwks_report(),
                    "resources": plan.resources.len(),
                    "version": plan.versions.current,
                    "circuits": self.rt.upstreams.circuits().into_iter()
                        .map(|(n, c)| (n.to_string(), serde_json::Value::from(c.as_str())))
                        .collect::<serde_json::Map<_, _>>(),
                    "instances": self.rt.upstreams.instances().into_iter()
                        .map(|(n, list)| (n.to_string(), list.into_iter().map(|(i, up, c)| json!({
                            "instance": i, "up": up, "circuit": c.as_str(),
                        })).collect::<serde_json::Value>()))
                        .collect::<serde_json::Map<_, _>>(),
                    "upstreams_reachable": self.rt.upstreams.reachable(),
                    "mapping_reloads": {
                        "ok": crate::metrics::RELOADS.with_label_values(&["ok"]).get(),
                        "refused": crate::metrics::RELOADS.with_label_values(&["refused"]).get(),
                    },
                });
                let status = if jwks_loaded { 200 } else { 503 };
                reply(status, "application/json", body.to_string().into_bytes())
            }
            "/metrics" => {
                let mut buf = Vec::new();
                let enc = prometheus::TextEncoder::new();
                let _ = prometheus::Encoder::encode(&enc, &prometheus::gather(), &mut buf);
                reply(200, "text/plain; version=0.0.4", buf)
            }
            _ => reply(
                404,
                "application/json",
                json!({"status": 404}).to_string().into_bytes(),
            ),
        }
    }
}
