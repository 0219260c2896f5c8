//! Dated versions as declared changes (Stripe's version change modules): a client on an
//! older release gets every later change undone on responses and applied on requests.
//!
//! The engine speaks only the current release; this module translates at the edges.

use serde_json::{Map, Value};

use super::model::{Change, Versions};
use crate::problem::FieldError;

/// The changes between `version` and the current release, oldest first.
pub fn pending<'a>(versions: &'a Versions, version: &str, resource: &str) -> Vec<&'a Change> {
    versions
        .releases
        .iter()
        .filter(|r| r.date.as_str() > version)
        .flat_map(|r| r.changes.iter())
        .filter(|c| c.resource() == resource)
        .collect()
}

fn decimal_to_number(v: &Value) -> Value {
    match v {
        Value::String(s) => s
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .unwrap_or(Value::Null),
        other => other.clone(),
    }
}

fn number_to_decimal(v: &Value) -> Value {
    match v {
        Value::Number(n) => n
            .as_f64()
            .map(|f| Value::from(format!("{f:.2}")))
            .unwrap_or(Value::Null),
        other => other.clone(),
    }
}

/// Replaces the entry `key` by `entries`, where it stood (field order is part of the shape).
fn replace_at(rec: &mut Map<String, Value>, key: &str, entries: Vec<(String, Value)>) {
    let old = std::mem::take(rec);
    let mut entries = Some(entries);
    for (k, v) in old {
        if k == key {
            for (nk, nv) in entries.take().unwrap_or_default() {
                rec.insert(nk, nv);
            }
        } else {
            rec.insert(k, v);
        }
    }
}

/// Rewrites one record from the current shape to the client's (newest change first).
pub fn backward_record(changes: &[&Change], rec: &mut Map<String, Value>) {
    for c in changes.iter().rev() {
        match c {
            Change::Rename { from, to, .. } => {
                if let Some(v) = rec.get(to).cloned() {
                    replace_at(rec, to, vec![(from.clone(), v)]);
                }
            }
            Change::Nest {
                into,
                members,
                numbers_as_decimals,
                ..
            } => {
                let Some(obj) = rec.get(into).cloned() else {
                    continue;
                };
                let olds = members
                    .iter()
                    .map(|(old, member)| {
                        let v = obj.get(member).cloned().unwrap_or(Value::Null);
                        let v = if numbers_as_decimals.contains(old) {
                            decimal_to_number(&v)
                        } else {
                            v
                        };
                        (old.clone(), v)
                    })
                    .collect();
                replace_at(rec, into, olds);
            }
        }
    }
}

/// Rewrites a response body (`{data: {…}}` or `{data: […], meta}`) for an older client.
pub fn backward_body(changes: &[&Change], body: &mut Value) {
    match body.get_mut("data") {
        Some(Value::Object(rec)) => backward_record(changes, rec),
        Some(Value::Array(list)) => {
            for r in list.iter_mut().filter_map(Value::as_object_mut) {
                backward_record(changes, r);
            }
        }
        _ => {}
    }
}

/// Rewrites an older client's write body into the current shape (oldest change first).
pub fn forward_record(
    changes: &[&Change],
    rec: &mut Map<String, Value>,
    errors: &mut Vec<FieldError>,
) {
    for c in changes {
        match c {
            Change::Rename { from, to, .. } => {
                if let Some(v) = rec.shift_remove(from) {
                    rec.insert(to.clone(), v);
                }
            }
            Change::Nest {
                into,
                members,
                numbers_as_decimals,
                ..
            } => {
                let present: Vec<&(String, String)> = members
                    .iter()
                    .filter(|(o, _)| rec.contains_key(o))
                    .collect();
                if present.is_empty() {
                    continue;
                }
                // The old fields were one value apart: null in the first clears the object.
                let first = &members[0].0;
                if rec.get(first).is_some_and(Value::is_null) {
                    for (old, _) in members {
                        rec.shift_remove(old);
                    }
                    rec.insert(into.clone(), Value::Null);
                    continue;
                }
                if present.len() != members.len() {
                    for (old, _) in members.iter().filter(|(o, _)| !rec.contains_key(o)) {
                        errors.push(FieldError::new(
                            format!("/{old}"),
                            "is required together with the other fields of this group",
                        ));
                    }
                    continue;
                }
                let mut obj = Map::new();
                for (old, member) in members {
                    let v = rec.shift_remove(old).unwrap_or(Value::Null);
                    let v = if numbers_as_decimals.contains(old) {
                        number_to_decimal(&v)
                    } else {
                        v
                    };
                    obj.insert(member.clone(), v);
                }
                rec.insert(into.clone(), Value::Object(obj));
            }
        }
    }
}

