//! Identifiers with validated shapes. Device tokens are secrets of a sort: their `Debug` and
//! `Display` show only a short fingerprint, never the token.

use std::fmt;
use std::sync::Arc;

use herald_cluster::ShardId;
use sha2::{Digest, Sha256};

use super::registration::Platform;
use super::validate::FieldError;

/// Longest subscription id or folder id accepted (Exchange's are ~90–150 characters).
pub(super) const MAX_OPAQUE_ID_LEN: usize = 512;

/// A registration id: 16 bytes, written as 32 lowercase hex characters: the shard the
/// registration was created in (its birth shard) in the first two bytes, its home region's
/// tag ([`home_tag`]) in the third, then 104 random bits. The store finds a registration
/// that never moved without a lookup, and a node knows which home to ask for any id.
/// Shared, not copied: a live registration's id is a key in several of the node's maps,
/// and a clone is a reference count rather than an allocation.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RegistrationId(Arc<str>);

impl RegistrationId {
    pub const BYTES: usize = 16;

    pub fn from_bytes(bytes: [u8; Self::BYTES]) -> Self {
        Self(hex::encode(bytes).into())
    }

    /// A new id for a registration of home region `home` created in `shard`, from the
    /// operating system's random source.
    pub fn mint(shard: ShardId, home: &str) -> Result<Self, getrandom::Error> {
        let mut bytes = [0u8; Self::BYTES];
        getrandom::fill(&mut bytes[3..])?;
        bytes[..2].copy_from_slice(&shard.number().to_be_bytes());
        bytes[2] = home_tag(home);
        Ok(Self::from_bytes(bytes))
    }

    /// The tag of the id's home region (see [`home_tag`]).
    pub fn home_tag(&self) -> u8 {
        self.to_bytes()[2]
    }

    /// The shard named by the id's first two bytes, if they name one: the store trusts it
    /// for registrations it has no other location for (docs in the store's key schema).
    pub fn birth_shard(&self) -> Option<ShardId> {
        // The string is 32 hex characters (built from bytes or checked by `parse`).
        u16::from_str_radix(self.0.get(..4)?, 16)
            .ok()
            .and_then(ShardId::new)
    }

    /// Parses a registration id as a caller sends it.
    pub fn parse(field: &'static str, raw: &str) -> Result<Self, FieldError> {
        if raw.is_empty() {
            return Err(FieldError::new(field, "is required"));
        }
        let mut bytes = [0u8; Self::BYTES];
        hex::decode_to_slice(raw, &mut bytes)
            .map_err(|_| FieldError::new(field, "is not a registration id (32 hex characters)"))?;
        Ok(Self::from_bytes(bytes))
    }

    pub fn to_bytes(&self) -> [u8; Self::BYTES] {
        let mut bytes = [0u8; Self::BYTES];
        // The string was built from 16 bytes or checked by `parse`.
        hex::decode_to_slice(self.0.as_bytes(), &mut bytes).unwrap_or_default();
        bytes
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RegistrationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RegistrationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RegistrationId({})", self.0)
    }
}

/// The one-byte tag of a home region in the registration ids it mints. The configured
/// regions' tags must differ (`herald check-config` says so).
pub fn home_tag(region: &str) -> u8 {
    xxhash_rust::xxh3::xxh3_64(region.as_bytes()).to_be_bytes()[7]
}

/// A push provider's device token, normalised (APNs tokens lowercase hex).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct DeviceToken(String);

impl DeviceToken {
    /// APNs device tokens are 32 bytes today; Apple reserves the right to lengthen them.
    const APNS_HEX_LEN: std::ops::RangeInclusive<usize> = 64..=200;
    /// FCM registration tokens are ~150–200 characters; the bounds leave room on both sides.
    const FCM_LEN: std::ops::RangeInclusive<usize> = 32..=4096;

