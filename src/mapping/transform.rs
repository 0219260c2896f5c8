//! Field codecs: upstream JSON ↔ public JSON, driven by the compiled fields.
//!
//! Pure functions of (fields, value, tenant): no I/O, so they are golden-tested and fuzzed
//! directly. Requests are validated here: every offending field is reported by pointer.

use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat, TimeZone, Utc};
use serde_json::{Map, Value};

use super::model::*;
use crate::problem::{pointer_token, FieldError};
use crate::seal::{InternalId, Sealer};

/// What a codec needs besides the value: the tenant binds every id.
pub struct Ctx<'a> {
    pub sealer: &'a Sealer,
    pub tenant: u32,
}

impl Ctx<'_> {
    pub fn seal(&self, prefix: &str, v: &Value) -> Value {
        match internal_of(v) {
            Some(id) => Value::from(self.sealer.seal_id(prefix, self.tenant, 0, &id)),
            None => Value::Null,
        }
    }

    pub fn open(&self, prefix: &str, v: &Value) -> Option<InternalId> {
        let s = v.as_str()?;
        self.sealer
            .open_id(prefix, self.tenant, s)
            .map(|(_, id)| id)
    }
}

fn internal_of(v: &Value) -> Option<InternalId> {
    match v {
        Value::Number(n) => n.as_i64().map(InternalId::Int),
        // A number sent as text (JSON:API's `"id": "101"`) is the same id as the number:
        // a user is `usr_…` alike whichever service names it.
        Value::String(s) if canonical_int(s).is_some() => canonical_int(s).map(InternalId::Int),
        Value::String(s) if !s.is_empty() => Some(InternalId::Str(s.clone())),
        _ => None,
    }
}

/// A decimal integer written canonically (no sign, no leading zero, at most 18 digits).
fn canonical_int(s: &str) -> Option<i64> {
    let ok = !s.is_empty()
        && s.len() <= 18
        && s.bytes().all(|b| b.is_ascii_digit())
        && (s == "0" || !s.starts_with('0'));
    if ok {
        s.parse().ok()
    } else {
        None
    }
}

// ---------------------------------------------------------------- time formats

pub fn millis_to_rfc3339(ms: i64) -> Option<String> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
}

fn upstream_millis(fmt: TimeFormat, v: &Value) -> Option<i64> {
    match fmt {
        TimeFormat::EpochMs => v.as_i64().or_else(|| v.as_f64().map(|f| f as i64)),
        TimeFormat::EpochS => v.as_i64().map(|s| s.saturating_mul(1000)),
        TimeFormat::AspNet => {
            let s = v.as_str()?;
            let inner = s.strip_prefix("/Date(")?.strip_suffix(")/")?;
            // ASP.NET may append a zone offset (`+0000`); the instant is the leading number.
            // (Found by fuzzing: never slice by byte offset into upstream text.)
            let end = inner
                .char_indices()
                .skip(1)
                .find(|(_, c)| matches!(c, '+' | '-'))
                .map_or(inner.len(), |(i, _)| i);
            inner.get(..end)?.parse().ok()
        }
        TimeFormat::SqlUtc => {
            let t = NaiveDateTime::parse_from_str(v.as_str()?, "%Y-%m-%d %H:%M:%S").ok()?;
            Some(t.and_utc().timestamp_millis())
        }
        TimeFormat::Rfc3339 | TimeFormat::Iso8601Offset => parse_iso8601(v.as_str()?),
    }
}

/// ISO 8601 date-times in their common shapes: `Z`, `+00:00` or `+0000`, no fraction or
/// 1–9 fraction digits, `T` or a space; a date alone is its midnight UTC.
pub fn parse_iso8601(s: &str) -> Option<i64> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp_millis());
    }
    for f in ["%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%d %H:%M:%S%.f%z"] {
        if let Ok(t) = DateTime::parse_from_str(s, f) {
            return Some(t.timestamp_millis());
        }
    }
    parse_date(s)
}

