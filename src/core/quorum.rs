//! N independent Redis masters (the Redlock algorithm): a lock is granted when a majority of
//! the nodes grant it within its validity time.
//!
//! Fencing tokens stay strictly increasing per lock id although nodes fail and recover (not per
//! namespace: two ids' grants may commit in either order). Each node INCRs its own counter; the token is the highest value among the granting majority,
//! and before the grant counts it is committed to that majority: each granting node sets the
//! lock's `index` to the token and raises its counter to at least the token. Any later grant
//! needs a majority too, and two majorities share a node; that node's counter is already at or
//! past the earlier token, so its INCR (and so the later token, the maximum) is higher.
//! This holds while nodes keep their counters: a node restarted without persistence must stay
//! out for longer than the longest TTL (Redlock's "delayed restart"), or run with AOF fsync.

use crate::core::config::{Connect, Timeouts};
use crate::core::endpoint::Endpoint;
use crate::core::error::{LockError, Result};
use crate::core::events::{self, Event};
use crate::core::outcome::{Acquired, ReleaseResult, Released, RenewResult, Renewed};
use crate::core::registry::Registry;
use crate::core::scripts::{self, COMMIT_SCRIPT};
use crate::core::waiters::Waiters;
use futures_util::future::join_all;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

pub struct Quorum {
    nodes: Vec<Arc<Endpoint>>,
    pub waiters: Arc<Waiters>,
    timeouts: Timeouts,
    /// Set while fewer than a majority answer: events report the loss and the recovery once.
    lost: AtomicBool,
}

static QUORUMS: Registry<(Vec<String>, Connect), Quorum> = Registry::new();

/// What one node answered, within the per-node time limit.
type Vote<T> = Option<Result<T>>;

impl Quorum {
    /// The quorum over `urls` (order does not matter), shared by every Lock with the same set.
    pub fn shared(urls: &[String], connect: &Connect) -> Result<Arc<Quorum>> {
        let mut key: Vec<String> = urls.to_vec();
        key.sort();
        key.dedup();
        if key.len() != urls.len() {
            return Err(LockError::InvalidArg(
                "the same Redis URL is listed twice".to_owned(),
            ));
        }
        QUORUMS.get_or_create((key, connect.clone()), || {
            let nodes = urls
                .iter()
                .map(|url| Endpoint::shared(url, connect))
                .collect::<Result<Vec<_>>>()?;
            Ok(Arc::new(Quorum {
                nodes,
                waiters: Arc::new(Waiters::new()),
                timeouts: connect.timeouts,
                lost: AtomicBool::new(false),
            }))
        })
    }

    pub fn majority(&self) -> usize {
        self.nodes.len() / 2 + 1
    }

    pub fn timeouts(&self) -> Timeouts {
        self.timeouts
    }

    /// One subscriber per node, all waking the same waiters.
    pub fn ensure_subscribers(&self) {
        self.waiters.attach_subscribers(|| {
            self.nodes
                .iter()
                .map(|node| node.spawn_subscriber(&self.waiters))
                .collect()
        });
    }

