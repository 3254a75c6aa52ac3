//! Batched script calls: acquires, releases and renewals that reach one server at the same
//! moment go to Redis as one script call running each of them in turn, instead of one script
//! call each.
//!
//! Why: with many calls in flight (64 loops of acquire + release in one process), much of
//! Redis's work per call is the script call itself (parsing the command, looking the script up,
//! setting up Lua, writing the reply), not the few commands the script runs; and every call was
//! a socket write of its own on the client (40,000 `writev` for 40,000 calls). A batch pays
//! those once. Measured on 2026-12-02 (bench/DIAGNOSIS.md): at 64 loops, 10-16 calls per
//! script call, and redis-server CPU per pair down from 12.3-12.8 µs to 10.3-11.0 µs. Pairs per
//! second did not move with it: the three threads involved (JavaScript, this runtime, Redis)
//! wait on each other more than they work. Redis is the resource every process on a fleet
//! shares, so its CPU is worth saving anyway.
//!
//! How: [`Batched`] wraps the command connection as a `ConnectionLike`. An EVALSHA of the
//! acquire, release or renew script made while nothing is queued or in flight (a caller making
//! one call at a time) is sent at once, exactly as before. Otherwise it is queued: the first
//! call into an empty queue spawns a flush that waits for the runtime's other ready tasks
//! (`yield_now`), so the calls made in the same turn join it, and a full queue goes at once.
//! Two or more calls go as one call of [`BATCH`], which runs each one's script body in its own
//! `pcall` (one call's error stays its own) and returns their replies in order. Other commands
//! pass straight through.
//!
//! Order across NOSCRIPT: a script is sent by EVAL (which loads it) until a reply shows it is
//! loaded on this connection, and again after NOSCRIPT or a failed connection (which may be a
//! restarted server), so a call is never answered NOSCRIPT and sent again behind calls that were
//! made after it. The one window left is a SCRIPT FLUSH on the server while EVALSHA calls are in
//! flight: each is sent again by EVAL as its NOSCRIPT comes back.
//!
//! Semantics do not change: every call runs the same script body with the same keys and
//! arguments, atomically, in the order the calls were made; a batch is only several of those
//! back to back with nothing in between. Keys, values and messages on the wire are redfour's.
//! Calls made one after another reach Redis in that order (a lone call goes only when nothing
//! is queued or in flight, and batches go in queue order). A call whose caller gave up
//! (timeout, abort) still runs, as a sent call would. Only connections to one server use it
//! (single-server, sentinel, and each node of quorum mode), where any keys may share a script;
//! cluster mode sends each call on its own.

use crate::core::scripts::RELEASE_SCRIPT;
use crate::core::scripts::{is_noscript, StaticScript, ACQUIRE, ACQUIRE_SCRIPT, RELEASE};
use crate::core::scripts::{RENEW, RENEW_SCRIPT};
use crate::core::sync::MutexExt;
use redis::aio::{ConnectionLike, ConnectionManager};
use redis::{Arg, Cmd, RedisError, RedisFuture, RedisResult, Value};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, LazyLock, Mutex};
use tokio::sync::oneshot;

/// At most this many calls per batch: a full batch is sent at once, so the next one forms while
/// Redis runs it. (In a JavaScript prototype of batching, one batch of all 64 loops' calls made
/// Redis and the client take turns: 49-53k pairs/s, against 77-83k with batches of 32.)
pub const MAX_BATCH: usize = 32;

/// The scripts a batch can hold, with the tag [`BATCH`] dispatches on.
const BATCHABLE: [(&StaticScript, &str); 3] = [
    (&ACQUIRE_SCRIPT, "a"),
    (&RELEASE_SCRIPT, "r"),
    (&RENEW_SCRIPT, "n"),
];

/// Keys and arguments per call in a batch: calls with fewer are padded (the scripts never read
/// past their own).
pub const KEYS_PER_CALL: usize = 2;
pub const ARGS_PER_CALL: usize = 3;

