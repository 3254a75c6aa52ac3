//! Drives the lock engine from Rust, without Node: sequential acquire+release latency and
//! concurrent throughput, to separate the engine's cost from the native boundary's.
//! Usage: cargo run --release --no-default-features --example core_latency -- redis://127.0.0.1:6379/

use redfour_native::core::{Lock, Timeouts};
use std::time::Instant;

fn main() {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "redis://127.0.0.1:6379/".into());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let lock = Lock::new(&url, "bench-core", Timeouts::default()).expect("lock");
        for i in 0..2_000 {
            let got = lock
                .acquire(&format!("warm{i}"), 1_000)
                .await
                .expect("acquire");
            lock.release(&format!("warm{i}"), got.index)
                .await
                .expect("release");
        }
        let n = 10_000;
        let mut samples = Vec::with_capacity(n);
        for i in 0..n {
            let id = format!("k{i}");
            let started = Instant::now();
            let got = lock.acquire(&id, 1_000).await.expect("acquire");
            lock.release(&id, got.index).await.expect("release");
            samples.push(started.elapsed().as_secs_f64() * 1e6);
        }
        samples.sort_by(f64::total_cmp);
        println!(
            "pair p50 {:.1} us, p99 {:.1} us",
            samples[n / 2],
            samples[n * 99 / 100]
        );

        let started = Instant::now();
        let loops = 64;
        let per_loop = 1_000;
        let mut tasks = Vec::new();
        for j in 0..loops {
            let lock = lock.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..per_loop {
                    let id = format!("t{j}:{i}");
                    let got = lock.acquire(&id, 1_000).await.expect("acquire");
                    lock.release(&id, got.index).await.expect("release");
                }
            }));
        }
        for task in tasks {
            task.await.expect("task");
        }
        let rate = (loops * per_loop) as f64 / started.elapsed().as_secs_f64();
        println!("64 loops: {rate:.0} pairs/s");
    });
}
