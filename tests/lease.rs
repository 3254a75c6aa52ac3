//! Leases kept alive from Rust timers, against a real redis-server.

mod common;

use common::RedisServer;
use redfour_native::core::{Lease, LeaseOptions, Lock, LockError, LostReason, Timeouts};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

fn lock(server: &RedisServer) -> Lock {
    Lock::new(&server.url(), "lease", Timeouts::default()).unwrap()
}

#[tokio::test]
async fn a_lease_outlives_five_ttls_and_stops_cleanly() {
    let server = RedisServer::start();
    let lock = lock(&server);
    let got = lock.wait_acquire("k", 300, None).await.unwrap();
    let lease = Lease::start(
        &lock,
        "k",
        got.index,
        got.sent_at,
        LeaseOptions::new(Duration::from_millis(300)),
    );
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert!(lease.remaining() > Duration::ZERO);
    let other = lock.acquire("k", 1_000).await.unwrap();
    assert!(!other.success, "still held after 5 TTLs");
    lease.stop();
    assert_eq!(lease.lost().await, None);
    assert!(lock.release("k", got.index).await.unwrap().success);
}

#[tokio::test]
async fn a_deleted_key_is_reported_missing_before_the_lease_would_run_out() {
    let server = RedisServer::start();
    let lock = lock(&server);
    let got = lock.wait_acquire("k", 600, None).await.unwrap();
    let lease = Lease::start(
        &lock,
        "k",
        got.index,
        got.sent_at,
        LeaseOptions::new(Duration::from_millis(600)),
    );
    let mut conn = server
        .client()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: () = redis::cmd("DEL")
        .arg("lease:k")
        .query_async(&mut conn)
        .await
        .unwrap();
    let started = Instant::now();
    assert_eq!(lease.lost().await, Some(LostReason::Missing));
    assert!(started.elapsed() < Duration::from_millis(600));
}

#[tokio::test]
async fn a_stolen_lock_is_a_conflict() {
    let server = RedisServer::start();
    let lock = lock(&server);
    let got = lock.wait_acquire("k", 600, None).await.unwrap();
    let lease = Lease::start(
        &lock,
        "k",
        got.index,
        got.sent_at,
        LeaseOptions::new(Duration::from_millis(600)),
    );
    let mut conn = server
        .client()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: () = redis::cmd("HSET")
        .arg("lease:k")
        .arg("index")
        .arg(999)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(lease.lost().await, Some(LostReason::Conflict));
}

#[tokio::test]
async fn max_hold_ends_the_lease() {
    let server = RedisServer::start();
    let lock = lock(&server);
    let got = lock.wait_acquire("k", 200, None).await.unwrap();
    let mut options = LeaseOptions::new(Duration::from_millis(200));
    options.max_hold = Some(Duration::from_millis(500));
    let lease = Lease::start(&lock, "k", got.index, got.sent_at, options);
    let started = Instant::now();
    assert_eq!(lease.lost().await, Some(LostReason::MaxHold));
    assert!(started.elapsed() < Duration::from_millis(1_000));
}

#[tokio::test]
async fn a_paused_server_loses_the_lease_before_it_expires() {
    let server = RedisServer::start();
    let lock = Lock::new(
        &server.url(),
        "lease",
        Timeouts {
            connect: Duration::from_millis(200),
            command: Duration::from_millis(200),
        },
    )
    .unwrap();
    let got = lock.wait_acquire("k", 500, None).await.unwrap();
    let lease = Lease::start(
        &lock,
        "k",
        got.index,
        got.sent_at,
        LeaseOptions::new(Duration::from_millis(500)),
    );
    server.pause();
    let lost = lease.lost().await;
    let elapsed = got.sent_at.elapsed();
    server.resume();
    assert_eq!(lost, Some(LostReason::Unreachable));
    assert!(
        elapsed < Duration::from_millis(500),
        "signalled after {elapsed:?}, past the TTL"
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
