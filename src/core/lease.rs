//! Keeping a held lock alive from Rust timers, so a busy or blocked JavaScript event loop does
//! not lose it, and saying as soon as the lease can no longer be trusted.
//!
//! The lease is measured on the monotonic clock from the moment each successful renewal was
//! *sent* (Redis applied it no earlier), so `valid_until` never overestimates what Redis grants.
//! It is declared lost `margin` before that instant if no renewal succeeded meanwhile.

use crate::core::error::{LockError, Result};
use crate::core::lock::Lock;
use crate::core::outcome::RenewResult;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Why a lease ended without its owner stopping it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LostReason {
    /// Another owner holds the lock now (our index no longer matches).
    Conflict,
    /// The key is gone: it expired or was deleted.
    Missing,
    /// No renewal succeeded before the lease ran out (Redis unreachable or too slow).
    Unreachable,
    /// The lease reached the caller's `max_hold`.
    MaxHold,
    /// The Lock was closed.
    Closed,
}

impl LostReason {
    pub fn as_str(self) -> &'static str {
        match self {
            LostReason::Conflict => "conflict",
            LostReason::Missing => "missing",
            LostReason::Unreachable => "unreachable",
            LostReason::MaxHold => "max-hold",
            LostReason::Closed => "closed",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseOptions {
    /// The TTL each renewal sets.
    pub ttl: Duration,
    /// Time between renewals (default: a third of the TTL).
    pub renew_every: Duration,
    /// How long before the measured expiry the lease counts as lost.
    pub margin: Duration,
    /// Total hold time after which the lease is given up.
    pub max_hold: Option<Duration>,
}

impl LeaseOptions {
    pub fn new(ttl: Duration) -> Self {
        LeaseOptions {
            ttl,
            renew_every: ttl / 3,
            margin: (ttl / 10).clamp(Duration::from_millis(5), Duration::from_secs(2)),
            max_hold: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Held { valid_until: Instant },
    Lost(LostReason),
    Stopped,
}

/// A running lease keeper. Dropping it stops the renewals (it never releases the lock: the
/// owner releases explicitly, or the TTL ends it).
pub struct Lease {
    state: watch::Receiver<State>,
    stop: CancellationToken,
    /// The lease counts itself lost this long before Redis's expiry; `remaining` ends there too.
    margin: Duration,
}

impl Lease {
    /// Starts renewing lock `id` held under `index`, which Redis keeps until at least
    /// `valid_until` (`Acquired::valid_until`: measured from when the deciding attempt was
    /// sent). Must be called inside the runtime.
    pub fn start(
        lock: &Lock,
        id: &str,
        index: i64,
        valid_until: Instant,
        options: LeaseOptions,
    ) -> Lease {
        let (tx, state) = watch::channel(State::Held { valid_until });
        let stop = CancellationToken::new();
        let margin = options.margin;
        tokio::spawn(keep(
            lock.clone(),
            id.to_owned(),
            index,
            valid_until,
            options,
            tx,
            stop.clone(),
        ));
        Lease {
            state,
            stop,
            margin,
        }
    }

    /// Resolves with the reason when the lease is lost, or `None` once it was stopped.
    pub async fn lost(&self) -> Option<LostReason> {
        let mut state = self.state.clone();
        let settled = state
            .wait_for(|s| !matches!(s, State::Held { .. }))
            .await
            .map(|s| *s);
        match settled {
            Ok(State::Lost(reason)) => Some(reason),
            _ => None,
        }
    }

    /// Time left before the lease is counted lost (`margin` before Redis's expiry, so a caller
    /// that stops within `remaining` stops before anyone else can be let in); zero once lost or
    /// stopped.
    pub fn remaining(&self) -> Duration {
        match *self.state.borrow() {
            State::Held { valid_until } => valid_until
                .checked_sub(self.margin)
                .unwrap_or(valid_until)
                .saturating_duration_since(Instant::now()),
            _ => Duration::ZERO,
        }
    }

    /// Stops renewing. Idempotent.
    pub fn stop(&self) {
        self.stop.cancel();
    }

    /// Follows this lease's successful renewals from now on (for observers: it does not keep
    /// the lease alive, and ends when the lease does).
    pub fn renewals(&self) -> Renewals {
        let mut state = self.state.clone();
        state.mark_unchanged();
        Renewals {
            state,
            margin: self.margin,
        }
    }
}

/// The successful renewals of a `Lease`, one at a time (see `Lease::renewals`).
pub struct Renewals {
    state: watch::Receiver<State>,
    margin: Duration,
}

impl Renewals {
    /// Waits for the next successful renewal and returns the instant the lease now counts as
    /// lost at (as `Lease::remaining` measures it); `None` once the lease was lost or stopped.
    /// Renewals that happen while nobody awaits this are folded into the next answer.
    pub async fn next(&mut self) -> Option<Instant> {
        self.state.changed().await.ok()?;
        match *self.state.borrow_and_update() {
            State::Held { valid_until } => {
                Some(valid_until.checked_sub(self.margin).unwrap_or(valid_until))
            }
            _ => None,
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn keep(
    lock: Lock,
    id: String,
    index: i64,
    mut valid_until: Instant,
    options: LeaseOptions,
    state: watch::Sender<State>,
    stop: CancellationToken,
) {
    let ttl_ms = options.ttl.as_millis().max(1) as u64;
    let hold_until = options.max_hold.map(|max| Instant::now() + max);
    // The first renewal is due when as much is left as after a renewal's `renew_every`: at
    // once for a grant found with less than that left.
    let mut next_renewal = valid_until
        .checked_sub(options.ttl.saturating_sub(options.renew_every))
        .unwrap_or_else(Instant::now);
    let far = Instant::now() + Duration::from_secs(86_400 * 365);
    let end = |reason: Option<LostReason>| {
        state.send_replace(reason.map_or(State::Stopped, State::Lost));
    };
    loop {
        let lost_at = valid_until
            .checked_sub(options.margin)
            .unwrap_or(valid_until);
        tokio::select! {
            _ = stop.cancelled() => return end(None),
            _ = tokio::time::sleep_until(hold_until.unwrap_or(far)), if hold_until.is_some() => {
                return end(Some(LostReason::MaxHold));
            }
            _ = tokio::time::sleep_until(lost_at) => return end(Some(LostReason::Unreachable)),
            _ = tokio::time::sleep_until(next_renewal) => {}
        }
        if lock.is_closed() {
            return end(Some(LostReason::Closed));
        }
        let sent_at = Instant::now();
        let renewed: Result<_> =
            match tokio::time::timeout_at(lost_at, lock.renew(&id, index, ttl_ms)).await {
                Ok(result) => result,
                Err(_) => return end(Some(LostReason::Unreachable)),
            };
        match renewed {
            Ok(r) if r.result == RenewResult::Renewed => {
                // What the renewal says it set (quorum mode: less its drift allowance).
                valid_until = sent_at + Duration::from_millis(r.ttl.max(0) as u64).min(options.ttl);
                next_renewal = sent_at + options.renew_every;
                state.send_replace(State::Held { valid_until });
            }
            Ok(r) if r.result == RenewResult::Missing => return end(Some(LostReason::Missing)),
            Ok(_) => return end(Some(LostReason::Conflict)),
            Err(LockError::Closed) => return end(Some(LostReason::Closed)),
            // Transient trouble: try again soon, until the lease runs out.
            Err(_) => {
                next_renewal =
                    Instant::now() + (options.renew_every / 4).max(Duration::from_millis(10));
            }
        }
    }
}
