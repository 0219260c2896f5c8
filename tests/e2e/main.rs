//! End-to-end tests: a real edge (the release binary) against the legacy CRM simulator.
//! One test binary with modules keeps link time low.

mod activities;
mod auth;
mod bounds;
mod cluster;
mod contract;
mod demo;
mod dialects;
mod faults;
mod golden;
mod harness;
mod hostile;
mod http_conventions;
mod instances;
mod openapi;
mod ops;
mod own_redis;
mod policies;
mod reload;
mod resources;
mod spine;
mod sweep;
mod tls;
mod versions;
