//! How a Lock is opened: timeouts, TLS, sentinel discovery, replication acknowledgements and
//! cluster mode. Plain data, read by the connection layer and the backends.

use crate::core::error::{LockError, Result};
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

/// TLS material in PEM, for `rediss://` URLs whose server the system trust store does not know,
/// or that want a client certificate.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Tls {
    pub ca: Option<Vec<u8>>,
    pub cert: Option<Vec<u8>>,
    pub key: Option<Vec<u8>>,
}

/// Sentinel mode: the master called `master` is found (and found again after a failover) by
/// asking the sentinels at these URLs. The Lock's own URL then only supplies credentials,
/// database and scheme; its host and port are replaced by the master's.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Sentinel {
    pub sentinels: Vec<String>,
    pub master: String,
}

impl Tls {
    /// The material in redis-rs's form; a client certificate needs its key and the reverse.
    pub fn certificates(&self) -> Result<redis::TlsCertificates> {
        let client_tls = match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => Some(redis::ClientTlsConfig {
                client_cert: cert.clone(),
                client_key: key.clone(),
            }),
            (None, None) => None,
            _ => {
                return Err(LockError::InvalidArg(
                    "tls.cert and tls.key go together".to_owned(),
                ))
            }
        };
        Ok(redis::TlsCertificates {
            client_tls,
            root_cert: self.ca.clone(),
        })
    }
}

/// How to connect, besides the URL.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Connect {
    pub timeouts: Timeouts,
    pub tls: Option<Tls>,
    pub sentinel: Option<Sentinel>,
}

impl From<Timeouts> for Connect {
    fn from(timeouts: Timeouts) -> Self {
        Connect {
            timeouts,
            ..Connect::default()
        }
    }
}

/// Single-server mode: a grant counts only once `replicas` replicas acknowledged it (Redis
/// WAIT) within `timeout`; otherwise it is released and reported as not acquired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replication {
    pub replicas: u32,
    pub timeout: Duration,
}

/// Everything a Lock is opened with besides its URLs and namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    pub connect: Connect,
    pub replication: Option<Replication>,
    /// Redis Cluster: the URLs are seed nodes and keys are hash-tagged (see cluster.rs).
    pub cluster: bool,
}

impl From<Timeouts> for Settings {
    fn from(timeouts: Timeouts) -> Self {
        Settings {
            connect: timeouts.into(),
            ..Settings::default()
        }
    }
}
