//! Executes one public operation of a resource against its legacy service: the plan's
//! calls, read–merge–write, actions, and searches with cursors over every paging style.

use serde_json::{json, Map, Value};

use super::model::*;
use super::search::{self, Query};
use super::transform::{self, Ctx, WriteMode};
use crate::problem::{FieldError, Kind, Problem};
use crate::seal::{InternalId, Sealer};
use crate::upstream::{self, Trust, Upstreams};

/// Cursors expire after a day (public contract §5).
pub const CURSOR_MAX_AGE_S: i64 = 86_400;

/// What a successful operation answers.
pub struct Done {
    pub status: u16,
    pub body: Option<Value>,
    pub location: Option<String>,
}

/// Everything one execution needs, borrowed from the request.
pub struct Exec<'a> {
    pub plan: &'a Plan,
    pub res: &'a Resource,
    pub sealer: &'a Sealer,
    pub upstreams: &'a Upstreams,
    pub trust: &'a Trust,
    pub client_id: &'a str,
    pub version: &'a str,
}

fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl Exec<'_> {
    fn ctx(&self) -> Ctx<'_> {
        Ctx {
            sealer: self.sealer,
            tenant: self.trust.tenant,
        }
    }

    fn service(&self) -> Result<&Service, Problem> {
        self.plan
            .services
            .get(&self.res.service)
            .ok_or_else(|| Problem::new(Kind::Internal, "The resource's service is not configured"))
    }

    fn open(&self, public_id: &str) -> Result<InternalId, Problem> {
        self.sealer
            .open_id(&self.res.prefix, self.trust.tenant, public_id)
            .filter(|(kind, _)| *kind == self.res.kind)
            .map(|(_, id)| id)
            .ok_or_else(Problem::not_found)
    }

    /// The same execution on one source of a multi-source resource.
    fn on<'b>(&'b self, res: &'b Resource) -> Exec<'b> {
        Exec {
            plan: self.plan,
            res,
            sealer: self.sealer,
            upstreams: self.upstreams,
            trust: self.trust,
            client_id: self.client_id,
            version: self.version,
        }
    }

    /// The source a public id belongs to (by the kind sealed into it).
    fn source_of(&self, public_id: &str) -> Result<&Resource, Problem> {
        let (kind, _) = self
            .sealer
            .open_id(&self.res.prefix, self.trust.tenant, public_id)
            .ok_or_else(Problem::not_found)?;
        self.res
            .sources
            .iter()
            .find(|s| s.kind == kind)
            .map(|s| s.as_ref())
            .ok_or_else(Problem::not_found)
    }

    /// Performs one templated call and interprets the service's answer.
    async fn call(
        &self,
        call: &Call,
        id: Option<&InternalId>,
        record: &Map<String, Value>,
        extra_query: &[(String, Value)],
    ) -> Result<Value, Problem> {
        let safe = call.method == Method::Get;
        let answer = self
            .raw_call(call, id, record, extra_query, None, safe)
            .await?;
        upstream::interpret(self.service()?, Some(self.res), &answer)
    }

    async fn raw_call(
        &self,
        call: &Call,
        id: Option<&InternalId>,
        record: &Map<String, Value>,
        extra_query: &[(String, Value)],
        body_override: Option<Value>,
        safe: bool,
    ) -> Result<upstream::Answer, Problem> {
        let mut path = match id {
            Some(id) => call.path.replace("{id}", &enc(&id.to_text())),
            None => call.path.clone(),
        };
        let mut first = true;
        let statics = call
            .query
            .iter()
            .map(|(k, v)| (k.clone(), Value::from(v.as_str())));
        for (k, v) in statics.chain(extra_query.iter().cloned()) {
            path.push(if first { '?' } else { '&' });
            first = false;
            path.push_str(&enc(&k));
            path.push('=');
            path.push_str(&enc(&text(&v)));
        }
        let body = match body_override {
            Some(b) => Some(b),
            None => call
                .body
                .as_ref()
                .map(|t| transform::fill_template(t, id, record, self.trust.user)),
        };
        let body = body.map(|b| serde_json::to_vec(&b).unwrap_or_default());
        self.upstreams
            .call_with(
                &self.res.service,
                call.method,
                &path,
                body,
                safe,
                self.trust,
            )
            .await
    }

    fn public(&self, rec: &Value) -> Value {
        transform::to_public(self.res, &self.ctx(), rec)
    }

    fn object<'b>(&self, body: Option<&'b Value>) -> Result<&'b Map<String, Value>, Problem> {
        match body {
            Some(Value::Object(m)) => Ok(m),
            _ => Err(Problem::invalid(vec![FieldError::new(
                "",
                "the body must be a JSON object",
            )])),
        }
    }

    pub async fn get(&self, public_id: &str) -> Result<Done, Problem> {
        if !self.res.sources.is_empty() {
            let src = self.source_of(public_id)?;
            return Box::pin(self.on(src).get(public_id)).await;
        }
        let call = self.res.get.as_ref().ok_or_else(not_allowed)?;
        let id = self.open(public_id)?;
        let rec = self.call(call, Some(&id), &Map::new(), &[]).await?;
        Ok(Done {
            status: 200,
            body: Some(json!({"data": self.public(&rec)})),
            location: None,
        })
    }

    pub async fn create(&self, body: Option<&Value>) -> Result<Done, Problem> {
        if let Some(src) = self.res.sources.iter().find(|s| s.create.is_some()) {
            return Box::pin(self.on(src).create(body)).await;
        }
        let call = self.res.create.as_ref().ok_or_else(not_allowed)?;
        let obj = self.object(body)?;
        let mut errors = Vec::new();
        let mut record = Map::new();
        transform::to_upstream(
            &self.res.fields,
            &self.ctx(),
            obj,
            WriteMode::Create,
            "",
            &mut errors,
            &mut record,
        );
        if !errors.is_empty() {
            return Err(Problem::invalid(errors));
        }
        let rec = self.call(call, None, &record, &[]).await?;
        let data = self.public(&rec);
        let location = data
            .get("id")
            .and_then(Value::as_str)
            .map(|id| format!("/v1/{}/{id}", self.res.name));
        Ok(Done {
            status: 201,
            body: Some(json!({"data": data})),
            location,
        })
    }

    pub async fn update(&self, public_id: &str, body: Option<&Value>) -> Result<Done, Problem> {
        let upd = self.res.update.as_ref().ok_or_else(not_allowed)?;
        let id = self.open(public_id)?;
        let obj = self.object(body)?;
        let mut errors = Vec::new();
        let mut patch = Map::new();
        transform::to_upstream(
            &self.res.fields,
            &self.ctx(),
            obj,
            WriteMode::Patch,
            "",
            &mut errors,
            &mut patch,
        );
        if !errors.is_empty() {
            return Err(Problem::invalid(errors));
        }
        let rec = match &upd.strategy {
            UpdateStrategy::Partial => self.call(&upd.call, Some(&id), &patch, &[]).await?,
            UpdateStrategy::Replace {
                row_version,
                conflict_code,
            } => {
                self.read_merge_write(upd, &id, patch, row_version, conflict_code)
                    .await?
            }
        };
        Ok(Done {
            status: 200,
            body: Some(json!({"data": self.public(&rec)})),
            location: None,
        })
    }

    /// Full-replace upstreams: read the record (with its row version), merge the patch,
    /// write it back; on a stale row version read and try once more, then report 409.
    async fn read_merge_write(
        &self,
        upd: &Update,
        id: &InternalId,
        patch: Map<String, Value>,
        row_version: &UpPath,
        conflict_code: &str,
    ) -> Result<Value, Problem> {
        let get = self.res.get.as_ref().ok_or_else(not_allowed)?;
        let svc = self.service()?;
        for _attempt in 0..2 {
            let mut current = self.call(get, Some(id), &Map::new(), &[]).await?;
            if row_version.get(&current).is_none() {
                return Err(Problem::new(
                    Kind::UpstreamError,
                    "A backing service answered without a row version",
                ));
            }
            transform::merge(&mut current, Value::Object(patch.clone()));
            let Value::Object(full) = current else {
                return Err(Problem::new(
                    Kind::UpstreamError,
                    "A backing service answered with an unexpected shape",
                ));
            };
            let body = match &upd.call.body {
                Some(t) => transform::fill_template(t, Some(id), &full, self.trust.user),
                None => Value::Object(full.clone()),
            };
            let answer = self
                .raw_call(&upd.call, Some(id), &full, &[], Some(body), false)
                .await?;
            if error_code(svc, &answer).as_deref() == Some(conflict_code) {
                continue;
            }
            return upstream::interpret(svc, Some(self.res), &answer);
        }
        Err(Problem::new(
            Kind::Conflict,
            "The record was changed concurrently; read it again and retry",
        ))
    }

    pub async fn delete(&self, public_id: &str) -> Result<Done, Problem> {
        let call = self.res.delete.as_ref().ok_or_else(not_allowed)?;
        let id = self.open(public_id)?;
        self.call(call, Some(&id), &Map::new(), &[]).await?;
        Ok(Done {
            status: 204,
            body: None,
            location: None,
        })
    }

    pub async fn action(
        &self,
        action: &Action,
        public_id: &str,
        body: Option<&Value>,
    ) -> Result<Done, Problem> {
        let id = self.open(public_id)?;
        let empty = Map::new();
        let obj = match body {
            None | Some(Value::Null) => &empty,
            Some(_) => self.object(body)?,
        };
        let mut errors = Vec::new();
        let mut input = Map::new();
        transform::to_upstream(
            &action.input,
            &self.ctx(),
            obj,
            WriteMode::Input,
            "",
            &mut errors,
            &mut input,
        );
        if !errors.is_empty() {
            return Err(Problem::invalid(errors));
        }
        let rec = self.call(&action.call, Some(&id), &input, &[]).await?;
        Ok(Done {
            status: 200,
            body: Some(json!({"data": self.public(&rec)})),
            location: None,
        })
    }

    fn binding(&self) -> Vec<u8> {
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
        let mut pos = Pos::Offset(0);
        if let Some(state) = self.open_cursor(&mut q, now)? {
            pos = match state.get("p") {
                Some(Value::Number(n)) => {
                    Pos::Offset(n.as_u64().ok_or_else(search::invalid_cursor)?)
                }
                Some(Value::String(t)) => Pos::Token(Some(t.clone())),
                _ => return Err(search::invalid_cursor()),
            };
            if matches!(s.paging, Paging::Page { .. }) {
                q.limit = state
                    .get("l")
                    .and_then(Value::as_u64)
                    .map(|l| l as u32)
                    .unwrap_or(q.limit);
            }
        } else if matches!(s.paging, Paging::Token { .. }) {
            pos = Pos::Token(None);
        }
        let t = search::translate(self.res, &self.ctx(), &q.filters)?;
        if t.impossible {
            return Ok(page(Vec::new(), None, s.total.as_ref().map(|_| 0)));
        }
        let (data, next, total) = self.scan(s, &q, &t, pos).await?;
        let cursor = next.map(|p| {
            let state = json!({"q": q.canonical(self.res), "p": p.to_json(), "l": q.limit});
            self.sealer.seal_cursor(
                &self.binding(),
                now,
                &serde_json::to_vec(&state).unwrap_or_default(),
            )
        });
        Ok(page(data, cursor, total))
    }

    /// Fetches upstream pages from `pos` until some record passes the local filters (or the
    /// upstream is exhausted, or the scan budget is spent). Returns the page, where the next
    /// page starts, and the total when the upstream gives one.
    async fn scan(
        &self,
        s: &Search,
        q: &Query,
        t: &search::Translated,
        mut pos: Pos,
    ) -> Result<(Vec<Value>, Option<Pos>, Option<u64>), Problem> {
        const SCAN_BUDGET: usize = 10;
        let mut total = None;
        for _ in 0..SCAN_BUDGET {
            let (items, next, tot) = self.fetch(s, q, t, &pos).await?;
            total = tot.or(total);
            let mut data: Vec<Value> = items
                .iter()
                .map(|r| self.public(r))
                .filter(|p| {
                    self.keep(p) && t.local.iter().all(|f| search::local_match(self.res, f, p))
                })
                .collect();
            if let Paging::None = s.paging {
                return Ok(self.page_locally(&mut data, q, &pos));
            }
            match next {
                None => return Ok((data, None, total)),
                Some(n) if !data.is_empty() => return Ok((data, Some(n), total)),
                Some(n) => pos = n,
            }
        }
        Ok((Vec::new(), Some(pos), total))
    }

    fn page_locally(
        &self,
        all: &mut [Value],
        q: &Query,
        pos: &Pos,
    ) -> (Vec<Value>, Option<Pos>, Option<u64>) {
        let field = &self.res.fields[q.sort.0].name;
        search::local_sort(all, field, q.sort.1);
        let start = match pos {
            Pos::Offset(o) => *o as usize,
            Pos::Token(_) => 0,
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
    async fn fetch(
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
        match &s.filters {
            FilterStyle::WhereList => {
                body.insert("where".into(), Value::Array(t.clauses.clone()));
            }
            FilterStyle::Params => params.extend(t.params.iter().cloned()),
            FilterStyle::Object(key) => {
                let obj: Map<String, Value> = t.params.iter().cloned().collect();
                body.insert(key.clone(), Value::Object(obj));
            }
        }
        let sort_field = &self.res.fields[q.sort.0];
        match (&s.sort, &sort_field.sort) {
            (SortStyle::OrderByList(key), Some(up)) => {
                let dir = if q.sort.1 { "DESC" } else { "ASC" };
                body.insert(key.clone(), json!([{"field": up, "dir": dir}]));
            }
            (SortStyle::ByParam { by, desc }, Some(up)) => {
                params.push((by.clone(), Value::from(up.as_str())));
                params.push((desc.clone(), Value::Bool(q.sort.1)));
            }
            _ => {}
        }
        let offset = match pos {
            Pos::Offset(o) => *o,
            Pos::Token(_) => 0,
        };
        if let Some(w) = s.window {
            if offset + u64::from(limit) > u64::from(w) {
                return Err(search::beyond_window(w));
            }
        }
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
            Paging::None => {}
        }
        let (query, body) = if in_query {
            (params, None)
        } else {
            for (k, v) in params {
                body.insert(k, v);
            }
            (Vec::new(), Some(Value::Object(body)))
        };
        let answer = self
            .raw_call(
                &s.call,
                None,
                &Map::new(),
                &query,
                body.or(Some(Value::Null)).filter(|b| !b.is_null()),
                // A search reads, whatever its method: safe to retry.
                true,
            )
            .await?;
        let mut payload = upstream::interpret(self.service()?, Some(self.res), &answer)?;
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

impl Exec<'_> {
    fn keep(&self, public: &Value) -> bool {
        match &self.res.keep_if_present {
            Some(f) => public.get(f).is_some_and(|v| !v.is_null()),
            None => true,
        }
    }

    /// A search over every source, merged newest first by the merge field. The cursor keeps,
    /// per source, the upstream page it is in and how many of that page's records were used.
    /// Opens the query's cursor (once), restores the filters and sort it was made for and
    /// checks those the client sent again; returns the cursor's state, if there is one.
    fn open_cursor(&self, q: &mut Query, now: i64) -> Result<Option<Value>, Problem> {
        let Some(c) = &q.cursor else {
            return Ok(None);
        };
        let raw = self
            .sealer
            .open_cursor(&self.binding(), now, CURSOR_MAX_AGE_S, c)
            .ok_or_else(search::invalid_cursor)?;
        let state: Value = serde_json::from_slice(&raw).map_err(|_| search::invalid_cursor())?;
        let (filters, sort) =
            Query::restore(self.res, &state["q"]).ok_or_else(search::invalid_cursor)?;
        if (q.sent_filters && filters != q.filters) || (q.sent_sort && sort != q.sort) {
            return Err(search::invalid_cursor());
        }
        q.filters = filters;
        q.sort = sort;
        Ok(Some(state))
    }

    async fn search_merged(&self, q: Query, now: i64) -> Result<Done, Problem> {
        let mut q = q;
        let mut states: Vec<SourcePos> = match self.open_cursor(&mut q, now)? {
            Some(state) => {
                q.limit = state["l"].as_u64().map(|l| l as u32).unwrap_or(q.limit);
                state
                    .get("s")
                    .and_then(Value::as_array)
                    .filter(|a| a.len() == self.res.sources.len())
                    .ok_or_else(search::invalid_cursor)?
                    .iter()
                    .map(SourcePos::from_json)
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(search::invalid_cursor)?
            }
            None => self
                .res
                .sources
                .iter()
                .map(|_| SourcePos::start())
                .collect(),
        };
        let sort_name = self.res.fields[q.sort.0].name.clone();
        // Values are checked against the public schema (every source's together) first, so
        // a bad one is a 400 and not an empty page.
        search::translate(self.res, &self.ctx(), &q.filters)?;
        let limit = q.limit as usize;
        // Candidates per source: (merge key, public record, raw index from the source's position).
        let mut candidates: Vec<Vec<(String, Value, usize)>> = Vec::new();
        let mut floors: Vec<Option<String>> = Vec::new();
        let mut scanned: Vec<Vec<Page>> = Vec::new();
        for (i, src) in self.res.sources.iter().enumerate() {
            let exec = self.on(src);
            let sub = match self.source_query(src, &q) {
                Some(sub) if !states[i].done => sub,
                _ => {
                    candidates.push(Vec::new());
                    floors.push(None);
                    scanned.push(Vec::new());
                    states[i].done = true;
                    continue;
                }
            };
            let (c, floor, pages) = exec
                .source_candidates(&sub, &states[i], limit, &sort_name)
                .await?;
            candidates.push(c);
            floors.push(floor);
            scanned.push(pages);
        }
        // A source that stopped early (scan budget) bounds how old the page may go.
        let floor = floors.iter().flatten().max().cloned();
        let counts: Vec<usize> = candidates.iter().map(Vec::len).collect();
        let mut merged: Vec<(String, usize, usize, Value)> = Vec::new();
        for (si, list) in candidates.into_iter().enumerate() {
            for (key, rec, raw_idx) in list {
                if floor.as_ref().is_none_or(|f| &key >= f) {
                    merged.push((key, si, raw_idx, rec));
                }
            }
        }
        merged.sort_by(|a, b| {
            b.0.cmp(&a.0)
                .then_with(|| a.1.cmp(&b.1))
                .then_with(|| a.2.cmp(&b.2))
        });
        merged.truncate(limit);
        let mut used_upto: Vec<Option<usize>> = vec![None; states.len()];
        for (_, si, raw_idx, _) in &merged {
            used_upto[*si] = Some(used_upto[*si].map_or(*raw_idx, |u: usize| u.max(*raw_idx)));
        }
        for (si, st) in states.iter_mut().enumerate() {
            if st.done {
                continue;
            }
            let pages = &scanned[si];
            let total_raw: usize = pages.iter().map(|p| p.len).sum();
            let exhausted = pages.last().is_some_and(|p| p.next.is_none());
            // Records of a source before its last merged one were merged or filtered out; a
            // source with no candidates at all had only filtered-out records in its scan.
            let consumed = match used_upto[si] {
                Some(u) => u + 1,
                None if counts[si] == 0 => total_raw,
                None => 0,
            };
            if consumed >= total_raw && exhausted {
                st.done = true;
                continue;
            }
            let mut left = consumed;
            for p in pages {
                if left < p.len {
                    st.skip += left;
                    break;
                }
                left -= p.len;
                st.token = p.next.clone();
                st.skip = 0;
            }
        }
        let data: Vec<Value> = merged.into_iter().map(|m| m.3).collect();
        let more = states.iter().any(|s| !s.done);
        let cursor = more.then(|| {
            let state = json!({
                "q": q.canonical(self.res),
                "s": states.iter().map(SourcePos::to_json).collect::<Vec<_>>(),
                "l": q.limit,
            });
            self.sealer.seal_cursor(
                &self.binding(),
                now,
                &serde_json::to_vec(&state).unwrap_or_default(),
            )
        });
        Ok(page(data, cursor, None))
    }

    /// The query as one source sees it: filters re-resolved against the source's own fields;
    /// `None` when a filter on a constant field excludes the source altogether.
    fn source_query(&self, src: &Resource, q: &Query) -> Option<Query> {
        let mut filters = Vec::new();
        for f in &q.filters {
            let name = &self.res.fields[f.field].name;
            let (idx, field) = src.field(name)?;
            if let Codec::Const(c) = &field.codec {
                let probe = json!({ name.as_str(): c });
                let mut g = f.clone();
                g.field = idx;
                if !search::local_match(src, &g, &probe) {
                    return None;
                }
                continue;
            }
            let mut g = f.clone();
            g.field = idx;
            // Enum values this source cannot hold: `eq` excludes the source, `in` drops them.
            if let Codec::Enum { to_up } = &field.codec {
                let known = |v: &Value| v.as_str().is_some_and(|s| to_up.contains_key(s));
                match g.op {
                    Op::Eq if !known(&g.value) => return None,
                    Op::In => {
                        g.values.retain(known);
                        if g.values.is_empty() {
                            return None;
                        }
                    }
                    Op::NotIn => g.values.retain(known),
                    _ => {}
                }
            }
            filters.push(g);
        }
        let (sort_idx, _) = src.field(&self.res.fields[q.sort.0].name)?;
        Some(Query {
            filters,
            sort: (sort_idx, true),
            limit: q.limit,
            cursor: None,
            sent_filters: false,
            sent_sort: false,
        })
    }

    /// Up to `limit` records of this source from its position, newest first, and the pages
    /// scanned. The floor is the oldest key scanned when the scan budget ran out first.
    async fn source_candidates(
        &self,
        q: &Query,
        pos: &SourcePos,
        limit: usize,
        sort_name: &str,
    ) -> Result<(Vec<(String, Value, usize)>, Option<String>, Vec<Page>), Problem> {
        const BUDGET: usize = 6;
        let s = self.res.search.as_ref().ok_or_else(not_allowed)?;
        let t = search::translate(self.res, &self.ctx(), &q.filters)?;
        let mut out = Vec::new();
        let mut pages = Vec::new();
        let mut token = pos.token.clone();
        let mut raw_base = 0usize;
        let mut skip = pos.skip;
        let mut last_key = None;
        for _ in 0..BUDGET {
            let p = match &token {
                Some(t) => Pos::Token(Some(t.clone())),
                None => Pos::Token(None),
            };
            let (items, next, _) = self.fetch(s, q, &t, &p).await?;
            let len = items.len();
            for (j, r) in items.iter().enumerate().skip(skip) {
                let public = self.public(r);
                let key = public
                    .get(sort_name)
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                last_key = Some(key.clone());
                if self.keep(&public)
                    && t.local
                        .iter()
                        .all(|f| search::local_match(self.res, f, &public))
                {
                    out.push((key, public, raw_base + j - skip));
                }
            }
            let next_token = match next {
                Some(Pos::Token(Some(t))) => Some(t),
                _ => None,
            };
            pages.push(Page {
                len: len - skip.min(len),
                next: next_token.clone(),
            });
            raw_base += len - skip.min(len);
            skip = 0;
            if out.len() >= limit || next_token.is_none() {
                return Ok((out, None, pages));
            }
            token = next_token;
        }
        Ok((out, last_key, pages))
    }
}

/// One scanned upstream page of a source: how many records it held (after the skip) and
/// the token of the page after it.
#[derive(Debug)]
struct Page {
    len: usize,
    next: Option<String>,
}

/// A source's position in a merged search.
#[derive(Debug, Clone)]
struct SourcePos {
    token: Option<String>,
    skip: usize,
    done: bool,
}

impl SourcePos {
    fn start() -> SourcePos {
        SourcePos {
            token: None,
            skip: 0,
            done: false,
        }
    }

    fn to_json(&self) -> Value {
        json!([self.token, self.skip, self.done])
    }

    fn from_json(v: &Value) -> Option<SourcePos> {
        let a = v.as_array()?;
        Some(SourcePos {
            token: match a.first()? {
                Value::Null => None,
                Value::String(s) => Some(s.clone()),
                _ => return None,
            },
            skip: a.get(1)?.as_u64()? as usize,
            done: a.get(2)?.as_bool()?,
        })
    }
}

/// Where a search continues upstream.
#[derive(Debug, Clone)]
pub enum Pos {
    Offset(u64),
    Token(Option<String>),
}

impl Pos {
    fn to_json(&self) -> Value {
        match self {
            Pos::Offset(o) => Value::from(*o),
            Pos::Token(t) => t.as_deref().map(Value::from).unwrap_or(Value::Null),
        }
    }
}

fn page(data: Vec<Value>, cursor: Option<String>, total: Option<u64>) -> Done {
    let mut meta = Map::new();
    meta.insert(
        "cursor".into(),
        cursor.map(Value::from).unwrap_or(Value::Null),
    );
    if let Some(t) = total {
        meta.insert("total".into(), Value::from(t));
    }
    Done {
        status: 200,
        body: Some(json!({"data": data, "meta": meta})),
        location: None,
    }
}

fn not_allowed() -> Problem {
    Problem::new(
        Kind::MethodNotAllowed,
        "This operation is not available on this resource",
    )
}

/// The raw error code of a failed answer, for strategies that react to one code.
fn error_code(svc: &Service, a: &upstream::Answer) -> Option<String> {
    let json: Value = serde_json::from_slice(&a.body).ok()?;
    let failed = !(200..300).contains(&a.status)
        || svc
            .success
            .as_ref()
            .is_some_and(|p| json.pointer(p).and_then(Value::as_bool) != Some(true));
    if !failed {
        return None;
    }
    svc.code
        .as_ref()
        .and_then(|p| json.pointer(p))
        .and_then(Value::as_str)
        .map(str::to_string)
}
