//! One Redis server as seen from this process: a multiplexed command connection and a pub/sub
//! connection, shared by every `Lock` with the same URL and timeouts (100 Lock instances still
//! open two sockets). Connections are opened on first use and reopened after failures.

use crate::core::error::{LockError, Result};
use crate::core::subscriber;
use crate::core::waiters::Waiters;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, RwLock, Weak};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Timeouts {
    /// Bound on opening a connection (TCP, TLS and AUTH).
    pub connect: Duration,
    /// Bound on waiting for a reply to one command.
    pub command: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(5),
            command: Duration::from_secs(5),
        }
    }
}

pub struct Endpoint {
    client: redis::Client,
    timeouts: Timeouts,
    command: RwLock<Option<ConnectionManager>>,
    connecting: tokio::sync::Mutex<()>,
    pub waiters: Arc<Waiters>,
}

type Registry = Mutex<HashMap<(String, Timeouts), Weak<Endpoint>>>;

fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(Default::default)
}

impl Endpoint {
    /// The endpoint for `url`, shared with every other user of the same URL and timeouts.
    pub fn shared(url: &str, timeouts: Timeouts) -> Result<Arc<Endpoint>> {
        let mut endpoints = registry().lock().unwrap_or_else(|p| p.into_inner());
        let key = (url.to_owned(), timeouts);
        if let Some(endpoint) = endpoints.get(&key).and_then(Weak::upgrade) {
            return Ok(endpoint);
        }
        let client = redis::Client::open(url)
            .map_err(|err| LockError::InvalidArg(format!("invalid Redis URL: {err}")))?;
        let endpoint = Arc::new(Endpoint {
            client,
            timeouts,
            command: RwLock::new(None),
            connecting: tokio::sync::Mutex::new(()),
            waiters: Arc::new(Waiters::new()),
        });
        endpoints.retain(|_, weak| weak.strong_count() > 0);
        endpoints.insert(key, Arc::downgrade(&endpoint));
        Ok(endpoint)
    }

    pub fn timeouts(&self) -> Timeouts {
        self.timeouts
    }

    /// The command connection, opened on first use. A failed connect is not remembered: the next
    /// call tries again.
    pub async fn connection(&self) -> Result<ConnectionManager> {
        if let Some(conn) = self.cached() {
            return Ok(conn);
        }
        let _single_flight = self.connecting.lock().await;
        if let Some(conn) = self.cached() {
            return Ok(conn);
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeouts.connect))
            .set_response_timeout(Some(self.timeouts.command))
            // Fail fast while Redis is down; the next command starts a new reconnect.
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(10))
            .set_max_delay(Duration::from_millis(200));
        let connect = self.client.get_connection_manager_with_config(config);
        let conn = match tokio::time::timeout(self.timeouts.connect * 2, connect).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(err)) => return Err(err.into()),
            Err(_) => {
                return Err(LockError::unreachable(format!(
                    "could not connect within {} ms",
                    self.timeouts.connect.as_millis()
                )))
            }
        };
        *self.command.write().unwrap_or_else(|p| p.into_inner()) = Some(conn.clone());
        Ok(conn)
    }

    fn cached(&self) -> Option<ConnectionManager> {
        self.command
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Makes sure the subscriber task runs. Must be called from inside the runtime.
    pub fn ensure_subscriber(&self) {
        self.waiters.attach_subscriber(|| {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            tokio::spawn(subscriber::run(
                self.client.clone(),
                Arc::downgrade(&self.waiters),
                rx,
                self.timeouts.connect,
            ));
            tx
        });
    }
}