fn millis_to_upstream(fmt: TimeFormat, ms: i64) -> Value {
    match fmt {
        TimeFormat::EpochMs => Value::from(ms),
        TimeFormat::EpochS => Value::from(ms.div_euclid(1000)),
        TimeFormat::AspNet => Value::from(format!("/Date({ms})/")),
        TimeFormat::SqlUtc => Utc
            .timestamp_millis_opt(ms)
            .single()
            .map(|t| Value::from(t.format("%Y-%m-%d %H:%M:%S").to_string()))
            .unwrap_or(Value::Null),
        TimeFormat::Rfc3339 => millis_to_rfc3339(ms)
            .map(Value::from)
            .unwrap_or(Value::Null),
        TimeFormat::Iso8601Offset => Utc
            .timestamp_millis_opt(ms)
            .single()
            .map(|t| Value::from(t.format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string()))
            .unwrap_or(Value::Null),
    }
}

/// Parses a public RFC 3339 timestamp into epoch milliseconds.
pub fn parse_timestamp(s: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.timestamp_millis())
}

fn parse_date(s: &str) -> Option<i64> {
    if s.len() != 10 {
        return None;
    }
    let d = NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?;
    Some(d.and_hms_opt(0, 0, 0)?.and_utc().timestamp_millis())
}

// ---------------------------------------------------------------- upstream → public

/// Transforms one upstream record into its public form (the `id` first, then the fields).
pub fn to_public(res: &Resource, ctx: &Ctx, rec: &Value) -> Value {
    let mut out = Map::with_capacity(res.fields.len() + 1);
    let id = res.id_from.get(rec).and_then(internal_of);
    let sealed = id
        .map(|id| Value::from(ctx.sealer.seal_id(&res.prefix, ctx.tenant, res.kind, &id)))
        .unwrap_or(Value::Null);
    out.insert("id".into(), sealed);
    fields_to_public(&res.fields, ctx, rec, &mut out);
    Value::Object(out)
}

/// The first field whose upstream value is there but does not read as its declared type
/// (a timestamp that does not parse, a string where a number belongs…), by public
/// pointer; the caller answers 502 rather than publish a silent null.
pub fn unreadable(res: &Resource, rec: &Value, public: &Value) -> Option<String> {
    fn scalar(c: &Codec) -> bool {
        matches!(
            c,
            Codec::String
                | Codec::Integer { .. }
                | Codec::Number { .. }
                | Codec::Boolean
                | Codec::Decimal
                | Codec::Timestamp(_)
                | Codec::Date(_)
                | Codec::Enum { .. }
                | Codec::Id { .. }
        )
    }
    fn walk(
        fields: &[Field],
        rec: &Value,
        public: &Value,
        skip: Option<&str>,
        prefix: &str,
    ) -> Option<String> {
        for f in fields {
            if Some(f.name.as_str()) == skip {
                continue;
            }
            let out = public.get(&f.name);
            match (&f.codec, &f.from) {
                (Codec::Object { fields: subs, .. }, _) => {
                    if let Some(o) = out.filter(|v| v.is_object()) {
                        if let Some(p) = walk(subs, rec, o, None, &format!("{prefix}/{}", f.name)) {
                            return Some(p);
                        }
                    }
                }
                (c, Some(from)) if scalar(c) => {
                    let raw = from.get(rec);
                    if raw.is_some_and(|r| !r.is_null()) && out.is_none_or(Value::is_null) {
                        return Some(format!("{prefix}/{}", f.name));
                    }
                }
                _ => {}
            }
        }
        None
    }
    walk(&res.fields, rec, public, res.keep_if_present.as_deref(), "")
}

pub fn fields_to_public(fields: &[Field], ctx: &Ctx, rec: &Value, out: &mut Map<String, Value>) {
    for f in fields {
        let v = field_to_public(f, ctx, rec, out);
        out.insert(f.name.clone(), v);
    }
}

fn field_to_public(f: &Field, ctx: &Ctx, rec: &Value, done: &Map<String, Value>) -> Value {
    match &f.codec {
        Codec::Const(v) => v.clone(),
        Codec::Changes(c) => {
            let raw = f
                .from
                .as_ref()
                .and_then(|p| p.get(rec))
                .unwrap_or(&Value::Null);
            changes_to_public(c, ctx, rec, raw)
        }
        Codec::Variant(var) => {
            let key = match &var.key {
                VariantKey::Public(name) => done.get(name).cloned().unwrap_or(Value::Null),
                VariantKey::Upstream(p) => p.get(rec).cloned().unwrap_or(Value::Null),
            };
            match var.case(&key) {
                Some(case) => field_to_public(case, ctx, rec, done),
                None => Value::Null,
            }
        }
        Codec::Object {
            fields,
            null_unless,
        } => {
            if let Some(i) = null_unless {
                let key = &fields[*i];
                if key
                    .from
                    .as_ref()
                    .and_then(|p| p.get(rec))
                    .is_none_or(Value::is_null)
                {
                    return Value::Null;
                }
            }
            let mut m = Map::new();
            fields_to_public(fields, ctx, rec, &mut m);
            Value::Object(m)
        }
        Codec::Attachment(a) => attachment_to_public(a, ctx, rec),
        codec => {
            let raw = f
                .from
                .as_ref()
                .and_then(|p| p.get(rec))
                .unwrap_or(&Value::Null);
            value_to_public(codec, ctx, raw)
        }
    }
}

