//! Shared by the fuzz targets: the shipped mappings, compiled once, and a sealer.
#![allow(dead_code)] // each target uses part of it

use std::sync::LazyLock;

use prospect_edge::mapping::{load_shipped, Plan};
use prospect_edge::seal::Sealer;

pub static PLAN: LazyLock<Plan> = LazyLock::new(|| {
    load_shipped().unwrap_or_else(|d| panic!("shipped mappings: {d:?}"))
});

pub static SEALER: LazyLock<Sealer> = LazyLock::new(|| {
    Sealer::new(
        b"fuzzing id secret, 32 bytes long",
        b"fuzzing cursor secret, 32 bytes!",
    )
});
