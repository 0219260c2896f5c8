//! The cache of resolved tokens: keyed by a SHA-256 of the token (the token itself is
//! never kept), each entry living for its own lifetime so that it never outlives the
//! token's `exp`. Concurrent requests with the same token share one resolution.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::Identity;
use crate::problem::Problem;

/// At most this many tokens are remembered.
const CACHE_CAPACITY: u64 = 100_000;

/// The cache key of a token.
pub type TokenKey = [u8; 32];

/// A resolved token as cached: who it is, or why it is refused, and for how long.
#[derive(Debug)]
pub(super) struct Resolved {
    pub(super) outcome: Result<Arc<Identity>, &'static str>,
    /// Unix time after which the identity no longer counts (exp, plus leeway for JWTs).
    pub(super) valid_until: i64,
    pub(super) ttl: Duration,
}

/// Entries live for their own `ttl`: a token's cache entry never outlives its `exp`.
struct PerEntry;

impl moka::Expiry<[u8; 32], Arc<Resolved>> for PerEntry {
    fn expire_after_create(
        &self,
        _key: &[u8; 32],
        value: &Arc<Resolved>,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(value.ttl)
    }
}

pub(super) struct TokenCache {
    tokens: moka::future::Cache<TokenKey, Arc<Resolved>>,
}

impl TokenCache {
    pub(super) fn new() -> TokenCache {
        TokenCache {
            tokens: moka::future::Cache::builder()
                .max_capacity(CACHE_CAPACITY)
                .expire_after(PerEntry)
                .build(),
        }
    }

    pub(super) fn key(token: &str) -> TokenKey {
        Sha256::digest(token.as_bytes()).into()
    }

    /// The cached resolution of `key`, or `resolve`'s (shared by concurrent callers); the
    /// flag says whether it was a hit (for every caller but the one that ran `resolve`).
    pub(super) async fn get_or_resolve(
        &self,
        key: TokenKey,
        resolve: impl Future<Output = Result<Arc<Resolved>, Problem>>,
    ) -> (Result<Arc<Resolved>, Problem>, bool) {
        let ran = std::sync::atomic::AtomicBool::new(false);
        let resolved = self
            .tokens
            .try_get_with(key, async {
                ran.store(true, std::sync::atomic::Ordering::Relaxed);
                resolve.await
            })
            .await
            .map_err(|e| (*e).clone());
        (resolved, !ran.load(std::sync::atomic::Ordering::Relaxed))
    }

    pub(super) async fn invalidate(&self, key: &TokenKey) {
        self.tokens.invalidate(key).await;
    }

    /// Forgets every token (a key the issuer no longer publishes must not keep any alive).
    pub(super) fn invalidate_all(&self) {
        self.tokens.invalidate_all();
    }
}
