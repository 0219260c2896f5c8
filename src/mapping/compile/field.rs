//! Fields: codecs, access, and where each (field, operator) filter goes.

use super::*;

impl Compiler<'_> {
    pub(super) fn time_format(
        &mut self,
        f: Option<&Spanned<String>>,
        span: &Span,
    ) -> Option<TimeFormat> {
        let Some(f) = f else {
            self.err(
                span,
                "a timestamp or date needs `format` (epoch_ms, epoch_s, aspnet, sql_utc, rfc3339 or iso8601_offset)",
            );
            return None;
        };
        Some(match f.as_str() {
            "epoch_ms" => TimeFormat::EpochMs,
            "epoch_s" => TimeFormat::EpochS,
            "aspnet" => TimeFormat::AspNet,
            "sql_utc" => TimeFormat::SqlUtc,
            "rfc3339" => TimeFormat::Rfc3339,
            "iso8601_offset" => TimeFormat::Iso8601Offset,
            other => {
                self.err(
                    f.span(),
                    format!("format `{other}` is not one of epoch_ms, epoch_s, aspnet, sql_utc, rfc3339, iso8601_offset"),
                );
                return None;
            }
        })
    }

    pub(super) fn prefix(
        &mut self,
        r: Option<&Spanned<String>>,
        span: &Span,
        what: &str,
    ) -> Option<String> {
        match r {
            Some(p) if valid_prefix(p) => Some(p.to_string()),
            Some(p) => {
                self.err(
                    p.span(),
                    format!("`{}` is not a prefix (lowercase letters)", p.as_str()),
                );
                None
            }
            None => {
                self.err(
                    span,
                    format!("{what} needs `ref` (the prefix of the ids it holds)"),
                );
                None
            }
        }
    }

    pub(super) fn field(
        &mut self,
        name: &str,
        span: &Span,
        f: &RawField,
        search: Option<&FilterDialect>,
    ) -> Option<Field> {
        if !valid_name(name) {
            self.err(span, format!("field name `{name}` must be snake_case"));
        }
        let ty = f.ty.as_ref().map(|t| t.as_str()).unwrap_or("string");
        let tspan = f.ty.as_ref().map(|t| *t.span()).unwrap_or(*span);
        let scale = f.scale.as_ref().map(|s| **s).unwrap_or(1.0);
        let codec = match ty {
            "string" => Codec::String,
            "integer" => Codec::Integer { scale },
            "number" => Codec::Number { scale },
            "boolean" => Codec::Boolean,
            "decimal" => Codec::Decimal,
            "string_list" => Codec::StringList,
            "json" => Codec::Json,
            "changes" => match (&f.on, &f.entities) {
                (Some(on), Some(ents)) => Codec::Changes(Changes {
                    on: UpPath::parse(on),
                    entities: ents
                        .iter()
                        .map(|(k, v)| (k.clone(), v.to_string()))
                        .collect(),
                    tables: Vec::new(),
                }),
                _ => {
                    self.err(
                        &tspan,
                        "`changes` needs `on` (the entity kind field) and `entities`",
                    );
                    return None;
                }
            },
            "timestamp" => Codec::Timestamp(self.time_format(f.format.as_ref(), &tspan)?),
            "date" => Codec::Date(self.time_format(f.format.as_ref(), &tspan)?),
            "enum" => {
                let Some(values) = &f.values else {
                    self.err(
                        &tspan,
                        "an enum needs `values` (public value: upstream code)",
                    );
                    return None;
                };
                let mut to_up = IndexMap::new();
                for (k, v) in values {
                    if !valid_name(k) {
                        self.err(
                            v.span(),
                            format!("enum value `{k}` must be lowercase snake_case"),
                        );
                    }
                    to_up.insert(k.clone(), scalar(v));
                }
                Codec::Enum { to_up }
            }
            "id" => Codec::Id {
                prefix: self.prefix(f.reference.as_ref(), &tspan, "an id field")?,
            },
            "id_list" => Codec::IdList {
                prefix: self.prefix(f.reference.as_ref(), &tspan, "an id_list field")?,
            },
            "object" | "list" => {
                let Some(sub) = &f.fields else {
                    self.err(&tspan, format!("an {ty} needs `fields`"));
                    return None;
                };
                let mut fields = Vec::new();
                for (n, rf) in sub {
                    let sp = rf.from.as_ref().map(|x| *x.span()).unwrap_or(tspan);
                    if let Some(fl) = self.field(n, &sp, rf, None) {
                        fields.push(fl);
                    }
                }
                if ty == "list" {
                    Codec::List { fields }
                } else {
                    let null_unless = match &f.null_unless {
                        Some(n) => match fields.iter().position(|x| x.name == **n) {
                            Some(i) => Some(i),
                            None => {
                                self.err(
                                    n.span(),
                                    format!("null_unless: no sub-field `{}`", n.as_str()),
                                );
                                None
                            }
                        },
                        None => None,
                    };
                    Codec::Object {
                        fields,
                        null_unless,
                    }
                }
            }
            "attachment" => Codec::Attachment(self.attachment(f, &tspan)?),
            "const" => match &f.value {
                Some(v) => Codec::Const(json_scalar(v)),
                None => {
                    self.err(&tspan, "a const needs `value`");
                    return None;
                }
            },
            "variant" => {
                let key = match (&f.by, &f.on) {
                    (Some(b), None) => VariantKey::Public(b.to_string()),
                    (None, Some(o)) => VariantKey::Upstream(UpPath::parse(o)),
                    _ => {
                        self.err(&tspan, "a variant needs exactly one of `by` (a public field) or `on` (an upstream field)");
                        return None;
                    }
                };
                let Some(raw_cases) = &f.cases else {
                    self.err(&tspan, "a variant needs `cases`");
                    return None;
                };
                let mut cases = Vec::new();
                let mut fallback = None;
                for (k, rf) in raw_cases {
                    let sp = rf.ty.as_ref().map(|x| *x.span()).unwrap_or(tspan);
                    let Some(mut cf) = self.field(name, &sp, rf, None) else {
                        continue;
                    };
                    cf.nullable = true;
                    if k == "_" {
                        fallback = Some(Box::new(cf));
                    } else {
                        cases.push((scalar(k), cf));
                    }
                }
                Codec::Variant(Variant {
                    key,
                    cases,
                    fallback,
                })
            }
            other => {
                self.err(&tspan, format!("type `{other}` is unknown (string, integer, number, boolean, decimal, timestamp, date, enum, id, id_list, object, list, string_list, attachment)"));
                return None;
            }
        };
        let needs_from = !matches!(
            codec,
            Codec::Object { .. }
                | Codec::Attachment(_)
                | Codec::Variant(_)
                | Codec::Const(_)
                | Codec::Changes(_)
        ) || (matches!(codec, Codec::Changes(_)) && f.from.is_none());
        let read_only_codec = matches!(codec, Codec::Const(_) | Codec::Json | Codec::Changes(_));
        let from = match &f.from {
            Some(p) => Some(UpPath::parse(p)),
            None if needs_from => {
                self.err(
                    span,
                    format!("field `{name}` needs `from` (where it sits upstream)"),
                );
                return None;
            }
            None => None,
        };
        let access = match (f.read_only || read_only_codec, f.create_only) {
            (true, true) => {
                self.err(span, "a field cannot be both read_only and create_only");
                Access::ReadOnly
            }
            (true, false) => Access::ReadOnly,
            (false, true) => Access::CreateOnly,
            _ => Access::ReadWrite,
        };
        let default = f.default.as_ref().map(|d| scalar(d));
        if let (Some(def), Codec::Enum { to_up }) = (&f.default, &codec) {
            if !to_up.contains_key(def.as_str()) {
                self.err(
                    def.span(),
                    format!("default `{}` is not one of the enum's values", def.as_str()),
                );
            }
        }
        let mut filters = Vec::new();
        let own = match &f.filter_ops {
            Some(m) => self.own_ops(m, search, f.filter.as_deref().unwrap_or_default(), span),
            None => Vec::new(),
        };
        if let Some(ops) = &f.filter {
            let Some(dialect) = search else {
                self.err(span, "`filter` needs a `search` operation on the resource");
                return None;
            };
            for o in ops {
                let Some(op) = Op::parse(o) else {
                    self.err(
                        o.span(),
                        format!(
                            "operator `{}` is unknown ({})",
                            o.as_str(),
                            Op::ALL.map(Op::name).join(", ")
                        ),
                    );
                    continue;
                };
                let own = own.iter().find(|(o, _)| *o == op).map(|(_, r)| r.clone());
                let name = f
                    .filter_as
                    .as_ref()
                    .map(|s| s.to_string())
                    .or(from.as_ref().map(UpPath::dotted));
                filters.push((op, filter_target(op, &codec, name, own, dialect)));
            }
        } else if f.filter_ops.is_some() || f.filter_as.is_some() {
            self.err(
                span,
                "`filter_ops` and `filter_as` need `filter` (the operators)",
            );
        }
        let mut member = serde_json::to_vec(name).unwrap_or_default();
        member.push(b':');
        Some(Field {
            name: name.to_string(),
            member: member.into(),
            from,
            codec,
            nullable: f.nullable,
            required: f.required,
            access,
            default,
            filters,
            sort: f.sort.as_ref().map(|s| s.to_string()),
            description: f.description.clone(),
            write: f.write.as_ref().map(|w| WriteAs {
                to: w.to.as_ref().map(|t| UpPath::parse(t)),
                template: w.template.as_ref().map(|t| (**t).clone()),
            }),
        })
    }

    pub(super) fn attachment(&mut self, f: &RawField, span: &Span) -> Option<Attachment> {
        let style_name = f.style.as_ref().map(|s| s.as_str()).unwrap_or("");
        let style = match style_name {
            "type_and_id" => match (&f.type_from, &f.id_from) {
                (Some(t), Some(i)) => AttachStyle::TypeAndId {
                    type_from: UpPath::parse(t),
                    id_from: UpPath::parse(i),
                },
                _ => {
                    self.err(span, "style type_and_id needs `type_from` and `id_from`");
                    return None;
                }
            },
            "associations" => AttachStyle::Associations,
            _ => {
                self.err(
                    span,
                    "an attachment needs `style`: type_and_id or associations",
                );
                return None;
            }
        };
        let Some(raw_kinds) = &f.kinds else {
            self.err(span, "an attachment needs `kinds`");
            return None;
        };
        let mut kinds = Vec::new();
        for (name, k) in raw_kinds {
            let prefix = self.prefix(Some(&k.reference), span, "a kind")?;
            if matches!(style, AttachStyle::TypeAndId { .. }) && k.code.is_none() {
                self.err(
                    k.reference.span(),
                    format!("kind `{name}` needs `code` (its upstream type code)"),
                );
            }
            if matches!(style, AttachStyle::Associations) && k.from.is_none() {
                self.err(
                    k.reference.span(),
                    format!("kind `{name}` needs `from` (the upstream id list)"),
                );
            }
            kinds.push(AttachKind {
                name: name.clone(),
                prefix,
                code: k.code.as_ref().map(|c| scalar(c)),
                from: k.from.as_ref().map(|f| UpPath::parse(f)),
                param: k.param.as_ref().map(|p| p.to_string()),
            });
        }
        Some(Attachment { style, kinds })
    }
}

/// Where one (field, operator) pair goes: the field's own rendering (`filter_ops`), an
/// attachment's parameters, the dialect's operator, or the edge itself.
pub(super) fn filter_target(
    op: Op,
    codec: &Codec,
    name: Option<String>,
    own: Option<Option<Arc<OpRender>>>,
    dialect: &FilterDialect,
) -> FilterTarget {
    match own {
        Some(None) => return FilterTarget::Local,
        Some(Some(render)) => {
            return FilterTarget::Render {
                field: name.unwrap_or_default(),
                render,
            }
        }
        None => {}
    }
    if matches!(codec, Codec::Attachment(_)) {
        return if op == Op::Eq {
            FilterTarget::Attachment
        } else {
            FilterTarget::Local
        };
    }
    match (name, dialect.ops.iter().find(|(o, _)| *o == op)) {
        (Some(field), Some((_, r))) => FilterTarget::Render {
            field,
            render: r.clone(),
        },
        _ => FilterTarget::Local,
    }
}
