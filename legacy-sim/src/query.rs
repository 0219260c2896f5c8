//! crm-core's query language: `where` conditions ANDed, `orderBy`, `offset`/`limit`
//! with the platform's window limits. Generic over a [`Row`] that names its fields.

use std::cmp::Ordering;

use serde_json::{Map, Value};

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Int,
    Str,
}

pub(crate) enum Fv<'a> {
    Null,
    Int(i64),
    Str(&'a str),
}

pub(crate) trait Row {
    const FIELDS: &'static [(&'static str, Kind)];
    const ID: &'static str;
    fn get(&self, field: &str) -> Fv<'_>;
}

#[derive(Clone)]
enum Lit {
    Int(i64),
    Str(String),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    In,
    Like,
    NotNull,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Tok {
    Any,
    One,
    Ch(char),
}

struct Cond {
    field: &'static str,
    op: Op,
    lits: Vec<Lit>,
    pattern: Vec<Tok>,
}

pub(crate) struct Query {
    conds: Vec<Cond>,
    order: Vec<(&'static str, bool)>,
    pub offset: usize,
    pub limit: usize,
}

pub(crate) const MAX_LIMIT: i64 = 200;
pub(crate) const MAX_WINDOW: i64 = 10_000;
const DEFAULT_LIMIT: i64 = 50;

type Errs = Vec<(String, String)>;

fn field_of<R: Row>(name: &str) -> Option<(&'static str, Kind)> {
    R::FIELDS.iter().copied().find(|(n, _)| *n == name)
}

fn lit(kind: Kind, v: &Value) -> Option<Lit> {
    match (kind, v) {
        (Kind::Int, Value::Number(n)) => n.as_i64().map(Lit::Int),
        (Kind::Str, Value::String(s)) => Some(Lit::Str(s.clone())),
        _ => None,
    }
}

/// SQL LIKE pattern: `%` any run, `_` one character, `\` escapes the next character.
fn compile_like(p: &str) -> Option<Vec<Tok>> {
    let mut out = Vec::new();
    let mut chars = p.chars();
    while let Some(c) = chars.next() {
        match c {
            '%' => out.push(Tok::Any),
            '_' => out.push(Tok::One),
            '\\' => {
                let n = chars.next()?;
                out.extend(n.to_lowercase().map(Tok::Ch));
            }
            c => out.extend(c.to_lowercase().map(Tok::Ch)),
        }
    }
    Some(out)
}

fn like(p: &[Tok], s: &[char]) -> bool {
    let (mut pi, mut si) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        match p.get(pi) {
            Some(Tok::One) => {
                pi += 1;
                si += 1;
            }
            Some(Tok::Ch(c)) if *c == s[si] => {
                pi += 1;
                si += 1;
            }
            Some(Tok::Any) => {
                star = Some((pi, si));
                pi += 1;
            }
            _ => match star {
                Some((sp, mark)) => {
                    star = Some((sp, mark + 1));
                    pi = sp + 1;
                    si = mark + 1;
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|t| *t == Tok::Any)
}

pub(crate) fn parse<R: Row>(body: &Map<String, Value>) -> Result<Query, Errs> {
    let mut errs: Errs = Vec::new();
    for k in body.keys() {
        if !matches!(k.as_str(), "where" | "orderBy" | "offset" | "limit") {
            errs.push((k.clone(), "unknown field".into()));
        }
    }
    let mut conds = Vec::new();
    match body.get("where") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                let at = format!("where[{i}]");
                let Some(obj) = item.as_object() else {
                    errs.push((at, "must be an object".into()));
                    continue;
                };
                for k in obj.keys() {
                    if !matches!(k.as_str(), "field" | "operator" | "value") {
                        errs.push((format!("{at}.{k}"), "unknown field".into()));
                    }
                }
                let field = match obj.get("field").and_then(Value::as_str) {
                    Some(name) => match field_of::<R>(name) {
                        Some(f) => Some(f),
                        None => {
                            errs.push((format!("{at}.field"), format!("unknown field '{name}'")));
                            None
                        }
                    },
                    None => {
                        errs.push((format!("{at}.field"), "is required".into()));
                        None
                    }
                };
                let op = match obj.get("operator").and_then(Value::as_str) {
                    Some("=") => Some(Op::Eq),
                    Some("!=") => Some(Op::Ne),
                    Some("<") => Some(Op::Lt),
                    Some("<=") => Some(Op::Le),
                    Some(">") => Some(Op::Gt),
                    Some(">=") => Some(Op::Ge),
                    Some("IN") => Some(Op::In),
                    Some("LIKE") => Some(Op::Like),
                    Some("NOT_NULL") => Some(Op::NotNull),
                    Some(other) => {
                        errs.push((
                            format!("{at}.operator"),
                            format!("unknown operator '{other}'"),
                        ));
                        None
                    }
                    None => {
                        errs.push((format!("{at}.operator"), "is required".into()));
                        None
                    }
                };
                let (Some((fname, kind)), Some(op)) = (field, op) else {
                    continue;
                };
                let value = obj.get("value").unwrap_or(&Value::Null);
                let vat = format!("{at}.value");
                let mut cond = Cond {
                    field: fname,
                    op,
                    lits: Vec::new(),
                    pattern: Vec::new(),
                };
                match op {
                    Op::NotNull => {}
                    Op::In => match value.as_array() {
                        Some(xs) if !xs.is_empty() => {
                            match xs.iter().map(|x| lit(kind, x)).collect::<Option<Vec<_>>>() {
                                Some(ls) => cond.lits = ls,
                                None => errs.push((
                                    vat,
                                    format!("every element must be {}", kind_name(kind)),
                                )),
                            }
                        }
                        _ => errs.push((vat, "must be a non-empty array".into())),
                    },
                    Op::Like => match (kind, value.as_str()) {
                        (Kind::Str, Some(p)) => match compile_like(p) {
                            Some(t) => cond.pattern = t,
                            None => errs.push((
                                vat,
                                "pattern ends with a dangling escape character".into(),
                            )),
                        },
                        (Kind::Int, _) => errs.push((
                            format!("{at}.operator"),
                            format!("LIKE is not supported on numeric field '{fname}'"),
                        )),
                        _ => errs.push((vat, "must be a string".into())),
                    },
                    _ => match lit(kind, value) {
                        Some(l) => cond.lits = vec![l],
                        None => errs.push((vat, format!("must be {}", kind_name(kind)))),
                    },
                }
                conds.push(cond);
            }
        }
        Some(_) => errs.push(("where".into(), "must be an array".into())),
    }
    let mut order = Vec::new();
    match body.get("orderBy") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                let at = format!("orderBy[{i}]");
                let Some(obj) = item.as_object() else {
                    errs.push((at, "must be an object".into()));
                    continue;
                };
                let f = match obj.get("field").and_then(Value::as_str) {
                    Some(name) => match field_of::<R>(name) {
                        Some((n, _)) => Some(n),
                        None => {
                            errs.push((format!("{at}.field"), format!("unknown field '{name}'")));
                            None
                        }
                    },
                    None => {
                        errs.push((format!("{at}.field"), "is required".into()));
                        None
                    }
                };
                let desc = match obj.get("dir") {
                    None | Some(Value::Null) => Some(false),
                    Some(Value::String(s)) if s == "ASC" => Some(false),
                    Some(Value::String(s)) if s == "DESC" => Some(true),
                    Some(_) => {
                        errs.push((format!("{at}.dir"), "must be ASC or DESC".into()));
                        None
                    }
                };
                if let (Some(f), Some(d)) = (f, desc) {
                    order.push((f, d));
                }
            }
        }
        Some(_) => errs.push(("orderBy".into(), "must be an array".into())),
    }
    let num = |k: &str, default: i64, errs: &mut Errs| match body.get(k) {
        None | Some(Value::Null) => default,
        Some(v) => match v.as_i64() {
            Some(i) if i >= 0 => i,
            _ => {
                errs.push((k.to_string(), "must be a non-negative integer".into()));
                default
            }
        },
    };
    let offset = num("offset", 0, &mut errs);
    let limit = num("limit", DEFAULT_LIMIT, &mut errs);
    if limit > MAX_LIMIT {
        errs.push(("limit".into(), format!("must be at most {MAX_LIMIT}")));
    } else if offset.saturating_add(limit) > MAX_WINDOW {
        errs.push((
            "offset".into(),
            format!("offset + limit must be at most {MAX_WINDOW}"),
        ));
    }
    if !errs.is_empty() {
        return Err(errs);
    }
    Ok(Query {
        conds,
        order,
        offset: offset as usize,
        limit: limit as usize,
    })
}

fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::Int => "an integer",
        Kind::Str => "a string",
    }
}

fn cmp_lit(v: &Fv<'_>, l: &Lit) -> Option<Ordering> {
    match (v, l) {
        (Fv::Int(a), Lit::Int(b)) => Some(a.cmp(b)),
        (Fv::Str(a), Lit::Str(b)) => Some((*a).cmp(b.as_str())),
        _ => None,
    }
}

impl Cond {
    fn matches<R: Row>(&self, r: &R) -> bool {
        let v = r.get(self.field);
        if matches!(v, Fv::Null) {
            return false; // SQL: a comparison with NULL is never true
        }
        let first = || self.lits.first().and_then(|l| cmp_lit(&v, l));
        match self.op {
            Op::NotNull => true,
            Op::Eq => first() == Some(Ordering::Equal),
            Op::Ne => matches!(first(), Some(Ordering::Less | Ordering::Greater)),
            Op::Lt => first() == Some(Ordering::Less),
            Op::Le => matches!(first(), Some(Ordering::Less | Ordering::Equal)),
            Op::Gt => first() == Some(Ordering::Greater),
            Op::Ge => matches!(first(), Some(Ordering::Greater | Ordering::Equal)),
            Op::In => self
                .lits
                .iter()
                .any(|l| cmp_lit(&v, l) == Some(Ordering::Equal)),
            Op::Like => match v {
                Fv::Str(s) => {
                    let chars: Vec<char> = s.chars().flat_map(char::to_lowercase).collect();
                    like(&self.pattern, &chars)
                }
                _ => false,
            },
        }
    }
}

