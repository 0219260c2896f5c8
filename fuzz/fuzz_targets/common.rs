//! Shared by the fuzz targets: the shipped mappings, compiled once, and a sealer.
#![allow(dead_code)] // each target uses part of it

use std::path::Path;
use std::sync::LazyLock;

use prospect_edge::mapping::{load_dir, Context, Plan};
use prospect_edge::seal::Sealer;

pub static PLAN: LazyLock<Plan> = LazyLock::new(|| {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../mappings");
    let ctx = Context {
        upstream_names: vec!["crm-core", "sales", "workflow", "engagements", "audit", "iam"],
    };
    load_dir(&dir, &ctx).unwrap_or_else(|d| panic!("shipped mappings: {d:?}"))
});

pub static SEALER: LazyLock<Sealer> = LazyLock::new(|| {
    Sealer::new(
        b"fuzzing id secret, 32 bytes long",
        b"fuzzing cursor secret, 32 bytes!",
    )
});
