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

/// Creates a registration hash. KEYS: epoch, registration, stats, pending set, seen set
/// part, device index part. ARGV: epoch, id, stat name, pending score (empty: none),
/// last-heard score (empty: not watched), the device's field in the index, then field/value
/// pairs. The script sets `v` to 1.
pub(super) fn create() -> Script {
    Script::new(fenced!(
        device_index!(),
        r#"
if redis.call('EXISTS', KEYS[2]) == 1 then return 'EXISTS' end
redis.call('HSET', KEYS[2], 'v', 1, unpack(ARGV, 7))
index_add(KEYS[6], ARGV[6], ARGV[2])
if ARGV[4] ~= '' then redis.call('ZADD', KEYS[4], ARGV[4], ARGV[2]) end
if ARGV[5] ~= '' then redis.call('ZADD', KEYS[5], ARGV[5], ARGV[2]) end
redis.call('HINCRBY', KEYS[3], ARGV[3], 1)
return 'OK'
"#
    ))
}

/// Changes the fields of a registration hash whose version and content the caller knows
/// (its writer's copy). KEYS: epoch, registration, stats, pending set, seen set part, then —
/// only when the device token changes (within the shard) — the new and the old token's
/// device index parts. ARGV: epoch, id, version read, old stat, new stat, pending score
/// (empty: none; `=`: unchanged), last-heard score (the same), the new and the old token's
/// fields in the device index (empty: unchanged), number of fields to delete, those field
/// names, then field/value pairs.
pub(super) fn patch() -> Script {
    Script::new(fenced!(
        device_index!(),
        r#"
local stored = redis.call('HGET', KEYS[2], 'v')
if not stored then return 'NOTFOUND' end
local version = tonumber(ARGV[3])
if tonumber(stored) ~= version then return 'CONFLICT' end
local ndel = tonumber(ARGV[10])
if ndel > 0 then redis.call('HDEL', KEYS[2], unpack(ARGV, 11, 10 + ndel)) end
redis.call('HSET', KEYS[2], 'v', version + 1, unpack(ARGV, 11 + ndel))
if ARGV[8] ~= '' then
  index_remove(KEYS[7], ARGV[9], ARGV[2])
  index_add(KEYS[6], ARGV[8], ARGV[2])
end
if ARGV[6] == '' then redis.call('ZREM', KEYS[4], ARGV[2])
elseif ARGV[6] ~= '=' then redis.call('ZADD', KEYS[4], ARGV[6], ARGV[2]) end
if ARGV[7] == '' then redis.call('ZREM', KEYS[5], ARGV[2])
elseif ARGV[7] ~= '=' then redis.call('ZADD', KEYS[5], ARGV[7], ARGV[2]) end
if ARGV[4] ~= ARGV[5] then
  redis.call('HINCRBY', KEYS[3], ARGV[4], -1)
  redis.call('HINCRBY', KEYS[3], ARGV[5], 1)
end
return 'OK'
"#
    ))
}

/// Writes the copy of a registration moving into the shard, replacing the copy its writer
/// read there (none, or an older one). KEYS: epoch, registration, stats, pending set, seen
/// set part, the device index part of the new copy, then — when an older copy is replaced —
/// its device index part. ARGV: epoch, id, version read (empty: no copy), version to write,
/// the replaced copy's stat (empty: none), the new stat, pending score (empty: none),
/// last-heard score (empty: not watched), the new copy's device field, the replaced copy's
/// device field (empty: none), then field/value pairs. Answers `EXISTS` if the shard holds
/// this version or a newer one, `GONE` if it holds the registration's tombstone.
pub(super) fn adopt() -> Script {
    Script::new(fenced!(
        device_index!(),
        r#"
local stored = redis.call('HGET', KEYS[2], 'v')
local version = tonumber(ARGV[4])
if redis.call('HEXISTS', KEYS[2], 'gone') == 1 then return 'GONE' end
if stored and tonumber(stored) >= version then return 'EXISTS' end
if (stored or '') ~= ARGV[3] then return 'CONFLICT' end
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[2], 'v', version, unpack(ARGV, 11))
if ARGV[10] ~= '' then index_remove(KEYS[7], ARGV[10], ARGV[2]) end
index_add(KEYS[6], ARGV[9], ARGV[2])
if ARGV[7] == '' then redis.call('ZREM', KEYS[4], ARGV[2])
else redis.call('ZADD', KEYS[4], ARGV[7], ARGV[2]) end
if ARGV[8] == '' then redis.call('ZREM', KEYS[5], ARGV[2])
else redis.call('ZADD', KEYS[5], ARGV[8], ARGV[2]) end
if ARGV[5] ~= '' then redis.call('HINCRBY', KEYS[3], ARGV[5], -1) end
redis.call('HINCRBY', KEYS[3], ARGV[6], 1)
return 'OK'
"#
    ))
}

/// Removes a registration hash at the version its writer knows — or, for a deleted
/// registration, replaces it with a tombstone (`v`, `gone`) expiring after ARGV[6] ms.
/// KEYS: as `create`'s. ARGV: epoch, id, version read, its stat, the device's field in the
/// index, the tombstone's time to live (empty: no tombstone).
pub(super) fn remove() -> Script {
    Script::new(fenced!(
        device_index!(),
        r#"
local stored = redis.call('HGET', KEYS[2], 'v')
if not stored or redis.call('HEXISTS', KEYS[2], 'gone') == 1 then return 'NOTFOUND' end
if stored ~= ARGV[3] then return 'CONFLICT' end
redis.call('DEL', KEYS[2])
if ARGV[6] ~= '' then
  redis.call('HSET', KEYS[2], 'v', tonumber(stored) + 1, 'gone', '1')
  redis.call('PEXPIRE', KEYS[2], ARGV[6])
end
index_remove(KEYS[6], ARGV[5], ARGV[2])
redis.call('ZREM', KEYS[4], ARGV[2])
redis.call('ZREM', KEYS[5], ARGV[2])
redis.call('HINCRBY', KEYS[3], ARGV[4], -1)
return 'OK'
"#
    ))
}

/// Points a registration's location at a shard from a version on, unless it already points
/// somewhere from a version as large. KEYS: the location key. ARGV: shard, version.
pub(super) fn locate() -> Script {
    Script::new(
        r#"
local current = redis.call('GET', KEYS[1])
if current then
  local at = tonumber(string.match(current, ' (%d+)$'))
  if at and at >= tonumber(ARGV[2]) then return 'OLDER' end
end
redis.call('SET', KEYS[1], ARGV[1] .. ' ' .. ARGV[2])
return 'OK'
"#,
    )
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
    /// A location already recorded for a version as large.
    Older,
    /// The registration's tombstone.
    Gone,
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
            "OLDER" => Self::Older,
            "GONE" => Self::Gone,
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
