//! Sentinel mode: a master, a replica and three sentinels; the master dies and the lock follows
//! the failover, waiters included.

mod common;

use common::RedisServer;
use redfour_native::core::{Connect, Lock, Sentinel, Settings, Timeouts};
use std::time::{Duration, Instant};

async fn named_master(sentinel: &RedisServer) -> Option<u16> {
    let mut conn = sentinel
        .client()
        .get_multiplexed_async_connection()
        .await
        .ok()?;
    let addr: Option<(String, u16)> = redis::cmd("SENTINEL")
        .arg("GET-MASTER-ADDR-BY-NAME")
        .arg("mymaster")
        .query_async(&mut conn)
        .await
        .ok()?;
    addr.map(|(_, port)| port)
}

async fn replicas_known(sentinel: &RedisServer) -> usize {
    let Ok(mut conn) = sentinel.client().get_multiplexed_async_connection().await else {
        return 0;
    };
    redis::cmd("SENTINEL")
        .arg("REPLICAS")
        .arg("mymaster")
        .query_async::<Vec<redis::Value>>(&mut conn)
        .await
        .map(|r| r.len())
        .unwrap_or(0)
}

#[tokio::test]
async fn locks_follow_a_failover_and_waiters_are_not_lost() {
    let mut master = RedisServer::start();
    let replica = RedisServer::start_with(&["--replicaof", "127.0.0.1", &master.port.to_string()]);
    let sentinels: Vec<RedisServer> = (0..3)
        .map(|_| RedisServer::start_sentinel(master.port))
        .collect();
    let started = Instant::now();
    while replicas_known(&sentinels[0]).await == 0
        || named_master(&sentinels[2]).await != Some(master.port)
    {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "sentinels did not settle"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let settings = Settings {
        connect: Connect {
            timeouts: Timeouts {
                connect: Duration::from_millis(500),
                command: Duration::from_millis(500),
            },
            tls: None,
            sentinel: Some(Sentinel {
                sentinels: sentinels.iter().map(RedisServer::url).collect(),
                master: "mymaster".to_owned(),
            }),
        },
        ..Settings::default()
    };
    let lock = Lock::open(&["redis://sentinel-master/".to_owned()], "sen", &settings).unwrap();
    let held = lock.acquire("w", 2_000).await.unwrap();
    assert!(held.success);

    let waiter = {
        let lock = lock.clone();
        tokio::spawn(async move {
            lock.wait_acquire("w", 5_000, Some(Duration::from_secs(30)))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    master.kill();

    let got = waiter
        .await
        .unwrap()
        .expect("the waiter outlives the failover");
    assert!(got.success, "the waiter got the lock on the new master");
    let now = named_master(&sentinels[0]).await;
    assert_eq!(now, Some(replica.port), "the replica was promoted");
    let next = lock.acquire("fresh", 1_000).await.unwrap();
    assert!(next.success);
    assert!(
        next.index > held.index,
        "the counter replicated before the failover keeps growing"
    );
}
