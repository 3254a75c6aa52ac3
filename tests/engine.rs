//! The engine against a real redis-server.

mod common;

use common::RedisServer;
use redfour_native::core::{Lock, LockError, ReleaseResult, RenewResult, Timeouts};
use std::time::{Duration, Instant};

fn lock(server: &RedisServer, namespace: &str) -> Lock {
    common::open_lock(&[&server.url()], namespace, Timeouts::default()).unwrap()
}

#[tokio::test]
async fn acquire_release_renew_follow_the_redfour_wire_format() {
    let server = RedisServer::start();
    let lock = lock(&server, "ns");
    let got = lock.acquire("a", 5_000).await.unwrap();
    assert!(got.success);
    assert_eq!((got.index, got.ttl), (1, 5_000));

    let mut conn = server
        .client()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let index: i64 = redis::cmd("HGET")
        .arg("ns:a")
        .arg("index")
        .query_async(&mut conn)
        .await
        .unwrap();
    let pttl: i64 = redis::cmd("PTTL")
        .arg("ns:a")
        .query_async(&mut conn)
        .await
        .unwrap();
    let counter: i64 = redis::cmd("GET")
        .arg("nsindex")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!((index, counter), (1, 1));
    assert!(pttl > 4_000 && pttl <= 5_000, "pttl {pttl}");

    let held = lock.acquire("a", 5_000).await.unwrap();
    assert!(!held.success);
    assert_eq!(held.index, -1);
    assert!(held.ttl > 4_000 && held.ttl <= 5_000);

    let renewed = lock.renew("a", 1, 20_000).await.unwrap();
    assert_eq!(
        (renewed.success, renewed.result, renewed.index, renewed.ttl),
        (true, RenewResult::Renewed, 1, 20_000)
    );
    let conflict = lock.renew("a", 7, 20_000).await.unwrap();
    assert_eq!(
        (conflict.success, conflict.result, conflict.index),
        (false, RenewResult::Conflict, -1)
    );
    let missing = lock.renew("b", 1, 20_000).await.unwrap();
    assert_eq!(
        (missing.success, missing.result),
        (false, RenewResult::Missing)
    );

    let wrong = lock.release("a", 2).await.unwrap();
    assert_eq!(
        (wrong.success, wrong.result, wrong.index),
        (false, ReleaseResult::Conflict, 1)
    );
    let released = lock.release("a", 1).await.unwrap();
    assert_eq!(
        (released.success, released.result, released.index),
        (true, ReleaseResult::Released, 1)
    );
    let expired = lock.release("a", 1).await.unwrap();
    assert_eq!(
        (expired.success, expired.result),
        (true, ReleaseResult::Expired)
    );

    assert_eq!(
        lock.acquire("a", 1_000).await.unwrap().index,
        2,
        "the counter only grows"
    );
}

