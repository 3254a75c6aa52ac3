//! One Redis server as seen from this process: a multiplexed command connection and a pub/sub
//! connection, shared by every `Lock` with the same URL and timeouts (100 Lock instances still
//! open two sockets). Connections are opened on first use and reopened after failures.

use crate::core::batch::{Batched, Batcher};
use crate::core::config::{Connect, Replication, Sentinel, Timeouts, Tls};
use crate::core::error::{Failure, LockError, Result};
use crate::core::events::{self, Connection, Event};
use crate::core::outcome::{Acquired, Released, Renewed};
use crate::core::registry::Registry;
use crate::core::scripts::{self, ACQUIRE_SCRIPT, UNDO_SCRIPT};
use crate::core::slot::Slot;
use crate::core::subscriber;
use crate::core::sync::RwLockExt;
use crate::core::waiters::{SubscriberCommand, Waiters};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Sentinel mode: how often the sentinels may be asked where the master is.
const SENTINEL_REFRESH: Duration = Duration::from_millis(250);
use tokio::sync::mpsc;
use tokio::time::Instant;

fn invalid_url(err: redis::RedisError) -> LockError {
    LockError::InvalidArg(format!("invalid Redis URL: {err}"))
}

fn client(info: redis::ConnectionInfo, tls: Option<&Tls>) -> Result<redis::Client> {
    if matches!(info.addr(), redis::ConnectionAddr::TcpTls { .. }) {
        // rustls needs a process-wide crypto provider; an application may have installed its
        // own already, which is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
    let Some(tls) = tls else {
        return redis::Client::open(info).map_err(invalid_url);
    };
    let certificates = tls.certificates()?;
    redis::Client::build_with_tls(info, certificates).map_err(invalid_url)
}

/// The same connection settings aimed at another host and port (a master found by sentinels).
fn retarget(info: &redis::ConnectionInfo, host: String, port: u16) -> redis::ConnectionInfo {
    let addr = match info.addr() {
        redis::ConnectionAddr::TcpTls { insecure, .. } => redis::ConnectionAddr::TcpTls {
            host,
            port,
            insecure: *insecure,
            tls_params: None,
        },
        _ => redis::ConnectionAddr::Tcp(host, port),
    };
    info.clone().set_addr(addr)
}

/// Sentinel mode: the master's address as last named, and when the sentinels were last asked.
type MasterSeen = (Option<(String, u16)>, Option<Instant>);

pub struct Endpoint {
    /// Replaced when sentinels name a new master.
    client: RwLock<redis::Client>,
    info: redis::ConnectionInfo,
    connect: Connect,
    /// Sentinel mode: the master address in use, and when it was last asked for.
    master: tokio::sync::Mutex<MasterSeen>,
    timeouts: Timeouts,
    command: Slot<ConnectionManager>,
    /// Batches the command connection's script calls (batch.rs).
    batcher: Batcher,
    /// Only for grants followed by WAIT: WAIT blocks its connection, so it gets its own.
    replicated: Slot<ConnectionManager>,
    /// Set once WAIT was seen to be allowed.
    wait_allowed: tokio::sync::OnceCell<()>,
    /// Set while the command connection is failing: the first failure reports it lost, the
    /// next success reconnected (the connection manager reconnects by itself, unseen).
    commands_down: AtomicBool,
    pub waiters: Arc<Waiters>,
}

static ENDPOINTS: Registry<(String, Connect), Endpoint> = Registry::new();

impl subscriber::Source for Endpoint {
    fn client(&self) -> impl std::future::Future<Output = Result<redis::Client>> + Send {
        self.current_client()
    }

    fn address(&self) -> String {
        Endpoint::address(self)
    }

    fn connection_lost(&self) -> impl std::future::Future<Output = ()> + Send {
        self.suspect_failover()
    }
}

impl Endpoint {
    /// The endpoint for `url`, shared with every other user of the same URL and settings.
    pub fn shared(url: &str, connect: &Connect) -> Result<Arc<Endpoint>> {
        ENDPOINTS.get_or_create((url.to_owned(), connect.clone()), || {
            let info = redis::IntoConnectionInfo::into_connection_info(url).map_err(invalid_url)?;
            Ok(Arc::new(Endpoint {
                client: RwLock::new(client(info.clone(), connect.tls.as_ref())?),
                info,
                connect: connect.clone(),
                master: tokio::sync::Mutex::new((None, None)),
                timeouts: connect.timeouts,
                command: Slot::new(),
                batcher: Batcher::default(),
                replicated: Slot::new(),
                wait_allowed: tokio::sync::OnceCell::new(),
                commands_down: AtomicBool::new(false),
                waiters: Arc::new(Waiters::new()),
            }))
        })
    }

    pub fn timeouts(&self) -> Timeouts {
        self.timeouts
    }

    /// Where this endpoint connects now, as `host:port` (in sentinel mode the master's address),
    /// never with credentials: what events name it by.
    pub fn address(&self) -> String {
        let client = self.client.reading();
        events::describe(client.get_connection_info().addr())
    }

    /// The command connection, opened on first use. A failed connect is not remembered: the next
    /// call tries again.
    pub async fn connection(&self) -> Result<ConnectionManager> {
        if let Some(conn) = self.command.current() {
            return Ok(conn);
        }
        // Opening is rare and its future is large: boxed, it does not weigh on every call's
        // (and every waiter's) state.
        Box::pin(self.open(&self.command, self.timeouts.command, Connection::Commands)).await
    }

    async fn open(
        &self,
        slot: &Slot<ConnectionManager>,
        response_timeout: Duration,
        which: Connection,
    ) -> Result<ConnectionManager> {
        let connect = async {
            let conn = self.connect(response_timeout).await?;
            if which == Connection::Commands {
                self.commands_down.store(false, Ordering::Relaxed);
            }
            Ok(conn)
        };
        slot.get(connect, || self.address(), which).await
    }

    /// Follows the command connection's health through the results of the operations on it:
    /// a connection failure (or timeout) after success reports it lost, the first success
    /// after that reconnected. One relaxed load when all is well.
    fn note<T>(&self, result: &Result<T>) {
        match result {
            Ok(_) => {
                if self.commands_down.load(Ordering::Relaxed)
                    && self.commands_down.swap(false, Ordering::Relaxed)
                {
                    events::emit(|| Event::Connected {
                        endpoint: self.address(),
                        connection: Connection::Commands,
                        reconnect: true,
                    });
                }
            }
            Err(err) if err.is_transient() => {
                if !self.commands_down.swap(true, Ordering::Relaxed) {
                    events::emit(|| Event::Lost {
                        endpoint: self.address(),
                        connection: Connection::Commands,
                        reason: err.to_string(),
                    });
                }
            }
            Err(_) => {}
        }
    }

    async fn connect(&self, response_timeout: Duration) -> Result<ConnectionManager> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeouts.connect))
            .set_response_timeout(Some(response_timeout))
            // Fail fast while Redis is down; the next command starts a new reconnect.
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(10))
            .set_max_delay(Duration::from_millis(200));
        let client = self.current_client().await?;
        let connect = client.get_connection_manager_with_config(config);
        match tokio::time::timeout(self.timeouts.connect * 2, connect).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(err)) => Err(err.into()),
            Err(_) => Err(LockError::unreachable(format!(
                "could not connect within {} ms",
                self.timeouts.connect.as_millis()
            ))),
        }
    }

    /// An acquire attempt followed, in the same round trip, by `WAIT replicas timeout`. A grant
    /// that too few replicas acknowledged comes back with `success: false` and its `index`, for
    /// the caller to undo.
    pub async fn acquire_replicated(
        &self,
        key: &str,
        counter_key: &str,
        ttl_ms: u64,
        replication: Replication,
    ) -> Result<Acquired> {
        let wait_ms = replication.timeout.as_millis() as u64;
        let mut conn = self
            .open(
                &self.replicated,
                self.timeouts.command + replication.timeout,
                Connection::Replication,
            )
            .await?;
        // Before the first grant, make sure WAIT is allowed at all (managed services and ACLs
        // may forbid it): refusing then leaves no grant behind, where a refused WAIT after a
        // grant would.
        self.wait_allowed
            .get_or_try_init(|| async {
                redis::cmd("WAIT")
                    .arg(0)
                    .arg(0)
                    .query_async::<i64>(&mut conn.clone())
                    .await
                    .map(|_| ())
                    .map_err(|err| {
                        let message = format!("minReplications needs the WAIT command: {err}");
                        let failure = match LockError::from(err) {
                            LockError::Redis { failure, .. } => failure,
                            _ => Failure::Reply,
                        };
                        LockError::Redis { message, failure }
                    })
            })
            .await?;
        let name = scripts::attempt_name();
        let pipeline = |command: &str, body: &str| {
            let mut pipe = redis::pipe();
            pipe.cmd(command)
                .arg(body)
                .arg(2)
                .arg(key)
                .arg(counter_key)
                .arg(ttl_ms)
                .arg(&name)
                .cmd("WAIT")
                .arg(replication.replicas)
                .arg(wait_ms);
            pipe
        };
        let sent_at = Instant::now();
        let answer: redis::RedisResult<((i64, i64, i64), i64)> =
            match pipeline("EVALSHA", ACQUIRE_SCRIPT.hash())
                .query_async(&mut conn)
                .await
            {
                Err(err)
                    if err.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
                {
                    pipeline("EVAL", ACQUIRE_SCRIPT.source())
                        .query_async(&mut conn)
                        .await
                }
                other => other,
            };
        let ((success, index, ttl), acknowledged) = answer.map_err(|err| {
            let err = LockError::from(err);
            match err {
                LockError::Redis {
                    message,
                    failure: Failure::Reply,
                } => LockError::Redis {
                    message: format!("minReplications needs the WAIT command: {message}"),
                    failure: Failure::Reply,
                },
                other => other,
            }
        })?;
        let replicated = acknowledged >= i64::from(replication.replicas);
        let got = Acquired::answered(success == 1 && replicated, index, ttl, sent_at);
        Ok(Acquired {
            // A grant too few replicas acknowledged keeps its index, for the caller to undo.
            index: if success == 1 { index } else { -1 },
            ttl: if success == 1 && !replicated { 0 } else { ttl },
            replication_failed: success == 1 && !replicated,
            ..got
        })
    }

    /// Makes sure the subscriber task runs. Must be called from inside the runtime.
    pub fn ensure_subscriber(self: &Arc<Self>) {
        self.waiters
            .attach_subscribers(|| vec![self.spawn_subscriber(&self.waiters)]);
    }

    /// Starts a subscriber on this server that wakes `waiters` (which may gather the waiters of
    /// several servers, in quorum mode).
    pub fn spawn_subscriber(
        self: &Arc<Self>,
        waiters: &Arc<Waiters>,
    ) -> mpsc::UnboundedSender<SubscriberCommand> {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(subscriber::run(
            Arc::downgrade(self),
            Arc::downgrade(waiters),
            rx,
            self.timeouts.connect,
        ));
        tx
    }

    /// The client to connect with: in sentinel mode, for the master the sentinels name now
    /// (asked at most every `SENTINEL_REFRESH`; the last known master if none answers).
    pub async fn current_client(&self) -> Result<redis::Client> {
        let Some(sentinel) = &self.connect.sentinel else {
            return Ok(self.client.reading().clone());
        };
        let mut master = self.master.lock().await;
        let fresh = master.1.is_some_and(|at| at.elapsed() < SENTINEL_REFRESH);
        if !fresh {
            master.1 = Some(Instant::now());
            if let Some(found) = self.ask_sentinels(sentinel).await {
                if master.0.as_ref() != Some(&found) {
                    let (host, port) = found.clone();
                    let moved =
                        client(retarget(&self.info, host, port), self.connect.tls.as_ref())?;
                    *self.client.writing() = moved;
                    if master.0.is_some() {
                        // A failover: connections to the old master must not be reused.
                        self.command.clear();
                        self.replicated.clear();
                    }
                    master.0 = Some(found);
                }
            }
        }
        if master.0.is_none() {
            return Err(LockError::unreachable(format!(
                "no sentinel named a master called {:?}",
                sentinel.master
            )));
        }
        Ok(self.client.reading().clone())
    }

    async fn ask_sentinels(&self, sentinel: &Sentinel) -> Option<(String, u16)> {
        for url in &sentinel.sentinels {
            let ask = async {
                let client = redis::Client::open(url.as_str()).ok()?;
                let mut conn = client.get_multiplexed_async_connection().await.ok()?;
                redis::cmd("SENTINEL")
                    .arg("GET-MASTER-ADDR-BY-NAME")
                    .arg(&sentinel.master)
                    .query_async::<Option<(String, u16)>>(&mut conn)
                    .await
                    .ok()
                    .flatten()
            };
            if let Ok(Some(found)) = tokio::time::timeout(self.timeouts.connect, ask).await {
                return Some(found);
            }
        }
        None
    }

    /// After an error that may mean the master moved (sentinel mode): ask the sentinels now,
    /// so the next call goes to the new master.
    pub async fn suspect_failover(&self) {
        if self.connect.sentinel.is_some() {
            self.master.lock().await.1 = None;
            let _ = self.current_client().await;
        }
    }

    /// Passes `result` on; a connection failure first makes sentinel mode look for a new master.
    pub async fn checked<T>(&self, result: Result<T>) -> Result<T> {
        if result.as_ref().is_err_and(LockError::is_transient) {
            Box::pin(self.suspect_failover()).await;
        }
        result
    }

    /// Runs `op` on the command connection. A connection the server closed while it sat idle
    /// (its `timeout` setting, CLIENT KILL, a proxy) is only found dead by the next request,
    /// which is then tried once more, on the connection the manager reopens. The same error can
    /// also mean Redis ran the request and the reply was lost, so every `op` must be safe to
    /// repeat: acquire names its attempt, release and renew are idempotent. `op` gets the
    /// connection with its script calls batched (batch.rs).
    async fn with_connection<'a, T, F, Fut>(&'a self, op: F) -> Result<T>
    where
        F: Fn(Batched<'a>) -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let batched = |conn| self.batcher.wrap(conn);
        let first = op(batched(self.connection().await?)).await;
        self.note(&first);
        match first {
            Err(err) if err.is_dropped() => {
                let again = op(batched(self.connection().await?)).await;
                self.note(&again);
                again
            }
            other => other,
        }
    }

    /// One acquire attempt on this server: redfour's script, keys `key` and `counter_key`,
    /// named `name` (a fresh `scripts::attempt_name()`; quorum mode gives every node the same).
    /// A plain function returning the connection's future, so it adds no state of its own to
    /// every caller's (and every waiter's) future.
    pub fn acquire<'a>(
        &'a self,
        key: &'a str,
        counter_key: &'a str,
        ttl_ms: u64,
        name: &'a str,
    ) -> impl std::future::Future<Output = Result<Acquired>> + 'a {
        // One name for both tries: a retry after a lost reply recognises its own grant.
        self.with_connection(move |mut conn| async move {
            scripts::acquire(&mut conn, key, counter_key, ttl_ms, name).await
        })
    }

    /// Releases `key` if held under `index`, publishing the key on `channel` (none if empty).
    pub async fn release(&self, key: &str, index: i64, channel: &str) -> Result<Released> {
        self.with_connection(|mut conn| async move {
            scripts::release(&mut conn, key, index, channel, false).await
        })
        .await
    }

    /// Quorum mode: deletes `key` if attempt `name` still holds it (see `scripts::UNDO`).
    pub async fn undo(&self, key: &str, name: &str, channel: &str) -> Result<bool> {
        self.with_connection(|mut conn| async move {
            let undone: i64 = UNDO_SCRIPT.run(&mut conn, &[key], (name, channel)).await?;
            Ok(undone == 1)
        })
        .await
    }

    /// Sets the TTL of `key` if it is still held under `index`.
    pub async fn renew(&self, key: &str, index: i64, ttl_ms: u64) -> Result<Renewed> {
        self.with_connection(|mut conn| async move {
            scripts::renew(&mut conn, key, index, ttl_ms).await
        })
        .await
    }
}
