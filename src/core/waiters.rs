//! The waiters of one process for one Redis endpoint: a FIFO queue per lock key, grouped by the
//! pub/sub channel their releases are announced on.
//!
//! Only the head of a key's queue talks to Redis. A release message wakes that head alone, so one
//! release costs at most one acquire attempt per process however many local waiters there are
//! (redfour woke every waiter, about N/2 scripts per release). When the head leaves, the next
//! waiter takes its place: at once if the head gave up (it may have consumed a release), or with a
//! timer at the new holder's TTL if the head won the lock (a crashed holder never publishes).
//!
//! With grants (single-server mode) the head also takes a seat in the lock's queue in Redis, and
//! a release hands the lock to a seated head directly: the grant message names the head's token.
//! Then a new head must take its own seat at once, so it tries when the old head wins.

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
    /// The waiters that may be granted a lock, by token.
    tokens: HashMap<u64, Arc<Slot>>,
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
    /// Names this waiter in the lock's queue in Redis and in grant messages (random).
    token: u64,
    /// Set when a grant message named this waiter: the index, and when it was heard.
    granted: Mutex<Option<(i64, Instant)>>,
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
        unpoisoned(&self.state)
    }

    /// Starts the subscriber tasks with `make` unless they are already running.
    pub fn attach_subscribers(
        &self,
        make: impl FnOnce() -> Vec<mpsc::UnboundedSender<SubscriberCommand>>,
    ) {
        let mut running = unpoisoned(&self.subscribers);
        if running.is_empty() || running.iter().all(|tx| tx.is_closed()) {
            *running = make();
        }
    }

    fn send(&self, command: impl Fn() -> SubscriberCommand) {
        let running = unpoisoned(&self.subscribers);
        for tx in running.iter() {
            // A closed channel means the endpoint is shutting down: nobody is left to wake.
            let _ = tx.send(command());
        }
    }

    /// Queues a waiter for `key`, subscribing to `channel` if this is its first waiter. With
    /// `grants`, the waiter may be granted the lock by a grant message naming its token.
    pub fn join(self: &Arc<Self>, channel: &str, key: &str, grants: bool) -> Registration {
        let slot = Arc::new(Slot {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            token: rand::random(),
            granted: Mutex::new(None),
            wake: Notify::new(),
            try_now: AtomicBool::new(false),
            poll_at: Mutex::new(None),
        });
        let mut state = self.state();
        if grants {
            state.tokens.insert(slot.token, slot.clone());
        }
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

    /// A message on `channel`: a release of the lock key it names (wake that key's head, if we
    /// have one), or a grant (see scripts.rs: `{namespace}\0<token> <index> <ttl> <key>` on
    /// `{namespace}-release`; a lock key there always continues the namespace with ':').
    pub fn released(&self, channel: &str, key: &str) {
        if let Some(grant) = grant_message(channel, key) {
            let state = self.state();
            if let Some(slot) = state.tokens.get(&grant.token) {
                *unpoisoned(&slot.granted) = Some((grant.index, Instant::now()));
                slot.wake.notify_one();
            } else if let Some(head) = state.head(channel, grant.key) {
                // Somebody else holds it now: if they never release, poll when their TTL ends.
                *unpoisoned(&head.poll_at) =
                    Some(Instant::now() + Duration::from_millis(grant.ttl) + jitter());
                head.wake.notify_one();
            }
            return;
        }
        if let Some(head) = self.state().head(channel, key) {
            head.try_now.store(true, Ordering::Release);
            head.wake.notify_one();
        }
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
        // Registered by token only in grant mode (see `join`).
        let grants = state.tokens.remove(&slot.token).is_some();
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
                    // We hold the lock and the next waiter has no seat in its queue: it takes one.
                    Some(_) if grants => next.try_now.store(true, Ordering::Release),
                    // We hold the lock now: the next waiter waits for our release, or polls when
                    // our lease would run out if we never release (process died).
                    Some(ttl) => {
                        *unpoisoned(&next.poll_at) = Some(Instant::now() + ttl + jitter());
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

/// Locks `mutex`; a panic while it was held would be a bug in this module, and the value stays
/// usable.
fn unpoisoned<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A small random delay so that pollers of different processes do not arrive together.
pub fn jitter() -> Duration {
    Duration::from_millis(rand::random_range(1..=10))
}

#[derive(Debug, PartialEq, Eq)]
struct Grant<'a> {
    token: u64,
    index: i64,
    ttl: u64,
    key: &'a str,
}

/// Parses a grant message: `{namespace}\0<token> <index> <ttl> <key>` on `{namespace}-release`.
fn grant_message<'a>(channel: &str, payload: &'a str) -> Option<Grant<'a>> {
    let namespace = channel.strip_suffix("-release")?;
    let rest = payload.strip_prefix(namespace)?.strip_prefix('\0')?;
    let (token, rest) = rest.split_once(' ')?;
    let (index, rest) = rest.split_once(' ')?;
    let (ttl, key) = rest.split_once(' ')?;
    Some(Grant {
        token: token.parse().ok()?,
        index: index.parse().ok()?,
        ttl: ttl.parse().ok()?,
        key,
    })
}

/// What woke a waiter.
#[derive(Debug, PartialEq, Eq)]
pub enum Wake {
    /// A release granted the lock to this waiter: it holds it under this index since about then.
    Granted(i64, Instant),
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

    /// This waiter's name in grant messages and in the lock's queue.
    pub fn token(&self) -> u64 {
        self.slot.token
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
        if let Some((index, at)) = unpoisoned(&self.slot.granted).take() {
            return Wake::Granted(index, at);
        }
        if self.slot.try_now.swap(false, Ordering::AcqRel) {
            return Wake::TryNow;
        }
        match unpoisoned(&self.slot.poll_at).take() {
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

#[cfg(test)]
mod tests {
    use super::grant_message;

    #[test]
    fn grant_messages_parse_and_lock_keys_never_do() {
        let grant = grant_message("ns-release", "ns\u{0}42 7 5000 ns:a b").unwrap();
        assert_eq!(
            (grant.token, grant.index, grant.ttl, grant.key),
            (42, 7, 5000, "ns:a b")
        );
        // A lock key continues the namespace with ':', whatever the id holds.
        assert_eq!(grant_message("ns-release", "ns:\u{0}42 7 1 ns:x"), None);
        assert_eq!(grant_message("ns-release", "ns:x\u{0}42 7 1 ns:x"), None);
        assert_eq!(grant_message("a\u{0}1-release", "a\u{0}1:2 3 4 a"), None);
        // Another namespace's prefix, a cluster channel, junk.
        assert_eq!(grant_message("ns-release", "other\u{0}42 7 1 ns:x"), None);
        assert_eq!(grant_message("{ns:id}:release", "{ns:id}"), None);
        assert_eq!(grant_message("ns-release", "ns\u{0}x 7 1 ns:x"), None);
        assert_eq!(grant_message("ns-release", "ns\u{0}42 7"), None);
    }
}
