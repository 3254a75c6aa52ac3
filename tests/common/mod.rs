//! Private redis-servers (and sentinels) for the engine tests, on free loopback ports, stopped by
//! pid on drop.
#![allow(dead_code)] // each test binary uses a different part of the harness

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RedisServer {
    pub port: u16,
    child: Child,
    dir: TempDir,
    args: Vec<String>,
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn temp_dir(port: u16) -> TempDir {
    let dir =
        std::env::temp_dir().join(format!("redfour-native-test-{port}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    TempDir(dir)
}

fn spawn(args: &[String]) -> Child {
    Command::new("redis-server")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server on PATH")
}

fn server_args(port: u16, dir: &Path, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.push(dir.display().to_string());
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

impl RedisServer {
    pub fn start() -> RedisServer {
        Self::start_with(&[])
    }

    /// A server with extra arguments (`--replicaof`, ...).
    pub fn start_with(extra: &[&str]) -> RedisServer {
        let port = free_port();
        let dir = temp_dir(port);
        Self::launch(port, dir.0.clone(), dir, |p, d| server_args(p, d, extra))
    }

    /// A sentinel watching the master at `master_port` as `mymaster`, failing over quickly.
    pub fn start_sentinel(master_port: u16) -> RedisServer {
        let port = free_port();
        let dir = temp_dir(port);
        let config = dir.0.join("sentinel.conf");
        std::fs::write(
            &config,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {}\nsentinel monitor mymaster 127.0.0.1 {master_port} 2\n\
                 sentinel down-after-milliseconds mymaster 400\nsentinel failover-timeout mymaster 2000\n",
                dir.0.display()
            ),
        )
        .expect("sentinel.conf");
        Self::launch(port, config, dir, |_, config| {
            vec![config.display().to_string(), "--sentinel".to_owned()]
        })
    }

    fn launch(
        port: u16,
        at: PathBuf,
        dir: TempDir,
        args: impl FnOnce(u16, &Path) -> Vec<String>,
    ) -> RedisServer {
        let args = args(port, &at);
        let server = RedisServer {
            port,
            child: spawn(&args),
            dir,
            args,
        };
        server.wait_ready();
        server
    }

    fn wait_ready(&self) {
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn client(&self) -> redis::Client {
        redis::Client::open(self.url()).expect("client")
    }

    /// SIGKILL: the server is gone at once, with everything it held.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts a fresh (empty) server on the same port after `kill`.
    pub fn restart(&mut self) {
        self.kill();
        self.child = spawn(&self.args);
        self.wait_ready();
    }

    /// Freezes the server (SIGSTOP): connections stay open but nothing is answered.
    pub fn pause(&self) {
        signal(self.child.id(), "STOP");
    }

    pub fn resume(&self) {
        signal(self.child.id(), "CONT");
    }

    /// Number of script calls (EVAL + EVALSHA) the server has run.
    pub async fn script_calls(&self) -> u64 {
        let mut conn = self
            .client()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query_async(&mut conn)
            .await
            .unwrap();
        info.lines()
            .filter(|l| l.starts_with("cmdstat_evalsha:") || l.starts_with("cmdstat_eval:"))
            .filter_map(|l| l.split("calls=").nth(1))
            .filter_map(|rest| rest.split(',').next())
            .filter_map(|n| n.parse::<u64>().ok())
            .sum()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = &self.dir;
    }
}

fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .expect("kill");
    assert!(status.success(), "kill -{name} {pid}");
}

/// A Lock on one server (`url`) or on several independent masters (quorum mode), with only
/// timeouts set: `Lock::open` with default settings otherwise.
pub fn open_lock(
    urls: &[&str],
    namespace: &str,
    timeouts: redfour_native::core::Timeouts,
) -> redfour_native::core::Result<redfour_native::core::Lock> {
    let urls: Vec<String> = urls.iter().map(|url| (*url).to_owned()).collect();
    redfour_native::core::Lock::open(&urls, namespace, &timeouts.into())
}
