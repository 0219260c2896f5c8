//! The directory's OData v4 query language: a lexer, a parser and an evaluator for
//! `$filter` and `$orderby`, plus `$select` and the RFC 3986 query decoding. Generic over
//! an [`Entity`] that names its typed properties. Every failure is an [`Err`] with a
//! message (the service answers 400 `0x8006088a`); nothing here panics on any input,
//! and the size of a parsed expression is bounded ([`MAX_NODES`], [`MAX_DEPTH`]).
//!
//! Semantics follow the OData v4 URL conventions as an in-memory ASP.NET OData service
//! evaluates them: string comparisons and `contains`/`startswith`/`endswith` are ordinal
//! and case-sensitive; `tolower`/`toupper` fold case; `eq`/`ne` treat null as a value
//! (`null eq null`), `gt`/`ge`/`lt`/`le` with a null operand are false, a function of
//! null is null and `and`/`or`/`not` are three-valued (`not contains(X,'a')` is not
//! true where X is null); `not` binds tighter than the comparisons.

use std::borrow::Cow;
use std::cmp::Ordering;

use crate::time::parse_iso;

/// Edm types of the properties.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Ty {
    Str,
    Guid,
    Int,
    /// Edm.DateTimeOffset, as 100-ns ticks since the epoch.
    Date,
    Bool,
}

impl Ty {
    fn edm(self) -> &'static str {
        match self {
            Ty::Str => "Edm.String",
            Ty::Guid => "Edm.Guid",
            Ty::Int => "Edm.Int64",
            Ty::Date => "Edm.DateTimeOffset",
            Ty::Bool => "Edm.Boolean",
        }
    }
}

/// A property value of an entity.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum V<'a> {
    Null,
    Str(Cow<'a, str>),
    /// lowercase hyphenated
    Guid(Cow<'a, str>),
    Int(i64),
    Date(i64),
    Bool(bool),
}

pub(crate) trait Entity {
    /// Property names (case-sensitive) and types, in the order the entity is written.
    const PROPS: &'static [(&'static str, Ty)];
    fn prop(&self, index: usize) -> V<'_>;
}

pub(crate) fn prop_index<E: Entity>(name: &str) -> Option<usize> {
    E::PROPS.iter().position(|(n, _)| *n == name)
}

/// More nodes than this in one expression is a 400 (it bounds evaluation and memory).
pub(crate) const MAX_NODES: usize = 2000;
/// Parentheses, `not` and function calls nested deeper than this is a 400.
pub(crate) const MAX_DEPTH: usize = 100;

type Res<T> = Result<T, String>;

// ---- query string ---------------------------------------------------------------

/// `%XX`-decodes one query component; `+` stays a plus (RFC 3986, not form encoding).
pub(crate) fn pct_decode(s: &str) -> Res<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .filter(|_| b[i + 1].is_ascii_hexdigit() && b[i + 2].is_ascii_hexdigit())
                .ok_or_else(|| "malformed percent-encoding in the query".to_string())?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "the query is not UTF-8 once decoded".to_string())
}

/// The query's `name=value` pairs, decoded, in order (empty pieces skipped).
pub(crate) fn query_options(raw: Option<&str>) -> Res<Vec<(String, String)>> {
    let mut out = Vec::new();
    for piece in raw.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = piece.split_once('=').unwrap_or((piece, ""));
        out.push((pct_decode(k)?, pct_decode(v)?));
    }
    Ok(out)
}

/// Percent-encodes every byte but the RFC 3986 unreserved ones.
pub(crate) fn pct_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

// ---- lexer ----------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Guid(String),
    Int(i64),
    Date(i64),
    LParen,
    RParen,
    Comma,
}

fn is_ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_'
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// A GUID literal at the start of `b` (exactly 8-4-4-4-12 hex digits, not followed
/// by an identifier character), lowercased.
pub(crate) fn guid_at(b: &[u8]) -> Option<String> {
    let g = b.get(..36)?;
    let ok = g.iter().enumerate().all(|(i, c)| match i {
        8 | 13 | 18 | 23 => *c == b'-',
        _ => c.is_ascii_hexdigit(),
    });
    if !ok || b.get(36).is_some_and(|c| is_ident(*c) || *c == b'-') {
        return None;
    }
    std::str::from_utf8(g).ok().map(str::to_ascii_lowercase)
}

