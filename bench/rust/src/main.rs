//! Drives the redfour-native core from Rust, on the same kind of runtime the Node addon uses
//! (tokio multi-thread, 1 worker unless `--workers=N`), and prints one JSON object:
//!
//! - `latency`: sequential acquire + release of distinct ids (µs per pair);
//! - `floor`: two EVALSHA round trips of a trivial script on a plain redis-rs connection;
//! - `scriptFloor`: the core's own acquire and release scripts on a plain redis-rs connection;
//! - `throughput`: 64 concurrent acquire + release loops on distinct ids (pairs per second);
//! - `handoff`: release in one task to the waiter in `wait_acquire` holding the lock (µs),
//!   in one process (the waiter is woken through the shared subscriber connection);
//! - `scale`: 10,000 waiters on distinct held ids: RSS growth, and the size of the futures.
//!
//! Usage: redfour-core-bench <redis-url> [--quick] [--workers=N]

use redfour_native::core::{Lock, Timeouts};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const NS: &str = "bench";

fn summary(mut v: Vec<f64>) -> String {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let pct = |p: f64| -> f64 {
        if v.is_empty() {
            return f64::NAN;
        }
        let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
        v[rank.clamp(1, v.len()) - 1]
    };
    let mean = v.iter().sum::<f64>() / v.len().max(1) as f64;
    format!(
        "{{\"n\":{},\"p50\":{:.3},\"p90\":{:.3},\"p99\":{:.3},\"mean\":{:.3},\"min\":{:.3},\"max\":{:.3}}}",
        v.len(),
        pct(50.0),
        pct(90.0),
        pct(99.0),
        mean,
        v.first().copied().unwrap_or(f64::NAN),
        v.last().copied().unwrap_or(f64::NAN)
    )
}

async fn latency(lock: &Lock, warmup: usize, count: usize) -> Vec<f64> {
    for i in 0..warmup {
        let id = format!("rlat:w{i}");
        let got = lock.acquire(&id, 10_000).await.expect("acquire");
        lock.release(&id, got.index).await.expect("release");
    }
    let mut samples = Vec::with_capacity(count);
    for i in 0..count {
        let id = format!("rlat:{i}");
        let t0 = Instant::now();
        let got = lock.acquire(&id, 10_000).await.expect("acquire");
        assert!(got.success, "free id not granted");
        lock.release(&id, got.index).await.expect("release");
        samples.push(t0.elapsed().as_secs_f64() * 1e6);
    }
    samples
}

