//! The Lua scripts, static text only: every key goes in KEYS and every value (including the
//! release channel, which redfour pasted into its script source) goes in ARGV, so no namespace or
//! id can change what a script does.
//!
//! Wire format shared with redfour 1.x/2.x and ioredfour:
//! - lock: HASH `{namespace}:{id}` with field `index`, expiring after the TTL;
//! - counter: STRING `{namespace}index`, INCR on every grant (a fencing token);
//! - release: PUBLISH on `{namespace}-release` with the lock key as the payload.
//!
//! A release always deletes the key and publishes it, as redfour does: every listener on the
//! channel (redfour, ioredfour, our own waiters, monitoring tools) sees every release, and a
//! waiter's lease always starts from an attempt it sent itself (see `ACQUIRE`).

use crate::core::error::Result;
use crate::core::outcome::{Acquired, ReleaseResult, Released, RenewResult, Renewed};
use redis::aio::ConnectionLike;
use redis::{Cmd, FromRedisValue, ServerErrorKind, ToRedisArgs, Value};
use std::sync::OnceLock;
use tokio::time::Instant;

/// One acquire attempt: KEYS[1] the lock, KEYS[2] the counter; ARGV[1] the TTL, ARGV[2] the
/// attempt's name (a UUID, stored in the lock's hash as `attempt`, which redfour ignores).
/// Returns `{1, index, ttl}` when the lock was free and is now taken, `{1, index, pttl}` when it
/// is already held under this very name (the attempt was sent again after its reply was lost:
/// the grant is ours, with what is left of it), and `{0, -1, pttl of the holder}` otherwise
/// (PTTL alone tells both: -2 is "no such key"). The TTL is checked before any write, so a bad
/// TTL can never leave a key without expiry (redfour's INCR + HMSET ran before its PEXPIRE
/// failed). The work is the same few commands whatever happened before.
pub const ACQUIRE: &str = r#"
local ttl = tonumber(ARGV[1])
if not ttl or ttl < 1 or ttl ~= math.floor(ttl) then
  return redis.error_reply("ERR redfour-native: invalid ttl")
