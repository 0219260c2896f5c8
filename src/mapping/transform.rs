//! Field codecs: upstream JSON ↔ public JSON, driven by the compiled fields.
//!
//! Pure functions of (fields, value, tenant): no I/O, so they are golden-tested and fuzzed
//! directly. Requests are validated here: every offending field is reported by pointer.

use std::borrow::Cow;

use chrono::{TimeZone, Utc};
use serde_json::{Map, Value};

use super::model::*;
use crate::seal::{InternalId, Sealer};

use super::time::{millis_to_rfc3339, upstream_millis};
pub use super::write::{fill_template, merge, to_upstream, value_to_upstream, WriteMode};

/// An upstream record as the codecs read it: the value at a path of member names.
/// A `Value` lends its own; a borrowed view ([`super::view::Node`]) makes the one asked for.
pub trait Record {
    fn at(&self, p: &UpPath) -> Option<Cow<'_, Value>>;
    /// The string at `p`, if a string is there (read without making a value).
    fn text_at(&self, p: &UpPath) -> Option<&str>;
}

impl Record for Value {
    fn at(&self, p: &UpPath) -> Option<Cow<'_, Value>> {
        p.get(self).map(Cow::Borrowed)
    }

    fn text_at(&self, p: &UpPath) -> Option<&str> {
        p.get(self)?.as_str()
    }
}

impl<'a> Record for super::view::Node<'a> {
    fn at(&self, p: &UpPath) -> Option<Cow<'_, Value>> {
        self.path(&p.0).map(|n| Cow::Owned(n.to_value()))
    }

    fn text_at(&self, p: &UpPath) -> Option<&str> {
        match self.path(&p.0)? {
            super::view::Node::String(s) => Some(s),
            _ => None,
        }
    }
}

/// The value at `p`, null when there is none.
fn at_or_null<'r, R: Record + ?Sized>(rec: &'r R, p: Option<&UpPath>) -> Cow<'r, Value> {
    p.and_then(|p| rec.at(p))
        .unwrap_or(Cow::Borrowed(&Value::Null))
}

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

// ---------------------------------------------------------------- upstream → public

/// Transforms one upstream record into its public form (the `id` first, then the fields).
pub fn to_public(res: &Resource, ctx: &Ctx, rec: &Value) -> Value {
    to_public_checked(res, ctx, rec).0
}

/// [`to_public`], and the first field whose upstream value is there but does not read as
/// its declared type (a timestamp that does not parse, a string where a number belongs…),
/// by public pointer: the caller answers 502 rather than publish a silent null. Checked
/// as the record is built: scalar fields (and those of nested objects, in field order),
/// not lists, variants, constants or the resource's `keep_if_present` field.
pub fn to_public_checked<R: Record + ?Sized>(
    res: &Resource,
    ctx: &Ctx,
    rec: &R,
) -> (Value, Option<String>) {
    let mut out = Map::with_capacity(res.fields.len() + 1);
    out.insert("id".into(), sealed_id(res, ctx, rec));
    let mut unread = None;
    let skip = res.keep_if_present.as_deref();
    fields_into(&res.fields, ctx, rec, &mut out, Some(&mut unread), skip);
    (Value::Object(out), unread)
}

/// [`to_public_checked`] written as JSON straight into `out` — the bytes `serde_json` writes
/// for the value `to_public` builds — without building the record's map (its keys cloned
/// and hashed, then serialized and dropped: ~9k of a GET's instructions). `None`, with
/// nothing written, for a resource this cannot write: one with variant fields (a case
/// reads public fields built before it) or a field named `id`.
pub fn write_public<R: Record + ?Sized>(
    res: &Resource,
    ctx: &Ctx,
    rec: &R,
    out: &mut Vec<u8>,
) -> Option<Option<String>> {
    if !res.writable {
        return None;
    }
    out.extend_from_slice(b"{\"id\":");
    value_into(out, &sealed_id(res, ctx, rec));
    let mut unread = None;
    let skip = res.keep_if_present.as_deref();
    write_fields(&res.fields, ctx, rec, out, Some(&mut unread), skip, true);
    out.push(b'}');
    Some(unread)
}

