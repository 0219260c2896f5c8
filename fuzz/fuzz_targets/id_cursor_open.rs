//! Arbitrary public ids and cursors: opening never panics and never succeeds on garbage.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for res in common::PLAN.resources.values() {
        let _ = common::SEALER.open_id(&res.prefix, 1, &text);
    }
    assert!(common::SEALER
        .open_cursor(b"binding", 0, 86_400, &text)
        .is_none());
});
