//! Arbitrary search bodies through filter parsing and translation of every resource.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use prospect_edge::mapping::search;
use prospect_edge::mapping::transform::Ctx;

fuzz_target!(|data: &[u8]| {
    let Ok(v) = prospect_edge::json::parse(data) else {
        return;
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
        if let Some(s) = &res.search {
            if let Ok(q) = search::parse(res, s, Some(&v)) {
                let _ = search::translate(res, &ctx, &q.filters);
            }
        }
    }
});
