//! Public search requests: validation, the canonical query a cursor carries, and the
//! translation of filters into each upstream dialect.

use serde_json::{json, Map, Value};

use super::model::*;
use super::tpl::{Hole, Json, Text};
use super::transform::{value_to_upstream, Ctx};
use crate::problem::{FieldError, Kind, Problem};

pub const MAX_FILTERS: usize = 18;
pub const DEFAULT_LIMIT: u32 = 25;

#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    pub field: usize,
    pub op: Op,
    pub value: Value,
    pub high: Value,
    pub values: Vec<Value>,
}

/// A validated search request.
#[derive(Debug, Clone)]
pub struct Query {
    pub filters: Vec<Filter>,
    pub sort: (usize, bool),
    pub limit: u32,
    pub cursor: Option<String>,
    /// Whether the client sent `filters` / `sort` (they must then match a cursor's).
    pub sent_filters: bool,
    pub sent_sort: bool,
}

impl Query {
    /// The canonical public form of filters and sort: what a cursor is bound to.
    pub fn canonical(&self, res: &Resource) -> Value {
        let filters: Vec<Value> = self
            .filters
            .iter()
            .map(|f| {
                json!([
                    res.fields[f.field].name,
                    f.op.name(),
                    f.value,
                    f.high,
                    f.values
                ])
            })
            .collect();
        json!({"f": filters, "s": [res.fields[self.sort.0].name, self.sort.1]})
    }

    pub fn restore(res: &Resource, canonical: &Value) -> Option<(Vec<Filter>, (usize, bool))> {
        let mut filters = Vec::new();
        for f in canonical.get("f")?.as_array()? {
            let a = f.as_array()?;
            let (field, _) = res.field(a.first()?.as_str()?)?;
            filters.push(Filter {
                field,
                op: Op::parse(a.get(1)?.as_str()?)?,
                value: a.get(2)?.clone(),
                high: a.get(3)?.clone(),
                values: a.get(4)?.as_array()?.clone(),
            });
        }
        let s = canonical.get("s")?.as_array()?;
        let (idx, _) = res.field(s.first()?.as_str()?)?;
        Some((filters, (idx, s.get(1)?.as_bool()?)))
    }
}

fn find_filter_field<'a>(res: &'a Resource, name: &str) -> Option<(usize, &'a Field)> {
    if let Some((i, f)) = res.field(name) {
        if !matches!(f.codec, Codec::Attachment(_)) {
            return Some((i, f));
        }
    }
    let base = name.strip_suffix(".id")?;
    res.field(base)
        .filter(|(_, f)| matches!(f.codec, Codec::Attachment(_)))
}

/// Parses and validates a search body (an empty body means "all, default order").
pub fn parse(res: &Resource, search: &Search, body: Option<&Value>) -> Result<Query, Problem> {
    let mut errors = Vec::new();
    let empty = Map::new();
    let obj = match body {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(o)) => o,
        Some(_) => {
            return Err(Problem::invalid(vec![FieldError::new(
                "",
                "the body must be a JSON object",
            )]))
        }
    };
    for k in obj.keys() {
        if !["filters", "sort", "limit", "cursor"].contains(&k.as_str()) {
            errors.push(FieldError::new(format!("/{k}"), "is not a known member"));
        }
    }
    let limit = match obj.get("limit") {
        None | Some(Value::Null) => DEFAULT_LIMIT,
        Some(v) => match whole(v) {
            Some(n) if (1..=100).contains(&n) => n as u32,
            _ => {
                errors.push(FieldError::new(
                    "/limit",
                    "must be an integer from 1 to 100",
                ));
                DEFAULT_LIMIT
            }
        },
    };
    let cursor = match obj.get("cursor") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            errors.push(FieldError::new("/cursor", "must be a string or null"));
            None
        }
    };
    let mut filters = Vec::new();
    let sent_filters = obj.get("filters").is_some_and(|v| !v.is_null());
    match obj.get("filters") {
        None | Some(Value::Null) => {}
        Some(Value::Array(list)) => {
            if list.len() > MAX_FILTERS {
                errors.push(FieldError::new(
                    "/filters",
                    format!("at most {MAX_FILTERS} filters"),
                ));
            }
            for (i, f) in list.iter().enumerate().take(MAX_FILTERS) {
                if let Some(f) = parse_filter(res, f, i, &mut errors) {
                    filters.push(f);
                }
            }
        }
        Some(_) => errors.push(FieldError::new("/filters", "must be a list")),
    }
    let sent_sort = obj.get("sort").is_some_and(|v| !v.is_null());
    let mut sort = search.default_sort;
    match obj.get("sort") {
        None | Some(Value::Null) => {}
        Some(Value::Array(list)) if list.len() <= 1 => {
            if let Some(s) = list.first() {
                if let Some(parsed) = parse_sort(res, search, s, &mut errors) {
                    sort = parsed;
                }
            }
        }
        Some(Value::Array(_)) => {
            errors.push(FieldError::new("/sort", "sorts on one field at most"))
        }
        Some(_) => errors.push(FieldError::new("/sort", "must be a list")),
    }
    if !errors.is_empty() {
        return Err(Problem::invalid(errors));
    }
    Ok(Query {
        filters,
        sort,
        limit,
        cursor,
        sent_filters,
        sent_sort,
    })
}

