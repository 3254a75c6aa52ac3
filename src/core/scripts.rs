//! The Lua scripts, static text only: every key goes in KEYS and every value (including the
//! release channel, which redfour pasted into its script source) goes in ARGV, so no namespace or
//! id can change what a script does.
//!
//! Wire format shared with redfour 1.x/2.x and ioredfour:
//! - lock: HASH `{namespace}:{id}` with field `index`, expiring after the TTL;
//! - counter: STRING `{namespace}index`, INCR on every grant (a fencing token);
//! - release: PUBLISH on `{namespace}-release` with the lock key as the payload.
//!
//! Grant on release (single-server mode, see `ACQUIRE` and `RELEASE`): a waiting process
//! queues its waiter inside the held lock's own hash (fields redfour never reads), and a release
//! hands the lock straight to the first queued waiter instead of deleting it: the waiter holds
//! the lock when the grant message arrives, with no acquire round trip and no herd. The queue
//! lives and dies with the lock key: a redfour release or an expiry deletes it, and the waiters
//! fall back to the release message and the TTL poll, as before.
//! - `qt`: the last seat number given out; `qh`: the last seat granted;
//! - `q<seat>`: `"<token> <ttl>"` of a queued waiter; `w<token>`: that waiter's seat;
//! - `attempt`: the token of the waiter the lock was granted to; `from`: the index released by
//!   the grant (so a release retried after a lost reply still reads "released");
//! - grant message: on the same `{namespace}-release` channel, payload
//!   `{namespace}\0<token> <index> <ttl> <key>`, which can never equal a lock key
//!   `{namespace}:{id}` (redfour ignores messages that are not the key it waits for). The waiter
//!   named by the token holds the lock; other waiters on the key learn the new holder's TTL, so
//!   they poll when it ends if the grantee never releases (it died while waiting).

use crate::core::error::Result;
use crate::core::lock::{Acquired, ReleaseResult, Released, RenewResult, Renewed};
use redis::aio::ConnectionLike;
use redis::{Cmd, FromRedisValue, ServerErrorKind, ToRedisArgs, Value};
use std::sync::OnceLock;
use tokio::time::Instant;

/// One acquire attempt: KEYS[1] the lock, KEYS[2] the counter; ARGV[1] the TTL, ARGV[2] the
/// attempt's name (stored in the lock's hash as `attempt`, which redfour ignores), ARGV[3] the
/// mode. Returns `{1, index, ttl, 0}` when the lock was free and is now taken, and
/// `{0, -1, pttl of the holder, seated}` when it is held (PTTL alone tells both: -2 is "no such
/// key"). The TTL is checked before any write, so a bad TTL can never leave a key without expiry
/// (redfour's INCR + HMSET ran before its PEXPIRE failed). Modes, which only matter when the lock
/// is held:
/// - "" (a fresh attempt): nothing more;
/// - "retry" (sent again after its reply was lost), "join", "leave" (a waiting head, named by its
///   token): a lock held under this very name is ours, `{1, index, remaining pttl, 0}`;
/// - "join": otherwise take a seat in the holder's queue unless already seated (seated = 1);
/// - "leave": otherwise give the seat up.
pub const ACQUIRE: &str = r#"
local ttl = tonumber(ARGV[1])
if not ttl or ttl < 1 or ttl ~= math.floor(ttl) then
  return redis.error_reply("ERR redfour-native: invalid ttl")
end
local pttl = redis.call("PTTL", KEYS[1])
if pttl ~= -2 then
  local mode = ARGV[3]
  if mode == "" then
    return {0, -1, pttl, 0}
  end
  local holder = redis.pcall("HGET", KEYS[1], "attempt")
  if type(holder) == "table" then
    -- Not a hash: not a lock of ours or redfour's; it is held, and nobody queues in it.
    return {0, -1, pttl, 0}
  end
  if holder == ARGV[2] then
    return {1, tonumber(redis.call("HGET", KEYS[1], "index")), pttl, 0}
  end
  if mode == "retry" then
    return {0, -1, pttl, 0}
  end
  local seat = redis.call("HGET", KEYS[1], "w" .. ARGV[2])
  if mode == "join" then
    if not seat then
      seat = (tonumber(redis.call("HGET", KEYS[1], "qt")) or 0) + 1
      redis.call("HSET", KEYS[1], "qt", seat, "q" .. seat, ARGV[2] .. " " .. ttl, "w" .. ARGV[2], seat)
    end
    return {0, -1, pttl, 1}
  end
  if seat then
    redis.pcall("HDEL", KEYS[1], "q" .. seat, "w" .. ARGV[2])
  end
  return {0, -1, pttl, 0}
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
return {1, index, ttl, 0}
"#;

/// Returns `{1, "released", index}`, `{0, "conflict", holder index or -1}`, or
/// `{1, "expired", -1}` when the key is already gone. Publishes on ARGV[2] only on a real release
/// (not at all when ARGV[2] is empty: undoing a grant nobody saw); with SPUBLISH, a sharded
/// channel in the key's slot, when ARGV[3] is "sharded" (cluster mode).
///
/// With ARGV[3] "grant" (KEYS[2] the counter, ARGV[4] the grant message prefix
/// `{namespace}\0`): if a waiter is queued in the lock's hash, the lock is granted to it (new
/// index from the counter, its TTL, `attempt` = its token) and the grant is published instead of
/// the release. A user lacking HDEL makes the grant step fail harmlessly (pcall, before any
/// write): the lock is then released the classic way.
pub const RELEASE: &str = r#"
local current = tonumber(redis.call("HGET", KEYS[1], "index"))
if current == nil then
  if redis.call("EXISTS", KEYS[1]) == 0 then
    return {1, "expired", -1}
  end
  return {0, "conflict", -1}
