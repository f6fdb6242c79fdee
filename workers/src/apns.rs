//! APNs delivery. Today: the provider token (an ES256 JWT signed with the team's `.p8` key)
//! and its refresh rules; the HTTP/2 sender comes with the provider-delivery issue.

mod token;

pub use token::{
    CredentialError, MIN_TOKEN_AGE_SECS, ProviderToken, ProviderTokens, REFRESH_AGE_SECS,
    TokenSigner,
};
