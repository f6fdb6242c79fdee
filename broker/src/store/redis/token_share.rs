//! The APNs provider token every node of a deployment uses, shared through Redis so that
//! Apple sees one fresh token per team per window (`herald_workers::apns::TokenShare`).

use herald_workers::apns::{ProviderToken, ShareFuture, TokenShare};
use redis::AsyncCommands as _;

use super::RedisStore;

/// Tokens are kept a little past Apple's one-hour limit, then expire by themselves.
const TOKEN_TTL_SECS: u64 = 3_700;

fn encode(token: &ProviderToken) -> String {
    format!("{} {}", token.iat, token.jwt)
}

fn decode(raw: &str) -> Result<ProviderToken, String> {
    let (iat, jwt) = raw
        .split_once(' ')
        .ok_or_else(|| "a shared APNs token without its issue time".to_owned())?;
    Ok(ProviderToken {
        iat: iat
            .parse()
            .map_err(|_| "a shared APNs token with a bad issue time")?,
        jwt: jwt.to_owned(),
    })
}

impl TokenShare for RedisStore {
    fn current(&self, key: &str) -> ShareFuture<'_, Option<ProviderToken>> {
        let key = self.keys.apns_token(key);
        let mut conn = self.conn.clone();
        Box::pin(async move {
            let raw: Option<String> = conn.get(key).await.map_err(|e| e.to_string())?;
            raw.as_deref().map(decode).transpose()
        })
    }

    fn offer(
        &self,
        key: &str,
        token: ProviderToken,
        fresh_since: u64,
    ) -> ShareFuture<'_, ProviderToken> {
        let key = self.keys.apns_token(key);
        let mut conn = self.conn.clone();
        Box::pin(async move {
            let kept: String = self
                .scripts
                .offer_token
                .key(key)
                .arg(encode(&token))
                .arg(fresh_since)
                .arg(TOKEN_TTL_SECS)
                .invoke_async(&mut conn)
                .await
                .map_err(|e| e.to_string())?;
            decode(&kept)
        })
    }
}
