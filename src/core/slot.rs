//! A connection opened on first use and kept until it is cleared: what an endpoint and a cluster
//! hold for each of their connections. One opening runs at a time; callers queued behind an
//! opening that failed share its error instead of each trying (and timing out) in turn.

use crate::core::error::{LockError, Result};
use crate::core::events::{self, Connection, Event};
use crate::core::sync::RwLockExt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::RwLock;
use tokio::time::Instant;

pub(crate) struct Slot<C> {
    conn: RwLock<Option<C>>,
    /// Single flight for opening, with the last failure and when it happened.
    connecting: tokio::sync::Mutex<Option<(Instant, LockError)>>,
    /// Ever opened: a later opening is a reconnect (events.rs).
    opened: AtomicBool,
}

impl<C: Clone> Slot<C> {
    pub(crate) fn new() -> Self {
        Slot {
            conn: RwLock::new(None),
            connecting: tokio::sync::Mutex::new(None),
            opened: AtomicBool::new(false),
        }
    }

    /// The connection if one is open.
    pub(crate) fn current(&self) -> Option<C> {
        self.conn.reading().clone()
    }

    /// Forgets the connection (its server is no longer the one to talk to).
    pub(crate) fn clear(&self) {
        self.conn.writing().take();
    }

    /// The connection, opened with `connect` if there is none. `endpoint` and `which` name it in
    /// the events an opening reports.
    pub(crate) async fn get(
        &self,
        connect: impl Future<Output = Result<C>>,
        endpoint: impl Fn() -> String,
        which: Connection,
    ) -> Result<C> {
        if let Some(conn) = self.current() {
            return Ok(conn);
        }
        let asked_at = Instant::now();
        let mut last_failure = self.connecting.lock().await;
        if let Some(conn) = self.current() {
            return Ok(conn);
        }
        if let Some((failed_at, err)) = &*last_failure {
            if *failed_at >= asked_at {
                return Err(err.clone());
            }
        }
        match connect.await {
            Ok(conn) => {
                *self.conn.writing() = Some(conn.clone());
                *last_failure = None;
                let reconnect = self.opened.swap(true, Ordering::Relaxed);
                events::emit(|| Event::Connected {
                    endpoint: endpoint(),
                    connection: which,
                    reconnect,
                });
                Ok(conn)
            }
            Err(err) => {
                *last_failure = Some((Instant::now(), err.clone()));
                events::emit(|| Event::ConnectFailed {
                    endpoint: endpoint(),
                    connection: which,
                    error: err.to_string(),
                });
                Err(err)
            }
        }
    }
}