fn parse_sort(
    res: &Resource,
    search: &Search,
    s: &Value,
    errors: &mut Vec<FieldError>,
) -> Option<(usize, bool)> {
    let Some(o) = s.as_object() else {
        errors.push(FieldError::new(
            "/sort/0",
            "must be an object {field, direction}",
        ));
        return None;
    };
    for k in o.keys() {
        if k != "field" && k != "direction" {
            errors.push(FieldError::new(
                format!("/sort/0/{k}"),
                "is not a known member",
            ));
        }
    }
    let name = o.get("field").and_then(Value::as_str).unwrap_or("");
    let desc = match o.get("direction") {
        None => false,
        Some(Value::String(d)) if d == "asc" => false,
        Some(Value::String(d)) if d == "desc" => true,
        Some(_) => {
            errors.push(FieldError::new("/sort/0/direction", "must be asc or desc"));
            return None;
        }
    };
    let sortable = res.field(name).filter(|(i, f)| match search.sort {
        SortStyle::Fixed => *i == search.default_sort.0 && desc == search.default_sort.1,
        SortStyle::Local => f.sort.is_some() || *i == search.default_sort.0,
        _ => f.sort.is_some(),
    });
    match sortable {
        Some((i, _)) => Some((i, desc)),
        None => {
            errors.push(FieldError::new(
                "/sort/0/field",
                format!("`{name}` cannot be sorted on this way"),
            ));
            None
        }
    }
}

