//! The waiters of one process for one Redis endpoint: a FIFO queue per lock key, grouped by the
//! pub/sub channel their releases are announced on.
//!
//! Only the head of a key's queue talks to Redis. A release message wakes that head alone, so one
//! release costs at most one acquire attempt per process however many local waiters there are
//! (redfour woke every waiter, about N/2 scripts per release). When the head leaves, the next
//! waiter takes its place: at once if the head gave up (it may have consumed a release), or with a
//! timer at the new holder's TTL if the head won the lock (a crashed holder never publishes).
//! Nothing of a waiter is kept in Redis: a waiter that is gone (killed, timed out, aborted,
//! closed, deaf) costs other processes nothing.

use crate::core::sync::MutexExt;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{mpsc, watch, Notify};
use tokio::time::Instant;

/// What the subscriber task is asked to do. Sent in order, so an unsubscribe followed by a
/// subscribe to the same channel ends subscribed.
#[derive(Debug)]
pub enum SubscriberCommand {
    Subscribe(String),
    Unsubscribe(String),
}

pub struct Waiters {
    state: Mutex<State>,
    next_id: AtomicU64,
    /// One per server whose releases wake these waiters; started on first use, from inside the
    /// runtime (see `Endpoint::ensure_subscriber`).
    subscribers: Mutex<Vec<mpsc::UnboundedSender<SubscriberCommand>>>,
}

#[derive(Default)]
struct State {
    channels: HashMap<String, Channel>,
}

impl State {
    /// The first waiter for `key` among those woken by `channel`.
    fn head(&self, channel: &str, key: &str) -> Option<&Arc<Slot>> {
        self.channels.get(channel)?.keys.get(key)?.front()
    }
}

struct Channel {
    keys: HashMap<String, VecDeque<Arc<Slot>>>,
    /// True while the subscriber connection has confirmed SUBSCRIBE for this channel.
    subscribed: watch::Sender<bool>,
}

/// One waiting call.
struct Slot {
    id: u64,
    wake: Notify,
    /// Set when this slot must try to acquire when it wakes (a release was announced, the
    /// subscriber reconnected, or the previous head gave up).
    try_now: AtomicBool,
    /// Set when the previous head won the lock: poll no earlier than this, unless a release comes.
    poll_at: Mutex<Option<Instant>>,
}

