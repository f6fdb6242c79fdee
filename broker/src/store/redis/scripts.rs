//! The Lua scripts that make each shard write atomic and fenced. Every script that changes a
//! registration first compares the caller's epoch with the shard's and refuses an older one.
//! They answer a status string that `Status::parse` reads.

use redis::Script;

/// Fencing preamble shared by the shard scripts: KEYS[1] is the epoch key, ARGV[1] the
/// caller's epoch.
macro_rules! fenced {
    ($body:literal) => {
        concat!(
            "local current = tonumber(redis.call('GET', KEYS[1]) or '0')\n",
            "if current > tonumber(ARGV[1]) then return 'FENCED ' .. current end\n",
            $body
        )
    };
}

/// Writes a registration hash. KEYS: epoch, registration, device index, stats, pending set,
/// seen set part, unsplit seen set (only ever emptied). ARGV: epoch, mode (`create` | `update` | `upsert`), version read, id, new state,
/// pending burst score (empty: none), last-heard score (empty: not watched), number of
/// fields to delete, those field names, then field/value pairs. The script sets `v`.
pub(super) fn put() -> Script {
    Script::new(fenced!(
        r#"
local mode, version = ARGV[2], tonumber(ARGV[3])
local exists = redis.call('EXISTS', KEYS[2]) == 1
local old_state = false
if mode == 'create' and exists then return 'EXISTS' end
if mode == 'update' then
  if not exists then return 'NOTFOUND' end
  if tonumber(redis.call('HGET', KEYS[2], 'v') or '-1') ~= version then return 'CONFLICT' end
end
if exists then old_state = redis.call('HGET', KEYS[2], 'st') end
local ndel = tonumber(ARGV[8])
if ndel > 0 then redis.call('HDEL', KEYS[2], unpack(ARGV, 9, 8 + ndel)) end
redis.call('HSET', KEYS[2], 'v', version + 1, unpack(ARGV, 9 + ndel))
redis.call('HSET', KEYS[3], ARGV[4], '')
if ARGV[6] == '' then redis.call('ZREM', KEYS[5], ARGV[4])
else redis.call('ZADD', KEYS[5], ARGV[6], ARGV[4]) end
if ARGV[7] == '' then redis.call('ZREM', KEYS[6], ARGV[4])
else redis.call('ZADD', KEYS[6], ARGV[7], ARGV[4]) end
redis.call('ZREM', KEYS[7], ARGV[4])
if old_state then redis.call('HINCRBY', KEYS[4], old_state, -1) end
redis.call('HINCRBY', KEYS[4], ARGV[5], 1)
return 'OK'
"#
    ))
}

/// Changes some fields of a registration hash whose version and state the caller knows (a
/// subscription actor's cached record). KEYS: epoch, registration, stats, pending set, seen
/// set part, unsplit seen set (a patch never changes the device index). ARGV: epoch, version read, id, old state, new
/// state, pending burst score (empty: none; `=`: unchanged), last-heard score (the same),
/// number of fields to delete, those field names, then field/value pairs.
pub(super) fn patch() -> Script {
    Script::new(fenced!(
        r#"
local stored = redis.call('HGET', KEYS[2], 'v')
if not stored then return 'NOTFOUND' end
local version = tonumber(ARGV[2])
if tonumber(stored) ~= version then return 'CONFLICT' end
local ndel = tonumber(ARGV[8])
if ndel > 0 then redis.call('HDEL', KEYS[2], unpack(ARGV, 9, 8 + ndel)) end
redis.call('HSET', KEYS[2], 'v', version + 1, unpack(ARGV, 9 + ndel))
if ARGV[6] == '' then redis.call('ZREM', KEYS[4], ARGV[3])
elseif ARGV[6] ~= '=' then redis.call('ZADD', KEYS[4], ARGV[6], ARGV[3]) end
if ARGV[7] ~= '=' then
  if ARGV[7] == '' then redis.call('ZREM', KEYS[5], ARGV[3])
  else redis.call('ZADD', KEYS[5], ARGV[7], ARGV[3]) end
  redis.call('ZREM', KEYS[6], ARGV[3])
end
if ARGV[4] ~= ARGV[5] then
  redis.call('HINCRBY', KEYS[3], ARGV[4], -1)
  redis.call('HINCRBY', KEYS[3], ARGV[5], 1)
end
return 'OK'
"#
    ))
}