fn parse_filter(
    res: &Resource,
    f: &Value,
    i: usize,
    errors: &mut Vec<FieldError>,
) -> Option<Filter> {
    let at = |m: &str| format!("/filters/{i}{m}");
    let Some(o) = f.as_object() else {
        errors.push(FieldError::new(
            at(""),
            "must be an object {field, operator, value}",
        ));
        return None;
    };
    for k in o.keys() {
        if !["field", "operator", "value", "high_value", "values"].contains(&k.as_str()) {
            errors.push(FieldError::new(
                at(&format!("/{k}")),
                "is not a known member",
            ));
        }
    }
    let name = o.get("field").and_then(Value::as_str).unwrap_or("");
    let Some((idx, field)) = find_filter_field(res, name).filter(|(_, f)| !f.filters.is_empty())
    else {
        errors.push(FieldError::new(
            at("/field"),
            format!("`{name}` is not a filterable field"),
        ));
        return None;
    };
    let op_name = o.get("operator").and_then(Value::as_str).unwrap_or("");
    let Some(op) = Op::parse(op_name).filter(|op| field.filters.iter().any(|(o, _)| o == op))
    else {
        let allowed: Vec<&str> = field.filters.iter().map(|(o, _)| o.name()).collect();
        errors.push(FieldError::new(
            at("/operator"),
            if allowed.is_empty() {
                format!("`{name}` is not a filterable field")
            } else {
                format!(
                    "`{op_name}` is not allowed on `{name}` (allowed: {})",
                    allowed.join(", ")
                )
            },
        ));
        return None;
    };
    let value = o.get("value").cloned().unwrap_or(Value::Null);
    let high = o.get("high_value").cloned().unwrap_or(Value::Null);
    let values = o.get("values").cloned().unwrap_or(Value::Null);
    let mut ok = true;
    let mut need = |present: bool, member: &str, what: &str| {
        if !present {
            errors.push(FieldError::new(at(member), what.to_string()));
            ok = false;
        }
    };
    match op {
        Op::HasValue | Op::NotHasValue => {}
        Op::In | Op::NotIn => need(
            values
                .as_array()
                .is_some_and(|a| !a.is_empty() && a.len() <= 100),
            "/values",
            "must be a list of 1 to 100 values",
        ),
        Op::Between => {
            need(!value.is_null(), "/value", "is required");
            need(!high.is_null(), "/high_value", "is required");
        }
        Op::Contains => need(
            value
                .as_str()
                .is_some_and(|s| !s.is_empty() && s.chars().count() <= 256),
            "/value",
            "must be a non-empty string",
        ),
        _ => need(!value.is_null(), "/value", "is required"),
    }
    if !ok {
        return None;
    }
    Some(Filter {
        field: idx,
        op,
        value,
        high,
        values: values.as_array().cloned().unwrap_or_default(),
    })
}

/// The upstream side of a query.
#[derive(Debug, Default)]
pub struct Translated {
    pub clauses: Vec<Value>,
    /// Text clauses of a dialect that joins them into one parameter.
    pub texts: Vec<String>,
    pub params: Vec<(String, Value)>,
    /// Filters the edge applies to the public records itself.
    pub local: Vec<Filter>,
    /// A filter can never match (e.g. an id of another tenant): answer an empty page.
    pub impossible: bool,
}

/// The codec a filter value is read with: one id for an id list ("contains"), the first
/// case of a variant.
fn filter_codec(codec: &Codec) -> Codec {
    match codec {
        Codec::IdList { prefix } => Codec::Id {
            prefix: prefix.clone(),
        },
        Codec::Variant(v) => v
            .cases
            .first()
            .map(|(_, f)| filter_codec(&f.codec))
            .unwrap_or(Codec::Json),
        other => other.clone(),
    }
}