/// The tag [`BATCH`] runs `script` under, if a batch can hold it.
pub fn tag_of(script: &StaticScript) -> Option<&'static str> {
    BATCHABLE
        .iter()
        .find(|(known, _)| std::ptr::eq(*known, script))
        .map(|(_, tag)| *tag)
}

/// Runs several calls of the acquire, release and renew scripts in one: KEYS holds two keys per
/// call, ARGV four values per call (the script's tag, then its three arguments). Built once from
/// the scripts' own text, each body becoming a function of its keys and arguments; no value
/// ever enters the source.
pub static BATCH: LazyLock<StaticScript> = LazyLock::new(|| {
    let function = |name: &str, body: &str| {
        let mut body = body.to_owned();
        for i in 1..=KEYS_PER_CALL {
            body = body.replace(&format!("KEYS[{i}]"), &format!("K{i}"));
        }
        for i in 1..=ARGS_PER_CALL {
            body = body.replace(&format!("ARGV[{i}]"), &format!("A{i}"));
        }
        format!("local function {name}(K1, K2, A1, A2, A3)\n{body}\nend\n")
    };
    let source = format!(
        "{}{}{}{}",
        function("acquire", ACQUIRE),
        function("release", RELEASE),
        function("renew", RENEW),
        r#"
local scripts = {a = acquire, r = release, n = renew}
local replies = {}
for i = 1, #KEYS / 2 do
  local a = (i - 1) * 4
  local ok, reply = pcall(scripts[ARGV[a + 1]], KEYS[2 * i - 1], KEYS[2 * i],
    ARGV[a + 2], ARGV[a + 3], ARGV[a + 4])
  if not ok then
    reply = redis.error_reply(type(reply) == "table" and reply.err or tostring(reply))
  end
  replies[i] = reply
end
return replies
"#
    );
    StaticScript::new(Box::leak(source.into_boxed_str()))
});

/// One queued call: its script, its keys and arguments as the caller gave them (a batch pads
/// them when it encodes them), and where its reply goes.
struct Call {
    script: &'static StaticScript,
    tag: &'static str,
    keys: Vec<Vec<u8>>,
    args: Vec<Vec<u8>>,
    reply: oneshot::Sender<RedisResult<Value>>,
}

/// The arguments of `cmd`, if all are plain.
fn args(cmd: &Cmd) -> impl Iterator<Item = Option<&[u8]>> {
    cmd.args_iter().map(|arg| match arg {
        Arg::Simple(bytes) => Some(bytes),
        _ => None,
    })
}

/// The script of `cmd` and its batch tag, if `cmd` is an EVALSHA of a batchable one.
fn batchable(cmd: &Cmd) -> Option<(&'static StaticScript, &'static str)> {
    let mut args = args(cmd);
    if !args.next()??.eq_ignore_ascii_case(b"EVALSHA") {
        return None;
    }
    let hash = args.next()??;
    BATCHABLE
        .iter()
        .find(|(script, _)| script.hash().as_bytes() == hash)
        .copied()
}

impl Call {
    /// The call of `cmd`, an EVALSHA of `script` (tagged `tag`).
    fn of(
        cmd: &Cmd,
        (script, tag): (&'static StaticScript, &'static str),
    ) -> Option<(Call, oneshot::Receiver<RedisResult<Value>>)> {
        let mut args = args(cmd).skip(2);
        let key_count: usize = std::str::from_utf8(args.next()??).ok()?.parse().ok()?;
        let mut rest = args
            .collect::<Option<Vec<_>>>()?
            .into_iter()
            .map(<[u8]>::to_vec);
        let keys: Vec<Vec<u8>> = rest.by_ref().take(key_count).collect();
        let args: Vec<Vec<u8>> = rest.collect();
        if keys.is_empty() || keys.len() > KEYS_PER_CALL || args.len() > ARGS_PER_CALL {
            return None;
        }
        let (reply, replied) = oneshot::channel();
        let call = Call {
            script,
            tag,
            keys,
            args,
            reply,
        };
        Some((call, replied))
    }

