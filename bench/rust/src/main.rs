//! Drives the redfour-native core from Rust, on the same kind of runtime the Node addon uses
//! (tokio multi-thread, at most 2 workers), and prints one JSON object:
//!
//! - `latency`: sequential acquire + release of distinct ids (µs per pair);
//! - `floor`: two EVALSHA round trips of a trivial script on a plain redis-rs connection;
//! - `throughput`: 64 concurrent acquire + release loops on distinct ids (pairs per second);
//! - `handoff`: release in one task to the waiter in `wait_acquire` holding the lock (µs),
//!   in one process (the waiter is woken through the shared subscriber connection).
//!
//! Usage: redfour-core-bench <redis-url> [--quick]

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

async fn handoff(lock: &Lock, iterations: usize) -> Vec<f64> {
    let mut samples = Vec::with_capacity(iterations);
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
        let (ok, at) = waiter.await.expect("waiter");
        if ok {
            samples.push(at.duration_since(t0).as_secs_f64() * 1e6);
        }
    }
    samples
}

fn main() {
    let mut args = std::env::args().skip(1);
    let url = args.next().expect("usage: redfour-core-bench <redis-url> [--quick]");
    let quick = args.any(|a| a == "--quick");
    let (warmup, count, tp_warm, tp_dur, ho) = if quick {
        (300, 2_000, Duration::from_millis(300), Duration::from_secs(1), 40)
    } else {
        (1_000, 10_000, Duration::from_secs(1), Duration::from_secs(3), 200)
    };
    let workers = std::thread::available_parallelism()
        .map(|n| n.get().clamp(1, 2))
        .unwrap_or(2);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let lock = Lock::new(&url, NS, Timeouts::default()).expect("lock");
        let lat = latency(&lock, warmup, count).await;
        let flo = floor(&url, warmup, count).await;
        let tp = throughput(&lock, 64, tp_warm, tp_dur).await;
        let ho = handoff(&lock, ho).await;
        println!(
            "{{\"workerThreads\":{workers},\"latency\":{},\"floor\":{},\"throughput\":{{\"loops\":64,\"pairsPerSec\":{tp:.1}}},\"handoff\":{}}}",
            summary(lat),
            summary(flo),
            summary(ho)
        );
        lock.close();
    });
}
