//! Busy polling: keeps the runtime's worker thread awake around lock calls, so neither a call
//! handed over from the JS thread nor Redis's reply has to wake a sleeping thread.
//!
//! Why: every call crosses from the JS thread to the runtime and back. When the worker thread
//! sleeps between calls, each crossing costs a thread wake-up, and on virtual machines a wake-up
//! of an idle CPU goes through the hypervisor: on the 2-core benchmark VM it made a sequential
//! acquire + release pair cost 270-660 µs against 190-220 µs with the worker kept awake
//! (bench/DIAGNOSIS.md). The cost is CPU: the worker spins (yielding to the runtime, which polls
//! its sockets and timers without blocking) while a call is in flight, for at most
//! [`IN_FLIGHT_LIMIT`], and for a short grace period after a call completes, which covers the
//! JS thread's turn-around before its next call. Linux's `SO_BUSY_POLL` and Go's spinning
//! scheduler threads make the same trade.
//!
//! No napi here: the binding decides which calls take part and spawns [`BusyPoll::run`].

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant};

/// The longest a single call in flight keeps the worker spinning: a reply slower than this is
/// waited for the ordinary way (the thread sleeps until the socket is readable).
pub const IN_FLIGHT_LIMIT: Duration = Duration::from_millis(2);

pub struct BusyPoll {
    epoch: Instant,
    in_flight: AtomicUsize,
    /// Microseconds since `epoch`: spin while a call is in flight, until then.
    busy_until: AtomicU64,
    /// Microseconds since `epoch`: spin until then in any case (the grace after a completion).
    idle_until: AtomicU64,
    /// True while a [`BusyPoll::run`] task is alive.
    polling: AtomicBool,
}

impl Default for BusyPoll {
    fn default() -> Self {
        BusyPoll {
            epoch: Instant::now(),
            in_flight: AtomicUsize::new(0),
            busy_until: AtomicU64::new(0),
            idle_until: AtomicU64::new(0),
            polling: AtomicBool::new(false),
        }
    }
}

impl BusyPoll {
    fn now(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    fn wanted(&self) -> bool {
        let now = self.now();
        (self.in_flight.load(SeqCst) > 0 && now < self.busy_until.load(SeqCst))
            || now < self.idle_until.load(SeqCst)
    }

    /// A call starts. Returns true when no poller is running: the caller spawns [`Self::run`].
    #[must_use]
    pub fn enter(&self) -> bool {
        self.in_flight.fetch_add(1, SeqCst);
        let until = self.now() + IN_FLIGHT_LIMIT.as_micros() as u64;
        self.busy_until.fetch_max(until, SeqCst);
        !self.polling.swap(true, SeqCst)
    }

    /// A call that [`Self::enter`]ed completed; keep polling for `grace`. Returns true when the
    /// caller must spawn [`Self::run`] (the poller had stopped, the call having taken long).
    #[must_use]
    pub fn leave(&self, grace: Duration) -> bool {
        let until = self.now() + grace.as_micros() as u64;
        self.idle_until.fetch_max(until, SeqCst);
        self.in_flight.fetch_sub(1, SeqCst);
        !grace.is_zero() && !self.polling.swap(true, SeqCst)
    }

    /// The poller: yields to the runtime until nothing asks for polling any more. Each yield
    /// lets the worker poll its sockets and timers without blocking and pick up new tasks.
    pub async fn run(&self) {
        loop {
            if !self.wanted() {
                self.polling.store(false, SeqCst);
                // A call may have entered between the check and the store, seen a poller
                // running, and not spawned one: look again, and carry on unless another poller
                // took over meanwhile.
                if !self.wanted() || self.polling.swap(true, SeqCst) {
                    return;
                }
            }
            tokio::task::yield_now().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn polls_while_wanted_and_stops_after_the_grace() {
        let poll: &'static BusyPoll = Box::leak(Box::default());
        assert!(poll.enter(), "the first call starts a poller");
        let poller = tokio::spawn(poll.run());
        assert!(!poll.enter(), "a second call finds it running");
        assert!(!poll.leave(Duration::from_millis(5)));
        assert!(!poll.leave(Duration::from_millis(5)));
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert!(!poller.is_finished(), "still inside the grace");
        tokio::time::timeout(Duration::from_secs(2), poller)
            .await
            .expect("the poller stops once the grace is over")
            .unwrap();
        assert!(!poll.polling.load(SeqCst));
        assert!(poll.enter(), "a later call starts a new poller");
        assert!(!poll.leave(Duration::ZERO), "no grace: nothing to poll for");
    }

    #[tokio::test]
    async fn a_call_in_flight_keeps_it_polling_for_the_limit_only() {
        let poll: &'static BusyPoll = Box::leak(Box::default());
        assert!(poll.enter());
        let started = Instant::now();
        tokio::time::timeout(Duration::from_secs(2), tokio::spawn(poll.run()))
            .await
            .expect("a call that never completes does not keep it polling")
            .unwrap();
        assert!(started.elapsed() >= IN_FLIGHT_LIMIT);
    }
}