/// `{upstreamField: {from, to}}` → `{public_field: {from, to}}` in public values; fields the
/// public API does not have (row versions, internals) are left out.
fn changes_to_public(c: &Changes, ctx: &Ctx, rec: &Value, raw: &Value) -> Value {
    let code = c.on.get(rec).and_then(Value::as_str).unwrap_or_default();
    let table = c
        .tables
        .iter()
        .find(|(k, _)| k == code)
        .map(|(_, t)| t.as_slice())
        .unwrap_or(&[]);
    let mut out = Map::new();
    for (up, change) in raw.as_object().into_iter().flatten() {
        let Some((_, field)) = table.iter().find(|(u, _)| u == up) else {
            continue;
        };
        let conv = |v: &Value| value_to_public(&field.codec, ctx, v);
        let mut m = Map::new();
        m.insert(
            "from".into(),
            conv(change.get("from").unwrap_or(&Value::Null)),
        );
        m.insert("to".into(), conv(change.get("to").unwrap_or(&Value::Null)));
        out.insert(field.name.clone(), Value::Object(m));
    }
    Value::Object(out)
}

fn attachment_to_public(a: &Attachment, ctx: &Ctx, rec: &Value) -> Value {
    match &a.style {
        AttachStyle::TypeAndId { type_from, id_from } => {
            let code = type_from.get(rec).unwrap_or(&Value::Null);
            let id = id_from.get(rec).unwrap_or(&Value::Null);
            match a.kinds.iter().find(|k| k.code.as_ref() == Some(code)) {
                Some(k) if !id.is_null() => {
                    serde_json::json!({"type": k.name, "id": ctx.seal(&k.prefix, id)})
                }
                _ => Value::Null,
            }
        }
        AttachStyle::Associations => {
            for k in &a.kinds {
                let first = k
                    .from
                    .as_ref()
                    .and_then(|p| p.get(rec))
                    .and_then(Value::as_array)
                    .and_then(|l| l.first());
                if let Some(id) = first {
                    return serde_json::json!({"type": k.name, "id": ctx.seal(&k.prefix, id)});
                }
            }
            Value::Null
        }
    }
}