end
local pttl = redis.call("PTTL", KEYS[1])
if pttl ~= -2 then
  -- pcall: a key that is not a hash (not a lock of ours or redfour's) is simply held.
  if redis.pcall("HGET", KEYS[1], "attempt") == ARGV[2] then
    return {1, tonumber(redis.call("HGET", KEYS[1], "index")), pttl}
  end
  return {0, -1, pttl}
end
-- Redis 7 can say up front whether the writes below are allowed: an ACL missing PEXPIRE must not
-- leave a lock key without expiry behind a failed script.
if redis.acl_check_cmd and not (redis.acl_check_cmd("INCR", KEYS[2])
    and redis.acl_check_cmd("HSET", KEYS[1], "index", "1")
    and redis.acl_check_cmd("PEXPIRE", KEYS[1], "1")) then
  return redis.error_reply("NOPERM redfour-native: this user may not INCR, HSET and PEXPIRE the lock's keys")
end
local index = redis.call("INCR", KEYS[2])
redis.call("HSET", KEYS[1], "index", index, "attempt", ARGV[2])
redis.call("PEXPIRE", KEYS[1], ttl)
return {1, index, ttl}
"#;

/// Returns `{1, "released", index}`, `{0, "conflict", holder index or -1}`, or
/// `{1, "expired", -1}` when the key is already gone. A release deletes the key and publishes it
/// on ARGV[2] (not at all when ARGV[2] is empty); with SPUBLISH, a sharded channel in the key's
/// slot, when ARGV[3] is "sharded" (cluster mode).
pub const RELEASE: &str = r#"
local current = tonumber(redis.call("HGET", KEYS[1], "index"))
if current == nil then
  if redis.call("EXISTS", KEYS[1]) == 0 then
    return {1, "expired", -1}
  end
  return {0, "conflict", -1}
end
if current == tonumber(ARGV[1]) then
  redis.call("DEL", KEYS[1])
  if ARGV[3] == "sharded" then
    redis.call("SPUBLISH", ARGV[2], KEYS[1])
  elseif ARGV[2] ~= "" then
    redis.call("PUBLISH", ARGV[2], KEYS[1])
  end
  return {1, "released", current}
end
return {0, "conflict", current}
"#;

/// Quorum mode: takes back what one attempt wrote on one node, and nothing else. Deletes the lock
/// only if it is still held under the attempt's name ARGV[1] (whatever index it carries: the
/// node's own or the committed token), and publishes the key on ARGV[2] so local waiters look
/// again. Returns 1 if it deleted the lock, else 0.
pub const UNDO: &str = r#"
if redis.pcall("HGET", KEYS[1], "attempt") ~= ARGV[1] then
  return 0
end
redis.call("DEL", KEYS[1])
if ARGV[2] ~= "" then
  redis.call("PUBLISH", ARGV[2], KEYS[1])
end
return 1
"#;

/// Renews (sets the TTL of) a lock still held under the given index. Returns
/// `{1, "renewed", index, ttl}`, `{0, "missing", -1, -2}` or `{0, "conflict", -1, pttl}`.
pub const RENEW: &str = r#"
local ttl = tonumber(ARGV[2])
if not ttl or ttl < 1 or ttl ~= math.floor(ttl) then
  return redis.error_reply("ERR redfour-native: invalid ttl")
end
local current = tonumber(redis.call("HGET", KEYS[1], "index"))
if current ~= nil and current == tonumber(ARGV[1]) then
  redis.call("PEXPIRE", KEYS[1], ttl)
  return {1, "renewed", current, ttl}
end
local pttl = redis.call("PTTL", KEYS[1])
if pttl == -2 then
  return {0, "missing", -1, -2}
end
return {0, "conflict", -1, pttl}
"#;

/// Quorum mode's second round: on a node that granted the lock under its own index ARGV[1],
/// store the agreed token ARGV[2] as the lock's index and raise the node's counter to at least
/// the token (see quorum.rs for why). Returns 1, or 0 if the node no longer holds our grant.
pub const COMMIT: &str = r#"
local mine = tonumber(redis.call("HGET", KEYS[1], "index"))
if mine == nil or mine ~= tonumber(ARGV[1]) then
  return 0
end
local token = tonumber(ARGV[2])
redis.call("HSET", KEYS[1], "index", token)
local counter = tonumber(redis.call("GET", KEYS[2]) or "0")
if counter < token then
  redis.call("SET", KEYS[2], token)
end
return 1
"#;

/// A script with its SHA1 computed once.
pub struct StaticScript {
    source: &'static str,
    hash: OnceLock<String>,
}

impl StaticScript {
    pub const fn new(source: &'static str) -> Self {
        StaticScript {
            source,
            hash: OnceLock::new(),
        }
    }

    pub fn source(&self) -> &'static str {
        self.source
    }

    pub fn hash(&self) -> &str {
        self.hash
            .get_or_init(|| redis::Script::new(self.source).get_hash().to_string())
    }

    /// Runs the script with EVALSHA, and on NOSCRIPT (a restarted or flushed server) with EVAL,
    /// which also caches it there. EVAL is routed by its keys like EVALSHA, so in a cluster it
    /// reaches the node that lacked the script. `args` (a value or a tuple) follow the keys.
    pub async fn run<T: FromRedisValue>(
        &self,
        conn: &mut impl ConnectionLike,
        keys: &[&str],
        args: impl ToRedisArgs,
    ) -> redis::RedisResult<T> {
        let reply = self.run_value(conn, keys, args).await?;
        Ok(redis::from_redis_value(reply.extract_error()?)?)
    }

    /// [`Self::run`]'s reply as it came: error replies stay values (`Value::ServerError`), at
    /// the top or inside an array, so a batch's calls each get their own; `Err` is a failed
    /// connection.
    pub async fn run_value(
        &self,
        conn: &mut impl ConnectionLike,
        keys: &[impl ToRedisArgs],
        args: impl ToRedisArgs,
    ) -> redis::RedisResult<Value> {
        let call = |name: &str, body: &str| {
            let mut cmd = Cmd::new();
            cmd.arg(name).arg(body).arg(keys.len()).arg(keys).arg(&args);
            cmd
        };
        let reply = conn.req_packed_command(&call("EVALSHA", self.hash())).await;
        if is_noscript(&reply) {
            return conn.req_packed_command(&call("EVAL", self.source)).await;
        }
        reply
    }
}

