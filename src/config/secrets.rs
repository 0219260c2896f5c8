//! Secrets: from an environment variable, a file or (demo only) the config itself; never
//! printed.

use std::path::Path;

use super::{raw, resolve};
use crate::diag::Diags;

/// A secret's bytes. Never printed.
#[derive(Clone)]
pub struct Secret(pub Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

pub(super) fn secret(
    path: &Path,
    name: &str,
    raw: &raw::RawSecret,
    d: &mut Diags,
) -> Option<Secret> {
    secret_at(path, &format!("secrets.{name}"), 16, raw, d)
}

/// A secret (called `name` in messages), from exactly one source, at least `min_len` bytes.
pub(super) fn secret_at(
    path: &Path,
    name: &str,
    min_len: usize,
    raw: &raw::RawSecret,
    d: &mut Diags,
) -> Option<Secret> {
    let sources = [
        raw.env.is_some(),
        raw.file.is_some(),
        raw.demo_value.is_some(),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if sources != 1 {
        d.file(
            path,
            format!("{name}: give exactly one of `env`, `file` or `demo_value`"),
        );
        return None;
    }
    let bytes = if let Some(env) = &raw.env {
        match std::env::var(env.as_str()) {
            Ok(v) => v.into_bytes(),
            Err(_) => {
                d.at(
                    path,
                    env.span(),
                    format!("{name}: environment variable `{}` is not set", env.as_str()),
                );
                return None;
            }
        }
    } else if let Some(file) = &raw.file {
        let p = resolve(path, file.as_str());
        match std::fs::read(&p) {
            Ok(v) => v,
            Err(e) => {
                d.at(
                    path,
                    file.span(),
                    format!("{name}: cannot read `{}`: {e}", p.display()),
                );
                return None;
            }
        }
    } else {
        raw.demo_value
            .as_ref()
            .map(|v| v.as_bytes().to_vec())
            .unwrap_or_default()
    };
    let trimmed: Vec<u8> = bytes.trim_ascii().to_vec();
    if trimmed.len() < min_len {
        d.file(
            path,
            format!("{name}: a secret must be at least {min_len} bytes"),
        );
        return None;
    }
    Some(Secret(trimmed))
}