/// Translates validated filters into the dialect of `search`; bad values are reported.
pub fn translate(res: &Resource, ctx: &Ctx, filters: &[Filter]) -> Result<Translated, Problem> {
    let mut t = Translated::default();
    let mut errors = Vec::new();
    for (i, f) in filters.iter().enumerate() {
        let field = &res.fields[f.field];
        let target = field
            .filters
            .iter()
            .find(|(o, _)| *o == f.op)
            .map(|(_, t)| t.clone())
            .unwrap_or(FilterTarget::Local);
        let codec = filter_codec(&field.codec);
        // An id that does not open (forged, other tenant) can never match.
        let conv = |v: &Value,
                    member: &str,
                    errors: &mut Vec<FieldError>,
                    t: &mut Translated|
         -> Option<Value> {
            match (&codec, value_to_upstream(&codec, ctx, v)) {
                (_, Ok(up)) => Some(up),
                (Codec::Id { .. } | Codec::IdList { .. }, Err(_)) if v.is_string() => {
                    t.impossible = true;
                    None
                }
                (_, Err(e)) => {
                    errors.push(FieldError::new(format!("/filters/{i}/{member}"), e));
                    None
                }
            }
        };
        match target {
            FilterTarget::Render {
                field: name,
                render: r,
            } => {
                let Some(d) = res.search.as_ref().map(|s| &s.filters) else {
                    continue;
                };
                let one = |m: &str, v: &Value, t: &mut Translated, e: &mut Vec<FieldError>| {
                    if v.is_null() {
                        return Some(Value::Null);
                    }
                    conv(v, m, e, t)
                };
                let value = one("value", &f.value, &mut t, &mut errors);
                let high = one("high_value", &f.high, &mut t, &mut errors);
                let mut values = Vec::new();
                for (j, v) in f.values.iter().enumerate() {
                    if let Some(up) = conv(v, &format!("values/{j}"), &mut errors, &mut t) {
                        values.push(up);
                    }
                }
                if matches!(f.op, Op::In | Op::NotIn) && values.is_empty() {
                    if f.op == Op::In {
                        t.impossible = true;
                    }
                    continue;
                }
                let (Some(value), Some(high)) = (value, high) else {
                    continue;
                };
                let kind = literal_kind(&codec);
                let each: &[Value] = if r.each {
                    &values
                } else {
                    std::slice::from_ref(&value)
                };
                for v in each {
                    let b = Bound {
                        d,
                        r: &r,
                        kind,
                        field: &name,
                        value: v,
                        high: &high,
                        values: &values,
                    };
                    for c in &r.clauses {
                        match c {
                            Clause::Text(tpl) => t.texts.push(b.text(tpl)),
                            Clause::Pair(k, v) => t.params.push((b.text(k), b.member(v))),
                            Clause::Object(o) => t.clauses.push(b.object(o)),
                        }
                    }
                }
            }
            FilterTarget::Local => {
                // Still validate the value's type so a bad one is a 400, not an empty page.
                if !matches!(f.op, Op::HasValue | Op::NotHasValue | Op::Contains) {
                    if matches!(f.op, Op::In | Op::NotIn) {
                        for (j, v) in f.values.iter().enumerate() {
                            conv(v, &format!("values/{j}"), &mut errors, &mut t);
                        }
                    } else if !matches!(field.codec, Codec::Attachment(_)) {
                        conv(&f.value, "value", &mut errors, &mut t);
                        if f.op == Op::Between {
                            conv(&f.high, "high_value", &mut errors, &mut t);
                        }
                    }
                }
                t.local.push(f.clone());
            }
            FilterTarget::Attachment => {
                let Codec::Attachment(a) = &field.codec else {
                    continue;
                };
                let Some(id) = f.value.as_str() else {
                    errors.push(FieldError::new(
                        format!("/filters/{i}/value"),
                        "must be an id",
                    ));
                    continue;
                };
                let kind = a
                    .kinds
                    .iter()
                    .find(|k| id.starts_with(&format!("{}_", k.prefix)));
                let opened = kind.and_then(|k| ctx.open(&k.prefix, &f.value).map(|id| (k, id)));
                match (opened, &a.style) {
                    (None, _) => t.impossible = true,
                    (Some((k, id)), AttachStyle::TypeAndId { type_from, id_from }) => {
                        t.params
                            .push((type_from.dotted(), k.code.clone().unwrap_or(Value::Null)));
                        t.params.push((id_from.dotted(), id.to_json()));
                    }
                    (Some((k, id)), AttachStyle::Associations) => match &k.param {
                        Some(p) => t.params.push((p.clone(), id.to_json())),
                        None => t.local.push(f.clone()),
                    },
                }
            }
        }
    }
    if !errors.is_empty() {
        return Err(Problem::invalid(errors));
    }
    Ok(t)
}

/// The literal type a value is rendered as in a dialect.
fn literal_kind(codec: &Codec) -> &'static str {
    match codec {
        Codec::Timestamp(_) => "timestamp",
        Codec::Date(_) => "date",
        Codec::Id { .. } | Codec::IdList { .. } => "id",
        Codec::Integer { .. } | Codec::Number { .. } | Codec::Decimal => "number",
        Codec::Boolean => "boolean",
        _ => "string",
    }
}

/// One operator's clause with its values bound.
struct Bound<'a> {
    d: &'a FilterDialect,
    r: &'a OpRender,
    kind: &'static str,
    field: &'a str,
    value: &'a Value,
    high: &'a Value,
    values: &'a [Value],
}

