//! Errors of the lock engine. Each carries a stable code that the Node binding passes on as
//! `err.code`. "Somebody else holds the lock" is never an error: it is an outcome.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LockError {
    /// An argument the caller should have checked: empty id, zero TTL, unparsable URL.
    InvalidArg(String),
    /// Redis could not be reached, timed out, or answered with an error.
    Redis { message: String, failure: Failure },
    /// The lock handle was closed before or during the operation.
    Closed,
    /// Quorum mode: fewer than a majority of the Redis nodes answered.
    NoQuorum(String),
    /// The caller cancelled the wait (an AbortSignal fired).
    Aborted,
    /// A bug in this library (a panic was caught).
    Internal(String),
}

/// What kind of Redis failure a `LockError::Redis` is, decided once from redis-rs's own error
/// kinds where the error is converted (never from its message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The connection turned out to be closed (reset, broken pipe, EOF): the request may be
    /// tried again on a reopened connection.
    Dropped,
    /// Redis could not be reached or did not answer in time.
    Unreachable,
    /// Redis answered that it cannot serve the request now (LOADING, or READONLY from a master
    /// that a failover demoted).
    Unavailable,
    /// An error reply to the request itself: trying again will not help.
    Reply,
}

impl LockError {
    pub fn code(&self) -> &'static str {
        match self {
            LockError::InvalidArg(_) => "ERR_INVALID_ARG",
            LockError::Redis { .. } => "ERR_REDIS",
            LockError::Closed => "ERR_CLOSED",
            LockError::NoQuorum(_) => "ERR_NO_QUORUM",
            LockError::Aborted => "ERR_ABORTED",
            LockError::Internal(_) => "ERR_INTERNAL",
        }
    }

    /// A Redis failure that may pass (worth retrying), as opposed to an error reply.
    pub fn is_transient(&self) -> bool {
        matches!(self, LockError::Redis { failure, .. } if *failure != Failure::Reply)
    }

    /// The connection was found closed under the request.
    pub fn is_dropped(&self) -> bool {
        matches!(
            self,
            LockError::Redis {
                failure: Failure::Dropped,
                ..
            }
        )
    }

    pub(crate) fn unreachable(message: impl Into<String>) -> Self {
        LockError::Redis {
            message: message.into(),
            failure: Failure::Unreachable,
        }
    }
}

impl fmt::Display for LockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockError::InvalidArg(message) => write!(f, "{message}"),
            LockError::Redis { message, .. } => write!(f, "Redis: {message}"),
            LockError::Closed => write!(f, "the lock was closed"),
            LockError::NoQuorum(message) => write!(f, "no quorum: {message}"),
            LockError::Aborted => write!(f, "the wait was aborted"),
            LockError::Internal(message) => write!(f, "internal error: {message}"),
        }
    }
}

impl std::error::Error for LockError {}

impl From<redis::RedisError> for LockError {
    fn from(err: redis::RedisError) -> Self {
        let failure = if err.is_timeout() || err.is_connection_refusal() {
            Failure::Unreachable
        } else if err.is_connection_dropped() {
            Failure::Dropped
        } else if err.is_io_error() {
            Failure::Unreachable
        } else if matches!(err.code(), Some("LOADING" | "READONLY")) {
            // A master demoted by a failover answers writes with READONLY until we move on.
            Failure::Unavailable
        } else {
            Failure::Reply
        };
        LockError::Redis {
            message: err.to_string(),
            failure,
        }
    }
}

pub type Result<T> = std::result::Result<T, LockError>;
