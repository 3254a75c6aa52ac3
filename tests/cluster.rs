//! Redis Cluster mode against a three-master cluster built here with `redis-cli --cluster create`.

mod common;

use common::RedisServer;
use redfour_native::core::{Lock, Settings, Timeouts};
use std::process::Command;
use std::time::{Duration, Instant};

struct TestCluster {
    nodes: Vec<RedisServer>,
}

impl TestCluster {
    fn start() -> TestCluster {
        let nodes: Vec<RedisServer> = (0..3)
            .map(|_| {
                RedisServer::start_with(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-node-timeout",
                    "2000",
                ])
            })
            .collect();
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for node in &nodes {
            create.arg(format!("127.0.0.1:{}", node.port));
        }
        let status = create
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(std::process::Stdio::null())
            .status()
            .expect("redis-cli");
        assert!(status.success(), "cluster create");
        let cluster = TestCluster { nodes };
        let started = Instant::now();
        while !cluster
            .nodes
            .iter()
            .all(|n| cli(n.port, &["CLUSTER", "INFO"]).contains("cluster_state:ok"))
        {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "cluster did not become ok"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        cluster
    }

    fn seeds(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    fn node_id(&self, port: u16) -> String {
        cli(port, &["CLUSTER", "MYID"]).trim().to_owned()
    }

    /// The port of the master serving `key`'s slot.
    fn owner(&self, key: &str) -> u16 {
        let slot = cli(self.nodes[0].port, &["CLUSTER", "KEYSLOT", key])
            .trim()
            .to_owned();
        let shards = cli(self.nodes[0].port, &["CLUSTER", "SLOTS"]);
        let lines: Vec<&str> = shards.lines().map(str::trim).collect();
        let slot: u64 = slot.parse().unwrap();
        // CLUSTER SLOTS in redis-cli's raw form: start, end, host, port, id, per range.
        let mut i = 0;
        while i + 3 < lines.len() {
            if let (Ok(start), Ok(end)) = (lines[i].parse::<u64>(), lines[i + 1].parse::<u64>()) {
                if (start..=end).contains(&slot) {
                    return lines[i + 3].parse().unwrap();
                }
            }
            i += 1;
        }
        panic!("no owner for slot {slot}");
    }

    /// Moves `key`'s slot (and its keys) from its owner to the master on `to`.
    fn migrate(&self, key: &str, to: u16) {
        let from = self.owner(key);
        let slot = cli(from, &["CLUSTER", "KEYSLOT", key]).trim().to_owned();
        let (from_id, to_id) = (self.node_id(from), self.node_id(to));
        cli(to, &["CLUSTER", "SETSLOT", &slot, "IMPORTING", &from_id]);
        cli(from, &["CLUSTER", "SETSLOT", &slot, "MIGRATING", &to_id]);
        loop {
            let keys = cli(from, &["CLUSTER", "GETKEYSINSLOT", &slot, "100"]);
            let keys: Vec<&str> = keys
                .lines()
                .map(str::trim)
                .filter(|k| !k.is_empty())
                .collect();
            if keys.is_empty() {
                break;
            }
            let mut args = vec!["MIGRATE", "127.0.0.1"];
            let to_port = to.to_string();
            args.extend([to_port.as_str(), "", "0", "5000", "KEYS"]);
            args.extend(keys);
            cli(from, &args);
        }
        for node in &self.nodes {
            cli(node.port, &["CLUSTER", "SETSLOT", &slot, "NODE", &to_id]);
        }
    }
}

fn cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .arg("-p")
        .arg(port.to_string())
        .args(args)
        .output()
        .expect("redis-cli");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn lock(cluster: &TestCluster) -> Lock {
    let settings = Settings {
        connect: Timeouts {
            connect: Duration::from_secs(2),
            command: Duration::from_secs(2),
        }
        .into(),
        cluster: true,
        ..Settings::default()
    };
    Lock::open(&cluster.seeds(), "cl", &settings).unwrap()
}

#[tokio::test]
async fn locks_on_every_master_wake_waiters_through_sharded_channels_and_survive_a_slot_move() {
    let cluster = TestCluster::start();
    let holder = lock(&cluster);
    let waiter = lock(&cluster);

    // Ids whose slots land on each of the three masters.
    let mut ids = Vec::new();
    for i in 0.. {
        let id = format!("id{i}");
        let owner = cluster.owner(&holder.key(&id));
        if !ids.iter().any(|(_, o)| *o == owner) {
            ids.push((id, owner));
        }
        if ids.len() == 3 {
            break;
        }
    }

    for (id, owner) in &ids {
        let held = holder.acquire(id, 30_000).await.unwrap();
        assert!(held.success);
        let key = holder.key(id);
        assert_eq!(
            cli(*owner, &["HGET", &key, "index"]).trim(),
            held.index.to_string()
        );
        assert!(
            !waiter.acquire(id, 1_000).await.unwrap().success,
            "exclusive"
        );

        let started = Instant::now();
        let wait = {
            let (waiter, id) = (waiter.clone(), id.clone());
            tokio::spawn(async move {
                waiter
                    .wait_acquire(&id, 5_000, Some(Duration::from_secs(20)))
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        let channel = format!("{key}:release");
        let subscribers = cli(*owner, &["PUBSUB", "SHARDNUMSUB", &channel]);
        assert_eq!(
            subscribers.lines().nth(1).map(str::trim),
            Some("1"),
            "SSUBSCRIBEd on the owner: {subscribers}"
        );
        assert!(holder.release(id, held.index).await.unwrap().success);
        let got = wait.await.unwrap().unwrap();
        assert!(
            got.success && got.index > held.index,
            "per-lock counter grows"
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "woken by SPUBLISH, not by the 30 s TTL"
        );
        assert!(waiter.release(id, got.index).await.unwrap().success);
    }

    // Move a held lock's slot to another master: the lock, its counter and its waiters follow.
    let (id, owner) = ids[0].clone();
    let held = holder.acquire(&id, 30_000).await.unwrap();
    let target = cluster
        .nodes
        .iter()
        .map(|n| n.port)
        .find(|p| *p != owner)
        .unwrap();
    let wait = {
        let (waiter, id) = (waiter.clone(), id.clone());
        tokio::spawn(async move {
            waiter
                .wait_acquire(&id, 5_000, Some(Duration::from_secs(20)))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(150)).await;
    cluster.migrate(&holder.key(&id), target);
    assert_eq!(cluster.owner(&holder.key(&id)), target);
    assert!(
        !holder.acquire(&id, 1_000).await.unwrap().success,
        "still held after the move"
    );
    assert!(
        holder.release(&id, held.index).await.unwrap().success,
        "released on the new owner"
    );
    let started = Instant::now();
    let got = wait.await.unwrap().unwrap();
    assert!(got.success && got.index > held.index);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "woken on the new owner, not at the deadline"
    );
}
