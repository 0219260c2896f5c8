//! The cache of resolved tokens: keyed by a 128-bit keyed hash of the token (the token
//! itself is never kept), each entry living for its own lifetime so that it never outlives
//! the token's `exp`. Concurrent requests with the same token share one resolution.
//!
//! The key is the 128-bit SipHash-1-3 of the token under a random 128-bit key drawn at
//! start: a pseudo-random function nobody outside the process can compute, so a client
//! cannot construct a token that lands on another's entry (it would have to hit 128
//! unknown bits). It replaced a SHA-256, which was ~38k of a cached GET's ~218k
//! instructions under callgrind (no SHA extensions there; benches/README.md), and then two
//! 64-bit SipHash passes (3.3k for a 600-byte JWT) with this one pass (~1.7k).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use siphasher::sip128::SipHasher13;

use super::Identity;
use crate::problem::Problem;

/// At most this many tokens are remembered.
const CACHE_CAPACITY: u64 = 100_000;

/// The default bound on the bytes the remembered tokens take (`token_cache_max_bytes`).
pub const DEFAULT_CACHE_BYTES: u64 = 64 * 1024 * 1024;

/// What a cache entry costs beyond its identity's strings (key, moka's bookkeeping, the
/// `Arc`s), a conservative estimate.
const ENTRY_OVERHEAD: usize = 160;

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

/// What the allocator (jemalloc, `main.rs`) takes for a heap block of `n` bytes: its size
/// class — 8, then multiples of 16 up to 128, then four classes per power of two. A scope
/// of one byte costs 8, and a vector is counted by its capacity.
fn heap(n: usize) -> usize {
    match n {
        0 => 0,
        1..=8 => 8,
        9..=128 => n.next_multiple_of(16),
        _ => {
            let below = 1usize << (usize::BITS - 1 - (n - 1).leading_zeros());
            n.next_multiple_of(below / 4)
        }
    }
}

/// The bytes an entry holds: its identity's heap blocks (as the allocator rounds them),
/// plus [`ENTRY_OVERHEAD`].
fn bytes_of(r: &Resolved) -> usize {
    let identity = r.outcome.as_ref().map_or(0, |i| {
        heap(std::mem::size_of::<Identity>())
            + heap(i.client_id.capacity())
            + heap(i.scopes.capacity() * std::mem::size_of::<String>())
            + i.scopes.iter().map(|s| heap(s.capacity())).sum::<usize>()
    });
    heap(std::mem::size_of::<Resolved>()) + identity + ENTRY_OVERHEAD
}

/// An entry's weight: its bytes, and at least `max_bytes / CACHE_CAPACITY`, so that one
/// capacity (the bytes) bounds both the bytes and the number of entries.
fn weight(r: &Resolved, floor: u64) -> u32 {
    (bytes_of(r) as u64).max(floor).min(u64::from(u32::MAX)) as u32
}

pub(super) struct TokenCache {
    tokens: moka::future::Cache<TokenKey, Arc<Resolved>>,
    /// The token hash, under a key random per process.
    hash: SipHasher13,
}

impl TokenCache {
    /// Remembers at most [`CACHE_CAPACITY`] tokens taking at most `max_bytes`.
    pub(super) fn new(max_bytes: u64) -> TokenCache {
        let floor = (max_bytes / CACHE_CAPACITY).max(1);
        TokenCache {
            tokens: moka::future::Cache::builder()
                .max_capacity(max_bytes)
                .weigher(move |_k: &TokenKey, v: &Arc<Resolved>| weight(v, floor))
                .expire_after(PerEntry)
                .build(),
            hash: SipHasher13::new_with_key(&rand::random()),
        }
    }

    pub(super) fn key(&self, token: &str) -> TokenKey {
        u128::from(self.hash.hash(token.as_bytes())).to_le_bytes()
    }