end
if current ~= tonumber(ARGV[1]) and ARGV[3] == "grant"
    and tonumber(redis.call("HGET", KEYS[1], "from")) == tonumber(ARGV[1]) then
  -- A retry whose first try granted the lock onwards: that was our release.
  return {1, "released", tonumber(ARGV[1])}
end
if current == tonumber(ARGV[1]) then
  if ARGV[3] == "grant" then
    -- Nobody ever seated (the common case): one HGET, then the classic release below.
    local tail = tonumber(redis.call("HGET", KEYS[1], "qt")) or 0
    local seat = tail > 0 and (tonumber(redis.call("HGET", KEYS[1], "qh")) or 0) or 0
    while seat < tail do
      seat = seat + 1
      local entry = redis.call("HGET", KEYS[1], "q" .. seat)
      local token, ttl
      if entry then
        token, ttl = string.match(entry, "^(%d+) (%d+)$")
      end
      if token then
        local removed = redis.pcall("HDEL", KEYS[1], "q" .. seat, "w" .. token)
        if type(removed) == "table" and removed.err then
          break
        end
        local index = redis.call("INCR", KEYS[2])
        redis.call("HSET", KEYS[1], "index", index, "attempt", token, "qh", seat, "from", current)
        redis.call("PEXPIRE", KEYS[1], tonumber(ttl))
        redis.call("PUBLISH", ARGV[2], ARGV[4] .. token .. " " .. index .. " " .. ttl .. " " .. KEYS[1])
        return {1, "released", current}
      end
    end
  end
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
        let is_noscript = |reply: &redis::RedisResult<Value>| match reply {
            Ok(Value::ServerError(err)) => err.kind() == Some(ServerErrorKind::NoScript),
            Err(err) => err.kind() == redis::ErrorKind::Server(ServerErrorKind::NoScript),
            Ok(_) => false,
        };
        let reply = conn.req_packed_command(&call("EVALSHA", self.hash())).await;
        if is_noscript(&reply) {
            return conn.req_packed_command(&call("EVAL", self.source)).await;
        }
        reply
    }
}

pub static ACQUIRE_SCRIPT: StaticScript = StaticScript::new(ACQUIRE);
pub static RELEASE_SCRIPT: StaticScript = StaticScript::new(RELEASE);
pub static RENEW_SCRIPT: StaticScript = StaticScript::new(RENEW);
pub static COMMIT_SCRIPT: StaticScript = StaticScript::new(COMMIT);

/// What a waiting head asks of an attempt besides the lock itself (see `ACQUIRE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seat {
    /// Take a seat in the holder's queue if the lock is held.
    Join,
    /// Give the seat up (the wait is over) if the lock is held.
    Leave,
}

/// One acquire attempt on `conn`: keys `key` and `counter_key`, named `name` (see `ACQUIRE`).
/// `seat`: a waiting head's seat request, `name` being its token; without one, `retry` says the
/// attempt was sent before and its reply lost, so a grant under the same name is ours. Returns
/// the attempt and whether the waiter now holds a seat in the lock's queue.
pub async fn acquire(
    conn: &mut impl ConnectionLike,
    key: &str,
    counter_key: &str,
    ttl_ms: u64,
    name: &str,
    seat: Option<Seat>,
    retry: bool,
) -> Result<(Acquired, bool)> {
    let sent_at = Instant::now();
    let mode = match seat {
        Some(Seat::Join) => "join",
        Some(Seat::Leave) => "leave",
        None if retry => "retry",
        None => "",
    };
    let (success, index, ttl, seated): (i64, i64, i64, i64) = ACQUIRE_SCRIPT
        .run(conn, &[key, counter_key], (ttl_ms, name, mode))
        .await?;
    let got = Acquired {
        success: success == 1,
        index,
        ttl,
        sent_at,
    };
    Ok((got, seated == 1))
}

/// How a release announces itself.
#[derive(Debug, Clone, Copy)]
pub enum Announce<'a> {
    /// PUBLISH the key on the channel (redfour's way).
    Publish,
    /// SPUBLISH the key on a sharded channel (cluster mode).
    Sharded,
    /// Grant the lock to the first waiter queued in it, if any (single-server mode); otherwise
    /// PUBLISH the key. `counter_key` gives the new index, `prefix` starts the grant message.
    Grant {
        counter_key: &'a str,
        prefix: &'a str,
    },
}

/// Releases `key` if held under `index`, announcing it on `channel` as `announce` says.
pub async fn release(
    conn: &mut impl ConnectionLike,
    key: &str,
    index: i64,
    channel: &str,
    announce: Announce<'_>,
) -> Result<Released> {
    let (mode, counter_key, prefix) = match announce {
        Announce::Publish => ("", None, ""),
        Announce::Sharded => ("sharded", None, ""),
        Announce::Grant {
            counter_key,
            prefix,
        } => ("grant", Some(counter_key), prefix),
    };
    let keys: &[&str] = match counter_key {
        Some(counter_key) => &[key, counter_key],
        None => &[key],
    };
    let (success, result, current): (i64, String, i64) = RELEASE_SCRIPT
        .run(conn, keys, (index, channel, mode, prefix))
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
