//! Sharing a team's provider token across the nodes of a deployment (apns-fcm.md §B: APNs
//! counts token updates per team, so nodes that each minted their own would trip
//! `TooManyProviderTokenUpdates`). [`SharedProviderTokens`] asks the share before minting;
//! the broker implements [`TokenShare`] on Redis.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use super::token::{CredentialError, ProviderToken, ProviderTokens, REFRESH_AGE_SECS};

/// A boxed future, so shares can be trait objects.
pub type ShareFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, String>> + Send + 'a>>;

/// Where nodes publish the token they use for a team and key.
pub trait TokenShare: Send + Sync + fmt::Debug + 'static {
    /// The token published under `key`, if any.
    fn current(&self, key: &str) -> ShareFuture<'_, Option<ProviderToken>>;

    /// Publishes `token` under `key` unless a token issued at or after `fresh_since` is
    /// already there; returns the token that is published afterwards.
    fn offer(
        &self,
        key: &str,
        token: ProviderToken,
        fresh_since: u64,
    ) -> ShareFuture<'_, ProviderToken>;
}

/// One team's tokens, shared: a node mints only when neither it nor the share holds a token
/// younger than [`REFRESH_AGE_SECS`], and adopts whatever the share ends up holding.
#[derive(Debug)]
pub struct SharedProviderTokens {
    local: ProviderTokens,
    share: Arc<dyn TokenShare>,
    key: String,
}

impl SharedProviderTokens {
    pub fn new(local: ProviderTokens, share: Arc<dyn TokenShare>) -> Self {
        let key = local.share_key();
        Self { local, share, key }
    }

    /// The token to send at `now`. If the share cannot be reached, a locally minted token
    /// is used (and offered again next time).
    pub async fn token(&self, now: u64) -> Result<ProviderToken, CredentialError> {
        if let Some(token) = self.local.fresh(now) {
            return Ok(token);
        }
        let fresh_since = now.saturating_sub(REFRESH_AGE_SECS - 1);
        match self.share.current(&self.key).await {
            Ok(Some(shared)) if shared.iat >= fresh_since => {
                self.local.adopt(shared.clone());
                return Ok(shared);
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "cannot read the shared APNs provider token"),
        }
        let minted = self.local.mint(now)?;
        match self
            .share
            .offer(&self.key, minted.clone(), fresh_since)
            .await
        {
            Ok(winner) => {
                self.local.adopt(winner.clone());
                Ok(winner)
            }
            Err(error) => {
                tracing::warn!(%error, "cannot publish the APNs provider token; using it locally");
                Ok(minted)
            }
        }
    }

    /// Apple refused `rejected` as expired: the token to retry with, shared like any other,
    /// or `None` when it is too young to replace (see [`ProviderTokens::replace_rejected`]).
    pub async fn replace_rejected(
        &self,
        rejected: &ProviderToken,
        now: u64,
    ) -> Result<Option<ProviderToken>, CredentialError> {
        // Another node may have replaced it already.
        if let Ok(Some(shared)) = self.share.current(&self.key).await
            && shared.iat > rejected.iat
        {
            self.local.adopt(shared.clone());
            return Ok(Some(shared));
        }
        let Some(fresh) = self.local.replace_rejected(rejected, now)? else {
            return Ok(None);
        };
        match self
            .share
            .offer(&self.key, fresh.clone(), rejected.iat + 1)
            .await
        {
            Ok(winner) => {
                self.local.adopt(winner.clone());
                Ok(Some(winner))
            }
            Err(error) => {
                tracing::warn!(%error, "cannot publish the APNs provider token; using it locally");
                Ok(Some(fresh))
            }
        }
    }
}

/// A share inside one process (tests, a single node).
#[derive(Debug, Default)]
pub struct InProcessShare {
    tokens: Mutex<HashMap<String, ProviderToken>>,
}

impl TokenShare for InProcessShare {
    fn current(&self, key: &str) -> ShareFuture<'_, Option<ProviderToken>> {
        let token = self
            .tokens
            .lock()
            .map_err(|e| e.to_string())
            .map(|t| t.get(key).cloned());
        Box::pin(async move { token })
    }

    fn offer(
        &self,
        key: &str,
        token: ProviderToken,
        fresh_since: u64,
    ) -> ShareFuture<'_, ProviderToken> {
        let result = self
            .tokens
            .lock()
            .map_err(|e| e.to_string())
            .map(|mut t| match t.get(key) {
                Some(existing) if existing.iat >= fresh_since => existing.clone(),
                _ => {
                    t.insert(key.to_owned(), token.clone());
                    token
                }
            });
        Box::pin(async move { result })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apns::TokenSigner;

    const KEY: &[u8] = include_bytes!("../../../testdata/apns/test-key.p8");

    fn node(share: &Arc<InProcessShare>) -> SharedProviderTokens {
        let signer = TokenSigner::from_p8("ABCDE12345", "KEY1234567", KEY).unwrap();
        SharedProviderTokens::new(ProviderTokens::new(signer), share.clone())
    }

    #[tokio::test]
    async fn nodes_sharing_a_team_use_one_token_per_window() {
        let share = Arc::new(InProcessShare::default());
        let (a, b) = (node(&share), node(&share));
        let first = a.token(1_000).await.unwrap();
        assert_eq!(b.token(1_010).await.unwrap(), first, "b adopts a's token");
        let later = 1_000 + REFRESH_AGE_SECS;
        let second = b.token(later).await.unwrap();
        assert_ne!(second, first);
        assert_eq!(
            a.token(later + 1).await.unwrap(),
            second,
            "a adopts b's replacement"
        );
    }
}