    /// The call sent on its own: its script's EVALSHA, as the caller made it.
    fn alone(&self) -> Cmd {
        let mut cmd = Cmd::new();
        cmd.arg("EVALSHA")
            .arg(self.script.hash())
            .arg(self.keys.len())
            .arg(&self.keys)
            .arg(&self.args);
        cmd
    }

    /// Its two keys in a batch (the first again when it has one).
    fn padded_keys(&self) -> [&[u8]; KEYS_PER_CALL] {
        [&self.keys[0], self.keys.get(1).unwrap_or(&self.keys[0])]
    }

    /// Its three arguments in a batch (empty ones after its own).
    fn padded_args(&self) -> impl Iterator<Item = &[u8]> {
        let none: &[u8] = &[];
        (0..ARGS_PER_CALL).map(move |i| self.args.get(i).map_or(none, Vec::as_slice))
    }
}

/// The queue of one server's command connection.
#[derive(Default)]
pub struct Batcher {
    queue: Arc<Mutex<Vec<Call>>>,
    /// Script calls (batched or alone) sent and not answered yet.
    in_flight: Arc<AtomicUsize>,
    loaded: Arc<Loaded>,
}

/// The scripts known to be loaded on the connection: one bit each, by place in [`BATCHABLE`],
/// then [`BATCH`]'s.
#[derive(Default)]
struct Loaded(AtomicU32);

impl Loaded {
    fn bit(script: &StaticScript) -> u32 {
        let place = BATCHABLE
            .iter()
            .position(|(known, _)| std::ptr::eq(*known, script))
            .unwrap_or(BATCHABLE.len());
        1 << place
    }

    fn has(&self, script: &StaticScript) -> bool {
        self.0.load(SeqCst) & Self::bit(script) != 0
    }

    /// Learns from a reply: any answer means the script is loaded now; a failed connection may
    /// be followed by a reconnect to a server that never saw it (or no longer does).
    fn note(&self, script: &StaticScript, reply: &RedisResult<Value>) {
        match reply {
            Ok(_) => self.0.fetch_or(Self::bit(script), SeqCst),
            Err(_) => self.0.swap(0, SeqCst),
        };
    }

    fn forget_all(&self) {
        self.0.store(0, SeqCst);
    }
}

/// Sends `cmd`, an EVALSHA of `script`: as EVAL instead while the script is not known to be
/// loaded on `conn`, and again as EVAL after NOSCRIPT (the server lost every script: restart,
/// failover, SCRIPT FLUSH), so what was loaded is forgotten.
async fn run(
    conn: &mut ConnectionManager,
    loaded: &Loaded,
    script: &StaticScript,
    cmd: &Cmd,
) -> RedisResult<Value> {
    if loaded.has(script) {
        let reply = conn.req_packed_command(cmd).await;
        if !is_noscript(&reply) {
            loaded.note(script, &reply);
            return reply;
        }
        loaded.forget_all();
    }
    let mut eval = Cmd::new();
    eval.arg("EVAL").arg(script.source());
    for arg in args(cmd).skip(2).flatten() {
        eval.arg(arg);
    }
    let reply = conn.req_packed_command(&eval).await;
    loaded.note(script, &reply);
    reply
}

/// Counts a script call in flight while it lives (a dropped call stops counting too).
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn new(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, SeqCst);
        InFlight(count.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, SeqCst);
    }
}

