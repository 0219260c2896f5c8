//! Arbitrary request bodies through the public → upstream transform of every resource
//! (create, patch, action inputs) and arbitrary upstream records through the reverse.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use prospect_edge::mapping::transform::{self, Ctx, WriteMode};
use serde_json::{Map, Value};

fuzz_target!(|data: &[u8]| {
    let Ok(v) = prospect_edge::json::parse(data) else {
        return;
    };
    let body = match &v {
        Value::Object(m) => m.clone(),
        _ => return,
    };
    let ctx = Ctx {
        sealer: &common::SEALER,
        tenant: 1,
    };
    for res in common::PLAN
        .resources
        .values()
        .flat_map(|r| std::iter::once(r).chain(r.sources.iter()))
    {
        for mode in [WriteMode::Create, WriteMode::Patch, WriteMode::Input] {
            let (mut errors, mut out) = (Vec::new(), Map::new());
            transform::to_upstream(&res.fields, &ctx, &body, mode, "", &mut errors, &mut out);
        }
        for a in res.actions.values() {
            let (mut errors, mut out) = (Vec::new(), Map::new());
            transform::to_upstream(&a.input, &ctx, &body, WriteMode::Input, "", &mut errors, &mut out);
        }
        let _ = transform::to_public(res, &ctx, &v);
    }
});
