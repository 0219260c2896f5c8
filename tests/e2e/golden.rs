//! Golden fixtures for the transforms of every mapping file (`tests/fixtures/<case>/`):
//! `case.json` holds the input, `expected.json` the output. Reads turn a real upstream
//! record (captured from the simulator) into its public form; writes turn a public body
//! into the upstream record. `UPDATE_GOLDEN=1` rewrites the expected files (review the diff).

use std::path::Path;

use prospect_edge::mapping::load_shipped;
use prospect_edge::mapping::model::{Plan, Resource};
use prospect_edge::mapping::transform::{self, Ctx, WriteMode};
use prospect_edge::seal::{InternalId, Sealer};
use serde_json::{Map, Value};

use crate::harness::{repo, CURSOR_SECRET, ID_SECRET};

fn plan() -> Plan {
    load_shipped().unwrap_or_else(|d| panic!("{}", d.render()))
}

fn resource<'a>(plan: &'a Plan, case: &Value) -> &'a Resource {
    let res = plan
        .resources
        .get(case["resource"].as_str().expect("resource"))
        .expect("known resource");
    match case["source"].as_str() {
        None => res,
        Some(src) => {
            let kind = match src {
                "engagements" => 1,
                _ => 2,
            };
            res.sources.iter().find(|s| s.kind == kind).expect("source")
        }
    }
}

/// `"@cmp:2"` → the sealed id of company 2 of the case's tenant.
fn seal_placeholders(v: &mut Value, sealer: &Sealer, tenant: u32) {
    match v {
        Value::String(s) if s.starts_with('@') => {
            if let Some((prefix, n)) = s[1..].split_once(':') {
                let n: i64 = n.parse().expect("placeholder number");
                *s = sealer.seal_id(prefix, tenant, 0, &InternalId::Int(n));
            }
        }
        Value::Array(a) => a
            .iter_mut()
            .for_each(|x| seal_placeholders(x, sealer, tenant)),
        Value::Object(m) => m
            .values_mut()
            .for_each(|x| seal_placeholders(x, sealer, tenant)),
        _ => {}
    }
}

fn run(dir: &Path, plan: &Plan, sealer: &Sealer) -> Value {
    let case: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("case.json")).expect("case"))
            .expect("json");
    let res = resource(plan, &case);
    let tenant = case["tenant"].as_u64().unwrap_or(1) as u32;
    let ctx = Ctx { sealer, tenant };
    match case.get("mode").and_then(Value::as_str) {
        None => transform::to_public(res, &ctx, &case["upstream"]),
        Some(mode) => {
            let mut public = case["public"].clone();
            seal_placeholders(&mut public, sealer, tenant);
            let mode = if mode == "patch" {
                WriteMode::Patch
            } else {
                WriteMode::Create
            };
            let mut errors = Vec::new();
            let mut out = Map::new();
            transform::to_upstream(
                &res.fields,
                &ctx,
                public.as_object().expect("object"),
                mode,
                "",
                &mut errors,
                &mut out,
            );
            // A case that expects a refusal (`"refused": true`) golden-tests the errors.
            if case["refused"] == Value::Bool(true) {
                assert!(out.is_empty() || !errors.is_empty(), "{}", dir.display());
                return Value::Array(
                    errors
                        .iter()
                        .map(|e| serde_json::json!({"pointer": e.pointer, "detail": e.detail}))
                        .collect(),
                );
            }
            assert!(errors.is_empty(), "{}: {errors:?}", dir.display());
            Value::Object(out)
        }
    }
}

#[test]
fn every_fixture_matches_its_golden_output() {
    let plan = plan();
    let sealer = Sealer::new(ID_SECRET.as_bytes(), CURSOR_SECRET.as_bytes());
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut dirs: Vec<_> = std::fs::read_dir(repo().join("tests/fixtures"))
        .expect("fixtures")
        .map(|e| e.expect("entry").path())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 20);
    let mut covered = std::collections::BTreeSet::new();
    for dir in dirs {
        let got = run(&dir, &plan, &sealer);
        let expected_path = dir.join("expected.json");
        if update {
            std::fs::write(
                &expected_path,
                serde_json::to_string_pretty(&got).expect("json") + "\n",
            )
            .expect("write");
        }
        let expected: Value =
            serde_json::from_str(&std::fs::read_to_string(&expected_path).unwrap_or_default())
                .unwrap_or_else(|_| {
                    panic!(
                        "{} has no expected.json (UPDATE_GOLDEN=1 writes it)",
                        dir.display()
                    )
                });
        assert_eq!(got, expected, "{}", dir.display());
        let case: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("case.json")).expect("case"))
                .expect("json");
        covered.insert(case["resource"].as_str().expect("r").to_string());
    }
    let all: std::collections::BTreeSet<String> = plan.resources.keys().cloned().collect();
    assert_eq!(covered, all, "every mapping file has fixtures");
}
