//! The strict request-body parser (depth bound, duplicate members, UTF-8).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = prospect_edge::json::parse(data) {
        // Whatever it accepts, serde_json accepts identically.
        let again: serde_json::Value = serde_json::from_slice(data).expect("valid JSON");
        assert_eq!(v, again);
    }
});
