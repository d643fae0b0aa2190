//! The Lua scripts, one per operation, and how they are run: `EVALSHA`, and on `NOSCRIPT` (a
//! restarted server or `SCRIPT FLUSH` empties the script cache) `EVAL`, which also loads the script.
//!
//! The lease is one string key, `instance \n token \n participant \n acquired_at_us \n metadata`,
//! written with `SET ... PX`: one command to write, one `GET` to read, and ownership is a prefix
//! comparison (`instance \n` for acquire, `instance \n token \n` for renew, release and metadata
//! updates). Instance and participant ids never contain a newline (checked before any script runs)
//! and the metadata, last, is JSON.
//!
//! The election's record `P:{E}:token` is `last_token \n run_id \n ends_us`, never expires, and
//! says three things the lease key cannot:
//! - the last token issued (tokens are `max(last + 1, TIME µs)`);
//! - which server life wrote it: the `run_id` of the primary (`INFO server`), new for every
//!   process start. A record from another life (a restart from an RDB snapshot or an AOF, a
//!   replica promoted by a failover) means this server's data may miss the latest leases, so the
//!   election's lease from then is void and nobody is elected until one lease after this server's
//!   start (or, for a promoted replica, after the first script that saw it as primary; `P:epoch`
//!   keeps that instant per key prefix, per slot on Cluster);
//! - when the last lease ends (`0` once released). A lease key gone before then was evicted or
//!   deleted by hand, and nobody is elected until then.
//!
//! Acquire and renew carry a deadline in server time (the caller's `operation_timeout` after the
//! call was sent, see `clock`): a command that reaches the server later (a reconnect replay, a
//! retry, a TCP stream that stalled and resumed) changes nothing and answers `L`.
//!
//! Replies are arrays of strings so that no number passes through Lua's doubles on the way out:
//! `{tag, lease value, pttl_ms, server_now_us}` where tag is `A` (ours) or `H` (held by another);
//! `{"N"[, now]}` (no lease / not ours), `{"A"}` (released), `{"L", now}` (too late),
//! `{"Q", now, ms, why, since_us}` (nobody is elected for `ms` more; why is `start`, `promotion`
//! or `gone`), `{"P", now, policy}` (an `allkeys-*` eviction policy may have evicted the record).
//! Numbers going in are formatted with `%.0f`: Lua's `tostring` would write 1.7e+15.
//!
//! These scripts run on every acquire, renew and release, so they are written for the server's
//! time: no closures, no hash fields, the fewest `redis.call`s. `INFO server` (a few µs) is read
//! only on the paths that may hand out or keep a lease; `INFO replication` and `INFO memory` only
//! when the record is not from this server's life.

use std::sync::OnceLock;

use fred::interfaces::LuaInterface;
use fred::prelude::{Client, FromValue, Key, Value};
use fred::types::scripts::Script;

use crate::error::from_fred;
use leader_core::Result;

