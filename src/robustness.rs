//! Robustness properties over the shipped mappings: the code that reads what clients and
//! upstreams send never panics, whatever the bytes. The same entry points are the
//! `cargo fuzz` targets in `fuzz/` (see `docs/failure-modes.md`); these proptests run
//! with `cargo test --release --lib robustness` on stable.

use std::path::Path;
use std::sync::LazyLock;
use std::time::Duration;

use bytes::Bytes;
use proptest::prelude::*;
use serde_json::{Map, Value};

use crate::mapping::dialect::interpret;
use crate::mapping::model::Plan;
use crate::mapping::search;
use crate::mapping::transform::{self, Ctx, WriteMode};
use crate::seal::Sealer;
use crate::upstream::Answer;

static PLAN: LazyLock<Plan> = LazyLock::new(|| {
    crate::mapping::load_shipped().unwrap_or_else(|d| panic!("shipped mappings: {d:?}"))
});

static SEALER: LazyLock<Sealer> = LazyLock::new(|| {
    Sealer::new(
        b"robustness id secret, 32 bytes!!",
        b"robustness cursor secret, 32 b!",
    )
});

/// Every golden fixture's JSON, to seed the generators with realistic shapes.
static SEEDS: LazyLock<Vec<Value>> = LazyLock::new(|| {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if let Ok(text) = std::fs::read(e.path().join("case.json")) {
            if let Ok(v) = serde_json::from_slice::<Value>(&text) {
                for k in ["public", "upstream"] {
                    if let Some(x) = v.get(k) {
                        out.push(x.clone());
                    }
                }
            }
        }
    }
    out
});

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        "\\PC{0,12}".prop_map(Value::from),
        // Names the mappings use, so that fields and operators are hit, not only misses.
        prop::sample::select(vec![
            "first_name",
            "email",
            "eq",
            "in",
            "gte",
            "contains",
            "lifecycle_stage",
            "lead",
            "2025-01-02T10:00:00Z",
            "2025-01-02",
            "amount",
            "created_at",
            "desc",
            "asc",
            "con_AAAAAAAAAAAAAAAAAAAAAA",
            "USD",
            "field",
            "operator",
            "value",
        ])
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop_oneof![
                        "\\PC{0,8}",
                        prop::sample::select(vec![
                            "filters",
                            "sort",
                            "limit",
                            "cursor",
                            "field",
                            "operator",
                            "value",
                            "first_name",
                            "last_name",
                            "email",
                            "amount",
                            "stage_id",
                            "direction",
                        ])
                        .prop_map(String::from),
                    ],
                    inner
                ),
                0..6
            )
            .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// An arbitrary value, a fixture, or a fixture with one member replaced.
fn body() -> impl Strategy<Value = Value> {
    let seeds = SEEDS.clone();
    prop_oneof![
        json_value(),
        (0..seeds.len().max(1), "\\PC{0,10}", json_value()).prop_map(move |(i, k, v)| {
            let mut s = seeds.get(i).cloned().unwrap_or(Value::Null);
            if let Some(o) = s.as_object_mut() {
                let key = o.keys().nth(k.len() % o.len().max(1)).cloned().unwrap_or(k);
                o.insert(key, v);
            }
            s
        }),
    ]
}

fn object(v: &Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m.clone(),
        other => Map::from_iter([("x".to_string(), other.clone())]),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn request_transform_never_panics(b in body(), tenant in 0u32..4) {
        let ctx = Ctx { sealer: &SEALER, tenant };
        let body = object(&b);
        for res in PLAN.resources.values().flat_map(|r| std::iter::once(r).chain(r.sources.iter())) {
            for mode in [WriteMode::Create, WriteMode::Patch, WriteMode::Input] {
                let (mut errors, mut out) = (Vec::new(), Map::new());
                transform::to_upstream(&res.fields, &ctx, &body, mode, "", &mut errors, &mut out);
            }
            for a in res.actions.values() {
                let (mut errors, mut out) = (Vec::new(), Map::new());
                transform::to_upstream(&a.input, &ctx, &body, WriteMode::Input, "", &mut errors, &mut out);
            }
            let _ = transform::to_public(res, &ctx, &b);
        }
    }

    #[test]
    fn filter_parsing_and_translation_never_panic(b in body()) {
        let ctx = Ctx { sealer: &SEALER, tenant: 1 };
        for res in PLAN.resources.values().flat_map(|r| std::iter::once(r).chain(r.sources.iter())) {
            if let Some(s) = &res.search {
                if let Ok(q) = search::parse(res, s, Some(&b)) {
                    let _ = search::translate(res, &ctx, &q.filters);
                }
            }
        }
    }

    #[test]
    fn ids_and_cursors_never_open_from_garbage(s in "\\PC{0,100}", raw in prop::collection::vec(any::<u8>(), 0..120)) {
        let lossy = String::from_utf8_lossy(&raw).to_string();
        for text in [&s, &lossy] {
            for res in PLAN.resources.values() {
                let _ = SEALER.open_id(&res.prefix, 1, text);
                let _ = SEALER.open_id(&res.prefix, 1, &format!("{}_{}", res.prefix, text));
            }
            prop_assert!(SEALER.open_cursor(b"binding", 0, 86_400, text).is_none());
        }
    }

    #[test]
    fn upstream_answers_never_panic_the_normalizer(
        status in prop_oneof![Just(200u16), Just(201), Just(204), Just(400), Just(404), Just(409), Just(422), Just(500), Just(503), 100u16..600],
        raw in prop::collection::vec(any::<u8>(), 0..256),
        b in body(),
    ) {
        let json = serde_json::to_vec(&b).unwrap_or_default();
        for bytes in [raw.clone(), json] {
            let a = Answer { status, headers: Default::default(), body: Bytes::from(bytes), elapsed: Duration::ZERO };
            for svc in PLAN.services.values() {
                let _ = interpret(svc, None, &a);
                for res in PLAN.resources.values().filter(|r| r.service == svc.name) {
                    if let Err(p) = interpret(svc, Some(res), &a) {
                        // Never upstream text in a problem: only the edge's own sentences.
                        prop_assert!(!p.detail.contains(char::REPLACEMENT_CHARACTER), "upstream bytes in the detail");
                        prop_assert!(p.status() >= 400);
                    }
                }
            }
        }
    }
}

#[test]
fn the_properties_run_over_the_shipped_plan_and_fixtures() {
    assert!(PLAN.resources.len() >= 7, "{}", PLAN.resources.len());
    assert!(PLAN.services.len() >= 5);
    assert!(
        PLAN.resources
            .values()
            .filter(|r| r.search.is_some())
            .count()
            >= 5
    );
    assert!(SEEDS.len() >= 15, "{}", SEEDS.len());
}
