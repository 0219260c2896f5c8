//! Public → upstream: validates a request body against the compiled fields and builds the
//! upstream record (the read side is `transform`).

use serde_json::{Map, Value};

use super::model::*;
use super::time::{millis_to_upstream, parse_date, parse_timestamp};
use super::transform::{round6, Ctx};
use crate::problem::{pointer_token, FieldError};
use crate::seal::InternalId;

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
///
/// Two public fields may write the same upstream field (an activity's `summary` and an
/// email's `details.subject`): either one then satisfies the other's `required`, and when
/// both are given they must agree, or each is reported naming the other.
pub fn to_upstream(
    fields: &[Field],
    ctx: &Ctx,
    body: &Map<String, Value>,
    mode: WriteMode,
    prefix: &str,
    errors: &mut Vec<FieldError>,
    out: &mut Map<String, Value>,
) {
    let mut w = Writer {
        ctx,
        errors,
        out,
        claims: Vec::with_capacity(fields.len()),
        claim_ptrs: String::with_capacity(fields.len() * 16),
    };
    w.fields(fields, body, mode, prefix);
}

/// One write in progress: where each upstream field written so far came from.
struct Writer<'a, 'c> {
    ctx: &'a Ctx<'c>,
    errors: &'a mut Vec<FieldError>,
    out: &'a mut Map<String, Value>,
    /// (upstream path, public pointer as a range of `claim_ptrs`) of the fields written as
    /// scalars; the value is the one in `out`.
    claims: Vec<(&'a UpPath, std::ops::Range<usize>)>,
    /// The claims' public pointers, one after the other (one buffer, not one per field).
    claim_ptrs: String,
}

impl<'a> Writer<'a, '_> {
    fn fields(
        &mut self,
        fields: &'a [Field],
        body: &Map<String, Value>,
        mode: WriteMode,
        prefix: &str,
    ) {
        for key in body.keys() {
            if key != "id" && !fields.iter().any(|f| &f.name == key) {
                self.errors.push(FieldError::new(
                    format!("{prefix}/{}", pointer_token(key)),
                    "is not a known field",
                ));
            }
        }
        if body.contains_key("id") && mode != WriteMode::Input {
            self.errors
                .push(FieldError::new(format!("{prefix}/id"), "is read-only"));
        }
        for f in fields {
            let v = body.get(&f.name);
            // An absent field with nothing to write or report costs nothing (no pointer).
            let nothing_to_do = |w: &Self| {
                mode == WriteMode::Patch || (f.default.is_none() && (!f.required || w.claimed(f)))
            };
            if v.is_none() && nothing_to_do(self) {
                continue;
            }
            let ptr = format!("{prefix}/{}", f.name);
            match (v, f.access, mode) {
                (Some(_), Access::ReadOnly, _) => {
                    self.errors.push(FieldError::new(ptr, "is read-only"));
                    continue;
                }
                (Some(_), Access::CreateOnly, WriteMode::Patch) => {
                    self.errors
                        .push(FieldError::new(ptr, "cannot be changed after creation"));
                    continue;
                }
                (None, _, WriteMode::Create | WriteMode::Input) => {
                    if let Some(d) = &f.default {
                        if let Err(e) = self.field(f, d, &ptr) {
                            self.errors.push(FieldError::new(ptr, e));
                        }
                    } else if f.required && !self.claimed(f) {
                        self.errors.push(FieldError::new(ptr, "is required"));
                    }
                    continue;
                }
                (None, _, WriteMode::Patch) => continue,
                _ => {}
            }
            let Some(v) = v else { continue };
            if v.is_null() {
                if !f.nullable || f.required {
                    self.errors.push(FieldError::new(ptr, "cannot be null"));
                } else {
                    self.null(f, &ptr);
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
                                .and_then(|kf| value_to_upstream(&kf.codec, self.ctx, &public).ok())
                                .map(|_| public)
                                .unwrap_or(Value::Null)
                        }
                        VariantKey::Upstream(_) => Value::Null,
                    };
                    match var.case(&key) {
                        Some(case) => case,
                        None => {
                            self.errors
                                .push(FieldError::new(ptr, "cannot be set for this type"));
                            continue;
                        }
                    }
                }
                _ => f,
            };
            if let Err(e) = self.field(f, v, &ptr) {
                self.errors.push(FieldError::new(ptr, e));
            }
        }
    }

    /// Whether another public field already wrote the upstream field `f` writes.
    fn claimed(&self, f: &Field) -> bool {
        scalar_path(f).is_some_and(|p| self.claims.iter().any(|(q, _)| q.0 == p.0))
    }

    /// Writes a scalar at `path` for the public pointer `ptr`, unless another field wrote a
    /// different value there.
    fn put(&mut self, path: &'a UpPath, ptr: &str, value: Value) {
        if let Some((_, at)) = self.claims.iter().find(|(q, _)| q.0 == path.0) {
            if written(self.out, path) != Some(&value) {
                let other = self.claim_ptrs[at.clone()].to_string();
                self.errors.push(FieldError::new(
                    ptr.to_string(),
                    format!("must agree with `{other}`: both set the same field"),
                ));
                self.errors.push(FieldError::new(
                    other,
                    format!("must agree with `{ptr}`: both set the same field"),
                ));
            }
            return;
        }
        path.set(self.out, value);
        let start = self.claim_ptrs.len();
        self.claim_ptrs.push_str(ptr);
        self.claims.push((path, start..self.claim_ptrs.len()));
    }

    fn null(&mut self, f: &'a Field, ptr: &str) {
        match &f.codec {
            // An object that is null "unless its key sub-field is set" is cleared through
            // that sub-field alone (a deal without an amount keeps its currency upstream).
            Codec::Object {
                fields,
                null_unless: Some(i),
            } => self.null(&fields[*i], ptr),
            Codec::Object { fields, .. } => {
                for sub in fields {
                    self.null(sub, ptr);
                }
            }
            Codec::Attachment(a) => match &a.style {
                AttachStyle::TypeAndId { type_from, id_from } => {
                    type_from.set(self.out, Value::Null);
                    id_from.set(self.out, Value::Null);
                }
                AttachStyle::Associations => {
                    for k in &a.kinds {
                        if let Some(p) = &k.from {
                            p.set(self.out, Value::Array(vec![]));
                        }
                    }
                }
            },
            _ => {
                if let Some(p) = scalar_path(f) {
                    self.put(p, ptr, Value::Null);
                }
            }
        }
    }

    fn field(&mut self, f: &'a Field, v: &Value, ptr: &str) -> Result<(), String> {
        match &f.codec {
            Codec::Object { fields, .. } => {
                let Some(obj) = v.as_object() else {
                    return Err("must be an object".into());
                };
                // Sub-fields of an object are written as a whole: absent members are required.
                self.fields(fields, obj, WriteMode::Input, ptr);
                Ok(())
            }
            Codec::Attachment(a) => {
                self.attachment(a, v, ptr);
                Ok(())
            }
            codec => {
                let up = value_to_upstream(codec, self.ctx, v)?;
                let up = match f.write.as_ref().and_then(|w| w.template.as_ref()) {
                    Some(t) => fill_value(t, &up),
                    None => up,
                };
                if let Some(p) = scalar_path(f) {
                    self.put(p, ptr, up);
                }
                Ok(())
            }
        }
    }

    fn attachment(&mut self, a: &Attachment, v: &Value, ptr: &str) {
        let (Some(kind), Some(id)) = (v.get("type").and_then(Value::as_str), v.get("id")) else {
            self.errors.push(FieldError::new(
                ptr.to_string(),
                "must be an object {\"type\", \"id\"}",
            ));
            return;
        };
        if v.as_object().is_some_and(|o| o.len() != 2) {
            self.errors.push(FieldError::new(
                ptr.to_string(),
                "must have exactly the members `type` and `id`",
            ));
            return;
        }
        let Some(k) = a.kinds.iter().find(|k| k.name == kind) else {
            self.errors.push(FieldError::new(
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
            return;
        };
        let Some(internal) = self.ctx.open(&k.prefix, id) else {
            self.errors.push(FieldError::new(
                format!("{ptr}/id"),
                format!("is not a valid `{}_` id", k.prefix),
            ));
            return;
        };
        match &a.style {
            AttachStyle::TypeAndId { type_from, id_from } => {
                type_from.set(self.out, k.code.clone().unwrap_or(Value::Null));
                id_from.set(self.out, internal.to_json());
            }
            AttachStyle::Associations => {
                for other in &a.kinds {
                    if let Some(p) = &other.from {
                        let list = if other.name == k.name {
                            vec![internal.to_json()]
                        } else {
                            vec![]
                        };
                        p.set(self.out, Value::Array(list));
                    }
                }
            }
        }
    }
}

/// The value written at `path` so far.
fn written<'m>(out: &'m Map<String, Value>, path: &UpPath) -> Option<&'m Value> {
    let (first, rest) = path.0.split_first()?;
    rest.iter().try_fold(out.get(first)?, |v, seg| v.get(seg))
}

/// Where a scalar field is written: its own `write.to`, else where it is read.
fn scalar_path(f: &Field) -> Option<&UpPath> {
    f.write
        .as_ref()
        .and_then(|w| w.to.as_ref())
        .or(f.from.as_ref())
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
