//! What the engine reports about itself while it works: connections opened, lost and reopened,
//! and a quorum lost and regained. These happen inside shared, process-wide state (one command
//! and one subscriber connection per Redis endpoint, whichever `Lock` uses them), so there is
//! one process-wide hook, not one per `Lock`: a reconnect is reported once, however many locks
//! share the connection.
//!
//! The engine only calls the hook; what it does with an event (the Node binding queues it for
//! the JavaScript thread) is its business. Until a hook is installed, `emit` is one relaxed
//! atomic load and the event is never built. A hook runs on whatever thread the engine runs
//! on, inside the runtime: it must be quick and must not block.
//!
//! No event carries credentials: endpoints are `host:port` (or a socket path), taken from the
//! connection address, which holds none.

use crate::core::sync::RwLockExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

/// Which of an endpoint's connections an event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connection {
    /// The multiplexed connection every acquire, release and renew goes through.
    Commands,
    /// The pub/sub connection that hears releases and wakes waiters.
    Subscriber,
    /// Single-server mode with `minReplications`: the connection grants and WAITs go through.
    Replication,
}

impl Connection {
    pub fn as_str(self) -> &'static str {
        match self {
            Connection::Commands => "commands",
            Connection::Subscriber => "subscriber",
            Connection::Replication => "replication",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A connection was opened (`reconnect`: not for the first time, or after a failure).
    Connected {
        endpoint: String,
        connection: Connection,
        reconnect: bool,
    },
    /// A connection that worked failed (dropped, reset, timed out, keepalive unanswered).
    Lost {
        endpoint: String,
        connection: Connection,
        reason: String,
    },
    /// An attempt to open a connection failed.
    ConnectFailed {
        endpoint: String,
        connection: Connection,
        error: String,
    },
    /// Quorum mode: fewer than a majority of the nodes answered (reported once per outage).
    QuorumLost {
        endpoints: Vec<String>,
        answered: usize,
        needed: usize,
    },
    /// Quorum mode: a majority answers again.
    QuorumRegained {
        endpoints: Vec<String>,
        answered: usize,
        needed: usize,
    },
}

/// Receives every event the engine emits.
pub type Hook = Arc<dyn Fn(Event) + Send + Sync>;

static ENABLED: AtomicBool = AtomicBool::new(false);
static HOOK: RwLock<Option<Hook>> = RwLock::new(None);

/// Installs the process-wide hook (replacing any earlier one), or removes it with `None`.
pub fn set_hook(hook: Option<Hook>) {
    let enabled = hook.is_some();
    *HOOK.writing() = hook;
    ENABLED.store(enabled, Ordering::Release);
}

/// Reports the event `make` builds, if anybody listens (otherwise `make` is not called).
pub(crate) fn emit(make: impl FnOnce() -> Event) {
    if !ENABLED.load(Ordering::Relaxed) {
        return;
    }
    let hook = HOOK.reading().clone();
    if let Some(hook) = hook {
        hook(make());
    }
}

/// `host:port` (IPv6 hosts in brackets) or the socket path of a connection address.
pub(crate) fn describe(addr: &redis::ConnectionAddr) -> String {
    match addr {
        redis::ConnectionAddr::Tcp(host, port)
        | redis::ConnectionAddr::TcpTls { host, port, .. } => {
            if host.contains(':') && !host.starts_with('[') {
                format!("[{host}]:{port}")
            } else {
                format!("{host}:{port}")
            }
        }
        redis::ConnectionAddr::Unix(path) => path.display().to_string(),
        _ => "an unknown address".to_owned(),
    }
}