/// A whole string that is a GUID literal.
pub(crate) fn parse_guid(s: &str) -> Option<String> {
    if s.len() != 36 {
        return None;
    }
    guid_at(s.as_bytes())
}

fn lex(src: &str) -> Res<Vec<Tok>> {
    let b = src.as_bytes();
    let mut toks = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if toks.len() > MAX_NODES * 2 {
            return Err("the expression is too long".into());
        }
        let c = b[i];
        match c {
            b' ' | b'\t' => i += 1,
            b'(' => {
                toks.push(Tok::LParen);
                i += 1;
            }
            b')' => {
                toks.push(Tok::RParen);
                i += 1;
            }
            b',' => {
                toks.push(Tok::Comma);
                i += 1;
            }
            b'\'' => {
                let mut s = Vec::new();
                i += 1;
                loop {
                    match b.get(i) {
                        None => return Err("unterminated string literal".into()),
                        Some(b'\'') if b.get(i + 1) == Some(&b'\'') => {
                            s.push(b'\'');
                            i += 2;
                        }
                        Some(b'\'') => {
                            i += 1;
                            break;
                        }
                        Some(x) => {
                            s.push(*x);
                            i += 1;
                        }
                    }
                }
                // the source is a str and quotes are ASCII: the bytes are UTF-8
                toks.push(Tok::Str(String::from_utf8_lossy(&s).into_owned()));
            }
            _ => {
                if let Some(g) = guid_at(&b[i..]) {
                    toks.push(Tok::Guid(g));
                    i += 36;
                    continue;
                }
                let digits4 = b.len() >= i + 5
                    && b[i..i + 4].iter().all(u8::is_ascii_digit)
                    && b[i + 4] == b'-';
                if digits4 {
                    let n = b[i..]
                        .iter()
                        .take_while(|c| c.is_ascii_digit() || b"-:.TZ+".contains(c))
                        .count();
                    let text = &src[i..i + n];
                    let ns = parse_iso(text, 7)
                        .ok_or_else(|| format!("'{text}' is not a valid Edm.DateTimeOffset"))?;
                    let ticks =
                        i64::try_from(ns / 100).map_err(|_| format!("'{text}' is out of range"))?;
                    toks.push(Tok::Date(ticks));
                    i += n;
                    continue;
                }
                if c.is_ascii_digit() || (c == b'-' && b.get(i + 1).is_some_and(u8::is_ascii_digit))
                {
                    let start = i;
                    i += 1;
                    while b.get(i).is_some_and(u8::is_ascii_digit) {
                        i += 1;
                    }
                    if b.get(i).is_some_and(|c| is_ident(*c) || *c == b'.') {
                        return Err(format!("unsupported numeric literal at position {start}"));
                    }
                    let n: i64 = src[start..i].parse().map_err(|_| {
                        format!("integer literal at position {start} is out of range")
                    })?;
                    toks.push(Tok::Int(n));
                    continue;
                }
                if is_ident_start(c) {
                    let start = i;
                    while b.get(i).is_some_and(|c| is_ident(*c)) {
                        i += 1;
                    }
                    toks.push(Tok::Ident(src[start..i].to_string()));
                    continue;
                }
                return Err(format!("syntax error at position {i}"));
            }
        }
    }
    Ok(toks)
}

// ---- AST ------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Cmp {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum StrFn {
    Contains,
    StartsWith,
    EndsWith,
}

#[derive(Clone, Debug, PartialEq)]
enum Lit {
    Null,
    Str(String),
    Guid(String),
    Int(i64),
    Date(i64),
    Bool(bool),
}

impl Lit {
    fn ty(&self) -> Option<Ty> {
        match self {
            Lit::Null => None,
            Lit::Str(_) => Some(Ty::Str),
            Lit::Guid(_) => Some(Ty::Guid),
            Lit::Int(_) => Some(Ty::Int),
            Lit::Date(_) => Some(Ty::Date),
            Lit::Bool(_) => Some(Ty::Bool),
        }
    }
    fn value(&self) -> V<'_> {
        match self {
            Lit::Null => V::Null,
            Lit::Str(s) => V::Str(Cow::Borrowed(s)),
            Lit::Guid(s) => V::Guid(Cow::Borrowed(s)),
            Lit::Int(i) => V::Int(*i),
            Lit::Date(d) => V::Date(*d),
            Lit::Bool(b) => V::Bool(*b),
        }
    }
}

