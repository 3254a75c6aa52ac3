//! The Lua scripts, static text only: every key goes in KEYS and every value (including the
//! release channel, which redfour pasted into its script source) goes in ARGV, so no namespace or
//! id can change what a script does.
//!
//! Wire format shared with redfour 1.x/2.x and ioredfour:
//! - lock: HASH `{namespace}:{id}` with field `index`, expiring after the TTL;
//! - counter: STRING `{namespace}index`, INCR on every grant (a fencing token);
//! - release: PUBLISH on `{namespace}-release` with the lock key as the payload.

use crate::core::error::Result;
use crate::core::lock::{Acquired, ReleaseResult, Released, RenewResult, Renewed};
use redis::aio::ConnectionLike;
use redis::{Cmd, FromRedisValue, ServerErrorKind, ToRedisArgs};
use std::sync::OnceLock;
use tokio::time::Instant;

/// Returns `{1, index, ttl}` on a grant and `{0, -1, pttl of the holder}` otherwise (PTTL alone
/// tells both: -2 is "no such key"). ARGV[2], optional, names the attempt: it is stored in the
/// lock's hash (field `attempt`, which redfour ignores), so an attempt sent again after its reply
/// was lost recognises its own grant (`{1, index, remaining pttl}`) instead of calling it held. The TTL is checked before any write, so a bad TTL can never
/// leave a key without expiry (redfour's INCR + HMSET ran before its PEXPIRE failed).
pub const ACQUIRE: &str = r#"
local ttl = tonumber(ARGV[1])
if not ttl or ttl < 1 or ttl ~= math.floor(ttl) then
  return redis.error_reply("ERR redfour-native: invalid ttl")
end
local pttl = redis.call("PTTL", KEYS[1])
if pttl ~= -2 then
  -- Held. By this very attempt, if it is a retry (ARGV[3]) whose first reply was lost: say so.
  if ARGV[3] == "retry" and redis.call("TYPE", KEYS[1]).ok == "hash"
      and redis.call("HGET", KEYS[1], "attempt") == ARGV[2] then
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
if ARGV[2] then
  redis.call("HSET", KEYS[1], "index", index, "attempt", ARGV[2])
else
  redis.call("HSET", KEYS[1], "index", index)
end
redis.call("PEXPIRE", KEYS[1], ttl)
return {1, index, ttl}
"#;

/// Returns `{1, "released", index}`, `{0, "conflict", holder index or -1}`, or
/// `{1, "expired", -1}` when the key is already gone. Publishes on ARGV[2] only on a real release
/// (not at all when ARGV[2] is empty: undoing a grant nobody saw); with SPUBLISH, a sharded
/// channel in the key's slot, when ARGV[3] is "sharded" (cluster mode).
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
        let call = |name: &str, body: &str| {
            let mut cmd = Cmd::new();
            cmd.arg(name).arg(body).arg(keys.len()).arg(keys).arg(&args);
            cmd
        };
        match call("EVALSHA", self.hash()).query_async(conn).await {
            Err(err) if err.kind() == redis::ErrorKind::Server(ServerErrorKind::NoScript) => {
                call("EVAL", self.source).query_async(conn).await
            }
            other => other,
        }
    }
}

pub static ACQUIRE_SCRIPT: StaticScript = StaticScript::new(ACQUIRE);
pub static RELEASE_SCRIPT: StaticScript = StaticScript::new(RELEASE);
pub static RENEW_SCRIPT: StaticScript = StaticScript::new(RENEW);
pub static COMMIT_SCRIPT: StaticScript = StaticScript::new(COMMIT);

/// One acquire attempt on `conn`: keys `key` and `counter_key`.
/// `attempt` names this attempt (see `ACQUIRE`); `retry` says it was sent before and its reply
/// lost, so a grant under the same name is ours.
pub async fn acquire(
    conn: &mut impl ConnectionLike,
    key: &str,
    counter_key: &str,
    ttl_ms: u64,
    attempt: &str,
    retry: bool,
) -> Result<Acquired> {
    let sent_at = Instant::now();
    let retry = if retry { "retry" } else { "" };
    let (success, index, ttl): (i64, i64, i64) = ACQUIRE_SCRIPT
        .run(conn, &[key, counter_key], (ttl_ms, attempt, retry))
        .await?;
    Ok(Acquired {
        success: success == 1,
        index,
        ttl,
        sent_at,
    })
}

/// Releases `key` if held under `index`, announcing it on `channel` (a sharded channel if
/// `sharded`).
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

/// A fresh attempt name: 64 random bits, so two attempts never share one.
pub fn attempt_name() -> String {
    rand::random::<u64>().to_string()
}