/// The record's sealed public id (null without an id).
fn sealed_id<R: Record + ?Sized>(res: &Resource, ctx: &Ctx, rec: &R) -> Value {
    let id = rec.at(&res.id_from).and_then(|v| internal_of(&v));
    id.map(|id| Value::from(ctx.sealer.seal_id(&res.prefix, ctx.tenant, res.kind, &id)))
        .unwrap_or(Value::Null)
}

/// Whether [`write_public`] can write a resource with these fields (see there); the
/// compiled `Resource::writable`.
pub(super) fn writable(fields: &[Field], top: bool) -> bool {
    fields.iter().all(|f| {
        !(top && f.name == "id")
            && match &f.codec {
                Codec::Variant(_) => false,
                Codec::Object { fields, .. } => writable(fields, false),
                _ => true,
            }
    })
}

/// The members of one public object (after `{`, or after the `id` when `after_first`), in
/// field order; `unread` as in [`fields_into`].
fn write_fields<R: Record + ?Sized>(
    fields: &[Field],
    ctx: &Ctx,
    rec: &R,
    out: &mut Vec<u8>,
    mut unread: Option<&mut Option<String>>,
    skip: Option<&str>,
    after_first: bool,
) {
    // Only variants read `done`, and a writable resource has none.
    let done = Map::new();
    for (i, f) in fields.iter().enumerate() {
        if after_first || i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(&f.member);
        checked(&mut unread, skip, f, |below| match &f.codec {
            // A string is written from the record as it is (what the codec's clone is).
            Codec::String => match f.from.as_ref().and_then(|p| rec.text_at(p)) {
                Some(s) => crate::json::write_str(out, s),
                None => value_into(out, &field_to_public(f, ctx, rec, &done, below)),
            },
            Codec::Object {
                fields,
                null_unless,
            } => {
                if object_absent(fields, *null_unless, rec) {
                    out.extend_from_slice(b"null");
                } else {
                    out.push(b'{');
                    write_fields(fields, ctx, rec, out, below, None, false);
                    out.push(b'}');
                }
            }
            _ => value_into(out, &field_to_public(f, ctx, rec, &done, below)),
        });
    }
}

/// [`json_into`] for a value, its strings through [`crate::json::write_str`].
fn value_into(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::String(s) => crate::json::write_str(out, s),
        _ => json_into(out, v),
    }
}

/// Appends `v` as compact JSON, as `serde_json::to_vec` writes it.
fn json_into<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, v: &T) {
    // Writing into a `Vec` cannot fail, and these values have no map with non-string keys.
    let _ = serde_json::to_writer(&mut *out, v);
}

pub fn fields_to_public(fields: &[Field], ctx: &Ctx, rec: &Value, out: &mut Map<String, Value>) {
    fields_into(fields, ctx, rec, out, None, None);
}

/// The fields of `rec` into `out`; with `unread`, the first unreadable field's pointer
/// (below this level) goes there, `skip` aside.
fn fields_into<R: Record + ?Sized>(
    fields: &[Field],
    ctx: &Ctx,
    rec: &R,
    out: &mut Map<String, Value>,
    mut unread: Option<&mut Option<String>>,
    skip: Option<&str>,
) {
    for f in fields {
        let v = checked(&mut unread, skip, f, |below| {
            field_to_public(f, ctx, rec, out, below)
        });
        out.insert(f.name.clone(), v);
    }
}

/// Runs `build` for field `f` with the unreadable check on while it is wanted (asked for,
/// nothing found yet, not `skip`); a finding below the field is noted as `/<name><below>`.
fn checked<R>(
    unread: &mut Option<&mut Option<String>>,
    skip: Option<&str>,
    f: &Field,
    build: impl FnOnce(Option<&mut Option<String>>) -> R,
) -> R {
    let check = unread.as_ref().is_some_and(|u| u.is_none()) && skip != Some(f.name.as_str());
    let mut below = None;
    let built = build(check.then_some(&mut below));
    if let (Some(u), Some(p)) = (unread.as_mut(), below) {
        **u = Some(format!("/{}{p}", f.name));
    }
    built
}

