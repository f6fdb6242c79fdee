//! Callback tokens: the credential inside the callback URL that Exchange POSTs to.
//!
//! A token is `base64url(registration id ‖ secret)`: 16 bytes naming the registration and
//! 16 random bytes (128 bits) of secret. Only the secret's SHA-256 is stored, and it is
//! compared in constant time; the token itself is returned once, inside `callback_url`.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::ids::RegistrationId;

const SECRET_BYTES: usize = 16;
const TOKEN_BYTES: usize = RegistrationId::BYTES + SECRET_BYTES;

/// A freshly minted or presented callback token. Its `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct CallbackToken {
    id: RegistrationId,
    secret: [u8; SECRET_BYTES],
}

/// SHA-256 of a callback secret, as stored.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct CallbackSecretHash(pub [u8; 32]);

impl CallbackToken {
    /// Mints a token for `id` from the operating system's random source.
    pub fn mint(id: RegistrationId) -> Result<Self, getrandom::Error> {
        let mut secret = [0u8; SECRET_BYTES];
        getrandom::fill(&mut secret)?;
        Ok(Self { id, secret })
    }

    /// Parses a token from a callback URL path segment; `None` if it has not the shape of one.
    pub fn parse(raw: &str) -> Option<Self> {
        if raw.len() != base64_len(TOKEN_BYTES) {
            return None;
        }
        let bytes = URL_SAFE_NO_PAD.decode(raw).ok()?;
        let bytes: [u8; TOKEN_BYTES] = bytes.try_into().ok()?;
        let (id, secret) = bytes.split_at(RegistrationId::BYTES);
        Some(Self {
            id: RegistrationId::from_bytes(id.try_into().ok()?),
            secret: secret.try_into().ok()?,
        })
    }

    pub fn registration_id(&self) -> &RegistrationId {
        &self.id
    }

    pub fn secret_hash(&self) -> CallbackSecretHash {
        CallbackSecretHash(Sha256::digest(self.secret).into())
    }

    /// Whether this token's secret is the one whose hash was stored, in constant time.
    pub fn matches(&self, stored: &CallbackSecretHash) -> bool {
        self.secret_hash().0.ct_eq(&stored.0).into()
    }

    /// The token as it appears in the callback URL.
    pub fn encode(&self) -> String {
        let mut bytes = [0u8; TOKEN_BYTES];
        bytes[..RegistrationId::BYTES].copy_from_slice(&self.id.to_bytes());
        bytes[RegistrationId::BYTES..].copy_from_slice(&self.secret);
        URL_SAFE_NO_PAD.encode(bytes)
    }
}

const fn base64_len(bytes: usize) -> usize {
    (bytes * 4).div_ceil(3)
}

impl fmt::Debug for CallbackToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallbackToken")
            .field("registration", &self.id)
            .finish_non_exhaustive()
    }
}

/// The hash as 64 lowercase hex digits, written without an intermediate string.
impl fmt::LowerHex for CallbackSecretHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl CallbackSecretHash {
    pub fn to_hex(self) -> String {
        format!("{self:x}")
    }

    pub fn from_hex(raw: &str) -> Option<Self> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(raw, &mut bytes).ok()?;
        Some(Self(bytes))
    }
}

impl fmt::Debug for CallbackSecretHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CallbackSecretHash(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minted_token_parses_back_and_matches_only_its_own_hash() {
        let id = RegistrationId::from_bytes([3; 16]);
        let token = CallbackToken::mint(id.clone()).unwrap();
        let encoded = token.encode();
        assert_eq!(encoded.len(), 43);
        let parsed = CallbackToken::parse(&encoded).unwrap();
        assert_eq!(parsed.registration_id(), &id);
        assert!(parsed.matches(&token.secret_hash()));
        let other = CallbackToken::mint(id).unwrap();
        assert!(!parsed.matches(&other.secret_hash()));
    }

    #[test]
    fn tokens_of_the_wrong_shape_are_refused() {
        assert!(CallbackToken::parse("").is_none());
        assert!(CallbackToken::parse("short").is_none());
        assert!(CallbackToken::parse(&"!".repeat(43)).is_none());
    }

    #[test]
    fn debug_hides_the_secret() {
        let token = CallbackToken::mint(RegistrationId::from_bytes([1; 16])).unwrap();
        let shown = format!("{token:?}");
        assert!(!shown.contains(&token.encode()[22..]));
    }

    #[test]
    fn secret_hash_round_trips_through_hex() {
        let hash = CallbackSecretHash([9; 32]);
        assert_eq!(CallbackSecretHash::from_hex(&hash.to_hex()), Some(hash));
        assert_eq!(CallbackSecretHash::from_hex("zz"), None);
    }
}
