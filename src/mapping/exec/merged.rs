//! Searches of a multi-source resource: each source paged on its own, merged by the
//! declared key.

use super::*;

impl Exec<'_> {
    pub(super) fn keep(&self, public: &Value) -> bool {
        match &self.res.keep_if_present {
            Some(f) => public.get(f).is_some_and(|v| !v.is_null()),
            None => true,
        }
    }

    /// A search over every source, merged newest first by the merge field. The cursor keeps,
    /// per source, the upstream page it is in and how many of that page's records were used.
    /// Opens the query's cursor (once), restores the filters and sort it was made for and
    /// checks those the client sent again; returns the cursor's state, if there is one.
    pub(super) fn open_cursor(&self, q: &mut Query, now: i64) -> Result<Option<Value>, Problem> {
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

    pub(super) async fn search_merged(&self, q: Query, now: i64) -> Result<Done, Problem> {
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