pub fn value_to_public(codec: &Codec, ctx: &Ctx, raw: &Value) -> Value {
    if raw.is_null() {
        return Value::Null;
    }
    match codec {
        Codec::String => match raw {
            Value::String(_) => raw.clone(),
            Value::Number(n) => Value::from(n.to_string()),
            _ => Value::Null,
        },
        Codec::StringList => match raw {
            Value::Array(a) => Value::Array(a.iter().filter(|v| v.is_string()).cloned().collect()),
            _ => Value::Array(vec![]),
        },
        Codec::Integer { scale } => raw
            .as_f64()
            .map(|n| Value::from((n * scale).round() as i64))
            .unwrap_or(Value::Null),
        Codec::Number { scale } => raw
            .as_f64()
            .and_then(|n| serde_json::Number::from_f64(round6(n * scale)))
            .map(Value::Number)
            .unwrap_or(Value::Null),
        Codec::Boolean => raw.as_bool().map(Value::from).unwrap_or(Value::Null),
        Codec::Decimal => match raw {
            Value::Number(n) => Value::from(format!("{:.2}", n.as_f64().unwrap_or(0.0))),
            Value::String(s) => Value::from(s.clone()),
            _ => Value::Null,
        },
        Codec::Timestamp(fmt) => upstream_millis(*fmt, raw)
            .and_then(millis_to_rfc3339)
            .map(Value::from)
            .unwrap_or(Value::Null),
        Codec::Date(fmt) => upstream_millis(*fmt, raw)
            .and_then(|ms| Utc.timestamp_millis_opt(ms).single())
            .map(|t| Value::from(t.format("%Y-%m-%d").to_string()))
            .unwrap_or(Value::Null),
        Codec::Enum { to_up } => to_up
            .iter()
            .find(|(_, up)| *up == raw)
            .map(|(k, _)| Value::from(k.as_str()))
            .unwrap_or(Value::Null),
        Codec::Id { prefix } => ctx.seal(prefix, raw),
        Codec::IdList { prefix } => match raw {
            Value::Array(a) => Value::Array(a.iter().map(|v| ctx.seal(prefix, v)).collect()),
            // A single upstream reference (audit's `entityId`) is a list of one.
            Value::Number(_) | Value::String(_) => Value::Array(vec![ctx.seal(prefix, raw)]),
            _ => Value::Array(vec![]),
        },
        Codec::List { fields } => match raw {
            Value::Array(a) => Value::Array(
                a.iter()
                    .map(|item| {
                        let mut m = Map::new();
                        fields_to_public(fields, ctx, item, &mut m);
                        Value::Object(m)
                    })
                    .collect(),
            ),
            _ => Value::Array(vec![]),
        },
        Codec::Const(v) => v.clone(),
        Codec::Json => raw.clone(),
        Codec::Changes(_) => Value::Null,
        Codec::Object { .. } | Codec::Attachment(_) | Codec::Variant(_) => Value::Null,
    }
}

fn round6(f: f64) -> f64 {
    (f * 1e6).round() / 1e6
}

// ---------------------------------------------------------------- public → upstream

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    Create,
    Patch,
    /// Action inputs: every field writable, required ones enforced.
    Input,
}

fn type_name(codec: &Codec) -> &'static str {
    match codec {
        Codec::String => "a string",
        Codec::StringList => "a list of strings",
        Codec::Integer { .. } => "an integer",
        Codec::Number { .. } => "a number",
        Codec::Boolean => "a boolean",
        Codec::Decimal => "a decimal string such as \"1234.50\"",
        Codec::Timestamp(_) => "an RFC 3339 timestamp such as \"2026-11-28T09:30:00.000Z\"",
        Codec::Date(_) => "a date such as \"2026-11-28\"",
        Codec::Enum { .. } => "one of the listed values",
        Codec::Id { .. } => "an id",
        Codec::IdList { .. } => "a list of ids",
        Codec::Object { .. } => "an object",
        Codec::List { .. } => "a list",
        Codec::Attachment(_) => "an object {\"type\", \"id\"}",
        Codec::Variant(_) => "an object matching the record's type",
        Codec::Const(_) => "the fixed value",
        Codec::Json => "JSON",
        Codec::Changes(_) => "changes",
    }
}