/// Whether `reply` is NOSCRIPT: the server does not have the script (any more).
pub fn is_noscript(reply: &redis::RedisResult<Value>) -> bool {
    match reply {
        Ok(Value::ServerError(err)) => err.kind() == Some(ServerErrorKind::NoScript),
        Err(err) => err.kind() == redis::ErrorKind::Server(ServerErrorKind::NoScript),
        Ok(_) => false,
    }
}

pub static ACQUIRE_SCRIPT: StaticScript = StaticScript::new(ACQUIRE);
pub static RELEASE_SCRIPT: StaticScript = StaticScript::new(RELEASE);
pub static RENEW_SCRIPT: StaticScript = StaticScript::new(RENEW);
pub static COMMIT_SCRIPT: StaticScript = StaticScript::new(COMMIT);
pub static UNDO_SCRIPT: StaticScript = StaticScript::new(UNDO);

/// One acquire attempt on `conn`: keys `key` and `counter_key`, named `name` (see `ACQUIRE`).
/// Sent again under the same name after a lost reply, it finds its own grant.
pub async fn acquire(
    conn: &mut impl ConnectionLike,
    key: &str,
    counter_key: &str,
    ttl_ms: u64,
    name: &str,
) -> Result<Acquired> {
    let sent_at = Instant::now();
    let (success, index, ttl): (i64, i64, i64) = ACQUIRE_SCRIPT
        .run(conn, &[key, counter_key], (ttl_ms, name))
        .await?;
    Ok(Acquired::answered(success == 1, index, ttl, sent_at))
}

/// Releases `key` if held under `index`, publishing the key on `channel` (nothing when it is
/// empty); with `sharded`, by SPUBLISH (cluster mode).
pub async fn release(
    conn: &mut impl ConnectionLike,
    key: &str,
    index: i64,
    channel: &str,
    sharded: bool,
) -> Result<Released> {
    let mode = if sharded { "sharded" } else { "" };
    let (success, result, current): (i64, String, i64) = RELEASE_SCRIPT
        .run(conn, &[key], (index, channel, mode))
        .await?;
    let result = match result.as_str() {
        "released" => ReleaseResult::Released,
        "expired" => ReleaseResult::Expired,
        _ => ReleaseResult::Conflict,
    };
    Ok(Released {
        success: success == 1,
        result,
        index: current,
    })
}

/// Sets the TTL of `key` if it is still held under `index`.
pub async fn renew(
    conn: &mut impl ConnectionLike,
    key: &str,
    index: i64,
    ttl_ms: u64,
) -> Result<Renewed> {
    let (success, result, index, ttl): (i64, String, i64, i64) =
        RENEW_SCRIPT.run(conn, &[key], (index, ttl_ms)).await?;
    let result = match result.as_str() {
        "renewed" => RenewResult::Renewed,
        "missing" => RenewResult::Missing,
        _ => RenewResult::Conflict,
    };
    Ok(Renewed {
        success: success == 1,
        result,
        index,
        ttl,
    })
}

/// A fresh attempt name, a random (version 4) UUID: two attempts never share one.
pub fn attempt_name() -> String {
    uuid::Uuid::new_v4().to_string()
}