async fn floor(url: &str, warmup: usize, count: usize) -> Vec<f64> {
    let client = redis::Client::open(url).expect("url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let sha: String = redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg("return redis.call('EXISTS', KEYS[1])")
        .query_async(&mut conn)
        .await
        .expect("script load");
    let mut samples = Vec::with_capacity(count);
    for i in 0..warmup + count {
        let key = format!("{NS}:rfloor:{i}");
        let t0 = Instant::now();
        for _ in 0..2 {
            let _: i64 = redis::cmd("EVALSHA")
                .arg(&sha)
                .arg(1)
                .arg(&key)
                .query_async(&mut conn)
                .await
                .expect("evalsha");
        }
        if i >= warmup {
            samples.push(t0.elapsed().as_secs_f64() * 1e6);
        }
    }
    samples
}

/// The core's own two scripts (acquire, release) on a plain redis-rs connection, without the
/// engine around them: separates the scripts' cost in Redis from the engine's cost in the client.
async fn script_floor(url: &str, warmup: usize, count: usize) -> Vec<f64> {
    use redfour_native::core::scripts::{ACQUIRE, RELEASE};
    let client = redis::Client::open(url).expect("url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let load = |src: &'static str| redis::cmd("SCRIPT").arg("LOAD").arg(src).clone();
    let acquire: String = load(ACQUIRE).query_async(&mut conn).await.expect("load");
    let release: String = load(RELEASE).query_async(&mut conn).await.expect("load");
    let counter = format!("{NS}index");
    let channel = format!("{NS}-release");
    let mut samples = Vec::with_capacity(count);
    for i in 0..warmup + count {
        let key = format!("{NS}:rscript:{i}");
        let t0 = Instant::now();
        // As the core sends them: the attempt named, the release published on the channel.
        let (_ok, index, _ttl): (i64, i64, i64) = redis::cmd("EVALSHA")
            .arg(&acquire)
            .arg(2)
            .arg(&key)
            .arg(&counter)
            .arg(10_000)
            .arg(format!("attempt-{i}"))
            .query_async(&mut conn)
            .await
            .expect("acquire");
        let _: (i64, String, i64) = redis::cmd("EVALSHA")
            .arg(&release)
            .arg(1)
            .arg(&key)
            .arg(index)
            .arg(&channel)
            .arg("")
            .query_async(&mut conn)
            .await
            .expect("release");
        if i >= warmup {
            samples.push(t0.elapsed().as_secs_f64() * 1e6);
        }
    }
    samples
}

async fn throughput(lock: &Lock, loops: usize, warmup: Duration, duration: Duration) -> f64 {
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let pairs = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for k in 0..loops {
        let lock = lock.clone();
        let (measuring, stop, pairs) = (measuring.clone(), stop.clone(), pairs.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let id = format!("rtp:{k}:{i}");
                i += 1;
                let got = lock.acquire(&id, 10_000).await.expect("acquire");
                lock.release(&id, got.index).await.expect("release");
                if measuring.load(Ordering::Relaxed) {
                    pairs.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    tokio::time::sleep(warmup).await;
    measuring.store(true, Ordering::Relaxed);
    let t0 = Instant::now();
    tokio::time::sleep(duration).await;
    let counted = pairs.load(Ordering::Relaxed);
    let secs = t0.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("task");
    }
    counted as f64 / secs
}

/// Hand-off samples (release called -> waiter holds) and, for each, the part spent before the
/// releaser's own reply came back (µs).
async fn handoff(lock: &Lock, iterations: usize) -> (Vec<f64>, Vec<f64>) {
    let mut samples = Vec::with_capacity(iterations);
    let mut release_rtt = Vec::with_capacity(iterations);
    for i in 0..iterations {
        let id = format!("rho:{i}");
        let held = lock.acquire(&id, 10_000).await.expect("acquire");
        let waiter = {
            let lock = lock.clone();
            let id = id.clone();
            tokio::spawn(async move {
                let got = lock
                    .wait_acquire(&id, 10_000, Some(Duration::from_secs(5)))
                    .await
                    .expect("wait");
                let at = Instant::now();
                if got.success {
                    lock.release(&id, got.index).await.expect("release");
                }
                (got.success, at)
            })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        let t0 = Instant::now();
        lock.release(&id, held.index).await.expect("release");
        let replied = t0.elapsed();
        let (ok, at) = waiter.await.expect("waiter");
        if ok {
            samples.push(at.duration_since(t0).as_secs_f64() * 1e6);
            release_rtt.push(replied.as_secs_f64() * 1e6);
        }
    }
    (samples, release_rtt)
}

/// Resident set size of this process, from /proc/self/statm (Linux), in bytes.
fn rss_bytes() -> f64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: f64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    pages * 4096.0
}

/// `count` waiters on distinct held ids, from Rust: RSS growth, and the size of the futures.
async fn waiters(lock: &Lock, count: usize, settle: Duration) -> String {
    let sizes = format!(
        "{{\"acquire\":{},\"release\":{},\"waitAcquire\":{}}}",
        std::mem::size_of_val(&lock.acquire("x", 1)),
        std::mem::size_of_val(&lock.release("x", 1)),
        std::mem::size_of_val(&lock.wait_acquire("x", 1, None)),
    );
    let mut held = Vec::with_capacity(count);
    for chunk in (0..count).collect::<Vec<_>>().chunks(64) {
        let mut batch = Vec::new();
        for &i in chunk {
            let lock = lock.clone();
            batch.push(tokio::spawn(async move {
                let id = format!("rscale:{i}");
                let got = lock.acquire(&id, 120_000).await.expect("acquire");
                (id, got.index)
            }));
        }
        for t in batch {
            held.push(t.await.expect("task"));
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let base = rss_bytes();
    let mut tasks = Vec::with_capacity(count);
    for (id, _) in &held {
        let lock = lock.clone();
        let id = id.clone();
        tasks.push(tokio::spawn(async move {
            let got = lock
                .wait_acquire(&id, 60_000, Some(Duration::from_secs(60)))
                .await
                .expect("wait");
            if got.success {
                lock.release(&id, got.index).await.expect("release");
            }
            got.success
        }));
    }
    tokio::time::sleep(settle).await;
    let grown = rss_bytes() - base;
    let t0 = Instant::now();
    for chunk in held.chunks(64) {
        let mut batch = Vec::new();
        for (id, index) in chunk {
            let lock = lock.clone();
            let (id, index) = (id.clone(), *index);
            batch.push(tokio::spawn(async move {
                lock.release(&id, index).await.expect("release")
            }));
        }
        for t in batch {
            t.await.expect("task");
        }
    }
    let mut acquired = 0;
    for t in tasks {
        if t.await.expect("task") {
            acquired += 1;
        }
    }
    format!(
        "{{\"waiters\":{count},\"rssOverBaseMB\":{:.2},\"acquired\":{acquired},\"drainMs\":{:.1},\"futureBytes\":{sizes}}}",
        grown / 1048576.0,
        t0.elapsed().as_secs_f64() * 1e3
    )
}

fn main() {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .expect("usage: redfour-core-bench <redis-url> [--quick] [--workers=N]");
    let rest: Vec<String> = args.collect();
    let quick = rest.iter().any(|a| a == "--quick");
    // The addon's runtime has 1 worker thread (src/binding.rs); match it unless told otherwise.
    let workers: usize = rest
        .iter()
        .find_map(|a| a.strip_prefix("--workers=").and_then(|n| n.parse().ok()))
        .unwrap_or(1);
    let (warmup, count, tp_warm, tp_dur, ho, settle) = if quick {
        (
            300,
            2_000,
            Duration::from_millis(300),
            Duration::from_secs(1),
            40,
            Duration::from_millis(1500),
        )
    } else {
        (
            1_000,
            10_000,
            Duration::from_secs(1),
            Duration::from_secs(3),
            200,
            Duration::from_millis(2500),
        )
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let lock = Lock::open(&[url.clone()], NS, &Timeouts::default().into()).expect("lock");
        // Interleaved blocks, so a change in the machine's load falls on all three alike.
        let rounds = 10;
        let (mut lat, mut flo, mut scripts) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..rounds {
            lat.extend(latency(&lock, warmup / rounds, count / rounds).await);
            flo.extend(floor(&url, warmup / rounds, count / rounds).await);
            scripts.extend(script_floor(&url, warmup / rounds, count / rounds).await);
        }
        let tp = throughput(&lock, 64, tp_warm, tp_dur).await;
        let (ho, ho_release) = handoff(&lock, ho).await;
        let scale = waiters(&lock, 10_000, settle).await;
        println!(
            "{{\"workerThreads\":{workers},\"latency\":{},\"floor\":{},\"scriptFloor\":{},\"throughput\":{{\"loops\":64,\"pairsPerSec\":{tp:.1}}},\"handoff\":{},\"handoffReleaseReply\":{},\"scale\":{scale}}}",
            summary(lat),
            summary(flo),
            summary(scripts),
            summary(ho),
            summary(ho_release)
        );
        lock.close();
    });
}