    pub fn parse(platform: Platform, raw: &str) -> Result<Self, FieldError> {
        const FIELD: &str = "device_token";
        if raw.is_empty() {
            return Err(FieldError::new(FIELD, "is required"));
        }
        match platform {
            Platform::Apns => {
                if !Self::APNS_HEX_LEN.contains(&raw.len())
                    || !raw.len().is_multiple_of(2)
                    || !raw.bytes().all(|b| b.is_ascii_hexdigit())
                {
                    return Err(FieldError::new(
                        FIELD,
                        "is not an APNs device token (an even number of hex characters, 64 to 200)",
                    ));
                }
                Ok(Self(raw.to_ascii_lowercase()))
            }
            Platform::Fcm => {
                let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b':');
                if !Self::FCM_LEN.contains(&raw.len()) || !raw.bytes().all(allowed) {
                    return Err(FieldError::new(
                        FIELD,
                        "is not an FCM registration token (32 to 4096 characters of A-Z a-z 0-9 _ - :)",
                    ));
                }
                Ok(Self(raw.to_owned()))
            }
        }
    }

    /// A token read back from our own store, already validated when written.
    pub fn from_stored(raw: String) -> Self {
        Self(raw)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn shard(&self) -> ShardId {
        ShardId::of_device_token(&self.0)
    }

    /// A stable, non-reversible short name for logs and keys: the first 12 hex characters
    /// of the token's SHA-256.
    pub fn fingerprint(&self) -> String {
        let digest = Sha256::digest(self.0.as_bytes());
        hex::encode(&digest[..6])
    }
}

impl fmt::Debug for DeviceToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DeviceToken(#{})", self.fingerprint())
    }
}

/// An EWS subscription id: opaque, compared for equality only.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SubscriptionId(String);

impl SubscriptionId {
    pub fn parse(field: &'static str, raw: &str) -> Result<Self, FieldError> {
        super::validate::opaque_id(field, raw).map(|()| Self(raw.to_owned()))
    }

    pub fn from_stored(raw: String) -> Self {
        Self(raw)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A fixed-length digest used to key the subscription index.
    pub fn digest(&self) -> [u8; 16] {
        let mut digest = [0; 16];
        digest.copy_from_slice(&Sha256::digest(self.0.as_bytes())[..16]);
        digest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const APNS: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";

    #[test]
    fn apns_tokens_are_normalised_to_lowercase_hex() {
        let upper = APNS.to_ascii_uppercase();
        let token = DeviceToken::parse(Platform::Apns, &upper).unwrap();
        assert_eq!(token.as_str(), APNS);
        assert_eq!(
            token.shard(),
            DeviceToken::parse(Platform::Apns, APNS).unwrap().shard()
        );
    }

    #[test]
    fn a_minted_id_names_its_birth_shard_and_home_and_is_otherwise_random() {
        let shard = ShardId::new(1023).unwrap();
        let (a, b) = (
            RegistrationId::mint(shard, "eu-west-1").unwrap(),
            RegistrationId::mint(shard, "eu-west-1").unwrap(),
        );
        assert_eq!(a.birth_shard(), Some(shard));
        assert!(a.as_str().starts_with("03ff"), "{a}");
        assert_eq!(a.home_tag(), home_tag("eu-west-1"));
        assert_ne!(a, b);
        let parsed = RegistrationId::parse("id", a.as_str()).unwrap();
        assert_eq!(parsed.birth_shard(), Some(shard));
        assert_eq!(parsed.home_tag(), home_tag("eu-west-1"));
        // The three regions' tags differ.
        let tags: std::collections::BTreeSet<u8> = ["us-east-1", "eu-west-1", "ap-southeast-1"]
            .iter()
            .map(|r| home_tag(r))
            .collect();
        assert_eq!(tags.len(), 3);
        // Two bytes name no shard above 1023.
        assert_eq!(RegistrationId::from_bytes([0xab; 16]).birth_shard(), None);
        assert_eq!(
            RegistrationId::from_bytes([0; 16]).birth_shard(),
            ShardId::new(0)
        );
    }

    #[test]
    fn malformed_device_tokens_name_the_field() {
        for (platform, raw) in [
            (Platform::Apns, ""),
            (Platform::Apns, "abc"),
            (Platform::Apns, &APNS.replace('a', "g")),
            (Platform::Apns, &APNS[..63]),
            (Platform::Fcm, "short"),
            (
                Platform::Fcm,
                "has spaces in it and is long enough to pass the length",
            ),
        ] {
            let err = DeviceToken::parse(platform, raw).unwrap_err();
            assert_eq!(err.field, "device_token", "{raw:?}");
        }
    }

    #[test]
    fn debug_never_shows_the_token() {
        let token = DeviceToken::parse(Platform::Apns, APNS).unwrap();
        let shown = format!("{token:?}");
        assert!(!shown.contains(&APNS[..16]), "{shown}");
    }

    #[test]
    fn registration_ids_round_trip_through_bytes() {
        let id = RegistrationId::from_bytes([7; 16]);
        assert_eq!(
            RegistrationId::parse("registration_id", id.as_str()).unwrap(),
            id
        );
        assert_eq!(id.to_bytes(), [7; 16]);
        assert!(RegistrationId::parse("registration_id", "xyz").is_err());
        assert!(RegistrationId::parse("registration_id", "").is_err());
    }
}
