//! `GET /v1/openapi.json` and the `/docs` reference page, answered before authentication.
//!
//! The page is a small hand-written HTML + JS + CSS app compiled into the binary
//! (`include_str!`): no CDN, no build step, works without internet access. It fetches
//! `/v1/openapi.json` and renders it, with a "Try it" panel that calls the API with
//! `fetch()` from the same origin. This module only routes and serves; the document comes
//! from [`super::document`].

use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::Settings;
use crate::mapping::model::Plan;
use crate::problem::{Kind, Problem};

pub const OPENAPI_PATH: &str = "/v1/openapi.json";
pub const DOCS_PATH: &str = "/docs";

const INDEX_HTML: &str = include_str!("assets/index.html");
const DOCS_JS: &str = include_str!("assets/docs.js");
const DOCS_CSS: &str = include_str!("assets/docs.css");

/// Scripts and styles only from the edge itself; calls only to the edge itself.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
    frame-ancestors 'none'";

/// A document or page, ready to be written by the edge.
#[derive(Debug)]
pub struct Served {
    pub route: &'static str,
    pub content_type: &'static str,
    pub headers: Vec<(&'static str, String)>,
    pub body: Bytes,
    /// The release the answer describes (echoed in `Version`).
    pub version: Option<String>,
}

/// The OpenAPI documents rendered so far, one per release, for the plan they describe: an
/// unauthenticated client asking again costs a lookup, not a 300 KB render. A reloaded plan
/// (another `Arc`) starts afresh; only releases the plan knows are kept, so it stays small.
#[derive(Default)]
pub struct Rendered(Mutex<Option<ForPlan>>);

/// A plan and its documents, by release.
type ForPlan = (Arc<Plan>, Vec<(String, Bytes)>);

impl Rendered {
    fn get(&self, plan: &Arc<Plan>, version: &str) -> Option<Bytes> {
        let g = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let (p, docs) = g.as_ref()?;
        Arc::ptr_eq(p, plan)
            .then(|| {
                docs.iter()
                    .find(|(v, _)| v == version)
                    .map(|(_, b)| b.clone())
            })
            .flatten()
    }

    fn put(&self, plan: &Arc<Plan>, version: &str, body: Bytes) {
        let mut g = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match &mut *g {
            Some((p, docs)) if Arc::ptr_eq(p, plan) => {
                if !docs.iter().any(|(v, _)| v == version) {
                    docs.push((version.to_string(), body));
                }
            }
            other => *other = Some((plan.clone(), vec![(version.to_string(), body)])),
        }
    }
}

/// Whether `path` belongs to the public documents (then [`serve`] answers it).
pub fn is_document(path: &str) -> bool {
    path == OPENAPI_PATH || path == DOCS_PATH || path.starts_with("/docs/")
}

fn asset(path: &str) -> Option<(&'static str, &'static str)> {
    match path {
        "/docs" | "/docs/" => Some(("text/html; charset=utf-8", INDEX_HTML)),
        "/docs/docs.js" => Some(("text/javascript; charset=utf-8", DOCS_JS)),
        "/docs/docs.css" => Some(("text/css; charset=utf-8", DOCS_CSS)),
        _ => None,
    }
}

/// The `version` member of a query string, percent-decoded.
fn version_param(query: Option<&str>) -> Option<String> {
    query?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == "version").then(|| {
            percent_encoding::percent_decode_str(&v.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned()
        })
    })
}

/// Answers a request for a public document; `path` must satisfy [`is_document`].
pub fn serve(
    plan: &Arc<Plan>,
    rendered: &Rendered,
    settings: &Settings,
    method: &str,
    path: &str,
    query: Option<&str>,
) -> Result<Served, Problem> {
    if method != "GET" && method != "HEAD" {
        let exists = path == OPENAPI_PATH || asset(path).is_some();
        return Err(if exists {
            Problem::new(Kind::MethodNotAllowed, "Use GET").with_header("allow", "GET, HEAD")
        } else {
            Problem::not_found()
        });
    }
    if path == OPENAPI_PATH {
        let version = match version_param(query) {
            Some(v) => v,
            None => plan.versions.current.clone(),
        };
        let version = version.trim();
        let body = match rendered.get(plan, version) {
            Some(body) => body,
            None => {
                // Unknown releases are refused here, before anything is kept.
                let doc = super::document(plan, settings, version)?;
                let body = Bytes::from(serde_json::to_vec_pretty(&doc).map_err(|_| {
                    Problem::new(Kind::Internal, "The document could not be rendered")
                })?);
                rendered.put(plan, version, body.clone());
                body
            }
        };
        return Ok(Served {
            route: "openapi",
            content_type: "application/json",
            headers: Vec::new(),
            body,
            version: Some(version.to_string()),
        });
    }
    let (content_type, body) = asset(path).ok_or_else(Problem::not_found)?;
    Ok(Served {
        route: "docs",
        content_type,
        headers: vec![
            ("content-security-policy", CSP.to_string()),
            ("x-content-type-options", "nosniff".to_string()),
            ("referrer-policy", "no-referrer".to_string()),
        ],
        body: Bytes::from_static(body.as_bytes()),
        version: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_is_read_from_the_query() {
        assert_eq!(
            version_param(Some("a=1&version=2026-05-01")).as_deref(),
            Some("2026-05-01")
        );
        assert_eq!(
            version_param(Some("version=2026%2D05%2D01")).as_deref(),
            Some("2026-05-01")
        );
        assert_eq!(version_param(Some("v=1")), None);
        assert_eq!(version_param(None), None);
    }

    #[test]
    fn only_known_paths_are_documents() {
        assert!(is_document("/v1/openapi.json"));
        assert!(is_document("/docs"));
        assert!(is_document("/docs/docs.js"));
        assert!(!is_document("/docsx"));
        assert!(!is_document("/v1/contacts"));
        assert!(asset("/docs/nope.js").is_none());
        assert!(INDEX_HTML.contains(r#"src="/docs/docs.js""#));
    }

    #[test]
    fn a_document_is_rendered_once_per_plan_and_release() {
        let settings = Settings::new("https://errors.example/", None);
        let rendered = Rendered::default();
        let plan = Arc::new(crate::mapping::load_shipped().expect("plan"));
        let serve = |plan: &Arc<Plan>, q: Option<&str>| {
            serve(plan, &rendered, &settings, "GET", OPENAPI_PATH, q).map(|s| s.body)
        };
        let a = serve(&plan, None).expect("current");
        let b = serve(&plan, None).expect("again");
        assert_eq!(a.as_ptr(), b.as_ptr(), "kept, not rendered again");
        let old = (plan.versions.supported().into_iter())
            .find(|v| *v != plan.versions.current)
            .expect("an older release");
        let c = serve(&plan, Some(&format!("version={old}"))).expect("another release");
        assert_ne!(c.as_ptr(), a.as_ptr());
        // Unknown releases are refused and not kept.
        assert!(serve(&plan, Some("version=1999-01-01")).is_err());
        // A reloaded plan renders afresh (the same bytes, another allocation).
        let reloaded = Arc::new(crate::mapping::load_shipped().expect("plan"));
        let d = serve(&reloaded, None).expect("reloaded");
        assert_eq!(d, a);
        assert_ne!(d.as_ptr(), a.as_ptr());
    }
}
