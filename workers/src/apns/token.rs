//! APNs provider tokens (apns-fcm.md §B): a JWT with header `alg: ES256, kid: <key id>` and
//! claims `iss: <team id>, iat: <seconds>`, signed with the team's `.p8` key. Apple rejects a
//! token older than an hour and answers `TooManyProviderTokenUpdates` to teams that mint more
//! often than every 20 minutes, so [`ProviderTokens`] keeps one token for 50 minutes and
//! replaces a rejected one only if it is at least 20 minutes old.

use std::fmt;
use std::sync::Mutex;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;

/// Shortest life of a token before it may be replaced.
pub const MIN_TOKEN_AGE_SECS: u64 = 20 * 60;
/// Age at which a token is replaced before Apple's one-hour limit.
pub const REFRESH_AGE_SECS: u64 = 50 * 60;

#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("the APNs key is not a PKCS#8 P-256 private key (.p8): {0}")]
    BadKey(String),
    #[error("cannot sign an APNs provider token: {0}")]
    Sign(String),
}

/// Signs provider tokens for one team and key.
pub struct TokenSigner {
    team_id: String,
    key_id: String,
    key: EncodingKey,
}

impl fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSigner")
            .field("team_id", &self.team_id)
            .field("key_id", &self.key_id)
            .field("key", &"<redacted>")
            .finish()
    }
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    iat: u64,
}

impl TokenSigner {
    /// A signer from the `.p8` file's contents.
    pub fn from_p8(team_id: &str, key_id: &str, p8: &[u8]) -> Result<Self, CredentialError> {
        let key =
            EncodingKey::from_ec_pem(p8).map_err(|e| CredentialError::BadKey(e.to_string()))?;
        Ok(Self {
            team_id: team_id.to_owned(),
            key_id: key_id.to_owned(),
            key,
        })
    }

    /// A token issued at `iat` (Unix seconds).
    pub fn sign(&self, iat: u64) -> Result<ProviderToken, CredentialError> {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.key_id.clone());
        let claims = Claims {
            iss: &self.team_id,
            iat,
        };
        let jwt = jsonwebtoken::encode(&header, &claims, &self.key)
            .map_err(|e| CredentialError::Sign(e.to_string()))?;
        Ok(ProviderToken { jwt, iat })
    }
}

/// A signed provider token and when it was issued.
#[derive(Clone, PartialEq, Eq)]
pub struct ProviderToken {
    pub jwt: String,
    pub iat: u64,
}

impl fmt::Debug for ProviderToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The JWT is a bearer credential.
        f.debug_struct("ProviderToken")
            .field("iat", &self.iat)
            .finish_non_exhaustive()
    }
}

/// The token in use for one team and key, refreshed by Apple's rules.
#[derive(Debug)]
pub struct ProviderTokens {
    signer: TokenSigner,
    current: Mutex<Option<ProviderToken>>,
}

impl ProviderTokens {
    pub fn new(signer: TokenSigner) -> Self {
        Self {
            signer,
            current: Mutex::new(None),
        }
    }

    /// The token to send at `now` (Unix seconds): the current one until it is
    /// [`REFRESH_AGE_SECS`] old, else a new one.
    pub fn token(&self, now: u64) -> Result<ProviderToken, CredentialError> {
        match self.fresh(now) {
            Some(token) => Ok(token),
            None => self.mint(now),
        }
    }

    /// The current token if it is younger than [`REFRESH_AGE_SECS`] at `now`.
    pub(crate) fn fresh(&self, now: u64) -> Option<ProviderToken> {
        self.lock()
            .as_ref()
            .filter(|t| now.saturating_sub(t.iat) < REFRESH_AGE_SECS)
            .cloned()
    }

    /// Signs a new token at `now` and makes it the current one.
    pub(crate) fn mint(&self, now: u64) -> Result<ProviderToken, CredentialError> {
        let token = self.signer.sign(now)?;
        *self.lock() = Some(token.clone());
        Ok(token)
    }

    /// Makes `token` (another node's) the current one.
    pub(crate) fn adopt(&self, token: ProviderToken) {
        *self.lock() = Some(token);
    }

