//! prospect-edge: the public REST API edge in front of the ProspectConnect legacy CRM.
//!
//! The request path is `pipeline` (a pingora `ProxyHttp`); the public API itself is declared in
//! the mapping files and compiled by `mapping`. See `docs/` for the guides.
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod access_log;
pub mod admin;
pub mod auth;
pub mod config;
pub mod diag;
pub mod head_guard;
pub mod hex;
pub mod json;
pub mod mapping;
pub mod metrics;
pub mod openapi;
pub mod pipeline;
pub mod policy;
pub mod problem;
#[cfg(test)]
mod robustness;
pub mod seal;
pub mod server;
pub mod tls;
pub mod token;
pub mod upstream;
