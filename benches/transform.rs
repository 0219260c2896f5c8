//! The mapping engine's per-request work, on the shipped mappings: a contact's upstream
//! record → public JSON (one, and a 100-record page), a create body → the upstream record,
//! and a whole mapping load (what a reload does). Results: `benches/README.md`.

use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use prospect_edge::mapping::transform::{to_public, to_upstream, Ctx, WriteMode};
use prospect_edge::mapping::{load_dir, Context};
use prospect_edge::seal::Sealer;
use serde_json::{json, Map, Value};

fn mappings() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings")
}

/// A crm-core contact as the simulator answers it.
fn contact(id: i64) -> Value {
    json!({
        "contactId": id,
        "firstName": "Ada",
        "lastName": format!("Lovelace {id}"),
        "emailAddress": format!("ada{id}@analytical.example"),
        "phoneNumber": "+44 20 7946 0000",
        "jobTitle": "Head of Engines",
        "companyId": 7,
        "ownerUserId": 101,
        "lifecycleStage": 2,
        "createdAt": 1_764_000_000_000_i64 + id,
        "modifiedAt": 1_764_100_000_000_i64 + id,
    })
}

fn bench(c: &mut Criterion) {
    let ctx = Context::legacy();
    let plan = load_dir(&mappings(), &ctx).expect("the shipped mappings load");
    let contacts = plan.resources.get("contacts").expect("contacts").clone();
    let sealer = Sealer::new(
        b"bench id secret, 32 bytes or more",
        b"bench cursor secret, 32 bytes+",
    );
    let tctx = Ctx {
        sealer: &sealer,
        tenant: 1,
    };

    let one = contact(1);
    c.bench_function("transform/to_public_contact", |b| {
        b.iter(|| to_public(&contacts, &tctx, std::hint::black_box(&one)))
    });

    let page: Vec<Value> = (1..=100).map(contact).collect();
    let mut g = c.benchmark_group("transform");
    g.throughput(Throughput::Elements(100));
    g.bench_function("to_public_page_100", |b| {
        b.iter(|| {
            std::hint::black_box(&page)
                .iter()
                .map(|r| to_public(&contacts, &tctx, r))
                .collect::<Vec<_>>()
        })
    });
    g.finish();

    let company = sealer.seal_id("cmp", 1, 0, &prospect_edge::seal::InternalId::Int(7));
    let body: Map<String, Value> = match json!({
        "first_name": "Ada", "last_name": "Lovelace", "email": "ada@analytical.example",
        "phone": "+44 20 7946 0000", "job_title": "Head of Engines",
        "company_id": company, "lifecycle_stage": "lead",
    }) {
        Value::Object(m) => m,
        _ => unreachable!(),
    };
    c.bench_function("transform/to_upstream_create", |b| {
        b.iter(|| {
            let mut errors = Vec::new();
            let mut out = Map::new();
            to_upstream(
                &contacts.fields,
                &tctx,
                std::hint::black_box(&body),
                WriteMode::Create,
                "",
                &mut errors,
                &mut out,
            );
            assert!(errors.is_empty());
            out
        })
    });

    c.bench_function("mapping/load_dir", |b| {
        b.iter(|| load_dir(&mappings(), &ctx).expect("load"))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
