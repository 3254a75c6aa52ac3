//! Batched script calls (src/core/batch.rs) against a real redis-server: calls made together
//! share script calls, and each still gets exactly the result it would have had alone.

mod common;

use common::RedisServer;
use futures_util::future::join_all;
use redfour_native::core::{Failure, Lock, LockError, ReleaseResult, RenewResult, Timeouts};

fn lock(server: &RedisServer) -> Lock {
    common::open_lock(&[&server.url()], "ns", Timeouts::default()).unwrap()
}

async fn admin(server: &RedisServer) -> redis::aio::MultiplexedConnection {
    server
        .client()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

#[tokio::test]
async fn calls_made_together_share_script_calls_and_keep_their_own_results() {
    let server = RedisServer::start();
    let lock = lock(&server);
    let mut conn = admin(&server).await;
    lock.acquire("warm-up", 1_000).await.unwrap();
    let before = server.script_calls().await;

    // Two acquires of each of 100 ids, all at once: one of each pair wins.
    let ids: Vec<String> = (0..100).map(|i| format!("id{i}")).collect();
    let acquires = ids
        .iter()
        .flat_map(|id| [id, id])
        .map(|id| lock.acquire(id, 10_000));
    let got = join_all(acquires).await;
    let mut indexes = Vec::new();
    for pair in got.chunks(2) {
        let (a, b) = (pair[0].as_ref().unwrap(), pair[1].as_ref().unwrap());
        assert!(a.success != b.success, "exactly one acquire of an id wins");
        let winner = if a.success { a } else { b };
        let loser = if a.success { b } else { a };
        assert_eq!((loser.index, winner.ttl), (-1, 10_000));
        assert!(loser.ttl > 0 && loser.ttl <= 10_000);
        indexes.push(winner.index);
    }
    let mut distinct = indexes.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), 100, "every grant has its own index");
    let used = server.script_calls().await - before;
    assert!(
        used < 50,
        "200 acquires made together took {used} script calls"
    );

    // Renewals and releases at once, a third of them under a wrong index.
    let renewals = ids
        .iter()
        .zip(&indexes)
        .map(|(id, &index)| lock.renew(id, index, 20_000));
    for renewed in join_all(renewals).await {
        let renewed = renewed.unwrap();
        assert_eq!(
            (renewed.result, renewed.ttl),
            (RenewResult::Renewed, 20_000)
        );
    }
    let releases = ids
        .iter()
        .zip(&indexes)
        .enumerate()
        .map(|(i, (id, &index))| {
            let index = if i % 3 == 0 { index + 1_000 } else { index };
            lock.release(id, index)
        });
    for (i, released) in join_all(releases).await.into_iter().enumerate() {
        let released = released.unwrap();
        if i % 3 == 0 {
            assert_eq!(
                (released.result, released.index),
                (ReleaseResult::Conflict, indexes[i])
            );
        } else {
            assert_eq!(
                (released.result, released.index),
                (ReleaseResult::Released, indexes[i])
            );
        }
    }
    let left: u64 = redis::cmd("EXISTS")
        .arg(ids.iter().map(|id| format!("ns:{id}")).collect::<Vec<_>>())
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        left, 34,
        "only the locks released under a wrong index are left"
    );
}

#[tokio::test]
async fn one_calls_error_does_not_fail_the_calls_batched_with_it() {
    let server = RedisServer::start();
    let lock = lock(&server);
    let mut conn = admin(&server).await;
    // Not a hash: releasing it makes the script's HGET fail with WRONGTYPE.
    let _: () = redis::cmd("SET")
        .arg("ns:not-a-lock")
        .arg("x")
        .query_async(&mut conn)
        .await
        .unwrap();
    let ids: Vec<String> = (0..20).map(|i| format!("id{i}")).collect();
    let held = join_all(ids.iter().map(|id| lock.acquire(id, 10_000))).await;
    let before = server.script_calls().await;
    let mut releases: Vec<_> = ids
        .iter()
        .zip(&held)
        .map(|(id, got)| lock.release(id, got.as_ref().unwrap().index))
        .collect();
    releases.insert(10, lock.release("not-a-lock", 1));
    let mut results = join_all(releases).await;
    assert!(server.script_calls().await - before < 21, "batched");
    let failed = results.remove(10);
    assert!(
        matches!(&failed, Err(LockError::Redis { message, failure: Failure::Reply }) if message.contains("WRONGTYPE")),
        "{failed:?}"
    );
    for released in results {
        assert_eq!(released.unwrap().result, ReleaseResult::Released);
    }
}

#[tokio::test]
async fn batches_survive_a_script_flush() {
    let server = RedisServer::start();
    let lock = lock(&server);
    let mut conn = admin(&server).await;
    let ids = |prefix: &str| (0..40).map(|i| format!("{prefix}{i}")).collect::<Vec<_>>();
    let (a, b) = (ids("a"), ids("b"));
    let first = join_all(a.iter().map(|id| lock.acquire(id, 10_000))).await;
    assert!(first.iter().all(|got| got.as_ref().unwrap().success));
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut conn)
        .await
        .unwrap();
    let again = join_all(b.iter().map(|id| lock.acquire(id, 10_000))).await;
    assert!(again.iter().all(|got| got.as_ref().unwrap().success));
}

#[tokio::test]
async fn calls_made_together_run_in_the_order_they_were_made() {
    let server = RedisServer::start();
    let lock = lock(&server);
    lock.acquire("warm-up", 1_000).await.unwrap();
    for round in 0..20 {
        let id = format!("o{round}");
        // Three acquires of one id at once (`join_all` polls them in order): the first wins,
        // as it would if they had been sent one after the other.
        let got = join_all((0..3).map(|_| lock.acquire(&id, 10_000))).await;
        let won: Vec<bool> = got.into_iter().map(|got| got.unwrap().success).collect();
        assert_eq!(won, [true, false, false], "round {round}");
    }
}

#[tokio::test]
async fn a_script_not_yet_loaded_keeps_its_place_in_line() {
    // The acquire script is loaded (an acquire ran) and the release script is not: a release and
    // an acquire of the same id made together must run in that order. Sent as EVALSHA, the
    // release was answered NOSCRIPT and sent again by EVAL behind the acquire, which then found
    // the lock still held.
    let server = RedisServer::start();
    let lock = lock(&server);
    for round in 0..10 {
        let mut conn = admin(&server).await;
        let _: () = redis::cmd("SCRIPT")
            .arg("FLUSH")
            .query_async(&mut conn)
            .await
            .unwrap();
        // After a flush the library only learns of it from a NOSCRIPT: one call finds out.
        lock.acquire(&format!("warm{round}"), 1_000).await.unwrap();
        let id = format!("k{round}");
        let held = lock.acquire(&id, 10_000).await.unwrap();
        assert!(held.success);
        let (released, again) =
            tokio::join!(lock.release(&id, held.index), lock.acquire(&id, 10_000));
        assert_eq!(
            released.unwrap().result,
            ReleaseResult::Released,
            "round {round}"
        );
        assert!(
            again.unwrap().success,
            "round {round}: the acquire overtook the release"
        );
    }
}