/// NULL sorts after every value in ascending order (and first in descending).
fn cmp_fv(a: &Fv<'_>, b: &Fv<'_>) -> Ordering {
    match (a, b) {
        (Fv::Null, Fv::Null) => Ordering::Equal,
        (Fv::Null, _) => Ordering::Greater,
        (_, Fv::Null) => Ordering::Less,
        (Fv::Int(x), Fv::Int(y)) => x.cmp(y),
        (Fv::Str(x), Fv::Str(y)) => x.cmp(y),
        (Fv::Int(_), Fv::Str(_)) => Ordering::Less,
        (Fv::Str(_), Fv::Int(_)) => Ordering::Greater,
    }
}

/// Filters, orders and windows `rows` (given in id order); returns the page and the
/// total number of matches.
pub(crate) fn run<'a, R: Row>(q: &Query, rows: impl Iterator<Item = &'a R>) -> (Vec<&'a R>, usize) {
    let mut hits: Vec<&R> = rows
        .filter(|r| q.conds.iter().all(|c| c.matches(*r)))
        .collect();
    if !q.order.is_empty() {
        hits.sort_by(|a, b| {
            for (f, desc) in &q.order {
                let o = cmp_fv(&a.get(f), &b.get(f));
                let o = if *desc { o.reverse() } else { o };
                if o != Ordering::Equal {
                    return o;
                }
            }
            cmp_fv(&a.get(R::ID), &b.get(R::ID))
        });
    }
    let total = hits.len();
    let page = hits.into_iter().skip(q.offset).take(q.limit).collect();
    (page, total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, s: &str) -> bool {
        let chars: Vec<char> = s.chars().flat_map(char::to_lowercase).collect();
        like(&compile_like(p).unwrap(), &chars)
    }

    #[test]
    fn like_patterns() {
        assert!(m("%ng", "Andrew Ng"));
        assert!(m("a%", "ADA"));
        assert!(m("_da", "Ada"));
        assert!(!m("_da", "Adda"));
        assert!(m("%a%b%", "xxaYYbzz"));
        assert!(m("100\\%%", "100% Organic"));
        assert!(!m("100\\%%", "1000 Organic"));
        assert!(m("%\\_%", "Fifty_Fifty"));
        assert!(!m("%\\_%", "Fifty Fifty"));
        assert!(m("a\\\\b", "a\\b"));
        assert!(compile_like("abc\\").is_none());
        assert!(m("%", ""));
        assert!(!m("_", ""));
    }
}