/// KEYS: lease, record (`P:{E}:token`), epoch. ARGV: instance, participant, ttl ms, metadata
/// json, wait ms (after the server's start or promotion), channel, election, deadline µs (0: none).
const ACQUIRE: &str = r#"
local t = redis.call('TIME')
local now = t[1] * 1000000 + t[2]
local at = string.format('%.0f', now)
local deadline = tonumber(ARGV[8])
if deadline > 0 and now > deadline then return {'L', at} end
local v = redis.call('GET', KEYS[1])
local mine = ARGV[1] .. '\n'
if v and string.sub(v, 1, #mine) ~= mine then
  return {'H', v, tostring(redis.call('PTTL', KEYS[1])), at}
end
local info = redis.call('INFO', 'server')
local rec = redis.call('GET', KEYS[2])
local last, life, ends = 0, nil, 0
if rec then
  local l, r, e = string.match(rec, '^(%d+)\n(%x*)\n(%d+)$')
  if l then last, life, ends = tonumber(l), r, tonumber(e) else last = tonumber(rec) or 0 end
end
-- run_ids are 40 hex digits; a plain find is the cheap way to compare (no pattern, no capture).
local rid = life
if not life or #life ~= 40 or not string.find(info, '\nrun_id:' .. life, 1, true) then
  rid = string.match(info, '\nrun_id:(%x+)')
  if not rid then return redis.error_reply('leader: INFO server shows no run_id') end
  -- The record is from another server life, or missing (a new election, or lost with the data).
  if not rec then
    local policy = string.match(redis.call('INFO', 'memory'), 'maxmemory_policy:(%S+)')
    if policy and string.sub(policy, 1, 8) == 'allkeys-' then return {'P', at, policy} end
  end
  local wait = tonumber(ARGV[5])
  if wait > 0 then
    local since, why
    if string.match(redis.call('INFO', 'replication'), 'second_repl_offset:(%-?%d+)') == '-1' then
      -- Primary since its start: its data is from before then.
      why = 'start'
      since = (t[1] - tonumber(string.match(info, 'uptime_in_seconds:(%d+)')) + 1) * 1000000
    else
      -- A promoted replica: count from the first script that saw it as primary.
      why = 'promotion'
      local e = redis.call('GET', KEYS[3])
      local er, es
      if e then er, es = string.match(e, '^(%x+)\n(%d+)$') end
      if er == rid then since = tonumber(es) else
        since = now
        redis.call('SET', KEYS[3], rid .. '\n' .. at)
      end
    end
    local open = since + wait * 1000
    if ends > open then open = ends end
    if now < open then
      if v then redis.call('DEL', KEYS[1]) end
      return {'Q', at, string.format('%.0f', math.ceil((open - now) / 1000)), why, string.format('%.0f', since)}
    end
  end
  v = nil
elseif not v and ends > now + 2000 then
  -- The lease key went before the lease's end: evicted, or deleted by hand.
  return {'Q', at, string.format('%.0f', math.ceil((ends - now) / 1000)), 'gone', string.format('%.0f', ends)}
end
local nends = string.format('%.0f', now + ARGV[3] * 1000)
if v then
  -- Ours already (a retried or manual-mode acquire): same token, fresh TTL, new metadata.
  v = string.match(v, '^[^\n]*\n[^\n]*\n[^\n]*\n[^\n]*\n') .. ARGV[4]
  redis.call('SET', KEYS[1], v, 'PX', ARGV[3])
  redis.call('SET', KEYS[2], string.format('%.0f', last) .. '\n' .. rid .. '\n' .. nends)
  return {'A', v, ARGV[3], at}
end
-- Tokens are max(last + 1, server time in µs): a record lost with the server's data starts again
-- above every token issued before, as long as the server's clock has not gone back.
local token = at
if last >= now then token = string.format('%.0f', last + 1) end
redis.call('SET', KEYS[2], token .. '\n' .. rid .. '\n' .. nends)
v = ARGV[1] .. '\n' .. token .. '\n' .. ARGV[2] .. '\n' .. at .. '\n' .. ARGV[4]
redis.call('SET', KEYS[1], v, 'PX', ARGV[3])
redis.call('PUBLISH', ARGV[6], ARGV[7])
return {'A', v, ARGV[3], at}
"#;

/// KEYS: lease, record. ARGV: owner (`instance \n token \n`), ttl ms, deadline µs (0: none).
const RENEW: &str = r#"
local t = redis.call('TIME')
local now = t[1] * 1000000 + t[2]
local at = string.format('%.0f', now)
local deadline = tonumber(ARGV[3])
if deadline > 0 and now > deadline then return {'L', at} end
local v = redis.call('GET', KEYS[1])
if not v or string.sub(v, 1, #ARGV[1]) ~= ARGV[1] then return {'N', at} end
local last, life = string.match(redis.call('GET', KEYS[2]) or '', '^(%d+)\n(%x*)\n')
if not life or #life ~= 40 or not string.find(redis.call('INFO', 'server'), '\nrun_id:' .. life, 1, true) then
  -- A lease from another server life (restored from disk, or replicated before a failover): void.
  redis.call('DEL', KEYS[1])
  return {'N', at}
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('SET', KEYS[2], last .. '\n' .. life .. '\n' .. string.format('%.0f', now + ARGV[2] * 1000))
return {'A', v, ARGV[2], at}
"#;

/// The renew script over many elections (standalone and Sentinel: every key on one server).
/// KEYS: lease and record of each election, in pairs. ARGV: deadline µs (0: none), then owner and
/// ttl ms of each election. The reply: one renew reply per election, in order, or `{{'L', now}}`
/// for the whole batch when it came too late. `INFO server` is read once, and only if some lease
/// is still ours.
const RENEW_BATCH: &str = r#"
local t = redis.call('TIME')
local now = t[1] * 1000000 + t[2]
local at = string.format('%.0f', now)
local deadline = tonumber(ARGV[1])
if deadline > 0 and now > deadline then return {{'L', at}} end
local info
local out = {}
for i = 1, #KEYS / 2 do
  local lease, record, own, ttl = KEYS[2 * i - 1], KEYS[2 * i], ARGV[2 * i], ARGV[2 * i + 1]
  local v = redis.call('GET', lease)
  if not v or string.sub(v, 1, #own) ~= own then
    out[i] = {'N', at}
  else
    local last, life = string.match(redis.call('GET', record) or '', '^(%d+)\n(%x*)\n')
    if not info then info = redis.call('INFO', 'server') end
    if not life or #life ~= 40 or not string.find(info, '\nrun_id:' .. life, 1, true) then
      redis.call('DEL', lease)
      out[i] = {'N', at}
    else
      redis.call('PEXPIRE', lease, ttl)
      redis.call('SET', record, last .. '\n' .. life .. '\n' .. string.format('%.0f', now + ttl * 1000))
      out[i] = {'A', v, ttl, at}
    end
  end
end
return out
"#;

/// The release script over many elections. KEYS: lease and record of each election, in pairs.
/// ARGV: channel, then owner and election of each. The reply: `A` or `N` per election, in order.
const RELEASE_BATCH: &str = r#"
local out = {}
for i = 1, #KEYS / 2 do
  local lease, record, own = KEYS[2 * i - 1], KEYS[2 * i], ARGV[2 * i]
  local v = redis.call('GET', lease)
  if not v or string.sub(v, 1, #own) ~= own then
    out[i] = 'N'
  else
    redis.call('DEL', lease)
    local last, life = string.match(redis.call('GET', record) or '', '^(%d+)\n(%x*)\n')
    if last then redis.call('SET', record, last .. '\n' .. life .. '\n0') end
    redis.call('PUBLISH', ARGV[1], ARGV[2 * i + 1])
    out[i] = 'A'
  end
end
return out
"#;

/// KEYS: lease, record. ARGV: owner, channel, election.
const RELEASE: &str = r#"
local v = redis.call('GET', KEYS[1])
if not v or string.sub(v, 1, #ARGV[1]) ~= ARGV[1] then return {'N'} end
redis.call('DEL', KEYS[1])
local last, life = string.match(redis.call('GET', KEYS[2]) or '', '^(%d+)\n(%x*)\n')
if last then redis.call('SET', KEYS[2], last .. '\n' .. life .. '\n0') end
redis.call('PUBLISH', ARGV[2], ARGV[3])
return {'A'}
"#;

/// KEYS: lease. ARGV: owner, metadata json, channel, election.
const UPDATE_METADATA: &str = r#"
local v = redis.call('GET', KEYS[1])
if not v or string.sub(v, 1, #ARGV[1]) ~= ARGV[1] then return {'N'} end
v = string.match(v, '^[^\n]*\n[^\n]*\n[^\n]*\n[^\n]*\n') .. ARGV[2]
redis.call('SET', KEYS[1], v, 'KEEPTTL')
redis.call('PUBLISH', ARGV[3], ARGV[4])
local t = redis.call('TIME')
return {'A', v, tostring(redis.call('PTTL', KEYS[1])), string.format('%.0f', t[1] * 1000000 + t[2])}
"#;

/// KEYS: lease.
const READ: &str = r#"
local v = redis.call('GET', KEYS[1])
if not v then return {'N'} end
local t = redis.call('TIME')
return {'H', v, tostring(redis.call('PTTL', KEYS[1])), string.format('%.0f', t[1] * 1000000 + t[2])}
"#;

/// One script: its source and SHA1.
pub(crate) struct LuaScript {
    source: String,
    sha: String,
}

/// The scripts of this crate.
pub(crate) struct Scripts {
    pub(crate) acquire: LuaScript,
    pub(crate) renew: LuaScript,
    pub(crate) release: LuaScript,
    pub(crate) renew_batch: LuaScript,
    pub(crate) release_batch: LuaScript,
    pub(crate) update_metadata: LuaScript,
    pub(crate) read: LuaScript,
}

impl LuaScript {
    /// The script's SHA1, for `EVALSHA` (in a pipeline, where `run` cannot be used).
    pub(crate) fn sha(&self) -> &str {
        &self.sha
    }

    fn new(body: &str) -> Self {
        let source = body.to_owned();
        let sha = Script::from_lua(body).sha1().to_string();
        LuaScript { source, sha }
    }

    /// Runs the script: `EVALSHA`, and `EVAL` if the server does not know the script.
    pub(crate) async fn run<R: FromValue>(&self, client: &Client, keys: Vec<String>, args: Vec<String>) -> Result<R> {
        // Moved into shared byte buffers once, so the copies kept for the `NOSCRIPT` retry only
        // bump reference counts.
        let keys: Vec<Key> = keys.into_iter().map(Key::from).collect();
        let args: Vec<Value> = args.into_iter().map(Value::from).collect();
        match client.evalsha::<R, _, _, _>(self.sha.as_str(), keys.clone(), args.clone()).await {
            Err(e) if e.details().starts_with("NOSCRIPT") => {
                tracing::debug!("script cache empty (server restart or SCRIPT FLUSH): EVAL");
                client.eval(self.source.as_str(), keys, args).await.map_err(from_fred)
            }
            other => other.map_err(from_fred),
        }
    }
}

/// The scripts, hashed once per process.
pub(crate) fn scripts() -> &'static Scripts {
    static SCRIPTS: OnceLock<Scripts> = OnceLock::new();
    SCRIPTS.get_or_init(|| Scripts {
        acquire: LuaScript::new(ACQUIRE),
        renew: LuaScript::new(RENEW),
        release: LuaScript::new(RELEASE),
        renew_batch: LuaScript::new(RENEW_BATCH),
        release_batch: LuaScript::new(RELEASE_BATCH),
        update_metadata: LuaScript::new(UPDATE_METADATA),
        read: LuaScript::new(READ),
    })
}
