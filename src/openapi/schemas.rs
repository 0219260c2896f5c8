//! Schemas of the records, their writes and action inputs, with examples: what each
//! mapping field (codec, access, nullability) means on the wire. The searches' schemas
//! (filters, sort) are in `search_schemas`.

use serde_json::{json, Map, Value};

use super::*;

impl Gen<'_> {
    /// An id; `example` only where it helps a reader (responses, path parameters): in a
    /// write, an example id is a valid-looking id that never opens.
    pub(super) fn id_schema_with(&self, prefix: &str, example: bool) -> Value {
        let mut s = self.id_schema(prefix);
        if let (false, Some(obj)) = (example, s.as_object_mut()) {
            obj.remove("examples");
        }
        s
    }

    pub(super) fn id_schema(&self, prefix: &str) -> Value {
        let what = match self.plan.prefixes.get(prefix) {
            Some(res) => singular(res).replace('_', " "),
            None => match prefix {
                "usr" => "CRM user".to_string(),
                other => other.to_string(),
            },
        };
        json!({
            "type": "string",
            "pattern": id_pattern(prefix),
            "maxLength": ID_MAX_LEN,
            "description": format!("{} {what} id (`{prefix}_…`).", pascal(article(&what))),
            "examples": [example_id(prefix)],
        })
    }

    /// The schema of a non-null value of `codec`, as `dir` sees it.
    pub(super) fn codec_schema(&self, codec: &Codec, dir: Dir) -> Value {
        match codec {
            Codec::String => json!({"type": "string"}),
            Codec::StringList => json!({"type": "array", "items": {"type": "string"}}),
            Codec::Integer { .. } => {
                json!({"type": "integer", "minimum": i64::MIN, "maximum": i64::MAX})
            }
            Codec::Number { .. } => json!({"type": "number"}),
            Codec::Boolean => json!({"type": "boolean"}),
            Codec::Decimal => json!({
                "type": "string",
                "pattern": if dir == Dir::Read { DECIMAL_READ_PATTERN } else { DECIMAL_WRITE_PATTERN },
                "description": "A decimal number as a string, at most two decimals.",
                "examples": ["1234.50"],
            }),
            Codec::Timestamp(_) => json!({
                "type": "string",
                "format": "date-time",
                "description": "RFC 3339, UTC with milliseconds in responses.",
                "examples": [EXAMPLE_TIMESTAMP],
            }),
            Codec::Date(_) => {
                json!({"type": "string", "format": "date", "examples": [EXAMPLE_DATE]})
            }
            Codec::Enum { to_up } => {
                let known = json!({"type": "string", "enum": to_up.keys().collect::<Vec<_>>()});
                if dir == Dir::Read {
                    // Responses are open (docs/versioning.md): a later release may add a
                    // value, which a client of this one must read as a plain string.
                    json!({"anyOf": [known, {
                        "type": "string",
                        "description": "A value added after this release: treat it as unknown, don't fail.",
                    }]})
                } else {
                    known
                }
            }
            Codec::Id { prefix } => self.id_schema_with(prefix, dir == Dir::Read),
            Codec::IdList { prefix } => {
                json!({"type": "array", "items": self.id_schema_with(prefix, dir == Dir::Read)})
            }
            Codec::Object { fields, .. } => {
                let sub = if dir == Dir::Read {
                    Dir::Read
                } else {
                    Dir::Input
                };
                self.object_schema(fields, sub)
            }
            Codec::List { fields } => {
                json!({"type": "array", "items": self.object_schema(fields, Dir::Read)})
            }
            Codec::Attachment(a) => {
                let read = dir == Dir::Read;
                let mut kinds: Vec<Value> = a
                    .kinds
                    .iter()
                    .map(|k| {
                        let mut s = json!({
                            "type": "object",
                            "description": format!("Attached to {} {}.", article(&k.name), words(&k.name)),
                            "properties": {
                                "type": {"type": "string", "const": k.name},
                                "id": self.id_schema_with(&k.prefix, read),
                            },
                            "required": ["type", "id"],
                        });
                        if !read {
                            s["additionalProperties"] = Value::Bool(false);
                        }
                        let name = format!("{}Attachment{}", pascal(&k.name), if read { "" } else { "Input" });
                        self.define(&name, s)
                    })
                    .collect();
                if read {
                    // A later release may attach to a new kind of record.
                    kinds.push(self.define(
                        "OtherAttachment",
                        json!({
                            "type": "object",
                            "description": "Attached to a kind of record added after this release.",
                            "properties": {"type": {"type": "string"}, "id": {"type": "string"}},
                            "required": ["type", "id"],
                        }),
                    ));
                    json!({ "anyOf": kinds })
                } else if kinds.len() == 1 {
                    kinds.remove(0)
                } else {
                    json!({ "oneOf": kinds })
                }
            }
            Codec::Variant(v) => {
                let mut cases: Vec<Value> = v
                    .cases
                    .iter()
                    .map(|(_, f)| f)
                    .chain(v.fallback.as_deref())
                    .map(|f| {
                        // A case may read as null (a call created through the API has no
                        // notes); a write takes null only if the variant field itself does.
                        let schema = self.codec_schema(&f.codec, dir);
                        if f.nullable && dir == Dir::Read {
                            or_null(schema)
                        } else {
                            schema
                        }
                    })
                    .collect();
                // Cases of the same shape are one branch (an email's subject and a call's
                // notes are both strings).
                let mut unique: Vec<Value> = Vec::new();
                for c in cases.drain(..) {
                    if !unique.contains(&c) {
                        unique.push(c);
                    }
                }
                let by = match &v.key {
                    crate::mapping::model::VariantKey::Public(name) => format!("`{name}`"),
                    crate::mapping::model::VariantKey::Upstream(_) => "the record's kind".into(),
                };
                let description = format!("Its shape depends on {by}.");
                if unique.len() == 1 {
                    let mut notes = Map::new();
                    notes.insert("description".into(), Value::from(description));
                    annotate(unique.remove(0), notes)
                } else {
                    json!({"anyOf": unique, "description": description})
                }
            }
            Codec::Const(c) => json!({ "const": c }),
            Codec::Json => json!({}),
            Codec::Changes(_) => json!({
                "type": "object",
                "description": "Changed fields by public name: {\"field\": {\"from\": …, \"to\": …}}.",
                "additionalProperties": {
                    "type": "object",
                    "properties": {"from": {}, "to": {}},
                    "required": ["from", "to"],
                },
            }),
        }
    }

    /// Whether `dir` carries `f` at all.
    pub(super) fn carries(f: &Field, dir: Dir) -> bool {
        // List fields have no write codec: the edge refuses them in every write.
        let writable = !matches!(f.codec, Codec::List { .. });
        match dir {
            Dir::Read => true,
            Dir::Create | Dir::Input => writable && f.access != Access::ReadOnly,
            Dir::Update => writable && f.access == Access::ReadWrite,
        }
    }

    pub(super) fn field_schema(&self, f: &Field, dir: Dir) -> Value {
        let mut schema = self.codec_schema(&f.codec, dir);
        let nullable = match dir {
            Dir::Read => f.nullable,
            // The edge refuses null for required fields even when they are nullable upstream.
            _ => f.nullable && !f.required,
        };
        if nullable {
            schema = or_null(schema);
        }
        let mut notes = Map::new();
        let mut description = f.description.clone().unwrap_or_default();
        if dir == Dir::Read && f.access == Access::CreateOnly {
            if !description.is_empty() {
                description.push(' ');
            }
            description.push_str("Set on create; read-only afterwards.");
        }
        if !description.is_empty() {
            notes.insert("description".into(), Value::from(description));
        }
        if dir == Dir::Read && f.access == Access::ReadOnly {
            notes.insert("readOnly".into(), Value::Bool(true));
        }
        match (&f.default, dir) {
            (Some(d), Dir::Read) => {
                notes.insert("default".into(), d.clone());
            }
            // A `default` on a request member makes generated clients send (or require) it:
            // say it in words instead.
            (Some(d), Dir::Create | Dir::Input) => {
                let mut text = notes
                    .get("description")
                    .and_then(Value::as_str)
                    .map(|s| format!("{s} "))
                    .unwrap_or_default();
                let shown = d
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| d.to_string());
                text.push_str(&format!("Default: `{shown}`."));
                notes.insert("description".into(), Value::from(text));
            }
            _ => {}
        }
        annotate(schema, notes)
    }

    pub(super) fn object_schema(&self, fields: &[Field], dir: Dir) -> Value {
        let mut props = Map::new();
        let mut required = Vec::new();
        for f in fields.iter().filter(|f| Self::carries(f, dir)) {
            props.insert(f.name.clone(), self.field_schema(f, dir));
            let req = match dir {
                Dir::Read => true,
                Dir::Create | Dir::Input => f.required && f.default.is_none(),
                Dir::Update => false,
            };
            if req {
                required.push(Value::from(f.name.as_str()));
            }
        }
        let mut obj = json!({"type": "object", "properties": props});
        if dir != Dir::Read {
            // Requests are strict; responses open (a later release may add members).
            obj["additionalProperties"] = Value::Bool(false);
        }
        if !required.is_empty() {
            obj["required"] = Value::Array(required);
        }
        obj
    }

    // ------------------------------------------------------------ examples

    pub(super) fn example_value(&self, f: &Field, dir: Dir) -> Value {
        if let Some(d) = &f.default {
            return d.clone();
        }
        match &f.codec {
            Codec::String => {
                let n = f.name.as_str();
                let s = if n.contains("email") {
                    "jane.doe@example.com".to_string()
                } else if n.contains("phone") {
                    "+1-555-0100".to_string()
                } else if n.contains("currency") {
                    "EUR".to_string()
                } else if n.contains("country") {
                    "US".to_string()
                } else if n.contains("domain") {
                    "example.com".to_string()
                } else {
                    let w = words(n);
                    let mut c = w.chars();
                    match c.next() {
                        Some(first) => format!("{}{} (example)", first.to_uppercase(), c.as_str()),
                        None => "example".to_string(),
                    }
                };
                Value::from(s)
            }
            Codec::StringList => json!(["example"]),
            Codec::Integer { .. } => json!(1),
            Codec::Number { .. } => json!(0.5),
            Codec::Boolean => json!(true),
            Codec::Decimal => json!("1234.50"),
            Codec::Timestamp(_) => json!(EXAMPLE_TIMESTAMP),
            Codec::Date(_) => json!(EXAMPLE_DATE),
            Codec::Enum { to_up } => to_up
                .keys()
                .next()
                .map(|k| Value::from(k.as_str()))
                .unwrap_or(Value::Null),
            Codec::Id { prefix } => Value::from(example_id(prefix)),
            Codec::IdList { prefix } => json!([example_id(prefix)]),
            Codec::Object { fields, .. } => self.example_object(fields, dir, false),
            Codec::List { fields } => json!([self.example_object(fields, Dir::Read, false)]),
            Codec::Attachment(a) => match a.kinds.first() {
                Some(k) => json!({"type": k.name, "id": example_id(&k.prefix)}),
                None => Value::Null,
            },
            Codec::Variant(v) => v
                .cases
                .first()
                .map(|(_, f)| self.example_value(f, dir))
                .unwrap_or(Value::Null),
            Codec::Const(c) => c.clone(),
            Codec::Json => json!({}),
            Codec::Changes(_) => json!({"last_name": {"from": "Ng", "to": "Ng-Smith"}}),
        }
    }

    /// An example object; `minimal` keeps writes to required fields and plain values (an
    /// example id can never open, so optional references are left out of write examples).
    pub(super) fn example_object(&self, fields: &[Field], dir: Dir, minimal: bool) -> Value {
        let mut m = Map::new();
        for f in fields.iter().filter(|f| Self::carries(f, dir)) {
            let reference = matches!(
                f.codec,
                Codec::Id { .. } | Codec::IdList { .. } | Codec::Attachment(_)
            );
            if minimal && !f.required && reference {
                continue;
            }
            m.insert(f.name.clone(), self.example_value(f, dir));
        }
        Value::Object(m)
    }

    pub(super) fn example_record(&self, res: &Resource) -> Value {
        let mut m = Map::new();
        m.insert("id".into(), Value::from(example_id(&res.prefix)));
        if let Value::Object(rest) = self.example_object(&self.fields(res), Dir::Read, false) {
            m.extend(rest);
        }
        Value::Object(m)
    }

    // ------------------------------------------------------------ resource schemas

    pub(super) fn names(res: &Resource) -> (String, String) {
        let s = singular(&res.name);
        (pascal(&s), s.replace('_', " "))
    }

    pub(super) fn resource_schemas(&mut self, res: &Resource) {
        let (name, noun) = Self::names(res);
        let fields = self.fields(res);

        // The record, as every response shows it: the id first, every field always present.
        let mut record = self.object_schema(&fields, Dir::Read);
        if let Some(obj) = record.as_object_mut() {
            let mut props = Map::new();
            props.insert(
                "id".into(),
                annotate(
                    self.id_schema(&res.prefix),
                    Map::from_iter([("readOnly".to_string(), Value::Bool(true))]),
                ),
            );
            if let Some(Value::Object(p)) = obj.remove("properties") {
                props.extend(p);
            }
            let mut required = vec![Value::from("id")];
            if let Some(Value::Array(r)) = obj.remove("required") {
                required.extend(r);
            }
            let mut out = Map::new();
            out.insert("type".into(), json!("object"));
            out.insert(
                "description".into(),
                Value::from(
                    res.description
                        .clone()
                        .unwrap_or_else(|| format!("{} {noun}.", pascal(article(&noun)))),
                ),
            );
            out.insert("properties".into(), Value::Object(props));
            out.insert("required".into(), Value::Array(required));
            out.insert("examples".into(), json!([self.example_record(res)]));
            *obj = out;
        }
        self.schemas.insert(name.clone(), record);
        self.schemas.insert(
            format!("{name}Response"),
            json!({
                "type": "object",
                "description": format!("One {noun}: `{{data}}`."),
                "properties": {"data": schema_ref(&name)},
                "required": ["data"],
            }),
        );
        if res.create.is_some() {
            let mut s = self.object_schema(&fields, Dir::Create);
            s["description"] = Value::from(format!(
                "The fields of a new {noun}. Unknown and read-only members are refused (400)."
            ));
            self.schemas.insert(format!("{name}Create"), s);
        }
        if res.update.is_some() {
            let mut s = self.object_schema(&fields, Dir::Update);
            s["description"] = Value::from(format!(
                "The fields to change on a {noun}: an absent member is unchanged, `null` clears \
                 it. Read-only and create-only members are refused (400)."
            ));
            self.schemas.insert(format!("{name}Update"), s);
        }
        for action in res.actions.values() {
            let mut s = self.object_schema(&action.input, Dir::Input);
            s["description"] = Value::from(
                action
                    .description
                    .clone()
                    .unwrap_or_else(|| format!("The input of `{}`.", action.name)),
            );
            self.schemas
                .insert(format!("{name}{}Input", pascal(&action.name)), s);
        }
        if let Some(search) = &res.search {
            self.search_schemas(res, search, &name);
        }
    }
}