/// An object field whose `null_unless` member has no upstream value is null as a whole.
fn object_absent<R: Record + ?Sized>(
    fields: &[Field],
    null_unless: Option<usize>,
    rec: &R,
) -> bool {
    null_unless.is_some_and(|i| at_or_null(rec, fields[i].from.as_ref()).is_null())
}

/// Whether a codec's value is a scalar the unreadable check covers.
fn checked_scalar(c: &Codec) -> bool {
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

/// One field's public value. With `unread`, a value there upstream that reads as null
/// sets it to the pointer below this field (`""` for the field itself).
fn field_to_public<R: Record + ?Sized>(
    f: &Field,
    ctx: &Ctx,
    rec: &R,
    done: &Map<String, Value>,
    unread: Option<&mut Option<String>>,
) -> Value {
    match &f.codec {
        Codec::Const(v) => v.clone(),
        Codec::Changes(c) => {
            let raw = at_or_null(rec, f.from.as_ref());
            changes_to_public(c, ctx, rec, &raw)
        }
        Codec::Variant(var) => {
            let key = match &var.key {
                VariantKey::Public(name) => done.get(name).cloned().unwrap_or(Value::Null),
                VariantKey::Upstream(p) => rec.at(p).map(Cow::into_owned).unwrap_or(Value::Null),
            };
            match var.case(&key) {
                Some(case) => field_to_public(case, ctx, rec, done, None),
                None => Value::Null,
            }
        }
        Codec::Object {
            fields,
            null_unless,
        } => {
            if object_absent(fields, *null_unless, rec) {
                return Value::Null;
            }
            let mut m = Map::new();
            fields_into(fields, ctx, rec, &mut m, unread, None);
            Value::Object(m)
        }
        Codec::Attachment(a) => attachment_to_public(a, ctx, rec),
        codec => {
            let raw = at_or_null(rec, f.from.as_ref());
            let v = value_to_public(codec, ctx, &raw);
            if let Some(u) = unread {
                if v.is_null() && !raw.is_null() && checked_scalar(codec) {
                    *u = Some(String::new());
                }
            }
            v
        }
    }
}

/// `{upstreamField: {from, to}}` → `{public_field: {from, to}}` in public values; fields the
/// public API does not have (row versions, internals) are left out.
fn changes_to_public<R: Record + ?Sized>(c: &Changes, ctx: &Ctx, rec: &R, raw: &Value) -> Value {
    let on = rec.at(&c.on);
    let code = on.as_deref().and_then(Value::as_str).unwrap_or_default();
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

fn attachment_to_public<R: Record + ?Sized>(a: &Attachment, ctx: &Ctx, rec: &R) -> Value {
    match &a.style {
        AttachStyle::TypeAndId { type_from, id_from } => {
            let code = at_or_null(rec, Some(type_from));
            let id = at_or_null(rec, Some(id_from));
            match a.kinds.iter().find(|k| k.code.as_ref() == Some(&*code)) {
                Some(k) if !id.is_null() => {
                    serde_json::json!({"type": k.name, "id": ctx.seal(&k.prefix, &id)})
                }
                _ => Value::Null,
            }
        }
        AttachStyle::Associations => {
            for k in &a.kinds {
                let list = at_or_null(rec, k.from.as_ref());
                if let Some(id) = list.as_array().and_then(|l| l.first()) {
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

pub(super) fn round6(f: f64) -> f64 {
    (f * 1e6).round() / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The written record is byte for byte the built one, and names the same unreadable
    /// field: every shipped resource it can write, with records whose every mapped field
    /// holds a number, a string, a boolean, a list, an object or null.
    #[test]
    fn the_written_record_is_the_built_one_for_every_shipped_resource() {
        fn fill(fields: &[Field], rec: &mut Map<String, Value>, v: &Value) {
            for f in fields {
                if let Some(p) = &f.from {
                    p.set(rec, v.clone());
                }
                if let Codec::Object { fields, .. } = &f.codec {
                    fill(fields, rec, v);
                }
            }
        }
        let plan = crate::mapping::load_shipped().expect("shipped mappings compile");
        let sealer = crate::seal::Sealer::new(b"test id secret", b"test cursor secret");
        let ctx = Ctx {
            sealer: &sealer,
            tenant: 3,
        };
        let samples = [
            Value::from(1_767_225_600_000_i64),
            Value::from(2),
            Value::from(-1.5),
            Value::from("x"),
            Value::from("q\"b\\s\n\u{1}\u{7f}é€😀"),
            Value::from("2026-01-02"),
            Value::from(true),
            serde_json::json!([1, "a"]),
            serde_json::json!({"k": 1}),
            Value::Null,
        ];
        let mut written = 0;
        for res in plan.resources.values() {
            for v in &samples {
                let mut rec = Map::new();
                res.id_from.set(&mut rec, Value::from(7));
                fill(&res.fields, &mut rec, v);
                let rec = Value::Object(rec);
                // The record read through a borrowed view of its text reads the same.
                let text = serde_json::to_vec(&rec).expect("serializes");
                let node = crate::mapping::view::Node::parse(&text).expect("parses");
                assert_eq!(
                    to_public_checked(res, &ctx, &node),
                    to_public_checked(res, &ctx, &rec),
                    "{} with {v}, viewed",
                    res.name
                );
                let mut out = Vec::new();
                let Some(unread) = write_public(res, &ctx, &rec, &mut out) else {
                    assert!(out.is_empty());
                    continue;
                };
                let mut viewed = Vec::new();
                let viewed_unread = write_public(res, &ctx, &node, &mut viewed);
                assert_eq!(viewed_unread.as_ref(), Some(&unread), "{}", res.name);
                assert_eq!(
                    String::from_utf8_lossy(&viewed),
                    String::from_utf8_lossy(&out),
                    "{} with {v}, viewed",
                    res.name
                );
                written += 1;
                let (built, built_unread) = to_public_checked(res, &ctx, &rec);
                let want = serde_json::to_vec(&built).expect("serializes");
                assert_eq!(
                    String::from_utf8_lossy(&out),
                    String::from_utf8_lossy(&want),
                    "{} with {v}",
                    res.name
                );
                assert_eq!(unread, built_unread, "{} with {v}", res.name);
            }
        }
        assert!(written >= 5 * samples.len(), "{written} records written");
    }

    /// A value there upstream that does not read as its field's type is named (the first
    /// in field order); absent and null values, and every readable record, are not.
    #[test]
    fn the_first_unreadable_upstream_value_is_named_by_its_public_pointer() {
        let plan = crate::mapping::load_shipped().expect("shipped mappings compile");
        let contacts = &plan.resources["contacts"];
        let sealer = crate::seal::Sealer::new(b"test id secret", b"test cursor secret");
        let ctx = Ctx {
            sealer: &sealer,
            tenant: 1,
        };
        let good = serde_json::json!({
            "contactId": 7, "firstName": "Ada", "lastName": null, "emailAddress": "a@x.io",
            "ownerUserId": 101, "lifecycleStage": 2, "createdAt": 1_767_225_600_000_i64,
        });
        let (public, unread) = to_public_checked(contacts, &ctx, &good);
        assert_eq!(unread, None);
        assert_eq!(public["lifecycle_stage"], "lead");
        assert_eq!(public["created_at"], "2026-01-01T00:00:00.000Z");
        assert!(public["last_name"].is_null() && public["updated_at"].is_null());
        assert_eq!(public, to_public(contacts, &ctx, &good));

        let with = |changes: &[(&str, Value)]| {
            let mut rec = good.clone();
            for (k, v) in changes {
                rec[*k] = v.clone();
            }
            to_public_checked(contacts, &ctx, &rec).1
        };
        assert_eq!(
            with(&[("createdAt", "yesterday".into())]).as_deref(),
            Some("/created_at")
        );
        assert_eq!(
            with(&[("lifecycleStage", 7.into())]).as_deref(),
            Some("/lifecycle_stage")
        );
        assert_eq!(
            with(&[("ownerUserId", serde_json::json!({"id": 1}))]).as_deref(),
            Some("/owner_id")
        );
        // Both: the first in field order.
        let both = [
            ("modifiedAt", Value::from(true)),
            ("lifecycleStage", Value::from("x")),
        ];
        assert_eq!(with(&both).as_deref(), Some("/lifecycle_stage"));
        assert_eq!(with(&[("modifiedAt", Value::Null)]), None);
    }
}