impl Bound<'_> {
    /// The value as the operator sees it: escaped (`%` → `\%`) and lowercased if asked.
    fn prepared(&self, v: &Value) -> Value {
        match v {
            Value::String(s) => {
                if self.r.escape.is_empty() && !self.r.lower {
                    return v.clone();
                }
                let mut out = String::with_capacity(s.len());
                for c in s.chars() {
                    match self.r.escape.iter().find(|(e, _)| *e == c) {
                        Some((_, rep)) => out.push_str(rep),
                        None => out.push(c),
                    }
                }
                Value::from(if self.r.lower {
                    out.to_lowercase()
                } else {
                    out
                })
            }
            other => other.clone(),
        }
    }

    /// The literal rule of a value (none: its bare text).
    fn rule(&self, v: &Value) -> Option<&Literal> {
        let kind = match v {
            Value::Null => "null",
            Value::String(_) => self.kind,
            Value::Bool(_) => "boolean",
            Value::Number(_) => "number",
            _ => "string",
        };
        self.d
            .literals
            .iter()
            .find(|(k, _)| k == kind)
            .map(|(_, l)| l)
    }

    /// A literal of the dialect: quoted and escaped per its type, bare when the type has
    /// no quoting (`null`, numbers and booleans as JSON writes them).
    fn literal(&self, v: &Value, out: &mut String) {
        let v = self.prepared(v);
        let text = match &v {
            Value::String(s) => s.as_str(),
            _ => "",
        };
        let owned;
        let text = if v.is_string() {
            text
        } else {
            owned = v.to_string();
            owned.as_str()
        };
        match self.rule(&v) {
            Some(l) => {
                out.push_str(&l.quote);
                for c in text.chars() {
                    match l.escape.iter().find(|(e, _)| *e == c) {
                        Some((_, rep)) => out.push_str(rep),
                        None => out.push(c),
                    }
                }
                out.push_str(&l.quote);
            }
            None => out.push_str(text),
        }
    }

    fn hole(&self, h: Hole, out: &mut String) {
        match h {
            Hole::Field => out.push_str(self.field),
            Hole::Value => self.literal(self.value, out),
            Hole::High => self.literal(self.high, out),
            Hole::Values => {
                for (i, v) in self.values.iter().enumerate() {
                    if i > 0 {
                        out.push_str(&self.d.list_join);
                    }
                    self.literal(v, out);
                }
            }
            Hole::Dir | Hole::Desc => {}
        }
    }

    fn text(&self, tpl: &Text) -> String {
        let mut out = String::with_capacity(32);
        tpl.render(&mut out, |h, o| self.hole(h, o));
        out
    }

    /// A `key=value` member's value: exactly `{value}` (or `{high}`) with no literal rule
    /// keeps its JSON type (a number stays a number in a body); otherwise its text.
    fn member(&self, tpl: &Text) -> Value {
        match tpl.exact() {
            Some(h @ (Hole::Value | Hole::High)) => {
                let v = if h == Hole::Value {
                    self.value
                } else {
                    self.high
                };
                match self.rule(v) {
                    None => self.prepared(v),
                    Some(_) => Value::from(self.text(tpl)),
                }
            }
            _ => Value::from(self.text(tpl)),
        }
    }

    /// A JSON clause: a string that is exactly `{value}`/`{high}`/`{values}` takes the
    /// JSON value itself; inside a longer string a value is its bare text (`%{value}%`).
    fn object(&self, o: &Json) -> Value {
        o.render(
            &|h| match h {
                Hole::Value => self.prepared(self.value),
                Hole::High => self.prepared(self.high),
                Hole::Values => {
                    Value::Array(self.values.iter().map(|v| self.prepared(v)).collect())
                }
                Hole::Field => Value::from(self.field),
                Hole::Dir | Hole::Desc => Value::Null,
            },
            &|h, out: &mut String| match h {
                Hole::Field => out.push_str(self.field),
                Hole::Value | Hole::High => {
                    let v = self.prepared(if h == Hole::Value {
                        self.value
                    } else {
                        self.high
                    });
                    match v {
                        Value::String(s) => out.push_str(&s),
                        other => out.push_str(&other.to_string()),
                    }
                }
                Hole::Values => {
                    for (i, v) in self.values.iter().enumerate() {
                        if i > 0 {
                            out.push_str(&self.d.list_join);
                        }
                        match self.prepared(v) {
                            Value::String(s) => out.push_str(&s),
                            other => out.push_str(&other.to_string()),
                        }
                    }
                }
                Hole::Dir | Hole::Desc => {}
            },
        )
    }
}