#[derive(Clone, Debug)]
enum Node {
    Prop(usize),
    Lit(Lit),
    Lower(Box<Node>),
    Upper(Box<Node>),
    StrFn(StrFn, Box<Node>, Box<Node>),
    Cmp(Cmp, Box<Node>, Box<Node>),
    In(Box<Node>, Vec<Lit>),
    And(Vec<Node>),
    Or(Vec<Node>),
    Not(Box<Node>),
}

/// A parsed `$filter`.
#[derive(Debug)]
pub(crate) struct Filter(Node);

/// A parsed `$orderby`: (expression, descending), ties broken by the caller.
pub(crate) struct OrderBy(Vec<(Node, bool)>);

struct Parser<'p> {
    toks: Vec<Tok>,
    pos: usize,
    nodes: usize,
    depth: usize,
    props: &'p [(&'static str, Ty)],
}

fn ty_name(t: Option<Ty>) -> &'static str {
    t.map_or("null", Ty::edm)
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn peek_kw(&self, kw: &str) -> bool {
        matches!(self.peek(), Some(Tok::Ident(s)) if s == kw)
    }

    fn bump(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        if t.is_some() {
            self.pos += 1;
        }
        t
    }

    fn expect(&mut self, t: Tok, what: &str) -> Res<()> {
        match self.bump() {
            Some(x) if x == t => Ok(()),
            Some(x) => Err(format!("expected {what}, found {}", describe(&x))),
            None => Err(format!("expected {what} at the end of the expression")),
        }
    }

    fn node(&mut self, n: Node) -> Res<Node> {
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            return Err("the expression is too complex".into());
        }
        Ok(n)
    }

    fn enter(&mut self) -> Res<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err("the expression is nested too deeply".into());
        }
        Ok(())
    }

    /// The type of a node: `None` for the null literal.
    fn ty(&self, n: &Node) -> Option<Ty> {
        match n {
            Node::Prop(i) => self.props.get(*i).map(|p| p.1),
            Node::Lit(l) => l.ty(),
            Node::Lower(_) | Node::Upper(_) => Some(Ty::Str),
            _ => Some(Ty::Bool),
        }
    }

    fn boolean(&self, n: &Node, ctx: &str) -> Res<()> {
        match self.ty(n) {
            Some(Ty::Bool) => Ok(()),
            t => Err(format!(
                "the operand of '{ctx}' must be Edm.Boolean, found {}",
                ty_name(t)
            )),
        }
    }

    fn or(&mut self) -> Res<Node> {
        let first = self.and()?;
        if !self.peek_kw("or") {
            return Ok(first);
        }
        self.boolean(&first, "or")?;
        let mut xs = vec![first];
        while self.peek_kw("or") {
            self.bump();
            let n = self.and()?;
            self.boolean(&n, "or")?;
            xs.push(n);
        }
        self.node(Node::Or(xs))
    }

    fn and(&mut self) -> Res<Node> {
        let first = self.comparison()?;
        if !self.peek_kw("and") {
            return Ok(first);
        }
        self.boolean(&first, "and")?;
        let mut xs = vec![first];
        while self.peek_kw("and") {
            self.bump();
            let n = self.comparison()?;
            self.boolean(&n, "and")?;
            xs.push(n);
        }
        self.node(Node::And(xs))
    }

    fn comparison(&mut self) -> Res<Node> {
        let left = self.unary()?;
        let op = match self.peek() {
            Some(Tok::Ident(s)) => match s.as_str() {
                "eq" => Cmp::Eq,
                "ne" => Cmp::Ne,
                "gt" => Cmp::Gt,
                "ge" => Cmp::Ge,
                "lt" => Cmp::Lt,
                "le" => Cmp::Le,
                "in" => {
                    self.bump();
                    return self.in_list(left);
                }
                "and" | "or" => return Ok(left),
                other => return Err(format!("unknown operator '{other}'")),
            },
            _ => return Ok(left),
        };
        self.bump();
        let right = self.unary()?;
        let (lt, rt) = (self.ty(&left), self.ty(&right));
        match (lt, rt) {
            (None, None) => {}
            (None, Some(_)) | (Some(_), None) => {
                if !matches!(op, Cmp::Eq | Cmp::Ne) {
                    return Err("null can only be compared with eq or ne".into());
                }
            }
            (Some(a), Some(b)) if a == b => {}
            (Some(a), Some(b)) => {
                return Err(format!(
                    "a binary operator with incompatible types was detected: {} and {}",
                    a.edm(),
                    b.edm()
                ))
            }
        }
        self.node(Node::Cmp(op, Box::new(left), Box::new(right)))
    }

    fn in_list(&mut self, left: Node) -> Res<Node> {
        let lt = self.ty(&left);
        if lt == Some(Ty::Bool) || lt.is_none() {
            return Err("the left operand of 'in' must be a property value".into());
        }
        self.expect(Tok::LParen, "'(' after 'in'")?;
        let mut lits = Vec::new();
        loop {
            let lit = self.literal()?;
            if lit.ty().is_some() && lit.ty() != lt {
                return Err(format!(
                    "the list of 'in' holds {} where {} is expected",
                    ty_name(lit.ty()),
                    ty_name(lt)
                ));
            }
            lits.push(lit);
            self.node(Node::Lit(Lit::Null))?;
            match self.bump() {
                Some(Tok::Comma) => continue,
                Some(Tok::RParen) => break,
                Some(t) => return Err(format!("expected ',' or ')', found {}", describe(&t))),
                None => return Err("unterminated 'in' list".into()),
            }
        }
        self.node(Node::In(Box::new(left), lits))
    }

    fn literal(&mut self) -> Res<Lit> {
        match self.bump() {
            Some(Tok::Str(s)) => Ok(Lit::Str(s)),
            Some(Tok::Guid(g)) => Ok(Lit::Guid(g)),
            Some(Tok::Int(i)) => Ok(Lit::Int(i)),
            Some(Tok::Date(d)) => Ok(Lit::Date(d)),
            Some(Tok::Ident(s)) if s == "null" => Ok(Lit::Null),
            Some(Tok::Ident(s)) if s == "true" => Ok(Lit::Bool(true)),
            Some(Tok::Ident(s)) if s == "false" => Ok(Lit::Bool(false)),
            Some(t) => Err(format!("expected a literal, found {}", describe(&t))),
            None => Err("expected a literal at the end of the expression".into()),
        }
    }

    fn unary(&mut self) -> Res<Node> {
        if self.peek_kw("not") {
            self.bump();
            self.enter()?;
            let inner = self.unary()?;
            self.depth -= 1;
            self.boolean(&inner, "not")?;
            return self.node(Node::Not(Box::new(inner)));
        }
        self.primary()
    }

    fn primary(&mut self) -> Res<Node> {
        match self.bump() {
            Some(Tok::LParen) => {
                self.enter()?;
                let inner = self.or()?;
                self.depth -= 1;
                self.expect(Tok::RParen, "')'")?;
                Ok(inner)
            }
            Some(Tok::Ident(name)) => {
                if self.peek() == Some(&Tok::LParen) {
                    self.bump();
                    return self.call(&name);
                }
                match name.as_str() {
                    "null" => self.node(Node::Lit(Lit::Null)),
                    "true" => self.node(Node::Lit(Lit::Bool(true))),
                    "false" => self.node(Node::Lit(Lit::Bool(false))),
                    _ => match self.props.iter().position(|(n, _)| *n == name) {
                        Some(i) => self.node(Node::Prop(i)),
                        None => Err(format!("could not find a property named '{name}'")),
                    },
                }
            }
            Some(Tok::Str(s)) => self.node(Node::Lit(Lit::Str(s))),
            Some(Tok::Guid(g)) => self.node(Node::Lit(Lit::Guid(g))),
            Some(Tok::Int(i)) => self.node(Node::Lit(Lit::Int(i))),
            Some(Tok::Date(d)) => self.node(Node::Lit(Lit::Date(d))),
            Some(t) => Err(format!("unexpected {}", describe(&t))),
            None => Err("unexpected end of the expression".into()),
        }
    }

    fn string_arg(&mut self, fname: &str) -> Res<Node> {
        let n = self.or()?;
        match self.ty(&n) {
            Some(Ty::Str) => Ok(n),
            t => Err(format!(
                "the argument of '{fname}' must be Edm.String, found {}",
                ty_name(t)
            )),
        }
    }

    fn call(&mut self, name: &str) -> Res<Node> {
        self.enter()?;
        let node = match name {
            "tolower" | "toupper" => {
                let a = self.string_arg(name)?;
                self.expect(Tok::RParen, "')'")?;
                if name == "tolower" {
                    Node::Lower(Box::new(a))
                } else {
                    Node::Upper(Box::new(a))
                }
            }
            "contains" | "startswith" | "endswith" => {
                let a = self.string_arg(name)?;
                self.expect(Tok::Comma, "','")?;
                let b = self.string_arg(name)?;
                self.expect(Tok::RParen, "')'")?;
                let f = match name {
                    "contains" => StrFn::Contains,
                    "startswith" => StrFn::StartsWith,
                    _ => StrFn::EndsWith,
                };
                Node::StrFn(f, Box::new(a), Box::new(b))
            }
            other => return Err(format!("an unknown function with name '{other}' was found")),
        };
        self.depth -= 1;
        self.node(node)
    }
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::Ident(s) => format!("'{s}'"),
        Tok::Str(_) => "a string literal".into(),
        Tok::Guid(_) => "a GUID literal".into(),
        Tok::Int(_) => "an integer literal".into(),
        Tok::Date(_) => "a DateTimeOffset literal".into(),
        Tok::LParen => "'('".into(),
        Tok::RParen => "')'".into(),
        Tok::Comma => "','".into(),
    }
}

