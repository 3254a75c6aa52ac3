//! Leases kept alive from Rust timers, against a real redis-server.

mod common;

use common::RedisServer;
use redfour_native::core::{Lease, LeaseOptions, Lock, LockError, LostReason, Timeouts};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

fn lock(server: &RedisServer) -> Lock {
    common::open_lock(&[&server.url()], "lease", Timeouts::default()).unwrap()
}

/// Takes lock "k" for `ttl_ms` and starts keeping it with `options` (default: `LeaseOptions::new`).
/// Also returns the instant Redis keeps the lock until, at least.
async fn held(lock: &Lock, ttl_ms: u64, options: Option<LeaseOptions>) -> (i64, Instant, Lease) {
    let got = lock.wait_acquire("k", ttl_ms, None).await.unwrap();
    let options = options.unwrap_or_else(|| LeaseOptions::new(Duration::from_millis(ttl_ms)));
    let lease = Lease::start(lock, "k", got.index, got.valid_until, options);
    (got.index, got.valid_until, lease)
}

/// Runs one command on the server, as another client would.
async fn run(server: &RedisServer, args: &[&str]) {
    let mut conn = server
        .client()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: redis::Value = redis::cmd(args[0])
        .arg(&args[1..])
        .query_async(&mut conn)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_lease_outlives_five_ttls_and_stops_cleanly() {
    let server = RedisServer::start();
    let lock = lock(&server);
    let (index, _, lease) = held(&lock, 300, None).await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert!(lease.remaining() > Duration::ZERO);
    let other = lock.acquire("k", 1_000).await.unwrap();
    assert!(!other.success, "still held after 5 TTLs");
    lease.stop();
    assert_eq!(lease.lost().await, None);
    assert!(lock.release("k", index).await.unwrap().success);
}

#[tokio::test]
async fn a_deleted_key_is_reported_missing_before_the_lease_would_run_out() {
    let server = RedisServer::start();
    let lock = lock(&server);
    let (_, _, lease) = held(&lock, 600, None).await;
    run(&server, &["DEL", "lease:k"]).await;
    let started = Instant::now();
    assert_eq!(lease.lost().await, Some(LostReason::Missing));
    assert!(started.elapsed() < Duration::from_millis(600));
}

#[tokio::test]
async fn a_stolen_lock_is_a_conflict() {
    let server = RedisServer::start();
    let lock = lock(&server);
    let (_, _, lease) = held(&lock, 600, None).await;
    run(&server, &["HSET", "lease:k", "index", "999"]).await;
    assert_eq!(lease.lost().await, Some(LostReason::Conflict));
}

#[tokio::test]
async fn max_hold_ends_the_lease() {
    let server = RedisServer::start();
    let lock = lock(&server);
    let mut options = LeaseOptions::new(Duration::from_millis(200));
    options.max_hold = Some(Duration::from_millis(500));
    let (_, _, lease) = held(&lock, 200, Some(options)).await;
    let started = Instant::now();
    assert_eq!(lease.lost().await, Some(LostReason::MaxHold));
    assert!(started.elapsed() < Duration::from_millis(1_000));
}

#[tokio::test]
async fn a_paused_server_loses_the_lease_before_it_expires() {
    let server = RedisServer::start();
    let lock = common::open_lock(
        &[&server.url()],
        "lease",
        Timeouts {
            connect: Duration::from_millis(200),
            command: Duration::from_millis(200),
        },
    )
    .unwrap();
    let (_, valid_until, lease) = held(&lock, 500, None).await;
    server.pause();
    let lost = lease.lost().await;
    let lost_at = Instant::now();
    server.resume();
    assert_eq!(lost, Some(LostReason::Unreachable));
    assert!(
        lost_at < valid_until,
        "signalled {:?} past the TTL",
        lost_at - valid_until
    );
}

#[tokio::test]
async fn an_abort_during_a_wait_rejects_and_a_late_grant_is_released() {
    let server = RedisServer::start();
    let lock = lock(&server);
    let held = lock.acquire("k", 30_000).await.unwrap();
    let abort = CancellationToken::new();
    let wait = {
        let (lock, abort) = (lock.clone(), abort.clone());
        tokio::spawn(async move { lock.wait_acquire_until("k", 30_000, None, &abort).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    abort.cancel();
    assert_eq!(wait.await.unwrap(), Err(LockError::Aborted));
    // Abort and grant together, many times: never a grant left behind in Redis.
    lock.release("k", held.index).await.unwrap();
    for _ in 0..30 {
        let abort = CancellationToken::new();
        let wait = {
            let (lock, abort) = (lock.clone(), abort.clone());
            tokio::spawn(async move { lock.wait_acquire_until("k", 30_000, None, &abort).await })
        };
        tokio::task::yield_now().await;
        abort.cancel();
        match wait.await.unwrap() {
            Ok(got) => assert!(lock.release("k", got.index).await.unwrap().success),
            Err(err) => assert_eq!(err, LockError::Aborted),
        }
        assert!(
            lock.acquire("k", 10).await.unwrap().success,
            "no lock was leaked"
        );
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
}

#[tokio::test]
async fn remaining_time_ends_where_the_lease_is_counted_lost_a_margin_early() {
    let server = RedisServer::start();
    let lock = lock(&server);
    let options = LeaseOptions {
        renew_every: Duration::from_secs(60),
        ..LeaseOptions::new(Duration::from_millis(2_000))
    };
    let margin = options.margin;
    let (_, valid_until, lease) = held(&lock, 2_000, Some(options)).await;
    let read_at = Instant::now();
    let remaining = lease.remaining();
    assert!(
        read_at + remaining <= valid_until - margin,
        "remaining {remaining:?} reaches past the point the lease is counted lost"
    );
    lease.stop();
}