    /// Where the team's token is shared: one per team and key.
    pub(crate) fn share_key(&self) -> String {
        format!("{}:{}", self.signer.team_id, self.signer.key_id)
    }

    /// Apple said `ExpiredProviderToken` for `rejected`: a new token if it is at least
    /// [`MIN_TOKEN_AGE_SECS`] old (or already replaced), else `None` — minting again would
    /// trip `TooManyProviderTokenUpdates`; the clocks disagree and an operator must look.
    pub fn replace_rejected(
        &self,
        rejected: &ProviderToken,
        now: u64,
    ) -> Result<Option<ProviderToken>, CredentialError> {
        let mut current = self.lock();
        if let Some(token) = &*current
            && token != rejected
        {
            return Ok(Some(token.clone()));
        }
        if now.saturating_sub(rejected.iat) < MIN_TOKEN_AGE_SECS {
            return Ok(None);
        }
        let token = self.signer.sign(now)?;
        *current = Some(token.clone());
        Ok(Some(token))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<ProviderToken>> {
        // A poisoned lock only means a panic while holding a token: the token is still valid.
        self.current.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{DecodingKey, Validation};
    use serde::Deserialize;

    use super::*;

    const KEY: &[u8] = include_bytes!("../../../testdata/apns/test-key.p8");
    const PUBLIC: &[u8] = include_bytes!("../../../testdata/apns/test-key.pub.pem");

    #[derive(Deserialize)]
    struct Decoded {
        iss: String,
        iat: u64,
    }

    fn signer() -> TokenSigner {
        TokenSigner::from_p8("ABCDE12345", "KEY1234567", KEY).unwrap()
    }

    #[test]
    fn a_token_is_an_es256_jwt_apple_can_verify() {
        let token = signer().sign(1_700_000_000).unwrap();
        let key = DecodingKey::from_ec_pem(PUBLIC).unwrap();
        let mut validation = Validation::new(Algorithm::ES256);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        let decoded = jsonwebtoken::decode::<Decoded>(&token.jwt, &key, &validation).unwrap();
        assert_eq!(decoded.header.kid.as_deref(), Some("KEY1234567"));
        assert_eq!(decoded.header.alg, Algorithm::ES256);
        assert_eq!(
            (decoded.claims.iss.as_str(), decoded.claims.iat),
            ("ABCDE12345", 1_700_000_000)
        );
    }

    #[test]
    fn a_key_that_is_not_p256_pkcs8_is_refused() {
        assert!(matches!(
            TokenSigner::from_p8("T", "K", b"not a key"),
            Err(CredentialError::BadKey(_))
        ));
    }

    #[test]
    fn one_token_serves_for_fifty_minutes() {
        let tokens = ProviderTokens::new(signer());
        let first = tokens.token(1_000).unwrap();
        assert_eq!(tokens.token(1_000 + REFRESH_AGE_SECS - 1).unwrap(), first);
        let second = tokens.token(1_000 + REFRESH_AGE_SECS).unwrap();
        assert_ne!(second, first);
        assert_eq!(second.iat, 1_000 + REFRESH_AGE_SECS);
    }

    #[test]
    fn a_rejected_token_is_replaced_only_when_twenty_minutes_old() {
        let tokens = ProviderTokens::new(signer());
        let first = tokens.token(1_000).unwrap();
        // Rejected as expired after 5 minutes: the clocks disagree, do not mint.
        assert_eq!(tokens.replace_rejected(&first, 1_300).unwrap(), None);
        let replaced = tokens
            .replace_rejected(&first, 1_000 + MIN_TOKEN_AGE_SECS)
            .unwrap()
            .unwrap();
        assert_ne!(replaced, first);
        // A second sender that saw the same rejection gets the replacement, not a third token.
        let again = tokens
            .replace_rejected(&first, 1_000 + MIN_TOKEN_AGE_SECS + 5)
            .unwrap();
        assert_eq!(again, Some(replaced));
    }

    #[test]
    fn debug_output_shows_no_credential() {
        let token = signer().sign(1).unwrap();
        let shown = format!("{:?} {:?}", token, signer());
        assert!(
            !shown.contains(&token.jwt) && !shown.contains("PRIVATE"),
            "{shown}"
        );
    }
}