/// Converts one public scalar to its upstream form; `Err` carries the detail message.
pub fn value_to_upstream(codec: &Codec, ctx: &Ctx, v: &Value) -> Result<Value, String> {
    let bad = || Err(format!("must be {}", type_name(codec)));
    match codec {
        Codec::String => match v {
            Value::String(s) if s.len() <= 65_536 => Ok(v.clone()),
            Value::String(_) => Err("is too long (at most 65536 bytes)".into()),
            _ => bad(),
        },
        Codec::StringList => match v {
            Value::Array(a) if a.iter().all(Value::is_string) && a.len() <= 1000 => Ok(v.clone()),
            _ => bad(),
        },
        Codec::Integer { scale } => {
            // JSON Schema counts 8.0 as an integer too.
            let n = v.as_i64().or_else(|| {
                v.as_f64()
                    .filter(|f| f.fract() == 0.0 && f.abs() <= 9.0e15)
                    .map(|f| f as i64)
            });
            match n {
                Some(n) => Ok(Value::from((n as f64 / scale).round() as i64)),
                None => bad(),
            }
        }
        Codec::Number { scale } => match v.as_f64() {
            Some(n) => serde_json::Number::from_f64(round6(n / scale))
                .map(Value::Number)
                .ok_or_else(|| "must be a finite number".into()),
            None => bad(),
        },
        Codec::Boolean => v.as_bool().map(Value::from).ok_or(()).or_else(|_| bad()),
        Codec::Decimal => match v.as_str() {
            Some(s) if valid_decimal(s) => s
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map(Value::Number)
                .ok_or_else(|| "is out of range".into()),
            _ => bad(),
        },
        Codec::Timestamp(fmt) => match v.as_str().and_then(parse_timestamp) {
            Some(ms) => Ok(millis_to_upstream(*fmt, ms)),
            None => bad(),
        },
        Codec::Date(fmt) => match v.as_str().and_then(parse_date) {
            Some(ms) => Ok(millis_to_upstream(*fmt, ms)),
            None => bad(),
        },
        Codec::Enum { to_up } => match v.as_str().and_then(|s| to_up.get(s)) {
            Some(up) => Ok(up.clone()),
            None => Err(format!(
                "must be one of: {}",
                to_up.keys().cloned().collect::<Vec<_>>().join(", ")
            )),
        },
        Codec::Id { prefix } => match ctx.open(prefix, v) {
            Some(id) => Ok(id.to_json()),
            None => Err(format!("is not a valid `{prefix}_` id")),
        },
        Codec::IdList { prefix } => match v {
            Value::Array(a) if a.len() <= 1000 => a
                .iter()
                .map(|x| ctx.open(prefix, x).map(|id| id.to_json()))
                .collect::<Option<Vec<_>>>()
                .map(Value::Array)
                .ok_or_else(|| format!("must hold only valid `{prefix}_` ids")),
            _ => bad(),
        },
        Codec::Const(c) if c == v => Ok(v.clone()),
        Codec::Json => Ok(v.clone()),
        Codec::Changes(_) => bad(),
        Codec::Const(_)
        | Codec::Object { .. }
        | Codec::List { .. }
        | Codec::Attachment(_)
        | Codec::Variant(_) => bad(),
    }
}

fn valid_decimal(s: &str) -> bool {
    let s = s.strip_prefix('-').unwrap_or(s);
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    !int.is_empty()
        && int.len() <= 15
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.len() <= 2
        && frac.bytes().all(|b| b.is_ascii_digit())
        && (!s.contains('.') || !frac.is_empty())
}

/// Validates a public request body against `fields` and builds the upstream record.
/// Every offending member is reported; nothing is half-applied.
pub fn to_upstream(
    fields: &[Field],
    ctx: &Ctx,
    body: &Map<String, Value>,
    mode: WriteMode,
    prefix: &str,
    errors: &mut Vec<FieldError>,
    out: &mut Map<String, Value>,
) {
    for key in body.keys() {
        if key != "id" && !fields.iter().any(|f| &f.name == key) {
            errors.push(FieldError::new(
                format!("{prefix}/{}", pointer_token(key)),
                "is not a known field",
            ));
        }
    }
    if body.contains_key("id") && mode != WriteMode::Input {
        errors.push(FieldError::new(format!("{prefix}/id"), "is read-only"));
    }
    for f in fields {
        let ptr = format!("{prefix}/{}", f.name);
        let v = body.get(&f.name);
        match (v, f.access, mode) {
            (Some(_), Access::ReadOnly, _) => {
                errors.push(FieldError::new(ptr, "is read-only"));
                continue;
            }
            (Some(_), Access::CreateOnly, WriteMode::Patch) => {
                errors.push(FieldError::new(ptr, "cannot be changed after creation"));
                continue;
            }
            (None, _, WriteMode::Create | WriteMode::Input) => {
                if let Some(d) = &f.default {
                    if let Err(e) = write_field(f, ctx, d, &ptr, errors, out) {
                        errors.push(FieldError::new(ptr, e));
                    }
                } else if f.required {
                    errors.push(FieldError::new(ptr, "is required"));
                }
                continue;
            }
            (None, _, WriteMode::Patch) => continue,
            _ => {}
        }
        let Some(v) = v else { continue };
        if v.is_null() {
            if !f.nullable || f.required {
                errors.push(FieldError::new(ptr, "cannot be null"));
            } else {
                write_null(f, out);
            }
            continue;
        }
        let f = match &f.codec {
            Codec::Variant(var) => {
                let key = match &var.key {
                    VariantKey::Public(name) => {
                        let public = body.get(name).cloned().unwrap_or(Value::Null);
                        fields
                            .iter()
                            .find(|x| &x.name == name)
                            .and_then(|kf| value_to_upstream(&kf.codec, ctx, &public).ok())
                            .map(|_| public)
                            .unwrap_or(Value::Null)
                    }
                    VariantKey::Upstream(_) => Value::Null,
                };
                match var.case(&key) {
                    Some(case) => case,
                    None => {
                        errors.push(FieldError::new(ptr, "cannot be set for this type"));
                        continue;
                    }
                }
            }
            _ => f,
        };
        if let Err(e) = write_field(f, ctx, v, &ptr, errors, out) {
            errors.push(FieldError::new(ptr, e));
        }
    }
}

