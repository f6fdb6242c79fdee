//! The cluster's tables in Redis: the member rows (one hash, stamped with Redis's clock) and
//! the shard leases (one key per shard, in the shard's hash slot beside its epoch).
//!
//! A lease key holds `<holder> <epoch>` and expires by itself (`PX`). Acquiring a free lease
//! increments the shard's epoch in the same script, so every owner change raises the epoch
//! that the shard's writes are checked against.

use std::time::Duration;

use async_trait::async_trait;
use herald_cluster::{
    Claim, Epoch, LeaseTable, Member, MemberTable, MemberView, ShardId, TableError,
};
use redis::Script;

use super::RedisStore;

/// How long a dead node's row stays readable (in `ClusterStatus`) before a heartbeat of
/// another node forgets it.
const FORGET_DEAD_AFTER: Duration = Duration::from_secs(3_600);

/// Writes a member row (ARGV[1] the node id, ARGV[2] the row without its time; empty id:
/// only read) stamped with Redis's clock, forgets rows silent for ARGV[3] ms, and answers the
/// clock and every row.
const MEMBERS: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local stamp = string.format('%.0f', now)
if ARGV[1] ~= '' then redis.call('HSET', KEYS[1], ARGV[1], stamp .. ' ' .. ARGV[2]) end
local all = redis.call('HGETALL', KEYS[1])
local rows = {}
for i = 1, #all, 2 do
  local beat = tonumber(string.match(all[i + 1], '^(%d+)'))
  if ARGV[1] ~= '' and beat and now - beat > tonumber(ARGV[3]) then
    redis.call('HDEL', KEYS[1], all[i])
  else
    rows[#rows + 1] = all[i]
    rows[#rows + 1] = all[i + 1]
  end
end
return {stamp, rows}
"#;

/// Acquires a free lease (KEYS: lease, epoch; ARGV: holder, ttl ms): `+<epoch>` when it is
/// ours (taken now, or already ours and extended), else `=<holder> <epoch>`. A lease of
/// ours that the shard's epoch has passed (raised by a region promotion, say) is stale and
/// taken anew at a new epoch.
const ACQUIRE: &str = r#"
local held = redis.call('GET', KEYS[1])
if held then
  local holder, epoch = string.match(held, '^(%S+) (%d+)$')
  if holder ~= ARGV[1] then return '=' .. held end
  if tonumber(redis.call('GET', KEYS[2]) or '0') <= tonumber(epoch) then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return '+' .. epoch
  end
end
local epoch = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1] .. ' ' .. epoch, 'PX', ARGV[2])
return '+' .. epoch
"#;

/// Extends a lease still held by ARGV[1] at epoch ARGV[2] by ARGV[3] ms, unless the shard's
/// epoch has passed it (KEYS: lease, epoch): 1, else 0.
const RENEW: &str = r#"
if tonumber(redis.call('GET', KEYS[2]) or '0') <= tonumber(ARGV[2])
  and redis.call('GET', KEYS[1]) == ARGV[1] .. ' ' .. ARGV[2] then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return 1
end
return 0
"#;

/// Removes node ARGV[1]'s row if incarnation ARGV[2] wrote it (KEYS: members): 1, else 0.
const LEAVE: &str = r#"
local row = redis.call('HGET', KEYS[1], ARGV[1])
if row and string.match(row, '^%d+ (%S+)') == ARGV[2] then
  redis.call('HDEL', KEYS[1], ARGV[1])
  return 1
end
return 0
"#;

/// Deletes a lease still held by ARGV[1] at epoch ARGV[2]: 1, else 0.
const RELEASE: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] .. ' ' .. ARGV[2] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"#;

/// The cluster tables' scripts.
pub(super) struct ClusterScripts {
    members: Script,
    leave: Script,
    acquire: Script,
    renew: Script,
    release: Script,
}

impl ClusterScripts {
    pub(super) fn new() -> Self {
        Self {
            members: Script::new(MEMBERS),
            leave: Script::new(LEAVE),
            acquire: Script::new(ACQUIRE),
            renew: Script::new(RENEW),
            release: Script::new(RELEASE),
        }
    }
}