/// Field names in search filters and sorts, forwards.
pub fn forward_search(changes: &[&Change], body: &mut Value) {
    let rename = |name: &mut Value| {
        for c in changes {
            if let Change::Rename { from, to, .. } = c {
                if name.as_str() == Some(from.as_str()) {
                    *name = Value::from(to.as_str());
                }
            }
        }
    };
    for key in ["filters", "sort"] {
        if let Some(list) = body.get_mut(key).and_then(Value::as_array_mut) {
            for f in list {
                if let Some(field) = f.get_mut("field") {
                    rename(field);
                }
            }
        }
    }
}

/// Error pointers of the current shape, backwards (`/job_title` → `/title`).
pub fn backward_pointer(changes: &[&Change], pointer: &str) -> String {
    let mut p = pointer.to_string();
    for c in changes.iter().rev() {
        match c {
            Change::Rename { from, to, .. } => {
                let new = format!("/{to}");
                if p == new || p.starts_with(&format!("{new}/")) {
                    p = p.replacen(&new, &format!("/{from}"), 1);
                }
            }
            Change::Nest { into, members, .. } => {
                for (old, member) in members {
                    let nested = format!("/{into}/{member}");
                    if p == nested || p.starts_with(&format!("{nested}/")) {
                        p = p.replacen(&nested, &format!("/{old}"), 1);
                    }
                }
            }
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn changes() -> Vec<Change> {
        vec![
            Change::Nest {
                resource: "deals".into(),
                into: "amount".into(),
                members: vec![
                    ("amount".into(), "value".into()),
                    ("currency_code".into(), "currency".into()),
                ],
                numbers_as_decimals: vec!["amount".into()],
            },
            Change::Rename {
                resource: "contacts".into(),
                from: "title".into(),
                to: "job_title".into(),
            },
        ]
    }

    #[test]
    fn money_goes_both_ways() {
        let all = changes();
        let c: Vec<&Change> = all.iter().take(1).collect();
        let mut body = json!({"data": {"id": "deal_x", "amount": {"value": "1234.50", "currency": "EUR"}, "name": "n"}});
        backward_body(&c, &mut body);
        assert_eq!(
            body["data"],
            json!({"id": "deal_x", "amount": 1234.5, "currency_code": "EUR", "name": "n"})
        );
        let keys: Vec<&String> = body["data"]
            .as_object()
            .map(|m| m.keys().collect())
            .unwrap_or_default();
        assert_eq!(keys, ["id", "amount", "currency_code", "name"]);
        let mut rec = json!({"amount": 99.5, "currency_code": "USD", "name": "n"})
            .as_object()
            .cloned()
            .unwrap_or_default();
        let mut errors = Vec::new();
        forward_record(&c, &mut rec, &mut errors);
        assert!(errors.is_empty());
        assert_eq!(
            Value::Object(rec),
            json!({"name": "n", "amount": {"value": "99.50", "currency": "USD"}})
        );
        let mut half = json!({"amount": 1})
            .as_object()
            .cloned()
            .unwrap_or_default();
        forward_record(&c, &mut half, &mut errors);
        assert_eq!(errors[0].pointer, "/currency_code");
        assert_eq!(backward_pointer(&c, "/amount/currency"), "/currency_code");
    }

    #[test]
    fn renames_go_both_ways() {
        let all = changes();
        let c: Vec<&Change> = all.iter().skip(1).collect();
        let mut body =
            json!({"data": [{"id": "con_x", "job_title": "CTO"}], "meta": {"cursor": null}});
        backward_body(&c, &mut body);
        assert_eq!(body["data"][0], json!({"id": "con_x", "title": "CTO"}));
        let mut search = json!({"filters": [{"field": "title", "operator": "eq", "value": "CTO"}]});
        forward_search(&c, &mut search);
        assert_eq!(search["filters"][0]["field"], "job_title");
        assert_eq!(backward_pointer(&c, "/job_title"), "/title");
    }
}