fn write_null(f: &Field, out: &mut Map<String, Value>) {
    match &f.codec {
        // An object that is null "unless its key sub-field is set" is cleared through that
        // sub-field alone (a deal without an amount keeps its currency upstream).
        Codec::Object {
            fields,
            null_unless: Some(i),
        } => write_null(&fields[*i], out),
        Codec::Object { fields, .. } => {
            for sub in fields {
                write_null(sub, out);
            }
        }
        Codec::Attachment(a) => match &a.style {
            AttachStyle::TypeAndId { type_from, id_from } => {
                type_from.set(out, Value::Null);
                id_from.set(out, Value::Null);
            }
            AttachStyle::Associations => {
                for k in &a.kinds {
                    if let Some(p) = &k.from {
                        p.set(out, Value::Array(vec![]));
                    }
                }
            }
        },
        _ => {
            let to = f.write.as_ref().and_then(|w| w.to.as_ref());
            if let Some(p) = to.or(f.from.as_ref()) {
                p.set(out, Value::Null);
            }
        }
    }
}

fn write_field(
    f: &Field,
    ctx: &Ctx,
    v: &Value,
    ptr: &str,
    errors: &mut Vec<FieldError>,
    out: &mut Map<String, Value>,
) -> Result<(), String> {
    match &f.codec {
        Codec::Object { fields, .. } => {
            let Some(obj) = v.as_object() else {
                return Err("must be an object".into());
            };
            // Sub-fields of an object are written as a whole: absent members are required.
            to_upstream(fields, ctx, obj, WriteMode::Input, ptr, errors, out);
            Ok(())
        }
        Codec::Attachment(a) => {
            let (Some(kind), Some(id)) = (v.get("type").and_then(Value::as_str), v.get("id"))
            else {
                return Err("must be an object {\"type\", \"id\"}".into());
            };
            if v.as_object().is_some_and(|o| o.len() != 2) {
                return Err("must have exactly the members `type` and `id`".into());
            }
            let Some(k) = a.kinds.iter().find(|k| k.name == kind) else {
                errors.push(FieldError::new(
                    format!("{ptr}/type"),
                    format!(
                        "must be one of: {}",
                        a.kinds
                            .iter()
                            .map(|k| k.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
                return Ok(());
            };
            let Some(internal) = ctx.open(&k.prefix, id) else {
                errors.push(FieldError::new(
                    format!("{ptr}/id"),
                    format!("is not a valid `{}_` id", k.prefix),
                ));
                return Ok(());
            };
            match &a.style {
                AttachStyle::TypeAndId { type_from, id_from } => {
                    type_from.set(out, k.code.clone().unwrap_or(Value::Null));
                    id_from.set(out, internal.to_json());
                }
                AttachStyle::Associations => {
                    for other in &a.kinds {
                        if let Some(p) = &other.from {
                            let list = if other.name == k.name {
                                vec![internal.to_json()]
                            } else {
                                vec![]
                            };
                            p.set(out, Value::Array(list));
                        }
                    }
                }
            }
            Ok(())
        }
        codec => {
            let up = value_to_upstream(codec, ctx, v)?;
            match &f.write {
                Some(w) => {
                    let up = match &w.template {
                        Some(t) => fill_value(t, &up),
                        None => up,
                    };
                    if let Some(p) = w.to.as_ref().or(f.from.as_ref()) {
                        p.set(out, up);
                    }
                }
                None => {
                    if let Some(p) = &f.from {
                        p.set(out, up);
                    }
                }
            }
            Ok(())
        }
    }
}

/// A write template around one value: `$value` is the upstream value, `$text` its text.
fn fill_value(t: &Value, up: &Value) -> Value {
    match t {
        Value::String(s) if s == "$value" => up.clone(),
        Value::String(s) if s == "$text" => match up {
            Value::String(_) | Value::Null => up.clone(),
            other => Value::from(other.to_string()),
        },
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), fill_value(v, up)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(|v| fill_value(v, up)).collect()),
        other => other.clone(),
    }
}

/// Deep-merges `patch` into `base` (objects merge, everything else replaces).
pub fn merge(base: &mut Value, patch: Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                match b.get_mut(&k) {
                    Some(slot) if slot.is_object() && v.is_object() => merge(slot, v),
                    _ => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, p) => *b = p,
    }
}

/// Fills a body template: `$id` → the internal id, `$record` as a key → the record merged in,
/// `$record` as a value → the record itself.
pub fn fill_template(
    t: &Value,
    id: Option<&InternalId>,
    record: &Map<String, Value>,
    user: u64,
) -> Value {
    match t {
        Value::String(s) if s == "$id" => id.map(InternalId::to_json).unwrap_or(Value::Null),
        Value::String(s) if s == "$user" => Value::from(user),
        Value::String(s) if s == "$record" => Value::Object(record.clone()),
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, v) in m.iter().filter(|(k, _)| *k != "$record") {
                out.insert(k.clone(), fill_template(v, id, record, user));
            }
            let mut out = Value::Object(out);
            if m.contains_key("$record") {
                merge(&mut out, Value::Object(record.clone()));
            }
            out
        }
        Value::Array(a) => Value::Array(
            a.iter()
                .map(|v| fill_template(v, id, record, user))
                .collect(),
        ),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_formats_round_trip() {
        for fmt in [TimeFormat::EpochMs, TimeFormat::AspNet, TimeFormat::SqlUtc] {
            let up = millis_to_upstream(fmt, 1_767_225_600_000);
            assert_eq!(
                upstream_millis(fmt, &up),
                Some(1_767_225_600_000),
                "{fmt:?}"
            );
        }
        assert_eq!(
            millis_to_rfc3339(1_767_225_600_000).as_deref(),
            Some("2026-01-01T00:00:00.000Z")
        );
        assert_eq!(
            upstream_millis(
                TimeFormat::AspNet,
                &Value::from("/Date(1767225600000+0000)/")
            ),
            Some(1_767_225_600_000)
        );
        assert_eq!(
            upstream_millis(TimeFormat::AspNet, &Value::from("/Date(-5000)/")),
            Some(-5000)
        );
        assert_eq!(
            upstream_millis(TimeFormat::EpochS, &Value::from(10)),
            Some(10_000)
        );
    }

    #[test]
    fn decimals_are_strict() {
        assert!(valid_decimal("1234.50"));
        assert!(valid_decimal("-3"));
        assert!(!valid_decimal("1.234"));
        assert!(!valid_decimal("1."));
        assert!(!valid_decimal("1e5"));
        assert!(!valid_decimal(""));
    }

    #[test]
    fn templates_fill_id_and_record() {
        let t =
            serde_json::json!({"taskId": "$id", "$record": true, "engagement": {"type": "NOTE"}});
        let mut rec = Map::new();
        rec.insert("engagement".into(), serde_json::json!({"ownerId": 5}));
        let out = fill_template(&t, Some(&InternalId::Int(9)), &rec, 101);
        assert_eq!(
            out,
            serde_json::json!({"taskId": 9, "engagement": {"type": "NOTE", "ownerId": 5}})
        );
    }
}

#[cfg(test)]
mod fuzz_regressions {
    use super::*;

    /// `fuzz/artifacts/request_transform/crash-15872518…`: a multi-byte character right
    /// after `/Date(` (and an empty `/Date()/`) panicked on a byte slice.
    #[test]
    fn aspnet_dates_with_odd_text_do_not_panic() {
        for s in [
            "/Date(\u{3df}3589U80)/",
            "/Date()/",
            "/Date(ϟ)/",
            "/Date(-5)/",
            "/Date(12+0000)/",
        ] {
            let _ = upstream_millis(TimeFormat::AspNet, &Value::from(s));
        }
        assert_eq!(
            upstream_millis(
                TimeFormat::AspNet,
                &Value::from("/Date(1735812000000+0000)/")
            ),
            Some(1_735_812_000_000)
        );
        assert_eq!(
            upstream_millis(TimeFormat::AspNet, &Value::from("/Date(-5)/")),
            Some(-5)
        );
    }
}
