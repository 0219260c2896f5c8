//! The operations of each resource: paths, parameters, bodies, responses, links, scopes.

use serde_json::{json, Map, Value};

use super::*;
use crate::mapping::search::DEFAULT_LIMIT;

impl Gen<'_> {
    pub(super) fn scopes(res: &Resource, kind: Option<OpKind>) -> String {
        match kind {
            Some(OpKind::Get | OpKind::Search) => res.read_scope.clone(),
            _ => res
                .write_scope
                .clone()
                .unwrap_or_else(|| res.read_scope.clone()),
        }
    }

    pub(super) fn permission(res: &Resource, kind: OpKind) -> String {
        let verb = match kind {
            OpKind::Get | OpKind::Search => "view",
            OpKind::Create | OpKind::Update => "edit",
            OpKind::Delete => "delete",
        };
        format!("{}:{verb}", res.permissions)
    }

    /// The problem statuses an operation can answer.
    pub(super) fn error_statuses(kind: Option<OpKind>) -> Vec<u16> {
        let body = !matches!(kind, Some(OpKind::Get | OpKind::Delete));
        let writes = !matches!(kind, Some(OpKind::Get | OpKind::Search));
        // 408 and 431 can answer any request (slow or oversized request heads).
        let mut s = vec![400, 401, 403, 404, 408];
        if writes {
            s.push(409);
        }
        if body {
            s.extend([413, 415]);
        }
        if writes {
            s.push(422);
        }
        s.extend([429, 431, 500, 502, 503, 504]);
        s
    }

    pub(super) fn success_headers(&self, extra: &[(&str, Value)]) -> Value {
        let mut h = Map::new();
        h.insert("Trace-Id".into(), header_ref("Trace-Id"));
        h.insert("Version".into(), header_ref("Version"));
        h.insert("RateLimit".into(), header_ref("RateLimit"));
        h.insert("RateLimit-Policy".into(), header_ref("RateLimit-Policy"));
        if self.release.deprecated {
            h.insert("Deprecation".into(), header_ref("Deprecation"));
            h.insert("Sunset".into(), header_ref("Sunset"));
        }
        for (k, v) in extra {
            h.insert((*k).to_string(), v.clone());
        }
        Value::Object(h)
    }

    /// A success of a POST or PATCH may be a replay (contract §6).
    pub(super) fn replayable(mut response: Value) -> Value {
        if let Some(Value::Object(h)) = response.get_mut("headers") {
            h.insert(
                "Idempotent-Replayed".into(),
                json!({
                    "description": "`true` when this is the stored answer to an earlier request with the same `Idempotency-Key`.",
                    "schema": {"type": "string", "enum": ["true"]},
                }),
            );
        }
        response
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn operation(
        &self,
        res: &Resource,
        id: &str,
        kind: Option<OpKind>,
        summary: String,
        permission: String,
        body: Option<(Value, bool, Value)>,
        success: (u16, Value),
    ) -> Value {
        let scope = Self::scopes(res, kind);
        let mut params = vec![param_ref("Version")];
        let posts = matches!(
            kind,
            Some(OpKind::Create | OpKind::Update | OpKind::Search) | None
        );
        if posts {
            params.push(param_ref("Idempotency-Key"));
        }
        let mut responses = Map::new();
        let ok = if posts {
            Self::replayable(success.1)
        } else {
            success.1
        };
        responses.insert(success.0.to_string(), ok);
        for st in Self::error_statuses(kind) {
            responses.insert(st.to_string(), response_ref(&format!("Problem{st}")));
        }
        let mut op = json!({
            "operationId": id,
            "tags": [res.name],
            "summary": summary,
            "description": format!(
                "Scope `{scope}`; the user's CRM role needs `{permission}`."
            ),
            "parameters": params,
        });
        if let Some((schema, required, example)) = body {
            op["requestBody"] = json!({
                "required": required,
                "content": {"application/json": {"schema": schema, "example": example}},
            });
        }
        op["responses"] = Value::Object(responses);
        op["security"] = json!([{ "oauth2": [scope] }]);
        op["x-required-permission"] = Value::from(permission);
        op
    }

    pub(super) fn record_response(
        &self,
        name: &str,
        noun: &str,
        status: u16,
        extra: &[(&str, Value)],
    ) -> Value {
        json!({
            "description": match status {
                201 => format!("The new {noun}."),
                _ => format!("The {noun}."),
            },
            "headers": self.success_headers(extra),
            "content": {"application/json": {"schema": schema_ref(&format!("{name}Response"))}},
        })
    }

    pub(super) fn resource_paths(&self, res: &Resource, paths: &mut Map<String, Value>) {
        let (name, noun) = Self::names(res);
        let r = &res.name;
        let one = |kind: OpKind| format!("{r}.{}", kind.name());
        let id_param = json!({
            "name": "id",
            "in": "path",
            "required": true,
            "description": format!("The {noun}'s id."),
            "schema": self.id_schema(&res.prefix),
        });

        // Links let clients (and schemathesis' stateful phase) follow a record from the
        // answer that names it: a new record, or the first of a page.
        let links_from = |pointer: &str| {
            let id_expr = json!({ "id": format!("$response.body#{pointer}") });
            let mut links = Map::new();
            if res.get.is_some() {
                links.insert(
                    format!("Get{name}"),
                    json!({"operationId": one(OpKind::Get), "parameters": id_expr}),
                );
            }
            if res.update.is_some() {
                links.insert(
                    format!("Update{name}"),
                    json!({"operationId": one(OpKind::Update), "parameters": id_expr}),
                );
            }
            if res.delete.is_some() {
                links.insert(
                    format!("Delete{name}"),
                    json!({"operationId": one(OpKind::Delete), "parameters": id_expr}),
                );
            }
            for a in res.actions.keys() {
                links.insert(
                    format!("{}{name}", pascal(a)),
                    json!({"operationId": format!("{r}.{a}"), "parameters": id_expr}),
                );
            }
            Value::Object(links)
        };

        if res.create.is_some() {
            let example = self.example_object(&self.fields(res), Dir::Create, true);
            let location = json!({
                "description": format!("The new {noun}'s path."),
                "required": true,
                "schema": {"type": "string", "pattern": format!("^/v1/{r}/{}_[A-Za-z0-9_-]+$", res.prefix)},
            });
            let mut created = self.record_response(&name, &noun, 201, &[("Location", location)]);
            created["links"] = links_from("/data/id");
            let op = self.operation(
                res,
                &one(OpKind::Create),
                Some(OpKind::Create),
                format!("Create {} {noun}", article(&noun)),
                Self::permission(res, OpKind::Create),
                Some((schema_ref(&format!("{name}Create")), true, example)),
                (201, created),
            );
            paths.insert(format!("/v1/{r}"), json!({ "post": op }));
        }
        if let Some(search) = &res.search {
            let example = self
                .schemas
                .get(&format!("{name}Search"))
                .and_then(|s| s.get("examples"))
                .and_then(|e| e.get(0))
                .cloned()
                .unwrap_or_else(|| json!({}));
            let page = json!({
                "description": format!("A page of {}.", words(r)),
                "headers": self.success_headers(&[]),
                "content": {"application/json": {"schema": schema_ref(&format!("{name}Page"))}},
                "links": links_from("/data/0/id"),
            });
            let mut op = self.operation(
                res,
                &one(OpKind::Search),
                Some(OpKind::Search),
                format!("Search {}", words(r)),
                Self::permission(res, OpKind::Search),
                // The edge reads a JSON `null` body like no body at all.
                Some((
                    or_null(schema_ref(&format!("{name}Search"))),
                    false,
                    example,
                )),
                (200, page),
            );
            let default = res
                .fields
                .get(search.default_sort.0)
                .map(|f| {
                    format!(
                        "{} {}",
                        f.name,
                        if search.default_sort.1 { "desc" } else { "asc" }
                    )
                })
                .unwrap_or_default();
            if let Some(d) = op.get_mut("description") {
                *d = Value::from(format!(
                    "{} Default order: `{default}`; `limit` 1–{MAX_LIMIT} (default {DEFAULT_LIMIT}).{}",
                    d.as_str().unwrap_or_default(),
                    if search.total.is_some() || matches!(search.paging, Paging::None) {
                        " `meta.total` counts every match."
                    } else {
                        " No `meta.total`: the backing service does not count."
                    }
                ));
            }
            paths.insert(format!("/v1/{r}/search"), json!({ "post": op }));
        }
        let mut item = Map::new();
        if res.get.is_some() {
            let ok = self.record_response(&name, &noun, 200, &[]);
            item.insert(
                "get".into(),
                self.operation(
                    res,
                    &one(OpKind::Get),
                    Some(OpKind::Get),
                    format!("Get {} {noun}", article(&noun)),
                    Self::permission(res, OpKind::Get),
                    None,
                    (200, ok),
                ),
            );
        }
        if res.update.is_some() {
            let ok = self.record_response(&name, &noun, 200, &[]);
            let example = self.example_object(&self.fields(res), Dir::Update, true);
            item.insert(
                "patch".into(),
                self.operation(
                    res,
                    &one(OpKind::Update),
                    Some(OpKind::Update),
                    format!("Update {} {noun}", article(&noun)),
                    Self::permission(res, OpKind::Update),
                    Some((schema_ref(&format!("{name}Update")), true, example)),
                    (200, ok),
                ),
            );
        }
        if res.delete.is_some() {
            let gone = json!({
                "description": format!("The {noun} is deleted. No body."),
                "headers": self.success_headers(&[]),
            });
            item.insert(
                "delete".into(),
                self.operation(
                    res,
                    &one(OpKind::Delete),
                    Some(OpKind::Delete),
                    format!("Delete {} {noun}", article(&noun)),
                    Self::permission(res, OpKind::Delete),
                    None,
                    (204, gone),
                ),
            );
        }
        if !item.is_empty() {
            item.insert("parameters".into(), json!([id_param.clone()]));
            paths.insert(format!("/v1/{r}/{{id}}"), Value::Object(item));
        }
        for action in res.actions.values() {
            let ok = self.record_response(&name, &noun, 200, &[]);
            let input = format!("{name}{}Input", pascal(&action.name));
            let required = action
                .input
                .iter()
                .any(|f| f.required && f.default.is_none() && f.access != Access::ReadOnly);
            let example = self.example_object(&action.input, Dir::Input, false);
            let mut op = self.operation(
                res,
                &format!("{r}.{}", action.name),
                None,
                action
                    .description
                    .clone()
                    .unwrap_or_else(|| format!("`{}` {} {noun}", action.name, article(&noun))),
                action.permission.clone(),
                Some((
                    if required {
                        schema_ref(&input)
                    } else {
                        or_null(schema_ref(&input))
                    },
                    required,
                    example,
                )),
                (200, ok),
            );
            if let Some(d) = op.get_mut("description") {
                *d = Value::from(format!(
                    "{} Answers the {noun} as it is afterwards.",
                    d.as_str().unwrap_or_default()
                ));
            }
            paths.insert(
                format!("/v1/{r}/{{id}}/{}", action.name),
                json!({ "post": op, "parameters": [id_param.clone()] }),
            );
        }
    }
}
