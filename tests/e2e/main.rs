//! End-to-end tests: a real edge (the release binary) against the legacy CRM simulator.
//! One test binary with modules keeps link time low.

mod harness;
mod openapi;
mod reload;
mod resources;
mod spine;
