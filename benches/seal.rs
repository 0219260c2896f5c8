//! Public ids and cursors: sealing and opening (AES-GCM-SIV), as every id in every request
//! and answer goes through it. Results: `benches/README.md`.

use criterion::{criterion_group, criterion_main, Criterion};
use prospect_edge::seal::{InternalId, Sealer};

fn bench(c: &mut Criterion) {
    let sealer = Sealer::new(
        b"bench id secret, 32 bytes or more",
        b"bench cursor secret, 32 bytes+",
    );
    let id = InternalId::Int(123_456);
    c.bench_function("seal/seal_id", |b| {
        b.iter(|| sealer.seal_id("con", 1, 0, std::hint::black_box(&id)))
    });
    let public = sealer.seal_id("con", 1, 0, &id);
    c.bench_function("seal/open_id", |b| {
        b.iter(|| {
            sealer
                .open_id("con", 1, std::hint::black_box(&public))
                .expect("opens")
        })
    });

    let binding = b"1|demo-app|2026-11-01|0123456789abcdef0123456789abcdef";
    let payload = br#"{"q":{"filters":[],"sort":["created_at",true]},"p":25,"l":25}"#;
    let now = 1_764_000_000;
    c.bench_function("seal/seal_cursor", |b| {
        b.iter(|| sealer.seal_cursor(binding, now, std::hint::black_box(payload)))
    });
    let cursor = sealer.seal_cursor(binding, now, payload);
    c.bench_function("seal/open_cursor", |b| {
        b.iter(|| {
            sealer
                .open_cursor(binding, now + 10, 3600, std::hint::black_box(&cursor))
                .expect("opens")
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
