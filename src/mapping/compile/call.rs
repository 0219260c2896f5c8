//! Call templates: the call line, per-call headers, `id_from`, and an update's `version`.

use super::*;

impl Compiler<'_> {
    pub(super) fn call(
        &mut self,
        s: &Spanned<String>,
        body: Option<&Spanned<Value>>,
    ) -> Option<Call> {
        let (m, rest) = s.split_once(' ').unwrap_or(("", s.as_str()));
        let method = match m {
            "GET" => Method::Get,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "PATCH" => Method::Patch,
            "DELETE" => Method::Delete,
            _ => {
                self.err(
                    s.span(),
                    format!(
                        "call `{}` must be `METHOD /path` (GET, POST, PUT, PATCH or DELETE)",
                        s.as_str()
                    ),
                );
                return None;
            }
        };
        let rest = rest.trim();
        if !rest.starts_with('/') {
            self.err(s.span(), "the call's path must start with /");
            return None;
        }
        let (p, q) = rest.split_once('?').unwrap_or((rest, ""));
        let mut query = Vec::new();
        for kv in q.split('&').filter(|kv| !kv.is_empty()) {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            match parse_tpl(v) {
                Ok(t) => query.push((k.to_string(), t)),
                Err(e) => self.err(s.span(), e),
            }
        }
        let path = match parse_tpl(p) {
            Ok(t) => t,
            Err(e) => {
                self.err(s.span(), e);
                return None;
            }
        };
        if path.uses(Var::Size) {
            self.err(
                s.span(),
                "`{size}` is a value of a search's paging, not of a path",
            );
        }
        if let Some(svc) = self.current.as_deref().and_then(|n| self.services.get(n)) {
            for v in &svc.conventions.in_path {
                if !path.uses(*v) {
                    let name = if *v == Var::Tenant { "tenant" } else { "user" };
                    self.err(
                        s.span(),
                        format!(
                            "service `{}` takes the {name} in the path: the call needs `{{{name}}}`",
                            svc.name
                        ),
                    );
                }
            }
        }
        Some(Call {
            method,
            path,
            query,
            headers: Vec::new(),
            body: body.map(|b| template(b)),
            record: None,
            id_from: None,
        })
    }

    /// Per-call headers (templates).
    pub(super) fn headers(
        &mut self,
        raw: &IndexMap<String, Spanned<String>>,
    ) -> Vec<(http::HeaderName, Tpl)> {
        let mut out = Vec::new();
        for (k, v) in raw {
            let Ok(name) = http::HeaderName::from_bytes(k.as_bytes()) else {
                self.err(v.span(), format!("`{k}` is not a header name"));
                continue;
            };
            if http::HeaderValue::from_str(v).is_err() {
                self.err(v.span(), "not a valid header value");
                continue;
            }
            match parse_tpl(v) {
                Ok(t) => out.push((name, t)),
                Err(e) => self.err(v.span(), e),
            }
        }
        out
    }

    /// A whole `RawCall`: the call line, its body, headers, record pointer and id source.
    pub(super) fn full_call(&mut self, c: &RawCall) -> Option<Call> {
        let mut call = self.call(&c.call, c.body.as_ref())?;
        call.headers = self.headers(&c.headers);
        call.record = c
            .record
            .as_ref()
            .and_then(|p| pointer(self.path, p, self.d));
        if let Some(idf) = &c.id_from {
            call.id_from = match (&idf.pointer, &idf.header) {
                (Some(p), None) => pointer(self.path, p, self.d).map(IdFrom::Pointer),
                (None, Some(h)) => {
                    let name = header_name(self.path, h, self.d)?;
                    let pattern = idf.pattern.as_ref().map(|p| p.as_str()).unwrap_or("{id}");
                    match pattern.split_once("{id}") {
                        Some((before, after)) if !after.contains("{id}") => Some(IdFrom::Header {
                            name,
                            before: before.to_string(),
                            after: after.to_string(),
                        }),
                        _ => {
                            self.err(
                                idf.pattern.as_ref().map(|p| p.span()).unwrap_or(h.span()),
                                "id_from: the pattern needs exactly one `{id}`",
                            );
                            None
                        }
                    }
                }
                _ => {
                    self.err(
                        c.call.span(),
                        "id_from needs exactly one of `pointer` or `header` (with `pattern`)",
                    );
                    None
                }
            };
        }
        Some(call)
    }

    /// An update's optimistic concurrency: where the version is read and sent, and what
    /// answer means "stale".
    pub(super) fn version(&mut self, v: &RawVersion, span: &Span) -> Option<Version> {
        let from = match (&v.from.pointer, &v.from.header) {
            (Some(p), None) => pointer(self.path, p, self.d).map(VersionFrom::Pointer),
            (None, Some(h)) => header_name(self.path, h, self.d).map(VersionFrom::Header),
            _ => {
                self.err(span, "version `from` needs exactly one of `pointer` (in the record) or `header` (of the read's answer)");
                None
            }
        };
        let to = match (&v.to.header, &v.to.value, &v.to.field) {
            (Some(h), value, None) => {
                let name = header_name(self.path, h, self.d);
                let text = value.as_ref().map(|v| v.as_str()).unwrap_or("{version}");
                let vspan = value.as_ref().map(|v| *v.span()).unwrap_or(*h.span());
                match text.split_once("{version}") {
                    Some((before, after))
                        if !after.contains("{version}")
                            && !after.contains('{')
                            && !before.contains('{') =>
                    {
                        name.map(|name| VersionTo::Header {
                            name,
                            before: before.to_string(),
                            after: after.to_string(),
                        })
                    }
                    _ => {
                        self.err(
                            &vspan,
                            "version `to.value` needs exactly one `{version}` and no other hole",
                        );
                        None
                    }
                }
            }
            (None, None, Some(f)) => Some(VersionTo::Field(UpPath::parse(f))),
            _ => {
                self.err(
                    span,
                    "version `to` needs exactly one of `header` (with `value`) or `field`",
                );
                None
            }
        };
        if v.stale.code.is_none() && v.stale.status.is_none() {
            self.err(span, "version `stale` needs a `code` or a `status` (the answer that means the version was stale)");
        }
        if let Some(st) = &v.stale.status {
            if !(400..600).contains(&**st) {
                self.err(
                    st.span(),
                    "version `stale.status` must be an error status (400–599)",
                );
            }
        }
        Some(Version {
            from: from?,
            to: to?,
            stale_code: v.stale.code.as_ref().map(|c| c.to_string()),
            stale_status: v.stale.status.as_ref().map(|s| **s),
        })
    }
}
