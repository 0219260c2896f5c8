//! The connection to the shared Redis: one server, a Redis Cluster, or a master found
//! through Sentinel. Every key is hash-tagged ([`Shared::key`]) so that each script or
//! command touches one slot.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};
use tokio::sync::OnceCell;

use crate::config::{Redis, RedisTarget};

/// Redis answers within this or counts as down.
pub const REDIS_TIMEOUT: Duration = Duration::from_millis(250);

/// After a failed look-up of the Sentinel master, requests fail fast for this long
/// instead of each asking the sentinels again.
const RESOLVE_BACKOFF: Duration = Duration::from_millis(100);

/// A connection of whichever kind the config names; cheap to clone.
#[derive(Clone)]
pub enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
    /// To the current master; `stale` is set when a command fails or is given up on,
    /// so the next request asks the sentinels where the master is now.
    Sentinel(ConnectionManager, Arc<AtomicBool>),
}

/// Marks the Sentinel connection stale unless the command completes (a timed-out
/// command is dropped mid-way: the master may be gone or partitioned).
struct Watch(Arc<AtomicBool>, bool);

impl Drop for Watch {
    fn drop(&mut self) {
        if !self.1 {
            self.0.store(true, Ordering::Relaxed);
        }
    }
}

fn healthy<T>(r: &redis::RedisResult<T>) -> bool {
    match r {
        Ok(_) => true,
        // A script the (new) master does not know yet: loaded and retried by the caller.
        Err(e) => e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript),
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
            Conn::Sentinel(c, stale) => {
                let w = Watch(stale.clone(), false);
                Box::pin(async move {
                    // The whole guard moves in (not just its flag), to drop with the future.
                    let mut w = w;
                    let r = c.req_packed_command(cmd).await;
                    w.1 = healthy(&r);
                    r
                })
            }
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Sentinel(c, stale) => {
                let w = Watch(stale.clone(), false);
                Box::pin(async move {
                    // The whole guard moves in (not just its flag), to drop with the future.
                    let mut w = w;
                    let r = c.req_packed_commands(pipeline, offset, count).await;
                    w.1 = healthy(&r);
                    r
                })
            }
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) | Conn::Sentinel(c, _) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// The Sentinel side: the sentinels, and the master connection last found.
struct Sentinel {
    client: tokio::sync::Mutex<redis::sentinel::SentinelClient>,
    current: Mutex<Option<(ConnectionManager, Arc<AtomicBool>)>>,
    failed_at: Mutex<Option<tokio::time::Instant>>,
}

enum Kind {
    Single(OnceCell<ConnectionManager>),
    Cluster(OnceCell<ClusterConnection>),
    Sentinel(Box<Sentinel>),
    /// The config could not be turned into a client (checked by `prospect-edge check`).
    Broken,
}

/// One lazily connected, self-reconnecting Redis connection shared by the policies.
pub struct Shared {
    prefix: String,
    target: RedisTarget,
    kind: Kind,
}

fn manager_config() -> redis::aio::ConnectionManagerConfig {
    redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(REDIS_TIMEOUT))
        .set_response_timeout(Some(REDIS_TIMEOUT))
        .set_number_of_retries(1)
}

impl Shared {
    pub fn new(cfg: Redis) -> Shared {
        let kind = match &cfg.target {
            RedisTarget::Single(_) => Kind::Single(OnceCell::new()),
            RedisTarget::Cluster(_) => Kind::Cluster(OnceCell::new()),
            RedisTarget::Sentinel { master, urls } => {
                match redis::sentinel::SentinelClient::build(
                    urls.iter().map(String::as_str).collect(),
                    master.clone(),
                    None,
                    redis::sentinel::SentinelServerType::Master,
                ) {
                    Ok(client) => Kind::Sentinel(Box::new(Sentinel {
                        client: tokio::sync::Mutex::new(client),
                        current: Mutex::new(None),
                        failed_at: Mutex::new(None),
                    })),
                    Err(e) => {
                        tracing::error!(error = %e, "bad sentinel config");
                        Kind::Broken
                    }
                }
            }
        };
        Shared {
            prefix: cfg.prefix,
            target: cfg.target,
            kind,
        }
    }

    /// A connection, or `None` when Redis cannot be reached in time.
    pub async fn conn(&self) -> Option<Conn> {
        match &self.kind {
            Kind::Single(cell) => {
                let RedisTarget::Single(url) = &self.target else {
                    return None;
                };
                let fut = cell.get_or_try_init(|| async {
                    let client = redis::Client::open(url.as_str())?;
                    ConnectionManager::new_with_config(client, manager_config()).await
                });
                match tokio::time::timeout(REDIS_TIMEOUT * 4, fut).await {
                    Ok(Ok(c)) => Some(Conn::Single(c.clone())),
                    _ => None,
                }
            }
            Kind::Cluster(cell) => {
                let RedisTarget::Cluster(urls) = &self.target else {
                    return None;
                };
                let fut = cell.get_or_try_init(|| async {
                    redis::cluster::ClusterClient::builder(urls.iter().map(String::as_str))
                        .connection_timeout(REDIS_TIMEOUT)
                        .response_timeout(REDIS_TIMEOUT)
                        .retries(2)
                        .build()?
                        .get_async_connection()
                        .await
                });
                match tokio::time::timeout(REDIS_TIMEOUT * 4, fut).await {
                    Ok(Ok(c)) => Some(Conn::Cluster(c.clone())),
                    _ => None,
                }
            }
            Kind::Sentinel(s) => s.conn().await,
            Kind::Broken => None,
        }
    }

    /// `<prefix>{<tag>}:<rest>`: the part in braces is the hash tag, so keys that share a
    /// tag share a Cluster slot (a script over several of them stays on one node).
    pub fn key(&self, tag: &[&str], rest: &[&str]) -> String {
        let mut k = self.prefix.clone();
        k.push('{');
        k.push_str(&tag.join(":"));
        k.push('}');
        for r in rest {
            k.push(':');
            k.push_str(r);
        }
        k
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Sentinel {
    async fn conn(&self) -> Option<Conn> {
        if let Some((c, stale)) = lock(&self.current).as_ref() {
            if !stale.load(Ordering::Relaxed) {
                return Some(Conn::Sentinel(c.clone(), stale.clone()));
            }
        }
        if lock(&self.failed_at).is_some_and(|t| t.elapsed() < RESOLVE_BACKOFF) {
            return None;
        }
        let found = tokio::time::timeout(REDIS_TIMEOUT * 4, async {
            // One look-up at a time; those who waited take what it found.
            let mut client = self.client.lock().await;
            if let Some((c, stale)) = lock(&self.current).as_ref() {
                if !stale.load(Ordering::Relaxed) {
                    return Ok((c.clone(), stale.clone()));
                }
            }
            let master = client.async_get_client().await?;
            let c = ConnectionManager::new_with_config(master, manager_config()).await?;
            let fresh = (c, Arc::new(AtomicBool::new(false)));
            *lock(&self.current) = Some(fresh.clone());
            Ok::<_, redis::RedisError>(fresh)
        })
        .await;
        match found {
            Ok(Ok((c, stale))) => {
                *lock(&self.failed_at) = None;
                Some(Conn::Sentinel(c, stale))
            }
            _ => {
                tracing::warn!("no Redis master through the sentinels");
                *lock(&self.failed_at) = Some(tokio::time::Instant::now());
                None
            }
        }
    }
}