impl Waiters {
    pub fn new() -> Self {
        Waiters {
            state: Mutex::new(State::default()),
            next_id: AtomicU64::new(1),
            subscribers: Mutex::new(Vec::new()),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.locked()
    }

    /// Starts the subscriber tasks with `make` unless they are already running.
    pub fn attach_subscribers(
        &self,
        make: impl FnOnce() -> Vec<mpsc::UnboundedSender<SubscriberCommand>>,
    ) {
        let mut running = self.subscribers.locked();
        if running.is_empty() || running.iter().all(|tx| tx.is_closed()) {
            *running = make();
        }
    }

    fn send(&self, command: impl Fn() -> SubscriberCommand) {
        let running = self.subscribers.locked();
        for tx in running.iter() {
            // A closed channel means the endpoint is shutting down: nobody is left to wake.
            let _ = tx.send(command());
        }
    }

    /// Queues a waiter for `key`, subscribing to `channel` if this is its first waiter.
    pub fn join(self: &Arc<Self>, channel: &str, key: &str) -> Registration {
        let slot = Arc::new(Slot {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            wake: Notify::new(),
            try_now: AtomicBool::new(false),
            poll_at: Mutex::new(None),
        });
        let mut state = self.state();
        let (entry, created) = match state.channels.get_mut(channel) {
            Some(entry) => (entry, false),
            None => {
                let entry = Channel {
                    keys: HashMap::new(),
                    subscribed: watch::channel(false).0,
                };
                (
                    state.channels.entry(channel.to_owned()).or_insert(entry),
                    true,
                )
            }
        };
        let queue = entry.keys.entry(key.to_owned()).or_default();
        let head = queue.is_empty();
        queue.push_back(slot.clone());
        let subscribed = entry.subscribed.subscribe();
        drop(state);
        if created {
            self.send(|| SubscriberCommand::Subscribe(channel.to_owned()));
        }
        Registration {
            waiters: self.clone(),
            channel: channel.to_owned(),
            key: key.to_owned(),
            slot,
            subscribed,
            joined_as_head: head,
            left: false,
        }
    }

    /// A release of lock `key` announced on `channel`: wake that key's head, if we have one.
    pub fn released(&self, channel: &str, key: &str) {
        if let Some(head) = self.state().head(channel, key) {
            head.try_now.store(true, Ordering::Release);
            head.wake.notify_one();
        }
    }

    /// Whether anybody waits (the subscriber watches its connection only then).
    pub fn has_channels(&self) -> bool {
        !self.state().channels.is_empty()
    }

    /// After a reconnect, releases may have been missed: every head tries again at once.
    pub fn wake_all_heads(&self) {
        let state = self.state();
        for head in state
            .channels
            .values()
            .flat_map(|c| c.keys.values())
            .filter_map(|q| q.front())
        {
            head.try_now.store(true, Ordering::Release);
            head.wake.notify_one();
        }
    }

    /// The channels somebody waits on whose subscription is not confirmed.
    pub fn unconfirmed(&self) -> Vec<String> {
        self.state()
            .channels
            .iter()
            .filter(|(_, entry)| !*entry.subscribed.borrow())
            .map(|(channel, _)| channel.clone())
            .collect()
    }

    /// The channels somebody waits on.
    pub fn channels(&self) -> Vec<String> {
        self.state().channels.keys().cloned().collect()
    }

    pub fn is_wanted(&self, channel: &str) -> bool {
        self.state().channels.contains_key(channel)
    }

    pub fn set_subscribed(&self, channel: &str, subscribed: bool) {
        if let Some(entry) = self.state().channels.get(channel) {
            entry.subscribed.send_replace(subscribed);
        }
    }

    pub fn set_all_subscribed(&self, subscribed: bool) {
        for entry in self.state().channels.values() {
            entry.subscribed.send_replace(subscribed);
        }
    }

    /// Number of queued waiters over all keys (for tests and diagnostics).
    pub fn len(&self) -> usize {
        self.state()
            .channels
            .values()
            .flat_map(|c| c.keys.values())
            .map(VecDeque::len)
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn leave(&self, channel: &str, key: &str, slot: &Slot, won_ttl: Option<Duration>) {
        let mut state = self.state();
        let Some(entry) = state.channels.get_mut(channel) else {
            return;
        };
        let Some(queue) = entry.keys.get_mut(key) else {
            return;
        };
        let was_head = queue.front().is_some_and(|s| s.id == slot.id);
        queue.retain(|s| s.id != slot.id);
        if was_head {
            if let Some(next) = queue.front() {
                match won_ttl {
                    // We hold the lock now: the next waiter waits for our release, or polls when
                    // our lease would run out if we never release (process died).
                    Some(ttl) => {
                        *next.poll_at.locked() = Some(Instant::now() + ttl + jitter());
                    }
                    // We gave up, perhaps after consuming a release: the next one tries now.
                    None => next.try_now.store(true, Ordering::Release),
                }
                next.wake.notify_one();
            }
        }
        if queue.is_empty() {
            entry.keys.remove(key);
            if entry.keys.is_empty() {
                state.channels.remove(channel);
                drop(state);
                self.send(|| SubscriberCommand::Unsubscribe(channel.to_owned()));
            }
        }
    }

    fn is_head(&self, channel: &str, key: &str, slot: &Slot) -> bool {
        self.state()
            .head(channel, key)
            .is_some_and(|s| s.id == slot.id)
    }
}

impl Default for Waiters {
    fn default() -> Self {
        Self::new()
    }
}

/// A small random delay so that pollers of different processes do not arrive together.
pub fn jitter() -> Duration {
    Duration::from_millis(rand::random_range(1..=10))
}

/// What woke a waiter.
#[derive(Debug, PartialEq, Eq)]
pub enum Wake {
    /// Try to acquire now.
    TryNow,
    /// The previous head took the lock: poll at this instant unless a release comes first.
    PollAt(Instant),
    /// Nothing to do (a stale wake-up); keep waiting.
    Nothing,
}

/// One waiting call's place in its key's queue. Dropping it leaves the queue (as a give-up).
pub struct Registration {
    waiters: Arc<Waiters>,
    channel: String,
    key: String,
    slot: Arc<Slot>,
    subscribed: watch::Receiver<bool>,
    joined_as_head: bool,
    left: bool,
}

impl Registration {
    /// True if the queue was empty when this waiter joined: it may try at once.
    pub fn joined_as_head(&self) -> bool {
        self.joined_as_head
    }

    pub fn is_head(&self) -> bool {
        self.waiters.is_head(&self.channel, &self.key, &self.slot)
    }

    /// Waits until the channel is subscribed (so no release can be missed from then on), or
    /// until `limit`. Returns whether it is subscribed.
    pub async fn subscribed(&mut self, limit: Instant) -> bool {
        let wait = self.subscribed.wait_for(|ready| *ready);
        matches!(tokio::time::timeout_at(limit, wait).await, Ok(Ok(_)))
    }

    /// Waits for a wake-up and says what it asks for.
    pub async fn woken(&self) -> Wake {
        self.slot.wake.notified().await;
        if self.slot.try_now.swap(false, Ordering::AcqRel) {
            return Wake::TryNow;
        }
        match self.slot.poll_at.locked().take() {
            Some(at) => Wake::PollAt(at),
            None => Wake::Nothing,
        }
    }

    /// Leaves the queue after winning the lock for `ttl`.
    pub fn leave_won(mut self, ttl: Duration) {
        self.left = true;
        self.waiters
            .leave(&self.channel, &self.key, &self.slot, Some(ttl));
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if !self.left {
            self.waiters
                .leave(&self.channel, &self.key, &self.slot, None);
        }
    }
}
