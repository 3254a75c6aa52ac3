//! Redis Cluster mode. Each lock's keys and release channel carry one hash tag, so they live in
//! one slot: lock `{ns:id}`, counter `{ns:id}:index` (a fencing counter per lock), sharded
//! release channel `{ns:id}:release` (SPUBLISH/SSUBSCRIBE, Redis 7). This layout differs from
//! redfour's (whose two keys hash to different slots and so cannot work in a cluster).
//!
//! Two cluster connections: one for commands, one (RESP3) for sharded subscriptions. redis-rs
//! routes by slot, follows MOVED/ASK, and resubscribes after resharding or failover. (They are
//! separate because a slot move makes the server push SUNSUBSCRIBE, which redis-rs 1.8 can take
//! for the reply to a command pending on the same connection.) Releases published during such a
//! change can be missed: waiters then fall back to polling at the holder's TTL, and every queue
//! head retries when the library reports a disconnection.

use crate::core::config::{Connect, Timeouts};
use crate::core::error::{LockError, Result};
use crate::core::events::{self, Connection, Event};
use crate::core::outcome::{Acquired, Released, Renewed};
use crate::core::registry::Registry;
use crate::core::scripts;
use crate::core::slot::Slot;
use crate::core::subscriber::{PING_EVERY, PING_TIMEOUT};
use crate::core::sync::MutexExt;
use crate::core::waiters::{SubscriberCommand, Waiters};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{PushInfo, PushKind, Value};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::mpsc;

/// How often sharded subscriptions that failed are tried again, and (while anybody waits) the
/// subscriber's connections are checked: single-server mode's keepalive beat, and a PING
/// answered later than its timeout counts the connection dead in both modes.
const RESUBSCRIBE_EVERY: Duration = PING_EVERY;

pub struct Cluster {
    client: redis::cluster::ClusterClient,
    conn: Slot<ClusterConnection>,
    subscriber_client: redis::cluster::ClusterClient,
    subscriber_conn: Slot<ClusterConnection>,
    /// Pushes (sharded messages, disconnections) until the subscriber task takes them.
    pushes: Mutex<Option<mpsc::UnboundedReceiver<PushInfo>>>,
    pub waiters: Arc<Waiters>,
    timeouts: Timeouts,
    /// The seed nodes as `host:port`, without credentials: what events name the cluster by.
    seeds: String,
}

static CLUSTERS: Registry<(Vec<String>, Connect), Cluster> = Registry::new();

impl Cluster {
    /// The cluster reached through the seed nodes `urls`, shared by every Lock with the same seeds.
    pub fn shared(urls: &[String], connect: &Connect) -> Result<Arc<Cluster>> {
        let mut seeds = urls.to_vec();
        seeds.sort();
        CLUSTERS.get_or_create((seeds, connect.clone()), || {
            let (tx, rx) = mpsc::unbounded_channel();
            let client = build(urls, connect, None)?;
            let subscriber_client = build(urls, connect, Some(tx))?;
            let seeds = urls
                .iter()
                .map(|url| {
                    redis::IntoConnectionInfo::into_connection_info(url.as_str()).map_or_else(
                        |_| "an unparsable address".to_owned(),
                        |info| events::describe(info.addr()),
                    )
                })
                .collect::<Vec<_>>()
                .join(", ");
            Ok(Arc::new(Cluster {
                client,
                conn: Slot::new(),
                subscriber_client,
                subscriber_conn: Slot::new(),
                pushes: Mutex::new(Some(rx)),
                waiters: Arc::new(Waiters::new()),
                timeouts: connect.timeouts,
                seeds,
            }))
        })
    }

    pub fn timeouts(&self) -> Timeouts {
        self.timeouts
    }

    /// The command connection, opened on first use (a failed connect is retried next time).
    pub async fn connection(&self) -> Result<ClusterConnection> {
        self.open(&self.client, &self.conn, Connection::Commands)
            .await
    }

    async fn subscriber_connection(&self) -> Result<ClusterConnection> {
        self.open(
            &self.subscriber_client,
            &self.subscriber_conn,
            Connection::Subscriber,
        )
        .await
    }

    async fn open(
        &self,
        client: &redis::cluster::ClusterClient,
        slot: &Slot<ClusterConnection>,
        which: Connection,
    ) -> Result<ClusterConnection> {
        let connect = async {
            match tokio::time::timeout(self.timeouts.connect * 2, client.get_async_connection())
                .await
            {
                Ok(Ok(conn)) => Ok(conn),
                Ok(Err(err)) => Err(err.into()),
                Err(_) => Err(LockError::unreachable(
                    "could not reach the cluster in time",
                )),
            }
        };
        slot.get(connect, || self.seeds.clone(), which).await
    }

