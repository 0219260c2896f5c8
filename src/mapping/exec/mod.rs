//! Executes one public operation of a resource against its legacy service: the plan's
//! calls, read–merge–write, actions, and searches with cursors over every paging style.

use serde_json::{json, Map, Value};

use super::dialect::{self, error_code, interpret, Prepared, Trust, Vars};
use super::model::*;
use super::search::{self, Query};
use super::tpl::Hole;
use super::transform::{self, Ctx, Record, WriteMode};
use super::view::Node;
use crate::problem::{FieldError, Kind, Problem};
use crate::seal::{InternalId, Sealer};
use crate::upstream::{Answer, Upstreams};

mod merged;
mod paged;

pub use paged::{follow, Pos};

/// Cursors expire after a day (public contract §5).
pub const CURSOR_MAX_AGE_S: i64 = 86_400;

/// What a successful operation answers.
pub struct Done {
    pub status: u16,
    pub body: Option<Body>,
    pub location: Option<String>,
}

/// An answer's JSON document: a value, or already written (a single record, see
/// [`Exec::data`]).
pub enum Body {
    Value(Value),
    Json(Vec<u8>),
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
    pub(super) fn ctx(&self) -> Ctx<'_> {
        Ctx {
            sealer: self.sealer,
            tenant: self.trust.tenant,
        }
    }

    pub(super) fn service(&self) -> Result<&Service, Problem> {
        self.plan
            .services
            .get(&self.res.service)
            .ok_or_else(|| Problem::new(Kind::Internal, "The resource's service is not configured"))
    }

    pub(super) fn open(&self, public_id: &str) -> Result<InternalId, Problem> {
        self.sealer
            .open_id(&self.res.prefix, self.trust.tenant, public_id)
            .filter(|(kind, _)| *kind == self.res.kind)
            .map(|(_, id)| self.as_declared(id))
            .ok_or_else(Problem::not_found)
    }

    /// A string-keyed resource whose key looks like a number (`"42"`) was sealed as the
    /// number: its templates get it back as text.
    pub(super) fn as_declared(&self, id: InternalId) -> InternalId {
        match (self.res.id_kind, id) {
            (IdKind::Str, InternalId::Int(n)) => InternalId::Str(n.to_string()),
            (_, id) => id,
        }
    }

    /// The same execution on one source of a multi-source resource.
    pub(super) fn on<'b>(&'b self, res: &'b Resource) -> Exec<'b> {
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
    pub(super) fn source_of(&self, public_id: &str) -> Result<&Resource, Problem> {
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
    pub(super) async fn call(
        &self,
        call: &Call,
        id: Option<&InternalId>,
        record: &Map<String, Value>,
        extra_query: &[(String, Value)],
    ) -> Result<Value, Problem> {
        let safe = call.method == Method::Get;
        let answer = self
            .raw_call(call, id, record, extra_query, None, safe, &[])
            .await?;
        let payload = interpret(self.service()?, Some(self.res), &answer)?;
        Ok(take_record(call, payload))
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) async fn raw_call(
        &self,
        call: &Call,
        id: Option<&InternalId>,
        record: &Map<String, Value>,
        extra_query: &[(String, Value)],
        body_override: Option<Value>,
        safe: bool,
        headers: &[(http::HeaderName, http::HeaderValue)],
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
            headers,
            body.as_ref(),
        )?;
        prepared
            .send(self.upstreams, &self.res.service, safe, self.trust)
            .await
    }

    /// A write answered without the record (204, or only an id): the id it names, from the
    /// call's `id_from` or the record's own id member.
    pub(super) fn written_id(
        &self,
        call: &Call,
        answer: &Answer,
        payload: &Value,
    ) -> Option<InternalId> {
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
    pub(super) fn has_record(&self, payload: &Value) -> bool {
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
    pub(super) async fn write(
        &self,
        call: &Call,
        id: Option<&InternalId>,
        record: &Map<String, Value>,
    ) -> Result<Value, Problem> {
        let answer = self
            .raw_call(call, id, record, &[], None, false, &[])
            .await?;
        self.finish_write(call, id, answer).await
    }

    /// A write's answer: the record it carries, or the record read back when it does not.
    pub(super) async fn finish_write(
        &self,
        call: &Call,
        id: Option<&InternalId>,
        answer: Answer,
    ) -> Result<Value, Problem> {
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
    pub(super) fn public<R: Record + ?Sized>(&self, rec: &R) -> Result<Value, Problem> {
        let (out, unread) = transform::to_public_checked(self.res, &self.ctx(), rec);
        match unread {
            Some(field) => Err(self.unreadable(&field)),
            None => Ok(out),
        }
    }

    /// `{"data": <the public record>}`, written straight to JSON where the resource allows
    /// it (`transform::write_public`), else built as a value; unreadable values as in
    /// [`Exec::public`].
    pub(super) fn data<R: Record + ?Sized>(&self, rec: &R) -> Result<Body, Problem> {
        let mut out = Vec::with_capacity(512);
        out.extend_from_slice(b"{\"data\":");
        match transform::write_public(self.res, &self.ctx(), rec, &mut out) {
            Some(None) => {
                out.push(b'}');
                Ok(Body::Json(out))
            }
            Some(Some(field)) => Err(self.unreadable(&field)),
            None => Ok(Body::Value(envelope(self.public(rec)?, None))),
        }
    }

    /// [`Exec::data`] of a read's answer, as [`Exec::call`] reads it — through a borrowed
    /// view of a plain success (`dialect::success_view`): no `Value` is built for the
    /// record, only for the fields the mapping reads.
    fn read_data(&self, call: &Call, answer: &Answer) -> Result<Body, Problem> {
        let svc = self.service()?;
        let Some(root) = dialect::success_view(svc, answer) else {
            let payload = interpret(svc, Some(self.res), answer)?;
            return self.data(&take_record(call, payload));
        };
        // A missing envelope member is a null record, as `interpret` and `take_record` take
        // it; the empty pointer is the whole value.
        let rec = root
            .pointer(svc.result.as_deref().unwrap_or(""))
            .and_then(|payload| payload.pointer(call.record.as_deref().unwrap_or("")));
        self.data(rec.unwrap_or(&Node::Null))
    }

    fn unreadable(&self, field: &str) -> Problem {
        tracing::warn!(service = %self.res.service, resource = %self.res.name, field = %field, "an upstream value does not read as its declared type");
        Problem::new(
            Kind::UpstreamError,
            "A backing service answered a value of an unexpected type",
        )
    }

    pub(super) fn object<'b>(
        &self,
        body: Option<&'b Value>,
    ) -> Result<&'b Map<String, Value>, Problem> {
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
        let safe = call.method == Method::Get;
        let answer = self
            .raw_call(call, Some(&id), &Map::new(), &[], None, safe, &[])
            .await?;
        Ok(Done {
            status: 200,
            body: Some(self.read_data(call, &answer)?),
            location: None,
        })
    }

    /// The upstream record of a validated public body, or every field error at once.
    fn upstream_record(
        &self,
        obj: &Map<String, Value>,
        mode: WriteMode,
    ) -> Result<Map<String, Value>, Problem> {
        let mut errors = Vec::new();
        let mut record = Map::new();
        transform::to_upstream(
            &self.res.fields,
            &self.ctx(),
            obj,
            mode,
            "",
            &mut errors,
            &mut record,
        );
        if errors.is_empty() {
            Ok(record)
        } else {
            Err(Problem::invalid(errors))
        }
    }

    pub async fn create(&self, body: Option<&Value>) -> Result<Done, Problem> {
        if let Some(src) = self.res.sources.iter().find(|s| s.create.is_some()) {
            return Box::pin(self.on(src).create(body)).await;
        }
        let call = self.res.create.as_ref().ok_or_else(not_allowed)?;
        let obj = self.object(body)?;
        let record = self.upstream_record(obj, WriteMode::Create)?;
        let rec = self.write(call, None, &record).await?;
        let data = self.public(&rec)?;
        let location = data
            .get("id")
            .and_then(Value::as_str)
            .map(|id| format!("/v1/{}/{id}", self.res.name));
        Ok(Done {
            status: 201,
            body: Some(Body::Value(envelope(data, None))),
            location,
        })
    }

    pub async fn update(&self, public_id: &str, body: Option<&Value>) -> Result<Done, Problem> {
        let upd = self.res.update.as_ref().ok_or_else(not_allowed)?;
        let id = self.open(public_id)?;
        let obj = self.object(body)?;
        let patch = self.upstream_record(obj, WriteMode::Patch)?;
        let rec = match (&upd.strategy, &upd.version) {
            (UpdateStrategy::Partial, None) => self.write(&upd.call, Some(&id), &patch).await?,
            (strategy, Some(v)) => self.versioned_write(upd, *strategy, v, &id, patch).await?,
            (UpdateStrategy::Replace, None) => return Err(not_allowed()),
        };
        Ok(Done {
            status: 200,
            body: Some(self.data(&rec)?),
            location: None,
        })
    }

    /// An update with optimistic concurrency: read the record and its version (an
    /// unknown id is the read's 404: nothing is written), send the patch (`partial`) or
    /// the merged record (`replace`) with the version; on a "stale" answer read and try
    /// once more, then report 409.
    pub(super) async fn versioned_write(
        &self,
        upd: &Update,
        strategy: UpdateStrategy,
        v: &Version,
        id: &InternalId,
        patch: Map<String, Value>,
    ) -> Result<Value, Problem> {
        let get = self.res.get.as_ref().ok_or_else(not_allowed)?;
        let svc = self.service()?;
        for _attempt in 0..2 {
            let safe = get.method == Method::Get;
            let read = self
                .raw_call(get, Some(id), &Map::new(), &[], None, safe, &[])
                .await?;
            let current = take_record(get, interpret(svc, Some(self.res), &read)?);
            let version = match &v.from {
                VersionFrom::Pointer(p) => current.pointer(p).cloned(),
                VersionFrom::Header(h) => read
                    .headers
                    .get(h)
                    .and_then(|x| x.to_str().ok())
                    .map(Value::from),
            };
            let Some(version) = version else {
                tracing::warn!(service = %self.res.service, "a read for a versioned update carried no version");
                return Err(Problem::new(
                    Kind::UpstreamError,
                    "A backing service answered without a record version",
                ));
            };
            let mut record = match strategy {
                UpdateStrategy::Partial => patch.clone(),
                UpdateStrategy::Replace => {
                    let mut merged = current;
                    transform::merge(&mut merged, Value::Object(patch.clone()));
                    match merged {
                        Value::Object(full) => full,
                        _ => {
                            return Err(Problem::new(
                                Kind::UpstreamError,
                                "A backing service answered with an unexpected shape",
                            ))
                        }
                    }
                }
            };
            let mut headers = Vec::new();
            match &v.to {
                VersionTo::Field(f) => f.set(&mut record, version),
                VersionTo::Header {
                    name,
                    before,
                    after,
                } => {
                    let text = match &version {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    let value = dialect::header_value(&format!("{before}{text}{after}"))?;
                    headers.push((name.clone(), value));
                }
            }
            // Without a body template the record is the body.
            let body = upd
                .call
                .body
                .is_none()
                .then(|| Value::Object(record.clone()));
            let answer = self
                .raw_call(&upd.call, Some(id), &record, &[], body, false, &headers)
                .await?;
            // A declared code is read as the service reports failures (also inside a 200).
            let stale = v.stale_status.is_none_or(|s| s == answer.status)
                && match &v.stale_code {
                    Some(c) => error_code(svc, &answer).as_ref() == Some(c),
                    None => v.stale_status.is_some(),
                };
            if stale {
                continue;
            }
            return self.finish_write(&upd.call, Some(id), answer).await;
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
            body: Some(self.data(&rec)?),
            location: None,
        })
    }
}

pub(super) fn page(data: Vec<Value>, cursor: Option<String>, total: Option<u64>) -> Done {
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
        body: Some(Body::Value(envelope(
            Value::Array(data),
            Some(Value::Object(meta)),
        ))),
        location: None,
    }
}

/// `{"data": …, "meta": …}` around values already built. (Not `json!`, which passes every
/// value through `serde_json::to_value`: a deep copy of the records, ~8k instructions of
/// a GET.)
fn envelope(data: Value, meta: Option<Value>) -> Value {
    let mut m = Map::with_capacity(2);
    m.insert("data".into(), data);
    if let Some(meta) = meta {
        m.insert("meta".into(), meta);
    }
    Value::Object(m)
}

pub(super) fn not_allowed() -> Problem {
    Problem::new(
        Kind::MethodNotAllowed,
        "This operation is not available on this resource",
    )
}

/// The record of a payload, at the call's `record` pointer (taken, not cloned).
pub(super) fn take_record(call: &Call, payload: Value) -> Value {
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