/// Removes a registration hash. KEYS: epoch, registration, device index, stats, pending set,
/// seen set part, unsplit seen set.
/// ARGV: epoch, id, version read (empty: any).
pub(super) fn remove() -> Script {
    Script::new(fenced!(
        r#"
if redis.call('EXISTS', KEYS[2]) == 0 then return 'NOTFOUND' end
if ARGV[3] ~= '' and redis.call('HGET', KEYS[2], 'v') ~= ARGV[3] then return 'CONFLICT' end
local state = redis.call('HGET', KEYS[2], 'st')
redis.call('DEL', KEYS[2])
redis.call('HDEL', KEYS[3], ARGV[2])
redis.call('ZREM', KEYS[5], ARGV[2])
redis.call('ZREM', KEYS[6], ARGV[2])
redis.call('ZREM', KEYS[7], ARGV[2])
if state then redis.call('HINCRBY', KEYS[4], state, -1) end
return 'OK'
"#
    ))
}

/// Claims a subscription id for a registration, pending for ARGV[2] ms until persisted.
/// KEYS: subscription key. ARGV: id, ttl ms, stale owner to replace (empty: none).
pub(super) fn claim() -> Script {
    Script::new(
        r#"
local owner = redis.call('GET', KEYS[1])
if owner == ARGV[1] then return 'OK' end
if (not owner) or (ARGV[3] ~= '' and owner == ARGV[3]) then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 'OK'
end
if redis.call('PTTL', KEYS[1]) > 0 then return 'PENDING ' .. owner end
return 'OWNED ' .. owner
"#,
    )
}

/// Makes a pending claim permanent, if it is still ours. KEYS: subscription key. ARGV: id.
pub(super) fn persist_claim() -> Script {
    Script::new(
        r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('PERSIST', KEYS[1]) return 'OK' end
return 'NOTFOUND'
"#,
    )
}

/// Drops a claim, if it is ours. KEYS: subscription key. ARGV: id.
pub(super) fn release_claim() -> Script {
    Script::new(
        r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) return 'OK' end
return 'NOTFOUND'
"#,
    )
}

/// A script's answer.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Status {
    Ok,
    Fenced(u64),
    Exists,
    NotFound,
    Conflict,
    Pending(String),
    Owned(String),
}

impl Status {
    pub(super) fn parse(raw: &str) -> Option<Self> {
        let (word, rest) = raw.split_once(' ').unwrap_or((raw, ""));
        Some(match word {
            "OK" => Self::Ok,
            "FENCED" => Self::Fenced(rest.parse().ok()?),
            "EXISTS" => Self::Exists,
            "NOTFOUND" => Self::NotFound,
            "CONFLICT" => Self::Conflict,
            "PENDING" => Self::Pending(rest.to_owned()),
            "OWNED" => Self::Owned(rest.to_owned()),
            _ => return None,
        })
    }
}

/// Publishes a provider token unless a fresh one is there. KEYS: token key. ARGV: `<iat>
/// <jwt>`, the oldest `iat` still fresh, time to live in seconds. Answers the token kept.
pub(super) fn offer_token() -> Script {
    Script::new(
        r#"
local current = redis.call('GET', KEYS[1])
if current then
  local iat = tonumber(string.match(current, '^(%d+) '))
  if iat and iat >= tonumber(ARGV[2]) then return current end
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[3])
return ARGV[1]
"#,
    )
}

#[cfg(test)]
mod tests {
    use super::Status;

    #[test]
    fn statuses_parse() {
        assert_eq!(Status::parse("OK"), Some(Status::Ok));
        assert_eq!(Status::parse("FENCED 7"), Some(Status::Fenced(7)));
        assert_eq!(Status::parse("OWNED ab"), Some(Status::Owned("ab".into())));
        assert_eq!(Status::parse("FENCED x"), None);
        assert_eq!(Status::parse("WHAT"), None);
    }
}
