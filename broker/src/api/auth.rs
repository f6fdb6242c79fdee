//! Bearer-token authentication of gRPC callers. Tokens are kept as SHA-256 digests and a
//! presented token is compared with every one of them in constant time.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tonic::Status;

#[derive(Clone)]
pub struct ApiTokens {
    digests: Vec<[u8; 32]>,
}

impl std::fmt::Debug for ApiTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ApiTokens(<{} redacted>)", self.digests.len())
    }
}

impl ApiTokens {
    pub fn new<I: IntoIterator<Item = S>, S: AsRef<str>>(tokens: I) -> Self {
        Self {
            digests: tokens.into_iter().map(|t| digest(t.as_ref())).collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.digests.is_empty()
    }

    /// Which configured token `authorization: Bearer <token>` presents (its index).
    pub fn caller(&self, headers: &http::HeaderMap) -> Result<usize, Status> {
        let header = headers
            .get("authorization")
            .ok_or_else(|| Status::unauthenticated("missing authorization: Bearer <token>"))?;
        let value = header
            .to_str()
            .map_err(|_| Status::unauthenticated("authorization header is not text"))?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .ok_or_else(|| Status::unauthenticated("authorization must be 'Bearer <token>'"))?;
        let presented = digest(token.trim());
        // Every digest is compared, in constant time each.
        let mut matched = None;
        for (i, known) in self.digests.iter().enumerate() {
            if bool::from(known.ct_eq(&presented)) {
                matched = Some(i);
            }
        }
        matched.ok_or_else(|| Status::unauthenticated("unknown API token"))
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(value: &str) -> http::HeaderMap {
        let mut map = http::HeaderMap::new();
        map.insert("authorization", value.parse().unwrap());
        map
    }

    #[test]
    fn only_a_configured_bearer_token_passes() {
        let tokens = ApiTokens::new(["s3cret-token"]);
        assert!(tokens.caller(&with("Bearer s3cret-token")).is_ok());
        for bad in [
            "Bearer wrong",
            "s3cret-token",
            "Basic s3cret-token",
            "Bearer ",
        ] {
            let err = tokens.caller(&with(bad)).unwrap_err();
            assert_eq!(err.code(), tonic::Code::Unauthenticated, "{bad}");
        }
        assert!(tokens.caller(&http::HeaderMap::new()).is_err());
        assert!(
            ApiTokens::new(Vec::<String>::new())
                .caller(&with("Bearer x"))
                .is_err()
        );
    }
}
