//! APNs delivery. Today: the provider token (an ES256 JWT signed with the team's `.p8` key)
//! its refresh rules, and its sharing across nodes; the HTTP/2 sender comes with the
//! provider-delivery issue.

mod share;
mod token;

pub use share::{InProcessShare, ShareFuture, SharedProviderTokens, TokenShare};
pub use token::{
    CredentialError, MIN_TOKEN_AGE_SECS, ProviderToken, ProviderTokens, REFRESH_AGE_SECS,
    TokenSigner,
};
