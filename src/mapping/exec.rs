//! Executes one public operation of a resource against its legacy service: the plan's
//! calls, read–merge–write, actions, and searches with cursors over every paging style.

use serde_json::{json, Map, Value};

use super::dialect::{self, error_code, interpret, Prepared, Trust, Vars};
use super::model::*;
use super::search::{self, Query};
use super::transform::{self, Ctx, WriteMode};
use crate::problem::{FieldError, Kind, Problem};
use crate::seal::{InternalId, Sealer};
use crate::upstream::{Answer, Upstreams};

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
            .map(|(_, id)| self.as_declared(id))
            .ok_or_else(Problem::not_found)
    }

    /// A string-keyed resource whose key looks like a number (`"42"`) was sealed as the
    /// number: its templates get it back as text.
    fn as_declared(&self, id: InternalId) -> InternalId {
        match (self.res.id_kind, id) {
            (IdKind::Str, InternalId::Int(n)) => InternalId::Str(n.to_string()),
            (_, id) => id,
        }
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

    /// Performs one templated call and interprets the service's answer; the record is
    /// taken out of the payload at the call's `record` pointer.
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
        let payload = interpret(self.service()?, Some(self.res), &answer)?;
        Ok(take_record(call, payload))
    }

    async fn raw_call(
        &self,
        call: &Call,
        id: Option<&InternalId>,
        record: &Map<String, Value>,
        extra_query: &[(String, Value)],
        body_override: Option<Value>,
        safe: bool,
    ) -> Result<Answer, Problem> {
        let body = match body_override {
            Some(b) => Some(b),
            None => call
                .body
                .as_ref()
                .map(|t| transform::fill_template(t, id, record, self.trust.user)),
        };
        let params: Vec<(String, String)> = extra_query
            .iter()
            .map(|(k, v)| (k.clone(), text(v)))
            .collect();
        let id_text = id.map(dialect::id_text);
        let vars = Vars {
            id: id_text.as_deref(),
            trust: self.trust,
            size: None,
        };
        let prepared = Prepared::build(
            self.service()?,
            call,
            &vars,
            None,
            &params,
            &[],
            body.as_ref(),
        )?;
        prepared
            .send(self.upstreams, &self.res.service, safe, self.trust)
            .await
    }

    /// A write answered without the record (204, or only an id): the id it names, from the
    /// call's `id_from` or the record's own id member.
    fn written_id(&self, call: &Call, answer: &Answer, payload: &Value) -> Option<InternalId> {
        let text = match &call.id_from {
            Some(IdFrom::Pointer(p)) => payload.pointer(p).map(text),
            Some(IdFrom::Header {
                name,
                before,
                after,
            }) => answer
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| cut(v, before, after))
                .map(str::to_string),
            None => self.res.id_from.get(payload).map(text),
        }?;
        let text = percent_encoding::percent_decode_str(&text)
            .decode_utf8()
            .ok()?
            .into_owned();
        if text.is_empty() {
            return None;
        }
        Some(match self.res.id_kind {
            IdKind::Int => InternalId::Int(text.parse().ok()?),
            IdKind::Str => InternalId::Str(text),
        })
    }

    /// Whether a write's answer holds the record itself (every field, not only an id).
    fn has_record(&self, payload: &Value) -> bool {
        payload.as_object().is_some_and(|m| {
            self.res.id_from.get(payload).is_some()
                && self
                    .res
                    .fields
                    .iter()
                    .filter_map(|f| f.from.as_ref())
                    .any(|p| {
                        p.0.first().is_some_and(|k| m.contains_key(k)) && p != &self.res.id_from
                    })
        })
    }

    /// A write: the call, then the record — from the answer, or read back when the answer
    /// does not carry it.
    async fn write(
        &self,
        call: &Call,
        id: Option<&InternalId>,
        record: &Map<String, Value>,
    ) -> Result<Value, Problem> {
        let answer = self.raw_call(call, id, record, &[], None, false).await?;
        let payload = interpret(self.service()?, Some(self.res), &answer)?;
        let payload = take_record(call, payload);
        if self.has_record(&payload) {
            return Ok(payload);
        }
        let get = self.res.get.as_ref().ok_or_else(|| {
            Problem::new(
                Kind::UpstreamError,
                "A backing service answered a write without the record",
            )
        })?;
        let id = match id {
            Some(id) if call.id_from.is_none() => Some(id.clone()),
            _ => self.written_id(call, &answer, &payload),
        };
        let Some(id) = id else {
            tracing::warn!(service = %self.res.service, status = answer.status, "a write answered neither the record nor its id");
            return Err(Problem::new(
                Kind::UpstreamError,
                "A backing service answered a write without the record or its id",
            ));
        };
        self.call(get, Some(&id), &Map::new(), &[]).await
    }

    /// The public record; an upstream value that does not read as its declared type is a
    /// 502 (logged with the field), never a silent null.
    fn public(&self, rec: &Value) -> Result<Value, Problem> {
        let out = transform::to_public(self.res, &self.ctx(), rec);
        if let Some(field) = transform::unreadable(self.res, rec, &out) {
            tracing::warn!(service = %self.res.service, resource = %self.res.name, field = %field, "an upstream value does not read as its declared type");
            return Err(Problem::new(
                Kind::UpstreamError,
                "A backing service answered a value of an unexpected type",
            ));
        }
        Ok(out)
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
            body: Some(json!({"data": self.public(&rec)?})),
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
        let rec = self.write(call, None, &record).await?;
        let data = self.public(&rec)?;
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
            UpdateStrategy::Partial => self.write(&upd.call, Some(&id), &patch).await?,
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
            body: Some(json!({"data": self.public(&rec)?})),
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
            return interpret(svc, Some(self.res), &answer).map(|p| take_record(&upd.call, p));
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
            body: Some(json!({"data": self.public(&rec)?})),
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
    async fn scan(
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
            FilterStyle::Dialect(d) => {
                params.extend(t.params.iter().cloned());
                match &d.into {
                    FilterInto::Param { name, join } if !t.texts.is_empty() => {
                        params.push((name.clone(), Value::from(t.texts.join(join))));
                    }
                    FilterInto::List(ptr) => {
                        let mut v = Value::Object(std::mem::take(&mut body));
                        put(&mut v, ptr, Value::Array(t.clauses.clone()));
                        if let Value::Object(m) = v {
                            body = m;
                        }
                    }
                    _ => {}
                }
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
            (
                SortStyle::Param {
                    param,
                    template,
                    asc,
                    desc,
                },
                Some(up),
            ) => {
                let dir = if q.sort.1 { desc } else { asc };
                let v = template.replace("{field}", up).replace("{dir}", dir);
                params.push((param.clone(), Value::from(v)));
            }
            _ => {}
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
                        let base = self.upstreams.base(&self.res.service).unwrap_or_default();
                        match follow(base, &l) {
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
                let public = self.public(r)?;
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
    /// A next link's path and query (already checked against the service's origin);
    /// `None` is the first page.
    Link(Option<String>),
}

impl Pos {
    fn to_json(&self) -> Value {
        match self {
            Pos::Offset(o) => Value::from(*o),
            Pos::Token(t) | Pos::Link(t) => t.as_deref().map(Value::from).unwrap_or(Value::Null),
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

/// The record of a payload, at the call's `record` pointer (taken, not cloned).
fn take_record(call: &Call, payload: Value) -> Value {
    match &call.record {
        Some(p) => {
            let mut payload = payload;
            payload
                .pointer_mut(p)
                .map(Value::take)
                .unwrap_or(Value::Null)
        }
        None => payload,
    }
}

/// The text between `before` and `after` in `s` (`Contacts(` … `)`), the last match.
fn cut<'a>(s: &'a str, before: &str, after: &str) -> Option<&'a str> {
    let start = if before.is_empty() {
        0
    } else {
        s.rfind(before)? + before.len()
    };
    let rest = s.get(start..)?;
    let end = if after.is_empty() {
        rest.len()
    } else {
        rest.find(after)?
    };
    rest.get(..end)
}

/// A next link, checked against the service's origin: the path and query to request, or
/// `None` when it points anywhere else (another host, scheme or port, a network-path
/// reference, a relative path).
pub fn follow(base: &str, link: &str) -> Option<String> {
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
