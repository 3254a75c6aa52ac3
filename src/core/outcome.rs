//! What the engine's operations answer, and the limits on what they take: the bottom of the
//! core, imported by everything above it and importing nothing of it but the error type.

use crate::core::error::{LockError, Result};
use std::time::Duration;
use tokio::time::Instant;

/// The largest TTL accepted, in milliseconds (2^31 - 1, about 24.8 days).
pub const MAX_TTL_MS: u64 = 2_147_483_647;

/// Rejects a TTL outside 1..=MAX_TTL_MS before anything reaches Redis.
pub(crate) fn check_ttl(ttl_ms: u64) -> Result<()> {
    if ttl_ms == 0 || ttl_ms > MAX_TTL_MS {
        return Err(LockError::InvalidArg(format!(
            "ttl must be between 1 and {MAX_TTL_MS} ms, got {ttl_ms}"
        )));
    }
    Ok(())
}

/// Result of one acquire attempt, as redfour reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Acquired {
    pub success: bool,
    /// The fencing token on success, -1 otherwise.
    pub index: i64,
    /// The granted TTL on success (what was left of it, if the grant was found after a lost
    /// reply); the holder's remaining PTTL otherwise (-1: no expiry).
    pub ttl: i64,
    /// On success, an instant before which Redis keeps the lock for us: measured from when the
    /// deciding attempt was *sent* (Redis granted it no earlier), never from when the answer
    /// arrived.
    pub valid_until: Instant,
    /// Single-server mode with `minReplications`: Redis granted the lock but too few replicas
    /// acknowledged it in time, so the grant was undone (ioredfour's `replicationFailure`).
    pub replication_failed: bool,
}

impl Acquired {
    /// An attempt sent at `sent_at` and answered `success`, `index`, `ttl` (ms from the answer).
    pub fn answered(success: bool, index: i64, ttl: i64, sent_at: Instant) -> Acquired {
        let held_for = if success { ttl.max(0) as u64 } else { 0 };
        Acquired {
            success,
            index,
            ttl,
            valid_until: sent_at + Duration::from_millis(held_for),
            replication_failed: false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitAcquired {
    pub success: bool,
    pub index: i64,
    pub ttl: i64,
    /// True when the first attempt succeeded, without waiting.
    pub immediate: bool,
    /// See `Acquired::valid_until`.
    pub valid_until: Instant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReleaseResult {
    Released,
    Conflict,
    Expired,
}

impl ReleaseResult {
    pub fn as_str(self) -> &'static str {
        match self {
            ReleaseResult::Released => "released",
            ReleaseResult::Conflict => "conflict",
            ReleaseResult::Expired => "expired",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Released {
    pub success: bool,
    pub result: ReleaseResult,
    /// The released index; on conflict the current holder's index (-1 if unknown); -1 if expired.
    pub index: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RenewResult {
    Renewed,
    Missing,
    Conflict,
}

impl RenewResult {
    pub fn as_str(self) -> &'static str {
        match self {
            RenewResult::Renewed => "renewed",
            RenewResult::Missing => "missing",
            RenewResult::Conflict => "conflict",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Renewed {
    pub success: bool,
    pub result: RenewResult,
    /// The lock's index on success, -1 otherwise.
    pub index: i64,
    /// The new TTL on success; otherwise the key's PTTL (-2 when it is gone).
    pub ttl: i64,
}
