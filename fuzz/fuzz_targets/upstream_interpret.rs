//! Arbitrary upstream answers (status from the first two bytes, then the body) through
//! the normalizer of every service dialect.
#![no_main]

mod common;

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use prospect_edge::mapping::dialect::interpret;
use prospect_edge::upstream::Answer;

fuzz_target!(|data: &[u8]| {
    let (status, body) = match data {
        [a, b, rest @ ..] => (100 + u16::from_be_bytes([*a, *b]) % 500, rest),
        _ => return,
    };
    let a = Answer {
        status,
        headers: Default::default(),
        body: bytes::Bytes::copy_from_slice(body),
        elapsed: Duration::ZERO,
    };
    for svc in common::PLAN.services.values() {
        let _ = interpret(svc, None, &a);
        for res in common::PLAN.resources.values().filter(|r| r.service == svc.name) {
            if let Err(p) = interpret(svc, Some(res), &a) {
                assert!(p.status() >= 400);
            }
        }
    }
});