impl Batcher {
    /// `conn` with its script calls batched through this queue.
    pub fn wrap(&self, conn: ConnectionManager) -> Batched<'_> {
        Batched {
            conn,
            batcher: self,
        }
    }

    /// Whether a script call may go at once, alone: nothing is queued or in flight, as for a
    /// caller making one call at a time, who then pays nothing for batching. The call counts
    /// as in flight while the returned guard lives.
    fn alone(&self) -> Option<InFlight> {
        let queue = self.queue.locked();
        (queue.is_empty() && self.in_flight.load(SeqCst) == 0)
            .then(|| InFlight::new(&self.in_flight))
    }

    /// Queues `call`: the first into an empty queue spawns the flush, which runs after the
    /// runtime's other ready tasks (the calls made meanwhile join the batch); a full batch goes
    /// at once.
    fn submit(&self, call: Call, conn: &ConnectionManager) {
        let mut queue = self.queue.locked();
        queue.push(call);
        if queue.len() == 1 {
            let queue = self.queue.clone();
            let in_flight = self.in_flight.clone();
            let loaded = self.loaded.clone();
            let conn = conn.clone();
            tokio::spawn(async move {
                tokio::task::yield_now().await;
                // Counted in flight before the queue is seen empty: a lone call must not
                // overtake these.
                let (calls, in_flight) = {
                    let mut queue = queue.locked();
                    (std::mem::take(&mut *queue), InFlight::new(&in_flight))
                };
                send(calls, conn, &loaded, in_flight).await;
            });
        } else if queue.len() >= MAX_BATCH {
            let calls = std::mem::take(&mut *queue);
            let (conn, loaded) = (conn.clone(), self.loaded.clone());
            let in_flight = InFlight::new(&self.in_flight);
            tokio::spawn(async move { send(calls, conn, &loaded, in_flight).await });
        }
    }
}

/// Sends `calls` (in order) and hands each its reply.
async fn send(
    mut calls: Vec<Call>,
    mut conn: ConnectionManager,
    loaded: &Loaded,
    _in_flight: InFlight,
) {
    if calls.len() <= 1 {
        if let Some(call) = calls.pop() {
            let reply = run(&mut conn, loaded, call.script, &call.alone()).await;
            let _ = call.reply.send(reply);
        }
        return;
    }
    let keys: Vec<&[u8]> = calls.iter().flat_map(Call::padded_keys).collect();
    let args: Vec<&[u8]> = calls
        .iter()
        .flat_map(|call| std::iter::once(call.tag.as_bytes()).chain(call.padded_args()))
        .collect();
    let mut batch = Cmd::new();
    batch
        .arg("EVALSHA")
        .arg(BATCH.hash())
        .arg(keys.len())
        .arg(&keys)
        .arg(&args);
    let reply = run(&mut conn, loaded, &BATCH, &batch).await;
    match reply {
        Ok(Value::Array(replies)) if replies.len() == calls.len() => {
            for (call, reply) in calls.into_iter().zip(replies) {
                let _ = call.reply.send(Ok(reply));
            }
        }
        // An error for the whole batch (the server refused the script call, or the connection
        // failed): every call gets it, as each would have alone.
        Ok(other) => {
            for call in calls {
                let _ = call.reply.send(Ok(other.clone()));
            }
        }
        Err(err) => {
            for call in calls {
                let _ = call.reply.send(Err(copy(&err)));
            }
        }
    }
}

/// The same failure for another caller (`RedisError` is not `Clone`): connection failures stay
/// I/O errors with the same message, which is what the callers' retry decisions look at.
fn copy(err: &RedisError) -> RedisError {
    let kind = if err.is_timeout() {
        std::io::ErrorKind::TimedOut
    } else if err.is_connection_refusal() {
        std::io::ErrorKind::ConnectionRefused
    } else if err.is_io_error() || err.is_connection_dropped() {
        std::io::ErrorKind::BrokenPipe
    } else {
        return RedisError::from((
            redis::ErrorKind::Client,
            "batched call failed",
            err.to_string(),
        ));
    };
    std::io::Error::new(kind, err.to_string()).into()
}

