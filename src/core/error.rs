//! Errors of the lock engine. Each carries a stable code that the Node binding passes on as
//! `err.code`. "Somebody else holds the lock" is never an error: it is an outcome.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LockError {
    /// An argument the caller should have checked: empty id, zero TTL, unparsable URL.
    InvalidArg(String),
    /// Redis could not be reached, timed out, or answered with an error.
    Redis {
        message: String,
        /// The connection failed or timed out (worth retrying), as opposed to an error reply.
        transient: bool,
    },
    /// The lock handle was closed before or during the operation.
    Closed,
    /// Quorum mode: fewer than a majority of the Redis nodes answered.
    NoQuorum(String),
    /// The caller cancelled the wait (an AbortSignal fired).
    Aborted,
    /// A bug in this library (a panic was caught).
    Internal(String),
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

    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            LockError::Redis {
                transient: true,
                ..
            }
        )
    }

    pub(crate) fn unreachable(message: impl Into<String>) -> Self {
        LockError::Redis {
            message: message.into(),
            transient: true,
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
        let transient = err.is_io_error()
            || err.is_timeout()
            || err.is_connection_dropped()
            || err.is_connection_refusal()
            || err.code() == Some("LOADING")
            // A master demoted by a failover answers writes with READONLY until we move on.
            || err.code() == Some("READONLY");
        LockError::Redis {
            message: err.to_string(),
            transient,
        }
    }
}

pub type Result<T> = std::result::Result<T, LockError>;