    /// The cached resolution of `key`, or `resolve`'s (shared by concurrent callers); the
    /// flag says whether it was a hit (for every caller but the one that ran `resolve`).
    pub(super) async fn get_or_resolve<F, Fut>(
        &self,
        key: TokenKey,
        resolve: F,
    ) -> (Result<Arc<Resolved>, Problem>, bool)
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Arc<Resolved>, Problem>>,
    {
        let (resolved, hit) = get_or_init(&self.tokens, key, resolve).await;
        if !hit {
            // A new entry (a verification just ran, ~50 µs): evict what it pushed over the
            // bound now, so that the gauge shows what is held.
            Box::pin(self.tokens.run_pending_tasks()).await;
            crate::metrics::TOKEN_CACHE_BYTES.set(self.tokens.weighted_size() as i64);
        }
        (resolved, hit)
    }

    /// The remembered resolution of `key`, if any (a plain lookup).
    pub(super) async fn cached(&self, key: &TokenKey) -> Option<Arc<Resolved>> {
        self.tokens.get(key).await
    }

    pub(super) async fn invalidate(&self, key: &TokenKey) {
        self.tokens.invalidate(key).await;
    }

    /// Forgets every token (a key the issuer no longer publishes must not keep any alive).
    pub(super) fn invalidate_all(&self) {
        self.tokens.invalidate_all();
    }
}

/// `cache`'s value of `key`, or `init`'s, shared by concurrent callers; the flag says
/// whether it was a hit (for every caller but the one that ran `init`).
///
/// A hit is a plain lookup. The miss path (moka's shared initialisation with `init`
/// inside it, several KiB of future) is boxed, so that every request's future stays
/// small: moving large futures into their boxes was a tenth of a GET's instructions
/// (`benches/README.md`). The token and the permission caches both use it.
pub(super) async fn get_or_init<K, V, F, Fut>(
    cache: &moka::future::Cache<K, V>,
    key: K,
    init: F,
) -> (Result<V, Problem>, bool)
where
    K: std::hash::Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<V, Problem>>,
{
    if let Some(hit) = cache.get(&key).await {
        return (Ok(hit), true);
    }
    Box::pin(async move {
        let ran = std::sync::atomic::AtomicBool::new(false);
        let value = cache
            .try_get_with(key, async {
                ran.store(true, std::sync::atomic::Ordering::Relaxed);
                init().await
            })
            .await
            .map_err(|e| (*e).clone());
        (value, !ran.load(std::sync::atomic::Ordering::Relaxed))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A validly signed token's identity with 2,900 scopes (~96 KB in memory, the attack of
    /// issue #15): however many arrive, the bytes the cache holds stay under its bound.
    fn large(n: usize) -> Arc<Resolved> {
        Arc::new(Resolved {
            outcome: Ok(Arc::new(Identity {
                tenant: 1,
                user: n as u64,
                client_id: format!("app-{n}"),
                scopes: (0..2_900)
                    .map(|i| format!("scope:{n}:{i:06}:read-write"))
                    .collect(),
                expires_at: i64::MAX,
            })),
            valid_until: i64::MAX,
            ttl: Duration::from_secs(3600),
        })
    }

    #[test]
    fn heap_blocks_are_counted_by_their_size_class() {
        let classes: Vec<usize> = [0, 1, 8, 9, 100, 129, 200, 257, 4096, 70_000]
            .into_iter()
            .map(heap)
            .collect();
        assert_eq!(classes, [0, 8, 8, 16, 112, 160, 224, 320, 4096, 81_920]);
    }

    #[tokio::test]
    async fn large_tokens_are_bounded_by_bytes_not_only_by_count() {
        let max = 8 * 1024 * 1024;
        let cache = TokenCache::new(max);
        let one = bytes_of(&large(0)) as u64;
        assert!(one > 90_000, "a large token takes {one} bytes");
        for n in 0..600 {
            let key = cache.key(&format!("token-{n}"));
            let (r, hit) = cache.get_or_resolve(key, || async { Ok(large(n)) }).await;
            assert!(r.is_ok() && !hit);
        }
        cache.tokens.run_pending_tasks().await;
        let held: u64 = cache.tokens.iter().map(|(_, v)| bytes_of(&v) as u64).sum();
        let entries = cache.tokens.entry_count();
        assert!(held <= max, "{held} bytes held for a bound of {max}");
        assert!(entries > 0 && entries * one <= max, "{entries} entries");
        assert!(cache.tokens.weighted_size() <= max);
    }
}