#[tokio::test]
async fn namespaces_with_quotes_cannot_change_the_scripts() {
    let server = RedisServer::start();
    let namespace = "q\"uo'te]]\\ --[[";
    let lock = lock(&server, namespace);
    let got = lock.acquire("id \" : x", 5_000).await.unwrap();
    assert!(got.success);
    let mut conn = server
        .client()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let exists: i64 = redis::cmd("EXISTS")
        .arg(format!("{namespace}:id \" : x"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(exists, 1);
    assert_eq!(
        lock.release("id \" : x", got.index).await.unwrap().result,
        ReleaseResult::Released
    );
}

#[tokio::test]
async fn a_release_wakes_a_waiter_long_before_the_ttl() {
    let server = RedisServer::start();
    let holder = lock(&server, "w");
    let waiter = lock(&server, "w");
    let held = holder.acquire("k", 30_000).await.unwrap();
    let started = Instant::now();
    let wait = tokio::spawn(async move {
        waiter
            .wait_acquire("k", 5_000, Some(Duration::from_secs(20)))
            .await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    holder.release("k", held.index).await.unwrap();
    let got = wait.await.unwrap().unwrap();
    assert!(got.success && !got.immediate);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "woken after {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_timed_out_wait_is_a_result_not_an_error() {
    let server = RedisServer::start();
    let lock = lock(&server, "t");
    lock.acquire("k", 30_000).await.unwrap();
    let got = lock
        .wait_acquire("k", 1_000, Some(Duration::from_millis(300)))
        .await
        .unwrap();
    assert!(!got.success);
    assert_eq!(got.index, -1);
    assert!(got.ttl > 20_000);
}

#[tokio::test]
async fn an_expired_holder_is_replaced_without_any_release_message() {
    let server = RedisServer::start();
    let lock = lock(&server, "e");
    lock.acquire("k", 300).await.unwrap();
    let started = Instant::now();
    let got = lock
        .wait_acquire("k", 1_000, Some(Duration::from_secs(10)))
        .await
        .unwrap();
    assert!(got.success);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn one_release_costs_one_attempt_per_process_not_one_per_waiter() {
    let server = RedisServer::start();
    let lock = lock(&server, "herd");
    const WAITERS: usize = 40;
    let mut held_index = lock.acquire("hot", 60_000).await.unwrap().index;
    let mut tasks = Vec::new();
    for _ in 0..WAITERS {
        let lock = lock.clone();
        tasks.push(tokio::spawn(async move {
            lock.wait_acquire("hot", 60_000, Some(Duration::from_secs(60)))
                .await
        }));
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = server.script_calls().await;
    // Hand the lock down the queue: every waiter gets it exactly once.
    let mut indexes = vec![held_index];
    for _ in 0..WAITERS {
        lock.release("hot", held_index).await.unwrap();
        let next = loop {
            if let Some(pos) = tasks.iter().position(|t| t.is_finished()) {
                break tasks.swap_remove(pos).await.unwrap().unwrap();
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        };
        assert!(next.success);
        indexes.push(next.index);
        held_index = next.index;
    }
    lock.release("hot", held_index).await.unwrap();
    let calls = server.script_calls().await - before;
    // Per hand-off: one release and one acquire. redfour needed about WAITERS/2 per release.
    assert!(
        calls <= 2 * WAITERS as u64 + 4,
        "{calls} script calls for {WAITERS} hand-offs"
    );
    assert!(
        indexes.windows(2).all(|w| w[0] < w[1]),
        "indexes increase: {indexes:?}"
    );
}

#[tokio::test]
async fn no_wake_up_is_lost_when_a_release_races_the_failed_attempt() {
    let server = RedisServer::start();
    let holder = lock(&server, "race");
    let waiter = lock(&server, "race");
    for round in 0..50 {
        let held = holder.acquire("k", 60_000).await.unwrap();
        assert!(held.success);
        let w = waiter.clone();
        let wait = tokio::spawn(async move {
            w.wait_acquire("k", 60_000, Some(Duration::from_secs(10)))
                .await
        });
        // Release as close as possible to the waiter's first attempt.
        if round % 2 == 0 {
            tokio::task::yield_now().await;
        }
        holder.release("k", held.index).await.unwrap();
        let got = wait.await.unwrap().unwrap();
        assert!(
            got.success,
            "round {round}: a 60 s lease would have been waited out"
        );
        waiter.release("k", got.index).await.unwrap();
    }
}

#[tokio::test]
async fn close_rejects_pending_and_later_calls() {
    let server = RedisServer::start();
    let lock = lock(&server, "c");
    lock.acquire("k", 30_000).await.unwrap();
    let pending = {
        let lock = lock.clone();
        tokio::spawn(async move { lock.wait_acquire("k", 1_000, None).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    lock.close();
    lock.close();
    assert_eq!(pending.await.unwrap(), Err(LockError::Closed));
    assert_eq!(lock.acquire("k", 1_000).await, Err(LockError::Closed));
}

#[tokio::test]
async fn an_unreachable_server_fails_promptly_with_a_redis_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let timeouts = Timeouts {
        connect: Duration::from_millis(300),
        command: Duration::from_millis(300),
    };
    let lock =
        common::open_lock(&[&format!("redis://127.0.0.1:{port}/")], "down", timeouts).unwrap();
    let started = Instant::now();
    let err = lock.acquire("k", 1_000).await.unwrap_err();
    assert_eq!(err.code(), "ERR_REDIS");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[test]
fn bad_urls_and_ttls_are_invalid_arguments() {
    let err = common::open_lock(&["nonsense://x"], "n", Timeouts::default())
        .err()
        .unwrap();
    assert_eq!(err.code(), "ERR_INVALID_ARG");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let lock = common::open_lock(&["redis://127.0.0.1:1/"], "n", Timeouts::default()).unwrap();
    for ttl in [0, redfour_native::core::MAX_TTL_MS + 1] {
        let err = rt.block_on(lock.acquire("k", ttl)).unwrap_err();
        assert_eq!(err.code(), "ERR_INVALID_ARG");
    }
}

#[tokio::test]
async fn more_waiters_than_attempts_in_flight_all_get_their_locks() {
    // Waiters' attempts are limited per Lock (WAIT_ATTEMPTS_IN_FLIGHT, 128): 1,000 waiters on
    // distinct held ids must still all get their locks on release, and
    // a burst of them must not hold up a plain acquire.
    let server = RedisServer::start();
    let holder = lock(&server, "many");
    let waiter = lock(&server, "many");
    let ids: Vec<String> = (0..1_000).map(|i| format!("k{i}")).collect();
    let mut held = Vec::new();
    for id in &ids {
        held.push(holder.acquire(id, 30_000).await.unwrap().index);
    }
    let waits: Vec<_> = ids
        .iter()
        .map(|id| {
            let (waiter, id) = (waiter.clone(), id.clone());
            tokio::spawn(async move {
                waiter
                    .wait_acquire(&id, 5_000, Some(Duration::from_secs(20)))
                    .await
            })
        })
        .collect();
    assert!(waiter.acquire("other", 1_000).await.unwrap().success);
    tokio::time::sleep(Duration::from_millis(300)).await;
    for (id, index) in ids.iter().zip(held) {
        holder.release(id, index).await.unwrap();
    }
    for wait in waits {
        let got = wait.await.unwrap().unwrap();
        assert!(got.success && !got.immediate, "{got:?}");
    }
}

#[tokio::test]
async fn a_grant_found_again_after_a_lost_reply_counts_only_what_is_left() {
    // An attempt sent again under its name (its first reply was lost) finds its own grant: the
    // lease it reports must end when Redis's does, not a whole TTL after the second send.
    let server = RedisServer::start();
    let mut conn = server
        .client()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let keys = ("late:k", "lateindex");
    let first = redfour_native::core::scripts::acquire(&mut conn, keys.0, keys.1, 1_000, "n1")
        .await
        .unwrap();
    assert!(first.success);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let again = redfour_native::core::scripts::acquire(&mut conn, keys.0, keys.1, 1_000, "n1")
        .await
        .unwrap();
    let pttl: i64 = redis::cmd("PTTL")
        .arg(keys.0)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(again.success && again.index == first.index);
    assert!(again.ttl <= 400, "reported {} ms left", again.ttl);
    let redis_ends = tokio::time::Instant::now() + Duration::from_millis(pttl as u64 + 2);
    assert!(
        again.valid_until <= redis_ends,
        "the lease outlives the key"
    );
    // Another name is just another client: held.
    let other = redfour_native::core::scripts::acquire(&mut conn, keys.0, keys.1, 1_000, "n2")
        .await
        .unwrap();
    assert!(!other.success);
}