    pub fn ensure_subscriber(self: &Arc<Self>) {
        self.waiters.attach_subscribers(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            let pushes = self.pushes.locked().take();
            if let Some(pushes) = pushes {
                tokio::spawn(subscribe(Arc::downgrade(self), rx, pushes));
            }
            vec![tx]
        });
    }

    /// While anybody waits: PING every primary through the subscriber's connections (redis-rs
    /// routes PING to all of them). One that does not answer in time may be half-open: the
    /// connection is dropped, every channel counts as unsubscribed, and the next beat subscribes
    /// them again on a new connection and wakes every queue head.
    async fn check_subscriber(&self) {
        let Some(mut conn) = self.subscriber_conn.current() else {
            return;
        };
        let cmd = redis::cmd("PING");
        let ping = cmd.query_async::<Value>(&mut conn);
        if matches!(tokio::time::timeout(PING_TIMEOUT, ping).await, Ok(Ok(_))) {
            return;
        }
        self.subscriber_conn.clear();
        self.waiters.set_all_subscribed(false);
        events::emit(|| Event::Lost {
            endpoint: self.seeds.clone(),
            connection: Connection::Subscriber,
            reason: "keepalive unanswered".to_owned(),
        });
    }

    pub async fn acquire(&self, key: &str, counter_key: &str, ttl_ms: u64) -> Result<Acquired> {
        scripts::acquire(
            &mut self.connection().await?,
            key,
            counter_key,
            ttl_ms,
            // Named, like every attempt: when redis-rs sends it again (a redirect, a lost
            // reply), the script finds its own grant instead of reporting the lock held.
            &scripts::attempt_name(),
        )
        .await
    }

    pub async fn release(&self, key: &str, index: i64, channel: &str) -> Result<Released> {
        scripts::release(&mut self.connection().await?, key, index, channel, true).await
    }

    pub async fn renew(&self, key: &str, index: i64, ttl_ms: u64) -> Result<Renewed> {
        scripts::renew(&mut self.connection().await?, key, index, ttl_ms).await
    }
}

/// A cluster client; with `pushes`, RESP3 and sharded-subscription pushes sent there.
fn build(
    urls: &[String],
    connect: &Connect,
    pushes: Option<mpsc::UnboundedSender<PushInfo>>,
) -> Result<redis::cluster::ClusterClient> {
    let mut builder = ClusterClientBuilder::new(urls.iter().map(String::as_str))
        .connection_timeout(connect.timeouts.connect)
        .response_timeout(connect.timeouts.command);
    if let Some(pushes) = pushes {
        builder = builder
            .use_protocol(redis::ProtocolVersion::RESP3)
            .push_sender(pushes);
    }
    if let Some(tls) = &connect.tls {
        builder = builder.certs(tls.certificates()?);
    }
    builder
        .build()
        .map_err(|err| LockError::InvalidArg(format!("invalid cluster URLs: {err}")))
}

/// The subscriber of cluster mode: SSUBSCRIBE/SUNSUBSCRIBE as waiters come and go, and sharded
/// messages turned into wake-ups. Ends when the cluster is dropped.
async fn subscribe(
    cluster: Weak<Cluster>,
    mut commands: mpsc::UnboundedReceiver<SubscriberCommand>,
    mut pushes: mpsc::UnboundedReceiver<PushInfo>,
) {
    // A refused or failed SSUBSCRIBE (a node down, a slot moving) is tried again on this beat.
    let mut retry = tokio::time::interval(RESUBSCRIBE_EVERY);
    retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = retry.tick() => {
                let Some(cluster) = cluster.upgrade() else { return };
                if cluster.waiters.has_channels() {
                    cluster.check_subscriber().await;
                }
                let pending = cluster.waiters.unconfirmed();
                if pending.is_empty() {
                    continue;
                }
                let Ok(mut conn) = cluster.subscriber_connection().await else { continue };
                for channel in pending {
                    if conn.ssubscribe(&channel).await.is_ok() {
                        cluster.waiters.set_subscribed(&channel, true);
                    }
                }
                // A release may have gone by while the channel was not subscribed.
                cluster.waiters.wake_all_heads();
            }
            command = commands.recv() => {
                let Some(command) = command else { return };
                let Some(cluster) = cluster.upgrade() else { return };
                let Ok(mut conn) = cluster.subscriber_connection().await else {
                    // Waiters poll at the holder's TTL meanwhile; the next command tries again.
                    continue;
                };
                match command {
                    SubscriberCommand::Subscribe(channel) => {
                        if conn.ssubscribe(&channel).await.is_ok() {
                            cluster.waiters.set_subscribed(&channel, true);
                        }
                    }
                    SubscriberCommand::Unsubscribe(channel) => {
                        if !cluster.waiters.is_wanted(&channel) {
                            let _ = conn.sunsubscribe(&channel).await;
                        }
                    }
                }
            }
            push = pushes.recv() => {
                let Some(push) = push else { return };
                let Some(cluster) = cluster.upgrade() else { return };
                match (push.kind, push.data.as_slice()) {
                    (PushKind::SMessage, [channel, payload, ..]) => {
                        if let (Some(channel), Some(key)) = (text(channel), text(payload)) {
                            cluster.waiters.released(&channel, &key);
                        }
                    }
                    (PushKind::Disconnection, _) => {
                        events::emit(|| Event::Lost {
                            endpoint: cluster.seeds.clone(),
                            connection: Connection::Subscriber,
                            reason: "a node's connection closed".to_owned(),
                        });
                        cluster.waiters.wake_all_heads();
                    }
                    // The server drops sharded subscriptions whose slot moved away. Follow the
                    // slot (the client is redirected to the new owner) and let every queue head
                    // look again: a release may have gone by meanwhile.
                    (PushKind::SUnsubscribe, [channel, ..]) => {
                        let Some(channel) = text(channel) else { continue };
                        if cluster.waiters.is_wanted(&channel) {
                            // Unconfirmed until it works: the retry beat tries again if not.
                            cluster.waiters.set_subscribed(&channel, false);
                            if let Ok(mut conn) = cluster.subscriber_connection().await {
                                if conn.ssubscribe(&channel).await.is_ok() {
                                    cluster.waiters.set_subscribed(&channel, true);
                                }
                            }
                            cluster.waiters.wake_all_heads();
                        }
                    }
                    _ => {}
                }
            }
        }
    }
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}