fn table_error(err: impl std::fmt::Display) -> TableError {
    TableError(err.to_string())
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// A member row without its time:
/// `<incarnation> <ready> <draining> <shards> <actors> <region> <address>`.
fn encode_row(member: &Member) -> String {
    format!(
        "{} {} {} {} {} {} {}",
        member.incarnation,
        u8::from(member.ready),
        u8::from(member.draining),
        member.shards_owned,
        member.live_actors,
        member.region,
        member.address
    )
}

/// A row as stored: its time, then [`encode_row`]'s fields.
fn decode_row(node_id: &str, raw: &str) -> Option<Member> {
    let mut parts = raw.split(' ');
    let heartbeat_ms = parts.next()?.parse().ok()?;
    let incarnation = parts.next()?.to_owned();
    let ready = parts.next()? == "1";
    let draining = parts.next()? == "1";
    let shards_owned = parts.next()?.parse().ok()?;
    let live_actors = parts.next()?.parse().ok()?;
    let region = parts.next()?.to_owned();
    let address = parts.next()?.to_owned();
    Some(Member {
        node_id: node_id.to_owned(),
        incarnation,
        region,
        address,
        ready,
        draining,
        shards_owned,
        live_actors,
        heartbeat_ms,
    })
}

fn decode_view(answer: (String, Vec<String>)) -> Result<MemberView, TableError> {
    let (now, rows) = answer;
    let now_ms = now
        .parse()
        .map_err(|_| table_error(format!("a clock reading that is not a number: {now:?}")))?;
    let mut members = Vec::with_capacity(rows.len() / 2);
    for pair in rows.chunks(2) {
        if let [id, raw] = pair {
            match decode_row(id, raw) {
                Some(member) => members.push(member),
                None => tracing::warn!(node = %id, "a member row that cannot be read; ignored"),
            }
        }
    }
    members.sort_by(|a, b| a.node_id.cmp(&b.node_id));
    Ok(MemberView { now_ms, members })
}

impl RedisStore {
    /// Runs `script` once per entry of `calls` (keys, args) and answers each call's outcome:
    /// pipelined on one server, each call alone on a cluster (the calls span slots, and one
    /// failing slot must not fail the others). Loads the script first if a server does not
    /// know it (a restarted Redis).
    async fn per_shard<T: redis::FromRedisValue>(
        &self,
        script: &Script,
        calls: &[(Vec<String>, Vec<String>)],
    ) -> Vec<Result<T, TableError>> {
        let commands = || {
            calls
                .iter()
                .map(|(keys, args)| {
                    let mut command = redis::cmd("EVALSHA");
                    command
                        .arg(script.get_hash())
                        .arg(keys.len())
                        .arg(keys)
                        .arg(args);
                    command
                })
                .collect::<Vec<_>>()
        };
        let no_script = |r: &redis::RedisResult<T>| {
            r.as_ref().is_err_and(|e| {
                e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript)
            })
        };
        let mut answers = self.conn.each_settled(commands()).await;
        if answers.iter().any(no_script) && script.load_async(&mut self.conn.clone()).await.is_ok()
        {
            answers = self.conn.each_settled(commands()).await;
        }
        answers
            .into_iter()
            .map(|a| a.map_err(table_error))
            .collect()
    }
}

#[async_trait]
impl MemberTable for RedisStore {
    async fn heartbeat(&self, me: &Member) -> Result<MemberView, TableError> {
        let mut conn = self.conn.clone();
        let answer: (String, Vec<String>) = self
            .cluster_scripts
            .members
            .key(self.keys.members())
            .arg(&me.node_id)
            .arg(encode_row(me))
            .arg(millis(FORGET_DEAD_AFTER))
            .invoke_async(&mut conn)
            .await
            .map_err(table_error)?;
        decode_view(answer)
    }

    async fn members(&self) -> Result<MemberView, TableError> {
        let mut conn = self.conn.clone();
        let answer: (String, Vec<String>) = self
            .cluster_scripts
            .members
            .key(self.keys.members())
            .arg("")
            .arg("")
            .arg(0)
            .invoke_async(&mut conn)
            .await
            .map_err(table_error)?;
        decode_view(answer)
    }

    async fn leave(&self, node_id: &str, incarnation: &str) -> Result<(), TableError> {
        let mut conn = self.conn.clone();
        let _: i64 = self
            .cluster_scripts
            .leave
            .key(self.keys.members())
            .arg(node_id)
            .arg(incarnation)
            .invoke_async(&mut conn)
            .await
            .map_err(table_error)?;
        Ok(())
    }
}

