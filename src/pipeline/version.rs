//! Stage `version`: the `Version` header → a live release of `versions.yaml`; deprecated
//! releases add `Deprecation`/`Sunset` to every later answer.

use pingora::http::RequestHeader;

use crate::mapping::model::{Plan, Release};
use crate::problem::{Kind, Problem};

/// The release named in an answer before the version stage ran: the client's when it is
/// one, the current one otherwise (errors before the version stage echo it too).
pub fn echo(plan: &Plan, req: &RequestHeader) -> String {
    req.headers
        .get(super::names::VERSION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| plan.versions.find(v.trim()))
        .map(|r| r.date.clone())
        .unwrap_or_else(|| plan.versions.current.clone())
}

pub fn version<'p>(
    plan: &'p Plan,
    req: &RequestHeader,
    extra: &mut Vec<(&'static str, String)>,
) -> Result<&'p Release, Problem> {
    let version = match req
        .headers
        .get(super::names::VERSION)
        .map(|v| v.to_str().unwrap_or(""))
    {
        None => {
            return Err(Problem::new(
                Kind::VersionRequired,
                "Send a Version header, e.g. Version: 2026-11-01",
            ))
        }
        Some(v) => v.trim(),
    };
    let release = plan.versions.find(version).ok_or_else(|| {
        Problem::new(
            Kind::UnsupportedVersion,
            "The Version header names no supported release",
        )
        .with_ext("supported_versions", plan.versions.supported())
    })?;
    // Deprecation and Sunset go on every answer from here on, errors included.
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
    Ok(release)
}
