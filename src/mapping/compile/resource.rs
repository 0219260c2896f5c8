//! A resource (single- or multi-source) and its operations.

use super::*;

impl Compiler<'_> {
    pub(super) fn check_service(&mut self, service: &Spanned<String>) {
        self.current = Some(service.to_string());
        if !self.services.contains_key(service.as_str()) {
            self.err(
                service.span(),
                format!(
                    "service `{}` is not declared in services.yaml",
                    service.as_str()
                ),
            );
        }
    }

    pub(super) fn id_kind(&mut self, id: &RawId) -> IdKind {
        match id.kind.as_ref().map(|k| k.as_str()) {
            None | Some("int") => IdKind::Int,
            Some("string") => IdKind::Str,
            Some(o) => {
                if let Some(k) = &id.kind {
                    self.err(k.span(), format!("id kind `{o}` must be int or string"));
                }
                IdKind::Int
            }
        }
    }

    /// A resource served by several sources: each source compiles like a single-source
    /// resource; the public schema is the first source's fields with every source's filters.
    pub(super) fn multi(&mut self, raw: &RawResource, sources: &[SourceEntry]) -> Option<Resource> {
        if raw.service.is_some() || raw.id.is_some() || raw.fields.is_some() || raw.search.is_some()
        {
            self.err(
                raw.resource.span(),
                "a resource with `sources` declares service, id, fields and operations per source",
            );
        }
        let Some(merge_sort) = &raw.merge_sort else {
            self.err(
                raw.resource.span(),
                "a resource with `sources` needs `merge_sort`",
            );
            return None;
        };
        let mut compiled: Vec<Arc<Resource>> = Vec::new();
        for (name, rs, fields) in sources {
            self.check_service(&rs.service);
            let id_kind = self.id_kind(&rs.id);
            let search = rs.search.as_ref().and_then(|s| self.search(s));
            let style = search.as_ref().map(|(s, _)| s.filters.clone());
            let mut fl = Vec::new();
            for (k, f) in fields {
                if let Some(field) = self.field(k.as_str(), k.span(), f, style.as_ref()) {
                    fl.push(field);
                }
            }
            if compiled.iter().any(|c| c.kind == *rs.kind) || *rs.kind == 0 {
                self.err(
                    rs.kind.span(),
                    format!("source `{name}`: kind must be unique and 1..=255"),
                );
            }
            let search = search.and_then(|(mut s, _)| {
                match fl.iter().position(|f| f.name == **merge_sort) {
                    Some(i) => {
                        s.default_sort = (i, true);
                        Some(s)
                    }
                    None => {
                        self.err(
                            merge_sort.span(),
                            format!("source `{name}` has no field `{}`", merge_sort.as_str()),
                        );
                        None
                    }
                }
            });
            let keep_if_present = rs.keep_if_present.as_ref().map(|k| k.to_string());
            let writable = crate::mapping::transform::writable(&fl, true);
            compiled.push(Arc::new(Resource {
                name: raw.resource.to_string(),
                description: rs.description.clone(),
                prefix: raw.prefix.to_string(),
                service: rs.service.to_string(),
                read_scope: raw.scopes.read.to_string(),
                write_scope: raw.scopes.write.as_ref().map(|s| s.to_string()),
                permissions: raw.permissions.to_string(),
                id_from: UpPath::parse(&rs.id.from),
                id_kind,
                fields: fl,
                get: rs.get.as_ref().and_then(|c| self.full_call(c)),
                create: rs.create.as_ref().and_then(|c| self.full_call(c)),
                update: None,
                delete: None,
                search,
                actions: IndexMap::new(),
                kind: *rs.kind,
                sources: Vec::new(),
                keep_if_present,
                create_permission: raw.create_permission.as_ref().map(|p| p.to_string()),
                writable,
            }));
        }
        let first = compiled.first()?.clone();
        let mut fields = first.fields.clone();
        for f in &mut fields {
            for other in compiled.iter().skip(1) {
                if let Some((_, of)) = other.field(&f.name) {
                    // A variant's schema also covers the other sources' shapes.
                    if let (Codec::Variant(v), false) =
                        (&mut f.codec, matches!(of.codec, Codec::Variant(_)))
                    {
                        v.cases.push((Value::Null, of.clone()));
                    }
                    // The public enum is every source's values together.
                    if let Codec::Enum { to_up } = &mut f.codec {
                        match &of.codec {
                            Codec::Const(Value::String(c)) => {
                                to_up.entry(c.clone()).or_insert(Value::Null);
                            }
                            Codec::Enum { to_up: other_up } => {
                                for k in other_up.keys() {
                                    to_up.entry(k.clone()).or_insert(Value::Null);
                                }
                            }
                            _ => {}
                        }
                    }
                    for (op, _) in &of.filters {
                        if !f.filters.iter().any(|(o, _)| o == op) {
                            f.filters.push((*op, FilterTarget::Local));
                        }
                    }
                }
            }
        }
        let sort_idx = fields.iter().position(|f| f.name == **merge_sort)?;
        let search = first.search.clone().map(|mut s| {
            s.sort = SortStyle::Fixed;
            s.default_sort = (sort_idx, true);
            s
        });
        let writable = crate::mapping::transform::writable(&fields, true);
        Some(Resource {
            writable,
            name: raw.resource.to_string(),
            description: raw.description.clone(),
            prefix: raw.prefix.to_string(),
            service: first.service.clone(),
            read_scope: raw.scopes.read.to_string(),
            write_scope: raw.scopes.write.as_ref().map(|s| s.to_string()),
            permissions: raw.permissions.to_string(),
            id_from: first.id_from.clone(),
            id_kind: first.id_kind,
            fields,
            get: compiled.iter().find_map(|c| c.get.clone()),
            create: compiled.iter().find_map(|c| c.create.clone()),
            update: None,
            delete: None,
            search,
            actions: IndexMap::new(),
            kind: 0,
            sources: compiled,
            keep_if_present: None,
            create_permission: raw.create_permission.as_ref().map(|p| p.to_string()),
        })
    }

    pub(super) fn resource(
        &mut self,
        raw: &RawResource,
        fields: &[(marked_yaml::types::MarkedScalarNode, RawField)],
        actions: &[(marked_yaml::types::MarkedScalarNode, RawAction)],
    ) -> Option<Resource> {
        if !valid_name(&raw.resource) {
            self.err(
                raw.resource.span(),
                "resource must be a snake_case plural noun (contacts)",
            );
        }
        if !valid_prefix(&raw.prefix) {
            self.err(raw.prefix.span(), "prefix must be lowercase letters (con)");
        }
        let (Some(service), Some(id), Some(_)) = (&raw.service, &raw.id, &raw.fields) else {
            self.err(
                raw.resource.span(),
                "a resource needs `service`, `id` and `fields` (or `sources`)",
            );
            return None;
        };
        self.check_service(service);
        let id_kind = self.id_kind(id);
        let search = match &raw.search {
            Some(s) => self.search(s),
            None => None,
        };
        let style = search.as_ref().map(|(s, _)| s.filters.clone());
        let mut compiled = Vec::new();
        let mut seen = HashSet::new();
        for (k, f) in fields {
            if !seen.insert(k.as_str().to_string()) {
                self.err(
                    k.span(),
                    format!("field `{}` is declared twice", k.as_str()),
                );
            }
            if let Some(fl) = self.field(k.as_str(), k.span(), f, style.as_ref()) {
                compiled.push(fl);
            }
        }
        let search = search.and_then(|(mut s, default_sort)| {
            let (name, dir) = default_sort
                .split_once(' ')
                .unwrap_or((default_sort.as_str(), "desc"));
            match compiled.iter().position(|f| {
                f.name == name
                    && (f.sort.is_some() || matches!(s.sort, SortStyle::Fixed | SortStyle::Local))
            }) {
                Some(i) if dir == "asc" || dir == "desc" => {
                    s.default_sort = (i, dir == "desc");
                    Some(s)
                }
                _ => {
                    if let Some(rs) = &raw.search {
                        self.err(
                            rs.default_sort.span(),
                            format!(
                                "default_sort `{default_sort}` must be `<sortable field> asc|desc`"
                            ),
                        );
                    }
                    None
                }
            }
        });
        let mut acts = IndexMap::new();
        for (k, a) in actions {
            let mut input = Vec::new();
            for (n, rf) in a.input.iter().flatten() {
                if let Some(f) = self.field(n, k.span(), rf, None) {
                    input.push(f);
                }
            }
            let permission = a
                .permission
                .as_ref()
                .map(|p| p.to_string())
                .unwrap_or_else(|| format!("{}:edit", raw.permissions.as_str()));
            if let Some(call) = self.call(&a.call, a.body.as_ref()) {
                acts.insert(
                    k.as_str().to_string(),
                    Action {
                        name: k.as_str().to_string(),
                        call,
                        permission,
                        input,
                        description: a.description.clone(),
                    },
                );
            }
        }
        let update = match &raw.update {
            Some(u) => {
                let call = self.call(&u.call, u.body.as_ref()).map(|mut c| {
                    c.headers = self.headers(&u.headers);
                    c.record = u
                        .record
                        .as_ref()
                        .and_then(|p| pointer(self.path, p, self.d));
                    c
                });
                let strategy = match u.strategy.as_str() {
                    "partial" => Some(UpdateStrategy::Partial),
                    "replace" => Some(UpdateStrategy::Replace),
                    o => {
                        self.err(
                            u.strategy.span(),
                            format!("strategy `{o}` must be partial or replace"),
                        );
                        None
                    }
                };
                let version = u
                    .version
                    .as_ref()
                    .and_then(|v| self.version(v, u.strategy.span()));
                if strategy == Some(UpdateStrategy::Replace) && u.version.is_none() {
                    self.err(
                        u.strategy.span(),
                        "strategy replace needs `version` (read, merge and write back only with the version read)",
                    );
                }
                if (u.version.is_some() || strategy == Some(UpdateStrategy::Replace))
                    && raw.get.is_none()
                {
                    self.err(
                        u.strategy.span(),
                        "an update that reads first (replace, or a `version`) needs the resource's `get`",
                    );
                }
                match (strategy, call) {
                    (Some(strategy), Some(call)) => Some(Update {
                        strategy,
                        call,
                        version,
                    }),
                    _ => None,
                }
            }
            None => None,
        };
        let get = raw.get.as_ref().and_then(|c| self.full_call(c));
        let create = raw.create.as_ref().and_then(|c| self.full_call(c));
        let delete = raw.delete.as_ref().and_then(|c| self.full_call(c));
        if raw.search.is_some() && search.is_none() {
            return None;
        }
        Some(Resource {
            name: raw.resource.to_string(),
            description: raw.description.clone(),
            prefix: raw.prefix.to_string(),
            service: service.to_string(),
            read_scope: raw.scopes.read.to_string(),
            write_scope: raw.scopes.write.as_ref().map(|s| s.to_string()),
            permissions: raw.permissions.to_string(),
            id_from: UpPath::parse(&id.from),
            id_kind,
            kind: 0,
            sources: Vec::new(),
            keep_if_present: None,
            create_permission: raw.create_permission.as_ref().map(|p| p.to_string()),
            writable: crate::mapping::transform::writable(&compiled, true),
            fields: compiled,
            get,
            create,
            update,
            delete,
            search,
            actions: acts,
        })
    }
}
