//! `services.yaml` (conventions, error dialects) and `versions.yaml`.

use super::*;

pub(super) fn compile_service(
    path: &Path,
    name: &str,
    s: &RawService,
    ctx: &Context,
    d: &mut Diags,
) -> Option<Service> {
    if !ctx.upstream_names.contains(&name) {
        d.file(
            path,
            format!(
                "service `{name}` has no upstream in the edge config (upstreams: {})",
                ctx.upstream_names.join(", ")
            ),
        );
    }
    let text_errors = match s.errors.as_ref().map(|e| e.as_str()) {
        None | Some("json") => false,
        Some("text") => true,
        Some(other) => {
            if let Some(e) = &s.errors {
                d.at(
                    path,
                    e.span(),
                    format!("errors: `{other}` must be json or text"),
                );
            }
            false
        }
    };
    let mut codes = HashMap::new();
    for (code, sl) in &s.codes {
        if let Some(k) = slug(path, sl, d) {
            codes.insert(code.clone(), k);
        }
    }
    let mut statuses = HashMap::new();
    for (st, sl) in &s.statuses {
        match st.parse::<u16>() {
            Ok(n) if (400..600).contains(&n) => {
                if let Some(k) = slug(path, sl, d) {
                    statuses.insert(n, k);
                }
            }
            _ => d.at(
                path,
                sl.span(),
                format!("`{st}` is not an HTTP error status"),
            ),
        }
    }
    let conventions = conventions(path, s, d);
    Some(Service {
        name: name.to_string(),
        conventions,
        text_errors,
        success: s.success.as_ref().and_then(|p| pointer(path, p, d)),
        result: s.result.as_ref().and_then(|p| pointer(path, p, d)),
        code: s.code.as_ref().and_then(|p| pointer(path, p, d)),
        field_errors: s
            .field_errors
            .as_ref()
            .and_then(|f| pointer(path, &f.at, d).map(|p| (p, UpPath::parse(&f.field)))),
        codes,
        statuses,
    })
}

/// A service's trust placement, static headers and media type.
pub(super) fn conventions(path: &Path, s: &RawService, d: &mut Diags) -> Conventions {
    let mut c = Conventions::platform();
    if let Some(t) = &s.trust {
        let mut place = |p: &Option<RawPlace>, what: &str, var: Var, c: &mut Conventions| {
            let Some(p) = p else {
                if what != "request_id" {
                    d.file(
                        path,
                        format!(
                            "service `trust` must say where `{what}` goes (header, query or path: true)"
                        ),
                    );
                }
                return Place::Nowhere;
            };
            match (&p.header, &p.query, &p.path) {
                (Some(h), None, None) => header_name(path, h, d)
                    .map(Place::Header)
                    .unwrap_or(Place::Nowhere),
                (None, Some(q), None) => Place::Query(q.to_string()),
                (None, None, Some(b)) if **b => {
                    c.in_path.push(var);
                    Place::Nowhere
                }
                _ => {
                    let span = p
                        .header
                        .as_ref()
                        .or(p.query.as_ref())
                        .map(|x| *x.span())
                        .or(p.path.as_ref().map(|x| *x.span()));
                    let msg =
                        format!("trust `{what}`: exactly one of `header`, `query` or `path: true`");
                    match span {
                        Some(sp) => d.at(path, &sp, msg),
                        None => d.file(path, msg),
                    }
                    Place::Nowhere
                }
            }
        };
        c.tenant = place(&t.tenant, "tenant", Var::Tenant, &mut c);
        c.user = place(&t.user, "user", Var::User, &mut c);
        c.request_id = place(&t.request_id, "request_id", Var::RequestId, &mut c);
    }
    if let Some(m) = &s.media_type {
        match http::HeaderValue::from_str(m) {
            Ok(v) if m.contains('/') => {
                c.headers = vec![(http::header::ACCEPT, v.clone())];
                c.media_type = v;
            }
            _ => d.at(
                path,
                m.span(),
                format!("`{}` is not a media type", m.as_str()),
            ),
        }
    }
    for (k, v) in &s.headers {
        let Ok(name) = http::HeaderName::from_bytes(k.as_bytes()) else {
            d.at(path, v.span(), format!("`{k}` is not a header name"));
            continue;
        };
        match http::HeaderValue::from_str(v) {
            Ok(hv) => {
                c.headers.retain(|(n, _)| n != name);
                c.headers.push((name, hv));
            }
            Err(_) => d.at(path, v.span(), "not a valid header value"),
        }
    }
    c
}

pub(super) fn compile_versions(path: &Path, raw: &RawVersions, d: &mut Diags) -> Option<Versions> {
    let mut releases = Vec::new();
    for (date, r) in &raw.releases {
        if !is_date(date) {
            d.file(path, format!("release `{date}` is not a YYYY-MM-DD date"));
            continue;
        }
        if let Some(s) = &r.sunset {
            if !is_date(s) {
                d.at(path, s.span(), "sunset must be a YYYY-MM-DD date");
            }
        }
        let mut changes = Vec::new();
        for c in &r.changes {
            match (&c.rename, &c.nest) {
                (Some(rn), None) => changes.push(Change::Rename {
                    resource: c.resource.to_string(),
                    from: rn.from.to_string(),
                    to: rn.to.to_string(),
                }),
                (None, Some(n)) => changes.push(Change::Nest {
                    resource: c.resource.to_string(),
                    into: n.into.to_string(),
                    members: n
                        .members
                        .iter()
                        .map(|(old, new)| (old.clone(), new.to_string()))
                        .collect(),
                    numbers_as_decimals: n
                        .numbers_as_decimals
                        .iter()
                        .map(|x| x.to_string())
                        .collect(),
                }),
                _ => d.at(
                    path,
                    c.resource.span(),
                    "a change is exactly one of `rename` or `nest`",
                ),
            }
        }
        releases.push(Release {
            date: date.clone(),
            deprecated: r.deprecated,
            sunset: r.sunset.as_ref().map(|s| s.to_string()),
            retired: r.retired,
            changes,
        });
    }
    releases.sort_by(|a, b| a.date.cmp(&b.date));
    if !releases
        .iter()
        .any(|r| r.date == *raw.current && !r.retired)
    {
        d.at(
            path,
            raw.current.span(),
            format!("current `{}` is not a live release", raw.current.as_str()),
        );
        return None;
    }
    Some(Versions {
        current: raw.current.to_string(),
        releases,
    })
}