    /// Asks every node at once; a node that has not answered within `limit` counts as down.
    async fn ask<'a, T, F, Fut>(&'a self, limit: Duration, op: F) -> Vec<Vote<T>>
    where
        F: Fn(&'a Endpoint) -> Fut,
        Fut: Future<Output = Result<T>> + 'a,
    {
        join_all(
            self.nodes
                .iter()
                .map(|node| async { tokio::time::timeout(limit, op(node)).await.ok() }),
        )
        .await
    }

    /// A node must answer well within the lock's TTL for its vote to be useful (Redlock).
    fn node_limit(&self, ttl_ms: u64) -> Duration {
        Duration::from_millis((ttl_ms / 3).max(5)).min(self.timeouts.command)
    }

    /// Notes how many nodes answered a request: reports the quorum lost when fewer than a
    /// majority did, and regained when a majority answers again (events.rs).
    /// The answers among `votes` (the nodes that replied in time without an error), noting
    /// whether they still make a majority.
    fn answers<'v, T>(&self, votes: &'v [Vote<T>]) -> Vec<&'v T> {
        let answers: Vec<&T> = votes
            .iter()
            .filter_map(|v| v.as_ref()?.as_ref().ok())
            .collect();
        self.observe(answers.len());
        answers
    }

    fn observe(&self, answered: usize) {
        let lost = answered < self.majority();
        if self.lost.load(Ordering::Relaxed) == lost
            || self.lost.swap(lost, Ordering::Relaxed) == lost
        {
            return;
        }
        events::emit(|| {
            let endpoints = self.nodes.iter().map(|node| node.address()).collect();
            let needed = self.majority();
            if lost {
                Event::QuorumLost {
                    endpoints,
                    answered,
                    needed,
                }
            } else {
                Event::QuorumRegained {
                    endpoints,
                    answered,
                    needed,
                }
            }
        });
    }

    fn no_quorum(&self, answered: usize) -> LockError {
        LockError::NoQuorum(format!(
            "{answered} of {} Redis nodes answered; {} are needed",
            self.nodes.len(),
            self.majority()
        ))
    }

    /// One attempt on every node, under one attempt name. `channel` is where a grant undone on a
    /// node is announced (waiters there saw the key and look again).
    pub async fn acquire(
        &self,
        key: &str,
        counter_key: &str,
        ttl_ms: u64,
        channel: &str,
    ) -> Result<Acquired> {
        let name = scripts::attempt_name();
        let sent_at = Instant::now();
        let limit = self.node_limit(ttl_ms);
        let votes = self
            .ask(limit, |node| node.acquire(key, counter_key, ttl_ms, &name))
            .await;
        let answered = votes.iter().filter(|v| matches!(v, Some(Ok(_)))).count();
        self.observe(answered);
        let granted: Vec<(usize, i64)> = votes
            .iter()
            .enumerate()
            .filter_map(|(i, v)| match v {
                Some(Ok(a)) if a.success => Some((i, a.index)),
                _ => None,
            })
            .collect();
        let holder_ttl = votes
            .iter()
            .filter_map(|v| match v {
                Some(Ok(a)) if !a.success && a.ttl >= 0 => Some(a.ttl),
                _ => None,
            })
            .min();

        if granted.len() >= self.majority() {
            let token = granted.iter().map(|&(_, index)| index).max().unwrap_or(0);
            let commits = join_all(granted.iter().map(|&(i, index)| async move {
                let mut conn = self.nodes[i].connection().await.ok()?;
                let keys = [key, counter_key];
                let run = COMMIT_SCRIPT.run::<i64>(&mut conn, &keys, (index, token));
                matches!(tokio::time::timeout(limit, run).await, Ok(Ok(1))).then_some(i)
            }))
            .await;
            let committed = commits.iter().flatten().count();
            let until = valid_until(ttl_ms, sent_at);
            let left = until.saturating_duration_since(Instant::now());
            if committed >= self.majority() && !left.is_zero() {
                return Ok(Acquired {
                    success: true,
                    index: token,
                    // What is left of the lease: redfour reported the TTL asked for.
                    ttl: left.as_millis() as i64,
                    valid_until: until,
                    replication_failed: false,
                });
            }
        }
        // No grant: take back what this attempt wrote, wherever it may have written it (a node
        // that did not answer in time may still have granted), and only that.
        if !granted.is_empty() || answered < votes.len() {
            self.undo(key, &name, channel, &votes).await;
        }
        if granted.len() >= self.majority() {
            // Too slow or not committed: try again soon.
            return Ok(Acquired::answered(false, -1, 0, sent_at));
        }
        if answered < self.majority() {
            return Err(self.no_quorum(answered));
        }
        Ok(Acquired::answered(
            false,
            -1,
            holder_ttl.unwrap_or(0),
            sent_at,
        ))
    }

    /// Deletes the lock on every node where attempt `name` still holds it (`scripts::UNDO`),
    /// so a failed attempt does not block others until its TTL. A node holding another
    /// attempt's grant, committed or not, is left alone. Nodes that answered are waited for; on
    /// the others (which may still grant when they wake) the undo goes in the background,
    /// behind the attempt on the same connection, so the caller does not wait for them twice.
    async fn undo(&self, key: &str, name: &str, channel: &str, votes: &[Vote<Acquired>]) {
        let mut answered = Vec::new();
        for (node, vote) in self.nodes.iter().zip(votes) {
            if matches!(vote, Some(Ok(_))) {
                answered.push(node.undo(key, name, channel));
                continue;
            }
            let (node, key, name, channel) = (
                Arc::clone(node),
                key.to_owned(),
                name.to_owned(),
                channel.to_owned(),
            );
            tokio::spawn(async move {
                let _ = node.undo(&key, &name, &channel).await;
            });
        }
        join_all(answered).await;
    }

    pub async fn release(&self, key: &str, index: i64, channel: &str) -> Result<Released> {
        let votes = self
            .ask(self.timeouts.command, |node| {
                node.release(key, index, channel)
            })
            .await;
        let answers = self.answers(&votes);
        let count = |r: ReleaseResult| answers.iter().filter(|a| a.result == r).count();
        if count(ReleaseResult::Released) > 0 {
            return Ok(Released {
                success: true,
                result: ReleaseResult::Released,
                index,
            });
        }
        if answers.len() < self.majority() {
            return Err(self.no_quorum(answers.len()));
        }
        if count(ReleaseResult::Conflict) > 0 {
            let holder = answers
                .iter()
                .filter(|a| a.result == ReleaseResult::Conflict)
                .map(|a| a.index)
                .max()
                .unwrap_or(-1);
            return Ok(Released {
                success: false,
                result: ReleaseResult::Conflict,
                index: holder,
            });
        }
        Ok(Released {
            success: true,
            result: ReleaseResult::Expired,
            index: -1,
        })
    }

    pub async fn renew(&self, key: &str, index: i64, ttl_ms: u64) -> Result<Renewed> {
        let sent_at = Instant::now();
        let votes = self
            .ask(self.node_limit(ttl_ms), |node| {
                node.renew(key, index, ttl_ms)
            })
            .await;
        let answers = self.answers(&votes);
        let count = |r: RenewResult| answers.iter().filter(|a| a.result == r).count();
        let left = valid_until(ttl_ms, sent_at).saturating_duration_since(Instant::now());
        if count(RenewResult::Renewed) >= self.majority() && !left.is_zero() {
            return Ok(Renewed {
                success: true,
                result: RenewResult::Renewed,
                index,
                ttl: left.as_millis() as i64,
            });
        }
        if answers.len() < self.majority() {
            return Err(self.no_quorum(answers.len()));
        }
        let result = if count(RenewResult::Conflict) > 0 {
            RenewResult::Conflict
        } else {
            RenewResult::Missing
        };
        Ok(Renewed {
            success: false,
            result,
            index: -1,
            ttl: answers.iter().map(|a| a.ttl).max().unwrap_or(-2),
        })
    }
}

/// Until when a lease of `ttl_ms` whose commands were sent at `sent_at` holds on a majority,
/// less Redlock's allowance for clock drift between the nodes (1 % + 2 ms).
fn valid_until(ttl_ms: u64, sent_at: Instant) -> Instant {
    sent_at + Duration::from_millis(ttl_ms) - Duration::from_millis(ttl_ms / 100 + 2)
}
