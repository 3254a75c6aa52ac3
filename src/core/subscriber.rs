//! The one pub/sub connection per endpoint: subscribes to the channels local waiters need,
//! turns release messages into wake-ups, and after a dropped connection reconnects,
//! resubscribes and wakes every queue head (a release may have been published meanwhile).
//!
//! A connection can also die silently (a half-open socket: the peer or a middlebox is gone and
//! nothing says so), and a subscriber only listens. So while anybody waits, it sends PING every
//! `PING_EVERY` and counts the connection dead when the answer takes longer than `PING_TIMEOUT`:
//! a dead connection is noticed within their sum, and its waiters recover as after a drop.

use crate::core::error::Result;
use crate::core::events::{self, Connection, Event};
use crate::core::waiters::{SubscriberCommand, Waiters};
use futures_util::StreamExt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Weak;
use std::time::Duration;
use tokio::sync::mpsc;

/// Keepalive of a subscriber with waiters: noticed dead within 1 + 2 = 3 s.
/// (Cluster mode's subscriber keeps the same beat and timeout, cluster.rs.)
pub(crate) const PING_EVERY: Duration = Duration::from_secs(1);
pub(crate) const PING_TIMEOUT: Duration = Duration::from_secs(2);
const MIN_BACKOFF: Duration = Duration::from_millis(20);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// What a subscriber needs of the server it listens to. Implemented by the connection layer
/// (`Endpoint`), which sits above this module: the subscriber knows its server only through
/// this.
pub trait Source: Send + Sync + 'static {
    /// A client for the server to subscribe on now (in sentinel mode, the current master).
    fn client(&self) -> impl Future<Output = Result<redis::Client>> + Send;
    /// `host:port`, for events.
    fn address(&self) -> String;
    /// The subscriber's connection failed: the server may have failed over.
    fn connection_lost(&self) -> impl Future<Output = ()> + Send;
}

/// Runs until every sender of `commands` is gone (the endpoint was dropped).
pub async fn run<S: Source>(
    endpoint: Weak<S>,
    waiters: Weak<Waiters>,
    mut commands: mpsc::UnboundedReceiver<SubscriberCommand>,
    connect_timeout: Duration,
) {
    let mut backoff = MIN_BACKOFF;
    let mut reconnecting = false;
    loop {
        let Some(owner) = waiters.upgrade() else {
            return;
        };
        let Some(server) = endpoint.upgrade() else {
            return;
        };
        let connect = async {
            let client = server.client().await?;
            Ok::<_, crate::core::LockError>(client.get_async_pubsub().await?)
        };
        let connected = tokio::time::timeout(connect_timeout, connect).await;
        drop(server);
        // Named for events only (events.rs), without holding the endpoint meanwhile.
        let address = || endpoint.upgrade().map_or_else(String::new, |s| s.address());
        let pubsub = match connected {
            Ok(Ok(pubsub)) => pubsub,
            failed => {
                events::emit(|| Event::ConnectFailed {
                    endpoint: address(),
                    connection: Connection::Subscriber,
                    error: match failed {
                        Ok(Err(err)) => err.to_string(),
                        _ => format!(
                            "could not connect within {} ms",
                            connect_timeout.as_millis()
                        ),
                    },
                });
                drop(owner);
                // Keep draining commands while down: the full channel list is resubscribed on
                // connect, so individual commands can be dropped.
                let sleep = tokio::time::sleep(backoff);
                tokio::pin!(sleep);
                loop {
                    tokio::select! {
                        _ = &mut sleep => break,
                        command = commands.recv() => if command.is_none() { return },
                    }
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                reconnecting = true;
                continue;
            }
        };
        let (mut sink, mut stream) = pubsub.split();
        let channels = owner.channels();
        let refused = if channels.is_empty() {
            None
        } else {
            sink.subscribe(&channels).await.err()
        };
        if let Some(err) = refused {
            // Refused (an ACL without SUBSCRIBE, say): back off as for a failed connect.
            events::emit(|| Event::ConnectFailed {
                endpoint: address(),
                connection: Connection::Subscriber,
                error: format!("SUBSCRIBE failed: {err}"),
            });
            drop(owner);
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
            continue;
        }
        for channel in &channels {
            owner.set_subscribed(channel, true);
        }
        if reconnecting {
            owner.wake_all_heads();
        }
        events::emit(|| Event::Connected {
            endpoint: address(),
            connection: Connection::Subscriber,
            reconnect: reconnecting,
        });
        drop(owner);
        backoff = MIN_BACKOFF;
        reconnecting = true;

        let mut beat = tokio::time::interval(PING_EVERY);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The PING in flight, if any: polled beside the messages, so it never delays a wake-up.
        let mut ping: Option<Pin<Box<dyn Future<Output = bool> + Send>>> = None;
        let reason = loop {
            tokio::select! {
                _ = beat.tick(), if ping.is_none() => {
                    if waiters.upgrade().is_some_and(|owner| owner.has_channels()) {
                        let mut pinger = sink.clone();
                        ping = Some(Box::pin(async move {
                            let answer = pinger.ping::<redis::Value>();
                            matches!(tokio::time::timeout(PING_TIMEOUT, answer).await, Ok(Ok(_)))
                        }));
                    }
                }
                alive = async { ping.as_mut().expect("guarded").await }, if ping.is_some() => {
                    ping = None;
                    if !alive {
                        break "PING unanswered";
                    }
                }
                command = commands.recv() => {
                    let Some(command) = command else { return };
                    let Some(owner) = waiters.upgrade() else { return };
                    let ok = match command {
                        SubscriberCommand::Subscribe(channel) => {
                            let ok = sink.subscribe(&channel).await.is_ok();
                            if ok {
                                owner.set_subscribed(&channel, true);
                            }
                            ok
                        }
                        SubscriberCommand::Unsubscribe(channel) => {
                            // A waiter may have come back for this channel since the command was sent.
                            owner.is_wanted(&channel) || sink.unsubscribe(&channel).await.is_ok()
                        }
                    };
                    if !ok {
                        break "SUBSCRIBE or UNSUBSCRIBE failed";
                    }
                }
                message = stream.next() => {
                    let Some(message) = message else { break "connection closed" };
                    let Some(owner) = waiters.upgrade() else { return };
                    if let Ok(key) = std::str::from_utf8(message.get_payload_bytes()) {
                        owner.released(message.get_channel_name(), key);
                    }
                }
            }
        };
        if let Some(owner) = waiters.upgrade() {
            owner.set_all_subscribed(false);
        }
        if let Some(server) = endpoint.upgrade() {
            events::emit(|| Event::Lost {
                endpoint: server.address(),
                connection: Connection::Subscriber,
                reason: reason.to_owned(),
            });
            server.connection_lost().await;
        }
    }
}
