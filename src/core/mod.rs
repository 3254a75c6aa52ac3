//! The lock engine. Knows Redis and tokio, nothing of JavaScript: the Node binding in
//! `binding.rs` only converts types and errors.

pub mod batch;
pub mod cluster;
pub mod config;
pub mod endpoint;
pub mod error;
pub mod events;
pub mod lease;
pub mod lock;
pub mod outcome;
pub mod quorum;
pub mod registry;
pub mod scripts;
pub mod slot;
pub mod subscriber;
pub mod sync;
pub mod waiters;

pub use config::{Connect, Replication, Sentinel, Settings, Timeouts, Tls};
pub use error::{Failure, LockError, Result};
pub use events::{Connection, Event};
pub use lease::{Lease, LeaseOptions, LostReason, Renewals};
pub use lock::{never_aborted, Lock};
pub use outcome::{
    Acquired, ReleaseResult, Released, RenewResult, Renewed, WaitAcquired, MAX_TTL_MS,
};
