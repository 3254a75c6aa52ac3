//! The Lua scripts, static text only: every key goes in KEYS and every value (including the
//! release channel, which redfour pasted into its script source) goes in ARGV, so no namespace or
//! id can change what a script does.
//!
//! Wire format shared with redfour 1.x/2.x and ioredfour:
//! - lock: HASH `{namespace}:{id}` with field `index`, expiring after the TTL;
//! - counter: STRING `{namespace}index`, INCR on every grant (a fencing token);
//! - release: PUBLISH on `{namespace}-release` with the lock key as the payload.

use redis::aio::ConnectionLike;
use redis::{Cmd, FromRedisValue, ServerErrorKind, ToRedisArgs};
use std::sync::OnceLock;

/// Returns `{1, index, ttl}` on a grant and `{0, -1, pttl of the holder}` otherwise. The TTL is
/// checked before any write, so a bad TTL can never leave a key without expiry (redfour's INCR +
/// HMSET ran before its PEXPIRE failed).
pub const ACQUIRE: &str = r#"
local ttl = tonumber(ARGV[1])
if not ttl or ttl < 1 or ttl ~= math.floor(ttl) then
  return redis.error_reply("ERR redfour-native: invalid ttl")
end
if redis.call("EXISTS", KEYS[1]) == 1 then
  return {0, -1, redis.call("PTTL", KEYS[1])}
end
local index = redis.call("INCR", KEYS[2])
redis.call("HSET", KEYS[1], "index", index)
redis.call("PEXPIRE", KEYS[1], ttl)
return {1, index, ttl}
"#;

/// Returns `{1, "released", index}`, `{0, "conflict", holder index or -1}`, or
/// `{1, "expired", -1}` when the key is already gone. Publishes on ARGV[2] only on a real release
/// (and not at all when ARGV[2] is empty: undoing a grant nobody saw).
pub const RELEASE: &str = r#"
if redis.call("EXISTS", KEYS[1]) == 0 then
  return {1, "expired", -1}
end
local current = tonumber(redis.call("HGET", KEYS[1], "index"))
if current ~= nil and current == tonumber(ARGV[1]) then
  redis.call("DEL", KEYS[1])
  if ARGV[2] ~= "" then
    redis.call("PUBLISH", ARGV[2], KEYS[1])
  end
  return {1, "released", current}
end
return {0, "conflict", current or -1}
"#;

/// Renews (sets the TTL of) a lock still held under the given index. Returns
/// `{1, "renewed", index, ttl}`, `{0, "missing", -1, -2}` or `{0, "conflict", -1, pttl}`.
pub const RENEW: &str = r#"
local ttl = tonumber(ARGV[2])
if not ttl or ttl < 1 or ttl ~= math.floor(ttl) then
  return redis.error_reply("ERR redfour-native: invalid ttl")
end
if redis.call("EXISTS", KEYS[1]) == 0 then
  return {0, "missing", -1, -2}
end
local current = tonumber(redis.call("HGET", KEYS[1], "index"))
if current ~= nil and current == tonumber(ARGV[1]) then
  redis.call("PEXPIRE", KEYS[1], ttl)
  return {1, "renewed", current, ttl}
end
return {0, "conflict", -1, redis.call("PTTL", KEYS[1])}
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

    /// Runs the script with EVALSHA, loading it on NOSCRIPT (a restarted or flushed server) and
    /// trying once more. `args` (a value or a tuple) follow the keys.
    pub async fn run<T: FromRedisValue>(
        &self,
        conn: &mut impl ConnectionLike,
        keys: &[&str],
        args: impl ToRedisArgs,
    ) -> redis::RedisResult<T> {
        let mut cmd = Cmd::new();
        cmd.arg("EVALSHA")
            .arg(self.hash())
            .arg(keys.len())
            .arg(keys)
            .arg(args);
        match cmd.query_async(conn).await {
            Err(err) if err.kind() == redis::ErrorKind::Server(ServerErrorKind::NoScript) => {
                redis::cmd("SCRIPT")
                    .arg("LOAD")
                    .arg(self.source)
                    .exec_async(conn)
                    .await?;
                cmd.query_async(conn).await
            }
            other => other,
        }
    }
}

pub static ACQUIRE_SCRIPT: StaticScript = StaticScript::new(ACQUIRE);
pub static RELEASE_SCRIPT: StaticScript = StaticScript::new(RELEASE);
pub static RENEW_SCRIPT: StaticScript = StaticScript::new(RENEW);
pub static COMMIT_SCRIPT: StaticScript = StaticScript::new(COMMIT);