/// A command connection whose acquire, release and renew script calls are batched.
pub struct Batched<'a> {
    conn: ConnectionManager,
    batcher: &'a Batcher,
}

impl ConnectionLike for Batched<'_> {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        let Some(script) = batchable(cmd) else {
            return self.conn.req_packed_command(cmd);
        };
        if let Some(in_flight) = self.batcher.alone() {
            return Box::pin(async move {
                let reply = run(&mut self.conn, &self.batcher.loaded, script.0, cmd).await;
                drop(in_flight);
                reply
            });
        }
        let Some((call, replied)) = Call::of(cmd, script) else {
            // Not the shape our scripts are called with: sent as it is.
            return self.conn.req_packed_command(cmd);
        };
        self.batcher.submit(call, &self.conn);
        Box::pin(async move {
            replied.await.unwrap_or_else(|_| {
                Err(std::io::Error::new(
                    std::io::ErrorKind::BrokenPipe,
                    "the batched call was dropped before its reply",
                )
                .into())
            })
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        self.conn.req_packed_commands(pipeline, offset, count)
    }

    fn get_db(&self) -> i64 {
        self.conn.get_db()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_script_body_in_the_batch_reads_its_own_parameters_only() {
        let source = BATCH.source();
        let dispatcher = source.find("local scripts =").unwrap();
        let functions = &source[..dispatcher];
        assert_eq!(functions.matches("local function ").count(), 3);
        assert!(!functions.contains("KEYS["), "a body still reads KEYS");
        assert!(!functions.contains("ARGV["), "a body still reads ARGV");
        assert!(!functions.contains("K3") && !functions.contains("A4"));
    }

    #[test]
    fn only_evalsha_of_the_three_scripts_is_batched() {
        let evalsha = |hash: &str| {
            let mut cmd = redis::cmd("EVALSHA");
            cmd.arg(hash)
                .arg(2)
                .arg("ns:a")
                .arg("nsindex")
                .arg(1000)
                .arg("7");
            cmd
        };
        let tag = |cmd: &Cmd| batchable(cmd).map(|(_, tag)| tag);
        assert_eq!(tag(&evalsha(ACQUIRE_SCRIPT.hash())), Some("a"));
        assert_eq!(tag(&evalsha(RELEASE_SCRIPT.hash())), Some("r"));
        assert_eq!(tag(&evalsha(RENEW_SCRIPT.hash())), Some("n"));
        assert_eq!(tag(&evalsha(BATCH.hash())), None);
        assert_eq!(tag(&redis::cmd("PING")), None);
        let mut eval = redis::cmd("EVAL");
        eval.arg(ACQUIRE).arg(0);
        assert_eq!(tag(&eval), None, "the NOSCRIPT fallback goes as it is");
        let cmd = evalsha(ACQUIRE_SCRIPT.hash());
        let (call, _) = Call::of(&cmd, batchable(&cmd).unwrap()).unwrap();
        assert_eq!(call.keys, [b"ns:a".to_vec(), b"nsindex".to_vec()]);
        let padded: Vec<&[u8]> = call.padded_args().collect();
        assert_eq!(padded, [&b"1000"[..], b"7", b""], "padded to three values");
        assert_eq!(
            call.alone().get_packed_command(),
            cmd.get_packed_command(),
            "alone, it is sent exactly as the caller made it"
        );
        // One key: the batch gives the script its first key again as the second.
        let mut renew = redis::cmd("EVALSHA");
        renew
            .arg(RENEW_SCRIPT.hash())
            .arg(1)
            .arg("ns:a")
            .arg(3)
            .arg(1000);
        let (call, _) = Call::of(&renew, batchable(&renew).unwrap()).unwrap();
        assert_eq!(call.padded_keys(), [&b"ns:a"[..], b"ns:a"]);
        assert_eq!(
            call.alone().get_packed_command(),
            renew.get_packed_command()
        );
    }
}
