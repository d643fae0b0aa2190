//! The Lua scripts, one per operation, and how they are run: `EVALSHA`, and on `NOSCRIPT` (a
//! restarted server or `SCRIPT FLUSH` empties the script cache) `EVAL`, which also loads the script.
//!
//! Replies are arrays of strings so that no number passes through Lua's doubles on the way out:
//! `{tag, instance, participant, token, acquired_at_us, metadata, pttl_ms, server_now_us}` where tag
//! is `A` (ours), `H` (held by another), or `{"N"}` (no lease / not ours), `{"Q", ms}` (quarantine).
//! Numbers going in are formatted with `%.0f`: Lua's `tostring` would write 1.7e+15.

use std::sync::OnceLock;

use fred::interfaces::LuaInterface;
use fred::prelude::{Client, FromValue};
use fred::types::scripts::Script;

use crate::error::from_fred;
use leader_core::Result;

/// Shared prologue: server time in microseconds (read in the script, so `acquired_at`,
/// `expires_at` and the token floor all come from the server's clock) and the lease's fields.
const PROLOGUE: &str = r#"
if redis.replicate_commands then redis.replicate_commands() end
local function us(x) return string.format('%.0f', x) end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local function reply(tag, f, pttl)
  return {tag, f[1], f[2], f[3], f[4], f[5], tostring(pttl), us(now)}
end
local f = redis.call('HMGET', KEYS[1], 'i', 'p', 't', 'a', 'm')
"#;

/// KEYS: lease, token counter, epoch. ARGV: instance, participant, ttl ms, metadata json,
/// quarantine ms, channel, election.
const ACQUIRE: &str = r#"
local epoch = redis.call('GET', KEYS[3])
if not epoch then
  -- First acquire this server (or this slot) has seen since its data began: quarantine.
  local q = tonumber(ARGV[5])
  redis.call('SET', KEYS[3], us(now + q * 1000))
  if q > 0 then return {'Q', ARGV[5]} end
elseif tonumber(epoch) > now then
  return {'Q', us((tonumber(epoch) - now) / 1000)}
end
if f[1] then
  if f[1] ~= ARGV[1] then return reply('H', f, redis.call('PTTL', KEYS[1])) end
  -- Ours already (a retried or manual-mode acquire): same token, fresh TTL, new metadata.
  if f[5] ~= ARGV[4] then
    redis.call('HSET', KEYS[1], 'm', ARGV[4])
    f[5] = ARGV[4]
  end
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return reply('A', f, ARGV[3])
end
-- Tokens are max(INCR, server time in µs): a counter lost with the server's data starts again
-- above every token issued before, as long as the server's clock has not gone back.
local token = redis.call('INCR', KEYS[2])
if token < now then
  token = now
  redis.call('SET', KEYS[2], us(now))
end
f = {ARGV[1], ARGV[2], us(token), us(now), ARGV[4]}
redis.call('HSET', KEYS[1], 'i', f[1], 'p', f[2], 't', f[3], 'a', f[4], 'm', f[5])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PUBLISH', ARGV[6], ARGV[7])
return reply('A', f, ARGV[3])
"#;

/// KEYS: lease. ARGV: instance, token, ttl ms.
const RENEW: &str = r#"
if f[1] ~= ARGV[1] or f[3] ~= ARGV[2] then return {'N'} end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return reply('A', f, ARGV[3])
"#;

/// KEYS: lease. ARGV: instance, token, channel, election.
const RELEASE: &str = r#"
if f[1] ~= ARGV[1] or f[3] ~= ARGV[2] then return {'N'} end
redis.call('DEL', KEYS[1])
redis.call('PUBLISH', ARGV[3], ARGV[4])
return {'A'}
"#;

/// KEYS: lease. ARGV: instance, token, metadata json, channel, election.
const UPDATE_METADATA: &str = r#"
if f[1] ~= ARGV[1] or f[3] ~= ARGV[2] then return {'N'} end
redis.call('HSET', KEYS[1], 'm', ARGV[3])
f[5] = ARGV[3]
redis.call('PUBLISH', ARGV[4], ARGV[5])
return reply('A', f, redis.call('PTTL', KEYS[1]))
"#;

/// KEYS: lease.
const READ: &str = r#"
if not f[1] then return {'N'} end
return reply('H', f, redis.call('PTTL', KEYS[1]))
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
    pub(crate) update_metadata: LuaScript,
    pub(crate) read: LuaScript,
}

impl LuaScript {
    fn new(body: &str) -> Self {
        let source = format!("{PROLOGUE}{body}");
        let sha = Script::from_lua(source.clone()).sha1().to_string();
        LuaScript { source, sha }
    }

    /// Runs the script: `EVALSHA`, and `EVAL` if the server does not know the script.
    pub(crate) async fn run<R: FromValue>(&self, client: &Client, keys: Vec<String>, args: Vec<String>) -> Result<R> {
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
        update_metadata: LuaScript::new(UPDATE_METADATA),
        read: LuaScript::new(READ),
    })
}
