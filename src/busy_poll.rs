//! Busy polling: keeps the runtime's worker thread awake for a short grace after a lock call
//! completes, so that the caller's next call, and Redis's reply to it, find a running thread
//! instead of waking a sleeping one (on a VM a wake-up of an idle CPU goes through the
//! hypervisor and can cost more than the round trip). During the grace the worker keeps
//! yielding to the runtime, which polls its sockets and timers without blocking.
//!
//! Only after a completion, never while a reply is awaited (that competes for the CPU with Redis
//! and with other waiting processes), and only for callers that keep coming back quickly: the
//! binding polls after a call only when it and the call before it were each made within the grace
//! of the previous completion reaching JavaScript, so a paced caller pays nothing. The A/B
//! measurements behind each rule are in bench/DIAGNOSIS.md.
//!
//! No napi here: the binding decides which calls take part and spawns [`BusyPoll::run`].

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::SeqCst};
use std::time::{Duration, Instant};

pub struct BusyPoll {
    epoch: Instant,
    /// Microseconds since `epoch`: keep polling until then.
    until: AtomicU64,
    /// True while a [`BusyPoll::run`] task is alive.
    polling: AtomicBool,
}

impl Default for BusyPoll {
    fn default() -> Self {
        BusyPoll {
            epoch: Instant::now(),
            until: AtomicU64::new(0),
            polling: AtomicBool::new(false),
        }
    }
}

impl BusyPoll {
    /// Microseconds since this poller's creation: the clock callers use for [`Self::extend`]'s
    /// companion decision (how soon a caller came back).
    pub fn now(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    fn wanted(&self) -> bool {
        self.now() < self.until.load(SeqCst)
    }

    /// A call completed: keep polling for `grace` from now. Returns true when no poller is
    /// running, and the caller must spawn [`Self::run`].
    #[must_use]
    pub fn extend(&self, grace: Duration) -> bool {
        if grace.is_zero() {
            return false;
        }
        let until = self.now() + grace.as_micros() as u64;
        self.until.fetch_max(until, SeqCst);
        !self.polling.swap(true, SeqCst)
    }

    /// The poller: yields to the runtime until the grace is over. Each yield lets the worker
    /// poll its sockets and timers without blocking and pick up new tasks.
    pub async fn run(&self) {
        loop {
            if !self.wanted() {
                self.polling.store(false, SeqCst);
                // A completion may have extended the grace between the check and the store,
                // seen a poller running, and not spawned one: look again, and carry on unless
                // another poller took over meanwhile.
                if !self.wanted() || self.polling.swap(true, SeqCst) {
                    return;
                }
            }
            tokio::task::yield_now().await;
        }
    }
}

/// Busy polling follows a call once this many calls in a row came back within the grace.
const QUICK_RETURNS_BEFORE_POLLING: u32 = 2;

/// One caller's rhythm (a Lock's): whether its calls have been coming back within the grace of
/// the previous results reaching it, the sign of a loop that busy polling speeds up.
pub struct Rhythm {
    /// The caller's busy-poll grace (zero: off).
    grace: Duration,
    /// [`BusyPoll::now`] when results last reached the caller.
    delivered_at: AtomicU64,
    /// Calls in a row made within the grace of the previous delivery.
    quick_returns: AtomicU32,
}

impl Rhythm {
    pub fn new(grace: Duration) -> Self {
        Rhythm {
            grace,
            delivered_at: AtomicU64::new(0),
            quick_returns: AtomicU32::new(0),
        }
    }

    /// Results reached the caller at `now`.
    pub fn delivered(&self, now: u64) {
        self.delivered_at.store(now, SeqCst);
    }

    /// The caller makes a call at `now`: returns how long to poll after its completion (the
    /// grace, or zero when the caller is not in a loop or polling is off).
    pub fn call(&self, now: u64) -> Duration {
        let came_back_after = now.saturating_sub(self.delivered_at.load(SeqCst));
        if self.grace.is_zero() || came_back_after > self.grace.as_micros() as u64 {
            self.quick_returns.store(0, SeqCst);
            return Duration::ZERO;
        }
        if self.quick_returns.fetch_add(1, SeqCst) + 1 >= QUICK_RETURNS_BEFORE_POLLING {
            self.grace
        } else {
            Duration::ZERO
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn polls_for_the_grace_then_stops_and_a_later_call_starts_it_again() {
        let poll: &'static BusyPoll = Box::leak(Box::default());
        assert!(
            !poll.extend(Duration::ZERO),
            "no grace: nothing to poll for"
        );
        assert!(
            poll.extend(Duration::from_millis(50)),
            "the first completion starts a poller"
        );
        let poller = tokio::spawn(poll.run());
        assert!(
            !poll.extend(Duration::from_millis(50)),
            "the next finds it running"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(!poller.is_finished(), "still inside the grace");
        let started = Instant::now();
        tokio::time::timeout(Duration::from_secs(2), poller)
            .await
            .expect("the poller stops once the grace is over")
            .unwrap();
        assert!(started.elapsed() < Duration::from_millis(500));
        assert!(!poll.polling.load(SeqCst));
        assert!(
            poll.extend(Duration::from_millis(1)),
            "a later completion starts a new one"
        );
    }

    #[test]
    fn only_a_caller_that_keeps_coming_back_quickly_gets_polling() {
        let grace = Duration::from_micros(300);
        let rhythm = Rhythm::new(grace);
        let polls = |now| rhythm.call(now) == grace;
        let polls_not = |now| rhythm.call(now).is_zero();
        // Paced: an acquire 5 ms after the last result, its release right after: one quick
        // return is not a loop.
        let mut now = 10_000;
        for _ in 0..5 {
            rhythm.delivered(now);
            now += 5_000;
            assert!(polls_not(now), "the acquire after a pause");
            rhythm.delivered(now + 200);
            now += 250;
            assert!(polls_not(now), "the release right after it");
            rhythm.delivered(now + 200);
            now += 200;
        }
        // A loop after a pause: from the second quick return on, every call is followed by
        // polling.
        now += 5_000;
        assert!(polls_not(now));
        now += 200;
        rhythm.delivered(now);
        assert!(polls_not(now + 20), "one quick return");
        for _ in 0..5 {
            now += 200;
            rhythm.delivered(now);
            assert!(polls(now + 20));
        }
        // A pause ends it.
        assert!(polls_not(now + 20 + 301));
        // Polling off never polls.
        let off = Rhythm::new(Duration::ZERO);
        off.delivered(now + 1_000);
        assert!(off.call(now + 1_010).is_zero());
        assert!(off.call(now + 1_020).is_zero());
    }
}