fn parser<E: Entity>(src: &str) -> Res<Parser<'static>> {
    Ok(Parser {
        toks: lex(src)?,
        pos: 0,
        nodes: 0,
        depth: 0,
        props: E::PROPS,
    })
}

pub(crate) fn parse_filter<E: Entity>(src: &str) -> Res<Filter> {
    let mut p = parser::<E>(src)?;
    if p.toks.is_empty() {
        return Err("$filter is empty".into());
    }
    let n = p.or()?;
    if let Some(t) = p.peek() {
        return Err(format!("unexpected {} after the expression", describe(t)));
    }
    p.boolean(&n, "$filter")?;
    Ok(Filter(n))
}

pub(crate) fn parse_orderby<E: Entity>(src: &str) -> Res<OrderBy> {
    let mut p = parser::<E>(src)?;
    let mut items: Vec<(Node, bool)> = Vec::new();
    let mut seen: Vec<usize> = Vec::new();
    loop {
        if p.peek().is_none() {
            return Err("$orderby has an empty item".into());
        }
        let n = p.unary()?;
        match p.ty(&n) {
            Some(Ty::Bool) | None if !matches!(n, Node::Prop(_)) => {
                return Err("$orderby items must be property values".into())
            }
            _ => {}
        }
        if let Node::Prop(i) = n {
            if seen.contains(&i) {
                let name = E::PROPS.get(i).map_or("", |p| p.0);
                return Err(format!(
                    "duplicate property named '{name}' is not supported in $orderby"
                ));
            }
            seen.push(i);
        }
        let desc = match p.peek() {
            Some(Tok::Ident(s)) if s == "asc" => {
                p.bump();
                false
            }
            Some(Tok::Ident(s)) if s == "desc" => {
                p.bump();
                true
            }
            _ => false,
        };
        items.push((n, desc));
        match p.bump() {
            None => break,
            Some(Tok::Comma) => continue,
            Some(t) => return Err(format!("unexpected {} in $orderby", describe(&t))),
        }
    }
    Ok(OrderBy(items))
}

