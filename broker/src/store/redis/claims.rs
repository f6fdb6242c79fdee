//! Binding a subscription id to one registration: a pending claim taken before the
//! registration write, made the binding after it, given up if the write fails. A binding
//! whose owner no longer holds the subscription is taken over.

use std::time::Duration;

use redis::Script;

use super::keys::SubscriptionKeys;
use super::scripts::Status;
use super::{RedisStore, unexpected};
use crate::domain::{RegistrationId, RegistrationRecord, SubscriptionId};
use crate::store::{RegistrationStore as _, StoreError};

/// How long a subscription claim stays pending before the registration write confirms it.
const CLAIM_TTL: Duration = Duration::from_secs(30);

impl RedisStore {
    /// Claims `sub` for `id` (pending), replacing a binding whose owner no longer holds it.
    pub(super) async fn claim(
        &self,
        sub: &SubscriptionId,
        id: &RegistrationId,
    ) -> Result<(), StoreError> {
        let keys = self.keys.subscription(sub);
        let mut stale_owner = String::new();
        for _ in 0..3 {
            let mut inv = self.scripts.claim.key(&keys.bucket);
            inv.key(&keys.claim)
                .arg(&keys.field)
                .arg(id.as_str())
                .arg(CLAIM_TTL.as_millis() as u64)
                .arg(&stale_owner);
            match self.run(inv).await? {
                Status::Ok => return Ok(()),
                Status::Pending(owner) => return Err(taken(&keys.claim, &owner)?),
                Status::Owned(owner) => {
                    let owner_id = owner_id(&keys.bucket, &owner)?;
                    if self.holds(&owner_id, sub).await? {
                        return Err(StoreError::SubscriptionTaken(owner_id));
                    }
                    stale_owner = owner;
                }
                other => return Err(unexpected(&keys.bucket, other)),
            }
        }
        Err(StoreError::Conflict)
    }

    /// Whether registration `id` exists and is bound to `sub`.
    pub(super) async fn holds(
        &self,
        id: &RegistrationId,
        sub: &SubscriptionId,
    ) -> Result<bool, StoreError> {
        Ok(self
            .get(id)
            .await?
            .is_some_and(|r| r.subscription_id.as_ref() == Some(sub)))
    }

    /// Who `sub` is bound to (or claimed by): the first of them that holds it.
    pub(super) async fn subscription_owner(
        &self,
        sub: &SubscriptionId,
    ) -> Result<Option<RegistrationId>, StoreError> {
        let keys = self.keys.subscription(sub);
        let mut conn = self.conn.clone();
        let (bound, claimed): (Option<String>, Option<String>) = redis::pipe()
            .hget(&keys.bucket, &keys.field)
            .get(&keys.claim)
            .query_async(&mut conn)
            .await?;
        for (key, owner) in [(&keys.bucket, bound), (&keys.claim, claimed)] {
            if let Some(owner) = owner {
                let owner = owner_id(key, &owner)?;
                if self.holds(&owner, sub).await? {
                    return Ok(Some(owner));
                }
            }
        }
        Ok(None)
    }

    /// Runs `script` (`persist_claim` or `release_claim`) on `id`'s binding of and claim on
    /// the subscription `keys` name.
    async fn settle_claim(
        &self,
        script: &Script,
        keys: &SubscriptionKeys,
        id: &RegistrationId,
    ) -> Result<(), StoreError> {
        let mut inv = script.key(&keys.bucket);
        inv.key(&keys.claim).arg(&keys.field).arg(id.as_str());
        self.run(inv).await.map(drop)
    }

    /// Drops `id`'s binding of (or claim on) `sub`.
    pub(super) async fn release_claim(
        &self,
        sub: &SubscriptionId,
        id: &RegistrationId,
    ) -> Result<(), StoreError> {
        let keys = self.keys.subscription(sub);
        self.settle_claim(&self.scripts.release_claim, &keys, id)
            .await
    }

    /// Releases a claim after a failed write. The claim expires by itself if this fails too,
    /// so the error is only logged.
    pub(super) async fn abandon_claim(&self, sub: &SubscriptionId, id: &RegistrationId) {
        let keys = self.keys.subscription(sub);
        if let Err(err) = self
            .settle_claim(&self.scripts.release_claim, &keys, id)
            .await
        {
            tracing::warn!(error = %err, "could not release a pending subscription claim; it will expire");
        }
    }

    /// Claims the subscription `record` newly binds (if any), runs `write`, then confirms
    /// the claim and releases the one `previous` held, or gives the new claim up on failure.
    pub(super) async fn with_claim<T>(
        &self,
        record: &RegistrationRecord,
        previous: Option<&SubscriptionId>,
        write: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let new_sub = record
            .subscription_id
            .as_ref()
            .filter(|s| Some(*s) != previous);
        if let Some(sub) = new_sub {
            self.claim(sub, &record.id).await?;
        }
        let result = write.await;
        match (&result, new_sub) {
            (Err(_), Some(sub)) => self.abandon_claim(sub, &record.id).await,
            (Ok(_), Some(sub)) => {
                let keys = self.keys.subscription(sub);
                self.settle_claim(&self.scripts.persist_claim, &keys, &record.id)
                    .await?
            }
            _ => {}
        }
        if result.is_ok()
            && let Some(old) = previous.filter(|old| record.subscription_id.as_ref() != Some(*old))
        {
            self.release_claim(old, &record.id).await?;
        }
        result
    }
}

pub(super) fn owner_id(key: &str, owner: &str) -> Result<RegistrationId, StoreError> {
    RegistrationId::parse("owner", owner).map_err(|_| StoreError::Corrupt {
        key: key.to_owned(),
        reason: "bad owner id".into(),
    })
}

fn taken(key: &str, owner: &str) -> Result<StoreError, StoreError> {
    owner_id(key, owner).map(StoreError::SubscriptionTaken)
}
