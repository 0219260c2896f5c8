//! Schemas of the searches: the filter objects each field accepts, the sort members and
//! the search request body, with examples.

use serde_json::{json, Map, Value};

use super::*;
use crate::mapping::search::{DEFAULT_LIMIT, MAX_FILTERS};

impl Gen<'_> {
    /// The filter objects one field accepts, one per group of operators with one value shape.
    /// Each is a named component (`ContactFilterOwnerIdEq`): generated clients name their
    /// models after components, and inline variants of different resources would clash.
    pub(super) fn filter_variants(&self, name: &str, f: &Field) -> Vec<Value> {
        let attachment = matches!(f.codec, Codec::Attachment(_));
        let field_name = if attachment {
            format!("{}.id", f.name)
        } else {
            f.name.clone()
        };
        // A sealed id that is not one of the caller's can never match: the edge answers an
        // empty page rather than an error, so any string is a valid id *value* here.
        let value = match &f.codec {
            Codec::Id { prefix } | Codec::IdList { prefix } => json!({
                "type": "string",
                "description": format!("A `{prefix}_` id; an id that is not one of yours matches nothing."),
            }),
            Codec::Attachment(_) => json!({
                "type": "string",
                "description": "The id of the attached record; an id that is not one of yours matches nothing.",
            }),
            other => self.codec_schema(other, Dir::Input),
        };
        let ops: Vec<Op> = f.filters.iter().map(|(o, _)| *o).collect();
        let mut variants = Vec::new();
        let group = |names: &[Op]| -> Vec<Op> {
            ops.iter().copied().filter(|o| names.contains(o)).collect()
        };
        let mut push = |group: Vec<Op>, extra: Map<String, Value>, required: &[&str]| {
            if group.is_empty() {
                return;
            }
            let names: Vec<&str> = group.iter().map(|o| o.name()).collect();
            let mut props = Map::new();
            props.insert(
                "field".into(),
                json!({"type": "string", "const": field_name}),
            );
            props.insert(
                "operator".into(),
                if names.len() == 1 {
                    json!({"type": "string", "const": names[0]})
                } else {
                    json!({"type": "string", "enum": names})
                },
            );
            props.extend(extra);
            let mut req = vec!["field", "operator"];
            req.extend_from_slice(required);
            let component = format!(
                "{name}Filter{}{}",
                pascal(&field_name.replace('.', "_")),
                names.iter().map(|n| pascal(n)).collect::<String>()
            );
            variants.push(self.define(
                &component,
                json!({
                    "type": "object",
                    "description": format!("`{field_name}` {}", names.join(" | ")),
                    "properties": props,
                    "required": req,
                    "additionalProperties": false,
                }),
            ));
        };
        let one = |v: &Value| {
            let mut m = Map::new();
            m.insert("value".into(), v.clone());
            m
        };
        push(
            group(&[Op::Eq, Op::Neq, Op::Lt, Op::Lte, Op::Gt, Op::Gte]),
            one(&value),
            &["value"],
        );
        let mut between = one(&value);
        between.insert("high_value".into(), value.clone());
        push(group(&[Op::Between]), between, &["value", "high_value"]);
        let mut list = Map::new();
        list.insert(
            "values".into(),
            json!({"type": "array", "items": value, "minItems": 1, "maxItems": IN_MAX_VALUES}),
        );
        push(group(&[Op::In, Op::NotIn]), list, &["values"]);
        push(
            group(&[Op::Contains]),
            one(&json!({
                "type": "string",
                "minLength": 1,
                "maxLength": CONTAINS_MAX_BYTES,
                "description": "Case-insensitive substring; wildcard characters are literal. At most 256 bytes.",
            })),
            &["value"],
        );
        push(group(&[Op::HasValue, Op::NotHasValue]), Map::new(), &[]);
        variants
    }

    /// Fields that sort, with the directions each accepts (mirrors `search::parse_sort`).
    /// `default_name` is the default sort field's name: the fields of an older release may
    /// sit at other positions than the plan's, so indices do not carry over.
    pub(super) fn sortable<'f>(
        fields: &'f [Field],
        search: &Search,
        default_name: &str,
    ) -> Vec<(&'f Field, Vec<&'static str>)> {
        let default_desc = search.default_sort.1;
        fields
            .iter()
            .filter_map(|f| match search.sort {
                SortStyle::Fixed if f.name == default_name => {
                    Some((f, vec![if default_desc { "desc" } else { "asc" }]))
                }
                SortStyle::Fixed => None,
                SortStyle::Local if f.sort.is_some() || f.name == default_name => {
                    Some((f, vec!["asc", "desc"]))
                }
                SortStyle::Local => None,
                _ if f.sort.is_some() => Some((f, vec!["asc", "desc"])),
                _ => None,
            })
            .collect()
    }

    pub(super) fn search_schemas(&mut self, res: &Resource, search: &Search, name: &str) {
        let fields = self.fields(res);
        let variants: Vec<Value> = fields
            .iter()
            .filter(|f| !f.filters.is_empty())
            .flat_map(|f| self.filter_variants(name, f))
            .collect();
        let (default_idx, default_desc) = search.default_sort;
        let default_field = res
            .fields
            .get(default_idx)
            .map(|f| f.name.as_str())
            .unwrap_or("");
        let sortable = Self::sortable(&fields, search, default_field);
        let default_dir = if default_desc { "desc" } else { "asc" };

        let filter_note: Vec<String> = fields
            .iter()
            .filter(|f| !f.filters.is_empty())
            .map(|f| {
                let ops: Vec<&str> = f.filters.iter().map(|(o, _)| o.name()).collect();
                let n = if matches!(f.codec, Codec::Attachment(_)) {
                    format!("{}.id", f.name)
                } else {
                    f.name.clone()
                };
                format!("`{n}` ({})", ops.join(", "))
            })
            .collect();
        let filters = if variants.is_empty() {
            json!({
                "type": ["array", "null"],
                "items": {"type": "object"},
                "maxItems": 0,
                "description": format!("{} cannot be filtered: empty or null.", pascal(&words(&res.name))),
            })
        } else {
            let description = format!(
                "One filter on {}: {}.",
                words(&res.name),
                filter_note.join(", ")
            );
            let only = match variants.as_slice() {
                [one] => one["$ref"]
                    .as_str()
                    .and_then(|r| r.rsplit('/').next())
                    .and_then(|n| self.defined.borrow_mut().remove(n)),
                _ => None,
            };
            let filter = match only {
                // One way to filter: the object itself (a one-branch `oneOf` is noise).
                Some(mut one) => {
                    one["description"] = Value::from(description);
                    one
                }
                None => json!({"description": description, "oneOf": variants}),
            };
            self.schemas.insert(format!("{name}Filter"), filter);
            json!({
                "type": ["array", "null"],
                "items": schema_ref(&format!("{name}Filter")),
                "maxItems": MAX_FILTERS,
                "description": format!("ANDed; at most {MAX_FILTERS}."),
            })
        };
        let mut sort_items: Vec<(String, Value)> = sortable
            .iter()
            .map(|(f, dirs)| {
                let dir = if dirs.len() == 1 {
                    json!({"type": "string", "const": dirs[0]})
                } else {
                    json!({"type": "string", "enum": dirs, "description": "Default: `asc`."})
                };
                let mut required = vec!["field"];
                if dirs.len() == 1 && dirs[0] == "desc" {
                    // The edge reads a missing direction as `asc`.
                    required.push("direction");
                }
                (
                    format!("{name}SortBy{}", pascal(&f.name)),
                    json!({
                        "type": "object",
                        "description": format!("Sort by `{}`.", f.name),
                        "properties": {
                            "field": {"type": "string", "const": f.name},
                            "direction": dir,
                        },
                        "required": required,
                        "additionalProperties": false,
                    }),
                )
            })
            .collect();
        let sort_description = format!(
            "Sort order: one of {}. Default: `{default_field} {default_dir}`.",
            sortable
                .iter()
                .map(|(f, d)| format!("`{}` ({})", f.name, d.join("|")))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let sort = if sort_items.len() == 1 {
            // One way to sort: the object itself (a one-branch `oneOf` is noise to clients).
            let (_, mut only) = sort_items.remove(0);
            only["description"] = Value::from(sort_description);
            only
        } else {
            let refs: Vec<Value> = sort_items
                .into_iter()
                .map(|(n, s)| self.define(&n, s))
                .collect();
            json!({"description": sort_description, "oneOf": refs})
        };
        self.schemas.insert(format!("{name}Sort"), sort);
        // The example is what /docs pre-fills in "Try it": a filter that matches records
        // (a substring search for "a", else an enum's value), not a made-up value.
        let plain = |f: &&Field| {
            !f.filters.is_empty()
                && !matches!(
                    f.codec,
                    Codec::Id { .. } | Codec::IdList { .. } | Codec::Attachment(_)
                )
        };
        let matching = fields.iter().filter(plain).find_map(|f| {
            f.filters
                .iter()
                .any(|(o, _)| *o == Op::Contains)
                .then(|| json!({"field": f.name, "operator": "contains", "value": "a"}))
        });
        let matching = matching.or_else(|| {
            fields.iter().filter(plain).find_map(|f| match &f.codec {
                Codec::Enum { to_up } if f.filters.iter().any(|(o, _)| *o == Op::Eq) => to_up
                    .keys()
                    .next()
                    .map(|v| json!({"field": f.name, "operator": "eq", "value": v})),
                _ => None,
            })
        });
        let example_filter = matching.or_else(|| {
            fields.iter().find(plain).and_then(|f| {
                let (op, _) = f.filters.first()?;
                let v = self.example_value(f, Dir::Input);
                Some(match op {
                    Op::HasValue | Op::NotHasValue => {
                        json!({"field": f.name, "operator": op.name()})
                    }
                    Op::In | Op::NotIn => {
                        json!({"field": f.name, "operator": op.name(), "values": [v]})
                    }
                    Op::Between => {
                        json!({"field": f.name, "operator": "between", "value": v, "high_value": v})
                    }
                    Op::Contains => json!({"field": f.name, "operator": "contains", "value": "a"}),
                    _ => json!({"field": f.name, "operator": op.name(), "value": v}),
                })
            })
        });
        let mut example = Map::new();
        if let Some(f) = example_filter {
            example.insert("filters".into(), json!([f]));
        }
        example.insert(
            "sort".into(),
            json!([{"field": default_field, "direction": default_dir}]),
        );
        example.insert("limit".into(), json!(DEFAULT_LIMIT));
        self.schemas.insert(
            format!("{name}Search"),
            json!({
                "type": "object",
                "description": format!(
                    "A search of {}. Every member is optional: an empty body means all, default order. \
                     With a `cursor`, `filters` and `sort` may be omitted; if sent they must equal the \
                     original query's.",
                    words(&res.name)
                ),
                "properties": {
                    "filters": filters,
                    "sort": {
                        "type": ["array", "null"],
                        "items": schema_ref(&format!("{name}Sort")),
                        "maxItems": 1,
                    },
                    "limit": {
                        "type": ["integer", "null"],
                        "minimum": 1,
                        "maximum": MAX_LIMIT,
                        "description": format!("Records per page; absent or null: {DEFAULT_LIMIT}."),
                    },
                    "cursor": {
                        "type": ["string", "null"],
                        "description": "The previous page's `meta.cursor`: opaque, sealed, valid 24 h for the same query, tenant, app and version.",
                    },
                },
                "additionalProperties": false,
                "examples": [Value::Object(example)],
            }),
        );
        // `total` only where the upstream gives it (or the edge pages a whole list itself).
        let has_total = search.total.is_some() || matches!(search.paging, Paging::None);
        let mut meta_props = Map::new();
        meta_props.insert(
            "cursor".into(),
            json!({"type": ["string", "null"], "description": "The next page's cursor; null on the last page."}),
        );
        let mut meta_required = vec!["cursor"];
        if has_total {
            meta_props.insert(
                "total".into(),
                json!({"type": "integer", "minimum": 0, "description": "How many records match."}),
            );
            meta_required.push("total");
        }
        let mut page_example = json!({
            "data": [self.example_record(res)],
            "meta": {"cursor": null},
        });
        if has_total {
            page_example["meta"]["total"] = json!(1);
        }
        self.schemas.insert(
            format!("{name}Page"),
            json!({
                "type": "object",
                "description": format!("A page of {}: `{{data, meta}}`.", words(&res.name)),
                "properties": {
                    "data": {"type": "array", "items": schema_ref(name)},
                    "meta": {
                        "type": "object",
                        "properties": meta_props,
                        "required": meta_required,
                    },
                },
                "required": ["data", "meta"],
                "examples": [page_example],
            }),
        );
    }
}
