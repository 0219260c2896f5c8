//! Arbitrary upstream answers (status from the first two bytes, then the body) through
//! the normalizer of every service dialect; where the answer is a plain success, the
//! borrowed view a GET reads it through (`view::Node`) must give every resource the same
//! public record as the parsed value.
#![no_main]

mod common;

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use prospect_edge::mapping::dialect::{interpret, success_view};
use prospect_edge::mapping::transform::{to_public_checked, Ctx};
use prospect_edge::mapping::view::Node;
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
    let ctx = Ctx {
        sealer: &common::SEALER,
        tenant: 1,
    };
    for svc in common::PLAN.services.values() {
        let _ = interpret(svc, None, &a);
        let view = success_view(svc, &a);
        for res in common::PLAN.resources.values().filter(|r| r.service == svc.name) {
            match interpret(svc, Some(res), &a) {
                Err(p) => {
                    assert!(p.status() >= 400);
                    assert!(view.is_none(), "a view of an answer interpret refuses");
                }
                Ok(payload) => {
                    let Some(root) = &view else { continue };
                    let viewed = root
                        .pointer(svc.result.as_deref().unwrap_or(""))
                        .unwrap_or(&Node::Null);
                    assert_eq!(
                        to_public_checked(res, &ctx, viewed),
                        to_public_checked(res, &ctx, &payload)
                    );
                }
            }
        }
    }
});
