//! The lock engine: redfour's operations on one namespace, over one shared Redis endpoint or a
//! quorum of independent masters.

use crate::core::cluster::Cluster;
use crate::core::config::{Replication, Settings, Timeouts};
use crate::core::endpoint::Endpoint;
use crate::core::error::{LockError, Result};
use crate::core::outcome::{check_ttl, Acquired, Released, Renewed, WaitAcquired};
use crate::core::quorum::Quorum;
use crate::core::scripts;
use crate::core::sync::RwLockExt;
use crate::core::waiters::{jitter, Registration, Waiters, Wake};
use std::borrow::Cow;
use std::sync::{Arc, LazyLock, RwLock};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How long a wait with no deadline keeps retrying through a Redis outage before it fails.
const UNBOUNDED_WAIT_OUTAGE_LIMIT: Duration = Duration::from_secs(30);
/// Poll interval when the holder's key has no expiry at all (left by an old client's bug).
const NO_EXPIRY_POLL: Duration = Duration::from_secs(1);
const MIN_RETRY: Duration = Duration::from_millis(20);
const MAX_RETRY: Duration = Duration::from_secs(1);
/// Waiters' attempts in flight at once, per Lock. A burst of waits (10,000 started in one tick)
/// would otherwise have every first attempt's buffers alive together, and the long-lived
/// waiter state allocated among them stays scattered over the memory they leave behind: with
/// this limit 10,000 waiters measured about 6 MB less RSS. 128 attempts per round trip still
/// keep Redis busy (the burst is bound by Redis's CPU, not by round trips), and plain
/// acquire, release and renew calls are not limited.
const WAIT_ATTEMPTS_IN_FLIGHT: usize = 128;

/// The abort token of every wait that cannot be aborted: shared and never cancelled, so such a
/// wait allocates no token of its own (10,000 waiters, 10,000 fewer allocations).
pub fn never_aborted() -> &'static CancellationToken {
    static NEVER: LazyLock<CancellationToken> = LazyLock::new(CancellationToken::new);
    &NEVER
}

/// A redfour-compatible lock namespace. Cheap to clone; clones share state and `close`.
#[derive(Clone)]
pub struct Lock {
    inner: Arc<Inner>,
}

struct Inner {
    namespace: String,
    counter_key: String,
    channel: String,
    /// Dropped on close, so the shared connections close once no Lock uses them.
    backend: RwLock<Option<Backend>>,
    closed: CancellationToken,
    replication: Option<Replication>,
    cluster: bool,
    /// Permits for waiters' attempts (WAIT_ATTEMPTS_IN_FLIGHT).
    wait_attempts: tokio::sync::Semaphore,
}

impl Lock {
    /// A lock on one Redis server (one URL), or on several independent masters (two or more:
    /// the quorum (Redlock) mode, where a majority must grant each lock), or on a Redis Cluster
    /// (`settings.cluster`: the URLs are seed nodes).
    pub fn open(urls: &[String], namespace: &str, settings: &Settings) -> Result<Lock> {
        let backend = match urls {
            [] => return Err(LockError::InvalidArg("no Redis URL given".to_owned())),
            _ if settings.cluster => {
                if settings.replication.is_some() || settings.connect.sentinel.is_some() {
                    return Err(LockError::InvalidArg(
                        "cluster mode does not combine with minReplications or sentinels"
                            .to_owned(),
                    ));
                }
                if namespace.starts_with('}') {
                    // `{}...` is an empty hash tag: the lock's keys would scatter over slots.
                    return Err(LockError::InvalidArg(
                        "in cluster mode the namespace must not start with '}'".to_owned(),
                    ));
                }
                Backend::Cluster(Cluster::shared(urls, &settings.connect)?)
            }
            [url] => Backend::Single(Endpoint::shared(url, &settings.connect)?),
            urls => {
                if settings.replication.is_some() {
                    return Err(LockError::InvalidArg(
                        "minReplications applies to a single Redis server, not to quorum mode"
                            .to_owned(),
                    ));
                }
                Backend::Quorum(Quorum::shared(urls, &settings.connect)?)
            }
        };
        Ok(Lock {
            inner: Arc::new(Inner {
                namespace: namespace.to_owned(),
                counter_key: format!("{namespace}index"),
                channel: format!("{namespace}-release"),
                backend: RwLock::new(Some(backend)),
                closed: CancellationToken::new(),
                replication: settings.replication,
                cluster: settings.cluster,
                wait_attempts: tokio::sync::Semaphore::new(WAIT_ATTEMPTS_IN_FLIGHT),
            }),
        })
    }

