//! Grant on release (single-server mode): a waiting head takes a seat in the held lock's hash,
//! and the holder's release hands the lock straight to it. Against a real redis-server.

mod common;

use common::RedisServer;
use redfour_native::core::{Lock, LockError, ReleaseResult, Result, Timeouts, WaitAcquired};
use redis::aio::MultiplexedConnection;
use redis::FromRedisValue;
use std::collections::HashMap;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

fn lock(server: &RedisServer, namespace: &str) -> Lock {
    Lock::new(&server.url(), namespace, Timeouts::default()).unwrap()
}

async fn conn(server: &RedisServer) -> MultiplexedConnection {
    server
        .client()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// One command on the test's own connection, e.g. `query(conn, &["PTTL", "g:k"])`.
async fn query<T: FromRedisValue>(conn: &mut MultiplexedConnection, args: &[&str]) -> T {
    redis::cmd(args[0])
        .arg(&args[1..])
        .query_async(conn)
        .await
        .unwrap()
}

async fn fields(conn: &mut MultiplexedConnection, key: &str) -> HashMap<String, String> {
    query(conn, &["HGETALL", key]).await
}

/// Waits until `key`'s hash satisfies `done`, or panics after 5 s.
async fn until_fields(
    conn: &mut MultiplexedConnection,
    key: &str,
    done: impl Fn(&HashMap<String, String>) -> bool,
) -> HashMap<String, String> {
    for _ in 0..500 {
        let hash = fields(conn, key).await;
        if done(&hash) {
            return hash;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{key} never got there: {:?}", fields(conn, key).await);
}

/// Waits until `key`'s hash has a seat (a `q<n>` field).
async fn until_seated(conn: &mut MultiplexedConnection, key: &str) -> HashMap<String, String> {
    until_fields(conn, key, |hash| {
        hash.keys()
            .any(|f| f.starts_with('q') && f != "qt" && f != "qh")
    })
    .await
}

/// A wait for lock "k" in the background.
fn wait_for_k(lock: &Lock, ttl_ms: u64, wait: Duration) -> JoinHandle<Result<WaitAcquired>> {
    let lock = lock.clone();
    tokio::spawn(async move { lock.wait_acquire("k", ttl_ms, Some(wait)).await })
}

#[tokio::test]
async fn a_release_hands_the_lock_to_the_seated_waiter_with_no_attempt_after_it() {
    let server = RedisServer::start();
    let holder = lock(&server, "g");
    let mut raw = conn(&server).await;
    // Load the release script first, so that counting scripts below counts no NOSCRIPT retry.
    let warm = holder.acquire("warm", 1_000).await.unwrap();
    holder.release("warm", warm.index).await.unwrap();
    let held = holder.acquire("k", 60_000).await.unwrap();
    let wait = wait_for_k(&holder, 5_000, Duration::from_secs(30));
    let hash = until_seated(&mut raw, "g:k").await;
    assert_eq!(hash.get("qt").map(String::as_str), Some("1"));
    assert_eq!(hash.get("index"), Some(&held.index.to_string()));
    let token = hash["q1"].split(' ').next().unwrap().to_owned();
    assert_eq!(hash["q1"], format!("{token} 5000"));

    let before = server.script_calls().await;
    let released = holder.release("k", held.index).await.unwrap();
    assert_eq!(released.result, ReleaseResult::Released);
    let got = wait.await.unwrap().unwrap();
    // The release was the only script: the waiter held the lock when the grant message came.
    assert_eq!(server.script_calls().await - before, 1);
    assert!(got.success && !got.immediate);
    assert!(got.index > held.index);

    let hash = fields(&mut raw, "g:k").await;
    assert_eq!(hash.get("index"), Some(&got.index.to_string()));
    assert_eq!(hash.get("attempt"), Some(&token));
    assert!(!hash.contains_key("q1") && !hash.contains_key(&format!("w{token}")));
    let pttl: i64 = query(&mut raw, &["PTTL", "g:k"]).await;
    assert!(pttl > 4_000 && pttl <= 5_000, "the grant's TTL: {pttl}");

    // The last release finds nobody seated: the key goes, as in redfour.
    holder.release("k", got.index).await.unwrap();
    let exists: i64 = query(&mut raw, &["EXISTS", "g:k"]).await;
    assert_eq!(exists, 0);
}

#[tokio::test]
async fn an_aborted_or_timed_out_waiter_gives_its_seat_up() {
    let server = RedisServer::start();
    let holder = lock(&server, "a");
    let mut raw = conn(&server).await;
    let held = holder.acquire("k", 60_000).await.unwrap();

    let abort = CancellationToken::new();
    let (w, a) = (holder.clone(), abort.clone());
    let aborted = tokio::spawn(async move { w.wait_acquire_until("k", 5_000, None, &a).await });
    until_seated(&mut raw, "a:k").await;
    abort.cancel();
    assert!(matches!(aborted.await.unwrap(), Err(LockError::Aborted)));

    let timed_out = holder
        .wait_acquire("k", 5_000, Some(Duration::from_millis(300)))
        .await
        .unwrap();
    assert!(!timed_out.success);

    // Both seats are given up (the abort's in the background): the release grants nobody.
    for _ in 0..100 {
        let hash = fields(&mut raw, "a:k").await;
        if !hash.keys().any(|f| f.starts_with('w')) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let hash = fields(&mut raw, "a:k").await;
    assert!(
        !hash.keys().any(|f| f.starts_with('w')),
        "seats left: {hash:?}"
    );
    holder.release("k", held.index).await.unwrap();
    let exists: i64 = query(&mut raw, &["EXISTS", "a:k"]).await;
    assert_eq!(exists, 0);
}

#[tokio::test]
async fn a_seat_left_by_a_dead_waiter_costs_one_ttl_then_the_next_waiter_gets_the_lock() {
    let server = RedisServer::start();
    let holder = lock(&server, "d");
    let mut raw = conn(&server).await;
    let held = holder.acquire("k", 60_000).await.unwrap();
    // A process that died while seated: its seat asks for 300 ms.
    let _: () = query(
        &mut raw,
        &["HSET", "d:k", "qt", "1", "q1", "123 300", "w123", "1"],
    )
    .await;
    let wait = wait_for_k(&holder, 1_000, Duration::from_secs(10));
    until_fields(&mut raw, "d:k", |hash| hash.contains_key("q2")).await;
    holder.release("k", held.index).await.unwrap();
    // The dead seat got the lock (nobody will release it), and the live waiter after it gets
    // it when that grant expires: its TTL poll, or the dead grant never announces anything.
    let hash = fields(&mut raw, "d:k").await;
    assert!(hash.get("attempt") == Some(&"123".to_owned()) || wait.is_finished());
    let got = tokio::time::timeout(Duration::from_secs(5), wait)
        .await
        .expect("the waiter after a dead seat gets the lock")
        .unwrap()
        .unwrap();
    assert!(got.success);
}

#[tokio::test]
async fn a_release_sent_again_after_its_grant_still_reads_released() {
    let server = RedisServer::start();
    let holder = lock(&server, "r");
    let mut raw = conn(&server).await;
    let held = holder.acquire("k", 60_000).await.unwrap();
    let wait = wait_for_k(&holder, 5_000, Duration::from_secs(30));
    until_seated(&mut raw, "r:k").await;
    let first = holder.release("k", held.index).await.unwrap();
    let got = wait.await.unwrap().unwrap();
    assert!(got.success);
    // The same release again (as after a lost reply): ours, not a conflict.
    let again = holder.release("k", held.index).await.unwrap();
    assert_eq!(
        (first.result, again.result, again.success),
        (ReleaseResult::Released, ReleaseResult::Released, true)
    );
    // Somebody else's stale index is still a conflict.
    let other = holder.release("k", held.index - 1).await.unwrap();
    assert_eq!(other.result, ReleaseResult::Conflict);
}

#[tokio::test]
async fn a_redfour_style_release_deletes_the_queue_and_the_waiters_still_get_the_lock() {
    let server = RedisServer::start();
    let holder = lock(&server, "o");
    let mut raw = conn(&server).await;
    let held = holder.acquire("k", 60_000).await.unwrap();
    let mut waits = Vec::new();
    for _ in 0..3 {
        waits.push(wait_for_k(&holder, 5_000, Duration::from_secs(30)));
    }
    until_seated(&mut raw, "o:k").await;
    // redfour 1.x's release: DEL, then PUBLISH the key.
    let _: () = query(&mut raw, &["DEL", "o:k"]).await;
    let _: () = query(&mut raw, &["PUBLISH", "o-release", "o:k"]).await;
    let mut last = held.index;
    for _ in 0..3 {
        let got = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                if let Some(pos) = waits.iter().position(|t| t.is_finished()) {
                    break waits.swap_remove(pos).await.unwrap().unwrap();
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await
        .expect("each waiter gets the lock");
        assert!(got.success && got.index > last);
        last = got.index;
        holder.release("k", got.index).await.unwrap();
    }
}
