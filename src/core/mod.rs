//! The lock engine. Knows Redis and tokio, nothing of JavaScript: the Node binding in
//! `binding.rs` only converts types and errors.

pub mod batch;
pub mod cluster;
pub mod endpoint;
pub mod error;
pub mod events;
pub mod lease;
pub mod lock;
pub mod quorum;
pub mod scripts;
pub mod subscriber;
pub mod waiters;

pub use endpoint::{Connect, Sentinel, Timeouts, Tls};
pub use error::{LockError, Result};
pub use events::{Connection, Event};
pub use lease::{Lease, LeaseOptions, LostReason, Renewals};
pub use lock::{
    never_aborted, Acquired, Lock, ReleaseResult, Released, RenewResult, Renewed, Replication,
    Settings, WaitAcquired, MAX_TTL_MS,
};
