//! The Lua scripts that make each shard write atomic and fenced. Every script that changes a
//! registration first compares the caller's epoch with the shard's and refuses an older one.
//! They answer a status string that `Status::parse` reads.

use redis::Script;

/// Fencing preamble shared by the shard scripts: KEYS[1] is the epoch key, ARGV[1] the
/// caller's epoch.
macro_rules! fenced {
    ($($body:expr),+) => {
        concat!(
            "local current = tonumber(redis.call('GET', KEYS[1]) or '0')\n",
            "if current > tonumber(ARGV[1]) then return 'FENCED ' .. current end\n",
            $($body),+
        )
    };
}

/// Adds and removes a registration id in a device's entry of a device index part: the ids
/// separated by spaces.
macro_rules! device_index {
    () => {
        r#"
local function index_add(key, field, id)
  local ids = redis.call('HGET', key, field)
  if not ids then redis.call('HSET', key, field, id)
  elseif not string.find(' ' .. ids .. ' ', ' ' .. id .. ' ', 1, true) then
    redis.call('HSET', key, field, ids .. ' ' .. id)
  end
end
local function index_remove(key, field, id)
  local ids = redis.call('HGET', key, field)
  if not ids then return end
  local kept = {}
  for member in string.gmatch(ids, '%S+') do
    if member ~= id then kept[#kept + 1] = member end
  end
  if #kept == 0 then redis.call('HDEL', key, field)
  else redis.call('HSET', key, field, table.concat(kept, ' ')) end
end
"#
    };
}

/// Writes a registration hash. KEYS: epoch, registration, device index part, stats, pending
/// set, seen set part, unsplit seen set, the device's own hash of earlier versions (both only
/// ever emptied). ARGV: epoch, mode (`create` | `update` | `upsert`), version read, id, new
/// state, pending burst score (empty: none), last-heard score (empty: not watched), the
/// device's field in the index, number of fields to delete, those field names, then
/// field/value pairs. The script sets `v`.
pub(super) fn put() -> Script {
    Script::new(fenced!(
        device_index!(),
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
local ndel = tonumber(ARGV[9])
if ndel > 0 then redis.call('HDEL', KEYS[2], unpack(ARGV, 10, 9 + ndel)) end
redis.call('HSET', KEYS[2], 'v', version + 1, unpack(ARGV, 10 + ndel))
index_add(KEYS[3], ARGV[8], ARGV[4])
redis.call('HDEL', KEYS[8], ARGV[4])
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

/// Removes a registration hash. KEYS: as `put`'s. ARGV: epoch, id, version read (empty:
/// any), the device's field in the index.
pub(super) fn remove() -> Script {
    Script::new(fenced!(
        device_index!(),
        r#"
if redis.call('EXISTS', KEYS[2]) == 0 then return 'NOTFOUND' end
if ARGV[3] ~= '' and redis.call('HGET', KEYS[2], 'v') ~= ARGV[3] then return 'CONFLICT' end
local state = redis.call('HGET', KEYS[2], 'st')
redis.call('DEL', KEYS[2])
index_remove(KEYS[3], ARGV[4], ARGV[2])
redis.call('HDEL', KEYS[8], ARGV[2])
redis.call('ZREM', KEYS[5], ARGV[2])
redis.call('ZREM', KEYS[6], ARGV[2])
redis.call('ZREM', KEYS[7], ARGV[2])
if state then redis.call('HINCRBY', KEYS[4], state, -1) end
return 'OK'
"#
    ))
}

/// Claims a subscription id for a registration, pending for ARGV[3] ms until persisted.
/// KEYS: the subscription's bucket, its claim key. ARGV: its field in the bucket, id, ttl ms,
/// stale owner to replace (empty: none).
pub(super) fn claim() -> Script {
    Script::new(
        r#"
local owner = redis.call('HGET', KEYS[1], ARGV[1])
if owner == ARGV[2] then return 'OK' end
local claimant = redis.call('GET', KEYS[2])
if claimant == ARGV[2] then
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
  return 'OK'
end
if claimant then return 'PENDING ' .. claimant end
if owner and owner ~= ARGV[4] then return 'OWNED ' .. owner end
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
return 'OK'
"#,
    )
}

/// Makes a pending claim the subscription's binding, if it is still ours. KEYS and ARGV: as
/// `release_claim`'s.
pub(super) fn persist_claim() -> Script {
    Script::new(
        r#"
if redis.call('GET', KEYS[2]) == ARGV[2] then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  redis.call('DEL', KEYS[2])
  return 'OK'
end
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then return 'OK' end
return 'NOTFOUND'
"#,
    )
}

/// Drops a registration's binding of a subscription and its pending claim, those that are
/// its. KEYS: the subscription's bucket, its claim key. ARGV: its field in the bucket, id.
pub(super) fn release_claim() -> Script {
    Script::new(
        r#"
local released = 'NOTFOUND'
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  redis.call('HDEL', KEYS[1], ARGV[1])
  released = 'OK'
end
if redis.call('GET', KEYS[2]) == ARGV[2] then
  redis.call('DEL', KEYS[2])
  released = 'OK'
end
return released
"#,
    )
}

/// Drops a subscription's own key as earlier versions wrote it, if it names ARGV[1]. KEYS:
/// that key.
pub(super) fn release_unsplit_claim() -> Script {
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