#[async_trait]
impl LeaseTable for RedisStore {
    async fn acquire(
        &self,
        shards: &[ShardId],
        holder: &str,
        ttl: Duration,
    ) -> Result<Vec<(ShardId, Claim)>, TableError> {
        let calls: Vec<_> = shards
            .iter()
            .map(|&shard| {
                (
                    vec![
                        self.keys.lease(shard).to_owned(),
                        self.keys.epoch(shard).to_owned(),
                    ],
                    vec![holder.to_owned(), millis(ttl).to_string()],
                )
            })
            .collect();
        let answers: Vec<Result<String, TableError>> =
            self.per_shard(&self.cluster_scripts.acquire, &calls).await;
        let mut claims = Vec::with_capacity(shards.len());
        for (&shard, answer) in shards.iter().zip(answers) {
            let answer = match answer {
                Ok(answer) => answer,
                Err(error) => {
                    tracing::debug!(%shard, %error, "cannot try a lease now");
                    continue;
                }
            };
            let claim = if let Some(epoch) = answer.strip_prefix('+') {
                Claim::Acquired(Epoch(epoch.parse().map_err(table_error)?))
            } else if let Some(held) = answer.strip_prefix('=') {
                let (holder, _) = held.split_once(' ').unwrap_or((held, ""));
                Claim::Taken {
                    holder: holder.to_owned(),
                }
            } else {
                return Err(table_error(format!("unexpected lease answer {answer:?}")));
            };
            claims.push((shard, claim));
        }
        Ok(claims)
    }

    async fn renew(
        &self,
        leases: &[(ShardId, Epoch)],
        holder: &str,
        ttl: Duration,
    ) -> Result<Vec<Option<bool>>, TableError> {
        let calls: Vec<_> = leases
            .iter()
            .map(|&(shard, epoch)| {
                (
                    vec![
                        self.keys.lease(shard).to_owned(),
                        self.keys.epoch(shard).to_owned(),
                    ],
                    vec![
                        holder.to_owned(),
                        epoch.0.to_string(),
                        millis(ttl).to_string(),
                    ],
                )
            })
            .collect();
        let answers: Vec<Result<i64, TableError>> =
            self.per_shard(&self.cluster_scripts.renew, &calls).await;
        if let Some(Err(error)) = answers.first()
            && answers.iter().all(Result::is_err)
        {
            return Err(TableError(error.0.clone()));
        }
        Ok(answers
            .into_iter()
            .map(|answer| answer.ok().map(|held| held == 1))
            .collect())
    }

    async fn release(&self, leases: &[(ShardId, Epoch)], holder: &str) -> Result<(), TableError> {
        let calls: Vec<_> = leases
            .iter()
            .map(|&(shard, epoch)| {
                (
                    vec![self.keys.lease(shard).to_owned()],
                    vec![holder.to_owned(), epoch.0.to_string()],
                )
            })
            .collect();
        let answers: Vec<Result<i64, TableError>> =
            self.per_shard(&self.cluster_scripts.release, &calls).await;
        match answers.into_iter().find_map(Result::err) {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    async fn holders(
        &self,
        shards: &[ShardId],
    ) -> Result<Vec<Option<(String, Epoch)>>, TableError> {
        let answers: Vec<Option<String>> = self
            .conn
            .each(
                shards
                    .iter()
                    .map(|&shard| redis::Cmd::get(self.keys.lease(shard)))
                    .collect(),
            )
            .await
            .map_err(table_error)?;
        Ok(answers
            .into_iter()
            .map(|held| {
                let held = held?;
                let (holder, epoch) = held.split_once(' ')?;
                Some((holder.to_owned(), Epoch(epoch.parse().ok()?)))
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_row_round_trips() {
        let member = Member {
            node_id: "use1-a".into(),
            incarnation: "0a1b2c3d4e5f".into(),
            region: "us-east-1".into(),
            address: "10.0.0.7:50051".into(),
            ready: true,
            draining: false,
            shards_owned: 341,
            live_actors: 12_000,
            heartbeat_ms: 1_764_000_000_123,
        };
        let stored = format!("{} {}", member.heartbeat_ms, encode_row(&member));
        assert_eq!(decode_row("use1-a", &stored), Some(member));
        assert_eq!(decode_row("x", "12 i 1 0"), None);
    }
}
