//! APNs delivery: the HTTP/2 client of each app, its requests (a2's payload and header
//! types), the provider token (an ES256 JWT signed with the team's `.p8` key), its refresh
//! rules, and its sharing across nodes.

mod client;
mod request;
mod share;
mod token;

pub use client::ApnsClient;
pub use share::{InProcessShare, ShareFuture, SharedProviderTokens, TokenShare};
pub use token::{
    CredentialError, MIN_TOKEN_AGE_SECS, ProviderToken, ProviderTokens, REFRESH_AGE_SECS,
    TokenSigner,
};
