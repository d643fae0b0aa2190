//! The Lua scripts, one per operation, and how they are run: `EVALSHA`, and on `NOSCRIPT` (a
//! restarted server or `SCRIPT FLUSH` empties the script cache) `EVAL`, which also loads the script.
//!
//! The lease is one string key, `instance \n token \n participant \n acquired_at_us \n metadata`
//!, written with `SET ... PX`: one command to write, one `GET` to
//! read, and ownership is a prefix comparison (`instance \n` for acquire, `instance \n token \n`
//! for renew, release and metadata updates). Instance and participant ids never contain a newline
//! (checked before any script runs) and the metadata, last, is JSON.
//!
//! Replies are arrays of strings so that no number passes through Lua's doubles on the way out:
//! `{tag, lease value, pttl_ms, server_now_us}` where tag is `A` (ours) or `H` (held by another);
//! `{"N"}` (no lease / not ours), `{"A"}` (released), `{"Q", ms}` (quarantine).
//! Numbers going in are formatted with `%.0f`: Lua's `tostring` would write 1.7e+15.
//!
//! These scripts run on every acquire, renew and release, so they are written for the server's
//! time: no closures, no hash fields, the fewest `redis.call`s (each one costs about a
//! microsecond in Lua's bridge; the whole acquire script costs the server a few µs).

use std::sync::OnceLock;

use fred::interfaces::LuaInterface;
use fred::prelude::{Client, FromValue, Key, Value};
use fred::types::scripts::Script;

use crate::error::from_fred;
use leader_core::Result;

/// KEYS: lease, token counter, epoch. ARGV: instance, participant, ttl ms, metadata json,
/// quarantine ms, channel, election.
const ACQUIRE: &str = r#"
local t = redis.call('TIME')
local now = t[1] * 1000000 + t[2]
local v = redis.call('GET', KEYS[1])
if v then
  local mine = ARGV[1] .. '\n'
  if string.sub(v, 1, #mine) ~= mine then
    return {'H', v, tostring(redis.call('PTTL', KEYS[1])), string.format('%.0f', now)}
  end
  -- Ours already (a retried or manual-mode acquire): same token, fresh TTL, new metadata.
  v = string.match(v, '^[^\n]*\n[^\n]*\n[^\n]*\n[^\n]*\n') .. ARGV[4]
  redis.call('SET', KEYS[1], v, 'PX', ARGV[3])
  return {'A', v, ARGV[3], string.format('%.0f', now)}
end
local last = redis.call('GET', KEYS[2])
if not last then
  -- No token counter: the first acquire of this election since the server's data began (or
  -- ever), so the quarantine marker decides. A counter is only created once the quarantine is
  -- over and it is lost with the marker, so while it exists the marker need not be read.
  local epoch = redis.call('GET', KEYS[3])
  if not epoch then
    local q = tonumber(ARGV[5])
    redis.call('SET', KEYS[3], string.format('%.0f', now + q * 1000))
    if q > 0 then return {'Q', ARGV[5]} end
  elseif tonumber(epoch) > now then
    return {'Q', string.format('%.0f', (tonumber(epoch) - now) / 1000)}
  end
  last = 0
end
-- Tokens are max(last + 1, server time in µs): a counter lost with the server's data starts again
-- above every token issued before, as long as the server's clock has not gone back.
local at = string.format('%.0f', now)
local token = at
if tonumber(last) >= now then token = string.format('%.0f', last + 1) end
redis.call('SET', KEYS[2], token)
v = ARGV[1] .. '\n' .. token .. '\n' .. ARGV[2] .. '\n' .. at .. '\n' .. ARGV[4]
redis.call('SET', KEYS[1], v, 'PX', ARGV[3])
redis.call('PUBLISH', ARGV[6], ARGV[7])
return {'A', v, ARGV[3], at}
"#;

/// KEYS: lease. ARGV: owner (`instance \n token \n`), ttl ms.
const RENEW: &str = r#"
local v = redis.call('GET', KEYS[1])
if not v or string.sub(v, 1, #ARGV[1]) ~= ARGV[1] then return {'N'} end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
local t = redis.call('TIME')
return {'A', v, ARGV[2], string.format('%.0f', t[1] * 1000000 + t[2])}
"#;

/// KEYS: lease. ARGV: owner, channel, election.
const RELEASE: &str = r#"
local v = redis.call('GET', KEYS[1])
if not v or string.sub(v, 1, #ARGV[1]) ~= ARGV[1] then return {'N'} end
redis.call('DEL', KEYS[1])
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
    pub(crate) update_metadata: LuaScript,
    pub(crate) read: LuaScript,
}

impl LuaScript {
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
        update_metadata: LuaScript::new(UPDATE_METADATA),
        read: LuaScript::new(READ),
    })
}
