//! The rate-limit decision of one request: in memory (one node) against Redis (one round
//! trip to 127.0.0.1:6379 with a Lua script). The Redis half is skipped when nothing answers
//! there. Keys carry a unique prefix. Results: `benches/README.md`.

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use prospect_edge::config::{Applies, Backend, Policy, RateLimits, Redis, RedisTarget};
use prospect_edge::policy::{Class, RateLimiter, Shared};

fn limits(backend: Backend) -> RateLimits {
    RateLimits {
        backend,
        fail_open: false,
        policies: vec![Policy {
            name: "default".into(),
            quota: u64::MAX / 2,
            window: 3600,
            applies: Applies::All,
        }],
        overrides: Default::default(),
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let now = 1_764_000_000;

    let memory = RateLimiter::new(limits(Backend::Memory), None);
    c.bench_function("rate_limit/memory", |b| {
        b.to_async(&rt).iter(|| async {
            let d = memory.check(1, "bench-app", Class::Read, now).await;
            assert!(d.refused.is_none());
            d
        })
    });

    let redis_up = std::net::TcpStream::connect("127.0.0.1:6379").is_ok();
    if !redis_up {
        eprintln!("rate_limit/redis skipped: nothing answers on 127.0.0.1:6379");
        return;
    }
    let prefix = format!("bench-{}-{}:", std::process::id(), now);
    let shared = Arc::new(Shared::new(Redis {
        target: RedisTarget::Single("redis://127.0.0.1:6379".into()),
        prefix,
    }));
    let redis = RateLimiter::new(limits(Backend::Redis), Some(shared));
    c.bench_function("rate_limit/redis", |b| {
        b.to_async(&rt).iter(|| async {
            let d = redis.check(1, "bench-app", Class::Read, now).await;
            assert!(d.refused.is_none(), "Redis refused or failed closed");
            d
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