    /// The Redis key of lock `id`: redfour's `{namespace}:{id}`, or in cluster mode the same
    /// inside a hash tag, `{{namespace}:{id}}`.
    pub fn key(&self, id: &str) -> String {
        let namespace = &self.inner.namespace;
        if self.inner.cluster {
            return format!("{{{namespace}:{id}}}");
        }
        let mut key = String::with_capacity(namespace.len() + 1 + id.len());
        key.push_str(namespace);
        key.push(':');
        key.push_str(id);
        key
    }

    /// The channel on which the release of lock `key` is announced: one per namespace, or in
    /// cluster mode a sharded channel per lock, in the lock's slot.
    pub fn channel(&self, key: &str) -> Cow<'_, str> {
        if self.inner.cluster {
            Cow::Owned(format!("{key}:release"))
        } else {
            Cow::Borrowed(&self.inner.channel)
        }
    }

    /// The counter whose INCR gives lock `key` its index: one per namespace, or in cluster mode
    /// one per lock, in the lock's slot.
    pub fn counter_key(&self, key: &str) -> Cow<'_, str> {
        if self.inner.cluster {
            Cow::Owned(format!("{key}:index"))
        } else {
            Cow::Borrowed(&self.inner.counter_key)
        }
    }

    fn backend(&self) -> Result<Backend> {
        if self.inner.closed.is_cancelled() {
            return Err(LockError::Closed);
        }
        self.inner
            .backend
            .reading()
            .clone()
            .ok_or(LockError::Closed)
    }

    /// Stops the lock: pending waits fail with `Closed`, later calls too. Idempotent.
    pub fn close(&self) {
        self.inner.closed.cancel();
        self.inner.backend.writing().take();
    }

    pub fn is_closed(&self) -> bool {
        self.inner.closed.is_cancelled()
    }

    /// One attempt to take lock `id` for `ttl_ms`.
    pub async fn acquire(&self, id: &str, ttl_ms: u64) -> Result<Acquired> {
        check_ttl(ttl_ms)?;
        let backend = self.backend()?;
        let key = self.key(id);
        self.attempt(&backend, &key, ttl_ms).await
    }

    async fn attempt(&self, backend: &Backend, key: &str, ttl_ms: u64) -> Result<Acquired> {
        let counter_key = &*self.counter_key(key);
        match (backend, self.inner.replication) {
            (Backend::Single(node), None) => {
                let name = scripts::attempt_name();
                let attempt = node.acquire(key, counter_key, ttl_ms, &name).await;
                node.checked(attempt).await
            }
            // The other modes' futures are large and rare: boxed, they do not bloat every
            // waiter's state (10,000 waiters are 10,000 of these).
            (Backend::Single(node), Some(replication)) => {
                let got = Box::pin(node.acquire_replicated(key, counter_key, ttl_ms, replication))
                    .await?;
                if got.success {
                    return Ok(got);
                }
                if got.index > 0 {
                    // Granted but not replicated in time: a failover could lose it. Undo it
                    // (announced: others saw the key and may be waiting) and report no grant.
                    Box::pin(self.release_key(backend, key, got.index)).await?;
                }
                Ok(Acquired { index: -1, ..got })
            }
            (Backend::Quorum(nodes), _) => {
                let channel = self.channel(key);
                Box::pin(nodes.acquire(key, counter_key, ttl_ms, &channel)).await
            }
            (Backend::Cluster(cluster), _) => {
                Box::pin(cluster.acquire(key, counter_key, ttl_ms)).await
            }
        }
    }

    /// Takes lock `id`, waiting up to `wait` (forever if `None`) for its holder to release it.
    /// Times out with `success: false` after one last attempt.
    pub async fn wait_acquire(
        &self,
        id: &str,
        ttl_ms: u64,
        wait: Option<Duration>,
    ) -> Result<WaitAcquired> {
        self.wait_acquire_until(id, ttl_ms, wait, never_aborted())
            .await
    }

    /// As `wait_acquire`, and gives up with `Aborted` when `abort` is cancelled. A grant that
    /// races the abort is released at once, never leaked.
    pub async fn wait_acquire_until(
        &self,
        id: &str,
        ttl_ms: u64,
        wait: Option<Duration>,
        abort: &CancellationToken,
    ) -> Result<WaitAcquired> {
        if abort.is_cancelled() {
            return Err(LockError::Aborted);
        }
        check_ttl(ttl_ms)?;
        let backend = self.backend()?;
        let key = self.key(id);
        let started = Instant::now();
        let deadline = wait.map(|w| started + w);
        let waiters = backend.waiters();
        let mut place = waiters.join(&self.channel(&key), &key);
        // Subscribed before the first attempt: a release between a failed attempt and the wait
        // is then always heard (redfour subscribed after failing, and could sleep a whole TTL).
        let limit = started + backend.timeouts().connect;
        let limit = deadline.map_or(limit, |d| d.min(limit));
        tokio::select! {
            _ = place.subscribed(limit) => {}
            _ = self.inner.closed.cancelled() => return Err(LockError::Closed),
            _ = abort.cancelled() => return Err(LockError::Aborted),
        }

        let mut try_now = place.joined_as_head();
        let mut immediate = true;
        let mut poll_at: Option<Instant> = None;
        let mut retry = MIN_RETRY;
        let mut failing_since: Option<Instant> = None;
        loop {
            if try_now && place.is_head() {
                let attempt = {
                    // At most WAIT_ATTEMPTS_IN_FLIGHT at once (see there).
                    let _permit = self.inner.wait_attempts.acquire().await;
                    Box::pin(self.attempt(&backend, &key, ttl_ms)).await
                };
                match attempt {
                    Ok(got) if got.success => {
                        return self.won(&backend, place, &key, got, immediate, abort).await;
                    }
                    Ok(held) => {
                        failing_since = None;
                        retry = MIN_RETRY;
                        poll_at = Some(Instant::now() + expiry_delay(held.ttl));
                    }
                    // A wait issued while Redis is down fails like any other call; one that
                    // was already waiting rides out the outage (below).
                    Err(err) if immediate => return Err(err),
                    Err(err) if err.is_transient() => {
                        let since = *failing_since.get_or_insert_with(Instant::now);
                        if deadline.is_none() && since.elapsed() > UNBOUNDED_WAIT_OUTAGE_LIMIT {
                            return Err(err);
                        }
                        poll_at = Some(Instant::now() + retry);
                        retry = (retry * 2).min(MAX_RETRY);
                    }
                    Err(err) => return Err(err),
                }
            }
            immediate = false;
            try_now = false;

            let far = Instant::now() + Duration::from_secs(3600);
            let timer = match (poll_at, deadline) {
                (Some(poll), Some(end)) => Some(poll.min(end)),
                (poll, end) => poll.or(end),
            };
            tokio::select! {
                wake = place.woken() => match wake {
                    Wake::TryNow => try_now = true,
                    Wake::PollAt(at) => poll_at = Some(at),
                    Wake::Nothing => {}
                },
                // One timer for both the poll and the deadline: a waiter is one of these futures,
                // 10,000 waiters are 10,000 of them, and a timer is one of their largest parts.
                _ = tokio::time::sleep_until(timer.unwrap_or(far)), if timer.is_some() => {
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        // Out of time: one last attempt, whose answer is the answer.
                        let last = Box::pin(self.attempt(&backend, &key, ttl_ms)).await?;
                        if last.success {
                            return self.won(&backend, place, &key, last, false, abort).await;
                        }
                        return Ok(WaitAcquired {
                            success: false,
                            index: last.index,
                            ttl: last.ttl,
                            immediate: false,
                            valid_until: last.valid_until,
                        });
                    }
                    poll_at = None;
                    try_now = true;
                }
                _ = self.inner.closed.cancelled() => return Err(LockError::Closed),
                _ = abort.cancelled() => return Err(LockError::Aborted),
            }
        }
    }

    /// Hands a won lock to the caller, unless the lock was closed or the wait aborted meanwhile:
    /// then the grant is released at once rather than leaked until its TTL.
    async fn won(
        &self,
        backend: &Backend,
        place: Registration,
        key: &str,
        got: Acquired,
        immediate: bool,
        abort: &CancellationToken,
    ) -> Result<WaitAcquired> {
        place.leave_won(Duration::from_millis(got.ttl.max(0) as u64));
        let refused = if self.is_closed() {
            Some(LockError::Closed)
        } else if abort.is_cancelled() {
            Some(LockError::Aborted)
        } else {
            None
        };
        if let Some(err) = refused {
            // Best effort: if this fails too, the TTL still ends the lease.
            let _ = Box::pin(self.release_key(backend, key, got.index)).await;
            return Err(err);
        }
        Ok(WaitAcquired {
            success: true,
            index: got.index,
            ttl: got.ttl,
            immediate,
            valid_until: got.valid_until,
        })
    }

    /// Releases lock `id` if it is still held under `index`, and wakes its waiters.
    pub async fn release(&self, id: &str, index: i64) -> Result<Released> {
        let backend = self.backend()?;
        let key = self.key(id);
        self.release_key(&backend, &key, index).await
    }

    async fn release_key(&self, backend: &Backend, key: &str, index: i64) -> Result<Released> {
        let channel = &*self.channel(key);
        match backend {
            Backend::Single(node) => node.checked(node.release(key, index, channel).await).await,
            Backend::Quorum(nodes) => Box::pin(nodes.release(key, index, channel)).await,
            Backend::Cluster(cluster) => Box::pin(cluster.release(key, index, channel)).await,
        }
    }

    /// Sets the TTL of lock `id` to `ttl_ms` if it is still held under `index`.
    pub async fn renew(&self, id: &str, index: i64, ttl_ms: u64) -> Result<Renewed> {
        check_ttl(ttl_ms)?;
        let key = self.key(id);
        match self.backend()? {
            Backend::Single(node) => node.checked(node.renew(&key, index, ttl_ms).await).await,
            Backend::Quorum(nodes) => Box::pin(nodes.renew(&key, index, ttl_ms)).await,
            Backend::Cluster(cluster) => Box::pin(cluster.renew(&key, index, ttl_ms)).await,
        }
    }
}

/// Where the locks live.
#[derive(Clone)]
enum Backend {
    Single(Arc<Endpoint>),
    Quorum(Arc<Quorum>),
    Cluster(Arc<Cluster>),
}

impl Backend {
    /// The waiters woken by this backend's release messages, with their subscribers running.
    fn waiters(&self) -> &Arc<Waiters> {
        match self {
            Backend::Single(node) => {
                node.ensure_subscriber();
                &node.waiters
            }
            Backend::Quorum(nodes) => {
                nodes.ensure_subscribers();
                &nodes.waiters
            }
            Backend::Cluster(cluster) => {
                cluster.ensure_subscriber();
                &cluster.waiters
            }
        }
    }

    fn timeouts(&self) -> Timeouts {
        match self {
            Backend::Single(node) => node.timeouts(),
            Backend::Quorum(nodes) => nodes.timeouts(),
            Backend::Cluster(cluster) => cluster.timeouts(),
        }
    }
}

/// When to look again at a lock held with `pttl` ms left, if no release is announced.
fn expiry_delay(pttl: i64) -> Duration {
    match pttl {
        -1 => NO_EXPIRY_POLL,
        p if p < 0 => jitter(),
        p => Duration::from_millis(p as u64) + jitter(),
    }
}
