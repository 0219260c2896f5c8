//! Searches of a single-source resource: translation, sort, paging over every style,
//! local filters and the sealed cursor.

use super::*;

impl Exec<'_> {
    pub(super) fn binding(&self) -> Vec<u8> {
        format!(
            "{}|{}|{}|{}",
            self.trust.tenant, self.client_id, self.version, self.res.name
        )
        .into_bytes()
    }

    pub async fn search(&self, body: Option<&Value>) -> Result<Done, Problem> {
        let s = self.res.search.as_ref().ok_or_else(not_allowed)?;
        let mut q = search::parse(self.res, s, body)?;
        let now = chrono::Utc::now().timestamp();
        if !self.res.sources.is_empty() {
            return self.search_merged(q, now).await;
        }
        let mut pos = match s.paging {
            Paging::Token { .. } => Pos::Token(None),
            Paging::NextLink { .. } => Pos::Link(None),
            _ => Pos::Offset(0),
        };
        let mut skip = 0usize;
        if let Some(state) = self.open_cursor(&mut q, now)? {
            pos = match (state.get("p"), &s.paging) {
                (Some(Value::Number(n)), _) => {
                    Pos::Offset(n.as_u64().ok_or_else(search::invalid_cursor)?)
                }
                (Some(Value::String(t)), Paging::NextLink { .. }) => Pos::Link(Some(t.clone())),
                (Some(Value::String(t)), _) => Pos::Token(Some(t.clone())),
                _ => return Err(search::invalid_cursor()),
            };
            skip = match state.get("k") {
                None => 0,
                Some(k) => k.as_u64().ok_or_else(search::invalid_cursor)? as usize,
            };
            // The upstream page size is part of the position (page numbers, skips).
            if skip > 0 || matches!(s.paging, Paging::Page { .. } | Paging::NextLink { .. }) {
                q.limit = state
                    .get("l")
                    .and_then(Value::as_u64)
                    .map(|l| l as u32)
                    .unwrap_or(q.limit);
            }
        }
        let t = search::translate(self.res, &self.ctx(), &q.filters)?;
        // An upstream's total counts what it filtered; with filters the edge applies
        // itself it is not the real total, so none is published.
        let total_is_real = s.total.is_some() && t.local.is_empty();
        if t.impossible {
            return Ok(page(Vec::new(), None, total_is_real.then_some(0)));
        }
        let (data, next, total) = self.scan(s, &q, &t, pos, skip).await?;
        let total = if matches!(s.paging, Paging::None) || total_is_real {
            total
        } else {
            None
        };
        let cursor = next.map(|(p, k)| {
            let mut state = json!({"q": q.canonical(self.res), "p": p.to_json(), "l": q.limit});
            if k > 0 {
                state["k"] = Value::from(k);
            }
            self.sealer.seal_cursor(
                &self.binding(),
                now,
                &serde_json::to_vec(&state).unwrap_or_default(),
            )
        });
        Ok(page(data, cursor, total))
    }

    /// Fetches upstream pages from `pos` (skipping `skip` records of the first) until
    /// `limit` records pass the local filters, the upstream is exhausted, or the scan
    /// budget is spent. Returns exactly the page, where the next one starts (an upstream
    /// position and how many of its records were already used), and the upstream total.
    pub(super) async fn scan(
        &self,
        s: &Search,
        q: &Query,
        t: &search::Translated,
        mut pos: Pos,
        mut skip: usize,
    ) -> Result<(Vec<Value>, Option<(Pos, usize)>, Option<u64>), Problem> {
        const SCAN_BUDGET: usize = 10;
        let limit = q.limit as usize;
        let mut total = None;
        let mut out = Vec::with_capacity(limit);
        for _ in 0..SCAN_BUDGET {
            let (items, next, tot) = self.fetch(s, q, t, &pos).await?;
            total = tot.or(total);
            if let Paging::None = s.paging {
                let mut all = Vec::with_capacity(items.len());
                for r in &items {
                    let p = self.public(r)?;
                    if self.keep(&p) && t.local.iter().all(|f| search::local_match(self.res, f, &p))
                    {
                        all.push(p);
                    }
                }
                let (data, next, total) = self.page_locally(&mut all, q, &pos);
                return Ok((data, next.map(|p| (p, 0)), total));
            }
            let n = items.len();
            let mut used = n;
            for (j, r) in items.iter().enumerate().skip(skip) {
                if out.len() == limit {
                    used = j;
                    break;
                }
                let p = self.public(r)?;
                if self.keep(&p) && t.local.iter().all(|f| search::local_match(self.res, f, &p)) {
                    out.push(p);
                }
            }
            if used < n {
                return Ok((out, Some((pos, used)), total));
            }
            skip = 0;
            match next {
                None => return Ok((out, None, total)),
                Some(nx) => {
                    pos = nx;
                    if out.len() == limit {
                        return Ok((out, Some((pos, 0)), total));
                    }
                }
            }
        }
        Ok((out, Some((pos, skip)), total))
    }

    pub(super) fn page_locally(
        &self,
        all: &mut [Value],
        q: &Query,
        pos: &Pos,
    ) -> (Vec<Value>, Option<Pos>, Option<u64>) {
        let field = &self.res.fields[q.sort.0].name;
        search::local_sort(all, field, q.sort.1);
        let start = match pos {
            Pos::Offset(o) => *o as usize,
            Pos::Token(_) | Pos::Link(_) => 0,
        };
        let total = all.len();
        let end = (start + q.limit as usize).min(total);
        let data = if start < total {
            all[start..end].to_vec()
        } else {
            Vec::new()
        };
        let next = (end < total).then_some(Pos::Offset(end as u64));
        (data, next, Some(total as u64))
    }

    /// One upstream page: the raw records, where the next page starts (None at the end),
    /// and the total if the upstream gives one.
    pub(super) async fn fetch(
        &self,
        s: &Search,
        q: &Query,
        t: &search::Translated,
        pos: &Pos,
    ) -> Result<(Vec<Value>, Option<Pos>, Option<u64>), Problem> {
        let limit = q.limit.min(s.max);
        let in_query = s.call.method == Method::Get;
        let mut params: Vec<(String, Value)> = s.constants.clone();
        let mut body = Map::new();
        match &s.filters.into {
            FilterInto::Param { name, join } => {
                params.extend(t.params.iter().cloned());
                if !t.texts.is_empty() {
                    params.push((name.clone(), Value::from(t.texts.join(join))));
                }
            }
            FilterInto::Params => params.extend(t.params.iter().cloned()),
            FilterInto::List(ptr) => {
                params.extend(t.params.iter().cloned());
                put_body(&mut body, ptr, Value::Array(t.clauses.clone()));
            }
            FilterInto::Object(ptr) => {
                let obj: Map<String, Value> = t.params.iter().cloned().collect();
                put_body(&mut body, ptr, Value::Object(obj));
            }
        }
        let sort_field = &self.res.fields[q.sort.0];
        if let (SortStyle::Upstream(set), Some(up)) = (&s.sort, &sort_field.sort) {
            let desc = q.sort.1;
            let dir = if desc { &set.desc } else { &set.asc };
            for (k, tpl) in &set.members {
                let v = tpl.render(
                    &|h| match h {
                        Hole::Field => Value::from(up.as_str()),
                        Hole::Dir => Value::from(dir.as_str()),
                        Hole::Desc => Value::Bool(desc),
                        _ => Value::Null,
                    },
                    &|h, out: &mut String| match h {
                        Hole::Field => out.push_str(up),
                        Hole::Dir => out.push_str(dir),
                        Hole::Desc => out.push_str(if desc { "true" } else { "false" }),
                        _ => {}
                    },
                );
                if in_query {
                    params.push((k.clone(), v));
                } else {
                    body.insert(k.clone(), v);
                }
            }
        }
        let offset = match pos {
            Pos::Offset(o) => *o,
            Pos::Token(_) | Pos::Link(_) => 0,
        };
        if let Some(w) = s.window {
            if offset + u64::from(limit) > u64::from(w) {
                return Err(search::beyond_window(w));
            }
        }
        let mut extra_headers = Vec::new();
        match &s.paging {
            Paging::Offset {
                offset: o,
                limit: l,
            }
            | Paging::StartCount {
                start: o, count: l, ..
            } => {
                params.push((o.clone(), Value::from(offset)));
                params.push((l.clone(), Value::from(limit)));
            }
            Paging::Page { page, size } => {
                params.push((page.clone(), Value::from(offset / u64::from(limit) + 1)));
                params.push((size.clone(), Value::from(limit)));
            }
            Paging::Token {
                token, limit: l, ..
            } => {
                if let Pos::Token(Some(tok)) = pos {
                    params.push((token.clone(), Value::from(tok.as_str())));
                }
                params.push((l.clone(), Value::from(limit)));
            }
            Paging::NextLink { size, .. } => match size {
                Some(Inject::Param(p)) => params.push((p.clone(), Value::from(limit))),
                Some(Inject::Header(h, tpl)) => {
                    let mut v = String::new();
                    Vars {
                        id: None,
                        trust: self.trust,
                        size: Some(limit),
                    }
                    .render(tpl, |s, o| o.push_str(s), &mut v);
                    extra_headers.push((h.clone(), dialect::header_value(&v)?));
                }
                None => {}
            },
            Paging::None => {}
        }
        let link = match pos {
            Pos::Link(Some(l)) => Some(l.as_str()),
            _ => None,
        };
        let (query, body) = if in_query {
            (params, None)
        } else {
            for (k, v) in params {
                body.insert(k, v);
            }
            (Vec::new(), Some(Value::Object(body)))
        };
        // A next link is the whole continuation: its path and query are requested as
        // they are (headers such as the page-size preference are sent again).
        let query: Vec<(String, String)> = match link {
            Some(_) => Vec::new(),
            None => query.iter().map(|(k, v)| (k.clone(), text(v))).collect(),
        };
        let vars = Vars {
            id: None,
            trust: self.trust,
            size: Some(limit),
        };
        let body = match link {
            Some(_) => None,
            None => body.filter(|b| !b.is_null()),
        };
        let prepared = Prepared::build(
            self.service()?,
            &s.call,
            &vars,
            link,
            &query,
            &extra_headers,
            body.as_ref(),
        )?;
        // A search reads, whatever its method: safe to retry.
        let answer = prepared
            .send(self.upstreams, &self.res.service, true, self.trust)
            .await?;
        let mut payload = interpret(self.service()?, Some(self.res), &answer)?;
        let got = payload
            .pointer(&s.items)
            .and_then(Value::as_array)
            .map(Vec::len)
            .ok_or_else(|| {
                Problem::new(
                    Kind::UpstreamError,
                    "A backing service answered a search with an unexpected shape",
                )
            })? as u64;
        let total = s
            .total
            .as_ref()
            .and_then(|p| payload.pointer(p))
            .and_then(Value::as_u64);
        let next = match &s.paging {
            Paging::Offset { .. } | Paging::Page { .. } => {
                let end = offset + got;
                let more = match total {
                    Some(t) => end < t,
                    None => got == u64::from(limit),
                };
                (more && got > 0).then_some(Pos::Offset(end))
            }
            Paging::StartCount { more, .. } => {
                let more = payload
                    .pointer(more)
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                (more && got > 0).then_some(Pos::Offset(offset + got))
            }
            Paging::Token { next, more, .. } => {
                let more = more
                    .as_ref()
                    .is_none_or(|m| payload.pointer(m).and_then(Value::as_bool) == Some(true));
                match payload.pointer(next) {
                    Some(Value::Null) | None => None,
                    Some(v) if got > 0 && more => Some(Pos::Token(Some(text(v)))),
                    Some(_) => None,
                }
            }
            Paging::NextLink { next, .. } => {
                let raw = match next {
                    NextFrom::Pointer(p) => payload
                        .pointer(p)
                        .and_then(Value::as_str)
                        .map(str::to_string),
                    NextFrom::LinkHeader => link_next(&answer.headers),
                };
                match raw.filter(|l| !l.is_empty()) {
                    None => None,
                    Some(l) => {
                        // Any instance's origin: each replica links to itself.
                        let origins = self.upstreams.origins(&self.res.service);
                        match follow(&origins, &l) {
                            Some(pq) => Some(Pos::Link(Some(pq))),
                            None => {
                                // Never followed: another origin could receive the trust headers.
                                tracing::warn!(service = %self.res.service, "a next link points outside the service's origin");
                                return Err(Problem::new(
                                    Kind::UpstreamError,
                                    "A backing service answered a search with an unusable next link",
                                ));
                            }
                        }
                    }
                }
            }
            Paging::None => None,
        };
        // The records are taken out of the answer, not cloned (25 deep copies a page).
        let items = match payload.pointer_mut(&s.items) {
            Some(Value::Array(a)) => std::mem::take(a),
            _ => Vec::new(),
        };
        Ok((items, next, total))
    }
}

