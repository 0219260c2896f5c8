//! The cache of resolved tokens: keyed by a 128-bit keyed hash of the token (the token
//! itself is never kept), each entry living for its own lifetime so that it never outlives
//! the token's `exp`. Concurrent requests with the same token share one resolution.
//!
//! The key is two SipHash-1-3 of the token under two random 128-bit keys drawn at start
//! (std's `RandomState`): a pseudo-random function nobody outside the process can compute,
//! so a client cannot construct a token that lands on another's entry (it would have to
//! hit 128 unknown bits). It replaced a SHA-256, which was ~38k of a cached GET's ~218k
//! instructions under callgrind (no SHA extensions there; benches/README.md) against ~3k.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::hash::{BuildHasher, Hasher};

use super::Identity;
use crate::problem::Problem;

/// At most this many tokens are remembered.
const CACHE_CAPACITY: u64 = 100_000;

/// The cache key of a token.
pub type TokenKey = [u8; 16];

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

impl moka::Expiry<TokenKey, Arc<Resolved>> for PerEntry {
    fn expire_after_create(
        &self,
        _key: &TokenKey,
        value: &Arc<Resolved>,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(value.ttl)
    }
}

pub(super) struct TokenCache {
    tokens: moka::future::Cache<TokenKey, Arc<Resolved>>,
    /// The two keys of the token hash, random per process.
    hash: [std::collections::hash_map::RandomState; 2],
}

impl TokenCache {
    pub(super) fn new() -> TokenCache {
        TokenCache {
            tokens: moka::future::Cache::builder()
                .max_capacity(CACHE_CAPACITY)
                .expire_after(PerEntry)
                .build(),
            hash: Default::default(),
        }
    }

    pub(super) fn key(&self, token: &str) -> TokenKey {
        let mut key = [0u8; 16];
        for (half, state) in key.chunks_exact_mut(8).zip(&self.hash) {
            let mut h = state.build_hasher();
            h.write(token.as_bytes());
            half.copy_from_slice(&h.finish().to_le_bytes());
        }
        key
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
