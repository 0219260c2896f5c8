//! Every declared filter operator of every resource, from the compiled mappings: each search
//! answers 200 and every record it returns satisfies the filter.

use prospect_edge::mapping::load_shipped;
use prospect_edge::mapping::model::{Codec, Op};
use serde_json::{json, Value};

use crate::harness::World;

fn satisfied(op: Op, v: &Value, sample: &Value) -> bool {
    let has = |x: &Value| !x.is_null() && x != &json!("") && x != &json!([]);
    let contains = |x: &Value, s: &Value| match x {
        Value::Array(a) => a.contains(s),
        _ => x == s,
    };
    let cmp = |x: &Value, y: &Value| match (x, y) {
        (Value::Number(a), Value::Number(b)) => a.as_f64().partial_cmp(&b.as_f64()),
        (Value::String(a), Value::String(b)) => Some(a.cmp(b)),
        _ => None,
    };
    use std::cmp::Ordering::*;
    match op {
        Op::Gte => matches!(cmp(v, sample), Some(Greater | Equal)),
        Op::Lte => matches!(cmp(v, sample), Some(Less | Equal)),
        Op::Gt => cmp(v, sample) == Some(Greater),
        Op::Lt => cmp(v, sample) == Some(Less),
        Op::Eq | Op::In | Op::Between => contains(v, sample),
        Op::Neq | Op::NotIn => !contains(v, sample),
        Op::HasValue => has(v),
        Op::NotHasValue => !has(v),
        Op::Contains => v.as_str().zip(sample.as_str()).is_some_and(|(a, b)| {
            a.to_lowercase()
                .contains(&b.chars().take(3).collect::<String>().to_lowercase())
        }),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_declared_operator_of_every_resource_filters_correctly() {
    let plan = load_shipped().unwrap_or_else(|d| panic!("{}", d.render()));
    let w = World::start().await;
    let mut checked = 0;
    for res in plan.resources.values().filter(|r| r.search.is_some()) {
        let path = format!("/v1/{}/search", res.name);
        let page = w
            .call(1, 101, "POST", &path, Some(json!({"limit": 50})))
            .await;
        assert_eq!(page.status, 200, "{}", res.name);
        let records = page.json()["data"].as_array().cloned().unwrap_or_default();
        for f in &res.fields {
            let attachment = matches!(f.codec, Codec::Attachment(_));
            let name = if attachment {
                format!("{}.id", f.name)
            } else {
                f.name.clone()
            };
            // A sample value of this field from a real record.
            let sample = records.iter().find_map(|r| {
                let v = r.get(&f.name)?;
                let v = if attachment { v.get("id")? } else { v };
                let v = match v {
                    Value::Array(a) => a.first()?,
                    other => other,
                };
                (!v.is_null()).then(|| v.clone())
            });
            for (op, _) in &f.filters {
                let Some(sample) = sample.clone() else {
                    continue;
                };
                let mut filter = json!({"field": name, "operator": op.name()});
                match op {
                    Op::HasValue | Op::NotHasValue => {}
                    Op::In | Op::NotIn => filter["values"] = json!([sample]),
                    Op::Between => {
                        filter["value"] = sample.clone();
                        filter["high_value"] = sample.clone();
                    }
                    Op::Contains => {
                        filter["value"] = json!(sample
                            .as_str()
                            .unwrap_or("a")
                            .chars()
                            .take(3)
                            .collect::<String>())
                    }
                    _ => filter["value"] = sample.clone(),
                }
                let r = w
                    .call(
                        1,
                        101,
                        "POST",
                        &path,
                        Some(json!({"filters": [filter], "limit": 25})),
                    )
                    .await;
                assert_eq!(
                    r.status,
                    200,
                    "{} {name} {}: {}",
                    res.name,
                    op.name(),
                    String::from_utf8_lossy(&r.body)
                );
                for rec in r.json()["data"].as_array().cloned().unwrap_or_default() {
                    let mut v = rec.get(&f.name).cloned().unwrap_or(Value::Null);
                    if attachment {
                        v = v.get("id").cloned().unwrap_or(Value::Null);
                    }
                    assert!(
                        satisfied(*op, &v, &sample),
                        "{} {name} {} {sample}: got {v}",
                        res.name,
                        op.name()
                    );
                }
                checked += 1;
            }
        }
    }
    assert!(
        checked >= 50,
        "{checked} (resource, field, operator) combinations checked"
    );
}
