//! A search: the filter dialect, the sort primitive and paging.

use super::*;

impl Compiler<'_> {
    pub(super) fn search(&mut self, s: &RawSearch) -> Option<(Search, String)> {
        let call = self.call(&s.call, None).map(|mut c| {
            c.headers = self.headers(&s.headers);
            c
        });
        let filters = match s.filters.as_str() {
            "dialect" => match &s.dialect {
                Some(d) => self.dialect(d)?,
                None => {
                    self.err(
                        s.filters.span(),
                        "filters: dialect needs a `dialect:` block (into, ops, literals)",
                    );
                    return None;
                }
            },
            "local" => {
                if let Some(d) = &s.dialect {
                    self.err(d.into.span(), "`filters: local` takes no `dialect:` block");
                }
                FilterDialect {
                    into: FilterInto::Params,
                    ops: Vec::new(),
                    literals: Vec::new(),
                    list_join: ",".into(),
                }
            }
            o => {
                self.err(
                    s.filters.span(),
                    format!("filters `{o}` must be dialect (with a `dialect:` block) or local"),
                );
                return None;
            }
        };
        let in_query = call.as_ref().is_some_and(|c| c.method == Method::Get);
        if let (true, FilterInto::List(p) | FilterInto::Object(p)) = (in_query, &filters.into) {
            self.err(
                s.filters.span(),
                format!("the dialect puts filters at the body pointer `{p}`, but a GET search has no body"),
            );
        }
        let sort = match &s.sort {
            None => SortStyle::Local,
            Some(r) => self.sort(r)?,
        };
        let p = &s.paging;
        let need = |v: &Option<String>, what: &str, c: &mut Self| -> Option<String> {
            if v.is_none() {
                c.err(
                    p.style.span(),
                    format!("paging style `{}` needs `{what}`", p.style.as_str()),
                );
            }
            v.clone()
        };
        let paging = match p.style.as_str() {
            "offset" => Paging::Offset {
                offset: need(&p.offset, "offset", self)?,
                limit: need(&p.limit, "limit", self)?,
            },
            "page" => Paging::Page {
                page: need(&p.page, "page", self)?,
                size: need(&p.limit, "limit", self)?,
            },
            "start_count" => Paging::StartCount {
                start: need(&p.offset, "offset", self)?,
                count: need(&p.limit, "limit", self)?,
                more: need(&p.more.as_ref().map(|m| m.to_string()), "more", self)?,
            },
            "token" => Paging::Token {
                token: need(&p.token, "token", self)?,
                limit: need(&p.limit, "limit", self)?,
                next: need(&p.next.as_ref().map(|m| m.to_string()), "next", self)?,
                more: p.more.as_ref().map(|m| m.to_string()),
            },
            "next_link" => {
                let Some(n) = &p.next else {
                    self.err(
                        p.style.span(),
                        "paging style next_link needs `next` (a pointer to the link, or link_header)",
                    );
                    return None;
                };
                let next = if n.as_str() == "link_header" {
                    NextFrom::LinkHeader
                } else {
                    NextFrom::Pointer(pointer(self.path, n, self.d)?)
                };
                let size = match &p.size {
                    None => None,
                    Some(r) => Some(self.inject(r, p.style.span())?),
                };
                Paging::NextLink { next, size }
            }
            "none" => Paging::None,
            o => {
                self.err(
                    p.style.span(),
                    format!("paging style `{o}` must be offset, page, start_count, token, next_link or none"),
                );
                return None;
            }
        };
        if p.size.is_some() && !matches!(paging, Paging::NextLink { .. }) {
            self.err(
                p.style.span(),
                "paging `size` belongs to style next_link (the other styles name their size parameter in `limit`)",
            );
        }
        let items = pointer(self.path, &s.items, self.d)?;
        let total = s.total.as_ref().and_then(|t| pointer(self.path, t, self.d));
        let constants = s
            .constants
            .iter()
            .map(|(k, v)| (k.clone(), scalar(v)))
            .collect();
        Some((
            Search {
                call: call?,
                filters,
                sort,
                paging,
                max: p.max.as_ref().map(|m| **m).unwrap_or(100).max(1),
                window: p.window.as_ref().map(|w| **w),
                items,
                total,
                default_sort: (0, true),
                constants,
            },
            s.default_sort.to_string(),
        ))
    }

    /// The sort primitive: `fixed`, `local`, or `upstream` with the members it sets.
    pub(super) fn sort(&mut self, r: &RawSort) -> Option<SortStyle> {
        let sp = *r.style.span();
        match (r.style.as_str(), &r.set) {
            ("fixed", None) => return Some(SortStyle::Fixed),
            ("local", None) => return Some(SortStyle::Local),
            ("fixed" | "local", Some(set)) => {
                self.err(
                    set.span(),
                    format!(
                        "sort style `{}` sends nothing: `set` belongs to style upstream",
                        r.style.as_str()
                    ),
                );
                return None;
            }
            ("upstream", _) => {}
            (o, _) => {
                self.err(
                    &sp,
                    format!("sort style `{o}` must be upstream, fixed or local"),
                );
                return None;
            }
        }
        let Some(set) = &r.set else {
            self.err(
                &sp,
                "sort style upstream needs `set`: member → template (`{field}`, `{dir}`, `{desc}`)",
            );
            return None;
        };
        let Some(m) = set.as_object().filter(|m| !m.is_empty()) else {
            self.err(
                set.span(),
                "sort `set` must be a map of members to templates",
            );
            return None;
        };
        let mut members = Vec::new();
        for (k, v) in m {
            match Json::parse(&template(v), SORT_HOLES) {
                Ok(t) => members.push((k.clone(), t)),
                Err(e) => self.err(set.span(), format!("sort `{k}`: {e}")),
            }
        }
        if !members.iter().any(|(_, t)| t.uses(Hole::Field)) {
            self.err(set.span(), "sort `set` never sends `{field}`");
        }
        if !members
            .iter()
            .any(|(_, t)| t.uses(Hole::Dir) || t.uses(Hole::Desc))
        {
            self.err(
                set.span(),
                "sort `set` never sends the direction (`{dir}` or `{desc}`)",
            );
        }
        if (r.asc.is_some() || r.desc.is_some()) && !members.iter().any(|(_, t)| t.uses(Hole::Dir))
        {
            self.err(
                &sp,
                "sort `asc`/`desc` are the words of `{dir}`, which `set` does not use",
            );
        }
        Some(SortStyle::Upstream(SortSet {
            members,
            asc: r.asc.clone().unwrap_or_else(|| "asc".into()),
            desc: r.desc.clone().unwrap_or_else(|| "desc".into()),
        }))
    }

    /// Where a value the edge chooses goes: a parameter, or a header with a template.
    pub(super) fn inject(&mut self, r: &RawInject, span: &Span) -> Option<Inject> {
        match (&r.param, &r.header, &r.value) {
            (Some(p), None, None) => Some(Inject::Param(p.to_string())),
            (None, Some(h), v) => {
                let name = header_name(self.path, h, self.d)?;
                let text = v.as_ref().map(|v| v.as_str()).unwrap_or("{size}");
                match parse_tpl(text) {
                    Ok(t) if t.uses(Var::Size) => Some(Inject::Header(name, t)),
                    Ok(_) => {
                        self.err(
                            v.as_ref().map(|v| v.span()).unwrap_or(h.span()),
                            "the size header's `value` needs `{size}`",
                        );
                        None
                    }
                    Err(e) => {
                        self.err(v.as_ref().map(|v| v.span()).unwrap_or(h.span()), e);
                        None
                    }
                }
            }
            _ => {
                self.err(
                    span,
                    "paging `size` is `{param: <name>}` or `{header: <name>, value: \"…{size}…\"}`",
                );
                None
            }
        }
    }

    pub(super) fn escapes(
        &mut self,
        m: &IndexMap<String, String>,
        span: &Span,
    ) -> Vec<(char, String)> {
        let mut out = Vec::new();
        for (k, v) in m {
            let mut chars = k.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) => out.push((c, v.clone())),
                _ => self.err(span, format!("escape `{k}`: one character per entry")),
            }
        }
        out
    }

    /// A filter dialect: each operator's clause templates, checked now.
    pub(super) fn dialect(&mut self, r: &RawDialect) -> Option<FilterDialect> {
        let span = *r.into.span();
        let into = match r.into.as_str() {
            "params" => FilterInto::Params,
            o if o.starts_with("param:") && o.len() > 6 => FilterInto::Param {
                name: o[6..].to_string(),
                join: r.join.clone().unwrap_or_else(|| " and ".into()),
            },
            o if o.starts_with("list:/") => FilterInto::List(o[5..].to_string()),
            o if o.starts_with("object:/") => FilterInto::Object(o[7..].to_string()),
            o => {
                self.err(
                    &span,
                    format!("dialect into `{o}` must be param:<name>, params, list:<pointer> or object:<pointer>"),
                );
                return None;
            }
        };
        if r.join.is_some() && !matches!(into, FilterInto::Param { .. }) {
            self.err(&span, "dialect `join` belongs to into param:<name> (the other forms send each clause on its own)");
        }
        let mut ops = Vec::new();
        for (name, o) in &r.ops {
            if o.local {
                self.err(
                    &op_span(o, span),
                    format!("`{name}`: `local` belongs to a field's filter_ops (an operator the dialect lacks is local already)"),
                );
                continue;
            }
            if let Some((op, render)) = self.op_render(name, o, &into, span) {
                ops.push((op, Arc::new(render)));
            }
        }
        let mut literals = Vec::new();
        for (k, l) in &r.literals {
            if ![
                "string",
                "number",
                "boolean",
                "timestamp",
                "date",
                "id",
                "null",
            ]
            .contains(&k.as_str())
            {
                self.err(
                    &span,
                    format!("literal type `{k}` is unknown (string, number, boolean, timestamp, date, id, null)"),
                );
                continue;
            }
            let escape = self.escapes(&l.escape, &span);
            literals.push((
                k.clone(),
                Literal {
                    quote: l.quote.clone().unwrap_or_default(),
                    escape,
                },
            ));
        }
        Some(FilterDialect {
            into,
            ops,
            literals,
            list_join: r.list_join.clone().unwrap_or_else(|| ",".into()),
        })
    }

    /// One operator's rendering in the dialect's form (`into`): its clauses parsed now.
    pub(super) fn op_render(
        &mut self,
        name: &str,
        o: &RawOp,
        into: &FilterInto,
        span: Span,
    ) -> Option<(Op, OpRender)> {
        let ospan = op_span(o, span);
        let Some(op) = Op::parse(name) else {
            self.err(
                &ospan,
                format!(
                    "dialect operator `{name}` is unknown ({})",
                    Op::ALL.map(Op::name).join(", ")
                ),
            );
            return None;
        };
        let texts: Vec<&Spanned<String>> =
            o.clause.iter().chain(o.clauses.iter().flatten()).collect();
        let objects: Vec<&Spanned<Value>> =
            o.object.iter().chain(o.objects.iter().flatten()).collect();
        let mut clauses = Vec::new();
        let mut ok = true;
        match (into, objects.is_empty(), texts.is_empty()) {
            (FilterInto::List(_), false, true) => {
                for obj in objects {
                    match tpl::Json::parse(&template(obj), FILTER_HOLES) {
                        Ok(j) => clauses.push(Clause::Object(j)),
                        Err(e) => {
                            self.err(obj.span(), e);
                            ok = false;
                        }
                    }
                }
            }
            (FilterInto::List(_), _, _) => {
                self.err(
                    &ospan,
                    format!("`{name}`: a `list:` dialect renders each clause as an `object` (or `objects`)"),
                );
                return None;
            }
            (_, true, false) => {
                for t in texts {
                    let pair = matches!(into, FilterInto::Params | FilterInto::Object(_));
                    let parsed = if pair {
                        match t.split_once('=') {
                            Some((k, v)) if !k.is_empty() => {
                                Text::parse(k, FILTER_HOLES).and_then(|k| {
                                    Text::parse(v, FILTER_HOLES).map(|v| Clause::Pair(k, v))
                                })
                            }
                            _ => Err("a `params`/`object:` clause is `key=value` (`filter[{field}][eq]={value}`)".to_string()),
                        }
                    } else {
                        Text::parse(t, FILTER_HOLES).map(Clause::Text)
                    };
                    match parsed {
                        Ok(c) => clauses.push(c),
                        Err(e) => {
                            self.err(t.span(), e);
                            ok = false;
                        }
                    }
                }
            }
            _ => {
                self.err(
                    &ospan,
                    format!("`{name}` needs `clause` or `clauses` (text), or `object`/`objects` with list:"),
                );
                return None;
            }
        }
        let needs = match op {
            Op::Between => Some(Hole::High),
            Op::In | Op::NotIn if !o.each => Some(Hole::Values),
            _ => None,
        };
        let uses = |h: Hole| {
            clauses.iter().any(|c| match c {
                Clause::Text(t) => t.uses(h),
                Clause::Pair(k, v) => k.uses(h) || v.uses(h),
                Clause::Object(j) => j.uses(h),
            })
        };
        if let (true, Some(n)) = (ok, needs) {
            if !uses(n) {
                self.err(
                    &ospan,
                    format!("`{name}` needs `{{{}}}` in its clause", n.name()),
                );
            }
        }
        if o.each && !matches!(op, Op::In | Op::NotIn) {
            self.err(
                &ospan,
                format!("`{name}`: `each` is for in and not_in (one clause per value)"),
            );
        }
        let escape = self.escapes(&o.escape, &ospan);
        Some((
            op,
            OpRender {
                clauses,
                each: o.each,
                escape,
                lower: o.lower,
            },
        ))
    }

    /// A field's own operator renderings (`filter_ops`): `local`, or clauses in the form
    /// of the search's dialect. Each operator must also be in the field's `filter`.
    pub(super) fn own_ops(
        &mut self,
        m: &IndexMap<String, RawOp>,
        dialect: Option<&FilterDialect>,
        listed: &[Spanned<String>],
        field: &Span,
    ) -> Vec<(Op, Option<Arc<OpRender>>)> {
        let mut out = Vec::new();
        for (name, o) in m {
            let span = op_span(o, *field);
            if !listed.iter().any(|l| l.as_str() == name) {
                self.err(
                    &span,
                    format!("filter_ops: `{name}` is not in the field's `filter`"),
                );
                continue;
            }
            if o.local {
                let has_clause = o.clause.is_some()
                    || o.clauses.is_some()
                    || o.object.is_some()
                    || o.objects.is_some();
                if has_clause {
                    self.err(
                        &span,
                        format!("filter_ops: `{name}` is either `local` or clauses"),
                    );
                }
                if let Some(op) = Op::parse(name) {
                    out.push((op, None));
                }
                continue;
            }
            let Some(d) = dialect else { continue };
            if let Some((op, r)) = self.op_render(name, o, &d.into, span) {
                out.push((op, Some(Arc::new(r))));
            }
        }
        out
    }
}

/// The place of an operator's declaration (its first clause), for diagnostics.
pub(super) fn op_span(o: &RawOp, fallback: Span) -> Span {
    o.clause
        .as_ref()
        .map(|c| *c.span())
        .or(o.object.as_ref().map(|c| *c.span()))
        .or(o
            .clauses
            .as_ref()
            .and_then(|c| c.first())
            .map(|c| *c.span()))
        .or(o
            .objects
            .as_ref()
            .and_then(|c| c.first())
            .map(|c| *c.span()))
        .unwrap_or(fallback)
}