/// `$select`: property indexes (`*` = every property).
pub(crate) fn parse_select<E: Entity>(src: &str) -> Res<Vec<usize>> {
    let mut out = Vec::new();
    for item in src.split(',').map(str::trim) {
        if item == "*" {
            out.extend(0..E::PROPS.len());
            continue;
        }
        let i = prop_index::<E>(item)
            .ok_or_else(|| format!("could not find a property named '{item}'"))?;
        out.push(i);
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

// ---- evaluation -----------------------------------------------------------------

fn eval<'e, E: Entity>(n: &'e Node, e: &'e E) -> V<'e> {
    match n {
        Node::Prop(i) => e.prop(*i),
        Node::Lit(l) => l.value(),
        Node::Lower(a) => match eval(a, e) {
            V::Str(s) => V::Str(Cow::Owned(s.to_lowercase())),
            _ => V::Null,
        },
        Node::Upper(a) => match eval(a, e) {
            V::Str(s) => V::Str(Cow::Owned(s.to_uppercase())),
            _ => V::Null,
        },
        Node::StrFn(f, a, b) => match (eval(a, e), eval(b, e)) {
            (V::Str(x), V::Str(y)) => V::Bool(match f {
                StrFn::Contains => x.contains(y.as_ref()),
                StrFn::StartsWith => x.starts_with(y.as_ref()),
                StrFn::EndsWith => x.ends_with(y.as_ref()),
            }),
            // a canonical function of null is null ("unknown")
            _ => V::Null,
        },
        Node::Cmp(op, a, b) => {
            let (x, y) = (eval(a, e), eval(b, e));
            V::Bool(match (op, &x, &y) {
                (Cmp::Eq, _, _) => x == y,
                (Cmp::Ne, _, _) => x != y,
                (_, V::Null, _) | (_, _, V::Null) => false,
                (op, x, y) => {
                    let o = order(x, y);
                    match op {
                        Cmp::Gt => o == Ordering::Greater,
                        Cmp::Ge => o != Ordering::Less,
                        Cmp::Lt => o == Ordering::Less,
                        _ => o != Ordering::Greater,
                    }
                }
            })
        }
        Node::In(a, lits) => {
            let x = eval(a, e);
            V::Bool(lits.iter().any(|l| l.value() == x))
        }
        // three-valued: null is "unknown", as OData specifies for and, or and not
        Node::And(xs) => {
            let mut unknown = false;
            for x in xs {
                match eval(x, e) {
                    V::Bool(true) => {}
                    V::Bool(false) => return V::Bool(false),
                    _ => unknown = true,
                }
            }
            if unknown {
                V::Null
            } else {
                V::Bool(true)
            }
        }
        Node::Or(xs) => {
            let mut unknown = false;
            for x in xs {
                match eval(x, e) {
                    V::Bool(true) => return V::Bool(true),
                    V::Bool(false) => {}
                    _ => unknown = true,
                }
            }
            if unknown {
                V::Null
            } else {
                V::Bool(false)
            }
        }
        Node::Not(a) => match eval(a, e) {
            V::Bool(b) => V::Bool(!b),
            _ => V::Null,
        },
    }
}

fn truth<E: Entity>(n: &Node, e: &E) -> bool {
    matches!(eval(n, e), V::Bool(true))
}

/// Null first, then by value (ordinal for strings and GUIDs).
fn order(a: &V<'_>, b: &V<'_>) -> Ordering {
    match (a, b) {
        (V::Null, V::Null) => Ordering::Equal,
        (V::Null, _) => Ordering::Less,
        (_, V::Null) => Ordering::Greater,
        (V::Str(x), V::Str(y)) | (V::Guid(x), V::Guid(y)) => x.cmp(y),
        (V::Int(x), V::Int(y)) | (V::Date(x), V::Date(y)) => x.cmp(y),
        (V::Bool(x), V::Bool(y)) => x.cmp(y),
        _ => Ordering::Equal,
    }
}

impl Filter {
    pub fn matches<E: Entity>(&self, e: &E) -> bool {
        truth(&self.0, e)
    }
}

impl OrderBy {
    /// Compares by every item in turn (`Equal` when they all tie).
    pub fn cmp<E: Entity>(&self, a: &E, b: &E) -> Ordering {
        for (n, desc) in &self.0 {
            let o = order(&eval(n, a), &eval(n, b));
            let o = if *desc { o.reverse() } else { o };
            if o != Ordering::Equal {
                return o;
            }
        }
        Ordering::Equal
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct P {
        name: Option<&'static str>,
        n: i64,
        id: &'static str,
    }

    impl Entity for P {
        const PROPS: &'static [(&'static str, Ty)] = &[
            ("Id", Ty::Guid),
            ("Name", Ty::Str),
            ("N", Ty::Int),
            ("At", Ty::Date),
        ];
        fn prop(&self, i: usize) -> V<'_> {
            match i {
                0 => V::Guid(Cow::Borrowed(self.id)),
                1 => self.name.map_or(V::Null, |s| V::Str(Cow::Borrowed(s))),
                2 => V::Int(self.n),
                _ => V::Date(17_958_582_000_000_000),
            }
        }
    }

    const G: &str = "6f1d3c2a-8b4e-4f6a-9c1d-2e3f4a5b6c01";

    fn rows() -> Vec<P> {
        vec![
            P {
                name: Some("O'Brien"),
                n: 1,
                id: G,
            },
            P {
                name: Some("100%_Sure"),
                n: 2,
                id: "00000000-0000-4000-8000-000000000002",
            },
            P {
                name: None,
                n: 3,
                id: "00000000-0000-4000-8000-000000000003",
            },
            P {
                name: Some("Back\\slash"),
                n: 4,
                id: "00000000-0000-4000-8000-000000000004",
            },
            P {
                name: Some("ADA"),
                n: 5,
                id: "00000000-0000-4000-8000-000000000005",
            },
            P {
                name: Some("Ada"),
                n: 6,
                id: "00000000-0000-4000-8000-000000000006",
            },
        ]
    }

    fn hits(f: &str) -> Vec<i64> {
        let f = parse_filter::<P>(f).unwrap_or_else(|e| panic!("{f}: {e}"));
        rows()
            .into_iter()
            .filter(|r| f.matches(r))
            .map(|r| r.n)
            .collect()
    }

    #[test]
    fn filters_evaluate_as_odata_says() {
        assert_eq!(hits("Name eq 'O''Brien'"), [1]);
        assert_eq!(hits("contains(Name,'%_')"), [2]);
        assert_eq!(hits("contains(Name,'_')"), [2]);
        assert_eq!(hits("contains(Name,'\\')"), [4]);
        assert_eq!(hits("contains(Name,'Ada')"), [6]);
        assert_eq!(hits("tolower(Name) eq 'ada'"), [5, 6]);
        assert_eq!(hits("contains(toupper(Name),'ADA')"), [5, 6]);
        assert_eq!(hits("Name eq null"), [3]);
        assert_eq!(hits("Name ne 'Ada'"), [1, 2, 3, 4, 5]);
        assert_eq!(hits("Name gt 'A'"), [1, 4, 5, 6]);
        assert_eq!(hits("N in (1, 3,5)"), [1, 3, 5]);
        assert_eq!(hits("not (N le 4) or N eq 1"), [1, 5, 6]);
        assert_eq!(hits("not contains(Name,'a') and N lt 6"), [1, 2, 5]);
        assert_eq!(hits(&format!("Id eq {}", G.to_uppercase())), [1]);
        assert_eq!(
            hits("startswith(Name,'Back') or endswith(Name,'Sure')"),
            [2, 4]
        );
        assert_eq!(
            hits("At eq 2026-11-28T09:30:00Z and N ge -1"),
            [1, 2, 3, 4, 5, 6]
        );
        assert_eq!(
            hits("At gt 2026-11-28T09:30:00.0000001Z"),
            Vec::<i64>::new()
        );
        assert_eq!(hits("((N eq 2))"), [2]);
        assert_eq!(hits("true"), [1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn hostile_filters_are_errors_not_panics() {
        let deep = format!("{}N eq 1{}", "(".repeat(500), ")".repeat(500));
        let nots = format!("{}N eq 1", "not ".repeat(500));
        let wide = vec!["N eq 1"; 3000].join(" or ");
        let long_in = format!("N in ({})", vec!["1"; 3000].join(","));
        let bad: Vec<String> = [
            "",
            " ",
            "Name",
            "Nam eq 'x'",
            "name eq 'x'",
            "Name eq 'x",
            "Name eq x'",
            "Name eq 5",
            "N eq 'x'",
            "Id eq '6f1d3c2a-8b4e-4f6a-9c1d-2e3f4a5b6c01'",
            "Name Eq 'x'",
            "Name like 'x'",
            "Name eq",
            "eq 'x'",
            "Name eq 'x' and",
            "Name eq 'x' or or N eq 1",
            "(Name eq 'x'",
            "Name eq 'x')",
            "contains(Name)",
            "contains(Name,'a','b')",
            "Contains(Name,'a')",
            "substringof('a',Name)",
            "contains(N,'1')",
            "contains(Name,1)",
            "tolower(N) eq 'a'",
            "not Name eq 'x'",
            "not N",
            "N gt null",
            "N in ()",
            "N in ('a')",
            "N in 1",
            "N eq 1.5",
            "N eq 1e3",
            "N eq 99999999999999999999",
            "N eq --1",
            "At eq 2026-13-01T00:00:00Z",
            "At eq 2026-11-28T09:30:00",
            "At eq 2026-11-28T09:30:00.12345678Z",
            "At eq 2026-11-28",
            "Name eq 'x' N eq 1",
            "Name/Foo eq 'x'",
            "Name eq \"x\"",
            "N eq 1;",
            "Name eq 'x' and N",
            "\u{0}",
            "é eq 'x'",
            "'a' eq 'a' eq 'a'",
            "Id eq 6f1d3c2a-8b4e-4f6a-9c1d-2e3f4a5b6c0",
            "Id eq 6f1d3c2a-8b4e-4f6a-9c1d-2e3f4a5b6c011",
            "((((",
            "))))",
            ",",
            "N eq 1,",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([deep, nots, wide, long_in])
        .collect();
        for f in &bad {
            let r = parse_filter::<P>(f);
            assert!(r.is_err(), "{f:?} must be rejected, parsed as {r:?}");
        }
    }

    #[test]
    fn random_inputs_never_panic() {
        let alphabet: Vec<&str> = vec![
            "Name", "N", "Id", "At", " ", "(", ")", ",", "'", "''", "eq", "ne", "gt", "and", "or",
            "not", "in", "null", "true", "contains", "tolower", "'x'", "1", "-", "2026-", "T", ":",
            "Z", "+", ".", "%", "_", "\\", G, "é", "\u{0}", "asc", "desc",
        ];
        let mut state: u64 = 0x5EED;
        for _ in 0..20_000 {
            let mut s = String::new();
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let len = (state >> 59) as usize;
            for _ in 0..len {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                s.push_str(alphabet[(state >> 33) as usize % alphabet.len()]);
            }
            let f = parse_filter::<P>(&s);
            if let Ok(f) = f {
                for r in rows() {
                    let _ = f.matches(&r);
                }
            }
            let _ = parse_orderby::<P>(&s);
            let _ = parse_select::<P>(&s);
        }
    }

    #[test]
    fn orderby_and_select() {
        let o = parse_orderby::<P>("Name desc, N").unwrap();
        let mut rs = rows();
        rs.sort_by(|a, b| o.cmp(a, b));
        let ns: Vec<i64> = rs.iter().map(|r| r.n).collect();
        assert_eq!(
            ns,
            [1, 4, 6, 5, 2, 3],
            "ordinal, nulls first ascending so last descending"
        );
        assert!(parse_orderby::<P>("Name, Name desc").is_err());
        assert!(parse_orderby::<P>("Name sideways").is_err());
        assert!(parse_orderby::<P>("Name,").is_err());
        assert!(parse_orderby::<P>("").is_err());
        assert!(parse_orderby::<P>("Nope").is_err());
        assert!(parse_orderby::<P>("tolower(Name) desc").is_ok());
        assert_eq!(parse_select::<P>("N, Name").unwrap(), [1, 2]);
        assert!(parse_select::<P>("N,").is_err());
        assert!(parse_select::<P>("name").is_err());
    }

    #[test]
    fn query_decoding_is_rfc3986() {
        assert_eq!(pct_decode("a+b%2B%27").unwrap(), "a+b+'");
        assert!(pct_decode("%2").is_err());
        assert!(pct_decode("%zz").is_err());
        assert!(pct_decode("%FF").is_err());
        assert!(pct_decode("%+1").is_err());
        let o = query_options(Some("$filter=Name%20eq%20'x'&&$top=5&x")).unwrap();
        assert_eq!(
            o,
            [
                ("$filter".to_string(), "Name eq 'x'".to_string()),
                ("$top".to_string(), "5".to_string()),
                ("x".to_string(), String::new())
            ]
        );
        assert_eq!(pct_encode("a b'(+)é~"), "a%20b%27%28%2B%29%C3%A9~");
        assert_eq!(pct_decode(&pct_encode("x%_'\\+ y")).unwrap(), "x%_'\\+ y");
    }
}