fn cmp_values(a: &Value, b: &Value) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64()?.partial_cmp(&y.as_f64()?),
        (Value::String(x), Value::String(y)) => {
            // Timestamps compare as instants (any offset); decimal strings as numbers;
            // dates and other text as text.
            if let (Some(p), Some(q)) = (
                super::time::parse_timestamp(x),
                super::time::parse_timestamp(y),
            ) {
                return Some(p.cmp(&q));
            }
            match (x.parse::<f64>(), y.parse::<f64>()) {
                (Ok(p), Ok(q)) if !x.contains('-') || x.starts_with('-') => p.partial_cmp(&q),
                _ => Some(x.cmp(y)),
            }
        }
        _ => None,
    }
}

/// Whether a public record passes a filter the edge applies itself.
pub fn local_match(res: &Resource, f: &Filter, record: &Value) -> bool {
    use std::cmp::Ordering::*;
    let field = &res.fields[f.field];
    let mut v = record.get(&field.name).unwrap_or(&Value::Null);
    if matches!(field.codec, Codec::Attachment(_)) {
        v = v.get("id").unwrap_or(&Value::Null);
    }
    match f.op {
        Op::Eq => match v {
            Value::Array(a) => a.contains(&f.value),
            _ => v == &f.value,
        },
        Op::Neq => v != &f.value,
        Op::In => f.values.contains(v),
        Op::NotIn => !f.values.contains(v),
        Op::HasValue => !v.is_null() && v != &Value::String(String::new()),
        Op::NotHasValue => v.is_null() || v == &Value::String(String::new()),
        Op::Contains => match (v.as_str(), f.value.as_str()) {
            (Some(s), Some(n)) => s.to_lowercase().contains(&n.to_lowercase()),
            _ => false,
        },
        Op::Lt => cmp_values(v, &f.value) == Some(Less),
        Op::Lte => matches!(cmp_values(v, &f.value), Some(Less | Equal)),
        Op::Gt => cmp_values(v, &f.value) == Some(Greater),
        Op::Gte => matches!(cmp_values(v, &f.value), Some(Greater | Equal)),
        Op::Between => {
            matches!(cmp_values(v, &f.value), Some(Greater | Equal))
                && matches!(cmp_values(v, &f.high), Some(Less | Equal))
        }
    }
}

/// Orders public records by one field (for upstreams that do not sort).
pub fn local_sort(records: &mut [Value], field: &str, desc: bool) {
    records.sort_by(|a, b| {
        let o = cmp_values(
            a.get(field).unwrap_or(&Value::Null),
            b.get(field).unwrap_or(&Value::Null),
        )
        .unwrap_or(std::cmp::Ordering::Equal);
        if desc {
            o.reverse()
        } else {
            o
        }
    });
}

/// A whole number, also when written as `8.0` (JSON Schema's integers include it).
pub fn whole(v: &Value) -> Option<u64> {
    v.as_u64().or_else(|| {
        v.as_f64()
            .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f <= 9.0e15)
            .map(|f| f as u64)
    })
}

/// A problem for results past the upstream's window.
pub fn beyond_window(window: u32) -> Problem {
    Problem::invalid(vec![FieldError::new(
        "/cursor",
        format!("results beyond the first {window} cannot be paged; narrow the filters"),
    )])
}

pub fn invalid_cursor() -> Problem {
    Problem::new(
        Kind::InvalidCursor,
        "The cursor is invalid, expired, or belongs to another query",
    )
}