/// Sets a value at a pointer of a body being built.
fn put_body(body: &mut Map<String, Value>, ptr: &str, v: Value) {
    let mut root = Value::Object(std::mem::take(body));
    put(&mut root, ptr, v);
    if let Value::Object(m) = root {
        *body = m;
    }
}

/// Sets `v` at a JSON pointer, creating objects on the way.
fn put(root: &mut Value, ptr: &str, v: Value) {
    let mut cur = root;
    let tokens: Vec<&str> = ptr.split('/').skip(1).collect();
    let Some((last, parents)) = tokens.split_last() else {
        *cur = v;
        return;
    };
    for t in parents {
        if !cur.is_object() {
            *cur = Value::Object(Map::new());
        }
        let Value::Object(m) = cur else { return };
        cur = m
            .entry(t.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    if !cur.is_object() {
        *cur = Value::Object(Map::new());
    }
    if let Value::Object(m) = cur {
        m.insert(last.to_string(), v);
    }
}

/// Where a search continues upstream.
#[derive(Debug, Clone)]
pub enum Pos {
    Offset(u64),
    Token(Option<String>),
    /// A next link's path and query (already checked against the service's origin);
    /// `None` is the first page.
    Link(Option<String>),
}

impl Pos {
    pub(super) fn to_json(&self) -> Value {
        match self {
            Pos::Offset(o) => Value::from(*o),
            Pos::Token(t) | Pos::Link(t) => t.as_deref().map(Value::from).unwrap_or(Value::Null),
        }
    }
}

/// A next link, checked against the origins of the service's instances (each replica links
/// to itself): the path and query to request, or `None` when it points anywhere else
/// (another host, scheme or port, a network-path reference, a relative path).
pub fn follow(origins: &[&str], link: &str) -> Option<String> {
    origins.iter().find_map(|base| follow_one(base, link))
}

fn follow_one(base: &str, link: &str) -> Option<String> {
    let (origin, prefix) = match base.find("://") {
        Some(i) => match base[i + 3..].find('/') {
            Some(j) => base.split_at(i + 3 + j),
            None => (base, ""),
        },
        None => return None,
    };
    let path = if link.contains("://") {
        let rest = link.get(..origin.len())?;
        if !rest.eq_ignore_ascii_case(origin) {
            return None;
        }
        let p = &link[origin.len()..];
        if !p.starts_with('/') {
            return None;
        }
        p
    } else if link.starts_with('/') && !link.starts_with("//") {
        link
    } else {
        return None;
    };
    let p = path.strip_prefix(prefix)?;
    (p.starts_with('/') && !p.contains(['\r', '\n', ' ', '#'])).then(|| p.to_string())
}

/// The `rel="next"` target of an RFC 8288 `Link` header.
fn link_next(headers: &http::HeaderMap) -> Option<String> {
    for v in headers.get_all(http::header::LINK) {
        let Ok(v) = v.to_str() else { continue };
        for part in v.split(',') {
            let mut it = part.split(';');
            let target = it.next()?.trim();
            let is_next = it.any(|p| {
                let p = p.trim();
                p.strip_prefix("rel=")
                    .map(|r| {
                        r.trim_matches('"')
                            .split(' ')
                            .any(|x| x.eq_ignore_ascii_case("next"))
                    })
                    .unwrap_or(false)
            });
            if is_next {
                return target
                    .strip_prefix('<')
                    .and_then(|t| t.strip_suffix('>'))
                    .map(str::to_string);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::follow;

    #[test]
    fn a_next_link_is_followed_only_to_an_instance_of_the_service() {
        let origins = ["http://10.0.0.5:8081", "http://10.0.0.6:8081"];
        let cases = [
            (
                "http://10.0.0.5:8081/odata/Contacts?$skiptoken=2",
                Some("/odata/Contacts?$skiptoken=2"),
            ),
            // The second replica's own absolute link.
            (
                "http://10.0.0.6:8081/odata/Contacts?$skiptoken=2",
                Some("/odata/Contacts?$skiptoken=2"),
            ),
            ("HTTP://10.0.0.6:8081/a", Some("/a")),
            ("/odata/Contacts?page=3", Some("/odata/Contacts?page=3")),
            ("http://10.0.0.7:8081/odata/Contacts", None),
            ("http://10.0.0.5:8082/odata/Contacts", None),
            ("https://10.0.0.5:8081/odata/Contacts", None),
            ("//10.0.0.5:8081/odata/Contacts", None),
            ("odata/Contacts", None),
            ("http://10.0.0.5:8081.evil.example/x", None),
            ("http://10.0.0.5:8081/a b", None),
        ];
        for (link, want) in cases {
            assert_eq!(follow(&origins, link).as_deref(), want, "{link}");
        }
        assert_eq!(follow(&[], "/a"), None);
    }
}
