//! Quorum (Redlock) mode against five real redis-servers.

mod common;

use common::RedisServer;
use redfour_native::core::{Lock, ReleaseResult, Timeouts};
use std::time::{Duration, Instant};

fn servers(n: usize) -> Vec<RedisServer> {
    (0..n).map(|_| RedisServer::start()).collect()
}

fn quorum(servers: &[RedisServer]) -> Lock {
    let urls: Vec<String> = servers.iter().map(RedisServer::url).collect();
    let timeouts = Timeouts {
        connect: Duration::from_millis(300),
        command: Duration::from_millis(300),
    };
    common::open_lock(
        &urls.iter().map(String::as_str).collect::<Vec<_>>(),
        "q",
        timeouts,
    )
    .unwrap()
}

#[tokio::test]
async fn a_majority_grants_and_excludes_and_tokens_always_grow() {
    let mut nodes = servers(5);
    let a = quorum(&nodes);
    let b = quorum(&nodes);
    let mut last = 0;

    let got = a.acquire("k", 5_000).await.unwrap();
    assert!(got.success && got.index > last);
    assert!(got.ttl > 4_000 && got.ttl <= 5_000, "validity {}", got.ttl);
    last = got.index;
    assert!(!b.acquire("k", 5_000).await.unwrap().success, "exclusive");
    assert_eq!(
        a.release("k", got.index).await.unwrap().result,
        ReleaseResult::Released
    );

    // Two nodes die: a majority of three still grants, still exclusively, with larger tokens.
    nodes[0].kill();
    nodes[1].kill();
    for _ in 0..5 {
        let got = a.acquire("k", 5_000).await.unwrap();
        assert!(got.success, "3 of 5 is a majority");
        assert!(got.index > last, "token {} after {last}", got.index);
        last = got.index;
        assert!(!b.acquire("k", 5_000).await.unwrap().success);
        assert!(a.release("k", got.index).await.unwrap().success);
    }

    // A third dies: no majority, and the caller hears so promptly.
    nodes[2].kill();
    let started = Instant::now();
    let err = a.acquire("k", 5_000).await.unwrap_err();
    assert_eq!(err.code(), "ERR_NO_QUORUM");
    assert!(started.elapsed() < Duration::from_secs(3));

    // Back (empty, as after a crash without persistence): service resumes. All five answer and
    // the two that kept their counters take part, so tokens still grow. (Had only the three
    // empty ones answered, they could not: hence the delayed-restart rule in quorum.rs.)
    nodes[0].restart();
    nodes[1].restart();
    nodes[2].restart();
    let started = Instant::now();
    let got = loop {
        match a.acquire("k", 5_000).await {
            Ok(got) if got.success => break got,
            _ if started.elapsed() < Duration::from_secs(10) => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            other => panic!("no recovery: {other:?}"),
        }
    };
    assert!(got.index > last, "token {} after {last}", got.index);
}

#[tokio::test]
async fn a_quorum_waiter_is_woken_by_a_release() {
    let nodes = servers(3);
    let holder = quorum(&nodes);
    let waiter = quorum(&nodes);
    let held = holder.acquire("w", 30_000).await.unwrap();
    assert!(held.success);
    let started = Instant::now();
    let wait = tokio::spawn(async move {
        waiter
            .wait_acquire("w", 5_000, Some(Duration::from_secs(20)))
            .await
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    holder.release("w", held.index).await.unwrap();
    let got = wait.await.unwrap().unwrap();
    assert!(got.success && got.index > held.index);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "woken after {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_split_vote_is_undone_at_once() {
    let nodes = servers(3);
    let lock = quorum(&nodes);
    // Somebody holds the lock on two of three nodes (as after a lost race): we cannot win, and
    // our grant on the third node must not stay behind to block others.
    for node in &nodes[..2] {
        let single = common::open_lock(&[&node.url()], "q", Timeouts::default()).unwrap();
        assert!(single.acquire("s", 30_000).await.unwrap().success);
    }
    let got = lock.acquire("s", 30_000).await.unwrap();
    assert!(!got.success);
    assert!(got.ttl > 20_000, "the holders' remaining TTL: {}", got.ttl);
    let mut conn = nodes[2]
        .client()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let exists: i64 = redis::cmd("EXISTS")
        .arg("q:s")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(exists, 0, "the minority grant was released");
}

#[tokio::test]
async fn a_frozen_node_does_not_stall_acquisitions_and_tokens_keep_growing() {
    let nodes = servers(5);
    let a = quorum(&nodes);
    let b = quorum(&nodes);
    let warm = a.acquire("warm", 1_000).await.unwrap();
    assert!(warm.success);
    // SIGSTOP: the node keeps its connections open and answers nothing, the worst kind of down.
    nodes[4].pause();
    let mut last = warm.index;
    for i in 0..5 {
        let started = Instant::now();
        let got = a.acquire("p", 3_000).await.unwrap();
        let took = started.elapsed();
        assert!(got.success, "round {i}: 4 of 5 answer");
        assert!(
            got.index > last,
            "round {i}: token {} after {last}",
            got.index
        );
        assert!(
            took < Duration::from_millis(1_500),
            "round {i}: waited {took:?} for the frozen node"
        );
        assert!(
            !b.acquire("p", 3_000).await.unwrap().success,
            "round {i}: exclusive"
        );
        last = got.index;
        a.release("p", got.index).await.unwrap();
    }
    nodes[4].resume();
}

#[tokio::test]
async fn an_undo_reaches_a_node_that_answered_late_and_takes_back_only_its_own_grant() {
    let nodes = servers(3);
    let lock = quorum(&nodes);
    // Somebody holds the lock on two nodes; the third is frozen while we try, so its vote comes
    // too late to count, but it still grants us the lock when it wakes.
    for node in &nodes[..2] {
        let single = common::open_lock(&[&node.url()], "q", Timeouts::default()).unwrap();
        assert!(single.acquire("late", 30_000).await.unwrap().success);
    }
    // Connected to every node first: the attempt reaches the frozen node, which runs it later.
    assert!(lock.acquire("warm", 1_000).await.unwrap().success);
    nodes[2].pause();
    let got = lock.acquire("late", 30_000).await.unwrap();
    nodes[2].resume();
    assert!(!got.success);
    let mut conn = nodes[2]
        .client()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let mut exists = 1;
    for _ in 0..100 {
        exists = redis::cmd("EXISTS")
            .arg("q:late")
            .query_async(&mut conn)
            .await
            .unwrap();
        if exists == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(exists, 0, "the late node's grant was taken back");
    // The other nodes' lock is somebody else's: untouched by our undo.
    for node in &nodes[..2] {
        let mut conn = node
            .client()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let index: Option<i64> = redis::cmd("HGET")
            .arg("q:late")
            .arg("index")
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(index, Some(1), "the holder's lock is still there");
    }
}

#[tokio::test]
async fn an_undo_leaves_another_attempts_lock_alone_whatever_its_index() {
    use redfour_native::core::endpoint::Endpoint;
    let nodes = servers(1);
    let node = Endpoint::shared(&nodes[0].url(), &Timeouts::default().into()).unwrap();
    let mut conn = nodes[0]
        .client()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    // Another holder's committed lock, under the very index our attempt would have used.
    let _: () = redis::cmd("HSET")
        .arg("q:k")
        .arg("index")
        .arg(7)
        .arg("attempt")
        .arg("another")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(!node.undo("q:k", "ours", "").await.unwrap());
    let index: Option<i64> = redis::cmd("HGET")
        .arg("q:k")
        .arg("index")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(index, Some(7));
    assert!(node.undo("q:k", "another", "").await.unwrap());
}
